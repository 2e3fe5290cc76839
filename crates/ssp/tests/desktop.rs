//! A desktop in a container, end to end: the real `ssp serve` on a private real LXD with a
//! container from the `debian-12-desktop` image (TigerVNC and XFCE from Debian's packages,
//! built offline like the other images). Checked, as a user would meet it:
//! - `ssp desktop enable` installs ssp's session service (the image has the packages) and
//!   waits until it is ready; before that a ticket is refused with what to do;
//! - a ticket starts the owner's session and the websocket speaks RFB with the security type
//!   *None* (ssp answered the session's VNC challenge itself): ServerInit at 1280×800, then
//!   a framebuffer update;
//! - refusals: a reused ticket and a foreign `Origin` (403, alike), bob asking for alice's
//!   desktop (the answer of a missing container); the VNC server has no TCP port inside,
//!   its host socket is root's alone (0600) and asks for the secret;
//! - `ssh -L PORT:desktop:5901` through the gateway gives a native viewer the same desktop;
//! - the browser: Debian's chromium opens it in the portal (`tests/browser/desktop.mjs`);
//! - the session survives its viewers, is ended by `ssp desktop end` or after the idle time,
//!   and `ssp desktop disable` takes the service out and leaves the user's files;
//! - a busybox container (no systemd) fails to get one with what to do instead.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use ssp_testkit::e2e::{cli, create_answering, eventually, ok, root, text};
use ssp_testkit::web::{HttpAnswer, Socket, Web};
use ssp_testkit::{Platform, PrivateLxd};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How long one step may take before the test calls it hung.
const PATIENCE: Duration = Duration::from_secs(90);

/// The idle time this suite's daemon ends sessions after.
const IDLE_SECS: u64 = 30;

/// How long the browser script may run.
const BROWSER_DEADLINE: Duration = Duration::from_secs(600);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// An RFB viewer's side of a connection that ssp admitted: the version exchange, the
/// security type *None*, ClientInit; returns the desktop's size and name.
async fn rfb_viewer<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> Result<(u16, u16, String)> {
    let mut version = [0u8; 12];
    stream.read_exact(&mut version).await?;
    ensure!(&version == b"RFB 003.008\n", "greeted with {:?}", text(&version));
    stream.write_all(b"RFB 003.008\n").await?;
    stream.flush().await?;
    let mut offer = [0u8; 2];
    stream.read_exact(&mut offer).await?;
    ensure!(offer == [1, 1], "offered security types {offer:?}, not only None");
    stream.write_all(&[1]).await?;
    stream.flush().await?;
    ensure!(stream.read_u32().await? == 0, "the security result was not OK");
    stream.write_all(&[1]).await?; // ClientInit: shared
    stream.flush().await?;
    let width = stream.read_u16().await?;
    let height = stream.read_u16().await?;
    let mut pixel_format = [0u8; 16];
    stream.read_exact(&mut pixel_format).await?;
    let len = stream.read_u32().await?;
    let mut name = vec![0u8; len.min(4096) as usize];
    stream.read_exact(&mut name).await?;
    Ok((width, height, text(&name)))
}

/// Asks for the whole screen and reads the start of the answer: a FramebufferUpdate (type 0)
/// with at least one rectangle.
async fn first_frame<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, width: u16, height: u16) -> Result<()> {
    let mut request = vec![3u8, 0, 0, 0, 0, 0];
    request.extend_from_slice(&width.to_be_bytes());
    request.extend_from_slice(&height.to_be_bytes());
    stream.write_all(&request).await?;
    stream.flush().await?;
    let kind = stream.read_u8().await?;
    ensure!(kind == 0, "the first message was type {kind}, not a framebuffer update");
    let _padding = stream.read_u8().await?;
    let rectangles = stream.read_u16().await?;
    ensure!(rectangles > 0, "a framebuffer update without rectangles");
    Ok(())
}

/// [`rfb_viewer`] and [`first_frame`] over the desktop's websocket.
async fn viewer_over_websocket(socket: Socket) -> Result<(impl AsyncRead + AsyncWrite + Unpin, (u16, u16, String))> {
    let mut bytes = ssp_testkit::web::byte_stream(socket);
    let init = tokio::time::timeout(PATIENCE, rfb_viewer(&mut bytes)).await.context("the RFB handshake hung")??;
    tokio::time::timeout(PATIENCE, first_frame(&mut bytes, init.0, init.1)).await.context("no first frame")??;
    Ok((bytes, init))
}

/// The desktop's calls on the daemon's HTTPS side.
struct Desktop<'a> {
    web: &'a Web,
}

impl Desktop<'_> {
    async fn ticket(&self, token: &str, container: &str) -> Result<HttpAnswer> {
        let url = format!("https://{}/api/v1/containers/{container}/desktop/ticket", self.web.host);
        let response = tokio::time::timeout(PATIENCE, self.web.http.post(url).bearer_auth(token).send())
            .await
            .context("POST …/desktop/ticket hung")??;
        Ok((response.status().as_u16(), response.text().await?))
    }

    async fn fresh_ticket(&self, token: &str, container: &str) -> Result<String> {
        let answer = self.ticket(token, container).await?;
        ensure!(answer.0 == 200, "no desktop ticket for {container}: {answer:?}");
        let body: serde_json::Value = serde_json::from_str(&answer.1)?;
        ensure!(body["expires_in_secs"] == 30, "{body}");
        Ok(body["ticket"].as_str().context(format!("no ticket in {body}"))?.to_string())
    }

    async fn state(&self, token: &str, container: &str) -> Result<(u16, serde_json::Value)> {
        let url = format!("https://{}/api/v1/containers/{container}/desktop", self.web.host);
        let response = self.web.http.get(url).bearer_auth(token).send().await?;
        let status = response.status().as_u16();
        let body = response.text().await?;
        Ok((status, serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body))))
    }

    async fn socket(&self, ticket: &str, origin: Option<&str>) -> Result<std::result::Result<Socket, HttpAnswer>> {
        self.web.websocket(&format!("/api/v1/desktop?ticket={ticket}"), origin, Some("binary")).await
    }
}

/// Runs `script` as root inside `instance`.
fn inside(lxd: &PrivateLxd, instance: &str, script: &str) -> Result<String> {
    lxd.lxc(&["exec", instance, "--", "sh", "-c", script])
}

async fn desktop_end_to_end(lxd: &'static PrivateLxd) -> Result<()> {
    let config = format!("[gateway]\nlisten = \"127.0.0.1:0\"\n\n[desktop]\nidle_timeout_secs = {IDLE_SECS}\n");
    lxd.ensure_image("busybox").await?;
    let platform =
        Platform::start_async_with(PathBuf::from(env!("CARGO_BIN_EXE_ssp")), lxd, "debian-12-desktop", &config).await?;
    scenario(&platform, lxd).await.map_err(|e| platform.explain(e))
}

async fn scenario(platform: &Platform, lxd: &'static PrivateLxd) -> Result<()> {
    let alice = platform.user("alice", &[])?;
    platform.user("bob", &[])?;
    let (alice_token, bob_token) = (platform.token("alice")?, platform.token("bob")?);
    let web = Web::new(platform)?;
    let desktop = Desktop { web: &web };
    create_answering(platform, &alice, "dev").await?;
    let instance = platform
        .lxd_instances(lxd)
        .await?
        .into_iter()
        .map(|i| i.name)
        .find(|name| name.starts_with("alice-dev-"))
        .context("alice's container in LXD")?;

    // Off until asked for; a ticket says what to do.
    let shown = ok(cli(platform, &alice, &["desktop", "show", "dev"]).await?, "desktop show")?;
    ensure!(shown.contains("off"), "{shown}");
    let early = desktop.ticket(&alice_token, "alice/dev").await?;
    ensure!(early.0 == 409 && early.1.contains("ssp desktop enable"), "{early:?}");

    // Enabled: installed inside (the image has the packages), and ready when the CLI returns.
    let started = Instant::now();
    let enabled = ok(cli(platform, &alice, &["desktop", "enable", "dev"]).await?, "desktop enable")?;
    ensure!(enabled.contains("ready") && enabled.contains("5901:desktop:5901"), "{enabled}");
    println!("desktop enable took {:.1} s", started.elapsed().as_secs_f64());

    // A ticket starts the session; the socket speaks RFB with None.
    let opened = Instant::now();
    let ticket = desktop.fresh_ticket(&alice_token, "alice/dev").await?;
    let started_in = opened.elapsed();
    let socket = desktop.socket(&ticket, Some(&web.origin())).await?.map_err(|a| anyhow!("refused: {a:?}"))?;
    let (ws, (width, height, name)) = viewer_over_websocket(socket).await?;
    println!(
        "first session: ticket (session started) in {:.2} s, first frame at {:.2} s; desktop {width}x{height} {name:?}",
        started_in.as_secs_f64(),
        opened.elapsed().as_secs_f64()
    );
    ensure!((width, height) == (1280, 800), "the desktop is {width}x{height}");
    ensure!(name.contains("alice"), "the desktop is called {name:?}");

    // While watched: one viewer, and what it costs.
    let (_, state) = desktop.state(&alice_token, "alice/dev").await?;
    ensure!(state["state"] == "ready" && state["session"]["viewers"] == 1, "{state}");
    let memory = state["session"]["memory"].as_u64().context(format!("no memory figure: {state}"))?;
    println!("an idle XFCE session with its X server uses {:.0} MiB", memory as f64 / (1 << 20) as f64);

    // Refusals: the ticket worked once; a foreign Origin spends a fresh one; both read alike.
    let reused = desktop.socket(&ticket, Some(&web.origin())).await?.err().context("a reused ticket was accepted")?;
    let foreign_ticket = desktop.fresh_ticket(&alice_token, "alice/dev").await?;
    let foreign =
        desktop.socket(&foreign_ticket, Some("https://evil.example")).await?.err().context("a foreign Origin")?;
    let spent = desktop.socket(&foreign_ticket, Some(&web.origin())).await?.err().context("a spent ticket")?;
    ensure!(reused.0 == 403 && reused == foreign && foreign == spent, "{reused:?} / {foreign:?} / {spent:?}");
    // bob: alice's desktop is a container that does not exist, for every call.
    for (what, theirs, missing) in [
        ("ticket", desktop.ticket(&bob_token, "alice/dev").await?, desktop.ticket(&bob_token, "alice/nosuch").await?),
        (
            "state",
            {
                let (s, b) = desktop.state(&bob_token, "alice/dev").await?;
                (s, b.to_string())
            },
            {
                let (s, b) = desktop.state(&bob_token, "alice/nosuch").await?;
                (s, b.to_string())
            },
        ),
    ] {
        ensure!(theirs.0 == 404 && missing.0 == 404, "{what}: {theirs:?} / {missing:?}");
        ensure!(
            theirs.1.replace("alice/dev", "X") == missing.1.replace("alice/nosuch", "X"),
            "{what}: bob can tell alice/dev exists: {theirs:?} / {missing:?}"
        );
    }
    not_reachable(platform, lxd, &instance)?;

    // The same desktop for a native viewer: `ssh -L PORT:desktop:5901` through the gateway.
    through_the_gateway(platform, &alice).await?;
    drop(ws);

    // The browser.
    in_the_browser(platform, lxd, &instance).await?;

    // `ssp desktop end` ends the session; the next ticket starts a new one.
    ok(cli(platform, &alice, &["desktop", "end", "dev"]).await?, "desktop end")?;
    let (_, state) = desktop.state(&alice_token, "alice/dev").await?;
    ensure!(state["session"].is_null(), "a session after `desktop end`: {state}");

    // Nobody watching for the idle time: ssp ends the session — even one it finds running
    // after a restart of the daemon (which forgot its viewers): checked inside, without asking
    // the API, which would note the session itself.
    let ticket = desktop.fresh_ticket(&alice_token, "alice/dev").await?;
    let socket = desktop.socket(&ticket, Some(&web.origin())).await?.map_err(|a| anyhow!("refused: {a:?}"))?;
    let (ws, _) = viewer_over_websocket(socket).await?;
    drop(ws);
    platform.restart()?;
    let left = Instant::now();
    let active = || inside(lxd, &instance, "systemctl is-active ssp-desktop@alice || true");
    ensure!(active()?.trim() == "active", "the session did not outlive the daemon");
    eventually("the idle session to end", Duration::from_secs(IDLE_SECS * 4), || async {
        Ok(active()?.trim() != "active")
    })
    .await?;
    let waited = left.elapsed().as_secs();
    ensure!(waited + 2 >= IDLE_SECS, "ended after {waited} s, before the idle time of {IDLE_SECS} s");
    ensure!(platform.log().contains("nobody watched it"), "no log line for the idle end");
    // The restarted daemon listens on another port: the page and alice's CLI follow it.
    let web = Web::new(platform)?;
    let desktop = Desktop { web: &web };
    let https = platform.https.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    let cert = platform.cert();
    let login = ["login", &https, "--token", &alice_token, "--ca", cert.to_str().context("path")?];
    ok(cli(platform, &alice, &login).await?, "login again")?;

    // An image that cannot have one (busybox: no systemd) fails with what to do, and the
    // container itself is left as it was.
    ok(cli(platform, &alice, &["container", "create", "box", "--image", "busybox"]).await?, "create box")?;
    let refused = cli(platform, &alice, &["desktop", "enable", "box"]).await?;
    let said = text(&refused.stderr);
    ensure!(!refused.status.success() && said.contains("debian-12-desktop"), "enable on busybox: {said}");
    let (_, state) = desktop.state(&alice_token, "alice/box").await?;
    ensure!(state["state"] == "failed" && state["problem"].as_str().is_some_and(|p| p.contains("systemd")), "{state}");
    ok(cli(platform, &alice, &["desktop", "disable", "box"]).await?, "disable on box")?;
    ok(cli(platform, &alice, &["exec", "box", "--", "true"]).await?, "box still answers")?;

    // Disabled: the service goes, the user's files stay, and a ticket is refused again.
    ok(cli(platform, &alice, &["exec", "dev", "--", "sh", "-c", "echo mine > ~/kept.txt"]).await?, "a file")?;
    ok(cli(platform, &alice, &["desktop", "disable", "dev"]).await?, "desktop disable")?;
    eventually("the desktop to be off", PATIENCE, || async {
        let (_, state) = desktop.state(&alice_token, "alice/dev").await?;
        Ok(state["state"] == "off")
    })
    .await?;
    let unit = inside(lxd, &instance, "ls /etc/systemd/system/ | grep -c ssp-desktop || true")?;
    ensure!(unit.trim() == "0", "the session service is still installed: {unit}");
    let kept = ok(cli(platform, &alice, &["exec", "dev", "--", "cat", "kept.txt"]).await?, "cat")?;
    ensure!(kept.trim() == "mine", "{kept}");
    let refused = desktop.ticket(&alice_token, "alice/dev").await?;
    ensure!(refused.0 == 409, "{refused:?}");
    Ok(())
}

/// The VNC server listens on no TCP port inside (so nothing on the bridge or in another
/// container can reach it); ssp's host socket is root's alone and asks for the secret.
fn not_reachable(platform: &Platform, lxd: &PrivateLxd, instance: &str) -> Result<()> {
    let tcp = inside(lxd, instance, "ss -ltnpH")?;
    ensure!(!tcp.to_lowercase().contains("vnc"), "the VNC server listens on TCP inside: {tcp}");
    let unix = inside(lxd, instance, "ss -lxpH | grep rfb.sock || true")?;
    ensure!(unix.contains("/run/ssp-desktop/alice/rfb.sock"), "no unix socket inside: {unix}");
    let sockets = platform.dir().join("state/gateway/sockets");
    let socket = std::fs::read_dir(&sockets)
        .with_context(|| format!("reading {}", sockets.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .find(|path| path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("desktop-")))
        .context("no desktop socket on the host")?;
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&socket)?;
    ensure!(
        meta.mode() & 0o777 == 0o600 && meta.uid() == 0,
        "{}: mode {:o} uid {}",
        socket.display(),
        meta.mode(),
        meta.uid()
    );
    // Whoever opens it gets the VNC server itself, which wants the session's secret.
    let mut raw = std::os::unix::net::UnixStream::connect(&socket)?;
    raw.set_read_timeout(Some(Duration::from_secs(10)))?;
    use std::io::{Read, Write};
    let mut version = [0u8; 12];
    raw.read_exact(&mut version)?;
    raw.write_all(b"RFB 003.008\n")?;
    let mut offer = [0u8; 2];
    raw.read_exact(&mut offer)?;
    ensure!(offer == [1, 2], "the raw socket offers {offer:?}, not only VNC authentication");
    Ok(())
}

/// `ssh -N -L PORT:desktop:5901 alice+dev@gateway`, and an RFB viewer on `127.0.0.1:PORT`.
async fn through_the_gateway(platform: &Platform, alice: &Path) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("alice");
    ok(
        std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "alice", "-f"])
            .arg(&key)
            .output()?,
        "ssh-keygen",
    )?;
    let public = key.with_extension("pub");
    ok(cli(platform, alice, &["key", "add", public.to_str().context("path")?]).await?, "key add")?;
    let info: serde_json::Value = serde_json::from_str(&ok(root(platform, &["--json", "info"]).await?, "info")?)?;
    let listen: std::net::SocketAddr = info["gateway"]["listen"].as_str().context("no gateway")?.parse()?;
    let free = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = free.local_addr()?.port();
    drop(free);
    let mut forward = tokio::process::Command::new("ssh")
        .args(["-F", "/dev/null", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"])
        .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ExitOnForwardFailure=yes"])
        .arg("-i")
        .arg(&key)
        .args(["-p", &listen.port().to_string(), "-N", "-L", &format!("{port}:desktop:5901"), "alice+dev@127.0.0.1"])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let mut seen = String::new();
    let deadline = Instant::now() + PATIENCE;
    let result = loop {
        if Instant::now() > deadline {
            break Err(anyhow!("no desktop through the gateway: {seen}"));
        }
        let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        };
        match tokio::time::timeout(PATIENCE, rfb_viewer(&mut stream)).await {
            Ok(Ok((width, height, _))) => {
                first_frame(&mut stream, width, height).await?;
                break Ok(());
            }
            Ok(Err(e)) => seen = e.to_string(),
            Err(_) => seen = "no answer".into(),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    forward.kill().await.ok();
    result
}

/// The portal in Debian's chromium: `tests/browser/desktop.mjs`.
async fn in_the_browser(platform: &Platform, lxd: &PrivateLxd, instance: &str) -> Result<()> {
    let link = ok(root(platform, &["user", "invite", "alice"]).await?, "user invite")?;
    let (_, token) = link.trim().split_once("/#/invite/").context("an invitation link")?;
    let https = platform.https.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    // Written and closed before it runs (a file still open for writing cannot be executed).
    let dir = tempfile::tempdir()?;
    let exec = dir.path().join("exec-in");
    std::fs::write(
        &exec,
        format!("#!/bin/sh\nexec env LXD_DIR={} lxc exec {instance} -- su - alice -c \"$1\"\n", lxd.dir().display()),
    )?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&exec, std::fs::Permissions::from_mode(0o755))?;
    let mut node = tokio::process::Command::new("node");
    node.arg(repo().join("tests/browser/desktop.mjs"))
        .env("SSP_URL", &https)
        .env("SSP_INVITE", format!("{https}/#/invite/{token}"))
        .env("SSP_CERT", platform.cert())
        .env("SSP_OWNER", "alice")
        .env("SSP_CONTAINER", "dev")
        .env("SSP_EXEC", &exec)
        .env("SSP_SCREENSHOTS", repo().join("target/portal-screenshots"))
        .current_dir(repo().join("tests/browser"))
        .kill_on_drop(true)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = tokio::time::timeout(BROWSER_DEADLINE, node.output()).await.context("the browser script hung")??;
    print!("{}", text(&out.stdout));
    ensure!(out.status.success(), "the browser script failed:\n{}\n{}", text(&out.stdout), text(&out.stderr));
    Ok(())
}

ssp_testkit::lxd_tests![desktop_end_to_end];
