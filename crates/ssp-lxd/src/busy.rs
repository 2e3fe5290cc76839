//! Waiting out another operation on an instance.
//!
//! LXD lets one state-changing operation (start, stop, restart, update, snapshot, restore, …)
//! hold an instance at a time and refuses the others with "Instance is busy running a …
//! operation" ([`Error::is_busy`]) — whoever started the first one, ssp's own reconciler
//! included. That is a state to wait for, not a failure: these helpers find the operations
//! that hold an instance, wait for them (bounded), and try again.
//!
//! Exec and console sessions (`websocket` operations) never hold an instance, and may last
//! for hours: they are never waited for.

use std::time::{Duration, Instant};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::instances::last_segment;
use crate::operation::Operation;

/// How long to pause before trying again when LXD says busy but lists no operation on the
/// instance (its lock outlives the operation by a moment, or is held by LXD itself).
const UNLISTED_PAUSE: Duration = Duration::from_millis(250);

impl Client {
    /// The running background (`task`) operations on instance `name`.
    pub async fn operations_on(&self, name: &str) -> Result<Vec<Operation>> {
        Ok(self
            .running_operations()
            .await?
            .into_iter()
            .filter(|operation| operation.state().class == "task" && touches(operation, name))
            .collect())
    }

    /// Every instance a running background (`task`) operation holds, with that operation's
    /// description: one look for all instances (the reconciler's pass), where
    /// [`Client::operations_on`] asks about one.
    pub async fn instances_held(&self) -> Result<std::collections::HashMap<String, String>> {
        let mut held = std::collections::HashMap::new();
        for operation in self.running_operations().await? {
            if operation.state().class != "task" {
                continue;
            }
            for name in held_instances(&operation) {
                held.insert(name, operation.state().description.clone());
            }
        }
        Ok(held)
    }

    /// Waits until no background operation runs on instance `name`, at most `patience`.
    /// Returns whether it is idle; how those operations ended is theirs to report (a failed
    /// one is not an error here).
    pub async fn wait_for_operations_on(&self, name: &str, patience: Duration) -> Result<bool> {
        let started = Instant::now();
        loop {
            let running = self.operations_on(name).await?;
            if running.is_empty() {
                return Ok(true);
            }
            for operation in running {
                let Some(left) = patience.checked_sub(started.elapsed()).filter(|left| !left.is_zero()) else {
                    return Ok(false);
                };
                tracing::info!(instance = name, operation = operation.id(), description = %operation.state().description,
                    "waiting for an operation on the instance");
                match operation.wait(Some(left)).await {
                    Err(e @ Error::Connect { .. }) => return Err(e),
                    Err(Error::Timeout { .. }) => return Ok(false),
                    // Finished, failed, cancelled or already forgotten (404): it holds nothing now.
                    _ => {}
                }
            }
        }
    }

    /// Runs `action` on instance `name`; while LXD answers that the instance is busy with
    /// another operation, waits for the operations on it and tries again, for at most
    /// `patience` in all. Still busy after that: the last busy error, for the caller to
    /// answer as such ("busy, try again"), not as a failure.
    ///
    /// `action` must be safe to repeat after a busy answer — it is, for any single LXD call:
    /// a busy instance is refused before anything is done to it.
    pub async fn when_idle<T, F, Fut>(&self, name: &str, patience: Duration, mut action: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let started = Instant::now();
        loop {
            let error = match action().await {
                Err(error) if error.is_busy() => error,
                other => return other,
            };
            let Some(left) = patience.checked_sub(started.elapsed()).filter(|left| !left.is_zero()) else {
                return Err(error);
            };
            tracing::info!(instance = name, "LXD says the instance is busy ({error}); waiting for up to {left:?}");
            let waited = Instant::now();
            self.wait_for_operations_on(name, left).await?;
            if waited.elapsed() < UNLISTED_PAUSE {
                // Nothing listed to wait for (or it ended at once): pause before asking again.
                tokio::time::sleep(UNLISTED_PAUSE.min(patience.saturating_sub(started.elapsed()))).await;
            }
        }
    }
}

/// Whether `operation` lists instance `name` among its resources (LXD 5.0 lists instances
/// under `instances`, older daemons under `containers`; URLs may carry `?project=`). Only
/// the instance's own URL counts, not one of its snapshots'.
fn touches(operation: &Operation, name: &str) -> bool {
    held_instances(operation).any(|held| held == name)
}

/// The instances an operation names in its resources (`/1.0/instances/NAME`, or the older
/// `/1.0/containers/NAME`), decoded.
fn held_instances(operation: &Operation) -> impl Iterator<Item = String> + '_ {
    ["instances", "containers"].into_iter().flat_map(move |kind| {
        operation.state().resources.get(kind).into_iter().flatten().filter_map(move |url| instance_of(url, kind))
    })
}

fn instance_of(url: &str, kind: &str) -> Option<String> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let rest = path.strip_prefix("/1.0/")?.strip_prefix(kind)?.strip_prefix('/')?;
    (!rest.contains('/')).then(|| last_segment(rest))
}

#[cfg(test)]
mod tests {
    use super::instance_of;

    fn names(url: &str, kind: &str, name: &str) -> bool {
        instance_of(url, kind).as_deref() == Some(name)
    }

    #[test]
    fn an_instance_is_known_by_its_own_url_only() {
        assert!(names("/1.0/instances/c1", "instances", "c1"));
        assert!(names("/1.0/instances/c1?project=default", "instances", "c1"));
        assert!(names("/1.0/containers/c1", "containers", "c1"));
        assert!(names("/1.0/instances/a%20b", "instances", "a b"));
        assert!(!names("/1.0/instances/c10", "instances", "c1"));
        assert!(!names("/1.0/instances/x/snapshots/c1", "instances", "c1"));
        assert!(!names("/1.0/images/c1", "instances", "c1"));
    }
}
