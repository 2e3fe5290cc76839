//! `/api/v1/gateway/sessions`: the SSH gateway's audit log — every channel with its user,
//! container, source, start, end and bytes. A user sees their own; an admin everyone's.

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use ssp_api as api;
use utoipa::{Modify, OpenApi};

use crate::auth::Caller;
use crate::error::ApiResult;
use crate::AppState;

/// The gateway's paths in the OpenAPI document.
#[derive(OpenApi)]
#[openapi(paths(sessions))]
pub struct GatewayApi;

/// Merges [`GatewayApi`] into the main document.
pub struct GatewayDoc;

impl Modify for GatewayDoc {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi.merge(GatewayApi::openapi());
    }
}

/// The gateway's routes, under `/api/v1`.
pub fn routes() -> Router<AppState> {
    Router::new().route("/gateway/sessions", get(sessions))
}

/// Which sessions to list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct SessionsQuery {
    /// Only this user's (an admin may name anyone; others always see only their own).
    pub user: Option<String>,
    /// At most this many, newest first (default 100, at most 10000).
    pub limit: Option<u32>,
}

/// The gateway's audit log, newest first.
#[utoipa::path(get, path = "/api/v1/gateway/sessions", tag = "gateway", params(SessionsQuery),
    responses((status = 200, body = [api::GatewaySession]), (status = 403, body = api::ErrorBody)))]
pub async fn sessions(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<SessionsQuery>,
) -> ApiResult<Json<Vec<api::GatewaySession>>> {
    let user = match query.user {
        Some(user) => {
            caller.may_address(&user)?;
            Some(user)
        }
        None if caller.is_admin() => None,
        None => Some(caller.name.clone()),
    };
    let limit = query.limit.unwrap_or(100).min(10_000);
    let rows = state.db.run(move |store| store.gateway_sessions(user.as_deref(), limit)).await?;
    Ok(Json(
        rows.into_iter()
            .map(|row| api::GatewaySession {
                user: row.user,
                container: row.container,
                kind: row.kind,
                source: row.source,
                path: row.path,
                started_at: row.started_at,
                ended_at: row.ended_at,
                bytes_in: u64::try_from(row.bytes_in).unwrap_or(0),
                bytes_out: u64::try_from(row.bytes_out).unwrap_or(0),
                exit_code: row.exit_code,
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use utoipa::OpenApi;

    #[test]
    fn gateway_routes_are_documented() {
        let doc = crate::api::ApiDoc::openapi();
        assert!(doc.paths.paths.contains_key("/api/v1/gateway/sessions"));
    }
}
