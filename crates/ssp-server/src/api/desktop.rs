//! A container's desktop over the API: `GET`/`PUT /api/v1/containers/{owner}/{name}/desktop`
//! (offer it or not, and how it stands), `POST …/desktop/ticket` (starts the owner's session
//! when none runs, connects to it and hands out a single-use ticket for that connection),
//! `DELETE …/desktop/session` (ends the session), and the websocket
//! `GET /api/v1/desktop?ticket=T` that carries the session's RFB bytes to noVNC.
//!
//! The websocket takes no token (browsers cannot set headers on one): the ticket is its
//! credential, checked with the exact `Origin` before the upgrade, as the terminal's is. A
//! caller who may not see the container gets the answer of a missing one everywhere.

use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use ssp_api as api;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use utoipa::{Modify, OpenApi};

use crate::auth::Caller;
use crate::auth::Transport;
use crate::desktop::{self, Binding};
use crate::error::{ApiError, ApiJson, ApiResult};
use crate::AppState;

use super::shared::visible;

/// The desktop's paths in the OpenAPI document.
#[derive(OpenApi)]
#[openapi(paths(show, change, ticket, end, connect))]
pub struct DesktopApi;

/// Merges [`DesktopApi`] into the main document.
pub struct DesktopDoc;

impl Modify for DesktopDoc {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi.merge(DesktopApi::openapi());
    }
}

/// The desktop's routes, under `/api/v1`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/containers/{owner}/{name}/desktop", get(show).put(change))
        .route("/containers/{owner}/{name}/desktop/ticket", post(ticket))
        .route("/containers/{owner}/{name}/desktop/session", axum::routing::delete(end))
        .route("/desktop", get(connect))
}

/// The largest websocket message a viewer may send (a clipboard paste).
const MAX_MESSAGE: usize = 4 * 1024 * 1024;

/// How much of the session's output goes into one websocket message at most.
const CHUNK: usize = 256 * 1024;

/// How often the server pings the socket.
const PING: Duration = Duration::from_secs(30);

/// How `row`'s desktop stands.
async fn view(
    state: &AppState,
    row: &ssp_store::Container,
    uri: &Uri,
    headers: &HeaderMap,
    transport: Option<Extension<Transport>>,
) -> ApiResult<api::Desktop> {
    let instance = crate::instance::lxd_name(row);
    let recorded = match state.lxd.instance(&instance).await {
        Ok(found) => found.value.config.get(crate::instance::TAG_DESKTOP).cloned(),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(ApiError::lxd_on(&format!("{}/{}", row.owner, row.name), e)),
    };
    let expected = crate::instance::desktop_digest(row);
    let problem = state.reconciler.problem(&row.uid);
    let (desktop_state, problem) =
        desktop::state_of(row.desktop, recorded.as_deref(), expected.as_deref(), problem.as_deref());
    let session = if desktop_state == api::DesktopState::Ready && crate::terminal::runnable(row).is_ok() {
        state.desktops.session(&instance, row.owner.as_str()).await.unwrap_or_else(|e| {
            tracing::warn!("desktop: the session of {}/{}: {e}", row.owner, row.name);
            None
        })
    } else {
        None
    };
    let portal = super::session::portal_url(state, uri, headers, transport);
    let host = portal_host(&portal);
    let port = state.gateway.as_ref().and_then(|g| g.listen.rsplit_once(':')).and_then(|(_, p)| p.parse().ok());
    Ok(api::Desktop {
        enabled: row.desktop,
        state: desktop_state,
        problem,
        session,
        idle_timeout_secs: state.desktops.idle_timeout().as_secs(),
        ssh_forward: desktop::ssh_forward(row.owner.as_str(), row.name.as_str(), host, port.unwrap_or(2222)),
    })
}

/// The host part of the portal's address (`https://gpu1.lab:8443` → `gpu1.lab`).
fn portal_host(url: &str) -> &str {
    let authority = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = authority.split('/').next().unwrap_or(authority);
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority.rsplit_once(':').map_or(authority, |(host, _)| host)
}

/// Whether the container offers its owner a desktop, and how it stands: being set up,
/// ready, or failed (with why); the session while one runs (viewers, memory, when it ends
/// for idleness); and the SSH command for a native VNC viewer.
#[utoipa::path(get, path = "/api/v1/containers/{owner}/{name}/desktop", tag = "desktop",
    responses((status = 200, body = api::Desktop), (status = 404, body = api::ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    uri: Uri,
    headers: HeaderMap,
    transport: Option<Extension<Transport>>,
    Path((owner, name)): Path<(String, String)>,
) -> ApiResult<Json<api::Desktop>> {
    let row = visible(&state, &caller, &owner, &name).await?;
    Ok(Json(view(&state, &row, &uri, &headers, transport).await?))
}

/// Offers a desktop in the container (ssp installs it inside: packages when the image lacks
/// them, then its session service) or stops offering it (sessions end; installed packages
/// and people's files stay). The reconciler does the work; `state` says when it is ready.
#[utoipa::path(put, path = "/api/v1/containers/{owner}/{name}/desktop", tag = "desktop",
    request_body = api::DesktopChange,
    responses((status = 200, body = api::Desktop), (status = 404, body = api::ErrorBody)))]
pub async fn change(
    State(state): State<AppState>,
    caller: Caller,
    uri: Uri,
    headers: HeaderMap,
    transport: Option<Extension<Transport>>,
    Path((owner, name)): Path<(String, String)>,
    ApiJson(request): ApiJson<api::DesktopChange>,
) -> ApiResult<Json<api::Desktop>> {
    let mut row = visible(&state, &caller, &owner, &name).await?;
    if row.desktop != request.enabled {
        let actor = caller.name.clone();
        let (o, n) = (row.owner.to_string(), row.name.to_string());
        state.db.run(move |store| store.set_desktop(Some(&actor), &o, &n, request.enabled)).await?;
        if !request.enabled {
            // The service goes with the reconciler's next step; its socket goes now.
            state.desktops.forget(&crate::instance::lxd_name(&row), row.owner.as_str()).await;
        }
        state.reconciler.wake();
        row.desktop = request.enabled;
    }
    Ok(Json(view(&state, &row, &uri, &headers, transport).await?))
}

/// A ticket for the container's desktop: starts the owner's session when none runs (its
/// desktop comes up within seconds), connects to it, and holds the connection for the
/// websocket. Present the ticket once, within 30 s, to `GET /api/v1/desktop`.
#[utoipa::path(post, path = "/api/v1/containers/{owner}/{name}/desktop/ticket", tag = "desktop",
    responses((status = 200, body = api::DesktopTicket), (status = 404, body = api::ErrorBody),
        (status = 409, description = "not running, no desktop offered, or it is still being set up", body = api::ErrorBody),
        (status = 503, description = "the session could not be started or reached", body = api::ErrorBody)))]
pub async fn ticket(
    State(state): State<AppState>,
    caller: Caller,
    Path((owner, name)): Path<(String, String)>,
) -> ApiResult<Json<api::DesktopTicket>> {
    let row = visible(&state, &caller, &owner, &name).await?;
    desktop::openable(&row)?;
    let instance = crate::instance::lxd_name(&row);
    let user = row.owner.to_string();
    let connection = state.desktops.open(&instance, &user).await?;
    let binding =
        Binding { user, object: format!("{}/{}", row.owner, row.name), container_uid: row.uid.clone(), instance };
    let ticket = state.desktops.issue(binding, connection)?;
    Ok(Json(api::DesktopTicket { ticket, expires_in_secs: crate::terminal::TICKET_LIFETIME.as_secs() }))
}

/// Ends the owner's desktop session: its programs end and its viewers are disconnected.
#[utoipa::path(delete, path = "/api/v1/containers/{owner}/{name}/desktop/session", tag = "desktop",
    responses((status = 204), (status = 404, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
pub async fn end(
    State(state): State<AppState>,
    caller: Caller,
    Path((owner, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let row = visible(&state, &caller, &owner, &name).await?;
    crate::terminal::runnable(&row)?;
    state.desktops.end(&crate::instance::lxd_name(&row), row.owner.as_str()).await.map_err(ApiError::Unavailable)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Where the websocket's ticket comes.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TicketQuery {
    /// The ticket from `POST /api/v1/containers/{owner}/{name}/desktop/ticket`.
    pub ticket: String,
}

/// The one answer to a missing, used, expired or forged ticket and a missing or foreign
/// `Origin`: which of them it was is not said.
fn refused() -> Response {
    ApiError::Forbidden(
        "the desktop needs a fresh ticket (POST /api/v1/containers/OWNER/NAME/desktop/ticket), presented once within \
         30 s, from this site's own pages"
            .into(),
    )
    .into_response()
}

/// The desktop's websocket: RFB (the VNC protocol, version 3.8 offered) in binary frames
/// both ways, with the security type *None* — ssp authenticated to the session already.
/// Subprotocol `binary` is accepted when asked for (noVNC asks).
#[utoipa::path(get, path = "/api/v1/desktop", tag = "desktop", params(TicketQuery), security(()),
    responses((status = 101, description = "the websocket"),
        (status = 403, description = "no fresh ticket, or not this site's own `Origin`", body = api::ErrorBody),
        (status = 404, description = "the container is gone", body = api::ErrorBody)))]
pub async fn connect(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    query: Result<Query<TicketQuery>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    // Taken out on first presentation, whatever happens next.
    let redeemed = query.ok().and_then(|Query(query)| state.desktops.redeem(&query.ticket));
    let origin = headers.get(header::ORIGIN).and_then(|value| value.to_str().ok());
    let host = headers.get(header::HOST).and_then(|value| value.to_str().ok()).or(uri.authority().map(|a| a.as_str()));
    let (binding, connection) = match redeemed {
        Some(redeemed) if crate::terminal::origin_allowed(origin, host) => redeemed,
        _ => return refused(),
    };
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade.max_message_size(MAX_MESSAGE).max_frame_size(MAX_MESSAGE).protocols(["binary"]),
        Err(rejection) => return rejection.into_response(),
    };
    let uid = binding.container_uid.clone();
    match state.db.run(move |store| store.container_by_uid(&uid)).await {
        Ok(row) if row.desktop => {}
        Ok(_) | Err(ssp_store::Error::NotFound { .. }) => {
            return ApiError::not_found("container", &binding.object).into_response()
        }
        Err(e) => return ApiError::from(e).into_response(),
    }
    upgrade.on_failed_upgrade(|e| tracing::debug!("desktop: the websocket upgrade failed: {e}")).on_upgrade(
        move |socket| async move {
            tracing::info!("desktop: {} watches {}", binding.user, binding.object);
            relay(socket, connection).await;
        },
    )
}

/// Admits the browser (RFB's security type *None*) and relays until either side ends: the
/// session's output in messages of up to [`CHUNK`] bytes, the viewer's input as it comes.
async fn relay(socket: WebSocket, connection: ssp_gateway::desktop::DesktopConnection) {
    let ssp_gateway::desktop::DesktopConnection { stream, viewer: _viewer } = connection;
    let (mut sink, stream_in) = socket.split();
    // The viewer's bytes: binary messages, in order; pings and text are not RFB.
    let incoming = stream_in
        .take_while(|message| std::future::ready(!matches!(message, Ok(Message::Close(_)) | Err(_))))
        .filter_map(|message| {
            std::future::ready(match message {
                Ok(Message::Binary(bytes)) => Some(Ok::<Bytes, std::io::Error>(bytes)),
                _ => None,
            })
        });
    let mut from_viewer = tokio_util::io::StreamReader::new(Box::pin(incoming));
    {
        let to_viewer = (&mut sink)
            .sink_map_err(std::io::Error::other)
            .with(|bytes: Bytes| std::future::ready(Ok::<Message, std::io::Error>(Message::Binary(bytes))));
        let mut to_viewer = tokio_util::io::SinkWriter::new(tokio_util::io::CopyToBytes::new(to_viewer));
        let mut viewer_side = tokio::io::join(&mut from_viewer, &mut to_viewer);
        if let Err(e) = ssp_gateway::rfb::admit_viewer(&mut viewer_side).await {
            tracing::info!("desktop: the viewer's handshake failed: {e}");
            return;
        }
    }
    let (mut from_session, mut to_session) = stream.into_split();
    let up = async {
        let _ = tokio::io::copy(&mut from_viewer, &mut to_session).await;
        let _ = to_session.shutdown().await;
    };
    let down = async {
        let mut buffer = vec![0u8; CHUNK];
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING, PING);
        let session_ended = loop {
            tokio::select! {
                read = from_session.read(&mut buffer) => match read {
                    Ok(0) | Err(_) => break true,
                    Ok(n) => {
                        if sink.send(Message::Binary(Bytes::copy_from_slice(&buffer[..n]))).await.is_err() {
                            break false;
                        }
                    }
                },
                _ = ping.tick() => {
                    if sink.send(Message::Ping(Bytes::new())).await.is_err() {
                        break false;
                    }
                }
            }
        };
        if session_ended {
            // Said to the page, which tells the user (the terminal's code for "ssp ended it").
            let close = CloseFrame { code: crate::terminal::ENDED, reason: "the desktop session ended".into() };
            let _ = sink.send(Message::Close(Some(close))).await;
        }
        let _ = sink.close().await;
    };
    tokio::select! {
        () = up => {},
        () = down => {},
    }
}

#[cfg(test)]
mod tests {
    use super::portal_host;
    use utoipa::OpenApi;

    #[test]
    fn desktop_routes_are_documented() {
        let doc = crate::api::ApiDoc::openapi();
        for path in [
            "/api/v1/containers/{owner}/{name}/desktop",
            "/api/v1/containers/{owner}/{name}/desktop/ticket",
            "/api/v1/containers/{owner}/{name}/desktop/session",
            "/api/v1/desktop",
        ] {
            assert!(doc.paths.paths.contains_key(path), "{path}");
        }
    }

    #[test]
    fn the_ssh_host_is_the_portal_s_host() {
        for (url, host) in [
            ("https://gpu1.lab.example:8443", "gpu1.lab.example"),
            ("https://gpu1.lab.example", "gpu1.lab.example"),
            ("https://127.0.0.1:8443/", "127.0.0.1"),
            ("https://[::1]:8443", "::1"),
        ] {
            assert_eq!(portal_host(url), host, "{url}");
        }
    }
}
