//! GPU shapes of the API: the host's GPUs with holders and telemetry, grants, and usage.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// GPUs asked for, on create (`ContainerCreate.gpus`) or attach: a count, or exact indices.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GpuAsk {
    /// This many, any that are free.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// Exactly these host indices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indices: Option<Vec<u32>>,
    /// How long the grant lasts (`"8h"`, `"30m"`, `"2d"`); until detached unless given.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "for")]
    pub duration: Option<String>,
}

/// The GPUs a container holds after a grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GpuGrant {
    /// Host indices granted by this request.
    pub granted: Vec<u32>,
    /// Host indices the container holds now, in the order it sees them (GPU0, GPU1, …).
    pub holds: Vec<u32>,
    /// Unix seconds when the granted ones are detached, if ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

/// A container's hold on a GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GpuHolder {
    /// The holding container's owner.
    pub owner: String,
    /// The container, when the caller may see it (their own, or an admin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Unix seconds.
    pub granted_at: i64,
    /// Unix seconds when it is detached, if ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

/// A process using a GPU, and where it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GpuProcess {
    /// Host PID.
    pub pid: u32,
    /// GPU memory in bytes.
    pub memory: u64,
    /// `owner/name` of the ssp container it runs in; absent when on the host or elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

/// A host GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Gpu {
    /// Host index (`/dev/nvidiaN`).
    pub index: u32,
    /// `GPU-…`.
    pub uuid: String,
    /// Model name.
    pub model: String,
    /// Memory, e.g. `"24GiB"`.
    pub memory: String,
    /// PCI address, for real cards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci: Option<String>,
    /// No hardware behind it (`[gpu] emulate`).
    pub emulated: bool,
    /// Several containers may hold it.
    pub shared: bool,
    /// Only this user may be given it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved_for: Option<String>,
    /// Who holds it.
    pub holders: Vec<GpuHolder>,
    /// Utilization in percent at the last sample.
    pub utilization: u32,
    /// Memory in use at the last sample, bytes.
    pub memory_used: u64,
    /// Processes at the last sample (other users' are left out for non-admins).
    pub processes: Vec<GpuProcess>,
}

/// `GET /api/v1/gpus`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GpuList {
    /// `nvml`, `emulated` or `none`.
    pub source: String,
    /// Unix seconds of the last telemetry sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampled_at: Option<i64>,
    /// The GPUs, by index.
    pub gpus: Vec<Gpu>,
}

/// `PATCH /api/v1/gpus/{index}` (admin).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GpuUpdate {
    /// Let several containers hold it (true) or one (false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<bool>,
    /// Reserve it for this user; an empty string lifts the reservation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved_for: Option<String>,
}

/// `PUT /api/v1/users/{user}/gpu-allowlist` (admin): which GPUs a user may be given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GpuAllowlist {
    /// Only these host indices; any unless given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indices: Option<Vec<u32>>,
    /// Only these models (exact names, any case); any unless given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
}

/// One container's GPU use now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ContainerGpuUsage {
    /// `owner/name`.
    pub container: String,
    /// Host indices it holds.
    pub gpus: Vec<u32>,
    /// GPU memory its processes use, bytes.
    pub memory_used: u64,
    /// Its GPU processes.
    pub processes: Vec<GpuProcess>,
}

/// One user's GPU use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UserGpuUsage {
    /// The user.
    pub user: String,
    /// GPUs held now.
    pub holding: u32,
    /// GPU-hours held, over all leases ever.
    pub gpu_hours: f64,
    /// GPU memory their processes use now, bytes.
    pub memory_used: u64,
    /// Their GPU processes now.
    pub processes: u32,
}

/// `GET /api/v1/gpus/usage`: per container and per user (admins see everyone, users themselves).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GpuUsage {
    /// By container.
    pub containers: Vec<ContainerGpuUsage>,
    /// By user.
    pub users: Vec<UserGpuUsage>,
}

/// `GET /api/v1/gpus/history`: each GPU's telemetry over the last hour, summed up per bucket
/// (kept in the daemon's memory: it starts empty after a restart).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GpuHistory {
    /// Until when, Unix seconds.
    pub until: i64,
    /// How far back it reaches, seconds.
    pub window_secs: i64,
    /// Each bucket's length, seconds.
    pub bucket_secs: i64,
    /// Per GPU, by index; a GPU without samples in the window is left out.
    pub gpus: Vec<GpuHistorySeries>,
}

/// One GPU's buckets, oldest first; a bucket without samples is left out (a gap, not idle).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GpuHistorySeries {
    /// Host index.
    pub index: u32,
    /// The buckets.
    pub buckets: Vec<GpuHistoryBucket>,
}

/// The samples of one GPU taken in `[start, start + bucket_secs)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GpuHistoryBucket {
    /// Start, Unix seconds.
    pub start: i64,
    /// Mean utilization, percent.
    pub utilization_avg: u32,
    /// Highest utilization sampled, percent.
    pub utilization_max: u32,
    /// Most memory in use in any sample, bytes.
    pub memory_used_max: u64,
}
