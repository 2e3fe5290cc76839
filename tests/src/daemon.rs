//! Starting, preparing and removing a private LXD daemon.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ssp_lxd::wire::{ConfigMap, Network, Profile, StoragePool};
use ssp_lxd::Client;

/// Where private daemons live; the prefix marks them as ours for stale cleanup.
const ROOT_PREFIX: &str = "/tmp/ssp-lxd.";
/// Bridge names of private daemons start with this (at most 15 characters in all).
pub const BRIDGE_PREFIX: &str = "sspt";
/// The storage pool's name inside the private daemon.
pub const POOL: &str = "pool";

/// A running private LXD daemon.
#[derive(Debug)]
pub struct PrivateLxd {
    root: PathBuf,
    /// The managed bridge's name (unique on the host).
    pub bridge: String,
    /// The bridge's IPv4 subnet as `10.a.b`, i.e. 10.a.b.0/24 with the host at .1.
    pub subnet: String,
    daemon: Mutex<Option<Child>>,
    imported: tokio::sync::Mutex<()>,
}

impl PrivateLxd {
    /// Starts a daemon and prepares a pool, a bridge and the default profile.
    pub fn start() -> Result<Self> {
        remove_stale();
        let root = make_root()?;
        let bridge = format!("{BRIDGE_PREFIX}{:06x}", random() & 0xff_ffff);
        let subnet = free_subnet()?;
        std::fs::write(root.join("owner.pid"), std::process::id().to_string())?;
        std::fs::write(root.join("bridge"), &bridge)?;
        let log = std::fs::File::create(root.join("lxd.out"))?;
        let daemon = Command::new("lxd")
            // Debug logging: when a suite fails, the tail of the log shows what LXD was doing
            // (each API request, operation and websocket), e.g. during its exec stalls.
            .args(["--group", "root", "--debug", "--logfile"])
            .arg(root.join("lxd.log"))
            .env("LXD_DIR", &root)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting `lxd` (install it with scripts/up or `apt-get install lxd`)")?;
        std::fs::write(root.join("daemon.pid"), daemon.id().to_string())?;
        let lxd =
            Self { root, bridge, subnet, daemon: Mutex::new(Some(daemon)), imported: tokio::sync::Mutex::new(()) };
        if let Err(e) = lxd.prepare() {
            let log = lxd.log();
            lxd.teardown();
            bail!("private LXD failed to start: {e:#}\n--- lxd.log ---\n{log}");
        }
        Ok(lxd)
    }

    /// The daemon's `LXD_DIR`.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// The daemon's unix socket.
    pub fn socket(&self) -> PathBuf {
        self.root.join("unix.socket")
    }

    /// A new client for this daemon (one per test: clients are bound to the runtime that
    /// first uses them).
    pub fn client(&self) -> Client {
        Client::new(self.socket()).expect("building an LXD client never fails for a unix socket")
    }

    /// Runs the `lxc` command line against this daemon (for checks that should not go
    /// through our own client).
    pub fn lxc(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("lxc").args(args).env("LXD_DIR", &self.root).output()?;
        if !out.status.success() {
            bail!("lxc {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The end of the daemon's (debug) log, and of what it printed.
    pub fn log(&self) -> String {
        let mut text = tail(&std::fs::read_to_string(self.root.join("lxd.log")).unwrap_or_default(), 250);
        let out = std::fs::read_to_string(self.root.join("lxd.out")).unwrap_or_default();
        let printed: Vec<&str> = out.lines().filter(|l| !l.contains("level=debug")).collect();
        if !printed.is_empty() {
            text.push_str("\n--- lxd stdout/stderr (without debug lines) ---\n");
            text.push_str(&tail(&printed.join("\n"), 40));
        }
        text
    }

    /// Makes sure image `recipe` (built once and cached under `/var/cache/ssp/images`) is
    /// imported in this daemon under its alias; safe to call from concurrent tests.
    pub async fn ensure_image(&self, recipe: &str) -> Result<String> {
        let _one_at_a_time = self.imported.lock().await;
        let recipe = ssp_image::recipe(recipe)?;
        let options = ssp_image::BuildOptions::default_for_host();
        let installed =
            ssp_image::install::ensure_installed(&self.client(), &recipe, &options, recipe.alias(), &mut |_| {})
                .await?;
        Ok(installed.fingerprint)
    }

    fn prepare(&self) -> Result<()> {
        let status = Command::new("lxd")
            .args(["waitready", "--timeout", "120"])
            .env("LXD_DIR", &self.root)
            .status()
            .context("running `lxd waitready`")?;
        if !status.success() {
            bail!("`lxd waitready` failed ({status})");
        }
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(async {
            let lxd = self.client();
            lxd.create_storage_pool(&StoragePool {
                name: POOL.into(),
                driver: "btrfs".into(),
                config: ConfigMap::from([("size".into(), "12GiB".into())]),
                ..StoragePool::default()
            })
            .await
            .context("creating the btrfs pool")?;
            lxd.create_network(&Network {
                name: self.bridge.clone(),
                kind: "bridge".into(),
                config: ConfigMap::from([
                    ("ipv4.address".into(), format!("{}.1/24", self.subnet)),
                    ("ipv4.nat".into(), "false".into()),
                    ("ipv4.firewall".into(), "false".into()),
                    ("ipv6.address".into(), "none".into()),
                ]),
                description: "ssp test bridge".into(),
                ..Network::default()
            })
            .await
            .context("creating the bridge")?;
            let default = lxd.profile("default").await?;
            let mut profile: Profile = default.value;
            profile.devices.insert(
                "root".into(),
                ConfigMap::from([
                    ("type".into(), "disk".into()),
                    ("path".into(), "/".into()),
                    ("pool".into(), POOL.into()),
                ]),
            );
            profile.devices.insert(
                "eth0".into(),
                ConfigMap::from([
                    ("type".into(), "nic".into()),
                    ("network".into(), self.bridge.clone()),
                    ("name".into(), "eth0".into()),
                ]),
            );
            lxd.update_profile(&profile, default.etag.as_deref()).await.context("setting up the default profile")?;
            anyhow::Ok(())
        })
    }

    /// Removes everything the daemon holds, stops it and deletes its folder. Best effort:
    /// each step runs even when an earlier one failed, and what failed is printed.
    pub fn teardown(&self) {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(r) => r,
            Err(e) => {
                eprintln!("testkit: no runtime for teardown: {e}");
                return;
            }
        };
        let errors = runtime.block_on(empty_daemon(&self.client(), &self.bridge));
        for e in &errors {
            eprintln!("testkit: teardown: {e:#}");
        }
        stop_daemon(&self.root, self.daemon.lock().ok().and_then(|mut d| d.take()));
        remove_root(&self.root, Some(&self.bridge));
    }
}

/// Deletes instances, images, custom volumes, the profile's devices, the bridge and the pool.
async fn empty_daemon(lxd: &Client, bridge: &str) -> Vec<anyhow::Error> {
    let mut errors = Vec::new();
    let wait = Some(Duration::from_secs(120));
    match lxd.instances().await {
        Ok(instances) => {
            for instance in instances {
                // Not only "Running": an instance whose start went wrong may say "Error" and
                // still hold its processes.
                if instance.status != "Stopped" {
                    if let Err(e) = lxd.stop_instance(&instance.name, Duration::from_secs(1), true).await {
                        errors.push(anyhow::anyhow!("stopping {}: {e}", instance.name));
                    }
                }
                let delete = || async { lxd.delete_instance(&instance.name).await?.wait(wait).await };
                let mut result = delete().await;
                if result.is_err() {
                    // A start still in flight when the status was read: stop it again, once.
                    lxd.stop_instance(&instance.name, Duration::from_secs(5), true).await.ok();
                    result = delete().await;
                }
                if let Err(e) = result {
                    errors.push(anyhow::anyhow!("deleting {}: {e}", instance.name));
                }
            }
        }
        Err(e) => errors.push(e.into()),
    }
    if let Ok(images) = lxd.images().await {
        for image in images {
            let result = async { lxd.delete_image(&image.fingerprint).await?.wait(wait).await }.await;
            if let Err(e) = result {
                errors.push(anyhow::anyhow!("deleting image {}: {e}", image.fingerprint));
            }
        }
    }
    if let Ok(volumes) = lxd.storage_volumes(POOL).await {
        for volume in volumes.iter().filter(|v| v.kind == "custom") {
            if let Err(e) = lxd.delete_custom_volume(POOL, &volume.name).await {
                errors.push(anyhow::anyhow!("deleting volume {}: {e}", volume.name));
            }
        }
    }
    if let Ok(profiles) = lxd.profiles().await {
        for mut profile in profiles {
            if profile.name == "default" {
                profile.devices.clear();
                if let Err(e) = lxd.update_profile(&profile, None).await {
                    errors.push(anyhow::anyhow!("clearing the default profile: {e}"));
                }
            } else if let Err(e) = lxd.delete_profile(&profile.name).await {
                errors.push(anyhow::anyhow!("deleting profile {}: {e}", profile.name));
            }
        }
    }
    if let Err(e) = lxd.delete_network(bridge).await {
        if !e.is_not_found() {
            errors.push(anyhow::anyhow!("deleting bridge {bridge}: {e}"));
        }
    }
    if let Err(e) = lxd.delete_storage_pool(POOL).await {
        if !e.is_not_found() {
            errors.push(anyhow::anyhow!("deleting pool {POOL}: {e}"));
        }
    }
    errors
}

/// Asks the daemon to shut down, then makes sure it is gone.
fn stop_daemon(root: &Path, child: Option<Child>) {
    let _ = Command::new("timeout")
        .args(["60", "lxd", "shutdown", "--timeout", "30"])
        .env("LXD_DIR", root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let pid = std::fs::read_to_string(root.join("daemon.pid")).ok().and_then(|p| p.trim().parse::<i32>().ok());
    match child {
        Some(mut child) => {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        None => {
            if let Some(pid) = pid.filter(|p| process_alive(*p)) {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
    }
}

/// Unmounts whatever is still mounted under `root`, detaches loop devices backed by files
/// in it, removes the bridge if the daemon left it, and deletes the folder.
fn remove_root(root: &Path, bridge: Option<&str>) {
    // Processes LXD started for this daemon (dnsmasq, forkproxy, monitors) name its folder.
    let _ = Command::new("pkill").arg("-9").arg("-f").arg(root.as_os_str()).status();
    let prefix = root.to_string_lossy().to_string();
    let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(unescape_mount))
        .filter(|m| m.starts_with(&prefix))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for mount in mounts {
        let _ = Command::new("umount").args(["-l", &mount]).stderr(Stdio::null()).status();
    }
    if let Ok(out) = Command::new("losetup").args(["-n", "-O", "NAME,BACK-FILE", "-l"]).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let mut parts = line.split_whitespace();
            if let (Some(dev), Some(file)) = (parts.next(), parts.next()) {
                if file.starts_with(&prefix) {
                    let _ = Command::new("losetup").args(["-d", dev]).status();
                }
            }
        }
    }
    if let Some(bridge) = bridge {
        if Path::new("/sys/class/net").join(bridge).exists() {
            let _ = Command::new("ip").args(["link", "delete", bridge]).status();
        }
    }
    if let Err(e) = std::fs::remove_dir_all(root) {
        if e.kind() != std::io::ErrorKind::NotFound {
            eprintln!("testkit: removing {}: {e}", root.display());
        }
    }
}

/// Removes private daemons whose test binary died without tearing them down.
pub fn remove_stale() {
    let Ok(entries) = std::fs::read_dir("/tmp") else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.to_string_lossy().starts_with(ROOT_PREFIX) {
            continue;
        }
        let owner = std::fs::read_to_string(path.join("owner.pid")).ok().and_then(|p| p.trim().parse::<i32>().ok());
        if owner.is_some_and(process_alive) {
            continue;
        }
        eprintln!("testkit: removing a private LXD left behind at {}", path.display());
        let bridge = std::fs::read_to_string(path.join("bridge")).ok();
        stop_daemon(&path, None);
        remove_root(&path, bridge.as_deref().map(str::trim));
    }
}

fn process_alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn unescape_mount(field: &str) -> String {
    field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}

fn make_root() -> Result<PathBuf> {
    for _ in 0..16 {
        let root = PathBuf::from(format!("{ROOT_PREFIX}{:08x}", random() as u32));
        match std::fs::create_dir(&root) {
            Ok(()) => {
                // Unprivileged containers' root (a high host uid) must traverse this folder.
                std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o711))?;
                return Ok(root);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).context("creating the private LXD folder"),
        }
    }
    bail!("could not create a unique folder under /tmp")
}

pub(crate) fn random() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher
        .write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// A 10.a.b.0/24 that no route or address on the host overlaps.
fn free_subnet() -> Result<String> {
    let out = Command::new("ip").args(["-4", "-o", "route", "show", "table", "all"]).output()?;
    let mut taken: Vec<(u32, u32)> = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let token = line.split_whitespace().find(|t| t.chars().next().is_some_and(|c| c.is_ascii_digit()));
        if let Some(net) = token.and_then(parse_cidr) {
            taken.push(net);
        }
    }
    let addrs = Command::new("ip").args(["-4", "-o", "addr"]).output()?;
    for line in String::from_utf8_lossy(&addrs.stdout).lines() {
        if let Some(net) = line.split_whitespace().nth(3).and_then(parse_cidr) {
            taken.push(net);
        }
    }
    for _ in 0..256 {
        let r = random();
        let (a, b) = (100 + (r % 150) as u32, ((r >> 8) % 256) as u32);
        let candidate = (10 << 24) | (a << 16) | (b << 8);
        let clash =
            taken.iter().any(|&(net, mask)| (candidate & mask) == (net & mask) || (net & 0xffff_ff00) == candidate);
        if !clash {
            return Ok(format!("10.{a}.{b}"));
        }
    }
    bail!("no free 10.x.y.0/24 subnet found for the test bridge")
}

fn parse_cidr(text: &str) -> Option<(u32, u32)> {
    let (addr, bits) = text.split_once('/').unwrap_or((text, "32"));
    let addr: std::net::Ipv4Addr = addr.parse().ok()?;
    let bits: u32 = bits.parse().ok()?;
    let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits.min(32)) };
    Some((u32::from(addr), mask))
}

/// The last `lines` lines of `text`, saying how many were left out.
pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let skipped = all.len().saturating_sub(lines);
    let kept = all[skipped..].join("\n");
    if skipped == 0 {
        kept
    } else {
        format!("({skipped} earlier lines left out)\n{kept}")
    }
}
