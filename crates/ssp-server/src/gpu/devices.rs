//! How a container's GPU leases become LXD config and devices, and the digest that says its
//! GPUs were probed since its last start. Pure: no IO, no store, no reconciler — the instance
//! shape (`instance.rs`), the planner and the attachments all read this, and nothing here
//! reads them.

use std::collections::BTreeSet;
use std::path::PathBuf;

use sha2::{Digest, Sha256};
use ssp_lxd::wire::{ConfigMap, DeviceMap};
use ssp_store::GpuRecord;

/// Set by the reconciler once the GPUs of a container passed the health probe after its
/// last start: a digest of its GPU devices and its start time.
pub const TAG_GPU_HEALTH: &str = "user.ssp.gpu-health";

/// Where the host's driver userspace goes inside a container, when ssp provides it.
const DRIVER_PATH: &str = "/usr/local/nvidia";

/// How containers get the NVIDIA userspace that matches the host's driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverUserspace {
    /// Nothing to add (emulated GPUs, or no GPUs).
    None,
    /// LXD's `nvidia.runtime=true` (the host has `libnvidia-container`).
    NvidiaRuntime,
    /// A read-only copy of the host's driver libraries and tools, mounted at
    /// `/usr/local/nvidia`.
    HostLibraries {
        /// The host folder (`state_dir/nvidia-driver/<version>`).
        folder: PathBuf,
    },
}

/// What the reconciler needs to turn leases into devices.
#[derive(Debug, Clone)]
pub struct GpuPlumbing {
    /// Emulated GPUs (`unix-char` devices) rather than real cards (`gpu` devices).
    pub emulated: bool,
    /// Where emulated nodes are.
    pub dev_dir: PathBuf,
    /// Driver userspace for real cards.
    pub driver: DriverUserspace,
}

impl Default for GpuPlumbing {
    fn default() -> Self {
        Self { emulated: true, dev_dir: ssp_gpu::emulated::DEFAULT_DEV_DIR.into(), driver: DriverUserspace::None }
    }
}

/// The config keys and devices that give a container the GPUs it holds (`held`, host
/// indices): inside they are numbered from 0 in host order, so host GPU2,3 become GPU0,1.
pub fn attachments(held: &BTreeSet<u32>, inventory: &[GpuRecord], plumbing: &GpuPlumbing) -> (ConfigMap, DeviceMap) {
    let mut config = ConfigMap::new();
    let mut devices = DeviceMap::new();
    let pairs =
        |list: &[(&str, String)]| -> ConfigMap { list.iter().map(|(k, v)| (k.to_string(), v.clone())).collect() };
    for (host, inside) in ssp_core::gpu::container_numbering(held) {
        let Some(gpu) = inventory.iter().find(|g| g.index == host) else { continue };
        let device = match (&gpu.pci, gpu.emulated) {
            // LXD makes the card's nodes (and nvidiactl, nvidia-uvm) root-only by default;
            // the container's own account must be able to run CUDA, as with emulated nodes.
            (Some(pci), false) => pairs(&[
                ("type", "gpu".into()),
                ("gputype", "physical".into()),
                ("pci", pci.clone()),
                ("mode", "0666".into()),
            ]),
            _ => pairs(&[
                ("type", "unix-char".into()),
                ("source", emulated_node(host, plumbing)),
                ("path", format!("/dev/nvidia{inside}")),
                ("mode", "0666".into()),
            ]),
        };
        devices.insert(format!("gpu{host}"), device);
    }
    if devices.is_empty() || plumbing.emulated {
        return (config, devices);
    }
    match &plumbing.driver {
        DriverUserspace::None => {}
        DriverUserspace::NvidiaRuntime => {
            config.insert("nvidia.runtime".into(), "true".into());
            config.insert("nvidia.driver.capabilities".into(), "compute,utility".into());
        }
        DriverUserspace::HostLibraries { folder } => {
            devices.insert(
                "nvidia-driver".into(),
                pairs(&[
                    ("type", "disk".into()),
                    ("source", folder.display().to_string()),
                    ("path", DRIVER_PATH.into()),
                    ("readonly", "true".into()),
                ]),
            );
        }
    }
    (config, devices)
}

fn emulated_node(host: u32, plumbing: &GpuPlumbing) -> String {
    plumbing.dev_dir.join(format!("nvidia{host}")).display().to_string()
}

/// The digest recorded in [`TAG_GPU_HEALTH`]: the GPU devices and the start they were
/// probed after.
pub fn health_digest(devices: &DeviceMap, last_used_at: &str) -> String {
    let mut hash = Sha256::new();
    for (name, device) in devices.iter().filter(|(name, _)| name.starts_with("gpu") || *name == "nvidia-driver") {
        hash.update(name.as_bytes());
        for (k, v) in device {
            hash.update([0]);
            hash.update(k.as_bytes());
            hash.update([1]);
            hash.update(v.as_bytes());
        }
    }
    hash.update([2]);
    hash.update(last_used_at.as_bytes());
    hash.finalize().iter().take(12).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn record(index: u32, emulated: bool) -> GpuRecord {
        GpuRecord {
            index,
            uuid: format!("GPU-{index}"),
            model: "m".into(),
            memory: 1,
            pci: (!emulated).then(|| format!("0000:0{index}:00.0")),
            emulated,
        }
    }

    #[test]
    fn emulated_leases_become_unix_char_nodes_numbered_from_zero() {
        let inventory: Vec<_> = (0..4).map(|i| record(i, true)).collect();
        let (config, devices) = attachments(&[2, 3].into(), &inventory, &GpuPlumbing::default());
        assert!(config.is_empty());
        assert_eq!(devices.len(), 2);
        assert_eq!(devices["gpu2"]["type"], "unix-char");
        assert_eq!(devices["gpu2"]["source"], "/dev/ssp-gpu/nvidia2");
        assert_eq!(devices["gpu2"]["path"], "/dev/nvidia0");
        assert_eq!(devices["gpu3"]["path"], "/dev/nvidia1");
        // A lease on a GPU the inventory no longer has gives no device.
        assert!(attachments(&[7].into(), &inventory, &GpuPlumbing::default()).1.is_empty());
    }

    #[test]
    fn real_cards_pass_by_pci_with_the_drivers_userspace() {
        let inventory: Vec<_> = (0..2).map(|i| record(i, false)).collect();
        let runtime = GpuPlumbing { emulated: false, driver: DriverUserspace::NvidiaRuntime, ..GpuPlumbing::default() };
        let (config, devices) = attachments(&[1].into(), &inventory, &runtime);
        assert_eq!(devices["gpu1"]["type"], "gpu");
        assert_eq!(devices["gpu1"]["pci"], "0000:01:00.0");
        assert_eq!(devices["gpu1"]["mode"], "0666");
        assert_eq!(config["nvidia.runtime"], "true");
        let copy = GpuPlumbing {
            emulated: false,
            driver: DriverUserspace::HostLibraries { folder: "/x/550".into() },
            ..GpuPlumbing::default()
        };
        let (config, devices) = attachments(&[0].into(), &inventory, &copy);
        assert!(config.is_empty());
        assert_eq!(devices["nvidia-driver"]["readonly"], "true");
        // No GPUs, nothing at all.
        let (config, devices) = attachments(&BTreeSet::new(), &inventory, &runtime);
        assert!(config.is_empty() && devices.is_empty());
    }

    #[test]
    fn the_health_digest_follows_devices_and_starts() {
        let inventory: Vec<_> = (0..4).map(|i| record(i, true)).collect();
        let (_, two) = attachments(&[2, 3].into(), &inventory, &GpuPlumbing::default());
        let (_, one) = attachments(&[2].into(), &inventory, &GpuPlumbing::default());
        let a = health_digest(&two, "2026-01-01T00:00:00Z");
        assert_eq!(a, health_digest(&two, "2026-01-01T00:00:00Z"));
        assert_ne!(a, health_digest(&one, "2026-01-01T00:00:00Z"));
        assert_ne!(a, health_digest(&two, "2026-01-02T00:00:00Z"));
    }
}
