//! Wire shapes of the admin's views of the whole system: the journal (`GET /api/v1/audit`)
//! and the health of what ssp depends on (`GET /api/v1/health`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One journal entry: who did what to which object (API actions, sign-ins and their
/// failures, sign-outs, invitations, the reconciler's work).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// Seconds since the epoch.
    pub at: i64,
    /// The user who asked; absent for the reconciler and for unauthenticated requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// `session.sign_in`, `user.create`, `container.delete`, …
    pub action: String,
    /// The object, e.g. `alice` or `alice/dev`.
    pub object: String,
    /// Free text (for a failed sign-in, its source address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// `GET /api/v1/health` (admin). Each part says on its own whether it could be read: a
/// dependency that fails is reported here, and the request still answers 200.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// The LXD daemon.
    pub lxd: LxdHealth,
    /// The storage pool containers' root disks live on.
    pub pool: PoolHealth,
    /// The host's memory.
    pub memory: MemoryHealth,
    /// The host's GPUs.
    pub gpus: GpusHealth,
    /// The reconciler.
    pub reconciler: ReconcilerHealth,
}

/// Whether LXD answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LxdHealth {
    /// It answered within 3 seconds.
    pub reachable: bool,
    /// e.g. `lxd 5.0.2`, when reachable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Why not, when not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How full the storage pool is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PoolHealth {
    /// The pool's name (`[lxd] pool`).
    pub name: String,
    /// Bytes in use, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used: Option<u64>,
    /// Bytes in all, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// Why it could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The host's memory (`/proc/meminfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MemoryHealth {
    /// Bytes in all (`MemTotal`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// Bytes available for new work (`MemAvailable`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available: Option<u64>,
    /// Why it could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The host's GPUs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GpusHealth {
    /// `nvml`, `emulated` or `none`.
    pub source: String,
    /// GPUs in the inventory.
    pub count: u32,
    /// GPUs of the inventory that the last telemetry sample did not report.
    pub unhealthy: u32,
    /// Seconds since the epoch of the last sample, if one was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampled_at: Option<i64>,
    /// Containers whose last GPU probe inside failed.
    pub failed_probes: u32,
}

/// Where the reconciler stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReconcilerHealth {
    /// Containers whose last step failed or that need a person (see each container's
    /// `problem`).
    pub problems: u32,
}
