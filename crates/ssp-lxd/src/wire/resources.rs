use serde::Deserialize;

/// `GET /1.0/resources`: the host's hardware as LXD sees it. Only the parts ssp reads are typed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Resources {
    /// CPUs.
    pub cpu: ResourcesCpu,
    /// Memory.
    pub memory: ResourcesMemory,
    /// GPUs.
    pub gpu: ResourcesGpu,
}

/// CPU part of [`Resources`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ResourcesCpu {
    /// Architecture name.
    pub architecture: String,
    /// Total hardware threads.
    pub total: u64,
}

/// Memory part of [`Resources`], in bytes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ResourcesMemory {
    /// In use.
    pub used: u64,
    /// Installed.
    pub total: u64,
}

/// GPU part of [`Resources`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ResourcesGpu {
    /// Cards.
    #[serde(deserialize_with = "super::nullable")]
    pub cards: Vec<ResourcesGpuCard>,
    /// Number of cards.
    pub total: u64,
}

/// One GPU in [`ResourcesGpu`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ResourcesGpuCard {
    /// Kernel driver, e.g. `nvidia`.
    pub driver: String,
    /// Driver version.
    pub driver_version: String,
    /// Vendor name.
    pub vendor: String,
    /// PCI vendor id.
    pub vendor_id: String,
    /// Product name.
    pub product: String,
    /// PCI product id.
    pub product_id: String,
    /// PCI address, e.g. `0000:01:00.0`.
    pub pci_address: String,
    /// NUMA node.
    pub numa_node: u64,
    /// NVIDIA details, when the NVIDIA driver is loaded.
    pub nvidia: Option<ResourcesGpuNvidia>,
}

/// NVIDIA part of [`ResourcesGpuCard`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ResourcesGpuNvidia {
    /// CUDA version.
    pub cuda_version: String,
    /// Driver version.
    pub nvrm_version: String,
    /// Brand.
    pub brand: String,
    /// Model.
    pub model: String,
    /// GPU UUID.
    pub uuid: String,
    /// Architecture.
    pub architecture: String,
    /// `/dev/nvidiaN` name.
    pub card_name: String,
    /// `195:N`.
    pub card_device: String,
}
