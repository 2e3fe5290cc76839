//! The routes of images, copies and backups and their part of the OpenAPI document, kept
//! apart from the route table as storage's are.

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::Router;
use utoipa::{Modify, OpenApi};

use super::{backups, images};
use crate::AppState;

/// Their paths in the OpenAPI document.
#[derive(OpenApi)]
#[openapi(paths(
    images::publish,
    images::delete,
    images::copy,
    backups::export,
    backups::import,
    backups::state_backup,
))]
pub struct ClonesApi;

/// Merges [`ClonesApi`] into the main document.
pub struct ClonesDoc;

impl Modify for ClonesDoc {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi.merge(ClonesApi::openapi());
    }
}

/// Their routes, under `/api/v1`. An import's body is a whole container: no body limit
/// there (the handler bounds what it writes).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/images", post(images::publish))
        .route("/images/{owner}/{name}", delete(images::delete))
        .route("/containers/{owner}/{name}/copy", post(images::copy))
        .route("/containers/{owner}/{name}/export", get(backups::export))
        .route("/containers/import", post(backups::import).layer(DefaultBodyLimit::disable()))
        .route("/admin/backup", get(backups::state_backup))
}

#[cfg(test)]
mod tests {
    use utoipa::OpenApi;

    #[test]
    fn clone_routes_are_documented() {
        let doc = crate::api::ApiDoc::openapi();
        for path in [
            "/api/v1/images",
            "/api/v1/images/{owner}/{name}",
            "/api/v1/containers/{owner}/{name}/copy",
            "/api/v1/containers/{owner}/{name}/export",
            "/api/v1/containers/import",
            "/api/v1/admin/backup",
        ] {
            assert!(doc.paths.paths.contains_key(path), "{path} is not in the OpenAPI document");
        }
    }
}
