//! `GET /api/v1/events`: the portal's live stream of what changed (server-sent events; see
//! [`crate::events`] for the sources and who hears what). Events:
//! - `ready` (`{}`) once, when the stream is open;
//! - `change` (`{"topic", "owner"?, "name"?}`): load that topic again;
//! - `gpus` (`{"sampled_at", "gpus": [{"index", "utilization", "memory_used"}]}`): a sample;
//! - `resync` (`{}`): the stream fell behind; load everything again;
//! - `ended` (`{}`): the session or token is no longer good; the stream closes.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::Router;
use futures_util::Stream;
use serde::Serialize;
use tokio::sync::{broadcast, watch};
use utoipa::{Modify, OpenApi};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::events::{self, Change, StreamSlot};
use crate::AppState;

/// The stream's route, under `/api/v1`.
pub fn routes() -> Router<AppState> {
    Router::new().route("/events", get(stream))
}

#[derive(OpenApi)]
#[openapi(paths(stream))]
struct EventsApi;

/// The stream's part of the OpenAPI document.
pub struct EventsDoc;

impl Modify for EventsDoc {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi.merge(EventsApi::openapi());
    }
}

/// A GPU sample as the `gpus` event carries it.
#[derive(Debug, Serialize)]
struct GpuSamples {
    sampled_at: Option<i64>,
    gpus: Vec<GpuNow>,
}

#[derive(Debug, Serialize)]
struct GpuNow {
    index: u32,
    utilization: u32,
    memory_used: u64,
}

/// What the stream checks again every [`events::RECHECK`].
#[derive(Debug)]
enum Credential {
    /// A portal session's cookie secret.
    Session(String),
    /// An API token.
    Token(String),
    /// The host's root over the local socket: good while the daemon runs.
    HostRoot,
}

/// Live changes for the caller, as server-sent events (see the module's doc for the events).
/// A user holds at most 32 streams; more answer 429.
#[utoipa::path(get, path = "/api/v1/events", tag = "events",
    responses(
        (status = 200, content_type = "text/event-stream",
            description = "events `ready`, `change`, `gpus`, `resync`, `ended` (see the module doc)"),
        (status = 429, body = ssp_api::ErrorBody)))]
pub async fn stream(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let credential = credential_of(&headers);
    let slot = state.events.open_stream(&caller.name).ok_or_else(|| {
        ApiError::Throttled(
            format!(
                "{} live streams are open for {} (one per portal tab); close some tabs",
                events::MAX_STREAMS_PER_USER,
                caller.name
            ),
            30,
        )
    })?;
    let mut listener = Listener {
        changes: state.events.subscribe(),
        progress: state.reconciler.progress(),
        sampled: state.gpus.sampled(),
        recheck: tokio::time::interval_at(tokio::time::Instant::now() + events::RECHECK, events::RECHECK),
        digest: 0,
        started: false,
        ended: false,
        state,
        caller,
        credential,
        _slot: slot,
    };
    listener.digest = listener.containers_digest().await?;
    let stream = futures_util::stream::unfold(listener, |mut listener| async move {
        listener.next().await.map(|event| (Ok(event), listener))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(20))))
}

fn credential_of(headers: &HeaderMap) -> Credential {
    if let Some(token) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Credential::Token(token.trim().to_string());
    }
    match headers.get(axum::http::header::COOKIE).and_then(|v| v.to_str().ok()).and_then(crate::web::session_cookie) {
        Some(secret) => Credential::Session(secret.to_string()),
        // The extractor let the request in without either: the host's root.
        None => Credential::HostRoot,
    }
}

/// One open stream's sources and what it last told.
struct Listener {
    state: AppState,
    caller: Caller,
    credential: Credential,
    changes: broadcast::Receiver<Change>,
    progress: watch::Receiver<u64>,
    sampled: watch::Receiver<u64>,
    recheck: tokio::time::Interval,
    digest: u64,
    started: bool,
    ended: bool,
    _slot: StreamSlot,
}

impl Listener {
    /// The next event to send, or `None` to close the stream.
    async fn next(&mut self) -> Option<Event> {
        if !self.started {
            self.started = true;
            return Some(Event::default().event("ready").data("{}"));
        }
        loop {
            if self.ended {
                return None;
            }
            tokio::select! {
                received = self.changes.recv() => match received {
                    Ok(change) if change.heard_by(&self.caller) => {
                        // The caller's account or tokens changed (disabled, token revoked):
                        // check at once rather than at the next recheck.
                        if matches!(change.topic, "users" | "tokens") && !self.still_good().await {
                            self.ended = true;
                            return Some(Event::default().event("ended").data("{}"));
                        }
                        return Some(json_event("change", &change));
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => return Some(Event::default().event("resync").data("{}")),
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                moved = self.progress.changed() => {
                    if moved.is_err() {
                        return None;
                    }
                    tokio::time::sleep(events::COALESCE).await;
                    self.progress.borrow_and_update();
                    match self.containers_digest().await {
                        Ok(digest) if digest != self.digest => {
                            self.digest = digest;
                            return Some(json_event("change", &serde_json::json!({ "topic": "containers" })));
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!("live stream of {}: {e}", self.caller.name),
                    }
                }
                sampled = self.sampled.changed() => {
                    if sampled.is_err() {
                        return None;
                    }
                    self.sampled.borrow_and_update();
                    return Some(json_event("gpus", &self.gpu_samples()));
                }
                _ = self.recheck.tick() => {
                    if !self.still_good().await {
                        self.ended = true;
                        return Some(Event::default().event("ended").data("{}"));
                    }
                }
            }
        }
    }

    fn gpu_samples(&self) -> GpuSamples {
        let (samples, sampled_at) = self.state.gpus.samples();
        GpuSamples {
            sampled_at,
            gpus: samples
                .iter()
                .map(|s| GpuNow { index: s.index, utilization: s.utilization, memory_used: s.memory_used })
                .collect(),
        }
    }

    /// The digest of the containers the caller sees (admins: all).
    async fn containers_digest(&self) -> ApiResult<u64> {
        let (admin, name) = (self.caller.is_admin(), self.caller.name.clone());
        let rows = self
            .state
            .db
            .run(move |store| if admin { store.all_containers() } else { store.containers_of(&name) })
            .await?;
        let reconciler = &self.state.reconciler;
        Ok(events::containers_digest(
            &rows,
            |uid| reconciler.condition(uid).map(|c| format!("{c:?}")),
            |uid| reconciler.gpu_health(uid),
        ))
    }

    /// Whether the stream's session or token still lets its caller in (a failure to ask the
    /// store keeps the stream: the next check decides).
    async fn still_good(&self) -> bool {
        let check = match &self.credential {
            Credential::HostRoot => return true,
            Credential::Session(secret) => {
                let secret = secret.clone();
                let portal = &self.state.settings.raw.portal;
                let (created_after, seen_after) = crate::web::session_window(
                    crate::storage::snapshots::now(),
                    portal.session_max_secs,
                    portal.session_idle_secs,
                );
                self.state.db.run(move |store| store.web_session_alive(&secret, created_after, seen_after)).await
            }
            Credential::Token(secret) => {
                let secret = secret.clone();
                self.state.db.run(move |store| Ok(store.authenticate(&secret)?.is_some())).await
            }
        };
        check.unwrap_or(true)
    }
}

fn json_event(name: &str, data: &impl Serialize) -> Event {
    Event::default().event(name).data(serde_json::to_string(data).unwrap_or_else(|_| "{}".into()))
}
