//! The store behind an async front: SQLite calls are synchronous (and `synchronous=FULL`
//! makes writes wait for the disk), so they run on the blocking pool, one at a time.

use std::sync::{Arc, Mutex};

use ssp_store::Store;

/// A shared handle to the state database.
#[derive(Debug, Clone)]
pub struct Db {
    store: Arc<Mutex<Store>>,
}

impl Db {
    /// Wraps an open store.
    pub fn new(store: Store) -> Self {
        Self { store: Arc::new(Mutex::new(store)) }
    }

    /// Runs `f` with the store on the blocking pool.
    pub async fn run<T, F>(&self, f: F) -> Result<T, ssp_store::Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut Store) -> Result<T, ssp_store::Error> + Send + 'static,
    {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave SQLite half-written (transactions
            // roll back), so a poisoned lock is still safe to use.
            let mut guard = store.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&mut guard)
        })
        .await
        .unwrap_or_else(|e| Err(ssp_store::Error::Conflict(format!("state database task failed: {e}"))))
    }
}
