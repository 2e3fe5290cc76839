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

/// `GET /1.0/storage-pools/{name}/resources`: how full a pool is.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct StoragePoolResources {
    /// Bytes.
    pub space: ResourceUsage,
    /// Inodes (0 where the driver does not count them).
    pub inodes: ResourceUsage,
}

/// Used and total, in the unit of the field that holds it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ResourceUsage {
    /// In use.
    pub used: u64,
    /// All there is (0 where unknown).
    pub total: u64,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn pool_resources_read_lxds_answer() {
        let json = r#"{"space":{"used":1024,"total":4096},"inodes":{"used":5,"total":0}}"#;
        let r: super::StoragePoolResources = serde_json::from_str(json).unwrap();
        assert_eq!((r.space.used, r.space.total, r.inodes.used), (1024, 4096, 5));
        let partial: super::StoragePoolResources = serde_json::from_str(r#"{"space":{"used":7}}"#).unwrap();
        assert_eq!((partial.space.used, partial.space.total), (7, 0));
    }
}
