//! The storage routes and their part of the OpenAPI document, kept apart from the route
//! table so that the rest of the API is not touched by them.

use axum::routing::{get, post};
use axum::Router;
use utoipa::{Modify, OpenApi};

use super::{homes, shares, snapshots};
use crate::AppState;

/// Storage's paths in the OpenAPI document.
#[derive(OpenApi)]
#[openapi(paths(
    snapshots::list,
    snapshots::create,
    snapshots::update,
    snapshots::delete,
    snapshots::restore,
    snapshots::schedule,
    snapshots::set_schedule,
    snapshots::remove_schedule,
    snapshots::run,
    shares::list,
    shares::create,
    shares::remove,
    homes::show,
    homes::create,
    homes::delete,
    homes::export,
))]
pub struct StorageApi;

/// Merges [`StorageApi`] into the main document.
pub struct StorageDoc;

impl Modify for StorageDoc {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi.merge(StorageApi::openapi());
    }
}

/// Storage's routes, under `/api/v1`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/containers/{owner}/{name}/snapshots", get(snapshots::list).post(snapshots::create))
        .route(
            "/containers/{owner}/{name}/snapshots/{snapshot}",
            axum::routing::patch(snapshots::update).delete(snapshots::delete),
        )
        .route("/containers/{owner}/{name}/snapshots/{snapshot}/restore", post(snapshots::restore))
        .route(
            "/containers/{owner}/{name}/schedule",
            get(snapshots::schedule).put(snapshots::set_schedule).delete(snapshots::remove_schedule),
        )
        .route("/snapshots/run", post(snapshots::run))
        .route("/shares", get(shares::list).post(shares::create))
        .route("/shares/{share}", axum::routing::delete(shares::remove))
        .route("/users/{user}/home", get(homes::show).put(homes::create).delete(homes::delete))
        .route("/users/{user}/home/export", get(homes::export))
}

#[cfg(test)]
mod tests {
    use utoipa::OpenApi;

    #[test]
    fn storage_routes_are_documented() {
        let doc = crate::api::ApiDoc::openapi();
        for path in [
            "/api/v1/containers/{owner}/{name}/snapshots",
            "/api/v1/containers/{owner}/{name}/snapshots/{snapshot}",
            "/api/v1/containers/{owner}/{name}/snapshots/{snapshot}/restore",
            "/api/v1/containers/{owner}/{name}/schedule",
            "/api/v1/snapshots/run",
            "/api/v1/shares",
            "/api/v1/shares/{share}",
            "/api/v1/users/{user}/home",
            "/api/v1/users/{user}/home/export",
        ] {
            assert!(doc.paths.paths.contains_key(path), "{path} is not in the OpenAPI document");
        }
    }
}
