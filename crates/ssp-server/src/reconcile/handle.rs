//! The reconciler's face to the rest of the daemon: the [`ReconcilerHandle`] that wakes it
//! and reads where it stands with each container ([`Condition`]), and the [`StepError`] a
//! converge reports. Depends on nothing but the planner's data, so the API, the GPU loop,
//! the storage worker and the gateway backend can hold a handle without reaching the
//! executor (which reads their tables through `attachments`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use ssp_lxd::wire::Instance;
use tokio::sync::Notify;

use super::plan;
use crate::guest;
use crate::instance::TAG_ACCOUNT;

/// What went wrong converging one container; kept as its `problem` until it converges.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// LXD refused or failed.
    #[error("{0}")]
    Lxd(#[from] ssp_lxd::Error),
    /// The state database failed.
    #[error("{0}")]
    Store(#[from] ssp_store::Error),
    /// A script inside could not be run.
    #[error("{0}")]
    Guest(#[from] guest::GuestError),
    /// Anything else, said for people.
    #[error("{0}")]
    Other(String),
}

impl StepError {
    /// LXD refused because another operation holds the instance: a state to wait out.
    pub(crate) fn is_busy(&self) -> bool {
        match self {
            StepError::Lxd(e) | StepError::Guest(guest::GuestError::Lxd(e)) => e.is_busy(),
            _ => false,
        }
    }
}

impl From<StepError> for crate::error::ApiError {
    /// A converge someone waited for failed: LXD's and the store's own errors map as
    /// everywhere; what the reconciler itself reports is a state of the container (it keeps
    /// trying), not an internal error.
    fn from(error: StepError) -> Self {
        match error {
            StepError::Lxd(e) | StepError::Guest(guest::GuestError::Lxd(e)) => e.into(),
            StepError::Store(e) => e.into(),
            other => crate::error::ApiError::Conflict(format!("{other}; ssp keeps trying (see `ssp container show`)")),
        }
    }
}

/// Where the reconciler stands with one container, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// LXD matches what ssp wants: the owner can use it.
    Converged,
    /// Usable, and as converged as it can be while it runs: the text says what waits for its
    /// next start.
    Pending(String),
    /// Waiting for an LXD operation on it to end.
    Waiting(String),
    /// A step failed; tried again at `retry.next_at_ms`.
    Failed(plan::Retry),
    /// Needs a person: the text says what to do.
    Stuck(String),
}

/// Shared with the API: wakes the reconciler and reads where it stands with each container.
#[derive(Debug, Clone)]
pub struct ReconcilerHandle {
    pub(super) wake: Arc<Notify>,
    conditions: Arc<Mutex<HashMap<String, Condition>>>,
    gpu_health: Arc<Mutex<HashMap<String, String>>>,
    set_up: Arc<Mutex<HashSet<String>>>,
    progress: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Default for ReconcilerHandle {
    fn default() -> Self {
        Self {
            wake: Arc::default(),
            conditions: Arc::default(),
            gpu_health: Arc::default(),
            set_up: Arc::default(),
            progress: Arc::new(tokio::sync::watch::channel(0).0),
        }
    }
}

impl ReconcilerHandle {
    /// Ticks whenever some container moved (made, started, stopped, removed) or its
    /// condition or GPU health changed: what API waits and the portal's live streams listen
    /// to instead of polling LXD.
    pub fn progress(&self) -> tokio::sync::watch::Receiver<u64> {
        self.progress.subscribe()
    }

    pub(super) fn moved(&self) {
        self.progress.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Asks for a pass soon (changes made by the API).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The API changed what ssp wants of container `uid`: it is not converged until the
    /// reconciler says so again (so a waiting caller does not take the old state as done).
    pub fn changed(&self, uid: &str) {
        self.conditions.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(uid);
        self.wake();
    }

    /// Where the reconciler stands with container `uid` (`None`: not looked at since it
    /// last changed).
    pub fn condition(&self, uid: &str) -> Option<Condition> {
        self.conditions.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(uid).cloned()
    }

    /// The last problem with container `uid`, if it is not converged.
    pub fn problem(&self, uid: &str) -> Option<String> {
        match self.condition(uid)? {
            Condition::Failed(retry) => Some(retry.problem),
            Condition::Stuck(why) => Some(why),
            Condition::Converged | Condition::Pending(_) | Condition::Waiting(_) => None,
        }
    }

    pub(super) fn retry(&self, uid: &str) -> Option<plan::Retry> {
        match self.condition(uid)? {
            Condition::Failed(retry) => Some(retry),
            _ => None,
        }
    }

    pub(super) fn settle(&self, uid: &str, condition: Condition) {
        let mut conditions = self.conditions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Waiting for LXD keeps an earlier failure's record (and its backoff).
        if matches!(condition, Condition::Waiting(_)) && matches!(conditions.get(uid), Some(Condition::Failed(_))) {
            return;
        }
        let changed = conditions.get(uid) != Some(&condition);
        conditions.insert(uid.to_string(), condition);
        drop(conditions);
        // What the API shows of it changed: live streams look again.
        if changed {
            self.moved();
        }
    }

    /// Whether container `uid`'s owner account was set up inside at least once (its
    /// instance carries the account tag): from then on a login finds its user.
    pub fn account_set_up(&self, uid: &str) -> bool {
        self.set_up.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(uid)
    }

    pub(super) fn saw(&self, uid: &str, found: Option<&Instance>) {
        let mut set_up = self.set_up.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if found.is_some_and(|i| i.config.contains_key(TAG_ACCOUNT)) {
            set_up.insert(uid.to_string());
        } else {
            set_up.remove(uid);
        }
    }

    pub(super) fn forget(&self, uid: &str) {
        self.set_up.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(uid);
        self.conditions.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(uid);
        self.gpu_health.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(uid);
    }

    /// The last GPU health probe of container `uid`: `healthy`, or what failed.
    pub fn gpu_health(&self, uid: &str) -> Option<String> {
        self.gpu_health.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(uid).cloned()
    }

    /// How many containers have a problem (a failed step, or one that needs a person).
    pub fn problems(&self) -> usize {
        let conditions = self.conditions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        conditions.values().filter(|c| matches!(c, Condition::Failed(_) | Condition::Stuck(_))).count()
    }

    /// How many containers' last GPU health probe failed.
    pub fn failed_gpu_probes(&self) -> usize {
        let health = self.gpu_health.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        health.values().filter(|h| h.as_str() != "healthy").count()
    }

    pub(super) fn set_gpu_health(&self, uid: &str, health: Option<String>) {
        let mut map = self.gpu_health.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let changed = match health {
            Some(text) => map.insert(uid.to_string(), text.clone()).filter(|old| *old == text).is_none(),
            None => map.remove(uid).is_some(),
        };
        drop(map);
        if changed {
            self.moved();
        }
    }
}
