//! `/api/v1/users/{user}/keys`: SSH public keys, managed by their user (or an admin). A
//! change wakes the reconciler, which syncs `authorized_keys` in the user's containers.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use ssp_api as api;
use ssp_core::names::Name;
use ssp_core::sshkey::PublicKey;

use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiResult};
use crate::AppState;

fn view(key: ssp_store::SshKey) -> api::Key {
    api::Key { name: key.name, fingerprint: key.fingerprint, public_key: key.public_key, created_at: key.created_at }
}

/// Lists a user's keys.
#[utoipa::path(get, path = "/api/v1/users/{user}/keys", tag = "keys",
    responses((status = 200, body = [api::Key]), (status = 404, body = api::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(user): Path<String>,
) -> ApiResult<Json<Vec<api::Key>>> {
    caller.may_address(&user)?;
    let keys = state.db.run(move |store| store.keys(&user)).await?;
    Ok(Json(keys.into_iter().map(view).collect()))
}

/// Adds a key.
#[utoipa::path(post, path = "/api/v1/users/{user}/keys", tag = "keys", request_body = api::KeyCreate,
    responses((status = 201, body = api::Key), (status = 400, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
pub async fn add(
    State(state): State<AppState>,
    caller: Caller,
    Path(user): Path<String>,
    ApiJson(request): ApiJson<api::KeyCreate>,
) -> ApiResult<(StatusCode, Json<api::Key>)> {
    caller.may_address(&user)?;
    let key = PublicKey::parse(&request.public_key)?;
    let requested = request.name.as_deref().map(Name::parse).transpose()?.map(|n| n.as_str().to_string());
    let actor = caller.name.clone();
    let added = state
        .db
        .run(move |store| {
            let name = super::shared::unique_key_name(store, &user, requested.as_deref(), &key, &[])?;
            store.add_key(Some(&actor), &user, &name, &key.to_line(), &key.fingerprint())
        })
        .await?;
    state.reconciler.wake();
    Ok((StatusCode::CREATED, Json(view(added))))
}

/// Removes a key.
#[utoipa::path(delete, path = "/api/v1/users/{user}/keys/{key}", tag = "keys",
    responses((status = 204), (status = 404, body = api::ErrorBody)))]
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path((user, key)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    caller.may_address(&user)?;
    let actor = caller.name.clone();
    state.db.run(move |store| store.remove_key(Some(&actor), &user, &key)).await.map_err(|e| match e {
        ssp_store::Error::NotFound { .. } => ApiError::NotFound("no such key".into()),
        other => other.into(),
    })?;
    state.reconciler.wake();
    Ok(StatusCode::NO_CONTENT)
}
