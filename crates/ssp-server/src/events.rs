//! Live state for the web portal: one server-sent-events stream per open portal tab
//! (`GET /api/v1/events`) says *what* changed, and the page loads again only that, through
//! the same API as always — instead of every page polling every few seconds.
//!
//! Three sources feed a stream:
//! - **The API.** Every successful change (a request other than GET/HEAD answered 2xx) is
//!   published by the [`publish_changes`] middleware. Its topic and audience come from the
//!   path alone ([`changes_of`], pure and table-tested), so no handler has to remember to
//!   publish.
//! - **The reconciler.** Its progress ticks when a container moved or its condition changed
//!   (converged, waiting, failed). Each stream then digests what its caller can see of the
//!   containers (store rows and the reconciler's conditions; no LXD call) and says
//!   `containers` only if the digest differs — so a pass that changed nothing, or changed
//!   only someone else's containers, sends nothing.
//! - **The GPU sampler.** Each sample is pushed with its numbers (`gpus` event: utilization
//!   and memory per GPU), which the GPU map draws without asking again.
//!
//! A stream shows only what its caller may see: an admin every change, a user those of their
//! own objects and the shared ones (GPUs, images, shares). Each stream checks its credential
//! again every [`RECHECK`]: after sign-out, a disabled user or a revoked token, it says
//! `ended` and closes. A user holds at most [`MAX_STREAMS_PER_USER`] streams.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::auth::Caller;
use crate::AppState;

/// How often a stream checks that its session or token is still good.
pub const RECHECK: Duration = Duration::from_secs(30);

/// Streams one user may hold open (tabs); the next is refused with 429 and the portal falls
/// back to loading on its own, slowly.
pub const MAX_STREAMS_PER_USER: usize = 32;

/// After a reconciler tick, a stream waits this long before it looks, so that a pass that
/// moves many containers is told as one change.
pub const COALESCE: Duration = Duration::from_millis(300);

/// Who may hear of a change (admins hear of every change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// Everyone signed in: the object is shared (GPUs, images, shares).
    Everyone,
    /// Only admins (a user's account was made).
    Admins,
    /// This user (and admins).
    User(String),
}

/// One change the API made, as a stream sends it (`event: change`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// What changed: `containers`, `snapshots`, `gpus`, `users`, `keys`, `tokens`, `home`,
    /// `images` or `shares`.
    pub topic: &'static str,
    /// Whose object, when it is someone's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Which container, for `containers` and `snapshots`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip)]
    audience: Audience,
}

impl Change {
    fn new(topic: &'static str, audience: Audience) -> Self {
        let owner = match &audience {
            Audience::User(user) => Some(user.clone()),
            Audience::Everyone | Audience::Admins => None,
        };
        Self { topic, owner, name: None, audience }
    }

    fn of_container(topic: &'static str, owner: &str, name: &str) -> Self {
        Self { name: Some(name.to_string()), ..Self::new(topic, Audience::User(owner.to_string())) }
    }

    /// Whether `caller` may hear of it.
    pub fn heard_by(&self, caller: &Caller) -> bool {
        caller.is_admin()
            || match &self.audience {
                Audience::Everyone => true,
                Audience::Admins => false,
                Audience::User(user) => *user == caller.name,
            }
    }
}

/// What a successful `method` on API path `path` (with or without the `/api/v1` prefix)
/// changed. Pure. Requests that change nothing the portal shows (sign-in, tickets, exec,
/// a reconcile pass) and containers made by create, copy or import (the reconciler's tick
/// tells those, to their owners) give nothing.
pub fn changes_of(method: &Method, path: &str) -> Vec<Change> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Vec::new();
    }
    let path = path.strip_prefix(ssp_api::API_PREFIX).unwrap_or(path);
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    match parts.as_slice() {
        ["containers", owner, name, "snapshots", ..] | ["containers", owner, name, "schedule"] => {
            vec![Change::of_container("snapshots", owner, name)]
        }
        ["containers", owner, name, "gpus", ..] => {
            vec![Change::of_container("containers", owner, name), Change::new("gpus", Audience::Everyone)]
        }
        ["containers", _, _, "terminal" | "exec" | "copy"] => Vec::new(),
        ["containers", owner, name, ..] => vec![Change::of_container("containers", owner, name)],
        ["images", ..] => vec![Change::new("images", Audience::Everyone)],
        ["shares", ..] => vec![Change::new("shares", Audience::Everyone)],
        ["gpus", ..] => vec![Change::new("gpus", Audience::Everyone)],
        ["snapshots", "run"] => vec![Change::new("snapshots", Audience::Everyone)],
        ["users"] => vec![Change::new("users", Audience::Admins)],
        ["users", user, "keys", ..] => vec![Change::new("keys", Audience::User(user.to_string()))],
        ["users", user, "tokens", ..] => vec![Change::new("tokens", Audience::User(user.to_string()))],
        ["users", user, "home", ..] => vec![Change::new("home", Audience::User(user.to_string()))],
        ["users", user, ..] => vec![Change::new("users", Audience::User(user.to_string()))],
        _ => Vec::new(),
    }
}

/// The daemon's change hub: the API publishes here, every stream listens.
#[derive(Debug, Clone)]
pub struct Events {
    changes: broadcast::Sender<Change>,
    streams: Arc<Mutex<HashMap<String, usize>>>,
}

impl Default for Events {
    fn default() -> Self {
        // A stream that falls this far behind is told to load everything again (`resync`).
        Self { changes: broadcast::channel(256).0, streams: Arc::default() }
    }
}

impl Events {
    /// Tells every stream whose caller may hear of it.
    pub fn publish(&self, change: Change) {
        // No stream listening is fine.
        let _ = self.changes.send(change);
    }

    /// Listens to the API's changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// A stream slot for `user`, or `None` when they hold [`MAX_STREAMS_PER_USER`] already.
    pub fn open_stream(&self, user: &str) -> Option<StreamSlot> {
        let mut streams = self.streams.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let open = streams.entry(user.to_string()).or_default();
        if *open >= MAX_STREAMS_PER_USER {
            return None;
        }
        *open += 1;
        Some(StreamSlot { user: user.to_string(), streams: Arc::clone(&self.streams) })
    }
}

/// One open stream of a user; dropping it frees the slot.
#[derive(Debug)]
pub struct StreamSlot {
    user: String,
    streams: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut streams = self.streams.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(open) = streams.get_mut(&self.user) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                streams.remove(&self.user);
            }
        }
    }
}

/// Middleware on the API's routes: after a successful change, publishes what it changed.
pub async fn publish_changes(State(state): State<AppState>, request: Request, next: Next) -> Response {
    // Reads change nothing: they pass straight through.
    if matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(request).await;
    }
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let response = next.run(request).await;
    if response.status().is_success() {
        for change in changes_of(&method, &path) {
            state.events.publish(change);
        }
    }
    response
}

/// What a caller sees of the containers, as far as the portal's lists show it: rows
/// (owner, name, phase, desired state, limits, image) with the reconciler's condition and GPU
/// health. Equal digests: nothing to tell.
pub fn containers_digest(
    containers: &[ssp_store::Container],
    condition: impl Fn(&str) -> Option<String>,
    gpu_health: impl Fn(&str) -> Option<String>,
) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for c in containers {
        (c.uid.as_str(), c.owner.as_str(), c.name.as_str(), c.image.as_str(), c.cpus).hash(&mut hasher);
        (c.memory.bytes(), c.disk.bytes(), format!("{:?}/{:?}", c.desired_state, c.phase)).hash(&mut hasher);
        (condition(&c.uid), gpu_health(&c.uid)).hash(&mut hasher);
    }
    hasher.finish()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ssp_api::Role;

    /// A change as the table writes it: topic, owner, name, audience.
    type Shape<'a> = (&'static str, Option<&'a str>, Option<&'a str>, Audience);

    fn caller(name: &str, role: Role) -> Caller {
        Caller { name: name.into(), role }
    }

    fn shape(changes: &[Change]) -> Vec<Shape<'_>> {
        changes.iter().map(|c| (c.topic, c.owner.as_deref(), c.name.as_deref(), c.audience.clone())).collect()
    }

    #[test]
    fn a_path_names_its_topic_and_audience() {
        use Audience::*;
        let alice = || User("alice".into());
        let table: Vec<(Method, &str, Vec<Shape<'_>>)> = vec![
            (
                Method::PUT,
                "/api/v1/containers/alice/dev/state",
                vec![("containers", Some("alice"), Some("dev"), alice())],
            ),
            (Method::POST, "/containers/alice/dev/restart", vec![("containers", Some("alice"), Some("dev"), alice())]),
            (Method::DELETE, "/containers/alice/dev", vec![("containers", Some("alice"), Some("dev"), alice())]),
            (Method::POST, "/containers/alice/dev/snapshots", vec![("snapshots", Some("alice"), Some("dev"), alice())]),
            (
                Method::POST,
                "/containers/alice/dev/snapshots/s1/restore",
                vec![("snapshots", Some("alice"), Some("dev"), alice())],
            ),
            (Method::PUT, "/containers/alice/dev/schedule", vec![("snapshots", Some("alice"), Some("dev"), alice())]),
            (
                Method::POST,
                "/containers/alice/dev/gpus",
                vec![("containers", Some("alice"), Some("dev"), alice()), ("gpus", None, None, Everyone)],
            ),
            (Method::PATCH, "/gpus/3", vec![("gpus", None, None, Everyone)]),
            (Method::POST, "/images", vec![("images", None, None, Everyone)]),
            (Method::DELETE, "/shares/lab", vec![("shares", None, None, Everyone)]),
            (Method::POST, "/snapshots/run", vec![("snapshots", None, None, Everyone)]),
            (Method::POST, "/users", vec![("users", None, None, Admins)]),
            (Method::PATCH, "/users/alice", vec![("users", Some("alice"), None, alice())]),
            (Method::PUT, "/users/alice/gpu-allowlist", vec![("users", Some("alice"), None, alice())]),
            (Method::POST, "/users/alice/keys", vec![("keys", Some("alice"), None, alice())]),
            (Method::DELETE, "/users/alice/tokens/3", vec![("tokens", Some("alice"), None, alice())]),
            (Method::PUT, "/users/alice/home", vec![("home", Some("alice"), None, alice())]),
            // Nothing the portal shows: reads, sign-in, tickets, exec, a pass, and what the
            // reconciler will tell (a new container) once it exists.
            (Method::GET, "/containers/alice/dev", vec![]),
            (Method::POST, "/session", vec![]),
            (Method::POST, "/invites/abc", vec![]),
            (Method::POST, "/containers/alice/dev/terminal", vec![]),
            (Method::POST, "/containers/alice/dev/exec", vec![]),
            (Method::POST, "/containers/alice/dev/copy", vec![]),
            (Method::POST, "/containers", vec![]),
            (Method::POST, "/containers/import", vec![]),
            (Method::POST, "/reconcile", vec![]),
        ];
        for (method, path, want) in table {
            assert_eq!(shape(&changes_of(&method, path)), want, "{method} {path}");
        }
    }

    #[test]
    fn users_hear_their_own_and_shared_changes_admins_all() {
        let alice = caller("alice", Role::User);
        let bob = caller("bob", Role::User);
        let ada = caller("ada", Role::Admin);
        let own = Change::of_container("containers", "alice", "dev");
        let shared = Change::new("gpus", Audience::Everyone);
        let account = Change::new("users", Audience::Admins);
        for (change, alice_hears, bob_hears) in [(&own, true, false), (&shared, true, true), (&account, false, false)] {
            assert_eq!(change.heard_by(&alice), alice_hears, "{change:?}");
            assert_eq!(change.heard_by(&bob), bob_hears, "{change:?}");
            assert!(change.heard_by(&ada), "{change:?}");
        }
    }

    #[test]
    fn streams_per_user_are_capped_and_freed() {
        let events = Events::default();
        let slots: Vec<StreamSlot> = (0..MAX_STREAMS_PER_USER).map(|_| events.open_stream("alice").unwrap()).collect();
        assert!(events.open_stream("alice").is_none());
        assert!(events.open_stream("bob").is_some(), "one user's streams do not limit another's");
        drop(slots);
        assert!(events.open_stream("alice").is_some());
    }

    #[test]
    fn the_digest_moves_with_what_the_lists_show() {
        let row = |phase| ssp_store::Container {
            uid: "u1".into(),
            owner: ssp_core::names::Name::parse("alice").unwrap(),
            name: ssp_core::names::Name::parse("dev").unwrap(),
            image: "debian-12".into(),
            cpus: 2,
            memory: ssp_core::size::ByteSize::from_bytes(1 << 30),
            disk: ssp_core::size::ByteSize::from_bytes(5 << 30),
            desired_state: ssp_store::DesiredState::Running,
            phase,
            created_at: 0,
            source: ssp_store::ContainerSource::Image,
            desktop: false,
        };
        let none = |_: &str| None;
        let base = containers_digest(&[row(ssp_store::ContainerPhase::Ready)], none, none);
        assert_eq!(base, containers_digest(&[row(ssp_store::ContainerPhase::Ready)], none, none));
        assert_ne!(base, containers_digest(&[row(ssp_store::ContainerPhase::Deleting)], none, none));
        assert_ne!(
            base,
            containers_digest(&[row(ssp_store::ContainerPhase::Ready)], |_| Some("converged".into()), none)
        );
        assert_ne!(base, containers_digest(&[row(ssp_store::ContainerPhase::Ready)], none, |_| Some("healthy".into())));
        assert_ne!(base, containers_digest(&[], none, none));
    }
}
