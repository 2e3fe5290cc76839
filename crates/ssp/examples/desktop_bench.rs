//! The desktop benchmark's VNC viewer (run by `scripts/bench/desktop`; not a test): connects
//! to a desktop session one way, measures the time to its first frame, then asks for updates
//! as a viewer does (incremental, one outstanding request) for a number of seconds while the
//! bench script moves a window on the desktop, and prints one line of JSON.
//!
//! Ways in:
//! - `--url https://HOST:PORT --cert PEM --token T --container OWNER/NAME`: as the portal
//!   does — `POST …/desktop/ticket` (which starts the session when none runs), the websocket
//!   with the site's `Origin`, RFB with the security type *None*;
//! - `--socket PATH --secret S`: straight to a VNC server's unix socket with VNC
//!   authentication — inside the container (the baseline: no relay at all) or ssp's host
//!   socket (LXD's proxy device, no websocket).
//!
//! Encodings asked for: CopyRect, ZRLE, Raw — what moving a window needs; both ways get the
//! same bytes from the server, so the difference is the relay's.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

fn option(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == &format!("--{name}")).and_then(|at| args.get(at + 1)).cloned()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds: u64 = option(&args, "seconds").unwrap_or_else(|| "10".into()).parse()?;
    let started = Instant::now();
    let report = if let Some(url) = option(&args, "url") {
        let cert = option(&args, "cert").context("--cert")?;
        let token = option(&args, "token").context("--token")?;
        let container = option(&args, "container").context("--container")?;
        let web = ssp_testkit::web::Web::to(&url, std::path::Path::new(&cert))?;
        let ticket_url = format!("https://{}/api/v1/containers/{container}/desktop/ticket", web.host);
        let answer = web.http.post(ticket_url).bearer_auth(&token).send().await?;
        let status = answer.status();
        let body: serde_json::Value = answer.json().await?;
        ensure!(status.is_success(), "no ticket: {status} {body}");
        let ticket = body["ticket"].as_str().context("no ticket")?;
        let path = format!("/api/v1/desktop?ticket={ticket}");
        let socket = match web.websocket(&path, Some(&web.origin()), Some("binary")).await? {
            Ok(socket) => socket,
            Err(answer) => bail!("the websocket was refused: {answer:?}"),
        };
        let mut stream = ssp_testkit::web::byte_stream(socket);
        viewer(&mut stream, None, started, seconds).await?
    } else {
        let socket = option(&args, "socket").context("--url or --socket")?;
        let secret = option(&args, "secret").context("--secret")?;
        let mut stream = tokio::net::UnixStream::connect(&socket).await.with_context(|| socket.clone())?;
        viewer(&mut stream, Some(&secret), started, seconds).await?
    };
    println!("{report}");
    Ok(())
}

/// The handshake (VNC authentication with `secret`, else *None*), the first frame, then
/// `seconds` of updates; a JSON line.
async fn viewer<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    secret: Option<&str>,
    started: Instant,
    seconds: u64,
) -> Result<serde_json::Value> {
    let mut version = [0u8; 12];
    stream.read_exact(&mut version).await?;
    stream.write_all(b"RFB 003.008\n").await?;
    stream.flush().await?;
    let count = stream.read_u8().await?;
    let mut types = vec![0u8; usize::from(count)];
    stream.read_exact(&mut types).await?;
    match secret {
        Some(secret) => {
            ensure!(types.contains(&2), "no VNC authentication offered: {types:?}");
            stream.write_all(&[2]).await?;
            stream.flush().await?;
            let mut challenge = [0u8; 16];
            stream.read_exact(&mut challenge).await?;
            stream.write_all(&ssp_core::rfb::vnc_auth_response(&challenge, secret)?).await?;
        }
        None => {
            ensure!(types == [1], "offered {types:?}, not None");
            stream.write_all(&[1]).await?;
        }
    }
    stream.flush().await?;
    ensure!(stream.read_u32().await? == 0, "not admitted");
    stream.write_all(&[1]).await?;
    stream.flush().await?;
    let width = stream.read_u16().await?;
    let height = stream.read_u16().await?;
    let mut format = [0u8; 16];
    stream.read_exact(&mut format).await?;
    let bytes_per_pixel = usize::from(format[0] / 8);
    let len = stream.read_u32().await?;
    let mut name = vec![0u8; len as usize];
    stream.read_exact(&mut name).await?;
    // SetEncodings: CopyRect, ZRLE, Raw.
    let mut encodings = vec![2u8, 0, 0, 3];
    for encoding in [1i32, 16, 0] {
        encodings.extend_from_slice(&encoding.to_be_bytes());
    }
    stream.write_all(&encodings).await?;
    request(stream, false, width, height).await?;
    let first_bytes = update(stream, bytes_per_pixel).await?;
    let first_frame = started.elapsed();
    let mut updates = 0u64;
    let mut bytes = 0u64;
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(seconds) {
        request(stream, true, width, height).await?;
        let left = Duration::from_secs(seconds).saturating_sub(window.elapsed()) + Duration::from_secs(2);
        match tokio::time::timeout(left, update(stream, bytes_per_pixel)).await {
            Ok(got) => {
                bytes += got?;
                updates += 1;
            }
            Err(_) => break,
        }
    }
    let elapsed = window.elapsed().as_secs_f64();
    Ok(serde_json::json!({
        "width": width,
        "height": height,
        "first_frame_ms": first_frame.as_secs_f64() * 1000.0,
        "first_frame_bytes": first_bytes,
        "updates_per_s": updates as f64 / elapsed,
        "mb_per_s": bytes as f64 / elapsed / 1e6,
        "seconds": elapsed,
    }))
}

async fn request<S: AsyncWrite + Unpin>(stream: &mut S, incremental: bool, width: u16, height: u16) -> Result<()> {
    let mut message = vec![3u8, u8::from(incremental), 0, 0, 0, 0];
    message.extend_from_slice(&width.to_be_bytes());
    message.extend_from_slice(&height.to_be_bytes());
    stream.write_all(&message).await?;
    stream.flush().await?;
    Ok(())
}

/// Reads server messages up to and including one FramebufferUpdate; its payload bytes.
async fn update<S: AsyncRead + Unpin>(stream: &mut S, bytes_per_pixel: usize) -> Result<u64> {
    loop {
        match stream.read_u8().await? {
            0 => break,
            1 => {
                let mut header = [0u8; 5];
                stream.read_exact(&mut header).await?;
                let colours = usize::from(u16::from_be_bytes([header[3], header[4]]));
                skip(stream, colours * 6).await?;
            }
            2 => {}
            3 => {
                let mut padding = [0u8; 3];
                stream.read_exact(&mut padding).await?;
                let len = stream.read_u32().await?;
                skip(stream, len as usize).await?;
            }
            other => bail!("unexpected server message {other}"),
        }
    }
    let _padding = stream.read_u8().await?;
    let rectangles = stream.read_u16().await?;
    let mut bytes = 0u64;
    for _ in 0..rectangles {
        let mut header = [0u8; 12];
        stream.read_exact(&mut header).await?;
        let (w, h) = (u16::from_be_bytes([header[4], header[5]]), u16::from_be_bytes([header[6], header[7]]));
        let length = match i32::from_be_bytes([header[8], header[9], header[10], header[11]]) {
            0 => usize::from(w) * usize::from(h) * bytes_per_pixel,
            1 => 4,
            16 => stream.read_u32().await? as usize,
            other => bail!("unexpected encoding {other}"),
        };
        skip(stream, length).await?;
        bytes += 12 + length as u64;
    }
    Ok(bytes)
}

async fn skip<S: AsyncRead + Unpin>(stream: &mut S, mut length: usize) -> Result<()> {
    let mut buffer = vec![0u8; 64 * 1024];
    while length > 0 {
        let chunk = length.min(buffer.len());
        stream.read_exact(&mut buffer[..chunk]).await?;
        length -= chunk;
    }
    Ok(())
}
