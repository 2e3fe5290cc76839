//! ssp's SSH front door: one port where people log in with the public keys they registered in
//! ssp and land in their own containers (`ssh -p 2222 alice+dev@HOST`).
//!
//! The gateway terminates SSH itself (russh) and never relays to a container's sshd over the
//! bridge: sessions (shell, exec, pty, environment, resize, signals) and the `sftp` subsystem
//! (and so `scp`) run as the container's owner account, started the way LXD's exec starts
//! them (its own `forkexec`, [`ssp_lxd::Attach`]) with the pipes or pty kept here, or through
//! LXD's exec websocket where that cannot be used; forwarded connections (`-L`, `-D`, `-W`)
//! come from the container's own loopback; ProxyJump reaches its sshd through a unix socket;
//! `-L PORT:desktop:PORT` reaches the login's desktop session ([`desktop`], [`rfb`]).
//! Bytes are encrypted once, between the client and the gateway. Who may log in, where a login lands and which forwards are allowed are decided by
//! pure functions in `ssp_core::gateway`; users, keys, containers and the audit log come from
//! a [`Backend`] the daemon implements over its store.
//!
//! The daemon's web terminal starts its shells the same way ([`login_shell`], [`start_in`]).
//!
//! What this crate must not do: read or write the store itself, decide policy that can be a
//! pure function, or reach anything but the authenticated user's own containers.

mod agent;
pub mod desktop;
mod devices;
mod hostkey;
mod limits;
pub mod rfb;
mod server;
mod session;
mod sshd;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ssp_core::names::Name;
use tokio::net::TcpListener;

pub use devices::{LiveDevices, Writer, DEVICE_PREFIX};
pub use hostkey::HostKey;
pub use session::{login_shell, start_in};

/// How the gateway behaves; every value has a default in the daemon's `[gateway]` section.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the host key is kept (made once, mode 0600).
    pub host_key_path: PathBuf,
    /// Where the sockets for forwarded agents are made (in a folder only root can enter).
    pub socket_dir: PathBuf,
    /// Authentication attempts per connection.
    pub max_auth_attempts: usize,
    /// How long a refused authentication takes to answer (the same for every refusal).
    pub auth_rejection_time: Duration,
    /// A connection that has not authenticated within this time is closed.
    pub pre_auth_timeout: Duration,
    /// The longest a source with recent failures waits before its keys are looked at
    /// (kept below `pre_auth_timeout`).
    pub max_source_penalty: Duration,
    /// A connection with nothing running and no bytes moving either way for this long is
    /// closed; `None`: never. A running command or forward is never cut.
    pub idle_timeout: Option<Duration>,
    /// Open connections per user at most.
    pub max_connections_per_user: usize,
    /// Connections per source address that have not authenticated yet, at most; more are
    /// closed at once (as OpenSSH's `PerSourceMaxStartups`).
    pub max_startups_per_source: usize,
    /// How often live connections check that their key and user are still valid.
    pub revalidate_interval: Duration,
    /// How long a container keeps the sshd socket ProxyJump uses after its last jump.
    pub sshd_socket_linger: Duration,
    /// Which ciphers are offered.
    pub ciphers: Ciphers,
    /// How sessions reach containers.
    pub session_path: SessionPath,
}

/// How sessions, commands, sftp and forwards reach a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SessionPath {
    /// LXD's own way in (`forkexec`, liblxc's attach with the container's config), started by
    /// the gateway with the descriptors kept here, and forwards from a socket in the
    /// container's network namespace, wherever that can be used ([`ssp_lxd::Attach`]); LXD's
    /// exec websocket elsewhere.
    #[default]
    Auto,
    /// Always LXD's exec websocket (and a relay inside for forwards).
    LxdExec,
}

/// Which ciphers the gateway offers. Every session's bytes are decrypted by the gateway, so
/// the cipher is its largest cost: on this project's 2-core machine chacha20-poly1305 took
/// 2.3 s of the gateway's CPU per GB against 1.4 s for AES-GCM, which the CPU accelerates.
/// SSH clients pick the first cipher of *their* list that the server offers (OpenSSH:
/// chacha20-poly1305), so preferring one means not offering the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ciphers {
    /// AES-GCM only where the CPU accelerates AES and GHASH; chacha20-poly1305 too elsewhere.
    #[default]
    Auto,
    /// chacha20-poly1305 and AES-GCM (for clients without AES-GCM, such as PuTTY before 0.76).
    All,
}

impl Ciphers {
    /// Whether chacha20-poly1305 is offered.
    pub fn offers_chacha20(self) -> bool {
        match self {
            Ciphers::All => true,
            Ciphers::Auto => !aes_is_accelerated(),
        }
    }
}

fn aes_is_accelerated() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes") && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            host_key_path: PathBuf::from("/var/lib/ssp/gateway/ssh_host_ed25519_key"),
            socket_dir: PathBuf::from("/var/lib/ssp/gateway/sockets"),
            max_auth_attempts: 6,
            auth_rejection_time: Duration::from_secs(1),
            pre_auth_timeout: Duration::from_secs(30),
            max_source_penalty: Duration::from_secs(10),
            idle_timeout: Some(Duration::from_secs(8 * 3600)),
            max_connections_per_user: 20,
            max_startups_per_source: 10,
            revalidate_interval: Duration::from_secs(2),
            sshd_socket_linger: Duration::from_secs(600),
            ciphers: Ciphers::Auto,
            session_path: SessionPath::Auto,
        }
    }
}

/// A container a user may land in.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its ssp name.
    pub name: Name,
    /// Its LXD instance name.
    pub instance: String,
    /// Whether it is ready and meant to be running (an exec is tried only then).
    pub running: bool,
    /// Whether its owner's account has been set up inside (a login before that would find
    /// no such user): until then the gateway waits a while, saying so.
    pub set_up: bool,
    /// How commands run inside as the owner's account: uid, gid, home, `USER`, ….
    pub exec: ssp_lxd::ExecOptions,
    /// The container sshd's host key as ssp pinned it (an OpenSSH public key line), if it
    /// has one: jumps to its sshd are checked against it.
    pub ssh_host_key: Option<String>,
}

/// One channel's audit record, as it starts.
#[derive(Debug, Clone)]
pub struct SessionStart {
    /// The user.
    pub user: String,
    /// The container.
    pub container: String,
    /// `shell`, `exec`, `sftp`, `forward:PORT` or `sshd` (a jump to the container's sshd).
    pub kind: String,
    /// The client's address.
    pub source: String,
    /// How the channel reaches the container: `attach`, `lxd-exec`, `netns` or `sshd-socket`
    /// (see [`SessionPath`]).
    pub path: &'static str,
}

/// One channel's audit record, as it ends.
#[derive(Debug, Clone, Copy, Default)]
pub struct SessionEnd {
    /// Bytes from the client into the container.
    pub bytes_in: u64,
    /// Bytes from the container to the client.
    pub bytes_out: u64,
    /// The command's exit code, for sessions.
    pub exit_code: Option<i32>,
}

/// Why the backend could not answer.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(pub String);

/// What the gateway needs from the daemon: users and their keys, containers, the audit log.
pub trait Backend: Clone + Send + Sync + 'static {
    /// `user`'s public keys (OpenSSH lines), or `None` when the user does not exist or is
    /// disabled.
    fn keys(&self, user: &Name) -> impl Future<Output = Result<Option<Vec<String>>, BackendError>> + Send;

    /// `user`'s containers.
    fn containers(&self, user: &Name) -> impl Future<Output = Result<Vec<Target>, BackendError>> + Send;

    /// Records a channel's start; returns its id for [`Backend::session_ended`].
    fn session_started(&self, start: SessionStart) -> impl Future<Output = Result<i64, BackendError>> + Send;

    /// Records a channel's end.
    fn session_ended(&self, id: i64, end: SessionEnd) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// `user`'s desktop session in `target` (started when none runs), authenticated: the
    /// gateway admits the viewer and relays (`-L PORT:desktop:PORT`).
    fn desktop(
        &self,
        user: &Name,
        target: &Target,
    ) -> impl Future<Output = Result<desktop::DesktopConnection, BackendError>> + Send;
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The host key could not be made, read or written.
    #[error("gateway host key {path}: {message}")]
    HostKey {
        /// The key file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The port could not be bound.
    #[error("gateway: listening on {address}: {source}")]
    Listen {
        /// The address.
        address: String,
        /// Why.
        source: std::io::Error,
    },
}

/// A bound gateway, ready to [`Gateway::run`].
pub struct Gateway<B: Backend> {
    listener: TcpListener,
    shared: Arc<server::Shared<B>>,
    host_key: HostKey,
}

impl<B: Backend> std::fmt::Debug for Gateway<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").field("listener", &self.listener).finish_non_exhaustive()
    }
}

impl<B: Backend> Gateway<B> {
    /// Loads (or makes) the host key and binds `address`. The devices it adds to containers
    /// are registered in `live`.
    pub async fn bind(
        address: SocketAddr,
        settings: Settings,
        backend: B,
        lxd: ssp_lxd::Client,
        live: LiveDevices,
    ) -> Result<Self, Error> {
        let host_key = HostKey::load_or_create(&settings.host_key_path)?;
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| Error::Listen { address: address.to_string(), source })?;
        let attach = match settings.session_path {
            SessionPath::Auto => match ssp_lxd::Attach::discover(&lxd).await {
                Ok(attach) => {
                    tracing::info!("gateway: sessions enter containers as LXD's exec does, without its websocket");
                    Some(Arc::new(attach))
                }
                Err(why) => {
                    tracing::warn!("gateway: sessions go through LXD's exec websocket: {why}");
                    None
                }
            },
            SessionPath::LxdExec => None,
        };
        let shared = Arc::new(server::Shared::new(settings, &host_key, backend, lxd, live, attach));
        Ok(Self { listener, shared, host_key })
    }

    /// The bound address (its port, when bound to port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The host key.
    pub fn host_key(&self) -> &HostKey {
        &self.host_key
    }

    /// Accepts connections until the task is dropped.
    pub async fn run(self) {
        let reaper = tokio::spawn(Arc::clone(&self.shared.sshd).reap());
        server::accept(self.listener, self.shared).await;
        reaper.abort();
    }
}
