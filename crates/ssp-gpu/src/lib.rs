//! The host's GPUs behind one narrow trait, [`GpuSource`]: what GPUs there are
//! ([`GpuSource::inventory`]) and how busy each is right now ([`GpuSource::sample`]).
//!
//! Two sources implement it. [`nvml::Nvml`] reads real NVIDIA GPUs through NVML, loaded at run
//! time (`libnvidia-ml.so.1`), so ssp builds and runs on hosts without the driver; its
//! inventory is cross-checked with LXD's `/1.0/resources` ([`merge_with_lxd`]), which is what
//! LXD will pass through. [`emulated::Emulated`] stands in on hosts without GPUs: real
//! character devices `/dev/ssp-gpu/nvidiaN` (major 195, minor N, as the NVIDIA driver makes
//! them) and telemetry scripted through a JSON file. Everything above this crate — the
//! allocator, the policy, the API, the device plumbing, the checks — is the same for both;
//! only the LXD device type differs (`gpu` with `pci=` for real cards, `unix-char` for
//! emulated ones).
//!
//! [`cgroup`] maps a GPU process's PID to the LXD instance it runs in.
//!
//! This crate reads the host; it must not decide policy or talk to the store.

pub mod cgroup;
pub mod emulated;
pub mod nvml;

use std::path::PathBuf;

/// The NVIDIA character devices' major number.
pub const NVIDIA_MAJOR: u32 = 195;

/// What can go wrong reading GPUs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// NVML is missing or failed.
    #[error("NVML: {0}")]
    Nvml(String),
    /// A device node or the telemetry script could not be made or read.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The telemetry script is not valid.
    #[error("emulated GPU telemetry {path}: {message}")]
    Script {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One GPU of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuInfo {
    /// Host index: the minor number of its `/dev/nvidiaN`.
    pub index: u32,
    /// Stable id (`GPU-…`).
    pub uuid: String,
    /// Model name.
    pub model: String,
    /// Memory in bytes.
    pub memory: u64,
    /// PCI address as LXD writes it (`0000:01:00.0`); `None` for emulated GPUs.
    pub pci: Option<String>,
    /// Its device node on the host.
    pub device_node: PathBuf,
    /// No hardware behind it.
    pub emulated: bool,
}

/// A process using a GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuProcess {
    /// Host PID.
    pub pid: u32,
    /// GPU memory it uses, in bytes.
    pub memory: u64,
}

/// How busy one GPU is now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GpuSample {
    /// Host index.
    pub index: u32,
    /// Percent of time a kernel ran over the last sample period.
    pub utilization: u32,
    /// Memory in use, in bytes.
    pub memory_used: u64,
    /// The processes using it.
    pub processes: Vec<GpuProcess>,
}

/// Where GPUs come from.
pub trait GpuSource: Send + Sync {
    /// The GPUs there are, by index.
    fn inventory(&self) -> Result<Vec<GpuInfo>>;
    /// How busy each is now, by index.
    fn sample(&self) -> Result<Vec<GpuSample>>;
    /// Which kind this is (`nvml`, `emulated`).
    fn kind(&self) -> &'static str;
    /// Whether containers get real cards (LXD `gpu` devices) or emulated nodes (`unix-char`).
    fn emulated(&self) -> bool;
}

/// The NVML inventory, keeping only GPUs LXD also sees (by PCI address) when LXD reports any
/// NVIDIA card: a card LXD cannot see cannot be passed into a container. LXD's view fills in
/// what NVML left out.
pub fn merge_with_lxd(mut nvml: Vec<GpuInfo>, lxd: &[ssp_lxd::wire::ResourcesGpuCard]) -> Vec<GpuInfo> {
    let lxd_nvidia: Vec<_> = lxd.iter().filter(|card| card.nvidia.is_some() || card.vendor_id == "10de").collect();
    if lxd_nvidia.is_empty() {
        return nvml;
    }
    nvml.retain(|gpu| {
        let seen = gpu.pci.as_deref().is_some_and(|pci| lxd_nvidia.iter().any(|card| card.pci_address == pci));
        if !seen {
            tracing::warn!(index = gpu.index, pci = ?gpu.pci, "NVML reports a GPU that LXD does not see; left out");
        }
        seen
    });
    for gpu in &mut nvml {
        if gpu.model.is_empty() {
            if let Some(card) = lxd_nvidia.iter().find(|card| Some(card.pci_address.as_str()) == gpu.pci.as_deref()) {
                gpu.model = card.product.clone();
            }
        }
    }
    nvml
}

/// NVML writes PCI bus ids with an 8-digit domain (`00000000:01:00.0`), LXD with 4.
pub fn normalize_pci(bus_id: &str) -> String {
    let lower = bus_id.to_ascii_lowercase();
    match lower.split_once(':') {
        Some((domain, rest)) if domain.len() > 4 => format!("{}:{rest}", &domain[domain.len() - 4..]),
        _ => lower,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn gpu(index: u32, pci: &str) -> GpuInfo {
        GpuInfo {
            index,
            uuid: format!("GPU-{index}"),
            model: String::new(),
            memory: 24 << 30,
            pci: Some(pci.into()),
            device_node: format!("/dev/nvidia{index}").into(),
            emulated: false,
        }
    }

    #[test]
    fn pci_ids_are_normalized_to_lxds_form() {
        assert_eq!(normalize_pci("00000000:01:00.0"), "0000:01:00.0");
        assert_eq!(normalize_pci("0000:C1:00.0"), "0000:c1:00.0");
    }

    #[test]
    fn lxd_decides_what_can_be_passed_through() {
        let cards: Vec<ssp_lxd::wire::ResourcesGpuCard> = serde_json::from_value(serde_json::json!([
            {"driver": "nvidia", "vendor_id": "10de", "product": "AD102 [GeForce RTX 4090]",
             "pci_address": "0000:01:00.0", "nvidia": {"uuid": "GPU-0", "card_name": "nvidia0"}},
            {"driver": "i915", "vendor_id": "8086", "product": "UHD 770", "pci_address": "0000:00:02.0"}
        ]))
        .unwrap();
        let merged = merge_with_lxd(vec![gpu(0, "0000:01:00.0"), gpu(1, "0000:02:00.0")], &cards);
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].model, "AD102 [GeForce RTX 4090]");
        // LXD without NVIDIA cards listed (e.g. no PCI info): NVML alone decides.
        assert_eq!(merge_with_lxd(vec![gpu(0, "0000:01:00.0")], &[]).len(), 1);
    }
}
