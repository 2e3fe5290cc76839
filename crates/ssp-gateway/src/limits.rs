//! Counters shared by all connections: open connections per user (a cap), connections per
//! source address that have not authenticated yet (a cap, as OpenSSH's
//! `PerSourceMaxStartups`: one address cannot tie up the key exchange), and recent
//! authentication failures per source (a growing delay, `ssp_core::gateway::source_penalty`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Failures older than this are forgotten.
const FAILURE_MEMORY: Duration = Duration::from_secs(600);

/// The shared counters.
#[derive(Debug, Default)]
pub(crate) struct Limits {
    connections: Counts<String>,
    startups: Counts<IpAddr>,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

/// Holders per key, each key capped.
#[derive(Debug)]
struct Counts<K>(Mutex<HashMap<K, usize>>);

impl<K> Default for Counts<K> {
    fn default() -> Self {
        Self(Mutex::new(HashMap::new()))
    }
}

impl<K: std::hash::Hash + Eq> Counts<K> {
    /// Counts one more holder of `key`, unless it already has `cap`.
    fn take(&self, key: K, cap: usize) -> bool {
        let mut counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(key).or_insert(0);
        if *count >= cap {
            return false;
        }
        *count += 1;
        true
    }

    /// Counts one holder of `key` fewer, forgetting keys nobody holds.
    fn release(&self, key: &K) {
        let mut counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(key);
            }
        }
    }
}

/// A connection from a source that has not authenticated yet; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct Startup {
    limits: Arc<Limits>,
    source: IpAddr,
}

impl Drop for Startup {
    fn drop(&mut self) {
        self.limits.startups.release(&self.source);
    }
}

/// One open, authenticated connection of a user; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct Slot {
    limits: Arc<Limits>,
    user: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.limits.connections.release(&self.user);
    }
}

impl Limits {
    /// A place for a new connection from `source`, unless it already has `cap` that have not
    /// authenticated.
    pub(crate) fn startup(self: &Arc<Self>, source: IpAddr, cap: usize) -> Option<Startup> {
        self.startups.take(source, cap).then(|| Startup { limits: Arc::clone(self), source })
    }

    /// A slot for `user`, unless they already hold `cap`.
    pub(crate) fn take_slot(self: &Arc<Self>, user: &str, cap: usize) -> Option<Slot> {
        self.connections.take(user.to_string(), cap).then(|| Slot { limits: Arc::clone(self), user: user.to_string() })
    }

    /// Recent failures from `source`.
    pub(crate) fn failures(&self, source: IpAddr) -> u32 {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        match failures.get(&source) {
            Some((_, last)) if last.elapsed() > FAILURE_MEMORY => {
                failures.remove(&source);
                0
            }
            Some((count, _)) => *count,
            None => 0,
        }
    }

    /// Counts a failed connection from `source`.
    pub(crate) fn failed(&self, source: IpAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if failures.len() > 100_000 {
            failures.retain(|_, (_, last)| last.elapsed() <= FAILURE_MEMORY);
        }
        let entry = failures.entry(source).or_insert((0, Instant::now()));
        entry.0 = entry.0.saturating_add(1);
        entry.1 = Instant::now();
    }

    /// A successful login clears its source.
    pub(crate) fn succeeded(&self, source: IpAddr) {
        self.failures.lock().unwrap_or_else(PoisonError::into_inner).remove(&source);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_and_freed() {
        let limits = Arc::new(Limits::default());
        let a = limits.take_slot("alice", 2).unwrap();
        let _b = limits.take_slot("alice", 2).unwrap();
        assert!(limits.take_slot("alice", 2).is_none());
        assert!(limits.take_slot("bob", 2).is_some());
        drop(a);
        assert!(limits.take_slot("alice", 2).is_some());
    }

    #[test]
    fn unauthenticated_connections_are_capped_per_source() {
        let limits = Arc::new(Limits::default());
        let source: IpAddr = "192.0.2.1".parse().unwrap();
        let first = limits.startup(source, 2).unwrap();
        let _second = limits.startup(source, 2).unwrap();
        assert!(limits.startup(source, 2).is_none());
        assert!(limits.startup("192.0.2.9".parse().unwrap(), 2).is_some());
        drop(first);
        assert!(limits.startup(source, 2).is_some());
    }

    #[test]
    fn failures_count_per_source_until_a_success() {
        let limits = Limits::default();
        let source: IpAddr = "192.0.2.1".parse().unwrap();
        limits.failed(source);
        limits.failed(source);
        assert_eq!(limits.failures(source), 2);
        assert_eq!(limits.failures("192.0.2.2".parse().unwrap()), 0);
        limits.succeeded(source);
        assert_eq!(limits.failures(source), 0);
    }
}
