//! The transport: one HTTP/1.1 client bound to the daemon's unix socket, the response envelope,
//! ETags, and websockets on the same socket.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::UnixStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::WebSocketStream;

use crate::error::{Error, Result};
use crate::operation::Operation;
use crate::wire::{Envelope, OperationState};

/// Everything in a path segment except unreserved characters is escaped, so a name can never
/// add a segment, a query or a fragment to a request.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Escapes one path segment (an instance, image, pool … name). Empty, `.` and `..` are
/// refused: URL parsing would drop or resolve them (even percent-encoded), turning a call on
/// one object into a call on its parent collection.
pub(crate) fn seg(name: &str) -> Result<String> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(Error::InvalidName { name: name.to_owned() });
    }
    Ok(utf8_percent_encode(name, SEGMENT).to_string())
}

/// A value read together with its ETag, to send back with an update so that a concurrent
/// change makes the update fail (412) instead of being overwritten.
#[derive(Debug, Clone)]
pub struct Tagged<T> {
    /// The object.
    pub value: T,
    /// Its ETag, when the daemon sent one.
    pub etag: Option<String>,
}

/// A connection to one LXD (or Incus) daemon over its unix socket. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    socket: Arc<PathBuf>,
}

/// An HTTP request body for [`Client::raw`].
pub(crate) enum Body {
    None,
    Json(serde_json::Value),
    Raw(reqwest::Body),
}

impl Client {
    /// A client for the daemon listening on `socket`. Nothing is sent until the first call.
    pub fn new(socket: impl Into<PathBuf>) -> Result<Self> {
        let socket = socket.into();
        // Nothing here speaks TLS, but reqwest (built with rustls for other crates in the same
        // program) insists on a process-wide crypto provider: ring, unless one is installed.
        let _already_installed = rustls::crypto::ring::default_provider().install_default();
        // No idle pool: LXD 5.0.2 peeks at each new connection's first bytes inside its
        // accept loop, so a pooled connection that was opened but never used (hyper races a
        // fresh connect against a pooled one and keeps the loser idle) stops LXD accepting
        // anything else until it is closed. A unix-socket connect per request is cheap.
        let http = reqwest::Client::builder()
            .unix_socket(socket.clone())
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|source| Error::Connect { socket: socket.clone(), source })?;
        Ok(Self { http, socket: Arc::new(socket) })
    }

    /// The socket of the daemon the environment points at: `$LXD_DIR/unix.socket`, else
    /// `$INCUS_DIR/unix.socket`, else the first that exists of LXD's and Incus's default
    /// sockets (LXD's when none does, so the error names it).
    pub fn default_socket() -> PathBuf {
        for var in ["LXD_DIR", "INCUS_DIR"] {
            if let Some(dir) = std::env::var_os(var).filter(|d| !d.is_empty()) {
                return Path::new(&dir).join("unix.socket");
            }
        }
        const CANDIDATES: [&str; 3] =
            ["/var/lib/lxd/unix.socket", "/var/snap/lxd/common/lxd/unix.socket", "/var/lib/incus/unix.socket"];
        CANDIDATES.iter().map(PathBuf::from).find(|p| p.exists()).unwrap_or_else(|| PathBuf::from(CANDIDATES[0]))
    }

    /// A client for [`Client::default_socket`].
    pub fn from_env() -> Result<Self> {
        Self::new(Self::default_socket())
    }

    /// The unix socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends one request and returns the decoded envelope and response headers, turning
    /// `type: error` answers into [`Error::Api`].
    pub(crate) async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Body,
        headers: HeaderMap,
    ) -> Result<(Envelope, HeaderMap)> {
        let response = self.send(method.clone(), path, body, headers).await?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes =
            response.bytes().await.map_err(|source| Error::Http { what: format!("{method} {path}"), source })?;
        let envelope: Envelope = serde_json::from_slice(&bytes).map_err(|e| {
            Error::protocol(
                format!("{method} {path}"),
                format!("HTTP {status}, body is not an LXD response ({e}): {}", preview(&bytes)),
            )
        })?;
        if envelope.kind == "error" || status.is_client_error() || status.is_server_error() {
            let code = if envelope.error_code != 0 { envelope.error_code } else { status.as_u16() };
            return Err(Error::Api {
                method: method.to_string(),
                path: path.to_string(),
                status: code,
                message: envelope.error,
            });
        }
        Ok((envelope, headers))
    }

    /// Sends one request and returns the response as is (for file transfer, whose body is
    /// not an envelope on success).
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Body,
        headers: HeaderMap,
    ) -> Result<reqwest::Response> {
        let url = format!("http://lxd{path}");
        let mut request = self.http.request(method.clone(), url).headers(headers);
        request = match body {
            Body::None => request,
            Body::Json(value) => request.json(&value),
            Body::Raw(body) => request.body(body),
        };
        request.send().await.map_err(|source| {
            if source.is_connect() {
                Error::Connect { socket: self.socket.to_path_buf(), source }
            } else {
                Error::Http { what: format!("{method} {path}"), source }
            }
        })
    }

    /// A synchronous call whose metadata decodes into `T`.
    pub(crate) async fn sync<T: DeserializeOwned>(&self, method: Method, path: &str, body: Body) -> Result<T> {
        Ok(self.sync_tagged(method, path, body, HeaderMap::new()).await?.value)
    }

    /// A synchronous call returning the metadata and the ETag.
    pub(crate) async fn sync_tagged<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Body,
        headers: HeaderMap,
    ) -> Result<Tagged<T>> {
        let (envelope, headers) = self.raw(method.clone(), path, body, headers).await?;
        let value = serde_json::from_value(envelope.metadata)
            .map_err(|e| Error::protocol(format!("{method} {path}"), format!("metadata does not decode: {e}")))?;
        let etag = headers.get("etag").and_then(|v| v.to_str().ok()).map(str::to_owned);
        Ok(Tagged { value, etag })
    }

    /// A GET whose metadata decodes into `T`.
    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.sync(Method::GET, path, Body::None).await
    }

    /// A GET returning the ETag too.
    pub(crate) async fn get_tagged<T: DeserializeOwned>(&self, path: &str) -> Result<Tagged<T>> {
        self.sync_tagged(Method::GET, path, Body::None, HeaderMap::new()).await
    }

    /// A call whose answer is ignored beyond success.
    pub(crate) async fn call(&self, method: Method, path: &str, body: Option<impl Serialize>) -> Result<()> {
        let body = match body {
            Some(b) => Body::Json(to_json(&b)?),
            None => Body::None,
        };
        self.raw(method, path, body, HeaderMap::new()).await.map(drop)
    }

    /// A call that starts a background operation.
    pub(crate) async fn operation(
        &self,
        method: Method,
        path: &str,
        body: Body,
        headers: HeaderMap,
    ) -> Result<Operation> {
        let (envelope, _) = self.raw(method.clone(), path, body, headers).await?;
        if envelope.kind != "async" {
            return Err(Error::protocol(
                format!("{method} {path}"),
                format!("expected a background operation, got a `{}` response", envelope.kind),
            ));
        }
        let state: OperationState = serde_json::from_value(envelope.metadata)
            .map_err(|e| Error::protocol(format!("{method} {path}"), format!("operation does not decode: {e}")))?;
        Ok(Operation::new(self.clone(), state))
    }

    /// A JSON call that starts a background operation.
    pub(crate) async fn json_operation(
        &self,
        method: Method,
        path: &str,
        body: &impl Serialize,
        etag: Option<&str>,
    ) -> Result<Operation> {
        let mut headers = HeaderMap::new();
        if let Some(etag) = etag {
            headers.insert("if-match", header_value("If-Match", etag)?);
        }
        self.operation(method, path, Body::Json(to_json(body)?), headers).await
    }

    /// Opens a websocket on the daemon's socket (`path` includes the query).
    pub(crate) async fn websocket(&self, path: &str) -> Result<WebSocketStream<UnixStream>> {
        let stream = UnixStream::connect(self.socket.as_path()).await.map_err(|source| Error::Io {
            what: format!("connecting to {} for a websocket", self.socket.display()),
            source,
        })?;
        let request = format!("ws://lxd{path}").into_client_request().map_err(|e| Error::ws(path.to_owned(), e))?;
        let (ws, _) =
            tokio_tungstenite::client_async(request, stream).await.map_err(|e| Error::ws(path.to_owned(), e))?;
        Ok(ws)
    }
}

pub(crate) fn to_json(value: &impl Serialize) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| Error::protocol("encoding a request", e.to_string()))
}

pub(crate) fn header_value(name: &str, value: &str) -> Result<HeaderValue> {
    HeaderValue::from_str(value)
        .map_err(|_| Error::protocol(format!("building header {name}"), format!("invalid value {value:?}")))
}

/// The start of a body, for error messages.
pub(crate) fn preview(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]);
    text.trim().to_string()
}

/// Turns a non-success file-API response into an [`Error::Api`].
pub(crate) async fn api_error(method: &str, path: &str, response: reqwest::Response) -> Error {
    let status: StatusCode = response.status();
    let body = response.bytes().await.unwrap_or_default();
    let message = serde_json::from_slice::<Envelope>(&body).map(|e| e.error).unwrap_or_else(|_| preview(&body));
    Error::Api { method: method.into(), path: path.into(), status: status.as_u16(), message }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::seg;

    #[test]
    fn segments_cannot_escape_their_place() {
        assert_eq!(seg("c1").unwrap(), "c1");
        assert_eq!(seg("a/../b").unwrap(), "a%2F..%2Fb");
        assert_eq!(seg("x?recursion=1#y").unwrap(), "x%3Frecursion%3D1%23y");
        assert_eq!(seg("snap 0").unwrap(), "snap%200");
        for bad in ["", ".", ".."] {
            assert!(seg(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
