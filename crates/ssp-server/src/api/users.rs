//! `/api/v1/users`: admins manage users; a user may read only themselves. Removing a user
//! with everything they hold (`?purge=true`) records the intent here; `crate::departures`
//! finishes it.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ssp_api as api;
use ssp_core::names::Name;
use ssp_core::quota::Quota;
use ssp_core::size::ByteSize;
use ssp_core::sshkey::PublicKey;
use ssp_store::{NewUser, Store};

use crate::auth::{Caller, HOST_ROOT};
use crate::error::{ApiError, ApiJson, ApiResult};
use crate::AppState;
use crate::{convert, departures};

/// Linux user names: the container account has the user's name.
const MAX_USER_NAME: usize = 32;

/// Accounts every Debian or busybox system already has (or reserves): a user by one of
/// these names would collide with a system account inside their containers.
const RESERVED: [&str; 24] = [
    "root",
    "daemon",
    "bin",
    "sys",
    "sync",
    "games",
    "man",
    "lp",
    "mail",
    "news",
    "uucp",
    "proxy",
    "www-data",
    "backup",
    "list",
    "irc",
    "gnats",
    "nobody",
    "messagebus",
    "sshd",
    "sudo",
    "ssp",
    "operator",
    "systemd",
];

/// Checks a new user name: the name rule, the Linux length limit, and no system account.
pub fn check_user_name(name: &str) -> ApiResult<Name> {
    let parsed = Name::parse(name)?;
    if name.len() > MAX_USER_NAME {
        return Err(ApiError::BadRequest(format!(
            "user name {name:?} is {} characters long; at most {MAX_USER_NAME} are allowed (it becomes a Linux account)",
            name.len()
        )));
    }
    if RESERVED.contains(&name) || name.starts_with("systemd-") || name == HOST_ROOT {
        return Err(ApiError::BadRequest(format!(
            "user name {name:?} is reserved for a system account; choose another"
        )));
    }
    Ok(parsed)
}

/// Hashes a portal password with argon2id and a random salt.
pub fn hash_password(password: &str) -> ApiResult<String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    if password.chars().count() < 8 {
        return Err(ApiError::BadRequest("a password needs at least 8 characters".into()));
    }
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| ApiError::Internal(format!("no randomness: {e}")))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| ApiError::Internal(format!("salt: {e}")))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| ApiError::Internal(format!("hashing a password: {e}")))
}

/// The API view of `name`, with usage.
pub fn view(store: &Store, name: &str) -> Result<api::User, ssp_store::Error> {
    let user = store.user(name)?;
    let containers = store.containers_of(name)?;
    let keys = store.keys(name)?.len();
    let held = containers.iter().filter(|c| c.phase != ssp_store::ContainerPhase::Deleting).count();
    // The same sums admission checks: containers not being deleted, and the home's disk.
    let holdings = crate::admission::holdings(store, name)?;
    let usage = api::Usage {
        containers: u32::try_from(held).unwrap_or(u32::MAX),
        cpus: holdings.iter().map(|r| r.cpus).sum(),
        memory: ByteSize::from_bytes(holdings.iter().map(|r| r.memory.bytes()).sum()).to_string(),
        disk: ByteSize::from_bytes(holdings.iter().map(|r| r.disk.bytes()).sum()).to_string(),
        gpus: u32::try_from(store.active_leases()?.iter().filter(|l| l.owner == name).count()).unwrap_or(u32::MAX),
    };
    Ok(api::User {
        name: user.name.as_str().into(),
        role: convert::role(user.role),
        disabled: user.disabled,
        has_password: user.has_password,
        quota: convert::quota(&user.quota),
        usage,
        keys: u32::try_from(keys).unwrap_or(u32::MAX),
        created_at: user.created_at,
        departing: user.departing(),
        containers_left: u32::try_from(containers.len()).unwrap_or(u32::MAX),
        gpu_allowlist: {
            let allowlist = store.gpu_allowlist(name)?;
            api::GpuAllowlist { indices: allowlist.indices, models: allowlist.models }
        },
    })
}

/// Lists users.
#[utoipa::path(get, path = "/api/v1/users", tag = "users",
    responses((status = 200, body = [api::User]), (status = 403, body = api::ErrorBody)))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<api::User>>> {
    caller.require_admin("list users")?;
    let users = state
        .db
        .run(|store| store.users()?.iter().map(|u| view(store, u.name.as_str())).collect::<Result<Vec<_>, _>>())
        .await?;
    Ok(Json(users))
}

/// Creates a user, with keys and quota.
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = api::UserCreate,
    responses((status = 201, body = api::User), (status = 400, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<api::UserCreate>,
) -> ApiResult<(StatusCode, Json<api::User>)> {
    caller.require_admin("create users")?;
    let name = check_user_name(&request.name)?;
    let quota = convert::patch_quota(&state.settings.default_quota, &request.quota)?;
    let keys = request
        .keys
        .iter()
        .filter(|line| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        .map(|line| PublicKey::parse(line))
        .collect::<Result<Vec<_>, _>>()?;
    let password = request.password.as_deref().map(hash_password).transpose()?;
    let actor = caller.name.clone();
    let role = convert::store_role(request.role);
    let user = state
        .db
        .run(move |store| {
            store.create_user(Some(&actor), &NewUser { name: name.clone(), role, quota })?;
            let added = (|| {
                let mut names = Vec::new();
                for key in &keys {
                    let key_name = super::shared::unique_key_name(store, name.as_str(), None, key, &names)?;
                    store.add_key(Some(&actor), name.as_str(), &key_name, &key.to_line(), &key.fingerprint())?;
                    names.push(key_name);
                }
                if let Some(hash) = &password {
                    store.set_password_hash(Some(&actor), name.as_str(), Some(hash))?;
                }
                Ok(())
            })();
            // All or nothing: a key that cannot be added undoes the user.
            if let Err(e) = added {
                store.remove_user(Some(&actor), name.as_str()).ok();
                return Err(e);
            }
            view(store, name.as_str())
        })
        .await?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// Shows a user (admins: anyone; users: themselves).
#[utoipa::path(get, path = "/api/v1/users/{user}", tag = "users",
    responses((status = 200, body = api::User), (status = 404, body = api::ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(user): Path<String>,
) -> ApiResult<Json<api::User>> {
    caller.may_address(&user)?;
    Ok(Json(state.db.run(move |store| view(store, &user)).await?))
}

/// Changes a user's role, quota, password or disabled flag (admin).
#[utoipa::path(patch, path = "/api/v1/users/{user}", tag = "users", request_body = api::UserUpdate,
    responses((status = 200, body = api::User), (status = 404, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(user): Path<String>,
    ApiJson(request): ApiJson<api::UserUpdate>,
) -> ApiResult<Json<api::User>> {
    caller.may_address(&user)?;
    caller.require_admin("change users")?;
    let password = match request.password.as_deref() {
        Some("") => Some(None),
        Some(text) => Some(Some(hash_password(text)?)),
        None => None,
    };
    if let Some(patch) = &request.quota {
        // Checked here so a bad size is a 400; applied below to the current quota.
        convert::patch_quota(&state.settings.default_quota, patch)?;
    }
    let actor = caller.name.clone();
    let view = state
        .db
        .run(move |store| {
            let current = store.user(&user)?;
            let quota: Quota = match &request.quota {
                Some(patch) => convert::patch_quota(&current.quota, patch)
                    .map_err(|e| ssp_store::Error::Conflict(e.to_string()))?,
                None => current.quota,
            };
            let role = request.role.map(convert::store_role).unwrap_or(current.role);
            let loses_admin = current.role == ssp_store::Role::Admin
                && !current.disabled
                && (role != ssp_store::Role::Admin || request.disabled == Some(true));
            if loses_admin && last_admin(store, &user)? {
                return Err(ssp_store::Error::Conflict(format!(
                    "{user} is the last enabled admin; make another admin first"
                )));
            }
            store.update_user(Some(&actor), &user, role, &quota)?;
            if let Some(disabled) = request.disabled {
                // A departing user stays disabled (the store refuses, saying why).
                store.set_disabled(Some(&actor), &user, disabled)?;
            }
            if let Some(hash) = password {
                store.set_password_hash(Some(&actor), &user, hash.as_deref())?;
            }
            view(store, &user)
        })
        .await?;
    state.reconciler.wake();
    Ok(Json(view))
}

fn last_admin(store: &Store, user: &str) -> Result<bool, ssp_store::Error> {
    Ok(!store.users()?.iter().any(|u| u.name.as_str() != user && u.role == ssp_store::Role::Admin && !u.disabled))
}

/// Removes a user (admin). Without `purge`, only a user who holds no containers (204; 409
/// otherwise). With `purge=true`, the user is disabled at once, marked departing and their
/// containers marked for deletion; the daemon then deletes the containers, images and home
/// volume, and last the user (`GET` answers 404 then): 202 with the user, or 204 when
/// nothing was left and the user is already gone.
#[utoipa::path(delete, path = "/api/v1/users/{user}", tag = "users", params(api::UserRemoveQuery),
    responses((status = 202, description = "removal under way (purge)", body = api::User),
        (status = 204, description = "removed"), (status = 403, body = api::ErrorBody),
        (status = 404, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(user): Path<String>,
    Query(query): Query<api::UserRemoveQuery>,
) -> ApiResult<Response> {
    caller.may_address(&user)?;
    caller.require_admin("remove users")?;
    let actor = caller.name.clone();
    if !query.purge {
        state
            .db
            .run(move |store| {
                let current = store.user(&user)?;
                let containers = store.containers_of(&user)?.len();
                if containers > 0 {
                    return Err(ssp_store::Error::Conflict(format!(
                        "{user} still has {containers} container(s): delete them first (ssp container list --owner \
                         {user}), or remove {user} with everything they hold (ssp user remove {user} --purge)"
                    )));
                }
                if current.role == ssp_store::Role::Admin && !current.disabled && last_admin(store, &user)? {
                    return Err(ssp_store::Error::Conflict(format!("{user} is the last enabled admin")));
                }
                store.remove_user(Some(&actor), &user)
            })
            .await?;
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let answer = state
        .db
        .run(move |store| {
            let current = store.user(&user)?;
            if current.role == ssp_store::Role::Admin && !current.disabled && last_admin(store, &user)? {
                return Err(ssp_store::Error::Conflict(format!("{user} is the last enabled admin")));
            }
            store.mark_departing(Some(&actor), &user)?;
            // Nothing to wait for: the removal completes now.
            let left = departures::remains(store, &user)?.unwrap_or_default();
            if departures::next(&left) == departures::Next::RemoveUser && store.remove_departed_user(&user)? {
                return Ok(None);
            }
            view(store, &user).map(Some)
        })
        .await?;
    state.reconciler.wake();
    state.storage.wake();
    Ok(match answer {
        Some(user) => (StatusCode::ACCEPTED, Json(user)).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}
