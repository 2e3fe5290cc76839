//! Wire shapes of storage: snapshots and their schedules, shares, home volumes.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A container snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Snapshot {
    /// Its name within the container.
    pub name: String,
    /// When LXD took it (RFC 3339).
    pub created_at: String,
    /// Never pruned by retention.
    pub protected: bool,
    /// Taken by the schedule.
    pub scheduled: bool,
}

/// `POST /api/v1/containers/{owner}/{name}/snapshots`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SnapshotCreate {
    /// The snapshot's name (`snap-YYYYMMDD-HHMMSS` unless given; `auto-` is the schedule's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Whether retention may prune it; a snapshot a person takes is protected unless `false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected: Option<bool>,
}

/// `PATCH /api/v1/containers/{owner}/{name}/snapshots/{snapshot}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SnapshotUpdate {
    /// Protect it from retention, or not.
    pub protected: bool,
}

/// A container's snapshot schedule (`PUT`/`GET /api/v1/containers/{owner}/{name}/schedule`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SnapshotSchedule {
    /// Seconds between scheduled snapshots (at least 60).
    pub every_secs: u64,
    /// Keep the N newest.
    #[serde(default)]
    pub keep_last: u32,
    /// Keep the newest of each of the N most recent days.
    #[serde(default)]
    pub keep_daily: u32,
    /// Keep the newest of each of the N most recent ISO weeks.
    #[serde(default)]
    pub keep_weekly: u32,
    /// When the schedule last took a snapshot (seconds since the epoch; read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_at: Option<i64>,
}

/// What one scheduler pass did (`POST /api/v1/snapshots/run`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ScheduleReport {
    /// Scheduled snapshots taken.
    pub taken: u32,
    /// Snapshots pruned by retention.
    pub pruned: u32,
    /// Containers whose schedule failed this time (the log says why).
    pub failed: u32,
}

/// A shared host folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Share {
    /// Its name.
    pub name: String,
    /// The host folder (canonical).
    pub host_path: String,
    /// Where it is mounted in containers.
    pub path: String,
    /// Mounted read-only.
    pub read_only: bool,
    /// The users it is shared with; empty means everyone.
    pub users: Vec<String>,
    /// Seconds since the epoch.
    pub created_at: i64,
    /// The share group that owns a read-write share's host folder; absent for read-only
    /// shares (and read-write ones added before ssp gave shares groups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<ShareGroup>,
    /// What adding the share changed on the host folder, one sentence each (only in the
    /// answer to `POST /api/v1/shares`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_changes: Vec<String>,
}

/// A read-write share's group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ShareGroup {
    /// Its name inside containers (`share_NAME`).
    pub name: String,
    /// The host gid that owns the host folder.
    pub gid: u32,
    /// Its gid inside containers.
    pub inside_gid: u32,
}

/// `POST /api/v1/shares` (admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ShareCreate {
    /// Its name.
    pub name: String,
    /// An existing absolute host folder.
    pub host_path: String,
    /// Where to mount it in containers (`/shares/NAME` unless given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Mount read-only.
    pub read_only: bool,
    /// Share with these users only; everyone when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<String>>,
}

/// A user's persistent home volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Home {
    /// Its user.
    pub user: String,
    /// Size (counted against the disk quota).
    pub size: String,
    /// `creating`, `ready` or `deleting`.
    pub phase: String,
    /// Where it is mounted in the user's containers.
    pub path: String,
    /// How much of it is in use (only in `GET /users/{user}/home`, for a ready home, where
    /// the storage pool's driver can tell).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used: Option<String>,
}

/// `PUT /api/v1/users/{user}/home`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HomeCreate {
    /// Size, e.g. `"10GiB"`.
    pub size: String,
}
