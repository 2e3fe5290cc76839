use serde::{Deserialize, Serialize};

use super::ConfigMap;

/// A network (`GET /1.0/networks/{name}`); also its creation form.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Network {
    /// Name (for a bridge, the host interface name).
    pub name: String,
    /// `bridge`, `macvlan`, … (`type`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Config (`ipv4.address`, `ipv4.nat`, …).
    #[serde(deserialize_with = "super::nullable")]
    pub config: ConfigMap,
    /// Free text.
    pub description: String,
    /// Whether LXD manages it (read-only).
    #[serde(skip_serializing)]
    pub managed: bool,
    /// `Created`, … (read-only).
    #[serde(skip_serializing)]
    pub status: String,
    /// Users (read-only, URLs).
    #[serde(skip_serializing)]
    #[serde(deserialize_with = "super::nullable")]
    pub used_by: Vec<String>,
}
