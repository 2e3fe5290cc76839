//! Background operations: LXD answers slow calls (create, start, delete, exec, image import)
//! at once with an operation, and the caller waits for it — or cancels it.

use std::time::Duration;

use reqwest::Method;

use crate::client::{seg, Body, Client};
use crate::error::{Error, Result};
use crate::wire::OperationState;

/// A running (or finished) LXD operation.
#[derive(Debug, Clone)]
pub struct Operation {
    client: Client,
    state: OperationState,
}

impl Operation {
    pub(crate) fn new(client: Client, state: OperationState) -> Self {
        Self { client, state }
    }

    /// Its UUID.
    pub fn id(&self) -> &str {
        &self.state.id
    }

    /// Its state when last seen.
    pub fn state(&self) -> &OperationState {
        &self.state
    }

    /// Waits until it ends; `None` waits as long as it takes. A failed or cancelled operation
    /// is an error carrying LXD's message; on success the final state (with its metadata:
    /// an exec's return code, an import's fingerprint) is returned.
    pub async fn wait(mut self, timeout: Option<Duration>) -> Result<OperationState> {
        let started = std::time::Instant::now();
        // LXD's wait endpoint takes whole seconds and -1 for "forever"; a long wait is done in
        // slices so a daemon restart mid-wait shows up as an error rather than a hang.
        const SLICE: Duration = Duration::from_secs(30);
        loop {
            if self.state.is_done() {
                return self.finish();
            }
            let left = match timeout {
                Some(t) => match t.checked_sub(started.elapsed()) {
                    Some(left) if !left.is_zero() => left.min(SLICE),
                    _ => {
                        return Err(Error::Timeout {
                            id: self.state.id.clone(),
                            description: self.state.description.clone(),
                            after: t,
                        })
                    }
                },
                None => SLICE,
            };
            let secs = left.as_secs().max(1);
            let path = format!("/1.0/operations/{}/wait?timeout={secs}", seg(&self.state.id)?);
            self.state = self.client.sync(Method::GET, &path, Body::None).await?;
        }
    }

    /// Re-reads its state.
    pub async fn refresh(&mut self) -> Result<&OperationState> {
        let path = format!("/1.0/operations/{}", seg(&self.state.id)?);
        self.state = self.client.get(&path).await?;
        Ok(&self.state)
    }

    /// Asks LXD to cancel it (only some operations can be cancelled: see `may_cancel`).
    pub async fn cancel(&self) -> Result<()> {
        let path = format!("/1.0/operations/{}", seg(&self.state.id)?);
        self.client.call(Method::DELETE, &path, None::<()>).await
    }

    fn finish(self) -> Result<OperationState> {
        match self.state.status_code {
            200 => Ok(self.state),
            401 => Err(Error::OperationCancelled { id: self.state.id, description: self.state.description }),
            _ => Err(Error::OperationFailed {
                id: self.state.id,
                description: self.state.description,
                message: if self.state.err.is_empty() { self.state.status } else { self.state.err },
            }),
        }
    }
}
