//! The web terminal's sessions: a login shell with a pty in a container, as its owner, that
//! outlives the websocket showing it.
//!
//! **Flow.** `POST …/containers/{owner}/{name}/terminal` (an authenticated API call) hands
//! out a *ticket*: 32 random bytes, good for one websocket within 30 s, bound to the caller,
//! the container (by its uid, so a container deleted and made again under the same name is
//! another one) and a session id. `GET /api/v1/terminal?ticket=T` presents it; the handler
//! checks the `Origin` and the ticket ([`origin_allowed`], [`Terminals::redeem`]) before it
//! upgrades, and then attaches the socket to the ticket's session — starting the shell if the
//! session is new (or has ended since). The shell runs as the SSH gateway runs one
//! ([`ssp_gateway::login_shell`], [`ssp_gateway::start_in`]): LXD's own `forkexec` with the
//! pty kept here where [`ssp_lxd::Attach`] can be used, else LXD's exec websocket — whose
//! operation secrets stay in this process: the browser only ever talks to ssp.
//!
//! **Why tickets, not the bearer token or a cookie, on the websocket.** Browsers cannot set
//! headers on a websocket, and a cookie would be sent along by a page of any site that opens
//! a websocket to us (websockets are not bound by the same-origin policy, and LXD 5.0.2 itself
//! checks no `Origin`). A ticket can only be had through an API call that the same-origin
//! policy keeps to our own pages, lives 30 s and works once; the exact `Origin` check is a
//! second lock on the same door.
//!
//! **Tickets are kept as SHA-256 hashes**, as API tokens are in the store: what this process
//! holds (or a core dump shows) cannot be presented, and the map is looked up by the hash of
//! what a client sends, so no comparison ever runs over the secret itself.
//!
//! **A session** is a task (the *session actor*) that owns the shell's output and the one
//! attached socket. It keeps the last [`SCROLLBACK`] bytes of output; a socket that attaches
//! gets them first and live output after, with nothing lost or repeated in between (the actor
//! appends to the scrollback and forwards in one place). One socket at a time: a new attach
//! takes over and the old socket is closed ([`TAKEN_OVER`]). Output waits for a slow socket
//! (flow control back to the shell, as over SSH); keystrokes go to the shell from a task of
//! their own, so a shell that does not read its input never stops its output from moving.
//!
//! **Invariants.** A ticket works at most once and only within [`TICKET_LIFETIME`] (taken out
//! of the map on first presentation, whatever happens next). A session is reachable only with
//! a ticket issued to the same user for the same container. A detached session lives
//! [`GRACE`], then its shell gets SIGHUP (SIGKILL 5 s later) and it is dropped; a user has at
//! most [`MAX_SESSIONS_PER_USER`] (a new one evicts the user's longest-detached one, and is
//! refused with `busy` when all are attached). A session whose user is disabled or removed,
//! or whose container is deleted, is hung up within [`REVALIDATE`]; a container that stops
//! takes its shell with it, which ends the session (an exit frame to an attached socket).
//! The decisions are pure functions here, table-tested: [`origin_allowed`],
//! [`ticket_fresh`], [`make_room`], [`parse_client_text`], [`Scrollback`].

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use ssp_api::TerminalClientMessage;
use ssp_store::{Container, ContainerPhase};
use tokio::sync::{mpsc, oneshot};
// tokio's clock, so that the tests can run the grace period on a paused one.
use tokio::time::Instant;

use crate::db::Db;
use crate::error::ApiError;
use crate::instance;

/// How long a ticket may wait to be presented.
pub const TICKET_LIFETIME: Duration = Duration::from_secs(ssp_api::TERMINAL_TICKET_SECS);

/// How long a session with no socket attached keeps running. A constant, not yet a key of
/// `ssp.toml`: the portal's `[portal]` section is where it would go.
pub const GRACE: Duration = Duration::from_secs(10 * 60);

/// How many bytes of recent output a session keeps for a socket that re-attaches.
pub const SCROLLBACK: usize = 256 * 1024;

/// Live sessions per user, at most.
pub const MAX_SESSIONS_PER_USER: usize = 10;

/// Unpresented tickets per user, at most (the oldest goes first): bounds what a client that
/// asks for tickets in a loop can make this process hold.
const MAX_TICKETS_PER_USER: usize = 32;

/// How often live sessions are checked against the store (user enabled, container there).
pub const REVALIDATE: Duration = Duration::from_secs(2);

/// Signals a client may send: HUP, INT, QUIT, KILL, USR1, USR2, TERM.
pub const ALLOWED_SIGNALS: [i32; 7] = [1, 2, 3, 9, 10, 12, 15];

/// After SIGHUP, how long a shell has before SIGKILL; after that, how long before the
/// session is dropped whatever the shell does.
const HANGUP_PATIENCE: Duration = Duration::from_secs(5);

/// The close code of a socket another one took the session over from (a page should not
/// reconnect on its own then, or two windows would take it from each other for ever).
pub const TAKEN_OVER: u16 = 4001;

/// The close code of a socket whose session ssp ended without an exit frame.
pub const ENDED: u16 = 4002;

/// Whether a websocket's `Origin` is this site's own: exactly `https://` followed by the
/// `Host` the request was sent to. Anything else — no `Origin`, another scheme, another host
/// or port, a prefix or suffix — is a page of another site (or a client that did not say).
pub fn origin_allowed(origin: Option<&str>, host: Option<&str>) -> bool {
    match (origin, host) {
        (Some(origin), Some(host)) if !host.is_empty() => origin.strip_prefix("https://") == Some(host),
        _ => false,
    }
}

/// Whether a ticket issued at `issued` may still be presented at `now`.
pub fn ticket_fresh(issued: Instant, now: Instant) -> bool {
    now.saturating_duration_since(issued) < TICKET_LIFETIME
}

/// One of a user's live sessions, for [`make_room`]: `detached_since` is `None` while a
/// socket is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot<K> {
    /// Which session.
    pub key: K,
    /// Since when no socket is attached.
    pub detached_since: Option<Instant>,
}

/// What a new session needs first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Room<K> {
    /// There is room.
    Free,
    /// End this session first: the one detached longest ago.
    Evict(K),
    /// Every session is attached: refuse.
    Full,
}

/// Whether a user with `slots` may start one more session when `max` are allowed.
pub fn make_room<K: Clone>(slots: &[Slot<K>], max: usize) -> Room<K> {
    if slots.len() < max {
        return Room::Free;
    }
    slots
        .iter()
        .filter_map(|slot| slot.detached_since.map(|since| (since, &slot.key)))
        .min_by_key(|(since, _)| *since)
        .map_or(Room::Full, |(_, key)| Room::Evict(key.clone()))
}

/// A client's text frame, checked: a resize to at least 1×1, or one of the
/// [`ALLOWED_SIGNALS`].
pub fn parse_client_text(text: &str) -> Result<TerminalClientMessage, String> {
    let message: TerminalClientMessage =
        serde_json::from_str(text).map_err(|e| format!("not a resize or signal message: {e}"))?;
    match message {
        TerminalClientMessage::Resize { cols, rows } if cols == 0 || rows == 0 => {
            Err(format!("a terminal of {cols}×{rows} has no room; both must be at least 1"))
        }
        TerminalClientMessage::Signal { signal } if !ALLOWED_SIGNALS.contains(&signal) => Err(format!(
            "signal {signal} is not one a terminal may send (allowed: HUP 1, INT 2, QUIT 3, KILL 9, USR1 10, USR2 12, TERM 15)"
        )),
        fine => Ok(fine),
    }
}

/// Terminal queries a program asked when it wrote them (cursor position, status, device
/// attributes): replayed, the new page's terminal would answer them again, and the shell
/// would read the stale answers as typed input (busybox's line editor asks at every prompt).
const QUERIES: [&[u8]; 5] = [b"\x1b[6n", b"\x1b[5n", b"\x1b[c", b"\x1b[0c", b"\x1b[>c"];

/// `output` without [`QUERIES`].
fn without_queries(output: &[u8]) -> Vec<u8> {
    let mut kept = Vec::with_capacity(output.len());
    let mut at = 0;
    while at < output.len() {
        match QUERIES.iter().find(|query| output[at..].starts_with(query)) {
            Some(query) => at += query.len(),
            None => {
                kept.push(output[at]);
                at += 1;
            }
        }
    }
    kept
}

/// The last `capacity` bytes of a session's output.
#[derive(Debug, Clone)]
pub struct Scrollback {
    bytes: VecDeque<u8>,
    capacity: usize,
    cut: bool,
}

/// How far into a cut scrollback [`Scrollback::snapshot`] looks for the first line's end.
const LINE_SEARCH: usize = 4096;

impl Scrollback {
    /// Empty, keeping at most `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        Self { bytes: VecDeque::new(), capacity, cut: false }
    }

    /// Appends output, dropping the oldest bytes beyond the capacity.
    pub fn push(&mut self, chunk: &[u8]) {
        let skipped = chunk.len().saturating_sub(self.capacity);
        let chunk = &chunk[skipped..];
        self.cut |= skipped > 0;
        let excess = (self.bytes.len() + chunk.len()).saturating_sub(self.capacity);
        if excess > 0 {
            self.bytes.drain(..excess);
            self.cut = true;
        }
        self.bytes.extend(chunk);
    }

    /// What a re-attaching socket is sent. Once older output was dropped, the first line is
    /// likely a fragment (perhaps half a character or escape sequence): it starts after the
    /// first line's end, when one is near.
    pub fn snapshot(&self) -> Bytes {
        let (front, back) = self.bytes.as_slices();
        let mut all = Vec::with_capacity(self.bytes.len());
        all.extend_from_slice(front);
        all.extend_from_slice(back);
        if self.cut {
            if let Some(end) = all.iter().take(LINE_SEARCH).position(|b| *b == b'\n') {
                all.drain(..=end);
            }
        }
        Bytes::from(without_queries(&all))
    }

    /// Bytes kept.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// Who may reach a session: the user a ticket was issued to, in one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The caller (the container's owner, or an admin).
    pub user: String,
    /// The container's owner.
    pub owner: String,
    /// The container's name.
    pub name: String,
    /// The container's uid: one deleted and made again is another container.
    pub container_uid: String,
}

impl Binding {
    /// `owner/name`.
    pub fn object(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }
}

/// A redeemed ticket: where its websocket goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// Who and which container.
    pub binding: Binding,
    /// The session to attach to (or start under this id).
    pub session: String,
    /// The terminal's size when a new shell starts.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
    issued: Instant,
}

/// What [`Terminals::issue`] hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The secret (base64url of 32 random bytes).
    pub ticket: String,
    /// The session it attaches to.
    pub session: String,
}

/// Output for the attached socket.
#[derive(Debug)]
pub enum Frame {
    /// Terminal output.
    Output(Bytes),
    /// The shell ended with this code; close after it.
    Exit(i32),
}

/// Why the session let go of a socket without an exit frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Farewell {
    /// Another socket attached.
    TakenOver,
}

/// One socket's end of a session: what it sends, and how the socket learns why it ended.
#[derive(Debug)]
pub struct Socket {
    /// Output and the exit, for this socket.
    pub frames: mpsc::Receiver<Frame>,
    /// Said when the session lets go of this socket for a reason other than the exit.
    pub farewell: oneshot::Receiver<Farewell>,
    /// Keystrokes for the shell.
    pub input: mpsc::Sender<Bytes>,
    /// Resizes and signals.
    pub commands: mpsc::Sender<Command>,
}

/// What a socket (or the registry) asks of a session.
#[derive(Debug)]
pub enum Command {
    /// Resize the pty.
    Resize(u16, u16),
    /// Send a signal to the shell.
    Signal(i32),
    /// Attach this socket (taking over from any other).
    Attach(Attachment),
    /// End the session: SIGHUP, SIGKILL after a while.
    HangUp,
}

/// The session's end of an attached socket.
#[derive(Debug)]
pub struct Attachment {
    id: u64,
    frames: mpsc::Sender<Frame>,
    farewell: oneshot::Sender<Farewell>,
}

/// What [`Terminals::open`] found for a ticket.
#[derive(Debug)]
pub enum Opened {
    /// A live session: attach with [`Terminals::attach`].
    Existing(Existing),
    /// A new session has been reserved: start it with [`Terminals::start`] (or give the
    /// place back with [`Terminals::abandon`]).
    New(Reserved),
}

/// A live session to attach to.
#[derive(Debug)]
pub struct Existing {
    session: String,
    serial: u64,
    attachment: u64,
    commands: mpsc::Sender<Command>,
    input: mpsc::Sender<Bytes>,
}

/// A place for a new session, held in the registry until it starts.
#[derive(Debug)]
pub struct Reserved {
    session: String,
    serial: u64,
    attachment: u64,
    ticket: Ticket,
    commands: (mpsc::Sender<Command>, mpsc::Receiver<Command>),
    input: (mpsc::Sender<Bytes>, mpsc::Receiver<Bytes>),
}

/// A live session as the registry sees it.
#[derive(Debug)]
struct Live {
    serial: u64,
    binding: Binding,
    /// The attached socket, if any.
    attachment: Option<u64>,
    detached_since: Option<Instant>,
    commands: mpsc::Sender<Command>,
    input: mpsc::Sender<Bytes>,
}

#[derive(Debug, Default)]
struct Registry {
    /// By the SHA-256 of the ticket.
    tickets: HashMap<[u8; 32], Ticket>,
    sessions: HashMap<String, Live>,
    /// Numbers sessions and sockets, so a late message from an ended one is recognised.
    next: u64,
}

impl Registry {
    fn next(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    fn slots_of(&self, user: &str) -> Vec<Slot<String>> {
        self.sessions
            .iter()
            .filter(|(_, live)| live.binding.user == user)
            .map(|(id, live)| Slot { key: id.clone(), detached_since: live.detached_since })
            .collect()
    }

    /// Evicts until there is room for one more of `user`'s sessions, or says it is full.
    fn make_room_for(&mut self, user: &str) -> Result<(), ApiError> {
        loop {
            match make_room(&self.slots_of(user), MAX_SESSIONS_PER_USER) {
                Room::Free => return Ok(()),
                Room::Evict(id) => {
                    if let Some(live) = self.sessions.remove(&id) {
                        tracing::info!(user, session = %id, "terminal: ending the longest-detached session for a new one");
                        let _ = live.commands.try_send(Command::HangUp);
                    }
                }
                Room::Full => return Err(busy(user)),
            }
        }
    }
}

fn busy(user: &str) -> ApiError {
    ApiError::Busy(format!(
        "{user} has {MAX_SESSIONS_PER_USER} terminal sessions open in windows now; close one and try again"
    ))
}

/// The web terminal's sessions and tickets (in memory: a daemon restart ends them, as it ends
/// the gateway's SSH sessions). Cheap to clone.
#[derive(Clone)]
pub struct Terminals {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    lxd: ssp_lxd::Client,
    attach: Option<Arc<ssp_lxd::Attach>>,
    grace: Duration,
    registry: Mutex<Registry>,
}

impl std::fmt::Debug for Terminals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let registry = self.inner.registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f.debug_struct("Terminals")
            .field("sessions", &registry.sessions.len())
            .field("tickets", &registry.tickets.len())
            .field("attach", &self.inner.attach.is_some())
            .finish()
    }
}

pub(crate) fn hash(ticket: &str) -> [u8; 32] {
    Sha256::digest(ticket.as_bytes()).into()
}

fn random(bytes: usize) -> Result<String, ApiError> {
    crate::web::random_text(bytes).map_err(ApiError::Internal)
}

impl Terminals {
    /// Sessions start through `attach` where it can be used, else LXD's exec on `lxd`; a
    /// detached one lives `grace`.
    pub fn new(db: Db, lxd: ssp_lxd::Client, attach: Option<Arc<ssp_lxd::Attach>>, grace: Duration) -> Self {
        Self { inner: Arc::new(Inner { db, lxd, attach, grace, registry: Mutex::new(Registry::default()) }) }
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner.registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A ticket for `binding`: for the session `asked` when it is live and bound to the same
    /// user and container, else for a new session (refused as `busy` when the user's
    /// sessions are all attached).
    pub fn issue(&self, binding: Binding, asked: Option<&str>, cols: u16, rows: u16) -> Result<Issued, ApiError> {
        let ticket = random(32)?;
        let now = Instant::now();
        let mut registry = self.registry();
        registry.tickets.retain(|_, t| ticket_fresh(t.issued, now));
        let session = match asked {
            Some(id) if registry.sessions.get(id).is_some_and(|live| live.binding == binding) => id.to_string(),
            _ => {
                // Whom to evict is decided when the websocket comes; a ticket only checks that
                // one may be.
                if make_room(&registry.slots_of(&binding.user), MAX_SESSIONS_PER_USER) == Room::Full {
                    return Err(busy(&binding.user));
                }
                random(16)?
            }
        };
        let mut theirs: Vec<([u8; 32], Instant)> = registry
            .tickets
            .iter()
            .filter(|(_, t)| t.binding.user == binding.user)
            .map(|(key, t)| (*key, t.issued))
            .collect();
        if theirs.len() >= MAX_TICKETS_PER_USER {
            theirs.sort_by_key(|(_, issued)| *issued);
            for (key, _) in &theirs[..=theirs.len() - MAX_TICKETS_PER_USER] {
                registry.tickets.remove(key);
            }
        }
        registry.tickets.insert(hash(&ticket), Ticket { binding, session: session.clone(), cols, rows, issued: now });
        Ok(Issued { ticket, session })
    }

    /// Takes the ticket out (it works once, whatever happens next) and returns it if it was
    /// issued and is still fresh.
    pub fn redeem(&self, ticket: &str) -> Option<Ticket> {
        let found = self.registry().tickets.remove(&hash(ticket))?;
        ticket_fresh(found.issued, Instant::now()).then_some(found)
    }

    /// The ticket's live session, or a place reserved for a new one (evicting the user's
    /// longest-detached session if needed; `busy` when all are attached).
    pub fn open(&self, ticket: Ticket) -> Result<Opened, ApiError> {
        let mut registry = self.registry();
        let attachment = registry.next();
        if let Some(live) = registry.sessions.get_mut(&ticket.session) {
            if live.binding != ticket.binding {
                // Session ids are 128 random bits: only a forged ticket could get here.
                return Err(ApiError::Forbidden("this terminal session belongs to someone else".into()));
            }
            live.attachment = Some(attachment);
            live.detached_since = None;
            return Ok(Opened::Existing(Existing {
                session: ticket.session.clone(),
                serial: live.serial,
                attachment,
                commands: live.commands.clone(),
                input: live.input.clone(),
            }));
        }
        registry.make_room_for(&ticket.binding.user)?;
        let serial = registry.next();
        let commands = mpsc::channel(64);
        // Messages of up to 1 MiB (a paste): a shell that reads no input holds at most 8 here,
        // and then the socket's own buffers fill and TCP holds the sender back.
        let input = mpsc::channel(8);
        registry.sessions.insert(
            ticket.session.clone(),
            Live {
                serial,
                binding: ticket.binding.clone(),
                attachment: Some(attachment),
                detached_since: None,
                commands: commands.0.clone(),
                input: input.0.clone(),
            },
        );
        Ok(Opened::New(Reserved { session: ticket.session.clone(), serial, attachment, ticket, commands, input }))
    }

    /// Gives back a place [`Terminals::open`] reserved (the websocket never came up).
    pub fn abandon(&self, reserved: Reserved) {
        self.forget(&reserved.session, reserved.serial);
    }

    /// Undoes what [`Terminals::open`] recorded for a live session whose websocket never came
    /// up: it is detached again (since now), unless another socket attached meanwhile.
    pub fn unattached(&self, existing: Existing) {
        self.detached(&existing.session, existing.serial, existing.attachment);
    }

    /// Attaches a socket to a live session (which sends it the scrollback first).
    pub async fn attach(&self, existing: Existing) -> Socket {
        let (attachment, socket) = pair(existing.attachment, existing.input, existing.commands.clone());
        if existing.commands.send(Command::Attach(attachment)).await.is_err() {
            tracing::debug!(session = %existing.session, "terminal: the session ended as a socket attached");
        }
        socket
    }

    /// Starts the reserved session's shell in `row` with the socket attached; the session
    /// lives on its own from here.
    pub fn start(&self, reserved: Reserved, row: Container) -> Socket {
        let size = (reserved.ticket.cols, reserved.ticket.rows);
        let (actor, socket, input) = self.actor(reserved);
        tokio::spawn(actor.run(row, size, input));
        socket
    }

    /// The reserved session's actor, its first socket, and the keystrokes' receiving end.
    fn actor(&self, reserved: Reserved) -> (Actor, Socket, mpsc::Receiver<Bytes>) {
        let Reserved { session, serial, attachment, ticket, commands, input } = reserved;
        let (attachment, socket) = pair(attachment, input.0, commands.0);
        let actor = Actor {
            terminals: self.clone(),
            session,
            serial,
            binding: ticket.binding,
            commands: commands.1,
            scrollback: Scrollback::new(SCROLLBACK),
            attached: Some(attachment),
            pending: None,
            detached_at: None,
            hangup: None,
        };
        (actor, socket, input.1)
    }

    /// Removes session `id` if it is still the one numbered `serial`.
    fn forget(&self, id: &str, serial: u64) -> bool {
        let mut registry = self.registry();
        if registry.sessions.get(id).is_some_and(|live| live.serial == serial) {
            registry.sessions.remove(id);
            true
        } else {
            false
        }
    }

    /// Records that socket `attachment` of session `id` went away (unless another took over).
    fn detached(&self, id: &str, serial: u64, attachment: u64) {
        if let Some(live) = self.registry().sessions.get_mut(id) {
            if live.serial == serial && live.attachment == Some(attachment) {
                live.attachment = None;
                live.detached_since = Some(Instant::now());
            }
        }
    }

    /// Removes session `id` if its grace period is over and no socket attached meanwhile.
    fn expire(&self, id: &str, serial: u64) -> bool {
        let mut registry = self.registry();
        let over = registry.sessions.get(id).is_some_and(|live| {
            live.serial == serial
                && live.attachment.is_none()
                && live.detached_since.is_some_and(|since| since.elapsed() >= self.inner.grace)
        });
        if over {
            registry.sessions.remove(id);
        }
        over
    }

    /// Live sessions (attached or not).
    pub fn live(&self) -> usize {
        self.registry().sessions.len()
    }

    /// Hangs up, every [`REVALIDATE`], the sessions whose user was disabled or removed (or is
    /// no longer allowed the container) and whose container was deleted or replaced.
    pub async fn watch(self) {
        let mut tick = tokio::time::interval(REVALIDATE);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let bindings: Vec<Binding> = {
                let registry = self.registry();
                let mut all: Vec<Binding> = registry.sessions.values().map(|live| live.binding.clone()).collect();
                all.sort_by(|a, b| (&a.user, &a.container_uid).cmp(&(&b.user, &b.container_uid)));
                all.dedup();
                all
            };
            if bindings.is_empty() {
                continue;
            }
            let checked = bindings.clone();
            let allowed = self.inner.db.run(move |store| Ok(checked.iter().map(|b| still_allowed(store, b)).collect()));
            let allowed: Vec<bool> = match allowed.await {
                Ok(allowed) => allowed,
                Err(e) => {
                    tracing::warn!("terminal: checking sessions against the store: {e}");
                    continue;
                }
            };
            let gone: Vec<&Binding> = bindings.iter().zip(allowed).filter(|(_, ok)| !ok).map(|(b, _)| b).collect();
            if gone.is_empty() {
                continue;
            }
            let mut registry = self.registry();
            registry.sessions.retain(|id, live| {
                if gone.contains(&&live.binding) {
                    tracing::info!(user = %live.binding.user, container = %live.binding.object(), session = %id,
                        "terminal: hanging up (the user or the container is gone)");
                    let _ = live.commands.try_send(Command::HangUp);
                    false
                } else {
                    true
                }
            });
        }
    }
}

/// Whether `binding`'s user may still reach its container.
fn still_allowed(store: &mut ssp_store::Store, binding: &Binding) -> bool {
    let user_ok = binding.user == crate::auth::HOST_ROOT
        || match store.user(&binding.user) {
            Ok(user) => !user.disabled && (user.name.as_str() == binding.owner || user.role == ssp_store::Role::Admin),
            Err(_) => false,
        };
    user_ok
        && store
            .container(&binding.owner, &binding.name)
            .is_ok_and(|row| row.uid == binding.container_uid && row.phase != ContainerPhase::Deleting)
}

fn pair(id: u64, input: mpsc::Sender<Bytes>, commands: mpsc::Sender<Command>) -> (Attachment, Socket) {
    // Room for the scrollback and a farewell without waiting, and a little output beyond.
    let (frames_tx, frames) = mpsc::channel(16);
    let (farewell_tx, farewell) = oneshot::channel();
    (Attachment { id, frames: frames_tx, farewell: farewell_tx }, Socket { frames, farewell, input, commands })
}

/// What a session does to its shell besides input: the pty's size and signals. It is
/// [`ssp_lxd::ExecControl`] (a pty and pidfd of ssp's, or LXD's control websocket); the
/// tests drive the session with a recording fake.
trait Shell: Sync {
    /// Resizes the pty.
    fn resize(&self, cols: u32, rows: u32) -> impl std::future::Future<Output = ssp_lxd::Result<()>> + Send;
    /// Sends signal `number` to the shell.
    fn signal(&self, number: i32) -> impl std::future::Future<Output = ssp_lxd::Result<()>> + Send;
}

impl Shell for ssp_lxd::ExecControl {
    fn resize(&self, cols: u32, rows: u32) -> impl std::future::Future<Output = ssp_lxd::Result<()>> + Send {
        ssp_lxd::ExecControl::resize(self, cols, rows)
    }

    fn signal(&self, number: i32) -> impl std::future::Future<Output = ssp_lxd::Result<()>> + Send {
        ssp_lxd::ExecControl::signal(self, number)
    }
}

/// Where a hang-up stands.
#[derive(Debug, Clone, Copy)]
enum HangUp {
    /// SIGHUP sent; SIGKILL at this instant.
    Hup(Instant),
    /// SIGKILL sent; dropped at this instant.
    Kill(Instant),
}

/// A session's task: starts the shell, then moves its output into the scrollback and to
/// the attached socket, and takes sockets, resizes, signals and hang-ups.
struct Actor {
    terminals: Terminals,
    session: String,
    serial: u64,
    binding: Binding,
    commands: mpsc::Receiver<Command>,
    scrollback: Scrollback,
    attached: Option<Attachment>,
    /// A chunk already in the scrollback, not yet taken by the attached socket.
    pending: Option<Bytes>,
    detached_at: Option<Instant>,
    hangup: Option<HangUp>,
}

/// How the output loop ended.
enum Ending {
    /// The shell's output ended: it exited.
    Exited,
    /// It would not end after SIGKILL either.
    GaveUp,
}

impl Actor {
    async fn run(mut self, row: Container, (cols, rows): (u16, u16), input: mpsc::Receiver<Bytes>) {
        let object = self.binding.object();
        let mut options = instance::owner_exec_options(&row);
        options.environment.insert("TERM".into(), "xterm-256color".into());
        options.pty = Some((u32::from(cols.max(1)), u32::from(rows.max(1))));
        let inner = Arc::clone(&self.terminals.inner);
        let lxd_name = instance::lxd_name(&row);
        let started =
            ssp_gateway::start_in(inner.attach.as_deref(), &inner.lxd, &lxd_name, &ssp_gateway::login_shell(), options)
                .await;
        let mut exec = match started {
            Ok(exec) => exec,
            Err(e) => {
                tracing::warn!(user = %self.binding.user, container = %object, "terminal: could not start a shell: {e}");
                self.terminals.forget(&self.session, self.serial);
                if let Some(attached) = self.attached.take() {
                    let line = format!("ssp: could not start a shell in {object}: {e}\r\n");
                    let _ = attached.frames.try_send(Frame::Output(Bytes::from(line)));
                    let _ = attached.frames.try_send(Frame::Exit(255));
                }
                self.journal(format!("session {} could not start: {e}", self.session)).await;
                return;
            }
        };
        let path = if exec.is_attached() { "attach" } else { "lxd-exec" };
        tracing::info!(user = %self.binding.user, container = %object, session = %self.session, path, "terminal: shell started");
        self.journal(format!("session {} started ({path})", self.session)).await;

        let control = exec.control.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let keystrokes = tokio::spawn(feed(exec.take_stdin(), input, stopped));
        let mut output = std::mem::replace(&mut exec.stdout, mpsc::channel(1).1);
        let ending = self.pump(&mut output, &control).await;
        // The input side lets go first: LXD's exec finishes only once every stream is closed.
        let _ = stop.send(());
        let _ = keystrokes.await;
        drop(output);
        let code = match ending {
            Ending::Exited => match tokio::time::timeout(HANGUP_PATIENCE, exec.wait()).await {
                Ok(Ok(exit)) => exit.code,
                Ok(Err(e)) => {
                    tracing::warn!(container = %object, "terminal: waiting for the shell: {e}");
                    255
                }
                Err(_) => 255,
            },
            Ending::GaveUp => {
                tracing::warn!(container = %object, session = %self.session, "terminal: the shell outlived SIGKILL; dropped");
                255
            }
        };
        if let Some(attached) = self.attached.take() {
            let flushed = async {
                if let Some(chunk) = self.pending.take() {
                    attached.frames.send(Frame::Output(chunk)).await.ok()?;
                }
                attached.frames.send(Frame::Exit(code)).await.ok()
            };
            let _ = tokio::time::timeout(HANGUP_PATIENCE, flushed).await;
        }
        tracing::info!(container = %object, session = %self.session, code, "terminal: session ended");
        self.journal(format!("session {} ended, exit {code}", self.session)).await;
    }

    async fn journal(&self, detail: String) {
        let (actor, object) = (self.binding.user.clone(), self.binding.object());
        let logged = self
            .terminals
            .inner
            .db
            .run(move |store| store.log(Some(&actor), "container.terminal", &object, Some(&detail)))
            .await;
        if let Err(e) = logged {
            tracing::warn!("terminal: writing the journal: {e}");
        }
    }

    /// The output loop, until the shell's output ends (or a hang-up gives up on it); the
    /// session is out of the registry when it returns.
    async fn pump(&mut self, output: &mut mpsc::Receiver<Bytes>, control: &impl Shell) -> Ending {
        let ending = self.pump_until_the_end(output, control).await;
        self.terminals.forget(&self.session, self.serial);
        ending
    }

    async fn pump_until_the_end(&mut self, output: &mut mpsc::Receiver<Bytes>, control: &impl Shell) -> Ending {
        let mut commands_open = true;
        loop {
            let deadline = match self.hangup {
                Some(HangUp::Hup(at) | HangUp::Kill(at)) => Some(at),
                None => self.detached_at.map(|since| since + self.terminals.inner.grace),
            };
            tokio::select! {
                command = self.commands.recv(), if commands_open => match command {
                    Some(command) => self.obey(command, control).await,
                    None => commands_open = false,
                },
                chunk = output.recv(), if self.pending.is_none() => match chunk {
                    Some(chunk) => {
                        self.scrollback.push(&chunk);
                        if self.attached.is_some() {
                            self.pending = Some(chunk);
                        }
                    }
                    None => return Ending::Exited,
                },
                permit = reserve(self.attached.as_ref()), if self.pending.is_some() => match (permit, self.pending.take()) {
                    (Ok(permit), Some(chunk)) => {
                        permit.send(Frame::Output(chunk));
                    }
                    _ => self.detach(),
                },
                () = closed(self.attached.as_ref()), if self.pending.is_none() => self.detach(),
                () = sleep_until(deadline) => match self.hangup {
                    Some(HangUp::Hup(_)) => {
                        let _ = control.signal(9).await;
                        self.hangup = Some(HangUp::Kill(Instant::now() + HANGUP_PATIENCE));
                    }
                    Some(HangUp::Kill(_)) => return Ending::GaveUp,
                    None => {
                        if self.terminals.expire(&self.session, self.serial) {
                            tracing::info!(user = %self.binding.user, container = %self.binding.object(), session = %self.session,
                                "terminal: no window for {:?}; hanging up", self.terminals.inner.grace);
                            self.hang_up(control).await;
                        } else {
                            // A socket is attaching: its `Attach` is on its way. Should it
                            // never come, the same check runs again a grace period later.
                            self.detached_at = Some(Instant::now());
                        }
                    }
                },
            }
        }
    }

    async fn obey(&mut self, command: Command, control: &impl Shell) {
        match command {
            Command::Resize(cols, rows) => {
                if let Err(e) = control.resize(u32::from(cols.max(1)), u32::from(rows.max(1))).await {
                    tracing::debug!(session = %self.session, "terminal: resize: {e}");
                }
            }
            Command::Signal(number) => {
                if let Err(e) = control.signal(number).await {
                    tracing::debug!(session = %self.session, "terminal: signal {number}: {e}");
                }
            }
            Command::Attach(attachment) => {
                if let Some(old) = self.attached.take() {
                    let _ = old.farewell.send(Farewell::TakenOver);
                }
                // What the old socket had not taken yet is in the scrollback already.
                self.pending = None;
                let scrollback = self.scrollback.snapshot();
                if !scrollback.is_empty() {
                    let _ = attachment.frames.try_send(Frame::Output(scrollback));
                }
                self.attached = Some(attachment);
                self.detached_at = None;
            }
            Command::HangUp => self.hang_up(control).await,
        }
    }

    fn detach(&mut self) {
        if let Some(attachment) = self.attached.take() {
            self.terminals.detached(&self.session, self.serial, attachment.id);
        }
        self.pending = None;
        self.detached_at = Some(Instant::now());
    }

    async fn hang_up(&mut self, control: &impl Shell) {
        if self.hangup.is_none() {
            let _ = control.signal(1).await;
            self.hangup = Some(HangUp::Hup(Instant::now() + HANGUP_PATIENCE));
        }
    }
}

/// Room for one frame on the attached socket; never ready without one.
async fn reserve(attached: Option<&Attachment>) -> Result<mpsc::OwnedPermit<Frame>, ()> {
    match attached {
        Some(attached) => attached.frames.clone().reserve_owned().await.map_err(|_| ()),
        None => std::future::pending().await,
    }
}

/// Ready once the attached socket has gone; never without one.
async fn closed(attached: Option<&Attachment>) {
    match attached {
        Some(attached) => attached.frames.closed().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Writes keystrokes to the shell until told to stop (or every socket and the registry have
/// let go), then closes our side of its input.
async fn feed(mut stdin: ssp_lxd::ExecStdin, mut input: mpsc::Receiver<Bytes>, mut stop: oneshot::Receiver<()>) {
    loop {
        tokio::select! {
            keys = input.recv() => match keys {
                Some(keys) => {
                    if stdin.write(keys).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
            _ = &mut stop => break,
        }
    }
    stdin.shutdown().await;
}

/// Whether `row` can have a shell now: ready and meant to run (409 otherwise, saying what to do).
pub fn runnable(row: &Container) -> Result<(), ApiError> {
    let object = format!("{}/{}", row.owner, row.name);
    if row.phase != ContainerPhase::Ready || row.desired_state != ssp_store::DesiredState::Running {
        return Err(ApiError::Conflict(format!(
            "container {object} is not running; start it (`ssp container start {}`) and try again",
            row.name
        )));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    #[test]
    fn only_this_sites_own_origin_passes() {
        let host = Some("127.0.0.1:8443");
        let cases: [(Option<&str>, Option<&str>, bool); 13] = [
            (Some("https://127.0.0.1:8443"), host, true),
            (Some("https://ssp.example"), Some("ssp.example"), true),
            (None, host, false),
            (Some("https://127.0.0.1:8443"), None, false),
            (Some("https://"), Some(""), false),
            (Some("http://127.0.0.1:8443"), host, false),
            (Some("https://evil.example"), host, false),
            (Some("https://127.0.0.1:8444"), host, false),
            (Some("https://127.0.0.1"), host, false),
            (Some("https://127.0.0.1:8443.evil.example"), host, false),
            (Some("https://127.0.0.1:8443/"), host, false),
            (Some("null"), host, false),
            (Some("HTTPS://127.0.0.1:8443"), host, false),
        ];
        for (origin, host, expected) in cases {
            assert_eq!(origin_allowed(origin, host), expected, "{origin:?} for {host:?}");
        }
    }

    #[test]
    fn a_ticket_lives_thirty_seconds() {
        let issued = Instant::now();
        let cases = [(0, true), (1, true), (29_999, true), (30_000, false), (31_000, false), (3_600_000, false)];
        for (after_ms, expected) in cases {
            let now = issued + Duration::from_millis(after_ms);
            assert_eq!(ticket_fresh(issued, now), expected, "{after_ms} ms");
        }
        // A clock that went backwards cannot make an old ticket new or a new one invalid.
        assert!(ticket_fresh(issued + Duration::from_secs(5), issued));
    }

    #[test]
    fn a_new_session_evicts_the_longest_detached_or_is_refused() {
        let t0 = Instant::now();
        let at = |s: u64| Some(t0 + Duration::from_secs(s));
        let slot = |key: &'static str, detached_since| Slot { key, detached_since };
        type Case = (Vec<Slot<&'static str>>, usize, Room<&'static str>);
        let cases: Vec<Case> = vec![
            (vec![], 10, Room::Free),
            (vec![slot("a", None)], 2, Room::Free),
            (vec![slot("a", None), slot("b", None)], 2, Room::Full),
            (vec![slot("a", None), slot("b", at(5))], 2, Room::Evict("b")),
            (vec![slot("a", at(9)), slot("b", at(5)), slot("c", at(7))], 3, Room::Evict("b")),
            (vec![slot("a", at(1)), slot("b", None), slot("c", None)], 3, Room::Evict("a")),
            (vec![slot("a", None), slot("b", None), slot("c", at(2))], 2, Room::Evict("c")),
            (vec![slot("a", at(1))], 0, Room::Evict("a")),
        ];
        for (slots, max, expected) in cases {
            assert_eq!(make_room(&slots, max), expected, "{slots:?} max {max}");
        }
    }

    #[test]
    fn client_text_frames_are_checked() {
        let ok = |text: &str| parse_client_text(text).unwrap();
        assert_eq!(
            ok(r#"{"type":"resize","cols":100,"rows":30}"#),
            TerminalClientMessage::Resize { cols: 100, rows: 30 }
        );
        for signal in ALLOWED_SIGNALS {
            assert_eq!(
                ok(&format!(r#"{{"type":"signal","signal":{signal}}}"#)),
                TerminalClientMessage::Signal { signal }
            );
        }
        for refused in [
            r#"{"type":"resize","cols":0,"rows":30}"#,
            r#"{"type":"resize","cols":80,"rows":0}"#,
            r#"{"type":"resize","cols":80,"rows":70000}"#,
            r#"{"type":"resize","cols":-1,"rows":24}"#,
            r#"{"type":"signal","signal":19}"#,
            r#"{"type":"signal","signal":0}"#,
            r#"{"type":"signal","signal":-9}"#,
            r#"{"type":"signal","signal":"INT"}"#,
            r#"{"type":"exit","code":0}"#,
            r#"{"type":"input","data":"ls"}"#,
            "ls\r",
            "",
        ] {
            assert!(parse_client_text(refused).is_err(), "{refused} was accepted");
        }
    }

    #[test]
    fn replayed_output_asks_the_terminal_nothing() {
        let output = b"dev:~$ \x1b[6necho hi\r\nhi\r\n\x1b[cdev:~$ \x1b[6n";
        assert_eq!(without_queries(output), b"dev:~$ echo hi\r\nhi\r\ndev:~$ ".to_vec());
        assert_eq!(without_queries(b"\x1b[6"), b"\x1b[6".to_vec(), "a cut sequence stays");
        let mut scrollback = Scrollback::new(64);
        scrollback.push(b"a\x1b[6nb");
        assert_eq!(&scrollback.snapshot()[..], b"ab");
    }

    #[test]
    fn scrollback_keeps_the_latest_bytes() {
        let mut kept = Scrollback::new(10);
        assert!(kept.snapshot().is_empty());
        kept.push(b"abc");
        kept.push(b"def");
        assert_eq!(&kept.snapshot()[..], b"abcdef");
        kept.push(b"ghijkl");
        assert_eq!(kept.len(), 10);
        // Cut, and no line end near: the bytes as kept.
        assert_eq!(&kept.snapshot()[..], b"cdefghijkl");
        let mut big = Scrollback::new(4);
        big.push(b"0123456789");
        assert_eq!(&big.snapshot()[..], b"6789");
        // Cut: the fragment before the first line end is left out.
        let mut lines = Scrollback::new(12);
        lines.push(b"first line\nsecond\nthird\n");
        assert_eq!(&lines.snapshot()[..], b"third\n");
        // Not cut: everything, even the first line.
        let mut whole = Scrollback::new(64);
        whole.push(b"$ echo hi\r\nhi\r\n");
        assert_eq!(&whole.snapshot()[..], b"$ echo hi\r\nhi\r\n");
    }

    fn binding(user: &str, name: &str) -> Binding {
        Binding { user: user.into(), owner: user.into(), name: name.into(), container_uid: format!("uid-{name}") }
    }

    fn terminals() -> Terminals {
        let store = ssp_store::Store::open_in_memory().unwrap();
        let lxd = ssp_lxd::Client::new("/nonexistent/lxd.sock").unwrap();
        Terminals::new(Db::new(store), lxd, None, GRACE)
    }

    #[tokio::test]
    async fn tickets_work_once_and_only_for_their_binding() {
        let terminals = terminals();
        let first = terminals.issue(binding("alice", "dev"), None, 80, 24).unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(&first.ticket).unwrap().len(), 32);
        assert!(terminals.redeem("not-a-ticket").is_none());
        let ticket = terminals.redeem(&first.ticket).unwrap();
        assert_eq!((ticket.binding.clone(), ticket.session.clone()), (binding("alice", "dev"), first.session.clone()));
        assert!(terminals.redeem(&first.ticket).is_none(), "a ticket worked twice");
        // The session is live once opened: the same user and container get it again; anyone
        // or anything else gets a new one.
        let Opened::New(reserved) = terminals.open(ticket).unwrap() else { panic!("not new") };
        let again = terminals.issue(binding("alice", "dev"), Some(&first.session), 80, 24).unwrap();
        assert_eq!(again.session, first.session);
        let mut other_container = binding("alice", "dev");
        other_container.container_uid = "uid-replaced".into();
        for (who, asked) in [
            (binding("bob", "dev"), Some(first.session.as_str())),
            (binding("alice", "web"), Some(first.session.as_str())),
            (other_container, Some(first.session.as_str())),
            (binding("alice", "dev"), Some("nosuch")),
            (binding("alice", "dev"), None),
        ] {
            let issued = terminals.issue(who.clone(), asked, 80, 24).unwrap();
            assert_ne!(issued.session, first.session, "{who:?} got alice's session");
        }
        terminals.abandon(reserved);
        assert_eq!(terminals.live(), 0);
        let after = terminals.issue(binding("alice", "dev"), Some(&first.session), 80, 24).unwrap();
        assert_ne!(after.session, first.session, "an ended session was handed out again");
    }

    #[tokio::test]
    async fn a_user_with_every_session_attached_is_busy() {
        let terminals = terminals();
        let mut reserved = Vec::new();
        for _ in 0..MAX_SESSIONS_PER_USER {
            let issued = terminals.issue(binding("alice", "dev"), None, 80, 24).unwrap();
            let Opened::New(r) = terminals.open(terminals.redeem(&issued.ticket).unwrap()).unwrap() else {
                panic!("not new")
            };
            reserved.push(r);
        }
        let refused = terminals.issue(binding("alice", "dev"), None, 80, 24).unwrap_err();
        assert!(matches!(&refused, ApiError::Busy(m) if m.contains("10 terminal sessions")), "{refused:?}");
        // Someone else is not held back by alice's sessions.
        terminals.issue(binding("bob", "dev"), None, 80, 24).unwrap();
        // One detached: the next new session takes its place.
        let first = &reserved[0];
        terminals.detached(&first.session, first.serial, first.attachment);
        let issued = terminals.issue(binding("alice", "dev"), None, 80, 24).unwrap();
        let Opened::New(_) = terminals.open(terminals.redeem(&issued.ticket).unwrap()).unwrap() else {
            panic!("not new")
        };
        assert_eq!(terminals.live(), MAX_SESSIONS_PER_USER);
        assert!(!terminals.registry().sessions.contains_key(&first.session), "the detached one stayed");
    }

    /// Stands in for the shell's pty and pidfd, recording what the session asked of them.
    #[derive(Debug, Default)]
    struct Recorded {
        sizes: Mutex<Vec<(u32, u32)>>,
        signals: Mutex<Vec<i32>>,
    }

    impl Shell for Recorded {
        fn resize(&self, cols: u32, rows: u32) -> impl std::future::Future<Output = ssp_lxd::Result<()>> + Send {
            self.sizes.lock().unwrap().push((cols, rows));
            std::future::ready(Ok(()))
        }

        fn signal(&self, number: i32) -> impl std::future::Future<Output = ssp_lxd::Result<()>> + Send {
            self.signals.lock().unwrap().push(number);
            std::future::ready(Ok(()))
        }
    }

    impl Recorded {
        fn signals(&self) -> Vec<i32> {
            self.signals.lock().unwrap().clone()
        }
    }

    /// A new session's actor running over a stand-in shell: where the shell's output goes in,
    /// what the session did to the shell, the first socket, and the running output loop.
    #[allow(clippy::type_complexity)]
    fn running(
        terminals: &Terminals,
    ) -> (String, mpsc::Sender<Bytes>, Arc<Recorded>, Socket, tokio::task::JoinHandle<Ending>) {
        let issued = terminals.issue(binding("alice", "dev"), None, 80, 24).unwrap();
        let Opened::New(reserved) = terminals.open(terminals.redeem(&issued.ticket).unwrap()).unwrap() else {
            panic!("not new")
        };
        let (mut actor, socket, _keystrokes) = terminals.actor(reserved);
        let (output, mut shell_output) = mpsc::channel(16);
        let recorded = Arc::new(Recorded::default());
        let control = Arc::clone(&recorded);
        let pump = tokio::spawn(async move { actor.pump(&mut shell_output, &*control).await });
        (issued.session, output, recorded, socket, pump)
    }

    async fn reattach(terminals: &Terminals, session: &str) -> Socket {
        let issued = terminals.issue(binding("alice", "dev"), Some(session), 80, 24).unwrap();
        assert_eq!(issued.session, session, "not the live session");
        let Opened::Existing(existing) = terminals.open(terminals.redeem(&issued.ticket).unwrap()).unwrap() else {
            panic!("not live")
        };
        terminals.attach(existing).await
    }

    async fn shown(socket: &mut Socket) -> Bytes {
        match tokio::time::timeout(Duration::from_secs(5), socket.frames.recv()).await {
            Ok(Some(Frame::Output(bytes))) => bytes,
            other => panic!("no output: {other:?}"),
        }
    }

    /// Lets every task run until all wait (the paused clock moves only then).
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_outlives_its_socket_and_a_new_one_gets_the_scrollback() {
        let terminals = terminals();
        let (session, output, recorded, mut first, pump) = running(&terminals);
        output.send(Bytes::from_static(b"one\r\n")).await.unwrap();
        assert_eq!(&shown(&mut first).await[..], b"one\r\n");
        first.commands.send(Command::Resize(100, 30)).await.unwrap();

        // The socket goes: the shell runs on, and what it prints is kept.
        drop(first);
        tokio::time::sleep(GRACE / 2).await;
        output.send(Bytes::from_static(b"two\r\n")).await.unwrap();
        settle().await;
        let mut second = reattach(&terminals, &session).await;
        assert_eq!(&shown(&mut second).await[..], b"one\r\ntwo\r\n", "the scrollback first");
        output.send(Bytes::from_static(b"three\r\n")).await.unwrap();
        assert_eq!(&shown(&mut second).await[..], b"three\r\n", "then live output");
        assert_eq!(*recorded.sizes.lock().unwrap(), [(100, 30)]);

        // A third socket takes over: the second is let go, and told why.
        let mut third = reattach(&terminals, &session).await;
        assert_eq!(&shown(&mut third).await[..], b"one\r\ntwo\r\nthree\r\n");
        assert!(second.frames.recv().await.is_none(), "the second socket kept getting frames");
        assert_eq!(second.farewell.try_recv(), Ok(Farewell::TakenOver));

        // Detached for the whole grace period — counted from the last detach, not the first:
        // SIGHUP, SIGKILL when that did not end it, then the session is dropped.
        drop(third);
        settle().await;
        tokio::time::sleep(GRACE - Duration::from_secs(1)).await;
        assert!(recorded.signals().is_empty(), "hung up early");
        assert_eq!(terminals.live(), 1);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(recorded.signals(), [1]);
        assert_eq!(terminals.live(), 0, "a hung-up session can still be attached");
        tokio::time::sleep(HANGUP_PATIENCE).await;
        assert_eq!(recorded.signals(), [1, 9]);
        tokio::time::sleep(HANGUP_PATIENCE).await;
        assert!(matches!(pump.await.unwrap(), Ending::GaveUp));
        drop(output);
    }

    #[tokio::test(start_paused = true)]
    async fn a_shell_that_ends_ends_the_session_and_eviction_hangs_up() {
        let terminals = terminals();
        let (_, output, _, _first, pump) = running(&terminals);
        drop(output);
        assert!(matches!(pump.await.unwrap(), Ending::Exited));
        assert_eq!(terminals.live(), 0, "an ended session stayed");

        // Evicted for a new session while detached: SIGHUP, and it ends when the shell does.
        let (session, output, recorded, first, pump) = running(&terminals);
        drop(first);
        settle().await;
        terminals.registry().make_room_for("alice").unwrap();
        assert_eq!(terminals.live(), 1, "nothing should go while there is room");
        let mut others = Vec::new();
        for _ in 1..MAX_SESSIONS_PER_USER {
            let issued = terminals.issue(binding("alice", "web"), None, 80, 24).unwrap();
            let Opened::New(reserved) = terminals.open(terminals.redeem(&issued.ticket).unwrap()).unwrap() else {
                panic!("not new")
            };
            others.push(reserved);
        }
        terminals.registry().make_room_for("alice").unwrap();
        assert!(!terminals.registry().sessions.contains_key(&session), "the detached session stayed");
        settle().await;
        assert_eq!(recorded.signals(), [1]);
        drop(output);
        assert!(matches!(pump.await.unwrap(), Ending::Exited));
    }

    #[test]
    fn outstanding_tickets_per_user_are_bounded() {
        let terminals = terminals();
        let tickets: Vec<Issued> = (0..MAX_TICKETS_PER_USER + 5)
            .map(|_| terminals.issue(binding("alice", "dev"), None, 80, 24).unwrap())
            .collect();
        assert_eq!(terminals.registry().tickets.len(), MAX_TICKETS_PER_USER);
        assert!(terminals.redeem(&tickets[0].ticket).is_none(), "the oldest ticket was kept");
        assert!(terminals.redeem(&tickets[MAX_TICKETS_PER_USER + 4].ticket).is_some());
    }
}
