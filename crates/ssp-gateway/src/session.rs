//! Channels into a container as its owner: a session (shell, command, or the sftp subsystem)
//! and a forwarded connection to `127.0.0.1:PORT` inside. A session's process is started the
//! way LXD's exec starts one, by [`ssp_lxd::Attach`] with its descriptors kept here (path
//! `attach`), or by LXD's exec websocket where that cannot be used (`lxd-exec`); a forward is
//! a socket in the container's network namespace (`netns`), or a relay started with LXD exec.
//! Bytes move between the SSH channel and the process with flow control on both sides; every
//! channel is recorded in the audit log with its path and bytes.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::FutureExt;
use russh::server::{ChannelOpenHandle, Msg};
use russh::{Channel, ChannelMsg, ChannelOpenFailure, Sig};
use ssp_core::gateway::{self as rules, Login};
use ssp_lxd::{Exec, ExecStdin};
use tokio::sync::mpsc;

use crate::agent::{Agent, Back};
use crate::server::{resolve, Activity, Running};
use crate::{Backend, SessionEnd, SessionStart, Target};

/// What a channel needs from its connection.
pub(crate) struct Context<B: Backend> {
    pub(crate) backend: B,
    pub(crate) lxd: ssp_lxd::Client,
    pub(crate) login: Login,
    pub(crate) source: String,
    pub(crate) activity: Arc<Activity>,
    pub(crate) handle: russh::server::Handle,
    pub(crate) socket_dir: std::path::PathBuf,
    pub(crate) live: crate::devices::LiveDevices,
    pub(crate) sshd: Arc<crate::sshd::SshdSockets>,
    pub(crate) attach: Option<Arc<ssp_lxd::Attach>>,
}

// What sessions run inside, as files (`guest/`, checked by shellcheck in `scripts/test`),
// each started as `sh -c SCRIPT NAME ARGS…` (the relay under bash, for `/dev/tcp`).

/// The account's login shell (`getent`; `/bin/sh` when it has none): a login shell, or
/// `$SHELL -c COMMAND` with the command as `$1`, never parsed by this outer shell.
const LOGIN_SHELL: &str = include_str!("../guest/login-shell.sh");

/// OpenSSH's sftp server, wherever the container's distribution keeps it.
const SFTP_SERVER: &str = include_str!("../guest/sftp-server.sh");

/// A relay to `127.0.0.1:$1` inside the container with bash's `/dev/tcp` (see the file for
/// how it ends).
const RELAY: &str = include_str!("../guest/relay.sh");

/// The most bytes of the client's input sent to LXD in one websocket frame. LXD 5.0.2 reads
/// each frame whole and then writes it to the command's pipe; measured with
/// `crates/ssp-lxd/examples/exec_throughput.rs`, frames the size of a pipe's buffer (64 KiB)
/// move ~15% more than 256 KiB ones, and much more than single 32 KiB SSH packets.
const INPUT_BATCH: usize = 64 * 1024;

/// How long starting a command waits while LXD says another operation (a restart, the
/// reconciler's update) holds the container, before the session is refused with LXD's words.
const BUSY_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// Buffer for each direction of a jump to a container's sshd.
const JUMP_BUFFER: usize = 64 * 1024;

enum Kind {
    Shell,
    Exec(String),
    Sftp,
}

impl Kind {
    fn audit_name(&self) -> &'static str {
        match self {
            Kind::Shell => "shell",
            Kind::Exec(_) => "exec",
            Kind::Sftp => "sftp",
        }
    }

    fn command(&self) -> Vec<String> {
        let sh = |script: &str| vec!["/bin/sh".to_string(), "-c".into(), script.into(), "ssp".into()];
        match self {
            Kind::Shell => sh(LOGIN_SHELL),
            Kind::Exec(command) => {
                let mut argv = sh(LOGIN_SHELL);
                argv.push(command.clone());
                argv
            }
            Kind::Sftp => sh(SFTP_SERVER),
        }
    }
}

/// Runs a session channel: collects pty and environment requests until a shell, command or
/// subsystem is asked for, then runs it.
pub(crate) async fn run_session<B: Backend>(mut channel: Channel<Msg>, context: Context<B>) {
    // An open channel keeps its connection active, even while LXD is slow to start the command.
    let _running = Running::new(&context.activity);
    let mut pty: Option<(String, u32, u32)> = None;
    let mut terminal_modes = Vec::new();
    let mut agent_wanted = false;
    let mut environment = BTreeMap::new();
    let kind = loop {
        match channel.wait().await {
            Some(ChannelMsg::RequestPty { term, col_width, row_height, terminal_modes: modes, .. }) => {
                pty = Some((term, col_width, row_height));
                terminal_modes = modes.into_iter().map(|(mode, value)| (mode as u8, value)).collect();
            }
            Some(ChannelMsg::WindowChange { col_width, row_height, .. }) => {
                if let Some(pty) = &mut pty {
                    (pty.1, pty.2) = (col_width, row_height);
                }
            }
            Some(ChannelMsg::SetEnv { variable_name, variable_value, .. }) => {
                if rules::accepts_env(&variable_name) && !variable_value.contains('\0') {
                    environment.insert(variable_name, variable_value);
                }
            }
            Some(ChannelMsg::AgentForward { .. }) => agent_wanted = true,
            Some(ChannelMsg::RequestShell { .. }) => break Kind::Shell,
            Some(ChannelMsg::Exec { command, .. }) => break Kind::Exec(String::from_utf8_lossy(&command).into_owned()),
            Some(ChannelMsg::RequestSubsystem { name, .. }) if name == "sftp" => break Kind::Sftp,
            Some(ChannelMsg::Close) | None => return,
            Some(_) => {}
        }
    };
    let target = match resolve(&context, None).await {
        Ok(target) => target,
        Err(why) => return refuse(channel, &why).await,
    };
    let mut options = target.exec.clone();
    options.environment.extend(environment);
    if matches!(kind, Kind::Sftp) {
        pty = None;
    }
    if let Some((term, width, height)) = &pty {
        options.environment.insert("TERM".into(), term.clone());
        options.pty = Some(((*width).max(1), (*height).max(1)));
        options.terminal_modes = terminal_modes;
    }
    let agent = if agent_wanted && !matches!(kind, Kind::Sftp) {
        let uid = target.exec.uid;
        match Agent::open(
            &context.lxd,
            &context.live,
            &target.instance,
            &context.socket_dir,
            uid,
            context.handle.clone(),
            Back::Agent,
        )
        .await
        {
            Ok(agent) => {
                options.environment.insert("SSH_AUTH_SOCK".into(), agent.inside.clone());
                Some(agent)
            }
            Err(e) => {
                tracing::warn!(user = %context.login.owner, container = %target.name, "gateway: agent forwarding: {e}");
                None
            }
        }
    } else {
        None
    };
    let exec = start(&context, &target, &kind.command(), options).await;
    let path = exec.as_ref().map_or(LXD_EXEC, path_of);
    let audit = audit_start(&context, &target, kind.audit_name(), path).await;
    let exec = match exec {
        Ok(exec) => exec,
        Err(e) => {
            tracing::warn!(user = %context.login.owner, container = %target.name, "gateway: exec failed: {e}");
            audit_end(&context, audit, SessionEnd::default()).await;
            if let Some(agent) = agent {
                agent.close().await;
            }
            return refuse(channel, &format!("could not start a session in {}: {e}", target.name)).await;
        }
    };
    let end = pump(channel, exec, &context.activity, true).await;
    if let Some(agent) = agent {
        agent.close().await;
    }
    audit_end(&context, audit, end).await;
}

/// The audit log's names for how a channel reached the container.
const ATTACH: &str = "attach";
const LXD_EXEC: &str = "lxd-exec";
const NETNS: &str = "netns";
const SSHD_SOCKET: &str = "sshd-socket";
const DESKTOP_SOCKET: &str = "desktop-socket";

fn path_of(exec: &Exec) -> &'static str {
    if exec.is_attached() {
        ATTACH
    } else {
        LXD_EXEC
    }
}

/// Starts `command` in `target` as its owner (see [`start_in`]).
async fn start<B: Backend>(
    context: &Context<B>,
    target: &Target,
    command: &[String],
    options: ssp_lxd::ExecOptions,
) -> ssp_lxd::Result<Exec> {
    start_in(context.attach.as_deref(), &context.lxd, &target.instance, command, options).await
}

/// The command that runs the account's login shell, as the gateway's shell sessions run it
/// (`guest/login-shell.sh`: the shell `getent` names, `/bin/sh` when it has none). Run it with
/// the owner's [`ssp_lxd::ExecOptions`] and a pty.
pub fn login_shell() -> Vec<String> {
    Kind::Shell.command()
}

/// Starts `command` in LXD instance `instance` with `options`, the way the gateway starts a
/// session: the way LXD's exec does but without its websocket where `attach` can be used
/// (see [`ssp_lxd::Attach`]), else through LXD's exec, waiting (up to 30 s) while LXD says
/// another operation holds the container. [`Exec::is_attached`] tells which.
pub async fn start_in(
    attach: Option<&ssp_lxd::Attach>,
    lxd: &ssp_lxd::Client,
    instance: &str,
    command: &[String],
    options: ssp_lxd::ExecOptions,
) -> ssp_lxd::Result<Exec> {
    if let Some(attach) = attach {
        match attach.exec(instance, command, options.clone()).await {
            Ok(exec) => return Ok(exec),
            Err(why) => tracing::info!(instance, "through LXD's exec websocket this time: {why}"),
        }
    }
    lxd.when_idle(instance, BUSY_PATIENCE, || lxd.exec_patiently(instance, command, options.clone())).await
}

/// Runs a forwarded connection to `127.0.0.1:port` inside `target`, answering the channel's
/// open: to port 22 (ProxyJump, `-W HOST:22`) through the container's sshd socket; to any
/// other port from a socket in the container's network namespace, or, where that cannot be
/// made, through a relay started with LXD exec.
pub(crate) async fn run_forward<B: Backend>(
    channel: Channel<Msg>,
    reply: ChannelOpenHandle,
    context: Context<B>,
    target: Target,
    port: u16,
) {
    let _running = Running::new(&context.activity);
    if let Some(attach) = context.attach.as_ref().filter(|_| port != 22) {
        match attach.connect(&target.instance, port).await {
            Ok(Ok(stream)) => {
                reply.accept().await;
                let audit = audit_start(&context, &target, &format!("forward:{port}"), NETNS).await;
                let end = splice(channel, stream).await;
                context.activity.touch();
                audit_end(&context, audit, end).await;
                return;
            }
            Ok(Err(e)) => {
                tracing::info!(user = %context.login.owner, container = %target.name, "gateway: forward to port {port}: {e}");
                reply.reject(ChannelOpenFailure::Other { code: 2, reason: format!("ssp: {e}") }).await;
                return;
            }
            Err(why) => {
                tracing::info!(container = %target.name, "gateway: forward through a relay this time: {why}");
            }
        }
    }
    reply.accept().await;
    if port == 22 {
        // The container's sshd, through its socket, once its host key is the pinned one;
        // never through a relay that could not check it.
        match context.sshd.connect(&target.instance, target.ssh_host_key.as_deref()).await {
            Ok((socket, _lease)) => {
                let audit = audit_start(&context, &target, "sshd", SSHD_SOCKET).await;
                let end = splice(channel, socket).await;
                context.activity.touch();
                audit_end(&context, audit, end).await;
            }
            Err(e) => {
                tracing::warn!(user = %context.login.owner, container = %target.name, "gateway: jump to sshd: {e}");
                let _ = channel.close().await;
            }
        }
        return;
    }
    let audit = audit_start(&context, &target, &format!("forward:{port}"), LXD_EXEC).await;
    let command = vec!["/bin/bash".to_string(), "-c".into(), RELAY.into(), "relay".into(), port.to_string()];
    let mut options = target.exec.clone();
    options.pty = None;
    let lxd = &context.lxd;
    let started = lxd
        .when_idle(&target.instance, BUSY_PATIENCE, || lxd.exec_patiently(&target.instance, &command, options.clone()));
    let exec = match started.await {
        Ok(exec) => exec,
        Err(e) => {
            tracing::warn!(user = %context.login.owner, container = %target.name, "gateway: relay failed: {e}");
            audit_end(&context, audit, SessionEnd::default()).await;
            let _ = channel.close().await;
            return;
        }
    };
    let end = pump(channel, exec, &context.activity, false).await;
    audit_end(&context, audit, end).await;
}

/// Copies bytes both ways between a channel and a connection until both ends are done; the
/// record counts what went each way.
/// `-L PORT:desktop:PORT`: the login's desktop session (started when none runs), through
/// ssp's own relay: the daemon authenticates to the session's VNC server and the viewer is
/// admitted with the security type *None* — it proved who it is with its SSH key.
pub(crate) async fn run_desktop<B: Backend>(
    channel: Channel<Msg>,
    reply: ChannelOpenHandle,
    context: Context<B>,
    target: Target,
) {
    let _running = Running::new(&context.activity);
    let connection = match context.backend.desktop(&context.login.owner, &target).await {
        Ok(connection) => connection,
        Err(e) => {
            tracing::info!(user = %context.login.owner, container = %target.name, "gateway: desktop: {e}");
            reply.reject(ChannelOpenFailure::Other { code: 2, reason: format!("ssp: {e}") }).await;
            return;
        }
    };
    reply.accept().await;
    let audit = audit_start(&context, &target, "desktop", DESKTOP_SOCKET).await;
    let mut viewer = channel.into_stream();
    let end = match crate::rfb::admit_viewer(&mut viewer).await {
        Ok(_) => splice_stream(viewer, connection.stream).await,
        Err(e) => {
            tracing::info!(user = %context.login.owner, container = %target.name, "gateway: desktop viewer: {e}");
            SessionEnd::default()
        }
    };
    drop(connection.viewer);
    context.activity.touch();
    audit_end(&context, audit, end).await;
}

async fn splice<S>(channel: Channel<Msg>, connection: S) -> SessionEnd
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    splice_stream(channel.into_stream(), connection).await
}

async fn splice_stream<C, S>(mut channel: C, connection: S) -> SessionEnd
where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut connection = Counted::new(connection);
    // It ends with an error as often as not (the client closes the channel as the answer is
    // still on its way): the counts are what matter.
    let _ = tokio::io::copy_bidirectional_with_sizes(&mut channel, &mut connection, JUMP_BUFFER, JUMP_BUFFER).await;
    SessionEnd { bytes_in: connection.written, bytes_out: connection.read, exit_code: None }
}

/// A stream that counts the bytes read from and written to it.
struct Counted<S> {
    inner: S,
    read: u64,
    written: u64,
}

impl<S> Counted<S> {
    fn new(inner: S) -> Self {
        Self { inner, read: 0, written: 0 }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Counted<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        self.read += (buf.filled().len() - before) as u64;
        polled
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = &polled {
            self.written += *n as u64;
        }
        polled
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

async fn refuse(channel: Channel<Msg>, why: &str) {
    let _ = channel.extended_data_bytes(1, Bytes::from(format!("ssp: {why}\r\n"))).await;
    let _ = channel.exit_status(1).await;
    let _ = channel.eof().await;
    let _ = channel.close().await;
}

async fn audit_start<B: Backend>(context: &Context<B>, target: &Target, kind: &str, path: &'static str) -> Option<i64> {
    let start = SessionStart {
        user: context.login.owner.to_string(),
        container: target.name.to_string(),
        kind: kind.into(),
        source: context.source.clone(),
        path,
    };
    match context.backend.session_started(start).await {
        Ok(id) => Some(id),
        Err(e) => {
            tracing::warn!("gateway: recording a session: {e}");
            None
        }
    }
}

async fn audit_end<B: Backend>(context: &Context<B>, id: Option<i64>, end: SessionEnd) {
    if let Some(id) = id {
        if let Err(e) = context.backend.session_ended(id, end).await {
            tracing::warn!("gateway: recording a session's end: {e}");
        }
    }
}

fn signal_number(signal: &Sig) -> Option<i32> {
    Some(match signal {
        Sig::HUP => 1,
        Sig::INT => 2,
        Sig::QUIT => 3,
        Sig::ILL => 4,
        Sig::ABRT => 6,
        Sig::FPE => 8,
        Sig::KILL => 9,
        Sig::USR1 => 10,
        Sig::SEGV => 11,
        Sig::PIPE => 13,
        Sig::ALRM => 14,
        Sig::TERM => 15,
        Sig::Custom(_) => return None,
    })
}

/// Moves bytes both ways until the command's output ends, then reports its exit status
/// (for sessions) and closes the channel. Input runs in its own task: a command blocked on
/// output must never stop us reading it because we wait to write its input.
async fn pump(channel: Channel<Msg>, mut exec: Exec, activity: &Arc<Activity>, session: bool) -> SessionEnd {
    let (mut reader, writer) = channel.split();
    let stdin = exec.take_stdin();
    let control = exec.control.clone();
    let mut stdout = std::mem::replace(&mut exec.stdout, mpsc::channel(1).1);
    let mut stderr = std::mem::replace(&mut exec.stderr, mpsc::channel(1).1);
    let input_activity = Arc::clone(activity);
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let input = tokio::spawn(async move {
        let mut stdin: ExecStdin = stdin;
        let mut bytes_in = 0u64;
        let mut open = true;
        let mut held: Option<ChannelMsg> = None;
        loop {
            let message = match held.take() {
                Some(message) => Some(message),
                None => tokio::select! {
                    message = reader.wait() => message,
                    _ = &mut stop_rx => break,
                },
            };
            match message {
                Some(ChannelMsg::Data { data }) if open => {
                    // Packets already waiting go out as one websocket frame: per-frame work
                    // in LXD, not the bytes, is what limits a bulk upload.
                    let mut batch = bytes::BytesMut::from(&data[..]);
                    while batch.len() < INPUT_BATCH {
                        match reader.wait().now_or_never() {
                            Some(Some(ChannelMsg::Data { data })) => batch.extend_from_slice(&data),
                            Some(other) => {
                                held = Some(other.unwrap_or(ChannelMsg::Close));
                                break;
                            }
                            None => break,
                        }
                    }
                    bytes_in += batch.len() as u64;
                    input_activity.touch();
                    if stdin.write(batch.freeze()).await.is_err() {
                        open = false;
                    }
                }
                Some(ChannelMsg::Eof) if open => {
                    open = false;
                    let _ = stdin.close().await;
                }
                Some(ChannelMsg::WindowChange { col_width, row_height, .. }) => {
                    let _ = control.resize(col_width.max(1), row_height.max(1)).await;
                }
                Some(ChannelMsg::Signal { signal }) => {
                    if let Some(number) = signal_number(&signal) {
                        let _ = control.signal(number).await;
                    }
                }
                Some(ChannelMsg::Close) | None => {
                    // The client went away: hang up, as sshd does when a connection drops.
                    let _ = control.signal(1).await;
                    break;
                }
                Some(_) => {}
            }
        }
        stdin.shutdown().await;
        bytes_in
    });
    let mut bytes_out = 0u64;
    let mut writing = true;
    let (mut out_open, mut err_open) = (true, true);
    while out_open || err_open {
        tokio::select! {
            chunk = stdout.recv(), if out_open => match chunk {
                Some(chunk) => {
                    bytes_out += chunk.len() as u64;
                    activity.touch();
                    if writing && writer.data_bytes(chunk).await.is_err() {
                        writing = false;
                    }
                }
                None => out_open = false,
            },
            chunk = stderr.recv(), if err_open => match chunk {
                Some(chunk) => {
                    bytes_out += chunk.len() as u64;
                    activity.touch();
                    if session && writing && writer.extended_data_bytes(1, chunk).await.is_err() {
                        writing = false;
                    }
                }
                None => err_open = false,
            },
        }
    }
    let _ = stop_tx.send(());
    let bytes_in = input.await.unwrap_or(0);
    let exit_code = match exec.wait().await {
        Ok(exit) => {
            // LXD could not run the program (or a shell's 127 / 126 became LXD's words):
            // say what a shell would have, when nothing on stderr said it already.
            if let Some(note) = exit.note.filter(|_| session && writing) {
                let _ = writer.extended_data_bytes(1, Bytes::from(format!("{note}\r\n"))).await;
            }
            Some(exit.code)
        }
        Err(e) => {
            // LXD before 5.14 sometimes drops a command's output on a loaded host
            // (canonical/lxd#11422): say so rather than end as if all was well.
            tracing::warn!("gateway: waiting for the command: {e}");
            if session && writing {
                let note =
                    format!("ssp: the command's output was cut off by LXD ({e}); its exit status is unknown\r\n");
                let _ = writer.extended_data_bytes(1, Bytes::from(note)).await;
            }
            None
        }
    };
    if session {
        let status = exit_code.map_or(255, |code| u32::try_from(code).unwrap_or(255));
        let _ = writer.exit_status(status).await;
    }
    let _ = writer.eof().await;
    let _ = writer.close().await;
    SessionEnd { bytes_in, bytes_out, exit_code }
}
