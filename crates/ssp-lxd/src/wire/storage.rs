use serde::{Deserialize, Serialize};

use super::ConfigMap;

/// A storage pool (`GET /1.0/storage-pools/{name}`); also its creation form.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct StoragePool {
    /// Name.
    pub name: String,
    /// `btrfs`, `dir`, `zfs`, `lvm`, …
    pub driver: String,
    /// Driver config (`size`, `source`, …).
    #[serde(deserialize_with = "super::nullable")]
    pub config: ConfigMap,
    /// Free text.
    pub description: String,
    /// `Created`, `Pending`, … (read-only).
    #[serde(skip_serializing)]
    pub status: String,
    /// Users (read-only, URLs).
    #[serde(skip_serializing)]
    #[serde(deserialize_with = "super::nullable")]
    pub used_by: Vec<String>,
}

/// A storage volume (`GET /1.0/storage-pools/{pool}/volumes/{type}/{name}`); also its creation form.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct StorageVolume {
    /// Name.
    pub name: String,
    /// `custom`, `container`, `image`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// `filesystem` or `block`.
    pub content_type: String,
    /// Volume config (`size`, …).
    #[serde(deserialize_with = "super::nullable")]
    pub config: ConfigMap,
    /// Free text.
    pub description: String,
    /// Users (read-only, URLs).
    #[serde(skip_serializing)]
    #[serde(deserialize_with = "super::nullable")]
    pub used_by: Vec<String>,
}
