//! `/api/v1/users/{user}/tokens`: API tokens. Users make and revoke their own; an admin can
//! make one for anyone (`ssp token create --user alice`). Only the hash is stored: the
//! secret is shown once, in the create answer.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use ssp_api as api;
use ssp_core::names::Name;

use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiResult};
use crate::AppState;

/// Lists a user's tokens (without secrets).
#[utoipa::path(get, path = "/api/v1/users/{user}/tokens", tag = "tokens",
    responses((status = 200, body = [api::Token]), (status = 404, body = api::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(user): Path<String>,
) -> ApiResult<Json<Vec<api::Token>>> {
    caller.may_address(&user)?;
    let tokens = state.db.run(move |store| store.tokens(&user)).await?;
    Ok(Json(
        tokens
            .into_iter()
            .map(|t| api::Token { name: t.name, created_at: t.created_at, last_used_at: t.last_used_at })
            .collect(),
    ))
}

/// Makes a token; the answer is the only place its secret appears.
#[utoipa::path(post, path = "/api/v1/users/{user}/tokens", tag = "tokens", request_body = api::TokenCreate,
    responses((status = 201, body = api::TokenCreated), (status = 404, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(user): Path<String>,
    ApiJson(request): ApiJson<api::TokenCreate>,
) -> ApiResult<(StatusCode, Json<api::TokenCreated>)> {
    caller.may_address(&user)?;
    let requested = request.name.as_deref().map(Name::parse).transpose()?.map(|n| n.as_str().to_string());
    let actor = caller.name.clone();
    let created = state
        .db
        .run(move |store| {
            let name = match requested {
                Some(name) => name,
                None => {
                    let taken: Vec<String> = store.tokens(&user)?.into_iter().map(|t| t.name).collect();
                    (1..).map(|n| format!("token-{n}")).find(|n| !taken.contains(n)).unwrap_or_default()
                }
            };
            let (token, secret) = store.create_token(Some(&actor), &user, &name)?;
            Ok(api::TokenCreated { user, name: token.name, token: secret })
        })
        .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Revokes a token.
#[utoipa::path(delete, path = "/api/v1/users/{user}/tokens/{token}", tag = "tokens",
    responses((status = 204), (status = 404, body = api::ErrorBody)))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path((user, token)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    caller.may_address(&user)?;
    let actor = caller.name.clone();
    state.db.run(move |store| store.revoke_token(Some(&actor), &user, &token)).await.map_err(|e| match e {
        ssp_store::Error::NotFound { .. } => ApiError::NotFound("no such token".into()),
        other => other.into(),
    })?;
    Ok(StatusCode::NO_CONTENT)
}
