//! The web portal's sign-in rules: the session cookie, the same-origin and CSRF checks, and
//! the sign-in throttle. The decisions are pure functions (table-tested); the session rows
//! live in the store (`ssp_store::WebSession`), the throttle in memory.
//!
//! - **Cookie** `__Host-ssp-session`: `Secure`, `HttpOnly`, `SameSite=Strict`, `Path=/`, no
//!   `Domain` (what the `__Host-` prefix demands, so no other site or subdomain can set or
//!   read it); its value is 32 random bytes, stored only hashed.
//! - **Timeouts**: a session ends after `[portal] session_idle_secs` without a request and
//!   `session_max_secs` after sign-in, whichever comes first; sign-out deletes it at once.
//! - **CSRF**: a request authenticated by the cookie that changes anything must carry the
//!   session's token in `X-CSRF-Token`, and its `Origin` (when sent) must be this server's and
//!   its `Sec-Fetch-Site` (when sent) `same-origin`; sign-in and invitations (no session yet)
//!   get the origin checks. Bearer tokens (the CLI) are not cookies: nothing to forge.
//! - **Throttle**: after 3 failed sign-ins of an account, or from a source address, each next
//!   try waits 1, 2, 4, … up to 60 seconds after the last failure; 15 minutes without one
//!   forget them. Never a permanent lockout (which would let anyone lock anyone out).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::http::Method;

/// The session cookie's name.
pub const COOKIE: &str = "__Host-ssp-session";

/// The header that carries a session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The portal's shared state: the sign-in throttle and the API's port once bound.
#[derive(Debug, Clone, Default)]
pub struct Web {
    /// Failed sign-ins by account and by source.
    pub throttle: Arc<Throttle>,
    /// The HTTPS listener's port, for links made over the local socket.
    pub https_port: Arc<OnceLock<u16>>,
}

/// The session secret in a `Cookie` header, if there is one.
pub fn session_cookie(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

/// The `Set-Cookie` value that gives the browser `secret` for `max_age` seconds.
pub fn set_cookie(secret: &str, max_age: u64) -> String {
    format!("{COOKIE}={secret}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age}")
}

/// The `Set-Cookie` value that makes the browser forget the session.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// Whether a request may change state as far as where it comes from goes: safe methods
/// always; others only when `Sec-Fetch-Site` (if sent) says same-origin (or `none`: typed by
/// the user) and `Origin` (if sent) is `https://HOST` of this very request.
pub fn from_this_site(
    method: &Method,
    origin: Option<&str>,
    fetch_site: Option<&str>,
    host: Option<&str>,
) -> Result<(), &'static str> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    if let Some(site) = fetch_site {
        if site != "same-origin" && site != "none" {
            return Err("a cross-site request may not change anything here");
        }
    }
    if let Some(origin) = origin {
        let own = host.map(|host| format!("https://{host}"));
        if own.as_deref() != Some(origin) {
            return Err("a request from another origin may not change anything here");
        }
    }
    Ok(())
}

/// Compares two secrets in time that does not depend on where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The oldest `created_at` and `last_seen_at` (seconds since the epoch) a session may have
/// at `now` to be valid: older is past the absolute or the idle timeout.
pub fn session_window(now: i64, max_secs: u64, idle_secs: u64) -> (i64, i64) {
    let secs = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    (now.saturating_sub(secs(max_secs)), now.saturating_sub(secs(idle_secs)))
}

/// A new random secret: 32 bytes, base64url without padding.
pub fn secret() -> Result<String, String> {
    random_text(32)
}

/// `bytes` random bytes as base64url without padding (secrets, tickets, session ids).
pub fn random_text(bytes: usize) -> Result<String, String> {
    use base64::Engine;
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).map_err(|e| format!("no randomness: {e}"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buffer))
}

/// Failures forgotten after this long without another.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);

/// Failures that cost nothing yet.
const FREE_FAILURES: u32 = 3;

/// The longest wait.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// How long after its last failure an account or source with `failures` may try again.
pub fn wait_after(failures: u32) -> Duration {
    if failures < FREE_FAILURES {
        return Duration::ZERO;
    }
    let doublings = (failures - FREE_FAILURES).min(16);
    Duration::from_secs(1u64 << doublings).min(MAX_WAIT)
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Account(String),
    Source(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Failed sign-ins by account and by source address, in memory (a restart forgets them;
/// what they slow down is guessing, which a restart does not make faster for long).
#[derive(Debug, Default)]
pub struct Throttle {
    failures: Mutex<HashMap<Key, Failures>>,
}

impl Throttle {
    fn keys(account: &str, source: Option<IpAddr>) -> Vec<Key> {
        let mut keys = vec![Key::Account(account.to_owned())];
        keys.extend(source.map(Key::Source));
        keys
    }

    /// How long `account` from `source` must still wait before a try, if at all.
    pub fn wait(&self, account: &str, source: Option<IpAddr>, now: Instant) -> Option<Duration> {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        Self::keys(account, source)
            .iter()
            .filter_map(|key| failures.get(key))
            .filter_map(|f| (f.last + wait_after(f.count)).checked_duration_since(now))
            .filter(|left| !left.is_zero())
            .max()
    }

    /// Counts a failure of `account` from `source`.
    pub fn failed(&self, account: &str, source: Option<IpAddr>, now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() > 10_000 {
            failures.retain(|_, f| now.duration_since(f.last) < FORGET_AFTER);
        }
        for key in Self::keys(account, source) {
            let entry = failures.entry(key).or_insert(Failures { count: 0, last: now });
            if now.duration_since(entry.last) >= FORGET_AFTER {
                entry.count = 0;
            }
            entry.count += 1;
            entry.last = now;
        }
    }

    /// A success clears the account's failures (not the source's: one right password does
    /// not excuse guessing at others).
    pub fn succeeded(&self, account: &str) {
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(&Key::Account(account.to_owned()));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let table = [
            ("__Host-ssp-session=abc", Some("abc")),
            ("theme=dark; __Host-ssp-session=abc; other=1", Some("abc")),
            ("ssp-session=abc", None),
            ("__Host-ssp-session=", None),
            ("", None),
        ];
        for (header, expected) in table {
            assert_eq!(session_cookie(header), expected, "{header}");
        }
        let set = set_cookie("abc", 60);
        for part in ["__Host-ssp-session=abc", "Path=/", "Secure", "HttpOnly", "SameSite=Strict", "Max-Age=60"] {
            assert!(set.contains(part), "{set} lacks {part}");
        }
        assert!(!set.contains("Domain"), "{set}");
        assert!(clear_cookie().contains("Max-Age=0"));
    }

    #[test]
    fn only_this_site_may_change_state() {
        let host = Some("lab.example:8443");
        let ours = Some("https://lab.example:8443");
        type Case<'a> = (Method, Option<&'a str>, Option<&'a str>, Option<&'a str>, bool);
        let table: [Case; 9] = [
            (Method::GET, Some("https://evil.example"), Some("cross-site"), host, true),
            (Method::POST, ours, Some("same-origin"), host, true),
            (Method::POST, None, None, host, true),
            (Method::POST, ours, Some("none"), host, true),
            (Method::POST, Some("https://evil.example"), None, host, false),
            (Method::POST, ours, Some("cross-site"), host, false),
            (Method::DELETE, None, Some("same-site"), host, false),
            (Method::PUT, Some("http://lab.example:8443"), None, host, false),
            (Method::POST, ours, None, None, false),
        ];
        for (method, origin, site, host, allowed) in table {
            assert_eq!(from_this_site(&method, origin, site, host).is_ok(), allowed, "{method} {origin:?} {site:?}");
        }
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
        let (a, b) = (secret().unwrap(), secret().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
    }

    #[test]
    fn sessions_end_at_the_idle_or_the_absolute_limit() {
        assert_eq!(session_window(10_000, 3600, 600), (6_400, 9_400));
        assert_eq!(session_window(10, u64::MAX, 5), (10 - i64::MAX, 5));
    }

    #[test]
    fn failures_cost_more_each_time_up_to_a_minute() {
        let table = [(0, 0), (2, 0), (3, 1), (4, 2), (5, 4), (8, 32), (9, 60), (40, 60)];
        for (failures, seconds) in table {
            assert_eq!(wait_after(failures), Duration::from_secs(seconds), "{failures}");
        }
    }

    #[test]
    fn the_throttle_slows_an_account_and_a_source_never_for_good() {
        let throttle = Throttle::default();
        let t0 = Instant::now();
        let (ip, other): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..4 {
            throttle.failed("alice", Some(ip), t0);
        }
        assert_eq!(throttle.wait("alice", Some(other), t0), Some(Duration::from_secs(2)), "the account");
        assert_eq!(throttle.wait("bob", Some(ip), t0), Some(Duration::from_secs(2)), "the source");
        assert_eq!(throttle.wait("bob", Some(other), t0), None, "neither");
        assert_eq!(throttle.wait("alice", Some(other), t0 + Duration::from_secs(3)), None, "waited enough");
        throttle.succeeded("alice");
        assert_eq!(throttle.wait("alice", Some(other), t0), None, "a success clears the account");
        assert!(throttle.wait("carol", Some(ip), t0).is_some(), "but not the source");
        // Much later the old failures are forgotten: one more failure costs nothing.
        let later = t0 + FORGET_AFTER + Duration::from_secs(1);
        throttle.failed("dave", Some(ip), later);
        assert_eq!(throttle.wait("dave", Some(ip), later), None);
    }
}
