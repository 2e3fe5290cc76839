//! Who is calling: a bearer token over TLS, a web portal session's cookie over TLS (with the
//! CSRF rules of [`crate::web`] for anything that changes state), or root on the host over
//! the local socket.
//!
//! Tokens are looked up by their SHA-256 hash; a disabled user's tokens fail at once because
//! every request checks the user's flag. Over the unix socket the kernel's peer credentials
//! say who connected: uid 0 is the host's root, who owns the machine anyway and is admin
//! without a token (this is how `scripts/up` creates the first admin).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use ssp_api::Role;

use crate::error::ApiError;
use crate::AppState;

/// How a connection reached the daemon; put on each request by the listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// HTTPS.
    Tls,
    /// The local unix socket, with the peer's uid.
    Local {
        /// The connecting process's uid.
        uid: u32,
    },
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// User name (`root` for the host's root over the socket).
    pub name: String,
    /// Role.
    pub role: Role,
}

/// The name the host's root acts under.
pub const HOST_ROOT: &str = "root";

impl Caller {
    /// Whether the caller is an admin.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Refuses non-admins with `what` in the message.
    pub fn require_admin(&self, what: &str) -> Result<(), ApiError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!("only an admin can {what}")))
        }
    }

    /// Admins may address any user; others only themselves. Anyone else is "missing".
    pub fn may_address(&self, user: &str) -> Result<(), ApiError> {
        if self.is_admin() || self.name == user {
            Ok(())
        } else {
            Err(ApiError::not_found("user", user))
        }
    }

    /// The journal's actor.
    pub fn actor(&self) -> Option<&str> {
        Some(&self.name)
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        if let Some(value) = header {
            let secret = value
                .strip_prefix("Bearer ")
                .ok_or_else(|| ApiError::Unauthorized("the Authorization header must be `Bearer TOKEN`".into()))?
                .trim()
                .to_string();
            let user = state.db.run(move |store| store.authenticate(&secret)).await?;
            return match user {
                Some(user) => {
                    Ok(Caller { name: user.name.as_str().to_string(), role: crate::convert::role(user.role) })
                }
                None => Err(ApiError::Unauthorized(
                    "the token is not valid (revoked, mistyped, or its user is disabled); ask an admin for a new one"
                        .into(),
                )),
            };
        }
        if let Some(Transport::Tls) = parts.extensions.get::<Transport>() {
            if let Some((_, session)) = cookie_session(state, &parts.headers).await? {
                if !matches!(parts.method, axum::http::Method::GET | axum::http::Method::HEAD) {
                    crate::api::session::from_this_site(&parts.method, &parts.uri, &parts.headers)?;
                    let sent = parts.headers.get(crate::web::CSRF_HEADER).and_then(|v| v.to_str().ok());
                    if !sent.is_some_and(|sent| crate::web::same_secret(sent, &session.csrf_token)) {
                        return Err(ApiError::Forbidden(
                            "this request lacks the session's CSRF token (the X-CSRF-Token header); reload the page"
                                .into(),
                        ));
                    }
                }
                return Ok(Caller {
                    name: session.user.name.as_str().to_string(),
                    role: crate::convert::role(session.user.role),
                });
            }
            if parts
                .headers
                .get(axum::http::header::COOKIE)
                .and_then(|v| v.to_str().ok())
                .and_then(crate::web::session_cookie)
                .is_some()
            {
                return Err(ApiError::Unauthorized(
                    "your portal session has ended (signed out, or timed out): sign in again".into(),
                ));
            }
        }
        if let Some(Transport::Local { uid: 0 }) = parts.extensions.get::<Transport>() {
            return Ok(Caller { name: HOST_ROOT.into(), role: Role::Admin });
        }
        Err(ApiError::Unauthorized("no token: send `Authorization: Bearer TOKEN` (see `ssp login`)".into()))
    }
}

/// The portal session of the request's cookie (its secret and row), if the cookie names a
/// live one; a session past its idle or absolute timeout is deleted on the way.
pub async fn cookie_session(
    state: &AppState,
    headers: &axum::http::HeaderMap,
) -> Result<Option<(String, ssp_store::WebSession)>, ApiError> {
    let Some(secret) = headers
        .get(axum::http::header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::web::session_cookie)
        .map(str::to_owned)
    else {
        return Ok(None);
    };
    let portal = &state.settings.raw.portal;
    let now = crate::storage::snapshots::now();
    let (created_after, seen_after) =
        crate::web::session_window(now, portal.session_max_secs, portal.session_idle_secs);
    let key = secret.clone();
    let session = state.db.run(move |store| store.web_session(&key, created_after, seen_after)).await?;
    Ok(session.map(|session| (secret, session)))
}
