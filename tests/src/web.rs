//! The daemon's HTTPS side as a page on it sees it: requests and websockets over rustls that
//! trust exactly the daemon's own (self-signed) certificate, with the page's `Origin` or any
//! other. The web terminal's and the desktop's suites use it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::{SinkExt, StreamExt};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, http::HeaderValue, Message};

use crate::Platform;

/// How long a websocket's handshake may take.
const HANDSHAKE_PATIENCE: Duration = Duration::from_secs(60);

/// A websocket to the daemon.
pub type Socket = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// An HTTP answer: status and body.
pub type HttpAnswer = (u16, String);

/// Trusts exactly one certificate (the daemon's own, self-signed), as the CLI pins it.
#[derive(Debug)]
struct Pinned {
    certificate: CertificateDer<'static>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() != self.certificate.as_ref() {
            return Err(rustls::Error::General("not the daemon's certificate".into()));
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The daemon's HTTPS listener.
#[derive(Debug)]
pub struct Web {
    /// `127.0.0.1:PORT`: the `Host` every request carries.
    pub host: String,
    tls: Arc<rustls::ClientConfig>,
    /// Requests that trust the daemon's certificate.
    pub http: reqwest::Client,
}

impl Web {
    /// For `platform`'s HTTPS listener.
    pub fn new(platform: &Platform) -> Result<Self> {
        let https = platform.https.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        Self::to(&https, &platform.cert())
    }

    /// For the listener at `https` (`https://127.0.0.1:PORT`) whose certificate is `cert`.
    pub fn to(https: &str, cert: &std::path::Path) -> Result<Self> {
        let host =
            https.strip_prefix("https://").context(format!("{https} is not https"))?.trim_end_matches('/').to_string();
        let certificate = CertificateDer::from_pem_file(cert).context("reading the daemon's certificate")?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(Pinned { certificate, provider: Arc::clone(&provider) });
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        let http = reqwest::Client::builder().tls_backend_preconfigured(tls.clone()).no_proxy().build()?;
        Ok(Self { host, tls: Arc::new(tls), http })
    }

    /// The page's own origin.
    pub fn origin(&self) -> String {
        format!("https://{}", self.host)
    }

    /// The websocket at `path` (`/api/v1/…?ticket=…`) with `origin` (none if `None`) and
    /// `protocol` asked for: the socket, or the answer that refused it.
    pub async fn websocket(
        &self,
        path: &str,
        origin: Option<&str>,
        protocol: Option<&str>,
    ) -> Result<std::result::Result<Socket, HttpAnswer>> {
        let connect = async {
            let tcp = tokio::net::TcpStream::connect(&self.host).await?;
            let name = ServerName::try_from("127.0.0.1")?.to_owned();
            let tls = tokio_rustls::TlsConnector::from(Arc::clone(&self.tls)).connect(name, tcp).await?;
            let mut request = format!("wss://{}{path}", self.host).into_client_request()?;
            if let Some(origin) = origin {
                request.headers_mut().insert("Origin", origin.parse()?);
            }
            if let Some(protocol) = protocol {
                request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_str(protocol)?);
            }
            anyhow::Ok(tokio_tungstenite::client_async(request, tls).await)
        };
        match tokio::time::timeout(HANDSHAKE_PATIENCE, connect).await.context("the websocket's handshake hung")?? {
            Ok((socket, _)) => Ok(Ok(socket)),
            Err(tungstenite::Error::Http(response)) => {
                let body = response.body().as_deref().map(crate::e2e::text).unwrap_or_default();
                Ok(Err((response.status().as_u16(), body)))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// A websocket's binary messages as a byte stream, and bytes written as binary messages:
/// what RFB over a websocket needs, whose messages need not line up with frames.
pub fn byte_stream(socket: Socket) -> impl AsyncRead + AsyncWrite + Unpin {
    let (sink, stream) = socket.split();
    let incoming = stream.filter_map(|message| {
        std::future::ready(match message {
            Ok(Message::Binary(bytes)) => Some(Ok::<_, std::io::Error>(bytes)),
            Ok(_) => None,
            Err(e) => Some(Err(std::io::Error::other(e))),
        })
    });
    let outgoing = sink
        .sink_map_err(std::io::Error::other)
        .with(|bytes: bytes::Bytes| std::future::ready(Ok::<_, std::io::Error>(Message::Binary(bytes))));
    tokio::io::join(
        tokio_util::io::StreamReader::new(Box::pin(incoming)),
        tokio_util::io::SinkWriter::new(tokio_util::io::CopyToBytes::new(outgoing)),
    )
}
