//! ssp's REST API as data: the request and response bodies of `/api/v1`, shared by the
//! server (which derives the OpenAPI document from them), the CLI and the tests.
//!
//! Only wire shapes live here — no IO, no policy. Sizes travel as strings in binary units
//! (`"16GiB"`), the form people type; the server parses them with `ssp_core::size`. Names
//! travel as plain strings and are checked by the server, so a bad one gets a 400 that says
//! what is allowed rather than a deserialization error.

mod gpu;

use std::collections::BTreeMap;

pub use gpu::{
    ContainerGpuUsage, Gpu, GpuAllowlist, GpuAsk, GpuGrant, GpuHistory, GpuHistoryBucket, GpuHistorySeries, GpuHolder,
    GpuList, GpuProcess, GpuUpdate, GpuUsage, UserGpuUsage,
};

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

pub mod audit;
pub mod desktop;
pub mod images;
pub mod storage;
pub mod terminal;

pub use audit::{AuditEntry, GpusHealth, Health, LxdHealth, MemoryHealth, PoolHealth, ReconcilerHealth};
pub use desktop::{Desktop, DesktopChange, DesktopSession, DesktopState, DesktopTicket};

pub use images::{ContainerCopy, ImagePublish, ImportQuery};

pub use storage::{
    Home, HomeCreate, ScheduleReport, Share, ShareCreate, ShareGroup, Snapshot, SnapshotCreate, SnapshotSchedule,
    SnapshotUpdate,
};

pub use terminal::{
    TerminalClientMessage, TerminalRequest, TerminalServerMessage, TerminalTicket, TERMINAL_TICKET_SECS,
};

/// The prefix of every API path.
pub const API_PREFIX: &str = "/api/v1";

/// The header that carries a create's idempotency key (also accepted in the body).
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// Every error answer: `{ "error": { "code": "...", "message": "..." } }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong, for programs (`code`) and for people (`message`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code: `bad_request`, `unauthorized`, `forbidden`, `not_found`,
    /// `conflict`, `quota_exceeded`, `busy`, `throttled`, `unavailable`, `internal`.
    pub code: String,
    /// What happened and what to do about it.
    pub message: String,
}

/// A user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Manages users, sees everything.
    Admin,
    /// Manages their own keys, tokens and containers.
    #[default]
    User,
}

/// A user's limits. Sizes are binary-unit strings (`"64GiB"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Quota {
    /// Most containers at once.
    pub max_containers: u32,
    /// Most CPUs over all containers.
    pub max_cpus: u32,
    /// Most memory over all containers.
    pub max_memory: String,
    /// Most root disk over all containers.
    pub max_disk: String,
    /// Most GPUs over all containers.
    pub max_gpus: u32,
}

/// A change to some of a user's limits; absent fields keep their value (or, on create, the
/// configured default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuotaPatch {
    /// Most containers at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_containers: Option<u32>,
    /// Most CPUs over all containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cpus: Option<u32>,
    /// Most memory over all containers (`"64GiB"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory: Option<String>,
    /// Most root disk over all containers (`"500GiB"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_disk: Option<String>,
    /// Most GPUs over all containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_gpus: Option<u32>,
}

/// What a user holds now, against their quota.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    /// Containers.
    pub containers: u32,
    /// CPUs.
    pub cpus: u32,
    /// Memory.
    pub memory: String,
    /// Root disk.
    pub disk: String,
    /// GPUs.
    pub gpus: u32,
}

/// `POST /api/v1/users` (admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UserCreate {
    /// Login name: 1-32 lowercase letters, digits and `-`, starting with a letter.
    pub name: String,
    /// Role; `user` unless given.
    #[serde(default)]
    pub role: Role,
    /// OpenSSH public keys (`ssh-ed25519 AAAA… comment`) to register at once.
    #[serde(default)]
    pub keys: Vec<String>,
    /// Limits; unset fields take the configured defaults.
    #[serde(default)]
    pub quota: QuotaPatch,
    /// Password for the web portal (stored as an argon2id hash), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// `PATCH /api/v1/users/{user}` (admin). Absent fields keep their value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UserUpdate {
    /// New role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Limits to change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<QuotaPatch>,
    /// Disable (true) or enable (false). A disabled user's tokens stop working at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// New web-portal password; an empty string removes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// A user as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct User {
    /// Login name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Whether the user is disabled.
    pub disabled: bool,
    /// Whether a web-portal password is set.
    pub has_password: bool,
    /// Limits.
    pub quota: Quota,
    /// What the user holds now.
    pub usage: Usage,
    /// How many SSH keys are registered.
    pub keys: u32,
    /// Unix seconds.
    pub created_at: i64,
    /// Being removed with everything they hold (`DELETE /users/{user}?purge=true`): disabled
    /// for good; the user answers 404 once nothing of theirs is left.
    pub departing: bool,
    /// How many of their containers exist, those being deleted included (0 when none).
    pub containers_left: u32,
    /// Which GPUs they may be given (`PUT /users/{user}/gpu-allowlist`); empty: any.
    pub gpu_allowlist: GpuAllowlist,
}

/// `DELETE /api/v1/users/{user}?purge=true`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserRemoveQuery {
    /// Remove the user with everything they hold: disable them now, delete their containers,
    /// home volume and images, then the user (202, or 204 when nothing was left). Without it
    /// a user who still holds containers is refused (409).
    #[serde(default)]
    pub purge: bool,
}

/// `POST /api/v1/users/{user}/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeyCreate {
    /// One OpenSSH public key line (`ssh-ed25519 AAAA… comment`).
    pub public_key: String,
    /// A name for the key; the key's comment or `key-N` unless given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A registered SSH public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Key {
    /// The key's name, unique per user.
    pub name: String,
    /// `SHA256:…`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    /// The key line (type, base64, no comment).
    pub public_key: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// `POST /api/v1/users/{user}/tokens`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenCreate {
    /// A name for the token; `token-N` unless given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A token just made: the only time its secret is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenCreated {
    /// Whose token it is.
    pub user: String,
    /// Its name.
    pub name: String,
    /// The bearer secret (`ssp_…`). ssp keeps only its hash.
    pub token: String,
}

/// A token, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Token {
    /// Its name.
    pub name: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds of the last request made with it.
    pub last_used_at: Option<i64>,
}

/// Whether a container should run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum DesiredState {
    /// Keep it running (start it again if it stops).
    #[default]
    Running,
    /// Keep it stopped.
    Stopped,
}

/// Where ssp is with a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Recorded; being made in LXD.
    Creating,
    /// Exists in LXD and is kept in its desired state.
    Ready,
    /// Being removed.
    Deleting,
    /// Vanished from LXD behind ssp's back; delete it or ask an admin.
    Lost,
}

/// `POST /api/v1/containers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ContainerCreate {
    /// The container's name (also its hostname), unique per owner.
    pub name: String,
    /// The owner; the caller unless an admin creates it for someone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Image alias (`ssp image list`); the configured default unless given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// CPUs; the configured default unless given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    /// Memory (`"16GiB"`); the configured default unless given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// Root disk (`"50GiB"`); the configured default unless given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<String>,
    /// Running unless given.
    #[serde(default)]
    pub state: DesiredState,
    /// Repeating a create with the same key returns the first one's container instead of
    /// making a second (also taken from the `Idempotency-Key` header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// GPUs to grant it; none unless given. Granted with the create or the create is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<GpuAsk>,
}

/// `PUT /api/v1/containers/{owner}/{name}/state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StateChange {
    /// The new desired state.
    pub state: DesiredState,
}

/// A container as the API shows it: what ssp wants and what LXD has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Container {
    /// Owner.
    pub owner: String,
    /// Name, unique per owner.
    pub name: String,
    /// Image alias it was made from.
    pub image: String,
    /// CPUs.
    pub cpus: u32,
    /// Memory limit.
    pub memory: String,
    /// Root disk size.
    pub disk: String,
    /// What ssp keeps it at.
    pub desired_state: DesiredState,
    /// Where ssp is with it.
    pub phase: Phase,
    /// LXD's status (`Running`, `Stopped`, …), or `Missing` when LXD has no such instance.
    pub status: String,
    /// IPv4 addresses on its network, when running.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// The last problem the reconciler met with it, until it is solved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// When that problem was last met (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem_at: Option<i64>,
    /// When the reconciler tries again (Unix seconds); absent when it waits for a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_try_at: Option<i64>,
    /// What the reconciler waits for before it can go on (an LXD operation on it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
    /// What waits for its next start (a home or share added while it ran: their file
    /// ownership needs the id map a start applies); it is usable meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<String>,
    /// ssp's work on it is done: LXD matches what ssp wants and, when running, its owner's
    /// account, keys, home and GPUs are in place — it is usable through every door.
    #[serde(default)]
    pub converged: bool,
    /// Host indices of the GPUs it holds, in the order it sees them (GPU0, GPU1, …).
    #[serde(default)]
    pub gpus: Vec<u32>,
    /// The last GPU health probe after a start: `healthy`, or what failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_health: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// The container's sshd host key (`ssh-ed25519 AAAA…`) as ssp pinned it when the
    /// container was first set up, for clients that ProxyJump to its sshd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_host_key: Option<String>,
    /// Whether it offers its owner a desktop (`GET …/desktop` says how it stands).
    #[serde(default)]
    pub desktop: bool,
}

/// `POST /api/v1/containers/{owner}/{name}/exec`: run a command and wait for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExecRequest {
    /// The program and its arguments (no shell unless you run one).
    pub command: Vec<String>,
    /// Standard input, base64; none unless given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin_base64: Option<String>,
    /// Extra environment variables (names: letters, digits, `_`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    /// Run as root instead of the owner's account.
    #[serde(default)]
    pub root: bool,
}

/// What an exec produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExecResult {
    /// The command's exit code (128+N when killed by signal N).
    pub exit_code: i32,
    /// Standard output, base64.
    pub stdout_base64: String,
    /// Standard error, base64.
    pub stderr_base64: String,
}

/// An image containers can be made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Image {
    /// The alias to pass as `image`.
    pub name: String,
    /// What it is.
    pub description: String,
    /// LXD's fingerprint.
    pub fingerprint: String,
    /// Bytes.
    pub size: u64,
    /// Unix seconds.
    pub created_at: i64,
    /// Whose it is: a user's published image (`None`: an image the host provides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// A user's image that every user may use.
    #[serde(default)]
    pub public: bool,
}

/// `GET /api/v1/info`: who is asking and what they are talking to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Info {
    /// ssp's version.
    pub version: String,
    /// The caller.
    pub user: String,
    /// The caller's role.
    pub role: Role,
    /// `lxd` or `incus`, and its version.
    pub backend: String,
    /// SHA-256 fingerprint of the API's TLS certificate (hex, colon-separated).
    pub tls_fingerprint: String,
    /// The SSH gateway, when it is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayInfo>,
}

/// `POST /api/v1/session`: sign in to the web portal with a password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SignIn {
    /// User name.
    pub name: String,
    /// The portal password (set by the admin, or through an invitation).
    pub password: String,
}

/// The signed-in portal session (`GET`/`POST /api/v1/session`); its secret is only in the
/// `__Host-ssp-session` cookie, never in a body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SessionInfo {
    /// Who is signed in.
    pub name: String,
    /// Their role.
    pub role: Role,
    /// Send it as `X-CSRF-Token` with every request that changes anything.
    pub csrf_token: String,
    /// When the session ends at the latest (seconds since the epoch); it ends earlier after
    /// `idle_timeout_secs` without a request.
    pub expires_at: i64,
    /// Seconds without a request after which it ends.
    pub idle_timeout_secs: u64,
}

/// `POST /api/v1/users/{user}/invite`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InviteCreate {
    /// How long the link stays valid, in hours (default `[portal] invite_hours`, 72; at most 720).
    #[serde(default)]
    pub valid_hours: Option<u32>,
}

/// A one-time invitation link; the answer is the only place it appears.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InviteCreated {
    /// The invited user.
    pub name: String,
    /// The link's secret.
    pub token: String,
    /// The link to give the user: the portal's page to set a password and a key.
    pub url: String,
    /// Seconds since the epoch.
    pub expires_at: i64,
}

/// `GET /api/v1/invites/{token}`: whom a valid link is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InviteInfo {
    /// The invited user.
    pub name: String,
    /// Seconds since the epoch.
    pub expires_at: i64,
}

/// `POST /api/v1/invites/{token}`: accept an invitation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InviteAccept {
    /// The new portal password (at least 8 characters).
    pub password: String,
    /// An SSH public key to add (an OpenSSH line), for the gateway.
    #[serde(default)]
    pub public_key: Option<String>,
}

/// `GET /api/v1/gateway/sessions`: one channel through the SSH gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GatewaySession {
    /// The user.
    pub user: String,
    /// The container.
    pub container: String,
    /// `shell`, `exec`, `sftp`, `forward:PORT` or `sshd` (a jump to the container's sshd).
    pub kind: String,
    /// The client's address and port.
    pub source: String,
    /// How the channel reached the container: `attach` (LXD's own way into the container,
    /// started by ssp without LXD's exec websocket), `lxd-exec` (LXD's exec, the fallback),
    /// `netns` (a connection from the container's own loopback) or `sshd-socket` (a jump
    /// through the sshd's proxy socket). Absent on rows recorded before ssp kept it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Seconds since the epoch.
    pub started_at: i64,
    /// Seconds since the epoch; absent while open.
    pub ended_at: Option<i64>,
    /// Bytes from the client into the container.
    pub bytes_in: u64,
    /// Bytes from the container to the client.
    pub bytes_out: u64,
    /// The command's exit code, for sessions.
    pub exit_code: Option<i64>,
}

/// Where the SSH gateway listens and the host key clients pin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GatewayInfo {
    /// The address it is bound to (`0.0.0.0:2222`).
    pub listen: String,
    /// Its host key, an OpenSSH public key line (`ssh-ed25519 AAAA…`) for `known_hosts`.
    pub host_key: String,
    /// The host key's fingerprint, as `ssh-keygen -l` shows it (`SHA256:…`).
    pub host_key_fingerprint: String,
}

/// `POST /api/v1/reconcile` (admin): what one reconcile pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReconcileReport {
    /// Milliseconds the pass took.
    pub duration_ms: u64,
    /// Containers in the state database.
    pub containers: u32,
    /// Instances created in LXD.
    pub created: u32,
    /// Instances started.
    pub started: u32,
    /// Instances stopped.
    pub stopped: u32,
    /// Instances whose drifted config or devices were restored.
    pub repaired: u32,
    /// Accounts set up or keys synced inside containers.
    pub accounts: u32,
    /// Containers removed (from LXD and the database).
    pub deleted: u32,
    /// LXD instances tagged by ssp with no container behind them, removed.
    pub orphans_removed: u32,
    /// Containers found missing from LXD.
    pub lost: u32,
    /// Containers the pass could not converge (see their `problem`).
    pub failed: u32,
}
