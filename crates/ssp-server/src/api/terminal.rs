//! The web terminal's two doors: `POST /api/v1/containers/{owner}/{name}/terminal` (an API
//! call like any other: a caller who may not see the container gets the same answer as for a
//! missing one) hands out a single-use ticket, and `GET /api/v1/terminal?ticket=T` upgrades to
//! the websocket that carries the terminal. The websocket takes no token (browsers cannot set
//! headers on one): the ticket is its credential, checked with the exact `Origin` before the
//! upgrade. Sessions, tickets and the rules are `crate::terminal`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use ssp_api as api;
use utoipa::{Modify, OpenApi};

use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiResult};
use crate::terminal::{self, Binding, Command, Farewell, Frame, Opened};
use crate::AppState;

use super::shared::visible;

/// The terminal's paths in the OpenAPI document.
#[derive(OpenApi)]
#[openapi(paths(ticket, connect))]
pub struct TerminalApi;

/// Merges [`TerminalApi`] into the main document.
pub struct TerminalDoc;

impl Modify for TerminalDoc {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi.merge(TerminalApi::openapi());
    }
}

/// The terminal's routes, under `/api/v1`.
pub fn routes() -> Router<AppState> {
    Router::new().route("/containers/{owner}/{name}/terminal", post(ticket)).route("/terminal", get(connect))
}

/// The largest websocket message a client may send (a paste).
const MAX_MESSAGE: usize = 1024 * 1024;

/// How often the server pings an attached socket.
const PING: Duration = Duration::from_secs(30);

/// A socket that sends nothing (not even a pong) for this long is taken for dead: its session
/// is then detached and its grace period starts.
const SILENCE: Duration = Duration::from_secs(75);

/// A ticket for the terminal of a container: a new session, or the one named if it still
/// runs and is the caller's in this container. Present it once, within 30 s, to
/// `GET /api/v1/terminal`.
#[utoipa::path(post, path = "/api/v1/containers/{owner}/{name}/terminal", tag = "terminal",
    request_body = api::TerminalRequest,
    responses((status = 200, body = api::TerminalTicket), (status = 400, body = api::ErrorBody),
        (status = 404, body = api::ErrorBody),
        (status = 409, description = "not running, still being set up, or every session of the caller attached (`busy`)",
            body = api::ErrorBody)))]
pub async fn ticket(
    State(state): State<AppState>,
    caller: Caller,
    Path((owner, name)): Path<(String, String)>,
    ApiJson(request): ApiJson<api::TerminalRequest>,
) -> ApiResult<Json<api::TerminalTicket>> {
    let row = visible(&state, &caller, &owner, &name).await?;
    if request.cols == 0 || request.rows == 0 {
        return Err(ApiError::BadRequest("cols and rows must be at least 1".into()));
    }
    terminal::runnable(&row)?;
    if !state.reconciler.account_set_up(&row.uid) {
        return Err(ApiError::Conflict(format!(
            "container {owner}/{name} is still being set up (its owner's account); try again in a minute"
        )));
    }
    let binding = Binding {
        user: caller.name.clone(),
        owner: row.owner.to_string(),
        name: row.name.to_string(),
        container_uid: row.uid.clone(),
    };
    let issued = state.terminals.issue(binding, request.session.as_deref(), request.cols, request.rows)?;
    Ok(Json(api::TerminalTicket {
        ticket: issued.ticket,
        session: issued.session,
        expires_in_secs: terminal::TICKET_LIFETIME.as_secs(),
    }))
}

/// Where the websocket's ticket comes.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TicketQuery {
    /// The ticket from `POST /api/v1/containers/{owner}/{name}/terminal`.
    pub ticket: String,
}

/// The one answer to a missing, used, expired or forged ticket and a missing or foreign
/// `Origin`: which of them it was is not said.
fn refused() -> Response {
    ApiError::Forbidden(
        "the terminal needs a fresh ticket (POST /api/v1/containers/OWNER/NAME/terminal), presented once within 30 s, \
         from this site's own pages"
            .into(),
    )
    .into_response()
}

/// The terminal's websocket. Binary frames: output from the server, keystrokes from the
/// client. Text frames from the client: `{"type":"resize","cols":N,"rows":N}`,
/// `{"type":"signal","signal":N}` (HUP 1, INT 2, QUIT 3, KILL 9, USR1 10, USR2 12, TERM 15);
/// from the server `{"type":"exit","code":N}` when the shell ended, then a close (1000). A
/// socket another one took over is closed with 4001, one whose session ssp ended otherwise
/// with 4002. A re-attaching socket receives the session's recent output first.
#[utoipa::path(get, path = "/api/v1/terminal", tag = "terminal", params(TicketQuery), security(()),
    responses((status = 101, description = "the websocket"),
        (status = 403, description = "no fresh ticket, or not this site's own `Origin`", body = api::ErrorBody),
        (status = 404, description = "the container is gone", body = api::ErrorBody),
        (status = 409, body = api::ErrorBody)))]
pub async fn connect(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    query: Result<Query<TicketQuery>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    // Taken out on first presentation, whatever happens next.
    let ticket = query.ok().and_then(|Query(query)| state.terminals.redeem(&query.ticket));
    let origin = headers.get(header::ORIGIN).and_then(|value| value.to_str().ok());
    // HTTP/2 carries the host in the request's authority, not in a `Host` header.
    let host = headers.get(header::HOST).and_then(|value| value.to_str().ok()).or(uri.authority().map(|a| a.as_str()));
    let ticket = match ticket {
        Some(ticket) if terminal::origin_allowed(origin, host) => ticket,
        _ => return refused(),
    };
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade.max_message_size(MAX_MESSAGE).max_frame_size(MAX_MESSAGE),
        Err(rejection) => return rejection.into_response(),
    };
    let binding = ticket.binding.clone();
    let object = binding.object();
    let (owner, name) = (binding.owner.clone(), binding.name.clone());
    let row = match state.db.run(move |store| store.container(&owner, &name)).await {
        Ok(row) if row.uid == binding.container_uid => row,
        Ok(_) | Err(ssp_store::Error::NotFound { .. }) => {
            return ApiError::not_found("container", &object).into_response()
        }
        Err(e) => return ApiError::from(e).into_response(),
    };
    if let Err(e) = terminal::runnable(&row) {
        return e.into_response();
    }
    let terminals = state.terminals.clone();
    match terminals.open(ticket) {
        Err(e) => e.into_response(),
        // Exactly one of the two callbacks runs: what `open` recorded goes to the socket, or
        // is undone.
        Ok(Opened::Existing(existing)) => {
            let existing = Shared::new(existing);
            let (on_failure, on_failure_terminals) = (existing.clone(), terminals.clone());
            upgrade
                .on_failed_upgrade(move |e| {
                    tracing::debug!("terminal: the websocket upgrade failed: {e}");
                    if let Some(existing) = on_failure.take() {
                        on_failure_terminals.unattached(existing);
                    }
                })
                .on_upgrade(move |socket| async move {
                    if let Some(existing) = existing.take() {
                        let attached = terminals.attach(existing).await;
                        serve(socket, attached).await;
                    }
                })
        }
        Ok(Opened::New(reserved)) => {
            let reserved = Shared::new(reserved);
            let (on_failure, on_failure_terminals) = (reserved.clone(), terminals.clone());
            upgrade
                .on_failed_upgrade(move |e| {
                    tracing::debug!("terminal: the websocket upgrade failed: {e}");
                    if let Some(reserved) = on_failure.take() {
                        on_failure_terminals.abandon(reserved);
                    }
                })
                .on_upgrade(move |socket| async move {
                    if let Some(reserved) = reserved.take() {
                        let attached = terminals.start(reserved, row);
                        serve(socket, attached).await;
                    }
                })
        }
    }
}

/// A value for whichever of two callbacks runs.
struct Shared<T>(Arc<Mutex<Option<T>>>);

impl<T> Shared<T> {
    fn new(value: T) -> Self {
        Self(Arc::new(Mutex::new(Some(value))))
    }

    fn take(&self) -> Option<T> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
    }
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

/// Carries one socket: its keystrokes, resizes and signals to the session (from a task of
/// their own, so slow input never holds output back), the session's frames to it, and pings.
async fn serve(socket: WebSocket, attached: terminal::Socket) {
    let terminal::Socket { mut frames, mut farewell, input, commands } = attached;
    let (mut sink, mut stream) = socket.split();
    let mut reader = tokio::spawn(async move {
        while let Ok(Some(Ok(message))) = tokio::time::timeout(SILENCE, stream.next()).await {
            let command = match message {
                Message::Binary(keys) => {
                    if input.send(keys).await.is_err() {
                        break;
                    }
                    continue;
                }
                Message::Text(text) => match terminal::parse_client_text(text.as_str()) {
                    Ok(api::TerminalClientMessage::Resize { cols, rows }) => Command::Resize(cols, rows),
                    Ok(api::TerminalClientMessage::Signal { signal }) => Command::Signal(signal),
                    Err(why) => {
                        tracing::debug!("terminal: ignored a text frame: {why}");
                        continue;
                    }
                },
                Message::Close(_) => break,
                Message::Ping(_) | Message::Pong(_) => continue,
            };
            if commands.send(command).await.is_err() {
                break;
            }
        }
    });
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING, PING);
    let close = loop {
        tokio::select! {
            frame = frames.recv() => match frame {
                Some(Frame::Output(bytes)) => {
                    if sink.send(Message::Binary(bytes)).await.is_err() {
                        break None;
                    }
                }
                Some(Frame::Exit(code)) => {
                    let exit = serde_json::to_string(&api::TerminalServerMessage::Exit { code }).unwrap_or_default();
                    let _ = sink.send(Message::Text(exit.into())).await;
                    break Some((close_code::NORMAL, "the shell ended"));
                }
                None => break Some(match farewell.try_recv() {
                    Ok(Farewell::TakenOver) => (terminal::TAKEN_OVER, "another window took this terminal over"),
                    Err(_) => (terminal::ENDED, "the terminal session ended"),
                }),
            },
            _ = &mut reader => break None,
            _ = ping.tick() => {
                if sink.send(Message::Ping(Bytes::new())).await.is_err() {
                    break None;
                }
            }
        }
    };
    reader.abort();
    if let Some((code, reason)) = close {
        let _ = sink.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
    }
    let _ = sink.close().await;
}

#[cfg(test)]
mod tests {
    use utoipa::OpenApi;

    #[test]
    fn terminal_routes_are_documented() {
        let doc = crate::api::ApiDoc::openapi();
        assert!(doc.paths.paths.contains_key("/api/v1/containers/{owner}/{name}/terminal"));
        assert!(doc.paths.paths.contains_key("/api/v1/terminal"));
    }
}
