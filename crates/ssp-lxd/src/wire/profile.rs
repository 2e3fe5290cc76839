use serde::{Deserialize, Serialize};

use super::{ConfigMap, DeviceMap};

/// A profile (`GET /1.0/profiles/{name}`); also its creation and update form.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Profile {
    /// Name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Config keys applied to instances.
    #[serde(deserialize_with = "super::nullable")]
    pub config: ConfigMap,
    /// Devices added to instances.
    #[serde(deserialize_with = "super::nullable")]
    pub devices: DeviceMap,
    /// Instances using it (read-only, URLs).
    #[serde(skip_serializing)]
    #[serde(deserialize_with = "super::nullable")]
    pub used_by: Vec<String>,
}
