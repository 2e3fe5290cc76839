//! Running commands in an instance with attached stdin/stdout/stderr websockets.
//!
//! LXD 5.0's framing, found by experiment: output arrives as binary frames and its end is an
//! empty *text* frame (not a close); stdin is ended the same way. Window size and signals go
//! as JSON on the separate control websocket; the exit code is in the finished operation's
//! `metadata.return`.
//!
//! The same [`Exec`] also carries a command started by [`crate::Attach`] (LXD's own way of
//! entering the container, without the websockets): callers do not see which.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::client::{seg, Client};
use crate::error::{Error, Result};
use crate::operation::Operation;
use crate::wire::InstanceExecPost;

type Ws = WebSocketStream<UnixStream>;

/// How to run a command.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// Environment variables (LXD adds `PATH`, `HOME`, … when absent).
    pub environment: BTreeMap<String, String>,
    /// Working directory.
    pub cwd: Option<String>,
    /// Uid inside the instance (0 = root).
    pub uid: u32,
    /// Gid inside the instance.
    pub gid: u32,
    /// Allocate a pty of (width, height); output then arrives merged on `stdout`.
    pub pty: Option<(u32, u32)>,
    /// Terminal modes for that pty, as an SSH client sends them (RFC 4254 section 8 opcodes
    /// and values: `VERASE`, `ICRNL`, `ECHO`, `IUTF8`, …), applied as sshd applies them where
    /// ssp opens the pty itself ([`crate::Attach`]); LXD's exec has no way to take them.
    pub terminal_modes: Vec<(u8, u32)>,
    /// Give the command the supplementary groups of `uid`'s account in the instance's
    /// `/etc/group`. LXD 5.0.2's exec sets only the uid and gid and drops every other group
    /// (liblxc's attach without `LXC_ATTACH_SETGROUPS`), so then the command starts as root
    /// in [`DROP_TO_ACCOUNT`], which switches to `uid`/`gid` with the groups and execs it.
    pub init_groups: bool,
}

/// Runs as root with `UID GID COMMAND…` and execs the command as that uid and gid with the
/// account's groups (`guest/drop-to-account.sh`, which says how; a missing or non-executable
/// command is answered as a shell would, 127/126). Every path ends in `exec`, so nothing runs
/// as root after a failed switch.
pub const DROP_TO_ACCOUNT: &str = include_str!("../guest/drop-to-account.sh");

/// A running command. Read `stdout` and `stderr` while the command runs (they are bounded
/// channels: an unread one holds the command back), then [`Exec::wait`] for its exit code.
#[derive(Debug)]
pub struct Exec {
    /// The command's stdin; [`ExecStdin::close`] sends end-of-file.
    pub stdin: ExecStdin,
    /// Output chunks; the channel closes at end of output.
    pub stdout: mpsc::Receiver<Bytes>,
    /// Error output chunks (closed at once with a pty).
    pub stderr: mpsc::Receiver<Bytes>,
    /// Window size and signals.
    pub control: ExecControl,
    ending: Ending,
}

/// What [`Exec::wait`] waits for (one per running command, never in a collection: the
/// variants' sizes do not matter).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
enum Ending {
    /// LXD's operation and the tasks reading its websockets.
    Lxd {
        operation: Operation,
        readers: Vec<JoinHandle<Result<()>>>,
        drains: Vec<JoinHandle<()>>,
        /// The program run (`command[0]`), to name it when it could not be started.
        program: String,
        /// Set once anything arrived on stderr (on the terminal, with a pty): then the
        /// command (a shell, say) has explained a failure itself.
        spoke: Arc<AtomicBool>,
    },
    /// A command [`crate::Attach`] started.
    Local(crate::attach::Ending),
}

/// How a command ended, in a shell's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecExit {
    /// The exit code: the command's own, 128 + N when a signal N killed it, and 127 / 126
    /// where LXD reports the status as "Command not found" / "not executable" (LXD 5.0 turns
    /// those two statuses into a failed operation, whether its own `execve` failed or the
    /// command — a shell that found no such program — exited so).
    pub code: i32,
    /// The line a shell prints on stderr in that case (`nosuch: command not found`, no
    /// newline), when nothing came on stderr that explained it already.
    pub note: Option<String>,
}

/// The writing end of a command's stdin.
pub struct ExecStdin {
    sink: Option<SplitSink<Ws, Message>>,
    /// With a pty, stdin and output share one websocket: ending stdin must not close it.
    shared_with_output: bool,
    /// The command's stdin pipe or terminal, for a command [`crate::Attach`] started.
    local: Option<crate::attach::Input>,
}

impl std::fmt::Debug for ExecStdin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecStdin").field("open", &(self.sink.is_some() || self.local.is_some())).finish()
    }
}

impl ExecStdin {
    /// Sends bytes to the command.
    pub async fn write(&mut self, data: impl Into<Bytes>) -> Result<()> {
        if let Some(local) = self.local.as_mut() {
            let data = data.into();
            return local
                .write(&data)
                .await
                .map_err(|source| Error::Io { what: "writing to the command".into(), source });
        }
        let sink = self.sink.as_mut().ok_or_else(|| Error::protocol("exec stdin", "stdin already closed"))?;
        sink.send(Message::Binary(data.into())).await.map_err(|e| Error::ws("exec stdin", e))
    }

    /// Closes our side of the stdin websocket, whatever state it is in (with a pty, that is
    /// the command's terminal: it reads no more input).
    pub async fn shutdown(&mut self) {
        self.local = None;
        if let Some(mut sink) = self.sink.take() {
            if !self.shared_with_output {
                let _ = sink.send(Message::text("")).await;
            }
            let _ = sink.close().await;
        }
    }

    /// Ends stdin: the command reads end-of-file.
    pub async fn close(&mut self) -> Result<()> {
        if let Some(local) = self.local.take() {
            return local
                .close()
                .await
                .map_err(|source| Error::Io { what: "ending the command's input".into(), source });
        }
        if let Some(mut sink) = self.sink.take() {
            if self.shared_with_output {
                // A pty has no separate end-of-file; ^D is the terminal's way.
                sink.send(Message::Binary(Bytes::from_static(b"\x04")))
                    .await
                    .map_err(|e| Error::ws("exec stdin", e))?;
                return Ok(());
            }
            sink.send(Message::text("")).await.map_err(|e| Error::ws("exec stdin", e))?;
            // The daemon may already have closed its side once the command exited.
            let _ = sink.close().await;
        }
        Ok(())
    }
}

/// Sends window-size changes and signals to a running command.
#[derive(Clone)]
pub struct ExecControl {
    inner: Control,
}

#[derive(Clone)]
enum Control {
    /// LXD's control websocket.
    Lxd(Arc<Mutex<SplitSink<Ws, Message>>>),
    /// The pty and pidfd of a command [`crate::Attach`] started.
    Local(Arc<crate::attach::Control>),
}

impl std::fmt::Debug for ExecControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecControl").finish_non_exhaustive()
    }
}

impl ExecControl {
    /// Resizes the pty.
    pub async fn resize(&self, width: u32, height: u32) -> Result<()> {
        if let Control::Local(local) = &self.inner {
            return local.resize(width, height).map_err(|source| Error::Io { what: "resizing the pty".into(), source });
        }
        self.send(serde_json::json!({
            "command": "window-resize",
            "args": { "width": width.to_string(), "height": height.to_string() },
        }))
        .await
    }

    /// Sends a signal (e.g. 15 for SIGTERM) to the command.
    pub async fn signal(&self, signal: i32) -> Result<()> {
        if let Control::Local(local) = &self.inner {
            return local.signal(signal).map_err(|source| Error::Io { what: "signalling the command".into(), source });
        }
        self.send(serde_json::json!({ "command": "signal", "signal": signal })).await
    }

    async fn send(&self, message: serde_json::Value) -> Result<()> {
        let Control::Lxd(sink) = &self.inner else { return Ok(()) };
        sink.lock().await.send(Message::text(message.to_string())).await.map_err(|e| Error::ws("exec control", e))
    }
}

/// How long connecting one exec stream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// How often a collected exec is tried when its streams cannot be connected. LXD 5.0.2 stops
/// accepting connections while any client holds a new connection open without sending (it
/// peeks at the first bytes inside its accept loop); our client no longer leaves such
/// connections (see `Client::new`), but another program on the host still could.
const CONNECT_ATTEMPTS: u32 = 8;

/// The collected result of [`Client::exec_output`].
#[derive(Debug, Clone)]
pub struct ExecOutput {
    /// Exit code (128 + signal number when killed by a signal).
    pub exit_code: i32,
    /// Everything written to stdout.
    pub stdout: Vec<u8>,
    /// Everything written to stderr.
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    /// Stdout as text (lossy).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Stderr as text (lossy).
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

impl Exec {
    /// Takes stdin out, so another task can feed it while this one reads output and waits;
    /// that task must [`ExecStdin::shutdown`] it (or drop it) when done.
    pub fn take_stdin(&mut self) -> ExecStdin {
        let shared_with_output = self.stdin.shared_with_output;
        std::mem::replace(&mut self.stdin, ExecStdin { sink: None, shared_with_output, local: None })
    }

    /// The LXD operation running the command (none for a command [`crate::Attach`] started).
    pub fn operation_id(&self) -> Option<&str> {
        match &self.ending {
            Ending::Lxd { operation, .. } => Some(operation.id()),
            Ending::Local(_) => None,
        }
    }

    /// Whether [`crate::Attach`] started it (not LXD's exec).
    pub fn is_attached(&self) -> bool {
        matches!(self.ending, Ending::Local(_))
    }

    pub(crate) fn local(
        input: crate::attach::Input,
        stdout: mpsc::Receiver<Bytes>,
        stderr: mpsc::Receiver<Bytes>,
        control: crate::attach::Control,
        ending: crate::attach::Ending,
    ) -> Self {
        Exec {
            stdin: ExecStdin { sink: None, shared_with_output: false, local: Some(input) },
            stdout,
            stderr,
            control: ExecControl { inner: Control::Local(Arc::new(control)) },
            ending: Ending::Local(ending),
        }
    }

    /// Waits for the command to end and returns how it ended.
    ///
    /// Output is read to its end first; then our side of every websocket is closed, because
    /// LXD finishes the operation only once the client has let go of them (with a pty it
    /// otherwise waits forever).
    pub async fn wait(self) -> Result<ExecExit> {
        let Exec { mut stdin, stdout, stderr, control, ending } = self;
        let (operation, readers, drains, program, spoke) = match ending {
            Ending::Lxd { operation, readers, drains, program, spoke } => (operation, readers, drains, program, spoke),
            Ending::Local(ending) => {
                drop((stdin, stdout, stderr, control));
                return ending.wait().await;
            }
        };
        let mut output = Ok(());
        for reader in readers {
            let result = match reader.await {
                Ok(result) => result,
                Err(e) => Err(Error::protocol("exec output", format!("reader task failed: {e}"))),
            };
            output = output.and(result);
        }
        stdin.shutdown().await;
        if let Control::Lxd(sink) = &control.inner {
            let _ = sink.lock().await.close().await;
        }
        let state = operation.wait(None).await;
        for drain in drains {
            drain.abort();
        }
        drop((stdout, stderr));
        output?;
        let state = match state {
            Ok(state) => state,
            Err(Error::OperationFailed { message, .. }) if spawn_failure(&message).is_some() => {
                let (code, what) = spawn_failure(&message).unwrap_or((127, ""));
                let note = (!spoke.load(Ordering::Relaxed)).then(|| format!("{program}: {what}"));
                return Ok(ExecExit { code, note });
            }
            Err(e) => return Err(e),
        };
        let code = state
            .metadata
            .get("return")
            .and_then(serde_json::Value::as_i64)
            .and_then(|code| i32::try_from(code).ok())
            .ok_or_else(|| Error::protocol("exec", format!("no return code in {}", state.metadata)))?;
        Ok(ExecExit { code, note: None })
    }
}

/// The command, uid and gid LXD is asked for: `command` as `uid`/`gid`, or, with
/// [`ExecOptions::init_groups`], [`DROP_TO_ACCOUNT`] as root with `command` after it.
pub(crate) fn as_sent(command: &[String], options: &ExecOptions) -> (Vec<String>, u32, u32) {
    if options.init_groups && options.uid != 0 {
        let mut wrapped: Vec<String> = ["/bin/sh", "-c", DROP_TO_ACCOUNT, "ssp-drop"].map(String::from).to_vec();
        wrapped.extend([options.uid.to_string(), options.gid.to_string()]);
        wrapped.extend_from_slice(command);
        (wrapped, 0, 0)
    } else {
        (command.to_vec(), options.uid, options.gid)
    }
}

impl Client {
    /// Starts `command` in instance `name`, with websockets attached.
    pub async fn exec(&self, name: &str, command: &[String], options: ExecOptions) -> Result<Exec> {
        if command.is_empty() {
            return Err(Error::protocol("exec", "empty command"));
        }
        let (width, height) = options.pty.unwrap_or((0, 0));
        // The words LXD runs may be a wrapper around the command (see `as_sent`); a "command
        // not found" line names the command itself.
        let (sent, user, group) = as_sent(command, &options);
        let request = InstanceExecPost {
            command: sent,
            environment: options.environment,
            interactive: options.pty.is_some(),
            wait_for_websocket: true,
            width,
            height,
            user,
            group,
            cwd: options.cwd.unwrap_or_default(),
        };
        let path = format!("/1.0/instances/{}/exec", seg(name)?);
        let operation = self.json_operation(Method::POST, &path, &request, None).await?;
        let fds = operation.state().metadata.get("fds").cloned().unwrap_or_default();
        let secret = |fd: &str| -> Result<String> {
            fds.get(fd)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
                .ok_or_else(|| Error::protocol("exec", format!("no websocket secret for fd {fd} in {fds}")))
        };
        let op_path = format!("/1.0/operations/{}/websocket", seg(operation.id())?);
        let connect = |fd: &str| -> Result<String> { Ok(format!("{op_path}?secret={}", seg(&secret(fd)?)?)) };
        match self.connect_streams(&operation, &connect, options.pty.is_some()).await {
            Ok((control_ws, streams)) => {
                Ok(self.assemble(operation, control_ws, streams, options.pty.is_some(), &command[0]))
            }
            Err(e) => {
                // The command starts only once every stream is connected, so nothing ran:
                // cancel the operation and let the caller try again.
                operation.cancel().await.ok();
                Err(e)
            }
        }
    }

    async fn connect_streams(
        &self,
        operation: &Operation,
        connect: &(dyn Fn(&str) -> Result<String> + Sync),
        pty: bool,
    ) -> Result<(Ws, Vec<Ws>)> {
        let fds: &[&str] = if pty { &["0"] } else { &["0", "1", "2"] };
        let mut streams = Vec::new();
        let control = self.websocket_within(&connect("control")?, operation).await?;
        for fd in fds {
            streams.push(self.websocket_within(&connect(fd)?, operation).await?);
        }
        Ok((control, streams))
    }

    /// A websocket of `operation`, or an error after [`CONNECT_TIMEOUT`] (LXD itself gives up
    /// on the operation when its streams are not all connected within 5 s).
    async fn websocket_within(&self, path: &str, operation: &Operation) -> Result<Ws> {
        match tokio::time::timeout(CONNECT_TIMEOUT, self.websocket(path)).await {
            Ok(ws) => ws,
            Err(_) => Err(Error::Timeout {
                id: operation.id().to_string(),
                description: "connecting the exec streams".into(),
                after: CONNECT_TIMEOUT,
            }),
        }
    }

    fn assemble(&self, operation: Operation, control_ws: Ws, streams: Vec<Ws>, pty: bool, program: &str) -> Exec {
        let spoke = Arc::new(AtomicBool::new(false));
        let mut streams = streams.into_iter();

        let (control_sink, control_stream) = control_ws.split();
        let mut drains = vec![tokio::spawn(drain(control_stream))];
        let mut readers = Vec::new();

        let (stdout_tx, stdout) = mpsc::channel(64);
        let (stderr_tx, stderr) = mpsc::channel(64);
        let mut next = || streams.next().map(|ws| ws.split());
        let stdin = match (pty, next()) {
            (true, Some((sink, stream))) => {
                readers.push(tokio::spawn(forward(stream, stdout_tx, Some(Arc::clone(&spoke)), "exec pty")));
                drop(stderr_tx);
                ExecStdin { sink: Some(sink), shared_with_output: true, local: None }
            }
            (false, Some((sink, stdin_stream))) => {
                drains.push(tokio::spawn(drain(stdin_stream)));
                if let Some((_, out)) = next() {
                    readers.push(tokio::spawn(forward(out, stdout_tx, None, "exec stdout")));
                }
                if let Some((_, err)) = next() {
                    readers.push(tokio::spawn(forward(err, stderr_tx, Some(Arc::clone(&spoke)), "exec stderr")));
                }
                ExecStdin { sink: Some(sink), shared_with_output: false, local: None }
            }
            (_, None) => ExecStdin { sink: None, shared_with_output: pty, local: None },
        };
        Exec {
            stdin,
            stdout,
            stderr,
            control: ExecControl { inner: Control::Lxd(Arc::new(Mutex::new(control_sink))) },
            ending: Ending::Lxd { operation, readers, drains, program: program.to_owned(), spoke },
        }
    }

    /// Like [`Client::exec`], trying again while connecting the streams times out (see
    /// [`CONNECT_ATTEMPTS`]); nothing has run then.
    pub async fn exec_patiently(&self, name: &str, command: &[String], options: ExecOptions) -> Result<Exec> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.exec(name, command, options.clone()).await {
                Ok(exec) => return Ok(exec),
                Err(e @ Error::Timeout { .. }) if attempt < CONNECT_ATTEMPTS => {
                    tracing::warn!(instance = name, attempt, "exec not started, trying again: {e}");
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Runs `command` to completion with `stdin` as its input and collects its output.
    pub async fn exec_output(&self, name: &str, command: &[&str], stdin: &[u8]) -> Result<ExecOutput> {
        let command: Vec<String> = command.iter().map(|s| s.to_string()).collect();
        self.exec_output_with(name, &command, stdin, ExecOptions::default()).await
    }

    /// Like [`Client::exec_output`], with the user, environment and directory of `options`.
    pub async fn exec_output_with(
        &self,
        name: &str,
        command: &[String],
        stdin: &[u8],
        options: ExecOptions,
    ) -> Result<ExecOutput> {
        let mut exec = self.exec_patiently(name, command, options).await?;
        if !stdin.is_empty() {
            exec.stdin.write(Bytes::copy_from_slice(stdin)).await?;
        }
        exec.stdin.close().await?;
        let mut stdout_rx = std::mem::replace(&mut exec.stdout, mpsc::channel(1).1);
        let mut stderr_rx = std::mem::replace(&mut exec.stderr, mpsc::channel(1).1);
        let collect_out = async {
            let mut buf = Vec::new();
            while let Some(chunk) = stdout_rx.recv().await {
                buf.extend_from_slice(&chunk);
            }
            buf
        };
        let collect_err = async {
            let mut buf = Vec::new();
            while let Some(chunk) = stderr_rx.recv().await {
                buf.extend_from_slice(&chunk);
            }
            buf
        };
        let (stdout, mut stderr, exit) = tokio::join!(collect_out, collect_err, exec.wait());
        let exit = exit?;
        if let Some(note) = exit.note {
            stderr.extend_from_slice(format!("{note}\n").as_bytes());
        }
        Ok(ExecOutput { exit_code: exit.code, stdout, stderr })
    }
}

/// The shell's exit code and words for LXD's message when a command's status was 127 or 126
/// (LXD 5.0.2 words them "Command not found" and "Command not executable"; older daemons
/// said "Permission denied" for the latter).
pub(crate) fn spawn_failure(message: &str) -> Option<(i32, &'static str)> {
    match message {
        "Command not found" => Some((127, "command not found")),
        "Command not executable" | "Permission denied" => Some((126, "permission denied")),
        _ => None,
    }
}

/// Forwards binary frames to `tx` until the end-of-output barrier or a close. Keeps reading
/// when the receiver is gone so the command is never blocked on output nobody reads.
/// Sets `spoke` (if given) once any data came.
async fn forward(
    mut stream: SplitStream<Ws>,
    tx: mpsc::Sender<Bytes>,
    spoke: Option<Arc<AtomicBool>>,
    what: &'static str,
) -> Result<()> {
    let mut receiver_alive = true;
    while let Some(message) = stream.next().await {
        match message {
            Ok(Message::Binary(data)) => {
                if let Some(spoke) = spoke.as_ref().filter(|_| !data.is_empty()) {
                    spoke.store(true, Ordering::Relaxed);
                }
                if receiver_alive && tx.send(data).await.is_err() {
                    receiver_alive = false;
                }
            }
            Ok(Message::Text(_)) | Ok(Message::Close(_)) => break,
            Ok(_) => {}
            // The daemon drops the connection without a close frame when the command ends.
            Err(tokio_tungstenite::tungstenite::Error::ConnectionClosed)
            | Err(tokio_tungstenite::tungstenite::Error::Protocol(_)) => break,
            Err(e) => return Err(Error::ws(what, e)),
        }
    }
    Ok(())
}

/// Reads and discards a websocket's incoming side, so pings are answered.
async fn drain(mut stream: SplitStream<Ws>) {
    while let Some(message) = stream.next().await {
        if message.is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_come_from_a_wrapper_that_starts_as_root_and_drops_to_the_account() {
        let command: Vec<String> = ["ls", "-la", "a b"].map(String::from).to_vec();
        let plain = ExecOptions { uid: 1000, gid: 1000, ..ExecOptions::default() };
        assert_eq!(as_sent(&command, &plain), (command.clone(), 1000, 1000));
        let groups = ExecOptions { init_groups: true, ..plain };
        let (sent, uid, gid) = as_sent(&command, &groups);
        assert_eq!((uid, gid), (0, 0));
        assert_eq!(sent[..4], ["/bin/sh", "-c", DROP_TO_ACCOUNT, "ssp-drop"]);
        assert_eq!(sent[4..], ["1000", "1000", "ls", "-la", "a b"], "the command's words stay words");
        // Root needs no switch.
        let root = ExecOptions { init_groups: true, ..ExecOptions::default() };
        assert_eq!(as_sent(&command, &root), (command, 0, 0));
        // Every path to the command goes through `exec`: a failed switch never runs it as root.
        assert!(DROP_TO_ACCOUNT
            .lines()
            .filter(|l| !l.trim_start().starts_with('#') && l.contains("\"$@\""))
            .all(|l| l.trim_start().starts_with("exec ")));
    }

    #[test]
    fn lxds_words_for_127_and_126_become_a_shells() {
        assert_eq!(spawn_failure("Command not found"), Some((127, "command not found")));
        assert_eq!(spawn_failure("Command not executable"), Some((126, "permission denied")));
        assert_eq!(spawn_failure("Permission denied"), Some((126, "permission denied")));
        assert_eq!(spawn_failure("Instance is not running"), None);
    }
}
