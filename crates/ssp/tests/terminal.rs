//! The web terminal end to end: the real `ssp serve` on a private real LXD with a `debian-12`
//! container, its HTTPS listener driven as a browser page would drive it — a ticket from
//! `POST …/terminal` with alice's bearer token, then a websocket (tokio-tungstenite over
//! rustls, trusting exactly the daemon's certificate) with the page's `Origin`. Checked: the
//! shell runs as alice; it outlives its socket and a re-attach sees the scrollback and the
//! same shell (a variable set before is still set); resize reaches the pty; a second socket
//! takes the session over; a reused ticket, a foreign `Origin` and none at all are refused
//! alike (403, one body); bob asking for alice's container is answered as for a missing one;
//! `exit` ends with an exit frame and a normal close; disabling the user hangs the shell up,
//! and stopping the container ends the session. All of it twice: with shells started
//! through LXD's own `forkexec` (`session_path = "auto"`) and through LXD's exec websocket.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use futures_util::{SinkExt, StreamExt};
use ssp_testkit::e2e::{cli, create_answering, ok, root, text, EXEC_PATIENCE};
use ssp_testkit::web::{HttpAnswer as Answer, Socket, Web};
use ssp_testkit::{Platform, PrivateLxd};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

/// How long one step (an answer, a line of output) may take before the test calls it hung.
const PATIENCE: Duration = Duration::from_secs(60);

/// This binary's tests run one at a time, as the gateway suite's do (one LXD 5.0.2 starting
/// debian-12 containers for two platforms at once stalled past the CLI's patience).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The web terminal's calls on the daemon's HTTPS side.
trait TerminalWeb {
    /// `POST /api/v1/containers/OWNER/NAME/terminal` with `token`.
    async fn ticket(&self, token: &str, container: &str, session: Option<&str>) -> Result<Answer>;
    /// A ticket and its session for `container`, waiting while the daemon says the container
    /// is not ready for one yet (409 while its account is being set up).
    async fn fresh_ticket(&self, token: &str, container: &str, session: Option<&str>) -> Result<(String, String)>;
    /// The terminal's websocket for `ticket`, with the page's own `Origin`.
    async fn attach(&self, ticket: &str) -> Result<Socket>;
    /// The answer refusing the websocket for `ticket` with `origin`.
    async fn refused(&self, ticket: &str, origin: Option<&str>) -> Result<Answer>;
}

impl TerminalWeb for Web {
    async fn ticket(&self, token: &str, container: &str, session: Option<&str>) -> Result<Answer> {
        let mut body = serde_json::json!({ "cols": 80, "rows": 24 });
        if let Some(session) = session {
            body["session"] = session.into();
        }
        let url = format!("https://{}/api/v1/containers/{container}/terminal", self.host);
        let response = tokio::time::timeout(PATIENCE, self.http.post(url).bearer_auth(token).json(&body).send())
            .await
            .context("POST …/terminal hung")??;
        Ok((response.status().as_u16(), response.text().await?))
    }

    async fn fresh_ticket(&self, token: &str, container: &str, session: Option<&str>) -> Result<(String, String)> {
        let mut answer = (0, String::new());
        let deadline = std::time::Instant::now() + EXEC_PATIENCE;
        while std::time::Instant::now() < deadline {
            answer = self.ticket(token, container, session).await?;
            if answer.0 != 409 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        ensure!(answer.0 == 200, "no ticket for {container}: {answer:?}");
        let body: serde_json::Value = serde_json::from_str(&answer.1)?;
        ensure!(body["expires_in_secs"] == 30, "{body}");
        let ticket = body["ticket"].as_str().context(format!("no ticket in {body}"))?.to_string();
        let session = body["session"].as_str().context(format!("no session in {body}"))?.to_string();
        Ok((ticket, session))
    }

    async fn attach(&self, ticket: &str) -> Result<Socket> {
        let path = format!("/api/v1/terminal?ticket={ticket}");
        self.websocket(&path, Some(&self.origin()), None)
            .await?
            .map_err(|answer| anyhow!("websocket refused: {answer:?}"))
    }

    async fn refused(&self, ticket: &str, origin: Option<&str>) -> Result<Answer> {
        match self.websocket(&format!("/api/v1/terminal?ticket={ticket}"), origin, None).await? {
            Ok(_) => bail!("a websocket with origin {origin:?} was accepted"),
            Err(answer) => Ok(answer),
        }
    }
}

async fn keys(socket: &mut Socket, typed: &str) -> Result<()> {
    Ok(socket.send(Message::binary(typed.as_bytes().to_vec())).await?)
}

/// Reads terminal output until it holds `needle`; returns all of it.
async fn read_until(socket: &mut Socket, needle: &str) -> Result<String> {
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !seen.contains(needle) {
        let message = tokio::time::timeout_at(deadline, socket.next())
            .await
            .map_err(|_| anyhow!("no {needle:?} within {PATIENCE:?}; the terminal showed {seen:?}"))?;
        match message {
            Some(Ok(Message::Binary(bytes))) => seen.push_str(&text(&bytes)),
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            other => bail!("{other:?} while waiting for {needle:?}; the terminal showed {seen:?}"),
        }
    }
    Ok(seen)
}

/// Reads until the socket's next text frame or its close, skipping output.
async fn next_event(socket: &mut Socket) -> Result<Message> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await.context("no frame")? {
            Some(Ok(Message::Binary(_) | Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(message)) => return Ok(message),
            other => bail!("the socket ended without a frame: {other:?}"),
        }
    }
}

/// The scenario on a fresh platform whose shells start the way `session_path` says.
async fn with_platform(lxd: &'static PrivateLxd, session_path: &str) -> Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    let config = format!("[gateway]\nlisten = \"127.0.0.1:0\"\nsession_path = \"{session_path}\"\n");
    let platform =
        Platform::start_async_with(PathBuf::from(env!("CARGO_BIN_EXE_ssp")), lxd, "debian-12", &config).await?;
    let checked = scenario(&platform).await.and_then(|()| {
        // The shells went the way asked: LXD's `forkexec` with the pty kept by ssp, or LXD's
        // exec websocket (bridged by ssp: its secrets never left the daemon).
        let path = if session_path == "auto" { "attach" } else { "lxd-exec" };
        let log = platform.log();
        let started: Vec<&str> = log.lines().filter(|line| line.contains("terminal: shell started")).collect();
        ensure!(!started.is_empty(), "no shell start in the daemon's log");
        for line in started {
            ensure!(line.contains(&format!("\"{path}\"")), "not through {path}: {line}");
        }
        Ok(())
    });
    checked.map_err(|e| platform.explain(e))
}

async fn terminal_end_to_end(lxd: &'static PrivateLxd) -> Result<()> {
    with_platform(lxd, "auto").await
}

async fn terminal_through_lxd_exec(lxd: &'static PrivateLxd) -> Result<()> {
    with_platform(lxd, "lxd-exec").await
}

async fn scenario(platform: &Platform) -> Result<()> {
    let alice = platform.user("alice", &[])?;
    platform.user("bob", &[])?;
    let (alice_token, bob_token) = (platform.token("alice")?, platform.token("bob")?);
    let web = Web::new(platform)?;
    create_answering(platform, &alice, "dev").await?;

    // A shell as alice, in her home, with the page's own Origin.
    let (ticket, session) = web.fresh_ticket(&alice_token, "alice/dev", None).await?;
    let mut socket = web.attach(&ticket).await?;
    keys(&mut socket, "echo $USER; export KEEP=42\r").await?;
    read_until(&mut socket, "alice\r\n").await?;
    keys(&mut socket, "echo \"at:$(pwd):$TERM\"\r").await?;
    read_until(&mut socket, "at:/home/alice:xterm-256color").await?;

    // The ticket worked once: presented again (with the right Origin) it is refused.
    let reused = web.refused(&ticket, Some(&web.origin())).await?;
    ensure!(reused.0 == 403, "a reused ticket: {reused:?}");

    // The socket goes; the shell stays. A ticket for the same session re-attaches: the recent
    // output comes first, then the same shell answers.
    socket.close(None).await?;
    drop(socket);
    let (ticket, again) = web.fresh_ticket(&alice_token, "alice/dev", Some(&session)).await?;
    ensure!(again == session, "a live session was not handed out again: {again} for {session}");
    let mut socket = web.attach(&ticket).await?;
    read_until(&mut socket, "at:/home/alice:xterm-256color").await?;
    keys(&mut socket, "echo keep=$KEEP\r").await?;
    read_until(&mut socket, "keep=42").await?;

    // Resize reaches the pty.
    socket.send(Message::text(r#"{"type":"resize","cols":101,"rows":33}"#)).await?;
    keys(&mut socket, "stty size\r").await?;
    read_until(&mut socket, "33 101").await?;
    // A signal that is not allowed is ignored, and the socket stays.
    socket.send(Message::text(r#"{"type":"signal","signal":19}"#)).await?;
    keys(&mut socket, "echo still=$((40 + 2))\r").await?;
    read_until(&mut socket, "still=42").await?;

    // A second socket takes the session over; the first is closed with 4001.
    let (ticket, _) = web.fresh_ticket(&alice_token, "alice/dev", Some(&session)).await?;
    let mut second = web.attach(&ticket).await?;
    match next_event(&mut socket).await? {
        Message::Close(Some(frame)) if frame.code == CloseCode::from(4001) => {}
        other => bail!("the first socket was not closed as taken over: {other:?}"),
    }
    read_until(&mut second, "still=42").await?;
    let mut socket = second;

    // Refusals, all before any upgrade and all alike: a foreign page's Origin, no Origin at
    // all (each with a fresh ticket, which is then spent), and the reused ticket above.
    let (foreign_ticket, _) = web.fresh_ticket(&alice_token, "alice/dev", None).await?;
    let foreign = web.refused(&foreign_ticket, Some("https://evil.example")).await?;
    let (bare_ticket, _) = web.fresh_ticket(&alice_token, "alice/dev", None).await?;
    let bare = web.refused(&bare_ticket, None).await?;
    let spent = web.refused(&foreign_ticket, Some(&web.origin())).await?;
    let forged = web.refused("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", Some(&web.origin())).await?;
    for answer in [&foreign, &bare, &spent, &forged] {
        ensure!(answer == &reused, "refusals differ: {answer:?} and {reused:?}");
    }
    let body: serde_json::Value = serde_json::from_str(&reused.1).context(format!("not JSON: {}", reused.1))?;
    ensure!(body["error"]["code"] == "forbidden", "{body}");

    // bob asking for alice's container is answered as for a container that does not exist.
    let foreign_container = web.ticket(&bob_token, "alice/dev", None).await?;
    let missing = web.ticket(&bob_token, "alice/nosuch", None).await?;
    ensure!(foreign_container.0 == 404 && missing.0 == 404, "{foreign_container:?} / {missing:?}");
    ensure!(
        foreign_container.1.replace("alice/dev", "NAME") == missing.1.replace("alice/nosuch", "NAME"),
        "bob can tell alice/dev exists: {foreign_container:?} / {missing:?}"
    );

    // `exit`: an exit frame with the shell's code, then a normal close.
    keys(&mut socket, "exit\r").await?;
    let code = exit_code(&mut socket).await?;
    ensure!(code == 0, "exit ended with {code}");
    // The session is gone: asking for it makes a new one.
    let (_, after) = web.fresh_ticket(&alice_token, "alice/dev", Some(&session)).await?;
    ensure!(after != session, "an ended session was handed out again");

    // Disabling alice hangs up her sessions: SIGHUP ends the shell (128 + 1).
    let mut socket = ready_shell(&web, &alice_token).await?;
    ok(root(platform, &["user", "disable", "alice"]).await?, "user disable")?;
    let code = exit_code(&mut socket).await?;
    ensure!(code == 129, "the hung-up shell ended with {code}");
    ok(root(platform, &["user", "enable", "alice"]).await?, "user enable")?;

    // Stopping the container takes the shell with it, and the session ends.
    let mut socket = ready_shell(&web, &alice_token).await?;
    ok(cli(platform, &alice, &["container", "stop", "dev"]).await?, "container stop")?;
    exit_code(&mut socket).await?;
    Ok(())
}

/// A new session in alice/dev whose shell has answered.
async fn ready_shell(web: &Web, token: &str) -> Result<Socket> {
    let (ticket, _) = web.fresh_ticket(token, "alice/dev", None).await?;
    let mut socket = web.attach(&ticket).await?;
    keys(&mut socket, "echo ready=$((6 * 7))\r").await?;
    read_until(&mut socket, "ready=42").await?;
    Ok(socket)
}

/// The code of the exit frame that ends the socket, checking the normal close after it.
async fn exit_code(socket: &mut Socket) -> Result<i64> {
    let code = match next_event(socket).await? {
        Message::Text(frame) => {
            let frame: serde_json::Value = serde_json::from_str(frame.as_str())?;
            ensure!(frame["type"] == "exit" && frame.as_object().is_some_and(|o| o.len() == 2), "{frame}");
            frame["code"].as_i64().context(format!("no code in {frame}"))?
        }
        other => bail!("no exit frame: {other:?}"),
    };
    match next_event(socket).await? {
        Message::Close(Some(frame)) if frame.code == CloseCode::Normal => Ok(code),
        other => bail!("not a normal close after the exit: {other:?}"),
    }
}

ssp_testkit::lxd_tests![terminal_end_to_end, terminal_through_lxd_exec];
