//! GPUs in the daemon: which source they come from, and the sampling loop that accounts
//! usage per container, ends expired leases and reclaims idle GPUs (decided by the pure
//! [`idle_decisions`]). How leases become LXD devices is [`devices`], which depends on nothing
//! else in the daemon.
//!
//! Leases live in the store and are granted there (the allocator is `ssp_core::gpu`); this
//! module only turns them into devices and watches them. A lease that ends here is ended in
//! the store first, then the reconciler is woken to unplug the device — the same path as a
//! user's detach — and the holder is told inside the container.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ssp_gpu::{GpuSample, GpuSource};
use ssp_store::{GpuRecord, Lease};

use crate::config::Settings;
use crate::db::Db;
use crate::instance;
use crate::reconcile::handle::ReconcilerHandle;

pub mod devices;
pub mod history;

pub use devices::{DriverUserspace, GpuPlumbing};

/// Telemetry as last sampled, and idle tracking per lease.
#[derive(Debug, Default)]
struct Live {
    samples: Vec<GpuSample>,
    sampled_at: Option<i64>,
    idle: IdleTracking,
    history: history::History,
}

/// Idle reclaim's settings.
#[derive(Debug, Clone, Copy)]
pub struct IdlePolicy {
    /// Below this utilization a GPU counts as idle.
    pub threshold_percent: u32,
    /// Idle this long, its lease ends.
    pub after: Duration,
    /// The holder is warned this long before.
    pub warning: Duration,
}

/// Since when each lease's GPU has been idle, and which holders were warned.
#[derive(Debug, Default)]
pub struct IdleTracking {
    idle_since: HashMap<i64, Instant>,
    warned: HashSet<i64>,
}

/// Idle reclaim's decision for one sample: which holders to warn (with the time left) and
/// which leases to end. Pure: the tracking it updates is its only state, `now` is given.
/// A lease is idle from the first sample its GPU is under the threshold; any busy sample
/// starts it over (and a later idle spell warns again).
pub fn idle_decisions(
    policy: &IdlePolicy,
    leases: &[Lease],
    samples: &[GpuSample],
    tracking: &mut IdleTracking,
    now: Instant,
) -> (Vec<(Lease, Duration)>, Vec<Lease>) {
    let warn_at = policy.after.saturating_sub(policy.warning);
    let mut to_warn = Vec::new();
    let mut to_reclaim = Vec::new();
    let active: HashSet<i64> = leases.iter().map(|l| l.id).collect();
    tracking.idle_since.retain(|id, _| active.contains(id));
    tracking.warned.retain(|id| active.contains(id));
    for lease in leases {
        let busy =
            samples.iter().find(|s| s.index == lease.gpu).is_some_and(|s| s.utilization >= policy.threshold_percent);
        if busy {
            tracking.idle_since.insert(lease.id, now);
            tracking.warned.remove(&lease.id);
            continue;
        }
        let since = *tracking.idle_since.entry(lease.id).or_insert(now);
        let idle = now.saturating_duration_since(since);
        if idle >= policy.after {
            to_reclaim.push(lease.clone());
        } else if idle >= warn_at && tracking.warned.insert(lease.id) {
            to_warn.push((lease.clone(), policy.after - idle));
        }
    }
    (to_warn, to_reclaim)
}

/// The daemon's GPUs: their source, the last telemetry, and the loop that watches leases.
#[derive(Clone)]
pub struct Gpus {
    source: Option<Arc<dyn GpuSource>>,
    inventory: Arc<Vec<ssp_gpu::GpuInfo>>,
    plumbing: GpuPlumbing,
    live: Arc<Mutex<Live>>,
    /// Ticks after each sample: the portal's live stream pushes it on.
    sampled: Arc<tokio::sync::watch::Sender<u64>>,
    settings: crate::config::GpuConfig,
}

impl std::fmt::Debug for Gpus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpus").field("source", &self.kind()).field("gpus", &self.inventory.len()).finish()
    }
}

impl Gpus {
    /// No GPUs at all.
    pub fn none(settings: &Settings) -> Self {
        Self {
            source: None,
            inventory: Arc::default(),
            plumbing: GpuPlumbing::default(),
            live: Arc::default(),
            sampled: Arc::new(tokio::sync::watch::channel(0).0),
            settings: settings.raw.gpu.clone(),
        }
    }

    /// Picks the source: the emulated inventory when configured, else NVML when the driver
    /// is there (kept to the cards LXD also sees), else none.
    pub async fn open(settings: &Settings, lxd: &ssp_lxd::Client) -> Result<Self, ssp_gpu::Error> {
        let config = &settings.raw.gpu;
        if config.emulate > 0 {
            let emulated = ssp_gpu::emulated::Emulated::new(
                config.emulate,
                &config.emulated_dev_dir,
                &settings.telemetry_script(),
            )?;
            let inventory = emulated.inventory()?;
            tracing::info!(
                "{} emulated GPUs (nodes under {}, telemetry from {})",
                inventory.len(),
                config.emulated_dev_dir.display(),
                settings.telemetry_script().display()
            );
            return Ok(Self {
                source: Some(Arc::new(emulated)),
                inventory: Arc::new(inventory),
                plumbing: GpuPlumbing {
                    emulated: true,
                    dev_dir: config.emulated_dev_dir.clone(),
                    driver: DriverUserspace::None,
                },
                live: Arc::default(),
                sampled: Arc::new(tokio::sync::watch::channel(0).0),
                settings: config.clone(),
            });
        }
        let nvml = match ssp_gpu::nvml::Nvml::open() {
            Ok(nvml) => nvml,
            Err(e) => {
                tracing::info!("no GPUs: {e}");
                return Ok(Self::none(settings));
            }
        };
        let cards = match lxd.resources().await {
            Ok(resources) => resources.gpu.cards,
            Err(e) => {
                tracing::warn!("LXD resources unreadable ({e}); trusting NVML's GPU list alone");
                Vec::new()
            }
        };
        let inventory = ssp_gpu::merge_with_lxd(nvml.inventory()?, &cards);
        let driver = if which("nvidia-container-cli").is_some() {
            DriverUserspace::NvidiaRuntime
        } else {
            let version = nvml.driver_version()?;
            match copy_driver_userspace(&settings.raw.state_dir, &version) {
                Ok(folder) => DriverUserspace::HostLibraries { folder },
                Err(e) => {
                    tracing::warn!("cannot copy the driver's libraries for containers: {e}");
                    DriverUserspace::None
                }
            }
        };
        tracing::info!("{} NVIDIA GPUs through NVML; driver userspace: {driver:?}", inventory.len());
        Ok(Self {
            source: Some(Arc::new(nvml)),
            inventory: Arc::new(inventory),
            plumbing: GpuPlumbing { emulated: false, dev_dir: config.emulated_dev_dir.clone(), driver },
            live: Arc::default(),
            sampled: Arc::new(tokio::sync::watch::channel(0).0),
            settings: config.clone(),
        })
    }

    /// `nvml`, `emulated` or `none`.
    pub fn kind(&self) -> &'static str {
        self.source.as_ref().map_or("none", |s| s.kind())
    }

    /// How leases become devices.
    pub fn plumbing(&self) -> GpuPlumbing {
        self.plumbing.clone()
    }

    /// The inventory as the store records it.
    pub fn records(&self) -> Vec<GpuRecord> {
        self.inventory
            .iter()
            .map(|g| GpuRecord {
                index: g.index,
                uuid: g.uuid.clone(),
                model: g.model.clone(),
                memory: g.memory,
                pci: g.pci.clone(),
                emulated: g.emulated,
            })
            .collect()
    }

    /// The last samples and when they were taken.
    pub fn samples(&self) -> (Vec<GpuSample>, Option<i64>) {
        let live = self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        (live.samples.clone(), live.sampled_at)
    }

    /// Ticks after each sample (read it with [`Gpus::samples`]).
    pub fn sampled(&self) -> tokio::sync::watch::Receiver<u64> {
        self.sampled.subscribe()
    }

    /// The last hour of telemetry until `now`, per GPU, in buckets of `bucket_secs`.
    pub fn history(&self, now: i64, bucket_secs: i64) -> BTreeMap<u32, Vec<history::Bucket>> {
        self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner).history.buckets(now, bucket_secs)
    }

    /// Samples, ends expired leases and reclaims idle GPUs, every `sample_interval_secs`.
    pub async fn run(self, db: Db, lxd: ssp_lxd::Client, reconciler: ReconcilerHandle) {
        if self.source.is_none() {
            return;
        }
        let mut ticker = tokio::time::interval(Duration::from_secs(self.settings.sample_interval_secs));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Err(e) = self.tick(&db, &lxd, &reconciler).await {
                tracing::warn!("GPU sampling: {e}");
            }
        }
    }

    async fn tick(&self, db: &Db, lxd: &ssp_lxd::Client, reconciler: &ReconcilerHandle) -> Result<(), String> {
        let Some(source) = self.source.clone() else { return Ok(()) };
        let samples = tokio::task::spawn_blocking(move || source.sample())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        {
            let mut live = self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let at = unix_now();
            live.history.record(at, &samples);
            live.samples = samples.clone();
            live.sampled_at = Some(at);
        }
        self.sampled.send_modify(|n| *n = n.wrapping_add(1));
        let now = unix_now();
        let (expired, leases) =
            db.run(move |s| Ok((s.expired_leases(now)?, s.active_leases()?))).await.map_err(|e| e.to_string())?;
        let mut ended = false;
        for lease in expired {
            if self.end(db, &lease, "expired").await? {
                ended = true;
                let text = format!(
                    "Your lease on GPU {} for {}/{} has ended; the GPU was detached (the container keeps running).",
                    lease.gpu, lease.owner, lease.container
                );
                notify(db, lxd, &lease, &text).await;
            }
        }
        if self.settings.idle_reclaim {
            ended |= self.reclaim_idle(db, lxd, &samples, &leases).await?;
        }
        if ended {
            reconciler.wake();
        }
        Ok(())
    }

    /// Ends `lease` in the store with `reason`; `false` if it had ended already.
    async fn end(&self, db: &Db, lease: &Lease, reason: &'static str) -> Result<bool, String> {
        let (uid, gpu) = (lease.container_uid.clone(), lease.gpu);
        db.run(move |s| s.end_lease(None, &uid, gpu, reason)).await.map_err(|e| e.to_string())
    }

    async fn reclaim_idle(
        &self,
        db: &Db,
        lxd: &ssp_lxd::Client,
        samples: &[GpuSample],
        leases: &[Lease],
    ) -> Result<bool, String> {
        let (to_warn, to_reclaim) = {
            let mut live = self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let policy = IdlePolicy {
                threshold_percent: self.settings.idle_threshold_percent,
                after: Duration::from_secs(self.settings.idle_after_secs),
                warning: Duration::from_secs(self.settings.idle_warning_secs),
            };
            idle_decisions(&policy, leases, samples, &mut live.idle, Instant::now())
        };
        for (lease, left) in to_warn {
            let text = format!(
                "GPU {} of {}/{} has been idle; it will be detached in about {} s unless it is used.",
                lease.gpu,
                lease.owner,
                lease.container,
                left.as_secs()
            );
            notify(db, lxd, &lease, &text).await;
            let (object, detail) = (format!("{}/{}", lease.owner, lease.container), format!("gpu {}", lease.gpu));
            db.run(move |s| s.log(None, "gpu.idle-warning", &object, Some(&detail)))
                .await
                .map_err(|e| e.to_string())?;
        }
        let mut ended = false;
        for lease in to_reclaim {
            if self.end(db, &lease, "idle").await? {
                ended = true;
                let text = format!(
                    "GPU {} of {}/{} stayed idle and was detached (the container keeps running); ask for it again when you need it.",
                    lease.gpu, lease.owner, lease.container
                );
                notify(db, lxd, &lease, &text).await;
            }
        }
        Ok(ended)
    }
}

/// Runs the notice script (`guest/notice.sh`) in the lease's container; a stopped or busy container just misses
/// the terminal part (the journal has the event either way).
async fn notify(db: &Db, lxd: &ssp_lxd::Client, lease: &Lease, text: &str) {
    let (owner, name) = (lease.owner.clone(), lease.container.clone());
    let Ok(row) = db.run(move |s| s.container(&owner, &name)).await else { return };
    let name = instance::lxd_name(&row);
    let args = [text];
    let notice = crate::guest::run(lxd, &name, crate::guest::Script::Notice, &args, &[], Duration::from_secs(30));
    match notice.await {
        Ok(output) if output.exit_code == 0 => {}
        Ok(output) => tracing::debug!("notice in {}: exit {}", row.name, output.exit_code),
        Err(e) => tracing::debug!("notice in {}: {e}", row.name),
    }
}

/// Each sampled process with the container it runs in (`owner/name`), by host PID, read
/// from its cgroup under `proc_root`.
pub fn place_processes(
    samples: &[GpuSample],
    containers_by_instance: &BTreeMap<String, String>,
    proc_root: &Path,
) -> BTreeMap<u32, Option<String>> {
    let mut placed = BTreeMap::new();
    for process in samples.iter().flat_map(|s| &s.processes) {
        placed.entry(process.pid).or_insert_with(|| {
            ssp_gpu::cgroup::instance_of_pid(proc_root, process.pid)
                .and_then(|instance| containers_by_instance.get(&instance).cloned())
        });
    }
    placed
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|dir| Path::new(dir).join(program)).find(|p| p.is_file())
}

/// Driver files a CUDA program and `nvidia-smi` need (by library name prefix).
const DRIVER_LIBRARIES: [&str; 10] = [
    "libnvidia-ml.so",
    "libcuda.so",
    "libcudadebugger.so",
    "libnvidia-ptxjitcompiler.so",
    "libnvidia-nvvm.so",
    "libnvidia-gpucomp.so",
    "libnvidia-allocator.so",
    "libnvidia-cfg.so",
    "libnvidia-opencl.so",
    "libnvidia-pkcs11.so",
];

/// The driver libraries in `ldconfig -p` output, as (soname, path), for this machine's
/// architecture only.
fn driver_files(listing: &str) -> Vec<(String, String)> {
    let mut files = Vec::new();
    for line in listing.lines() {
        let Some((name, path)) = line.trim().split_once(" => ") else { continue };
        if !line.contains("x86-64") && !line.contains("AArch64") {
            continue;
        }
        let soname = name.split_whitespace().next().unwrap_or_default();
        let plain = soname.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if plain && DRIVER_LIBRARIES.iter().any(|prefix| soname.starts_with(prefix)) {
            files.push((soname.to_string(), path.trim().to_string()));
        }
    }
    files
}

/// Copies the host driver's userspace (the libraries above as `ldconfig -p` finds them,
/// and `nvidia-smi`) into `state_dir/nvidia-driver/<version>`, once per driver version:
/// containers mount it read-only, so their libraries always match the host's kernel module.
fn copy_driver_userspace(state_dir: &Path, version: &str) -> Result<PathBuf, String> {
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-') {
        return Err(format!("driver version {version:?} is not a plain version"));
    }
    let folder = state_dir.join("nvidia-driver").join(version);
    if folder.join(".complete").exists() {
        return Ok(folder);
    }
    let listing = std::process::Command::new("ldconfig").arg("-p").output().map_err(|e| format!("ldconfig -p: {e}"))?;
    let lib = folder.join("lib");
    let bin = folder.join("bin");
    std::fs::create_dir_all(&lib).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&bin).map_err(|e| e.to_string())?;
    let mut copied = 0;
    for (soname, path) in driver_files(&String::from_utf8_lossy(&listing.stdout)) {
        let target = lib.join(&soname);
        if !target.exists() {
            std::fs::copy(&path, &target).map_err(|e| format!("copying {path}: {e}"))?;
            copied += 1;
        }
    }
    if let Some(smi) = which("nvidia-smi") {
        std::fs::copy(&smi, bin.join("nvidia-smi")).map_err(|e| format!("copying {}: {e}", smi.display()))?;
    }
    if copied == 0 {
        return Err("ldconfig lists no NVIDIA driver libraries".into());
    }
    std::fs::write(folder.join(".complete"), version).map_err(|e| e.to_string())?;
    Ok(folder)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn driver_libraries_are_picked_from_ldconfig() {
        let listing = "\t1234 libs found in cache `/etc/ld.so.cache'
\tlibnvidia-ml.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libnvidia-ml.so.1
\tlibcuda.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libcuda.so.1
\tlibcuda.so.1 (libc6) => /lib/i386-linux-gnu/libcuda.so.1
\tlibc.so.6 (libc6,x86-64) => /lib/x86_64-linux-gnu/libc.so.6
";
        let files = driver_files(listing);
        assert_eq!(
            files,
            vec![
                ("libnvidia-ml.so.1".to_string(), "/lib/x86_64-linux-gnu/libnvidia-ml.so.1".to_string()),
                ("libcuda.so.1".to_string(), "/lib/x86_64-linux-gnu/libcuda.so.1".to_string()),
            ]
        );
    }

    fn lease(id: i64, gpu: u32) -> Lease {
        Lease {
            id,
            gpu,
            container_uid: format!("c{id}"),
            owner: "alice".into(),
            container: "dev".into(),
            granted_at: 0,
            expires_at: None,
        }
    }

    fn sample(index: u32, utilization: u32) -> GpuSample {
        GpuSample { index, utilization, memory_used: 0, processes: Vec::new() }
    }

    #[test]
    fn idle_reclaim_warns_then_ends_only_idle_leases() {
        let policy =
            IdlePolicy { threshold_percent: 10, after: Duration::from_secs(100), warning: Duration::from_secs(30) };
        let leases = [lease(1, 0), lease(2, 1)];
        let mut tracking = IdleTracking::default();
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        let ids = |list: &[Lease]| list.iter().map(|l| l.id).collect::<Vec<_>>();
        // (seconds, GPU0 utilization, GPU1 utilization, warned ids, reclaimed ids)
        type Row = (u64, u32, u32, &'static [i64], &'static [i64]);
        let table: &[Row] = &[
            (0, 0, 50, &[], &[]),    // GPU0 idle from now; GPU1 busy
            (60, 0, 50, &[], &[]),   // 60 s idle: not yet warned (warn at 70)
            (70, 9, 50, &[1], &[]),  // under the threshold still: warned, once
            (80, 0, 50, &[], &[]),   // not warned twice
            (100, 0, 5, &[], &[1]),  // 100 s: reclaimed; GPU1 idle from now
            (150, 0, 10, &[], &[1]), // at the threshold counts as busy: GPU1 starts over
            (221, 0, 0, &[2], &[1]), // GPU1 idle since 150 for 71 s: warned
        ];
        for (secs, gpu0, gpu1, warned, reclaimed) in table {
            let samples = [sample(0, *gpu0), sample(1, *gpu1)];
            let (warn, reclaim) = idle_decisions(&policy, &leases, &samples, &mut tracking, at(*secs));
            let warned_ids: Vec<i64> = warn.iter().map(|(l, _)| l.id).collect();
            assert_eq!(warned_ids, *warned, "warned at {secs} s");
            assert_eq!(ids(&reclaim), *reclaimed, "reclaimed at {secs} s");
        }
        // The warning says how long is left.
        let mut tracking = IdleTracking::default();
        idle_decisions(&policy, &leases[..1], &[sample(0, 0)], &mut tracking, at(0));
        let (warn, _) = idle_decisions(&policy, &leases[..1], &[sample(0, 0)], &mut tracking, at(75));
        assert_eq!(warn[0].1, Duration::from_secs(25));
        // A GPU with no sample is idle; a lease that ended is forgotten.
        let (_, reclaim) = idle_decisions(&policy, &leases[..1], &[], &mut tracking, at(200));
        assert_eq!(ids(&reclaim), vec![1]);
        idle_decisions(&policy, &[], &[], &mut tracking, at(201));
        assert!(tracking.idle_since.is_empty() && tracking.warned.is_empty());
    }
}
