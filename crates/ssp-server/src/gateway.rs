//! The SSH gateway in the daemon: its `[gateway]` settings and the [`ssp_gateway::Backend`]
//! over the store — users and their keys, containers as the gateway may reach them (as the
//! owner's account, the same way `ssp exec` runs), and the audit log.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use ssp_core::names::Name;
use ssp_gateway::{BackendError, SessionEnd, SessionStart, Target};
use ssp_store::{ContainerPhase, DesiredState};

use crate::db::Db;
use crate::instance;

/// `[gateway]`: the SSH front door.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Address and port; `none` or empty turns the gateway off.
    pub listen: String,
    /// Authentication attempts per connection.
    pub max_auth_attempts: usize,
    /// Seconds a connection may take to authenticate.
    pub pre_auth_timeout_secs: u64,
    /// Seconds with nothing running and no byte either way after which a connection is
    /// closed (0: never). A running command or forward keeps it open, however quiet.
    pub idle_timeout_secs: u64,
    /// Open connections per user.
    pub max_connections_per_user: usize,
    /// Connections per source address that have not authenticated yet.
    pub max_startups_per_source: usize,
    /// Milliseconds every refused authentication takes.
    pub auth_rejection_ms: u64,
    /// Seconds a source with recent failed logins waits at most before its keys are looked at
    /// (growing 1, 2, 4, … with its failures; less than `pre_auth_timeout_secs`).
    pub max_source_penalty_secs: u64,
    /// Seconds a container keeps the sshd socket that ProxyJump uses after the last jump
    /// (each costs LXD a `forkproxy` process; making one takes about a second).
    pub sshd_socket_linger_secs: u64,
    /// `"auto"`: AES-GCM only where the CPU accelerates it (the cheapest for the gateway,
    /// which decrypts every session), chacha20-poly1305 as well elsewhere; `"all"`: both
    /// everywhere, for clients without AES-GCM.
    pub ciphers: String,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:2222".into(),
            max_auth_attempts: 6,
            pre_auth_timeout_secs: 30,
            idle_timeout_secs: 8 * 3600,
            max_connections_per_user: 20,
            max_startups_per_source: 10,
            auth_rejection_ms: 1000,
            max_source_penalty_secs: 10,
            sshd_socket_linger_secs: 600,
            ciphers: "auto".into(),
        }
    }
}

impl GatewayConfig {
    /// The address, or `None` when the gateway is off.
    pub fn address(&self) -> Result<Option<SocketAddr>, String> {
        match self.listen.trim() {
            "" | "none" => Ok(None),
            text => text
                .parse()
                .map(Some)
                .map_err(|e| format!("gateway.listen = {text:?}: {e} (use ADDRESS:PORT, or \"none\")")),
        }
    }

    fn ciphers(&self) -> Result<ssp_gateway::Ciphers, String> {
        match self.ciphers.as_str() {
            "auto" => Ok(ssp_gateway::Ciphers::Auto),
            "all" => Ok(ssp_gateway::Ciphers::All),
            other => Err(format!("gateway.ciphers = {other:?}: use \"auto\" or \"all\"")),
        }
    }

    /// Checks the values.
    pub fn check(&self) -> Result<(), String> {
        self.address()?;
        self.ciphers()?;
        if self.max_auth_attempts == 0 || self.max_auth_attempts > 20 {
            return Err("gateway.max_auth_attempts must be 1 to 20".into());
        }
        if self.pre_auth_timeout_secs == 0 || self.max_connections_per_user == 0 || self.max_startups_per_source == 0 {
            return Err("gateway.pre_auth_timeout_secs, max_connections_per_user and max_startups_per_source must be at least 1"
                .into());
        }
        if self.max_source_penalty_secs >= self.pre_auth_timeout_secs {
            return Err("gateway.max_source_penalty_secs must be less than gateway.pre_auth_timeout_secs".into());
        }
        Ok(())
    }

    /// The gateway's settings, with its host key under `state_dir/gateway`.
    pub fn settings(&self, state_dir: &Path) -> ssp_gateway::Settings {
        ssp_gateway::Settings {
            host_key_path: state_dir.join("gateway").join("ssh_host_ed25519_key"),
            socket_dir: state_dir.join("gateway").join("sockets"),
            max_auth_attempts: self.max_auth_attempts,
            auth_rejection_time: Duration::from_millis(self.auth_rejection_ms),
            pre_auth_timeout: Duration::from_secs(self.pre_auth_timeout_secs),
            max_source_penalty: Duration::from_secs(self.max_source_penalty_secs),
            idle_timeout: (self.idle_timeout_secs > 0).then(|| Duration::from_secs(self.idle_timeout_secs)),
            max_connections_per_user: self.max_connections_per_user,
            max_startups_per_source: self.max_startups_per_source,
            revalidate_interval: Duration::from_secs(2),
            sshd_socket_linger: Duration::from_secs(self.sshd_socket_linger_secs),
            ciphers: self.ciphers().unwrap_or_default(),
        }
    }
}

/// The gateway's view of the store.
#[derive(Debug, Clone)]
pub struct StoreBackend {
    db: Db,
    reconciler: crate::reconcile::handle::ReconcilerHandle,
}

impl StoreBackend {
    /// Over `db`.
    pub fn new(db: Db, reconciler: crate::reconcile::handle::ReconcilerHandle) -> Self {
        Self { db, reconciler }
    }
}

fn backend_error(e: ssp_store::Error) -> BackendError {
    BackendError(e.to_string())
}

impl ssp_gateway::Backend for StoreBackend {
    async fn keys(&self, user: &Name) -> Result<Option<Vec<String>>, BackendError> {
        let user = user.to_string();
        self.db
            .run(move |store| match store.user(&user) {
                Ok(found) if found.disabled => Ok(None),
                Ok(_) => Ok(Some(store.keys(&user)?.into_iter().map(|k| k.public_key).collect())),
                Err(ssp_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            })
            .await
            .map_err(backend_error)
    }

    async fn containers(&self, user: &Name) -> Result<Vec<Target>, BackendError> {
        let user = user.to_string();
        let (rows, mut pins) = self
            .db
            .run(move |store| Ok((store.containers_of(&user)?, store.ssh_host_keys_of(&user)?)))
            .await
            .map_err(backend_error)?;
        Ok(rows
            .into_iter()
            .filter(|row| row.phase != ContainerPhase::Deleting)
            .map(|row| Target {
                ssh_host_key: pins.remove(&row.uid),
                name: row.name.clone(),
                instance: instance::lxd_name(&row),
                running: row.phase == ContainerPhase::Ready && row.desired_state == DesiredState::Running,
                set_up: self.reconciler.account_set_up(&row.uid),
                exec: instance::owner_exec_options(&row),
            })
            .collect())
    }

    async fn session_started(&self, start: SessionStart) -> Result<i64, BackendError> {
        self.db
            .run(move |store| store.gateway_session_start(&start.user, &start.container, &start.kind, &start.source))
            .await
            .map_err(backend_error)
    }

    async fn session_ended(&self, id: i64, end: SessionEnd) -> Result<(), BackendError> {
        self.db
            .run(move |store| store.gateway_session_end(id, end.bytes_in, end.bytes_out, end.exit_code))
            .await
            .map_err(backend_error)
    }
}
