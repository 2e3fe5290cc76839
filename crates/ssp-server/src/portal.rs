//! The web portal's files, served next to the API: `GET /` is the page, `GET /assets/NAME`
//! its scripts and styles. They are built from `portal/` (Preact, bundled by esbuild) and
//! embedded into the binary by `build.rs`, so the daemon serves them from memory, with no
//! files to install and nothing fetched at run time.
//!
//! The portal is a single page with `#/…` routes, so these two routes are all it needs; any
//! other path keeps the API's JSON 404. This module serves bytes only: the pages talk to the
//! API like any other client, and sign-in, sessions and CSRF checks live there.
//!
//! Every answer carries a strict Content-Security-Policy (scripts only from this origin, no
//! inline scripts, no framing, connections only back to this origin — the terminal's
//! websocket included); `style-src` allows inline styles because xterm.js sets the
//! terminal's geometry in `<style>` elements it adds. Files are answered with
//! `Cache-Control: no-cache` and a strong ETag (a hash of the bytes): the browser revalidates
//! each load and gets `304 Not Modified` while the binary is unchanged, and the new files at
//! once after an upgrade. Content-hashed names with year-long caching would save those
//! revalidations, but the page itself can never be cached that way, and after an upgrade a
//! page cached with old names would then load old code against a new API.

use axum::extract::Path;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// Its name under `/assets/`.
    pub name: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its strong ETag (quoted), a hash of `bytes`.
    pub etag: &'static str,
    /// Its contents.
    pub bytes: &'static [u8],
}

mod generated {
    use super::Asset;
    include!(concat!(env!("OUT_DIR"), "/portal_assets.rs"));
}

pub use generated::{ASSETS, BUILT};

/// The Content-Security-Policy of every portal answer.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The headers every portal answer carries.
const SECURITY_HEADERS: [(HeaderName, &str); 5] = [
    (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::CACHE_CONTROL, "no-cache"),
];

/// The embedded file called `name`.
pub fn asset(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.name == name)
}

/// The portal's routes (`HEAD` is answered by the `GET` handlers, without the body).
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/", get(index)).route("/assets/{file}", get(file))
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn file(Path(name): Path<String>, headers: HeaderMap) -> Response {
    serve(&name, &headers)
}

fn serve(name: &str, request: &HeaderMap) -> Response {
    let Some(asset) = asset(name) else {
        let mut response = (StatusCode::NOT_FOUND, "no such file in the ssp portal\n").into_response();
        secure(response.headers_mut());
        return response;
    };
    let fresh = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.trim_start_matches("W/") == asset.etag
        });
    let mut response =
        if fresh { StatusCode::NOT_MODIFIED.into_response() } else { (StatusCode::OK, asset.bytes).into_response() };
    let headers = response.headers_mut();
    secure(headers);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    headers.insert(header::ETAG, HeaderValue::from_static(asset.etag));
    response
}

fn secure(headers: &mut HeaderMap) {
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use axum::body::Body;
    use axum::http::{header, Request, StatusCode};
    use tower::ServiceExt;

    use super::*;

    async fn get(uri: &str, etag: Option<&str>) -> Response {
        let mut request = Request::get(uri);
        if let Some(etag) = etag {
            request = request.header(header::IF_NONE_MATCH, etag);
        }
        routes::<()>().oneshot(request.body(Body::empty()).unwrap()).await.unwrap()
    }

    async fn text(response: Response) -> String {
        String::from_utf8(axum::body::to_bytes(response.into_body(), 1 << 24).await.unwrap().to_vec()).unwrap()
    }

    #[test]
    fn the_table_has_the_page_and_unique_names() {
        let page = asset("index.html").unwrap();
        assert_eq!(page.content_type, "text/html; charset=utf-8");
        assert!(!page.bytes.is_empty());
        let mut names: Vec<&str> = ASSETS.iter().map(|asset| asset.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ASSETS.len());
        if BUILT {
            assert!(asset("app.js").is_some() && asset("app.css").is_some(), "{names:?}");
        }
    }

    #[tokio::test]
    async fn the_page_is_served_at_the_root_with_the_security_headers() {
        let response = get("/", None).await;
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers().clone();
        assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(headers[header::CONTENT_SECURITY_POLICY], CONTENT_SECURITY_POLICY);
        assert!(CONTENT_SECURITY_POLICY.contains("script-src 'self';"));
        assert!(CONTENT_SECURITY_POLICY.contains("frame-ancestors 'none'"));
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
        assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
        let body = text(response).await;
        assert!(body.contains("<html"), "{body}");
        if BUILT {
            assert!(body.contains("/assets/app.js") && body.contains("/assets/app.css"), "{body}");
        }
    }

    #[tokio::test]
    async fn assets_are_served_with_their_type_and_revalidate_by_etag() {
        if !BUILT {
            return;
        }
        let response = get("/assets/app.js", None).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
        assert!(response.headers().contains_key(header::CONTENT_SECURITY_POLICY));
        let etag = response.headers()[header::ETAG].to_str().unwrap().to_string();
        assert!(!text(response).await.is_empty());

        let again = get("/assets/app.js", Some(&etag)).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(again.headers()[header::ETAG], etag.as_str());
        assert!(text(again).await.is_empty());
        assert_eq!(get("/assets/app.js", Some("\"other\"")).await.status(), StatusCode::OK);

        let css = get("/assets/app.css", None).await;
        assert_eq!(css.headers()[header::CONTENT_TYPE], "text/css; charset=utf-8");
    }

    #[tokio::test]
    async fn unknown_files_are_missing() {
        let response = get("/assets/nope.js", None).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert!(response.headers().contains_key(header::CONTENT_SECURITY_POLICY));
        assert_eq!(get("/assets/..%2Fbuild.rs", None).await.status(), StatusCode::NOT_FOUND);
    }
}
