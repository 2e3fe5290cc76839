//! The RFB handshakes around a relayed desktop, over any byte stream: ssp authenticates to
//! the desktop's VNC server with the session's secret ([`authenticate`]), and admits a viewer
//! with the security type *None* ([`admit_viewer`]). What to say is decided by
//! `ssp_core::rfb`; this module only reads and writes it.

use ssp_core::rfb::{self, Version};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The peer closed or the stream failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The peer said something the handshake does not allow.
    #[error("{0}")]
    Protocol(#[from] rfb::RfbError),
    /// The server turned ssp away, with its reason.
    #[error("the desktop's VNC server refused: {0}")]
    Refused(String),
}

impl HandshakeError {
    /// Whether the peer closed the stream before saying anything: LXD's proxy accepts and
    /// then closes while nothing listens inside yet.
    pub fn closed_early(&self) -> bool {
        matches!(self, HandshakeError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof)
    }
}

/// Authenticates to a desktop's VNC server on `server` with `secret` (VNC authentication),
/// up to and including its security result. The server's ServerInit follows on the stream,
/// for the viewer's ClientInit to ask for.
pub async fn authenticate<S>(server: &mut S, secret: &str) -> Result<(), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut line = [0u8; 12];
    server.read_exact(&mut line).await?;
    let version = rfb::parse_version(&line)?;
    match version {
        Version::V3_8 => server.write_all(rfb::VERSION_3_8).await?,
        Version::V3_7 => server.write_all(b"RFB 003.007\n").await?,
        // TigerVNC and every server worth relaying speak 3.7 or later.
        Version::V3_3 => return Err(rfb::RfbError::NotRfb("RFB 003.003".into()).into()),
    }
    let count = server.read_u8().await?;
    if count == 0 {
        return Err(HandshakeError::Refused(read_reason(server).await?));
    }
    let mut offered = vec![0u8; usize::from(count)];
    server.read_exact(&mut offered).await?;
    let chosen = rfb::pick_server_security(&offered)?;
    server.write_all(&[chosen]).await?;
    let mut challenge = [0u8; 16];
    server.read_exact(&mut challenge).await?;
    server.write_all(&rfb::vnc_auth_response(&challenge, secret)?).await?;
    server.flush().await?;
    match server.read_u32().await? {
        0 => Ok(()),
        _ if version == Version::V3_8 => Err(HandshakeError::Refused(read_reason(server).await?)),
        _ => Err(HandshakeError::Refused("the session's secret was not accepted".into())),
    }
}

/// Greets a viewer on `viewer` and admits it with the security type *None*; returns the
/// version it speaks. Its ClientInit follows on the stream.
pub async fn admit_viewer<S>(viewer: &mut S) -> Result<Version, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    viewer.write_all(rfb::VERSION_3_8).await?;
    viewer.flush().await?;
    let mut line = [0u8; 12];
    viewer.read_exact(&mut line).await?;
    let version = rfb::parse_version(&line)?;
    viewer.write_all(&rfb::viewer_security_offer(version)).await?;
    viewer.flush().await?;
    if rfb::viewer_chooses(version) {
        let choice = viewer.read_u8().await?;
        if let Err(e) = rfb::check_viewer_choice(choice) {
            if version == Version::V3_8 {
                let reason = e.to_string();
                let mut failure = vec![0, 0, 0, 1];
                failure.extend_from_slice(&u32::try_from(reason.len()).unwrap_or(0).to_be_bytes());
                failure.extend_from_slice(reason.as_bytes());
                let _ = viewer.write_all(&failure).await;
            }
            return Err(e.into());
        }
    }
    viewer.write_all(rfb::viewer_security_result(version)).await?;
    viewer.flush().await?;
    Ok(version)
}

/// A server's reason string (a 32-bit length, then the text), at most 1 KiB of it kept.
async fn read_reason<S: AsyncRead + Unpin>(stream: &mut S) -> Result<String, HandshakeError> {
    let len = stream.read_u32().await?;
    let mut text = vec![0u8; usize::try_from(len.min(1024)).unwrap_or(1024)];
    stream.read_exact(&mut text).await?;
    Ok(String::from_utf8_lossy(&text).into_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A VNC server's side of the handshake, as Xtigervnc does it with `secret`.
    async fn serve(mut stream: tokio::io::DuplexStream, secret: &str) -> Result<(), String> {
        stream.write_all(b"RFB 003.008\n").await.unwrap();
        let mut line = [0u8; 12];
        stream.read_exact(&mut line).await.unwrap();
        assert_eq!(&line, b"RFB 003.008\n");
        stream.write_all(&[1, 2]).await.unwrap();
        assert_eq!(stream.read_u8().await.unwrap(), 2);
        let challenge = *b"fedcba9876543210";
        stream.write_all(&challenge).await.unwrap();
        let mut answer = [0u8; 16];
        stream.read_exact(&mut answer).await.unwrap();
        if answer == rfb::vnc_auth_response(&challenge, secret).unwrap() {
            stream.write_all(&[0, 0, 0, 0]).await.unwrap();
            Ok(())
        } else {
            stream.write_all(&[0, 0, 0, 1, 0, 0, 0, 20]).await.unwrap();
            stream.write_all(b"Authentication failed").await.unwrap();
            Err("refused".into())
        }
    }

    #[tokio::test]
    async fn ssp_authenticates_with_the_session_secret() {
        let (mut ours, theirs) = tokio::io::duplex(1024);
        let server = tokio::spawn(serve(theirs, "s3cretAB"));
        authenticate(&mut ours, "s3cretAB").await.unwrap();
        server.await.unwrap().unwrap();

        let (mut ours, theirs) = tokio::io::duplex(1024);
        let server = tokio::spawn(serve(theirs, "s3cretAB"));
        let refused = authenticate(&mut ours, "otherXYZ").await.unwrap_err();
        assert!(
            matches!(refused, HandshakeError::Refused(ref why) if why.starts_with("Authentication fail")),
            "{refused}"
        );
        assert!(server.await.unwrap().is_err());
    }

    #[tokio::test]
    async fn a_server_that_asks_nothing_is_not_relayed() {
        let (mut ours, mut theirs) = tokio::io::duplex(1024);
        tokio::spawn(async move {
            theirs.write_all(b"RFB 003.008\n").await.unwrap();
            let mut line = [0u8; 12];
            theirs.read_exact(&mut line).await.unwrap();
            theirs.write_all(&[1, 1]).await.unwrap();
            let _ = theirs.read_u8().await;
        });
        let refused = authenticate(&mut ours, "s3cretAB").await.unwrap_err();
        assert!(matches!(refused, HandshakeError::Protocol(rfb::RfbError::NoVncAuth(_))), "{refused}");
    }

    #[tokio::test]
    async fn an_empty_stream_is_closed_early() {
        let (mut ours, theirs) = tokio::io::duplex(1024);
        drop(theirs);
        assert!(authenticate(&mut ours, "s3cretAB").await.unwrap_err().closed_early());
    }

    #[tokio::test]
    async fn viewers_are_admitted_with_none_in_3_8_and_3_3() {
        let (mut ours, mut viewer) = tokio::io::duplex(1024);
        let admitted = tokio::spawn(async move { admit_viewer(&mut ours).await.map_err(|e| e.to_string()) });
        let mut line = [0u8; 12];
        viewer.read_exact(&mut line).await.unwrap();
        assert_eq!(&line, b"RFB 003.008\n");
        viewer.write_all(b"RFB 003.008\n").await.unwrap();
        let mut offer = [0u8; 2];
        viewer.read_exact(&mut offer).await.unwrap();
        assert_eq!(offer, [1, 1]);
        viewer.write_all(&[1]).await.unwrap();
        assert_eq!(viewer.read_u32().await.unwrap(), 0);
        assert_eq!(admitted.await.unwrap().unwrap(), Version::V3_8);

        let (mut ours, mut viewer) = tokio::io::duplex(1024);
        let admitted = tokio::spawn(async move { admit_viewer(&mut ours).await.map_err(|e| e.to_string()) });
        viewer.read_exact(&mut line).await.unwrap();
        viewer.write_all(b"RFB 003.003\n").await.unwrap();
        assert_eq!(viewer.read_u32().await.unwrap(), 1);
        assert_eq!(admitted.await.unwrap().unwrap(), Version::V3_3);
    }

    #[tokio::test]
    async fn a_viewer_choosing_vnc_auth_is_told_why_not() {
        let (mut ours, mut viewer) = tokio::io::duplex(1024);
        let admitted = tokio::spawn(async move { admit_viewer(&mut ours).await.map_err(|e| e.to_string()) });
        let mut line = [0u8; 12];
        viewer.read_exact(&mut line).await.unwrap();
        viewer.write_all(b"RFB 003.008\n").await.unwrap();
        let mut offer = [0u8; 2];
        viewer.read_exact(&mut offer).await.unwrap();
        viewer.write_all(&[2]).await.unwrap();
        assert_eq!(viewer.read_u32().await.unwrap(), 1);
        let len = viewer.read_u32().await.unwrap();
        let mut reason = vec![0u8; len as usize];
        viewer.read_exact(&mut reason).await.unwrap();
        assert!(String::from_utf8(reason).unwrap().contains("only None"));
        assert!(admitted.await.unwrap().unwrap_err().contains("security type 2"));
    }
}
