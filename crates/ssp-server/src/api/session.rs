//! `/api/v1/session`, `/api/v1/users/{user}/invite` and `/api/v1/invites/{token}`: the web
//! portal's sign-in, sign-out and one-time invitations (the rules are in [`crate::web`]).
//! Sign-in and invitations answer only over HTTPS: a session lives in a `Secure` cookie.

use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use ssp_api as api;
use ssp_core::sshkey::PublicKey;

use crate::auth::{Caller, Transport};
use crate::error::{ApiError, ApiJson, ApiResult};
use crate::storage::snapshots::now;
use crate::{web, AppState, PeerAddr};

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// Refuses a state-changing request that another site may have made (see
/// [`web::from_this_site`]). The request's own host is its `Host` header (HTTP/1.1) or its
/// URI's authority (HTTP/2's `:authority`).
pub(crate) fn from_this_site(method: &Method, uri: &Uri, headers: &HeaderMap) -> ApiResult<()> {
    let host = header_text(headers, "host").or_else(|| uri.authority().map(|a| a.as_str()));
    web::from_this_site(method, header_text(headers, "origin"), header_text(headers, "sec-fetch-site"), host)
        .map_err(|why| ApiError::Forbidden(why.into()))
}

fn over_https(transport: Option<Extension<Transport>>) -> ApiResult<()> {
    match transport {
        Some(Extension(Transport::Tls)) => Ok(()),
        _ => Err(ApiError::BadRequest("portal sessions are made over HTTPS only (the cookie is Secure)".into())),
    }
}

/// An argon2id hash of no one's password: an unknown name costs a sign-in the same time as
/// a wrong password, so timing does not tell which names exist.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| super::users::hash_password("not anyone's password").unwrap_or_default())
}

fn password_matches(password: &str, hash: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(hash)
        .is_ok_and(|parsed| argon2::Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

/// Opens a session for `name` and answers with it and its cookie.
async fn open(state: &AppState, name: String, role: api::Role, source: String) -> ApiResult<Response> {
    let secret = web::secret().map_err(ApiError::Internal)?;
    let csrf_token = web::secret().map_err(ApiError::Internal)?;
    let portal = &state.settings.raw.portal;
    let info = api::SessionInfo {
        name: name.clone(),
        role,
        csrf_token: csrf_token.clone(),
        expires_at: now() + i64::try_from(portal.session_max_secs).unwrap_or(i64::MAX / 2),
        idle_timeout_secs: portal.session_idle_secs,
    };
    let cookie_secret = secret.clone();
    state.db.run(move |store| store.open_web_session(&name, &secret, &csrf_token, &source)).await?;
    let mut response = Json(info).into_response();
    let cookie = HeaderValue::from_str(&web::set_cookie(&cookie_secret, portal.session_max_secs))
        .map_err(|e| ApiError::Internal(format!("cookie: {e}")))?;
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Signs in to the web portal with a password; the session is in the `__Host-ssp-session`
/// cookie. After failures an account and a source wait longer before the next try.
#[utoipa::path(post, path = "/api/v1/session", tag = "portal", request_body = api::SignIn, security(()),
    responses((status = 200, body = api::SessionInfo), (status = 401, body = api::ErrorBody),
        (status = 403, body = api::ErrorBody), (status = 429, body = api::ErrorBody)))]
pub async fn sign_in(
    State(state): State<AppState>,
    transport: Option<Extension<Transport>>,
    peer: Option<Extension<PeerAddr>>,
    uri: Uri,
    headers: HeaderMap,
    ApiJson(request): ApiJson<api::SignIn>,
) -> ApiResult<Response> {
    over_https(transport)?;
    from_this_site(&Method::POST, &uri, &headers)?;
    let ip: Option<IpAddr> = peer.map(|Extension(PeerAddr(address))| address.ip());
    let source = ip.map_or_else(|| "unknown".to_string(), |ip| ip.to_string());
    let name = request.name.trim().to_string();
    let throttle = &state.web.throttle;
    if let Some(wait) = throttle.wait(&name, ip, Instant::now()) {
        let seconds = wait.as_secs().max(1);
        let (who, from) = (name.clone(), source.clone());
        state.db.run(move |store| store.record_failed_sign_in(&who, &from, "throttled")).await?;
        return Err(ApiError::Throttled(format!("too many failed sign-ins lately: try again in {seconds} s"), seconds));
    }
    let who = name.clone();
    let found = state
        .db
        .run(move |store| match store.user(&who) {
            Ok(user) => Ok(Some((user, store.password_hash(&who)?))),
            Err(ssp_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        })
        .await?;
    let password = request.password;
    let (user, hash) = match found {
        Some((user, hash)) => (Some(user), hash),
        None => (None, None),
    };
    let hash = hash.unwrap_or_else(|| decoy_hash().to_string());
    let matches = tokio::task::spawn_blocking(move || password_matches(&password, &hash))
        .await
        .map_err(|e| ApiError::Internal(format!("checking a password: {e}")))?;
    match user.filter(|user| matches && !user.disabled) {
        Some(user) => {
            throttle.succeeded(&name);
            open(&state, user.name.as_str().to_string(), crate::convert::role(user.role), source).await
        }
        None => {
            throttle.failed(&name, ip, Instant::now());
            let (who, from) = (name.clone(), source.clone());
            state.db.run(move |store| store.record_failed_sign_in(&who, &from, "wrong name or password")).await?;
            Err(ApiError::Unauthorized("wrong user name or password".into()))
        }
    }
}

/// The signed-in portal session (its CSRF token), from the cookie.
#[utoipa::path(get, path = "/api/v1/session", tag = "portal", security(()),
    responses((status = 200, body = api::SessionInfo), (status = 401, body = api::ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    transport: Option<Extension<Transport>>,
    headers: HeaderMap,
) -> ApiResult<Json<api::SessionInfo>> {
    over_https(transport)?;
    let Some((_, session)) = crate::auth::cookie_session(&state, &headers).await? else {
        return Err(ApiError::Unauthorized("not signed in".into()));
    };
    let portal = &state.settings.raw.portal;
    Ok(Json(api::SessionInfo {
        name: session.user.name.as_str().to_string(),
        role: crate::convert::role(session.user.role),
        csrf_token: session.csrf_token,
        expires_at: session.created_at + i64::try_from(portal.session_max_secs).unwrap_or(i64::MAX / 2),
        idle_timeout_secs: portal.session_idle_secs,
    }))
}

/// Signs out: the session ends on the server, and the browser forgets the cookie.
#[utoipa::path(delete, path = "/api/v1/session", tag = "portal",
    responses((status = 204), (status = 401, body = api::ErrorBody), (status = 403, body = api::ErrorBody)))]
pub async fn sign_out(State(state): State<AppState>, _caller: Caller, headers: HeaderMap) -> ApiResult<Response> {
    if let Some(secret) = header_text(&headers, "cookie").and_then(web::session_cookie).map(str::to_owned) {
        state.db.run(move |store| store.close_web_session(&secret)).await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&web::clear_cookie()).map_err(|e| ApiError::Internal(format!("cookie: {e}")))?,
    );
    Ok(response)
}

/// Where people reach the portal: `[portal] public_url`, else the address this request came
/// to, else this host's name (or the certificate's first name) and the API's port.
pub(crate) fn portal_url(
    state: &AppState,
    uri: &Uri,
    headers: &HeaderMap,
    transport: Option<Extension<Transport>>,
) -> String {
    let configured = state.settings.raw.portal.public_url.trim_end_matches('/');
    if !configured.is_empty() {
        return configured.to_string();
    }
    let host = header_text(headers, "host").or_else(|| uri.authority().map(|a| a.as_str()));
    if let (Some(Extension(Transport::Tls)), Some(host)) = (transport, host) {
        return format!("https://{host}");
    }
    let name = state
        .settings
        .raw
        .api
        .tls_names
        .first()
        .cloned()
        .unwrap_or_else(|| rustix::system::uname().nodename().to_string_lossy().into_owned());
    let port = state.web.https_port.get().copied().or(state.settings.listen.map(|a| a.port())).unwrap_or(8443);
    format!("https://{name}:{port}")
}

/// Makes a one-time link for `user` to set a portal password and add an SSH key (admin);
/// an earlier unused link of the same user stops working.
#[utoipa::path(post, path = "/api/v1/users/{user}/invite", tag = "portal", request_body = api::InviteCreate,
    responses((status = 201, body = api::InviteCreated), (status = 403, body = api::ErrorBody), (status = 404, body = api::ErrorBody)))]
pub async fn invite(
    State(state): State<AppState>,
    caller: Caller,
    transport: Option<Extension<Transport>>,
    uri: Uri,
    headers: HeaderMap,
    Path(user): Path<String>,
    ApiJson(request): ApiJson<api::InviteCreate>,
) -> ApiResult<(StatusCode, Json<api::InviteCreated>)> {
    caller.require_admin("invite users")?;
    let hours = request.valid_hours.unwrap_or(state.settings.raw.portal.invite_hours);
    if hours == 0 || hours > crate::config::MAX_INVITE_HOURS {
        return Err(ApiError::BadRequest(format!(
            "an invitation is valid for 1 to {} hours, not {hours}",
            crate::config::MAX_INVITE_HOURS
        )));
    }
    let token = web::secret().map_err(ApiError::Internal)?;
    let expires_at = now() + i64::from(hours) * 3600;
    let (actor, secret, name) = (caller.name.clone(), token.clone(), user.clone());
    let invite = state.db.run(move |store| store.create_invite(Some(&actor), &name, &secret, expires_at)).await?;
    let url = format!("{}/#/invite/{token}", portal_url(&state, &uri, &headers, transport));
    Ok((StatusCode::CREATED, Json(api::InviteCreated { name: invite.user, token, url, expires_at })))
}

fn no_such_invite() -> ApiError {
    ApiError::NotFound("this invitation link is not valid: it was used already, has expired, or was replaced by a newer one; ask your admin for a new one".into())
}

/// Whom a valid invitation link is for.
#[utoipa::path(get, path = "/api/v1/invites/{token}", tag = "portal", security(()),
    responses((status = 200, body = api::InviteInfo), (status = 404, body = api::ErrorBody)))]
pub async fn show_invite(State(state): State<AppState>, Path(token): Path<String>) -> ApiResult<Json<api::InviteInfo>> {
    let invite = state.db.run(move |store| store.invite(&token)).await?.ok_or_else(no_such_invite)?;
    Ok(Json(api::InviteInfo { name: invite.user, expires_at: invite.expires_at }))
}

/// Accepts an invitation once: sets the password, adds the key if one is given, and signs in.
#[utoipa::path(post, path = "/api/v1/invites/{token}", tag = "portal", request_body = api::InviteAccept, security(()),
    responses((status = 200, body = api::SessionInfo), (status = 400, body = api::ErrorBody),
        (status = 403, body = api::ErrorBody), (status = 404, body = api::ErrorBody)))]
pub async fn accept_invite(
    State(state): State<AppState>,
    transport: Option<Extension<Transport>>,
    peer: Option<Extension<PeerAddr>>,
    uri: Uri,
    headers: HeaderMap,
    Path(token): Path<String>,
    ApiJson(request): ApiJson<api::InviteAccept>,
) -> ApiResult<Response> {
    over_https(transport)?;
    from_this_site(&Method::POST, &uri, &headers)?;
    let key =
        request.public_key.as_deref().map(str::trim).filter(|k| !k.is_empty()).map(PublicKey::parse).transpose()?;
    let password = request.password;
    let hash = tokio::task::spawn_blocking(move || super::users::hash_password(&password))
        .await
        .map_err(|e| ApiError::Internal(format!("hashing a password: {e}")))??;
    let name = state
        .db
        .run(move |store| {
            let Some(invite) = store.invite(&token)? else {
                return Ok(None);
            };
            let key_name = match &key {
                Some(key) => Some(super::shared::unique_key_name(store, &invite.user, None, key, &[])?),
                None => None,
            };
            let line = key.as_ref().map(|k| (k.to_line(), k.fingerprint()));
            let key = key_name.as_deref().zip(line.as_ref()).map(|(n, (l, f))| (n, l.as_str(), f.as_str()));
            match store.redeem_invite(&token, &hash, key) {
                Ok(name) => Ok(Some(name)),
                Err(ssp_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await?
        .ok_or_else(no_such_invite)?;
    state.reconciler.wake();
    let who = name.clone();
    let user = state.db.run(move |store| store.user(&who)).await?;
    let source = peer.map_or_else(|| "unknown".to_string(), |Extension(PeerAddr(a))| a.ip().to_string());
    open(&state, name, crate::convert::role(user.role), source).await
}
