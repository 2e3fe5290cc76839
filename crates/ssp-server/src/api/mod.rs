//! The HTTP API: the route table (with each route's handler, whose first lines state who may
//! call it) and the OpenAPI document generated from the handlers and wire types.

pub mod audit;
pub mod backups;
pub mod clones;
pub mod containers;
pub mod desktop;
pub mod events;
pub mod gateway;
pub mod gpus;
pub mod homes;
pub mod images;
pub mod keys;
pub mod session;
pub mod shared;
pub mod shares;
pub mod snapshots;
pub mod storage;
pub mod system;
pub mod terminal;
pub mod tokens;
pub mod users;

use axum::routing::{get, post, put};
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use self::audit::AuditDoc;
use self::clones::ClonesDoc;
use self::desktop::DesktopDoc;
use self::events::EventsDoc;
use self::gateway::GatewayDoc;
use self::storage::StorageDoc;
use self::terminal::TerminalDoc;
use crate::AppState;

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "ssp", description = "Super Server Platform: users, quotas and system containers on LXD."),
    paths(
        system::info, system::images, system::reconcile,
        users::list, users::create, users::show, users::update, users::remove,
        keys::list, keys::add, keys::remove,
        tokens::list, tokens::create, tokens::revoke,
        containers::list, containers::create, containers::show, containers::delete,
        containers::set_state, containers::restart, containers::exec,
        gpus::list, gpus::usage, gpus::history, gpus::attach, gpus::detach, gpus::update, gpus::allowlist,
        session::sign_in, session::show, session::sign_out, session::invite, session::show_invite,
        session::accept_invite,
    ),
    modifiers(&BearerAuth, &StorageDoc, &ClonesDoc, &GatewayDoc, &TerminalDoc, &DesktopDoc, &AuditDoc, &EventsDoc),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("ssp token").build()),
        );
    }
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

async fn not_found() -> crate::error::ApiError {
    crate::error::ApiError::NotFound("no such API path; see /api/v1/openapi.json".into())
}

/// The API's routes, and the web portal's next to them.
pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/openapi.json", get(openapi))
        .route("/info", get(system::info))
        .route("/images", get(system::images))
        .route("/reconcile", post(system::reconcile))
        .route("/users", get(users::list).post(users::create))
        .route("/users/{user}", get(users::show).patch(users::update).delete(users::remove))
        .route("/users/{user}/keys", get(keys::list).post(keys::add))
        .route("/users/{user}/keys/{key}", axum::routing::delete(keys::remove))
        .route("/users/{user}/tokens", get(tokens::list).post(tokens::create))
        .route("/users/{user}/tokens/{token}", axum::routing::delete(tokens::revoke))
        .route("/containers", get(containers::list).post(containers::create))
        .route("/containers/{owner}/{name}", get(containers::show).delete(containers::delete))
        .route("/containers/{owner}/{name}/state", put(containers::set_state))
        .route("/containers/{owner}/{name}/restart", post(containers::restart))
        .route("/containers/{owner}/{name}/exec", post(containers::exec))
        .route("/containers/{owner}/{name}/gpus", post(gpus::attach))
        .route("/containers/{owner}/{name}/gpus/{index}", axum::routing::delete(gpus::detach))
        .route("/gpus", get(gpus::list))
        .route("/gpus/usage", get(gpus::usage))
        .route("/gpus/history", get(gpus::history))
        .route("/gpus/{index}", axum::routing::patch(gpus::update))
        .route("/users/{user}/gpu-allowlist", put(gpus::allowlist))
        .route("/session", get(session::show).post(session::sign_in).delete(session::sign_out))
        .route("/users/{user}/invite", post(session::invite))
        .route("/invites/{token}", get(session::show_invite).post(session::accept_invite))
        .merge(storage::routes())
        .merge(clones::routes())
        .merge(gateway::routes())
        .merge(terminal::routes())
        .merge(desktop::routes())
        .merge(audit::routes())
        .merge(events::routes())
        // Last, so it wraps every route above: what a change changed goes to the live streams.
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::events::publish_changes));
    site(v1).with_state(state)
}

/// Everything the daemon serves around the API routes `v1`: those under `/api/v1`, the web
/// portal at `/` and `/assets/` (see [`crate::portal`]), and the API's JSON 404 for any other
/// path.
fn site<S: Clone + Send + Sync + 'static>(v1: Router<S>) -> Router<S> {
    Router::new()
        .nest(ssp_api::API_PREFIX, v1)
        .merge(crate::portal::routes())
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(16 * 1024 * 1024))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use axum::body::Body;
    use axum::http::{header, Request, StatusCode};
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;
    use utoipa::OpenApi;

    /// The portal sits next to the API without taking its paths: `/` is the page, an unknown
    /// `/api/…` path still answers the API's JSON 404, and API routes still answer.
    #[tokio::test]
    async fn the_portal_and_the_api_share_the_site() {
        let site = super::site(Router::new().route("/info", get(|| async { "info" })));
        let call = |uri: &str| site.clone().oneshot(Request::get(uri).body(Body::empty()).unwrap());

        let page = call("/").await.unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(page.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(page.headers()[header::CONTENT_SECURITY_POLICY], crate::portal::CONTENT_SECURITY_POLICY);

        let head = site.clone().oneshot(Request::head("/").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(head.status(), StatusCode::OK);
        assert!(axum::body::to_bytes(head.into_body(), 1024).await.unwrap().is_empty());

        let info = call("/api/v1/info").await.unwrap();
        assert_eq!(info.status(), StatusCode::OK);

        for path in ["/api/v1/nope", "/api/v2/info", "/elsewhere"] {
            let missing = call(path).await.unwrap();
            assert_eq!(missing.status(), StatusCode::NOT_FOUND, "{path}");
            assert_eq!(missing.headers()[header::CONTENT_TYPE], "application/json", "{path}");
            let body = axum::body::to_bytes(missing.into_body(), 1 << 16).await.unwrap();
            let error: ssp_api::ErrorBody = serde_json::from_slice(&body).unwrap();
            assert_eq!(error.error.code, "not_found", "{path}");
        }
    }

    /// The committed document is the contract: a change to the API shows up in review as a
    /// change to `openapi.json`. `SSP_UPDATE_OPENAPI=1 cargo test -p ssp-server` rewrites it.
    #[test]
    fn the_committed_openapi_document_matches_the_code() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
        let generated = super::ApiDoc::openapi().to_pretty_json().unwrap() + "\n";
        if std::env::var_os("SSP_UPDATE_OPENAPI").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} is out of date: run `SSP_UPDATE_OPENAPI=1 cargo test -p ssp-server` and commit it",
            path.display()
        );
    }

    #[test]
    fn every_route_is_documented() {
        let doc = super::ApiDoc::openapi();
        let documented: Vec<String> = doc.paths.paths.keys().cloned().collect();
        for path in [
            "/api/v1/info",
            "/api/v1/images",
            "/api/v1/reconcile",
            "/api/v1/users",
            "/api/v1/users/{user}",
            "/api/v1/users/{user}/keys",
            "/api/v1/users/{user}/keys/{key}",
            "/api/v1/users/{user}/tokens",
            "/api/v1/users/{user}/tokens/{token}",
            "/api/v1/containers",
            "/api/v1/containers/{owner}/{name}",
            "/api/v1/containers/{owner}/{name}/state",
            "/api/v1/containers/{owner}/{name}/restart",
            "/api/v1/containers/{owner}/{name}/exec",
            "/api/v1/containers/{owner}/{name}/gpus",
            "/api/v1/containers/{owner}/{name}/gpus/{index}",
            "/api/v1/gpus",
            "/api/v1/gpus/usage",
            "/api/v1/gpus/{index}",
            "/api/v1/users/{user}/gpu-allowlist",
        ] {
            assert!(documented.iter().any(|p| p == path), "{path} is not in the OpenAPI document");
        }
    }
}
