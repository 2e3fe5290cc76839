use serde::Deserialize;

use super::ConfigMap;

/// `GET /1.0`: what the daemon is and what it supports.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Server {
    /// API extensions the daemon implements; check before using newer features.
    #[serde(deserialize_with = "super::nullable")]
    pub api_extensions: Vec<String>,
    /// `stable` for released daemons.
    pub api_status: String,
    /// `1.0`.
    pub api_version: String,
    /// `trusted` over the unix socket.
    pub auth: String,
    /// Server-wide configuration.
    #[serde(deserialize_with = "super::nullable")]
    pub config: ConfigMap,
    /// Facts about the host and daemon.
    pub environment: ServerEnvironment,
}

impl Server {
    /// Whether the daemon implements an API extension.
    pub fn has_extension(&self, name: &str) -> bool {
        self.api_extensions.iter().any(|e| e == name)
    }
}

/// The `environment` part of [`Server`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ServerEnvironment {
    /// Architectures the host can run, e.g. `x86_64`.
    #[serde(deserialize_with = "super::nullable")]
    pub architectures: Vec<String>,
    /// Container drivers, e.g. `lxc`.
    pub driver: String,
    /// Driver versions.
    pub driver_version: String,
    /// Host kernel name.
    pub kernel: String,
    /// Host kernel version.
    pub kernel_version: String,
    /// `lxd` or `incus`.
    pub server: String,
    /// Daemon version, e.g. `5.0.2`.
    pub server_version: String,
    /// Server name (hostname, or the cluster member name).
    pub server_name: String,
    /// Whether the server is part of a cluster.
    pub server_clustered: bool,
    /// Storage drivers available on this host.
    pub storage: String,
}
