//! Real NVIDIA GPUs through NVML, loaded at run time.
//!
//! `Nvml::open` fails cleanly where `libnvidia-ml.so.1` is missing (no driver), and the
//! daemon then runs with no GPUs, or with the emulated inventory when asked. Processes are
//! compute and graphics processes together, by host PID.

use crate::{normalize_pci, Error, GpuInfo, GpuProcess, GpuSample, GpuSource, Result};

/// The NVML library, initialised.
pub struct Nvml {
    nvml: nvml_wrapper::Nvml,
}

impl std::fmt::Debug for Nvml {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Nvml")
    }
}

fn nvml_error(what: &str) -> impl Fn(nvml_wrapper::error::NvmlError) -> Error + '_ {
    move |e| Error::Nvml(format!("{what}: {e}"))
}

impl Nvml {
    /// Loads and initialises NVML.
    pub fn open() -> Result<Self> {
        Ok(Self { nvml: nvml_wrapper::Nvml::init().map_err(nvml_error("loading libnvidia-ml.so.1"))? })
    }

    /// The driver's version (`550.54.14`), which the container's userspace must match.
    pub fn driver_version(&self) -> Result<String> {
        self.nvml.sys_driver_version().map_err(nvml_error("reading the driver version"))
    }
}

impl GpuSource for Nvml {
    fn inventory(&self) -> Result<Vec<GpuInfo>> {
        let count = self.nvml.device_count().map_err(nvml_error("counting GPUs"))?;
        let mut gpus = Vec::new();
        for i in 0..count {
            let device = self.nvml.device_by_index(i).map_err(nvml_error("opening a GPU"))?;
            // The minor number names /dev/nvidiaN, which is what containers are given; NVML's
            // own enumeration order can differ from it.
            let index = device.minor_number().map_err(nvml_error("reading a GPU's minor number"))?;
            gpus.push(GpuInfo {
                index,
                uuid: device.uuid().map_err(nvml_error("reading a GPU's UUID"))?,
                model: device.name().map_err(nvml_error("reading a GPU's name"))?,
                memory: device.memory_info().map_err(nvml_error("reading a GPU's memory"))?.total,
                pci: Some(normalize_pci(&device.pci_info().map_err(nvml_error("reading a GPU's PCI id"))?.bus_id)),
                device_node: format!("/dev/nvidia{index}").into(),
                emulated: false,
            });
        }
        gpus.sort_by_key(|g| g.index);
        Ok(gpus)
    }

    fn sample(&self) -> Result<Vec<GpuSample>> {
        let count = self.nvml.device_count().map_err(nvml_error("counting GPUs"))?;
        let mut samples = Vec::new();
        for i in 0..count {
            let device = self.nvml.device_by_index(i).map_err(nvml_error("opening a GPU"))?;
            let index = device.minor_number().map_err(nvml_error("reading a GPU's minor number"))?;
            let utilization = device.utilization_rates().map(|u| u.gpu).unwrap_or(0);
            let memory_used = device.memory_info().map(|m| m.used).unwrap_or(0);
            let mut processes = Vec::new();
            let listed = [device.running_compute_processes(), device.running_graphics_processes()];
            for info in listed.into_iter().flatten().flatten() {
                let memory = match info.used_gpu_memory {
                    nvml_wrapper::enums::device::UsedGpuMemory::Used(bytes) => bytes,
                    nvml_wrapper::enums::device::UsedGpuMemory::Unavailable => 0,
                };
                if !processes.iter().any(|p: &GpuProcess| p.pid == info.pid) {
                    processes.push(GpuProcess { pid: info.pid, memory });
                }
            }
            samples.push(GpuSample { index, utilization, memory_used, processes });
        }
        samples.sort_by_key(|s| s.index);
        Ok(samples)
    }

    fn kind(&self) -> &'static str {
        "nvml"
    }

    fn emulated(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_the_driver_opening_fails_cleanly() {
        // These machines have no NVIDIA driver; where one is, this must find GPUs instead.
        match Nvml::open() {
            Err(e) => assert!(e.to_string().starts_with("NVML: loading"), "{e}"),
            Ok(nvml) => assert!(!nvml.inventory().map(|g| g.is_empty()).unwrap_or(true)),
        }
    }
}
