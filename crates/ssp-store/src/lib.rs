//! ssp's desired state in embedded SQLite — and the only SQL in the project.
//!
//! What ssp *wants* (users, keys, tokens, containers and their desired state) lives here;
//! what LXD *has* lives in LXD, and the reconciler makes the second match the first. So every
//! change is a transaction that records the intent and a journal entry together: after a
//! crash at any instant the file holds either the whole change or none of it.
//!
//! The database runs in WAL mode with `synchronous=FULL` (an acknowledged write survives
//! power loss), foreign keys on, and numbered, append-only migrations (`migrations/`) applied
//! at open. One module per table. The store is synchronous: callers keep it on a thread of
//! its own or in `spawn_blocking`.
//!
//! It must not talk to LXD, decide policy (quotas are checked in `ssp-core`), or hold
//! secrets in the clear: API tokens are stored as SHA-256 hashes.

mod containers;
mod gateway;
mod gpus;
mod homes;
mod journal;
mod keys;
mod shares;
mod snapshots;
mod tokens;
mod users;

use std::path::Path;

use rusqlite::Connection;
use rusqlite_migration::{Migrations, M};

pub use containers::{Container, ContainerPhase, DesiredState, GpuGrant, NewContainer};
pub use gateway::GatewaySession;
pub use gpus::{Gpu, GpuHours, GpuRecord, Lease};
pub use homes::{Home, HomePhase};
pub use journal::JournalEntry;
pub use keys::SshKey;
pub use shares::{NewShare, Share};
pub use snapshots::{Schedule, SnapshotRow};
pub use tokens::{Token, TOKEN_PREFIX};
pub use users::{NewUser, Role, User};

/// What can go wrong in the store; messages name the object.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object does not exist (or is not the caller's: callers answer both the same way).
    #[error("{kind} {name} does not exist")]
    NotFound {
        /// `user`, `container`, `key`, …
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// A unique name is taken.
    #[error("{kind} {name} already exists")]
    Exists {
        /// `user`, `container`, `key`, …
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// The request conflicts with the stored state.
    #[error("{0}")]
    Conflict(String),
    /// SQLite failed.
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A migration failed.
    #[error("migrating the state database: {0}")]
    Migration(#[from] rusqlite_migration::Error),
    /// The GPU allocator said no; the message says why and what is free.
    #[error("{0}")]
    Refused(String),
    /// The OS random source failed.
    #[error("no randomness for a new secret: {0}")]
    Random(String),
}

/// Result alias for the store.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(include_str!("migrations/0001_initial.sql")),
        M::up(include_str!("migrations/0002_gpus.sql")),
        M::up(include_str!("migrations/0003_storage.sql")),
        // 0004 is kept free for a migration on another branch.
        M::up(include_str!("migrations/0005_gateway.sql")),
    ])
}

/// The state database.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        Self::prepare(conn)
    }

    /// A private in-memory database, for tests.
    pub fn open_in_memory() -> Result<Self> {
        Self::prepare(Connection::open_in_memory()?)
    }

    fn prepare(mut conn: Connection) -> Result<Self> {
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        migrations().to_latest(&mut conn)?;
        Ok(Self { conn })
    }

    /// The schema version (the number of migrations applied).
    pub fn schema_version(&self) -> Result<i64> {
        Ok(self.conn.pragma_query_value(None, "user_version", |row| row.get(0))?)
    }

    /// Runs `f` in one immediate transaction: all of it is stored, or none of it.
    fn write<T>(&mut self, f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>) -> Result<T> {
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let value = f(&tx)?;
        tx.commit()?;
        Ok(value)
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Maps a UNIQUE violation to [`Error::Exists`].
pub(crate) fn unique(kind: &'static str, name: &str) -> impl FnOnce(rusqlite::Error) -> Error {
    let name = name.to_owned();
    move |e| match e {
        rusqlite::Error::SqliteFailure(f, _) if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE => {
            Error::Exists { kind, name }
        }
        other => Error::Sqlite(other),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn migrations_count() -> i64 {
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/src/migrations")).unwrap().count() as i64
    }

    #[test]
    fn migrations_are_valid_and_applied() {
        migrations().validate().unwrap();
        let store = Store::open_in_memory().unwrap();
        assert_eq!(store.schema_version().unwrap(), migrations_count());
    }

    #[test]
    fn a_file_database_is_durable_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let store = Store::open(&path).unwrap();
            let mode: String = store.conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
            assert_eq!(mode, "wal");
            let sync: i64 = store.conn.pragma_query_value(None, "synchronous", |r| r.get(0)).unwrap();
            assert_eq!(sync, 2, "synchronous=FULL");
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), migrations_count());
    }
}
