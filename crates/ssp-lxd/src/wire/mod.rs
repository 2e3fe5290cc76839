//! Wire types of the LXD REST API (`/1.0`), as the daemon sends and accepts them.
//!
//! Only data lives here: no IO, no behaviour. Following LXD's own split, a readable object
//! (`Instance`) has a separate writable form (`InstancePut`) and creation form
//! (`InstancesPost`). Unknown fields are ignored and missing ones default, so the same types
//! read LXD 5.0 and newer LXD and Incus daemons.

mod event;
mod image;
mod instance;
mod network;
mod operation;
mod profile;
mod resources;
mod server;
mod storage;

pub use event::*;
pub use image::*;
pub use instance::*;
pub use network::*;
pub use operation::*;
pub use profile::*;
pub use resources::*;
pub use server::*;
pub use storage::*;

use serde::Deserialize;

/// LXD's response envelope: every answer has this shape.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Envelope {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub error_code: u16,
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub metadata: serde_json::Value,
}

/// Reads `null` as the type's default: LXD sends `null` for empty lists and maps.
pub(crate) fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A map of string config keys, as LXD uses for `config` everywhere.
pub type ConfigMap = std::collections::BTreeMap<String, String>;
/// Devices by name, each a map of string keys (`type`, `path`, …).
pub type DeviceMap = std::collections::BTreeMap<String, ConfigMap>;
