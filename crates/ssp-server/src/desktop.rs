//! Desktops in containers: the owner's VNC session, opened from the portal (a ticketed
//! websocket, `api/desktop.rs`) or through the SSH gateway (`-L 5901:desktop:5901`).
//!
//! What is where:
//! - whether a container offers a desktop is desired state (`containers.desktop`); the
//!   reconciler installs ssp's session service inside (`guest/desktop.sh enable`) and records
//!   `user.ssp.desktop`, or takes it out again;
//! - a session is started on its first viewer (`desktop.sh start USER`, which prints the
//!   session's random secret) and runs on when its viewers leave, until it has had none for
//!   the admin's `[desktop] idle_timeout` ([`Desktops::sweep`]) or its owner ends it;
//! - its VNC server listens only on a unix socket inside; ssp reaches it through an LXD proxy
//!   device to a root-only host socket, authenticates with the secret, and relays
//!   (`ssp_gateway::desktop`). The secret never leaves the daemon.
//!
//! Must not: let a viewer reach a session without the ticket or SSH key of that session's
//! user, or let one user's request tell another user's container from a missing one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use ssp_gateway::desktop::{DesktopConnection, DesktopSockets};
use ssp_store::Container;

use crate::error::ApiError;
use crate::guest::{self, Script};

/// How long starting a session may take (its X server and desktop coming up).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the other in-container commands may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// The most tickets waiting to be presented at once (each lives 30 s).
const MAX_TICKETS: usize = 1024;

/// What marks a container's problem as the desktop's (its install or removal failed).
const PROBLEM_MARK: &str = "the desktop failed";

/// How a failed install or removal is reported (`installing`/`removing` + [`PROBLEM_MARK`]).
pub fn problem_prefix(what: &str) -> String {
    format!("{what} {PROBLEM_MARK}")
}

/// How a container's desktop stands, from what is stored and what LXD shows: whether it is
/// offered, the digest the reconciler recorded (`user.ssp.desktop`) and the one it should
/// have, and the container's current problem.
pub fn state_of(
    enabled: bool,
    recorded: Option<&str>,
    expected: Option<&str>,
    problem: Option<&str>,
) -> (ssp_api::DesktopState, Option<String>) {
    use ssp_api::DesktopState::*;
    let desktop_problem = problem.filter(|p| p.contains(PROBLEM_MARK)).map(str::to_string);
    match (enabled, recorded) {
        (false, None) => (Off, None),
        (false, Some(_)) => (SettingUp, None),
        (true, recorded) if recorded.is_some() && recorded == expected => (Ready, None),
        (true, _) => match desktop_problem {
            Some(problem) => (Failed, Some(problem)),
            None => (SettingUp, None),
        },
    }
}

/// A session's state from `desktop.sh status`: `None` when stopped, else its memory in
/// bytes where known.
pub fn parse_status(line: &str) -> Result<Option<Option<u64>>, String> {
    let line = line.trim();
    if line == "stopped" {
        return Ok(None);
    }
    match line.strip_prefix("running ") {
        Some("-") => Ok(Some(None)),
        Some(bytes) => bytes.parse::<u64>().map(|b| Some(Some(b))).map_err(|_| format!("unexpected status {line:?}")),
        None => Err(format!("unexpected status {line:?}")),
    }
}

/// Seconds until a session idle for `idle` is ended, with `timeout` as the limit.
pub fn ends_in(idle: Duration, timeout: Duration) -> Duration {
    timeout.saturating_sub(idle)
}

/// The SSH command that forwards the desktop to a local VNC port, for `owner`'s container
/// `name` on the gateway at `host`:`port`.
pub fn ssh_forward(owner: &str, name: &str, host: &str, port: u16) -> String {
    let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_string() };
    let port = if port == 22 { String::new() } else { format!(" -p {port}") };
    format!("ssh -N -L 5901:{}:5901{port} {owner}+{name}@{host}", ssp_core::gateway::DESKTOP_HOST)
}

/// Who a ticket admits to which desktop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The user the session is for (the container's owner).
    pub user: String,
    /// The container's owner and name, for logs.
    pub object: String,
    /// The container's uid: a ticket is for this container, not a later one of that name.
    pub container_uid: String,
    /// Its LXD instance.
    pub instance: String,
}

/// Why a session could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The container does not offer one (its service is not installed).
    #[error("the desktop is not set up in this container")]
    NotEnabled,
    /// Starting or reaching it failed.
    #[error("{0}")]
    Failed(String),
}

impl From<OpenError> for ApiError {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::NotEnabled => ApiError::Conflict(
                "the desktop is not set up in this container yet (enable it with the container page's Enable desktop, or: ssp desktop enable NAME)".into(),
            ),
            OpenError::Failed(why) => ApiError::Unavailable(format!("the desktop could not be opened: {why}")),
        }
    }
}

/// The daemon's desktops: sessions, their sockets and tickets.
#[derive(Debug)]
pub struct Desktops {
    lxd: ssp_lxd::Client,
    sockets: Arc<DesktopSockets>,
    idle_timeout: Duration,
    /// By the SHA-256 of the ticket, as the terminal's: what the process holds cannot be presented.
    tickets: Mutex<HashMap<[u8; 32], Waiting>>,
}

/// A ticket's connection, made when it was issued, waiting for the websocket.
#[derive(Debug)]
struct Waiting {
    binding: Binding,
    connection: DesktopConnection,
    issued: Instant,
}

impl Desktops {
    /// Over `sockets`; sessions nobody watched for `idle_timeout` are ended by [`Desktops::sweep`].
    pub fn new(lxd: ssp_lxd::Client, sockets: Arc<DesktopSockets>, idle_timeout: Duration) -> Self {
        Self { lxd, sockets, idle_timeout, tickets: Mutex::new(HashMap::new()) }
    }

    /// The admin's idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// The sockets (for their reaper).
    pub fn sockets(&self) -> Arc<DesktopSockets> {
        Arc::clone(&self.sockets)
    }

    /// A connection to `user`'s session in `instance`, started first when none runs.
    pub async fn open(&self, instance: &str, user: &str) -> Result<DesktopConnection, OpenError> {
        let output = guest::run(&self.lxd, instance, Script::Desktop, &["start", user], &[], START_TIMEOUT)
            .await
            .map_err(|e| OpenError::Failed(e.to_string()))?;
        match output.exit_code {
            0 => {}
            3 => return Err(OpenError::NotEnabled),
            code => {
                return Err(OpenError::Failed(format!(
                    "starting the session failed (exit {code}): {}",
                    output.stderr_text().trim()
                )))
            }
        }
        let secret = ssp_core::rfb::parse_secret(output.stdout_text().trim_end())
            .map_err(|e| OpenError::Failed(format!("the session gave no usable secret: {e}")))?;
        self.sockets.connect(instance, user, &secret).await.map_err(OpenError::Failed)
    }

    /// `user`'s session in `instance`, if one runs.
    pub async fn session(&self, instance: &str, user: &str) -> Result<Option<ssp_api::DesktopSession>, String> {
        let output = guest::run(&self.lxd, instance, Script::Desktop, &["status", user], &[], COMMAND_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        if output.exit_code != 0 {
            return Err(format!("desktop status (exit {}): {}", output.exit_code, output.stderr_text().trim()));
        }
        let Some(memory) = parse_status(&output.stdout_text())? else { return Ok(None) };
        self.sockets.note_running(instance, user);
        let watch = self.sockets.watch(instance, user);
        let viewers = watch.map_or(0, |w| w.viewers);
        let idle = watch.and_then(|w| w.idle);
        Ok(Some(ssp_api::DesktopSession {
            viewers: u32::try_from(viewers).unwrap_or(u32::MAX),
            memory,
            idle_secs: idle.map(|i| i.as_secs()),
            ends_in_secs: idle.map(|i| ends_in(i, self.idle_timeout).as_secs()),
        }))
    }

    /// Ends `user`'s session in `instance` (its programs end) and removes its socket.
    pub async fn end(&self, instance: &str, user: &str) -> Result<(), String> {
        self.sockets.forget(instance, user).await;
        let output = guest::run(&self.lxd, instance, Script::Desktop, &["stop", user], &[], COMMAND_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        match output.exit_code {
            // 3: the service is not installed (any more): nothing runs.
            0 | 3 => Ok(()),
            code => Err(format!("ending the session failed (exit {code}): {}", output.stderr_text().trim())),
        }
    }

    /// Forgets the sockets of `user`'s session in `instance` without touching the container
    /// (it was disabled or is gone).
    pub async fn forget(&self, instance: &str, user: &str) {
        self.sockets.forget(instance, user).await;
    }

    /// A single-use ticket for `binding`, holding its `connection` for the websocket (an
    /// unused ticket's connection is closed once it expires).
    pub fn issue(&self, binding: Binding, connection: DesktopConnection) -> Result<String, ApiError> {
        let ticket = crate::web::random_text(32).map_err(ApiError::Internal)?;
        let mut tickets = self.lock_tickets();
        let now = Instant::now();
        tickets.retain(|_, waiting| crate::terminal::ticket_fresh(waiting.issued, now));
        if tickets.len() >= MAX_TICKETS {
            return Err(ApiError::Throttled("too many desktop tickets are waiting; try again in 30 s".into(), 30));
        }
        tickets.insert(crate::terminal::hash(&ticket), Waiting { binding, connection, issued: now });
        Ok(ticket)
    }

    /// Takes a ticket out (it works once): its binding and connection, if it was issued and
    /// is still fresh.
    pub fn redeem(&self, ticket: &str) -> Option<(Binding, DesktopConnection)> {
        let waiting = self.lock_tickets().remove(&crate::terminal::hash(ticket))?;
        crate::terminal::ticket_fresh(waiting.issued, Instant::now()).then_some((waiting.binding, waiting.connection))
    }

    fn lock_tickets(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Waiting>> {
        self.tickets.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Ends the sessions nobody watched for the idle timeout, until the task is dropped.
    pub async fn sweep(self: Arc<Self>) {
        let every = (self.idle_timeout / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
        loop {
            tokio::time::sleep(every).await;
            let now = Instant::now();
            self.lock_tickets().retain(|_, waiting| crate::terminal::ticket_fresh(waiting.issued, now));
            for (instance, user) in self.sockets.idle_for(self.idle_timeout) {
                tracing::info!(
                    "desktop: ending {user}'s session in {instance}: nobody watched it for {:?}",
                    self.idle_timeout
                );
                if let Err(e) = self.end(&instance, &user).await {
                    tracing::warn!("desktop: ending {user}'s session in {instance}: {e}");
                }
            }
        }
    }
}

/// Notes the desktop sessions that already run (started before this daemon, which knew
/// their viewers), so that their idle time counts from now and the sweep ends them in time.
pub async fn adopt_running(desktops: Arc<Desktops>, db: crate::db::Db) {
    // After LXD's first answers: the reconciler's first pass goes first.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rows = match db.run(|store| store.all_containers()).await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!("desktop: looking for running sessions: {e}");
            return;
        }
    };
    for row in rows.into_iter().filter(|row| row.desktop && crate::terminal::runnable(row).is_ok()) {
        let instance = crate::instance::lxd_name(&row);
        match desktops.session(&instance, row.owner.as_str()).await {
            Ok(Some(_)) => tracing::info!(
                "desktop: {}'s session in {}/{} runs; its idle time counts from now",
                row.owner,
                row.owner,
                row.name
            ),
            Ok(None) => {}
            Err(e) => tracing::warn!("desktop: the session of {}/{}: {e}", row.owner, row.name),
        }
    }
}

/// Whether `row` may have a session opened now: ready, meant to run, and offering a desktop.
pub fn openable(row: &Container) -> Result<(), ApiError> {
    crate::terminal::runnable(row)?;
    if !row.desktop {
        return Err(ApiError::Conflict(format!(
            "container {}/{} offers no desktop; enable it first (the container page's Enable desktop, or: ssp desktop enable {})",
            row.owner, row.name, row.name
        )));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ssp_api::DesktopState::*;

    #[test]
    fn the_state_follows_what_is_asked_and_what_the_reconciler_recorded() {
        let failed = format!("{} (exit 4): this image has no apt-get", problem_prefix("installing"));
        for (enabled, recorded, expected, problem, state) in [
            (false, None, None, None, Off),
            (false, Some("d1"), None, None, SettingUp),
            (true, None, Some("d1"), None, SettingUp),
            (true, Some("d0"), Some("d1"), None, SettingUp),
            (true, Some("d1"), Some("d1"), None, Ready),
            (true, Some("d1"), Some("d1"), Some(failed.as_str()), Ready),
            (true, None, Some("d1"), Some("setting up account alice failed"), SettingUp),
            (true, None, Some("d1"), Some(failed.as_str()), Failed),
        ] {
            let (got, why) = state_of(enabled, recorded, expected, problem);
            assert_eq!(got, state, "{enabled} {recorded:?} {expected:?} {problem:?}");
            assert_eq!(why.is_some(), state == Failed);
        }
    }

    #[test]
    fn status_lines_are_read_strictly() {
        assert_eq!(parse_status("stopped\n"), Ok(None));
        assert_eq!(parse_status("running 123456\n"), Ok(Some(Some(123_456))));
        assert_eq!(parse_status("running -"), Ok(Some(None)));
        for bad in ["", "running", "running x", "RUNNING 1", "stopped now"] {
            assert!(parse_status(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn idle_sessions_end_when_their_time_is_up() {
        let hour = Duration::from_secs(3600);
        assert_eq!(ends_in(Duration::from_secs(600), hour), Duration::from_secs(3000));
        assert_eq!(ends_in(2 * hour, hour), Duration::ZERO);
    }

    #[test]
    fn the_forward_command_names_the_gateway() {
        assert_eq!(
            ssh_forward("alice", "dev", "gpu1.lab.example", 2222),
            "ssh -N -L 5901:desktop:5901 -p 2222 alice+dev@gpu1.lab.example"
        );
        assert_eq!(ssh_forward("alice", "dev", "gpu1", 22), "ssh -N -L 5901:desktop:5901 alice+dev@gpu1");
        assert_eq!(ssh_forward("alice", "dev", "::1", 2222), "ssh -N -L 5901:desktop:5901 -p 2222 alice+dev@[::1]");
    }
}
