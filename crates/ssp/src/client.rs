//! The CLI's client of the ssp daemon's REST API (`/api/v1`), over https or a unix socket.
//!
//! Over https it trusts exactly one certificate: the daemon's own, pinned at `ssp login`
//! (the daemon's certificate is self-signed, so no public root could vouch for it, and none is
//! consulted). The host name is still checked against the certificate, as browsers do. Over
//! the daemon's unix socket there is no TLS: the kernel tells the daemon who is calling.
//!
//! Every failure becomes an [`ApiError`] that keeps what the caller branches on (status and
//! code for exit codes, not-found while waiting for a delete) and says what to do.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use reqwest::{Method, StatusCode, Url};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use serde::de::DeserializeOwned;
use serde::Serialize;
use ssp_api as api;
use ssp_core::fingerprint::certificate as certificate_fingerprint;

use crate::config::{Settings, LOGIN_HINT};

mod clones;
mod desktop;
mod storage;

/// How long to wait for a connection to the daemon: it is local or on the LAN.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one ordinary request may take. Exec is exempt: a command may run for hours.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the daemon listens when it is local and nothing else is configured.
pub const DEFAULT_SOCKET: &str = "/run/ssp/ssp.sock";

/// Where the ssp daemon listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `https://host:port`: TLS with the pinned certificate.
    Https(Url),
    /// `unix:/path`: plain HTTP over the daemon's local socket.
    Unix(std::path::PathBuf),
}

impl Endpoint {
    /// Parses `https://host[:port]` or `unix:/absolute/path`.
    pub fn parse(url: &str) -> Result<Endpoint, ApiError> {
        let bad = |why: &str| ApiError::BadUrl { url: url.to_string(), why: why.to_string() };
        if let Some(path) = url.strip_prefix("unix:") {
            // `unix:///run/x.sock` is a common way to write it too.
            let path = path.strip_prefix("//").unwrap_or(path);
            if !path.starts_with('/') {
                return Err(bad("a unix socket's path must be absolute, e.g. unix:/run/ssp/ssp.sock"));
            }
            return Ok(Endpoint::Unix(path.into()));
        }
        let parsed = Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        if parsed.scheme() != "https" {
            return Err(bad(
                "the ssp daemon speaks https (https://host:8443) or a unix socket (unix:/run/ssp/ssp.sock)",
            ));
        }
        if parsed.host().is_none() {
            return Err(bad("no host name"));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(bad("credentials go in --token, not in the URL"));
        }
        if parsed.path() != "/" || parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(bad("give only the scheme, host and port, e.g. https://host:8443"));
        }
        Ok(Endpoint::Https(parsed))
    }

    /// The URL as a person writes it (and as the config stores it).
    pub fn display(&self) -> String {
        match self {
            Endpoint::Https(url) => url.as_str().trim_end_matches('/').to_string(),
            Endpoint::Unix(path) => format!("unix:{}", path.display()),
        }
    }

    /// The base that request paths are appended to.
    fn base(&self) -> String {
        match self {
            Endpoint::Https(url) => url.as_str().trim_end_matches('/').to_string(),
            // Over a unix socket the host is never looked up; the path is all that counts.
            Endpoint::Unix(_) => "http://localhost".to_string(),
        }
    }
}

/// Why a call to the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The daemon answered with an error.
    #[error("{message}")]
    Api {
        /// The HTTP status.
        status: StatusCode,
        /// The API's error code (`not_found`, `quota_exceeded`, …).
        code: String,
        /// The daemon's message for people.
        message: String,
    },
    /// No connection could be made, or it broke.
    #[error("cannot reach the ssp daemon at {url}: {detail} — is it running? start it with scripts/up")]
    Unreachable {
        /// The daemon's URL.
        url: String,
        /// What went wrong, from the innermost cause.
        detail: String,
    },
    /// A connection was made, but TLS failed (most often: not the pinned certificate).
    #[error(
        "TLS with the ssp daemon at {url} failed: {detail}; if the daemon's certificate changed, \
         check its fingerprint (`ssp info` on the server) and log in again: ssp login {url} --token TOKEN"
    )]
    Tls {
        /// The daemon's URL.
        url: String,
        /// What TLS said.
        detail: String,
    },
    /// The daemon answered something this ssp does not understand.
    #[error("the ssp daemon at {url} gave an unexpected answer to {what}: {detail} (are the ssp versions of client and server the same?)")]
    Protocol {
        /// The daemon's URL.
        url: String,
        /// The request.
        what: String,
        /// What was wrong with it.
        detail: String,
    },
    /// The configured or given URL is not one ssp can use.
    #[error("{url:?} is not an ssp daemon URL: {why}")]
    BadUrl {
        /// The text given.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// Not configured to talk to any daemon.
    #[error("not logged in: {LOGIN_HINT}")]
    NotLoggedIn,
    /// https without a pinned certificate.
    #[error("no certificate is pinned for {url}: run `ssp login {url} --token TOKEN` to fetch and pin it")]
    NoCertificate {
        /// The daemon's URL.
        url: String,
    },
    /// A local file could not be read or written.
    #[error("{what}: {detail}")]
    Local {
        /// What was being done.
        what: String,
        /// The system's error.
        detail: String,
    },
    /// The pinned certificate in the config cannot be read.
    #[error("the certificate pinned in {path} is not valid PEM ({detail}): log in again with `ssp login`")]
    BadCertificate {
        /// The config file.
        path: String,
        /// What is wrong.
        detail: String,
    },
}

impl ApiError {
    /// The daemon answered 404.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ApiError::Api { status, .. } if *status == StatusCode::NOT_FOUND)
    }
}

/// The API client: one daemon, one identity.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    endpoint: Endpoint,
    base: String,
    token: Option<String>,
}

impl Client {
    /// A client for the settings in force. With no URL anywhere, root on the daemon's own host
    /// uses the local socket (which needs no token), as `lxc` does with LXD's.
    pub fn from_settings(settings: &Settings) -> Result<Client, ApiError> {
        let endpoint = match &settings.url {
            Some(url) => Endpoint::parse(url)?,
            None if is_root() && std::path::Path::new(DEFAULT_SOCKET).exists() => Endpoint::Unix(DEFAULT_SOCKET.into()),
            None => return Err(ApiError::NotLoggedIn),
        };
        let certificate = match (&endpoint, &settings.ca_cert) {
            (Endpoint::Unix(_), _) => None,
            (Endpoint::Https(_), Some(pem)) => Some(
                parse_pem(pem)
                    .map_err(|detail| ApiError::BadCertificate { path: settings.path.display().to_string(), detail })?,
            ),
            (Endpoint::Https(_), None) => return Err(ApiError::NoCertificate { url: endpoint.display() }),
        };
        if settings.token.is_none() && matches!(endpoint, Endpoint::Https(_)) {
            return Err(ApiError::NotLoggedIn);
        }
        Client::new(endpoint, settings.token.clone(), certificate)
    }

    /// A client for `endpoint` that trusts only `certificate` (https) and sends `token`.
    pub fn new(
        endpoint: Endpoint,
        token: Option<String>,
        certificate: Option<CertificateDer<'static>>,
    ) -> Result<Client, ApiError> {
        let tls = tls_config(Arc::new(PinnedVerifier::new(certificate)));
        // A proxy from the environment would sit between us and a daemon whose certificate we
        // pin; the daemon is reached directly.
        let builder = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(CONNECT_TIMEOUT)
            .no_proxy()
            .user_agent(concat!("ssp/", env!("CARGO_PKG_VERSION")));
        let builder = match &endpoint {
            Endpoint::Unix(path) => builder.unix_socket(path.as_path()),
            Endpoint::Https(_) => builder,
        };
        let http =
            builder.build().map_err(|e| ApiError::Unreachable { url: endpoint.display(), detail: innermost(&e) })?;
        Ok(Client { base: endpoint.base(), http, endpoint, token })
    }

    /// The daemon's URL, for messages.
    pub fn url(&self) -> String {
        self.endpoint.display()
    }

    /// Sends one request and returns the status and the parsed answer.
    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
        prepare: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<(StatusCode, T), ApiError> {
        let (status, bytes) = self.exchange(method.clone(), path, body, prepare).await?;
        let what = format!("{method} {path}");
        // A 204 has no body; the unit type stands for "nothing expected".
        let bytes = if bytes.is_empty() { &b"null"[..] } else { &bytes[..] };
        let value = serde_json::from_slice(bytes).map_err(|e| ApiError::Protocol {
            url: self.url(),
            what,
            detail: e.to_string(),
        })?;
        Ok((status, value))
    }

    /// Sends one request; a success's status and body, or the error it answered.
    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
        prepare: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<(StatusCode, bytes::Bytes), ApiError> {
        let mut request =
            self.http.request(method.clone(), format!("{}{path}", self.base)).header("Accept", "application/json");
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = prepare(request).send().await.map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| self.transport_error(&e))?;
        if status.is_success() {
            return Ok((status, bytes));
        }
        Err(match serde_json::from_slice::<api::ErrorBody>(&bytes) {
            Ok(body) => ApiError::Api { status, code: body.error.code, message: body.error.message },
            // Not ssp's error format: a proxy, or a daemon too old or too new. Say what came.
            Err(_) => {
                let text = String::from_utf8_lossy(&bytes);
                let text: String = text.trim().chars().take(200).collect();
                ApiError::Api {
                    status,
                    code: status.canonical_reason().unwrap_or("error").to_lowercase().replace(' ', "_"),
                    message: format!("the ssp daemon answered {method} {path} with {status}: {text}"),
                }
            }
        })
    }

    /// Classifies a failure below HTTP: TLS refused, or no daemon there.
    fn transport_error(&self, error: &reqwest::Error) -> ApiError {
        if let Some(tls) = find_tls_error(error) {
            return ApiError::Tls { url: self.url(), detail: describe_tls_error(tls) };
        }
        let mut detail = if error.is_timeout() { "no answer in time".to_string() } else { innermost(error) };
        if matches!(self.endpoint, Endpoint::Unix(_)) && detail.contains("os error 13") {
            detail.push_str(" (the daemon's socket is root's: run as root, or log in over https)");
        }
        ApiError::Unreachable { url: self.url(), detail }
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        Ok(self.send(Method::GET, path, None::<&()>, |r| r.timeout(REQUEST_TIMEOUT)).await?.1)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &(impl Serialize + ?Sized),
    ) -> Result<T, ApiError> {
        Ok(self.send(method, path, Some(body), |r| r.timeout(REQUEST_TIMEOUT)).await?.1)
    }

    async fn delete(&self, path: &str) -> Result<(), ApiError> {
        self.exchange(Method::DELETE, path, None::<&()>, |r| r.timeout(REQUEST_TIMEOUT)).await.map(|_| ())
    }

    /// `GET /info`: who we are and what we talk to.
    pub async fn info(&self) -> Result<api::Info, ApiError> {
        self.get(&path(&["info"])).await
    }

    /// `GET /users` (admin).
    pub async fn users(&self) -> Result<Vec<api::User>, ApiError> {
        self.get(&path(&["users"])).await
    }

    /// `GET /users/{user}`.
    pub async fn user(&self, name: &str) -> Result<api::User, ApiError> {
        self.get(&path(&["users", name])).await
    }

    /// `POST /users` (admin).
    pub async fn create_user(&self, user: &api::UserCreate) -> Result<api::User, ApiError> {
        self.call(Method::POST, &path(&["users"]), user).await
    }

    /// `PATCH /users/{user}` (admin).
    pub async fn update_user(&self, name: &str, update: &api::UserUpdate) -> Result<api::User, ApiError> {
        self.call(Method::PATCH, &path(&["users", name]), update).await
    }

    /// `POST /users/{user}/invite` (admin): a one-time portal link.
    pub async fn invite_user(&self, name: &str, request: &api::InviteCreate) -> Result<api::InviteCreated, ApiError> {
        self.call(Method::POST, &path(&["users", name, "invite"]), request).await
    }

    /// `DELETE /users/{user}` (admin).
    pub async fn delete_user(&self, name: &str) -> Result<(), ApiError> {
        self.delete(&path(&["users", name])).await
    }

    /// `DELETE /users/{user}?purge=true` (admin): the user as it is now while their removal
    /// goes on (202), or `None` when they are gone already (204).
    pub async fn purge_user(&self, name: &str) -> Result<Option<api::User>, ApiError> {
        let path = format!("{}?purge=true", path(&["users", name]));
        let (status, bytes) = self.exchange(Method::DELETE, &path, None::<&()>, |r| r.timeout(REQUEST_TIMEOUT)).await?;
        if status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        serde_json::from_slice(&bytes).map(Some).map_err(|e| ApiError::Protocol {
            url: self.url(),
            what: format!("DELETE {path}"),
            detail: e.to_string(),
        })
    }

    /// `GET /users/{user}/keys`.
    pub async fn keys(&self, user: &str) -> Result<Vec<api::Key>, ApiError> {
        self.get(&path(&["users", user, "keys"])).await
    }

    /// `POST /users/{user}/keys`.
    pub async fn add_key(&self, user: &str, key: &api::KeyCreate) -> Result<api::Key, ApiError> {
        self.call(Method::POST, &path(&["users", user, "keys"]), key).await
    }

    /// `DELETE /users/{user}/keys/{key}`.
    pub async fn delete_key(&self, user: &str, key: &str) -> Result<(), ApiError> {
        self.delete(&path(&["users", user, "keys", key])).await
    }

    /// `GET /users/{user}/tokens`.
    pub async fn tokens(&self, user: &str) -> Result<Vec<api::Token>, ApiError> {
        self.get(&path(&["users", user, "tokens"])).await
    }

    /// `POST /users/{user}/tokens`.
    pub async fn create_token(&self, user: &str, token: &api::TokenCreate) -> Result<api::TokenCreated, ApiError> {
        self.call(Method::POST, &path(&["users", user, "tokens"]), token).await
    }

    /// `DELETE /users/{user}/tokens/{name}`.
    pub async fn delete_token(&self, user: &str, name: &str) -> Result<(), ApiError> {
        self.delete(&path(&["users", user, "tokens", name])).await
    }

    /// `GET /containers[?owner=…]`.
    pub async fn containers(&self, owner: Option<&str>) -> Result<Vec<api::Container>, ApiError> {
        let query = match owner {
            Some(owner) => format!("?owner={}", utf8_percent_encode(owner, SEGMENT)),
            None => String::new(),
        };
        self.get(&format!("{}{query}", path(&["containers"]))).await
    }

    /// `POST /containers`; also whether it was made now (201) rather than by an earlier request
    /// with the same idempotency key (200).
    pub async fn create_container(
        &self,
        create: &api::ContainerCreate,
        idempotency_key: Option<&str>,
    ) -> Result<(bool, api::Container), ApiError> {
        let (status, container) = self
            .send(Method::POST, &path(&["containers"]), Some(create), |request| {
                let request = request.timeout(REQUEST_TIMEOUT);
                match idempotency_key {
                    Some(key) => request.header(api::IDEMPOTENCY_HEADER, key),
                    None => request,
                }
            })
            .await?;
        Ok((status == StatusCode::CREATED, container))
    }

    /// `GET /containers/{owner}/{name}`.
    pub async fn container(&self, owner: &str, name: &str) -> Result<api::Container, ApiError> {
        self.get(&path(&["containers", owner, name])).await
    }

    /// `GET /containers/{owner}/{name}?wait=running|stopped`: answers once the container is
    /// ready in that state or has a problem, or after `seconds` with what it is then.
    pub async fn container_when(
        &self,
        owner: &str,
        name: &str,
        state: &str,
        seconds: u64,
    ) -> Result<api::Container, ApiError> {
        let path = format!("{}?wait={state}&timeout={seconds}", path(&["containers", owner, name]));
        Ok(self.send(Method::GET, &path, None::<&()>, |r| r.timeout(Duration::from_secs(seconds + 30))).await?.1)
    }

    /// `DELETE /containers/{owner}/{name}`: deletion starts; the container is gone once a
    /// `GET` answers 404.
    pub async fn delete_container(&self, owner: &str, name: &str) -> Result<api::Container, ApiError> {
        Ok(self
            .send(Method::DELETE, &path(&["containers", owner, name]), None::<&()>, |r| r.timeout(REQUEST_TIMEOUT))
            .await?
            .1)
    }

    /// `PUT /containers/{owner}/{name}/state`.
    pub async fn set_state(
        &self,
        owner: &str,
        name: &str,
        state: api::DesiredState,
    ) -> Result<api::Container, ApiError> {
        self.call(Method::PUT, &path(&["containers", owner, name, "state"]), &api::StateChange { state }).await
    }

    /// `POST /containers/{owner}/{name}/restart`.
    pub async fn restart(&self, owner: &str, name: &str) -> Result<api::Container, ApiError> {
        self.call(Method::POST, &path(&["containers", owner, name, "restart"]), &serde_json::json!({})).await
    }

    /// `POST /containers/{owner}/{name}/exec`: runs a command to its end, with no time limit.
    pub async fn exec(&self, owner: &str, name: &str, request: &api::ExecRequest) -> Result<api::ExecResult, ApiError> {
        Ok(self.send(Method::POST, &path(&["containers", owner, name, "exec"]), Some(request), |r| r).await?.1)
    }

    /// `GET /images`.
    pub async fn images(&self) -> Result<Vec<api::Image>, ApiError> {
        self.get(&path(&["images"])).await
    }

    /// `GET /gpus`.
    pub async fn gpus(&self) -> Result<api::GpuList, ApiError> {
        self.get(&path(&["gpus"])).await
    }

    /// `GET /gpus/usage`.
    pub async fn gpu_usage(&self) -> Result<api::GpuUsage, ApiError> {
        self.get(&path(&["gpus", "usage"])).await
    }

    /// `GET /gpus/history`: the last hour per GPU, a bucket a minute.
    pub async fn gpu_history(&self) -> Result<api::GpuHistory, ApiError> {
        self.get(&path(&["gpus", "history"])).await
    }

    /// `POST /containers/{owner}/{name}/gpus`.
    /// With `wait`, the answer comes once the container has them.
    pub async fn attach_gpus(
        &self,
        owner: &str,
        name: &str,
        ask: &api::GpuAsk,
        wait: bool,
    ) -> Result<api::GpuGrant, ApiError> {
        let path = format!("{}{}", path(&["containers", owner, name, "gpus"]), if wait { "" } else { "?wait=false" });
        self.call(Method::POST, &path, ask).await
    }

    /// `DELETE /containers/{owner}/{name}/gpus/{index}`.
    /// With `wait`, the answer comes once the GPU is gone from the container.
    pub async fn detach_gpu(&self, owner: &str, name: &str, index: u32, wait: bool) -> Result<(), ApiError> {
        let path = path(&["containers", owner, name, "gpus", &index.to_string()]);
        self.delete(&format!("{path}{}", if wait { "" } else { "?wait=false" })).await
    }

    /// `PATCH /gpus/{index}` (admin).
    pub async fn update_gpu(&self, index: u32, update: &api::GpuUpdate) -> Result<(), ApiError> {
        self.exchange(Method::PATCH, &path(&["gpus", &index.to_string()]), Some(update), |r| r.timeout(REQUEST_TIMEOUT))
            .await
            .map(|_| ())
    }

    /// `PUT /users/{user}/gpu-allowlist` (admin).
    pub async fn set_gpu_allowlist(&self, user: &str, list: &api::GpuAllowlist) -> Result<(), ApiError> {
        self.exchange(Method::PUT, &path(&["users", user, "gpu-allowlist"]), Some(list), |r| r.timeout(REQUEST_TIMEOUT))
            .await
            .map(|_| ())
    }
}

/// Characters escaped in a path segment or query value: anything that could end the segment
/// or start another part of the URL, so every name addresses exactly one object.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'+')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'\\')
    .add(b'^')
    .add(b'|')
    .add(b'=')
    .add(b';');

/// `/api/v1/` followed by the segments, each escaped.
fn path(segments: &[&str]) -> String {
    let mut path = api::API_PREFIX.to_string();
    for segment in segments {
        path.push('/');
        // `.` and `..` would be folded away by URL normalisation and address the parent.
        match *segment {
            "." => path.push_str("%2E"),
            ".." => path.push_str("%2E%2E"),
            segment => path.extend(utf8_percent_encode(segment, SEGMENT)),
        }
    }
    path
}

/// The innermost cause's text: for a refused connection, "Connection refused (os error 111)"
/// says more than reqwest's "error sending request".
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut last: &(dyn std::error::Error + 'static) = error;
    while let Some(source) = last.source() {
        last = source;
    }
    last.to_string()
}

/// The rustls error somewhere in `error`'s causes, if TLS is what failed.
fn find_tls_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cause = Some(error);
    while let Some(current) = cause {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        // An io::Error's source() skips the error it wraps (hyper wraps rustls's io::Error in
        // another), so io::Errors are unwrapped through `get_ref` instead.
        cause = match current.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => current.source(),
        };
    }
    None
}

/// A TLS failure in words; our own verifier's refusals carry their message inside.
fn describe_tls_error(error: &rustls::Error) -> String {
    match error {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => other.to_string(),
        other => other.to_string(),
    }
}

// --- TLS ---------------------------------------------------------------------------------

/// The crypto provider: ring, as the rest of the workspace uses.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client TLS configuration that checks the server with `verifier`.
fn tls_config(verifier: Arc<dyn ServerCertVerifier>) -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        // ring supports every safe default version, so this cannot fail; if it ever did, the
        // connection would fail with TLS's own message instead.
        .unwrap_or_else(|_| rustls::ClientConfig::builder_with_protocol_versions(rustls::DEFAULT_VERSIONS))
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth()
}

/// The pinned certificate does not match the one the server presented.
#[derive(Debug, thiserror::Error)]
#[error("the server presented certificate SHA256 {presented}, not the one pinned at login (SHA256 {pinned})")]
struct PinMismatch {
    presented: String,
    pinned: String,
}

/// No certificate is pinned, so nothing is trusted.
#[derive(Debug, thiserror::Error)]
#[error("no certificate is pinned for this daemon; run `ssp login`")]
struct NothingPinned;

/// Trusts exactly the pinned certificate: byte for byte the one `ssp login` saw. The name is
/// still checked against it, so a certificate for one host is not accepted for another; its
/// validity dates and CA flags are not, because it is not a CA's word but the daemon's own.
#[derive(Debug)]
struct PinnedVerifier {
    pinned: Option<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
}

impl PinnedVerifier {
    fn new(pinned: Option<CertificateDer<'static>>) -> Self {
        Self { pinned, provider: provider() }
    }
}

fn other_error(error: impl std::error::Error + Send + Sync + 'static) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(error))))
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let pinned = self.pinned.as_ref().ok_or_else(|| other_error(NothingPinned))?;
        if end_entity.as_ref() != pinned.as_ref() {
            return Err(other_error(PinMismatch {
                presented: certificate_fingerprint(end_entity),
                pinned: certificate_fingerprint(pinned),
            }));
        }
        let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_name(&parsed, server_name)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Accepts whatever certificate the server shows and keeps it: used only by `ssp login` to
/// learn the certificate it will then pin, and never to send anything over.
#[derive(Debug)]
struct CaptureVerifier {
    seen: Mutex<Option<CertificateDer<'static>>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for CaptureVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(end_entity.clone().into_owned());
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Connects to `url` and returns the certificate the server presents, trusting nothing yet:
/// the caller decides whether to trust it (a fingerprint given, or trust on first use).
pub async fn fetch_certificate(url: &Url) -> Result<CertificateDer<'static>, ApiError> {
    let shown = url.as_str().trim_end_matches('/').to_string();
    let unreachable = |detail: String| ApiError::Unreachable { url: shown.clone(), detail };
    let host = url.host_str().ok_or_else(|| ApiError::BadUrl { url: shown.clone(), why: "no host name".into() })?;
    // IPv6 hosts come bracketed (`[::1]`); neither the resolver nor TLS wants the brackets.
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let server_name = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ServerName::IpAddress(ip.into()),
        Err(_) => ServerName::try_from(host.clone())
            .map_err(|e| ApiError::BadUrl { url: shown.clone(), why: e.to_string() })?,
    };
    let port = url.port_or_known_default().unwrap_or(443);
    let verifier = Arc::new(CaptureVerifier { seen: Mutex::new(None), provider: provider() });
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls_config(verifier.clone())));
    let handshake = async {
        let tcp =
            tokio::net::TcpStream::connect((host.as_str(), port)).await.map_err(|e| unreachable(e.to_string()))?;
        connector.connect(server_name, tcp).await.map_err(|e| {
            match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                Some(tls) => ApiError::Tls { url: shown.clone(), detail: describe_tls_error(tls) },
                None => unreachable(e.to_string()),
            }
        })
    };
    // The stream is dropped at once: nothing is sent over a connection not yet trusted.
    tokio::time::timeout(CONNECT_TIMEOUT, handshake)
        .await
        .map_err(|_| unreachable(format!("no TLS handshake within {} s", CONNECT_TIMEOUT.as_secs())))??;
    let seen = verifier.seen.lock().ok().and_then(|mut seen| seen.take());
    seen.ok_or_else(|| ApiError::Tls { url: shown.clone(), detail: "the server presented no certificate".into() })
}

// --- certificates as text ----------------------------------------------------------------

/// A fingerprint reduced to lowercase hex digits, so `AB:CD…`, `abcd…` and `SHA256:ab cd`
/// compare equal.
pub fn normalize_fingerprint(text: &str) -> String {
    let text = text.trim();
    let text = text.strip_prefix("SHA256").or_else(|| text.strip_prefix("sha256")).unwrap_or(text);
    text.chars().filter(char::is_ascii_hexdigit).map(|c| c.to_ascii_lowercase()).collect()
}

/// Whether `text` is a complete SHA-256 fingerprint in any of the accepted forms.
pub fn is_fingerprint(text: &str) -> bool {
    let allowed = |c: char| c.is_ascii_hexdigit() || c == ':' || c == ' ';
    let body = text.trim();
    let body = body.strip_prefix("SHA256:").or_else(|| body.strip_prefix("sha256:")).unwrap_or(body);
    body.chars().all(allowed) && normalize_fingerprint(body).len() == 64
}

/// The first certificate in a PEM text.
pub fn parse_pem(pem: &str) -> Result<CertificateDer<'static>, String> {
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| e.to_string())
}

/// A certificate as PEM, 64 base64 characters a line.
pub fn to_pem(certificate: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(certificate);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in encoded.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// Whether this process runs as root (who may use the daemon's socket without a token).
fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_and_display() -> Result<(), ApiError> {
        let https = Endpoint::parse("https://127.0.0.1:8443")?;
        assert_eq!(https.display(), "https://127.0.0.1:8443");
        assert_eq!(https.base(), "https://127.0.0.1:8443");
        assert_eq!(Endpoint::parse("https://gpu1.lab:8443/")?.display(), "https://gpu1.lab:8443");
        assert_eq!(Endpoint::parse("https://[::1]:8443")?.display(), "https://[::1]:8443");
        let unix = Endpoint::parse("unix:/run/ssp/ssp.sock")?;
        assert_eq!(unix, Endpoint::Unix("/run/ssp/ssp.sock".into()));
        assert_eq!(unix.display(), "unix:/run/ssp/ssp.sock");
        assert_eq!(unix.base(), "http://localhost");
        assert_eq!(Endpoint::parse("unix:///run/ssp/ssp.sock")?, unix);
        Ok(())
    }

    #[test]
    fn unusable_urls_are_refused_with_a_reason() {
        for url in [
            "http://127.0.0.1:8443",
            "127.0.0.1:8443",
            "https://user:pw@host:8443",
            "https://host:8443/api/v1",
            "unix:relative.sock",
            "",
        ] {
            assert!(matches!(Endpoint::parse(url), Err(ApiError::BadUrl { .. })), "{url:?} was accepted");
        }
    }

    #[test]
    fn paths_escape_every_segment() {
        assert_eq!(path(&["users", "alice", "keys"]), "/api/v1/users/alice/keys");
        assert_eq!(path(&["users", "a/b", "keys", "me@host x"]), "/api/v1/users/a%2Fb/keys/me@host%20x");
        assert_eq!(path(&["users", "..", "keys", "?x=1#"]), "/api/v1/users/%2E%2E/keys/%3Fx%3D1%23");
    }

    #[test]
    fn fingerprints_compare_in_any_common_form() {
        let der = b"not really a certificate";
        let print = certificate_fingerprint(der);
        assert_eq!(print.len(), 32 * 3 - 1);
        assert!(print.chars().all(|c| c == ':' || c.is_ascii_digit() || c.is_ascii_uppercase()));
        let plain = normalize_fingerprint(&print);
        assert_eq!(plain.len(), 64);
        assert_eq!(normalize_fingerprint(&format!("SHA256:{}", plain.to_uppercase())), plain);
        assert!(is_fingerprint(&print));
        assert!(is_fingerprint(&plain));
        assert!(!is_fingerprint(&plain[..60]));
        assert!(!is_fingerprint("zz"));
    }

    #[test]
    fn pem_round_trips() -> Result<(), String> {
        let der: Vec<u8> = (0..=255u8).cycle().take(700).collect();
        let pem = to_pem(&der);
        assert!(pem.lines().all(|line| line.len() <= 64 || line.starts_with("-----")));
        assert_eq!(parse_pem(&pem)?.as_ref(), &der[..]);
        assert!(parse_pem("no pem here").is_err());
        Ok(())
    }

    #[test]
    fn api_errors_carry_the_daemons_message() {
        let error = ApiError::Api {
            status: StatusCode::NOT_FOUND,
            code: "not_found".into(),
            message: "no container alice/x".into(),
        };
        assert!(error.is_not_found());
        assert_eq!(error.to_string(), "no container alice/x");
    }
}
