use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ConfigMap, DeviceMap};

/// An instance as LXD reports it (`GET /1.0/instances/{name}`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Instance {
    /// Name, unique per project.
    pub name: String,
    /// Free text.
    pub description: String,
    /// `Running`, `Stopped`, `Frozen`, `Error`.
    pub status: String,
    /// Numeric status (103 running, 102 stopped).
    pub status_code: u16,
    /// `container` or `virtual-machine`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Architecture name.
    pub architecture: String,
    /// Local config (not including profiles).
    #[serde(deserialize_with = "super::nullable")]
    pub config: ConfigMap,
    /// Local devices (not including profiles).
    #[serde(deserialize_with = "super::nullable")]
    pub devices: DeviceMap,
    /// Config after applying profiles.
    #[serde(deserialize_with = "super::nullable")]
    pub expanded_config: ConfigMap,
    /// Devices after applying profiles.
    #[serde(deserialize_with = "super::nullable")]
    pub expanded_devices: DeviceMap,
    /// Whether it is deleted when stopped.
    pub ephemeral: bool,
    /// Applied profiles, in order.
    #[serde(deserialize_with = "super::nullable")]
    pub profiles: Vec<String>,
    /// Whether it has stateful state saved.
    pub stateful: bool,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Last start time (RFC 3339).
    pub last_used_at: String,
    /// Cluster member.
    pub location: String,
    /// Project.
    pub project: String,
}

impl Instance {
    /// Whether it is running.
    pub fn is_running(&self) -> bool {
        self.status == "Running"
    }

    /// The writable part, for a read-modify-write update.
    pub fn to_put(&self) -> InstancePut {
        InstancePut {
            architecture: self.architecture.clone(),
            config: self.config.clone(),
            devices: self.devices.clone(),
            ephemeral: self.ephemeral,
            profiles: self.profiles.clone(),
            stateful: self.stateful,
            description: self.description.clone(),
        }
    }
}

/// The writable fields of an instance (`PUT /1.0/instances/{name}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct InstancePut {
    /// Architecture name.
    pub architecture: String,
    /// Local config.
    #[serde(deserialize_with = "super::nullable")]
    pub config: ConfigMap,
    /// Local devices.
    #[serde(deserialize_with = "super::nullable")]
    pub devices: DeviceMap,
    /// Whether it is deleted when stopped.
    pub ephemeral: bool,
    /// Applied profiles.
    #[serde(deserialize_with = "super::nullable")]
    pub profiles: Vec<String>,
    /// Stateful flag.
    pub stateful: bool,
    /// Free text.
    pub description: String,
}

/// Where a new instance comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct InstanceSource {
    /// `image`, `copy`, `none`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// Image alias (for `image`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Image fingerprint (for `image`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Source instance (for `copy`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Copy the instance without its snapshots (for `copy`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_only: Option<bool>,
}

impl InstanceSource {
    /// From a local image alias.
    pub fn image_alias(alias: impl Into<String>) -> Self {
        Self { kind: "image".into(), alias: Some(alias.into()), ..Self::default() }
    }

    /// A copy of the local instance `name`, without its snapshots.
    pub fn copy_of(name: impl Into<String>) -> Self {
        Self { kind: "copy".into(), source: Some(name.into()), instance_only: Some(true), ..Self::default() }
    }

    /// From a local image fingerprint.
    pub fn image_fingerprint(fingerprint: impl Into<String>) -> Self {
        Self { kind: "image".into(), fingerprint: Some(fingerprint.into()), ..Self::default() }
    }
}

/// Creation request (`POST /1.0/instances`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct InstancesPost {
    /// Name of the new instance.
    pub name: String,
    /// `container` or `virtual-machine`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Where it comes from.
    pub source: InstanceSource,
    /// Local config.
    #[serde(deserialize_with = "super::nullable")]
    pub config: ConfigMap,
    /// Local devices.
    #[serde(deserialize_with = "super::nullable")]
    pub devices: DeviceMap,
    /// Profiles to apply; `None` means LXD's `default` profile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profiles: Option<Vec<String>>,
    /// Delete when stopped.
    pub ephemeral: bool,
    /// Free text.
    pub description: String,
    /// Start it once created.
    pub start: bool,
}

impl InstancesPost {
    /// A container named `name` from the local image `alias`.
    pub fn container_from_alias(name: impl Into<String>, alias: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind: "container".into(),
            source: InstanceSource::image_alias(alias),
            ..Self::default()
        }
    }
}

/// A state change (`PUT /1.0/instances/{name}/state`).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct InstanceStatePut {
    /// `start`, `stop`, `restart`, `freeze`, `unfreeze`.
    pub action: String,
    /// Seconds to wait for a clean stop before failing (or killing, with `force`).
    pub timeout: i64,
    /// Kill instead of asking nicely.
    pub force: bool,
    /// Save/restore runtime state.
    pub stateful: bool,
}

/// Live state of an instance (`GET /1.0/instances/{name}/state`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct InstanceState {
    /// `Running`, `Stopped`, …
    pub status: String,
    /// Numeric status.
    pub status_code: u16,
    /// PID of init on the host (0 when stopped).
    pub pid: i64,
    /// Number of processes.
    pub processes: i64,
    /// CPU usage.
    pub cpu: InstanceStateCpu,
    /// Memory usage.
    pub memory: InstanceStateMemory,
    /// Network interfaces by name (absent when stopped).
    pub network: Option<BTreeMap<String, InstanceStateNetwork>>,
    /// Disk usage by device.
    pub disk: Option<BTreeMap<String, InstanceStateDisk>>,
}

/// CPU part of [`InstanceState`].
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct InstanceStateCpu {
    /// CPU time used, in nanoseconds.
    pub usage: i64,
}

/// Memory part of [`InstanceState`], in bytes.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct InstanceStateMemory {
    /// Current usage.
    pub usage: i64,
    /// Peak usage.
    pub usage_peak: i64,
    /// Swap usage.
    pub swap_usage: i64,
    /// Peak swap usage.
    pub swap_usage_peak: i64,
}

/// Disk part of [`InstanceState`], in bytes.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct InstanceStateDisk {
    /// Bytes used.
    pub usage: i64,
}

/// One network interface in [`InstanceState`].
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct InstanceStateNetwork {
    /// Addresses on the interface.
    #[serde(deserialize_with = "super::nullable")]
    pub addresses: Vec<InstanceStateAddress>,
    /// Traffic counters.
    pub counters: InstanceStateCounters,
    /// MAC address.
    pub hwaddr: String,
    /// Name of the host side of the veth.
    pub host_name: String,
    /// MTU.
    pub mtu: i64,
    /// `up` or `down`.
    pub state: String,
    /// `broadcast`, `loopback`, …
    #[serde(rename = "type")]
    pub kind: String,
}

/// One address in [`InstanceStateNetwork`].
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct InstanceStateAddress {
    /// `inet` or `inet6`.
    pub family: String,
    /// The address itself.
    pub address: String,
    /// Prefix length.
    pub netmask: String,
    /// `global`, `link`, `local`.
    pub scope: String,
}

/// Counters in [`InstanceStateNetwork`].
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct InstanceStateCounters {
    /// Bytes received.
    pub bytes_received: i64,
    /// Bytes sent.
    pub bytes_sent: i64,
    /// Packets received.
    pub packets_received: i64,
    /// Packets sent.
    pub packets_sent: i64,
}

/// A snapshot as LXD reports it.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct InstanceSnapshot {
    /// Snapshot name (without the `instance/` prefix).
    pub name: String,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Expiry time (RFC 3339), zero time when none.
    pub expires_at: String,
    /// Whether runtime state was saved.
    pub stateful: bool,
    /// Config at the time of the snapshot.
    #[serde(deserialize_with = "super::nullable")]
    pub config: ConfigMap,
    /// Devices at the time of the snapshot.
    #[serde(deserialize_with = "super::nullable")]
    pub devices: DeviceMap,
    /// Size in bytes, when the driver knows.
    pub size: i64,
}

/// Creation request (`POST /1.0/instances/{name}/snapshots`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct InstanceSnapshotsPost {
    /// Snapshot name.
    pub name: String,
    /// Save runtime state too (needs CRIU).
    pub stateful: bool,
}

/// Exec request (`POST /1.0/instances/{name}/exec`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct InstanceExecPost {
    /// argv.
    #[serde(deserialize_with = "super::nullable")]
    pub command: Vec<String>,
    /// Environment variables.
    #[serde(deserialize_with = "super::nullable")]
    pub environment: BTreeMap<String, String>,
    /// Allocate a pty.
    pub interactive: bool,
    /// Always true: we attach websockets.
    #[serde(rename = "wait-for-websocket")]
    pub wait_for_websocket: bool,
    /// Initial pty width.
    pub width: u32,
    /// Initial pty height.
    pub height: u32,
    /// Uid to run as (0 = root).
    pub user: u32,
    /// Gid to run as.
    pub group: u32,
    /// Working directory.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cwd: String,
}
