//! The daemon's configuration: a TOML file where every key has a sensible default, so an
//! empty (or missing) file gives a working platform with state under `/var/lib/ssp`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use ssp_core::names::{ImageName, Name};
use ssp_core::quota::{Quota, Resources};
use ssp_core::size::ByteSize;

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with its line.
        message: String,
    },
    /// A value is out of range.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the database, TLS material and other state live.
    pub state_dir: PathBuf,
    /// The API's listeners.
    pub api: ApiConfig,
    /// The LXD daemon and where containers go in it.
    pub lxd: LxdConfig,
    /// What a container gets when its creator does not say.
    pub defaults: DefaultsConfig,
    /// The quota a new user gets when the admin does not say.
    pub quota: QuotaConfig,
    /// The reconciler.
    pub reconcile: ReconcileConfig,
    /// GPUs.
    pub gpu: GpuConfig,
    /// `[storage]`: shares' host ids, the storage worker's interval.
    pub storage: StorageConfig,
    /// `[gateway]`: the SSH front door.
    pub gateway: GatewayConfig,
    /// `[portal]`: the web portal's sign-ins and invitations.
    pub portal: PortalConfig,
    /// `[desktop]`: desktops in containers.
    pub desktop: DesktopConfig,
}

/// `[desktop]` in `ssp.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DesktopConfig {
    /// Seconds a desktop session may go without any viewer before ssp ends it (its programs
    /// end). Closing the browser tab does not end a session; this does, eventually.
    pub idle_timeout_secs: u64,
}

impl Default for DesktopConfig {
    fn default() -> Self {
        Self { idle_timeout_secs: 4 * 3600 }
    }
}

impl DesktopConfig {
    /// Checks the values.
    pub fn check(&self) -> Result<(), String> {
        if self.idle_timeout_secs < 10 || self.idle_timeout_secs > 30 * 24 * 3600 {
            return Err("desktop.idle_timeout_secs must be 10 s to 30 days".into());
        }
        Ok(())
    }
}

/// `[portal]` in `ssp.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PortalConfig {
    /// Seconds without a request after which a portal session ends.
    pub session_idle_secs: u64,
    /// Seconds after sign-in after which a portal session ends, however busy.
    pub session_max_secs: u64,
    /// Hours an invitation link stays valid when the admin does not say.
    pub invite_hours: u32,
    /// The address people reach the portal at (`https://gpu1.lab.example:8443`), for the links
    /// ssp makes; empty: the address a request came to, or this host's name and the API's port.
    pub public_url: String,
}

impl Default for PortalConfig {
    fn default() -> Self {
        Self { session_idle_secs: 30 * 60, session_max_secs: 12 * 3600, invite_hours: 72, public_url: String::new() }
    }
}

/// The longest an invitation may be valid: a month.
pub const MAX_INVITE_HOURS: u32 = 720;

impl PortalConfig {
    /// Checks the values.
    pub fn check(&self) -> Result<(), String> {
        if self.session_idle_secs < 60 || self.session_max_secs < self.session_idle_secs {
            return Err("portal.session_idle_secs must be at least 60 and portal.session_max_secs at least that".into());
        }
        if self.invite_hours == 0 || self.invite_hours > MAX_INVITE_HOURS {
            return Err(format!("portal.invite_hours must be 1 to {MAX_INVITE_HOURS}"));
        }
        let url = self.public_url.trim_end_matches('/');
        if !url.is_empty()
            && (!url.starts_with("https://")
                || url["https://".len()..].is_empty()
                || url["https://".len()..].contains(['/', '?', '#', ' ']))
        {
            return Err(format!("portal.public_url = {:?}: use https://HOST[:PORT], nothing after", self.public_url));
        }
        Ok(())
    }
}

/// GPUs: where they come from, how often they are sampled, and idle reclaim.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GpuConfig {
    /// Emulate this many GPUs instead of reading real ones (0: real GPUs through NVML, if
    /// any). `SSP_GPU_EMULATE` in the daemon's environment overrides it.
    pub emulate: u32,
    /// Where emulated device nodes are made (must lie under `/dev`).
    pub emulated_dev_dir: PathBuf,
    /// Emulated telemetry script; `state_dir/gpu-telemetry.json` when absent.
    pub telemetry_script: Option<PathBuf>,
    /// Seconds between telemetry samples (usage, idle tracking, lease expiry).
    pub sample_interval_secs: u64,
    /// Take back GPUs that stay idle (off by default).
    pub idle_reclaim: bool,
    /// Below this utilization (percent) a GPU counts as idle.
    pub idle_threshold_percent: u32,
    /// A GPU idle this long (seconds) is detached.
    pub idle_after_secs: u64,
    /// The holder is warned this long (seconds) before an idle GPU is detached.
    pub idle_warning_secs: u64,
}

impl Default for GpuConfig {
    fn default() -> Self {
        Self {
            emulate: 0,
            emulated_dev_dir: ssp_gpu::emulated::DEFAULT_DEV_DIR.into(),
            telemetry_script: None,
            sample_interval_secs: 10,
            idle_reclaim: false,
            idle_threshold_percent: 5,
            idle_after_secs: 4 * 3600,
            idle_warning_secs: 3600,
        }
    }
}

/// The API's listeners.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// HTTPS address; `none` or empty turns TCP off.
    pub listen: String,
    /// Local unix socket (mode 0600): root on the host is admin over it without a token.
    pub socket: PathBuf,
    /// TLS certificate (PEM); made self-signed on first start when absent.
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM), with `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Extra DNS names or addresses for the self-signed certificate.
    pub tls_names: Vec<String>,
}

/// The LXD daemon and where containers go in it.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LxdConfig {
    /// LXD's unix socket; `$LXD_DIR/unix.socket` or `/var/lib/lxd/unix.socket` when absent.
    pub socket: Option<PathBuf>,
    /// Storage pool for root disks.
    pub pool: String,
    /// Bridge network for containers' `eth0`.
    pub network: String,
}

/// What a container gets when its creator does not say.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DefaultsConfig {
    /// Image alias.
    pub image: String,
    /// CPUs.
    pub cpus: u32,
    /// Memory.
    pub memory: String,
    /// Root disk.
    pub disk: String,
    /// Most processes (and threads) in one container (`limits.processes`): a fork bomb stops
    /// there instead of filling the host's pid space.
    pub max_processes: u32,
}

/// The quota a new user gets when the admin does not say.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaConfig {
    /// Containers.
    pub max_containers: u32,
    /// CPUs.
    pub max_cpus: u32,
    /// Memory.
    pub max_memory: String,
    /// Root disk.
    pub max_disk: String,
    /// GPUs.
    pub max_gpus: u32,
}

/// The reconciler.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReconcileConfig {
    /// Seconds between periodic passes (LXD events and API changes also wake it).
    pub interval_secs: u64,
    /// Containers converged at once.
    pub parallelism: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            state_dir: PathBuf::from("/var/lib/ssp"),
            api: ApiConfig::default(),
            lxd: LxdConfig::default(),
            defaults: DefaultsConfig::default(),
            quota: QuotaConfig::default(),
            reconcile: ReconcileConfig::default(),
            gpu: GpuConfig::default(),
            storage: StorageConfig::default(),
            gateway: GatewayConfig::default(),
            portal: PortalConfig::default(),
            desktop: DesktopConfig::default(),
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8443".into(),
            socket: PathBuf::from("/run/ssp/ssp.sock"),
            tls_cert: None,
            tls_key: None,
            tls_names: Vec::new(),
        }
    }
}

impl Default for LxdConfig {
    fn default() -> Self {
        Self { socket: None, pool: "default".into(), network: "sspbr0".into() }
    }
}

impl Default for DefaultsConfig {
    fn default() -> Self {
        Self { image: "debian-12".into(), cpus: 2, memory: "4GiB".into(), disk: "20GiB".into(), max_processes: 10_000 }
    }
}

impl Default for QuotaConfig {
    fn default() -> Self {
        Self { max_containers: 5, max_cpus: 16, max_memory: "64GiB".into(), max_disk: "500GiB".into(), max_gpus: 0 }
    }
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        Self { interval_secs: 30, parallelism: 8 }
    }
}

/// `[gateway]`: the SSH front door.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Address and port; `none` or empty turns the gateway off.
    pub listen: String,
    /// Authentication attempts per connection.
    pub max_auth_attempts: usize,
    /// Seconds a connection may take to authenticate.
    pub pre_auth_timeout_secs: u64,
    /// Seconds with nothing running and no byte either way after which a connection is
    /// closed (0: never). A running command or forward keeps it open, however quiet.
    pub idle_timeout_secs: u64,
    /// Open connections per user.
    pub max_connections_per_user: usize,
    /// Connections per source address that have not authenticated yet.
    pub max_startups_per_source: usize,
    /// Milliseconds every refused authentication takes.
    pub auth_rejection_ms: u64,
    /// Seconds a source with recent failed logins waits at most before its keys are looked at
    /// (growing 1, 2, 4, … with its failures; less than `pre_auth_timeout_secs`).
    pub max_source_penalty_secs: u64,
    /// Seconds a container keeps the sshd socket that ProxyJump uses after the last jump
    /// (each costs LXD a `forkproxy` process; making one takes about a second).
    pub sshd_socket_linger_secs: u64,
    /// `"auto"`: AES-GCM only where the CPU accelerates it (the cheapest for the gateway,
    /// which decrypts every session), chacha20-poly1305 as well elsewhere; `"all"`: both
    /// everywhere, for clients without AES-GCM.
    pub ciphers: String,
    /// `"auto"`: sessions, commands and sftp enter containers as LXD's exec does (its own
    /// `forkexec`) but started by the gateway, with no websocket between, and forwards are
    /// connections from the container's own loopback, wherever the host's LXD allows it;
    /// LXD's exec websocket elsewhere. `"lxd-exec"`: always LXD's exec websocket.
    pub session_path: String,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:2222".into(),
            max_auth_attempts: 6,
            pre_auth_timeout_secs: 30,
            idle_timeout_secs: 8 * 3600,
            max_connections_per_user: 20,
            max_startups_per_source: 10,
            auth_rejection_ms: 1000,
            max_source_penalty_secs: 10,
            sshd_socket_linger_secs: 600,
            ciphers: "auto".into(),
            session_path: "auto".into(),
        }
    }
}

impl GatewayConfig {
    /// The address, or `None` when the gateway is off.
    pub fn address(&self) -> Result<Option<SocketAddr>, String> {
        match self.listen.trim() {
            "" | "none" => Ok(None),
            text => text
                .parse()
                .map(Some)
                .map_err(|e| format!("gateway.listen = {text:?}: {e} (use ADDRESS:PORT, or \"none\")")),
        }
    }

    fn ciphers(&self) -> Result<ssp_gateway::Ciphers, String> {
        match self.ciphers.as_str() {
            "auto" => Ok(ssp_gateway::Ciphers::Auto),
            "all" => Ok(ssp_gateway::Ciphers::All),
            other => Err(format!("gateway.ciphers = {other:?}: use \"auto\" or \"all\"")),
        }
    }

    fn session_path(&self) -> Result<ssp_gateway::SessionPath, String> {
        match self.session_path.as_str() {
            "auto" => Ok(ssp_gateway::SessionPath::Auto),
            "lxd-exec" => Ok(ssp_gateway::SessionPath::LxdExec),
            other => Err(format!("gateway.session_path = {other:?}: use \"auto\" or \"lxd-exec\"")),
        }
    }

    /// Checks the values.
    pub fn check(&self) -> Result<(), String> {
        self.address()?;
        self.ciphers()?;
        self.session_path()?;
        if self.max_auth_attempts == 0 || self.max_auth_attempts > 20 {
            return Err("gateway.max_auth_attempts must be 1 to 20".into());
        }
        if self.pre_auth_timeout_secs == 0 || self.max_connections_per_user == 0 || self.max_startups_per_source == 0 {
            return Err("gateway.pre_auth_timeout_secs, max_connections_per_user and max_startups_per_source must be at least 1"
                .into());
        }
        if self.max_source_penalty_secs >= self.pre_auth_timeout_secs {
            return Err("gateway.max_source_penalty_secs must be less than gateway.pre_auth_timeout_secs".into());
        }
        Ok(())
    }

    /// The gateway's settings, with its host key under `state_dir/gateway`.
    pub fn settings(&self, state_dir: &Path) -> ssp_gateway::Settings {
        ssp_gateway::Settings {
            host_key_path: state_dir.join("gateway").join("ssh_host_ed25519_key"),
            socket_dir: state_dir.join("gateway").join("sockets"),
            max_auth_attempts: self.max_auth_attempts,
            auth_rejection_time: Duration::from_millis(self.auth_rejection_ms),
            pre_auth_timeout: Duration::from_secs(self.pre_auth_timeout_secs),
            max_source_penalty: Duration::from_secs(self.max_source_penalty_secs),
            idle_timeout: (self.idle_timeout_secs > 0).then(|| Duration::from_secs(self.idle_timeout_secs)),
            max_connections_per_user: self.max_connections_per_user,
            max_startups_per_source: self.max_startups_per_source,
            revalidate_interval: Duration::from_secs(2),
            sshd_socket_linger: Duration::from_secs(self.sshd_socket_linger_secs),
            ciphers: self.ciphers().unwrap_or_default(),
            session_path: self.session_path().unwrap_or_default(),
        }
    }
}

/// `[storage]` in `ssp.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Host ids for users' share identities, `BASE:COUNT`; user N is host uid/gid BASE+N.
    /// Must be delegated to root in /etc/subuid and /etc/subgid (scripts/up does).
    pub share_ids: String,
    /// Seconds between the storage worker's rounds (schedules, mounts, homes).
    pub interval_secs: u64,
}

/// The id block the host set-up delegates (`scripts/lib/host.sh`).
pub const DEFAULT_SHARE_IDS: &str = "1001000000:65535";

impl Default for StorageConfig {
    fn default() -> Self {
        Self { share_ids: DEFAULT_SHARE_IDS.into(), interval_secs: 30 }
    }
}

impl StorageConfig {
    /// `(base, count)` of the share id block.
    pub fn share_ids(&self) -> Result<(u32, u32), String> {
        let (base, count) = self.share_ids.split_once(':').ok_or("share_ids is BASE:COUNT")?;
        let base: u32 = base.trim().parse().map_err(|_| "share_ids: BASE is a number")?;
        let count: u32 = count.trim().parse().map_err(|_| "share_ids: COUNT is a number")?;
        if count == 0 || base.checked_add(count).is_none() || base < 65536 {
            return Err("share_ids: a non-empty block above 65536 that fits in 32 bits".into());
        }
        Ok((base, count))
    }
}

/// The configuration, checked: sizes and names parsed.
#[derive(Debug, Clone)]
pub struct Settings {
    /// As read.
    pub raw: Config,
    /// HTTPS address, if TCP is on.
    pub listen: Option<SocketAddr>,
    /// Default container resources.
    pub default_resources: Resources,
    /// Default container image.
    pub default_image: ImageName,
    /// Default user quota.
    pub default_quota: Quota,
    /// Pool name, checked.
    pub pool: Name,
    /// Network name, checked.
    pub network: Name,
    /// `(base, count)` of the delegated id block for share identities and groups.
    pub share_ids: (u32, u32),
}

impl Settings {
    /// Reads `path`; a missing file means all defaults.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let raw = match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str::<Config>(&text)
                .map_err(|e| ConfigError::Parse { path: path.into(), message: e.to_string() })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Config::default(),
            Err(source) => return Err(ConfigError::Read { path: path.into(), source }),
        };
        Self::check(raw, path)
    }

    /// Checks an in-memory configuration (`origin` names it in errors).
    pub fn check(raw: Config, origin: &Path) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid { path: origin.into(), message };
        let size = |key: &str, value: &str| {
            ByteSize::parse_nonzero(value).map_err(|e| invalid(format!("{key} = {value:?}: {e}")))
        };
        let listen = match raw.api.listen.trim() {
            "" | "none" => None,
            text => Some(
                text.parse::<SocketAddr>()
                    .map_err(|e| invalid(format!("api.listen = {text:?}: {e} (use ADDRESS:PORT, or \"none\")")))?,
            ),
        };
        if raw.defaults.cpus == 0 {
            return Err(invalid("defaults.cpus must be at least 1".into()));
        }
        if raw.defaults.max_processes < 50 {
            // A container's own init, journald, sshd and a shell need a few dozen.
            return Err(invalid("defaults.max_processes must be at least 50".into()));
        }
        if raw.gpu.sample_interval_secs == 0 || raw.gpu.idle_threshold_percent > 100 {
            return Err(invalid(
                "gpu.sample_interval_secs must be at least 1 and gpu.idle_threshold_percent at most 100".into(),
            ));
        }
        if raw.gpu.idle_warning_secs >= raw.gpu.idle_after_secs {
            return Err(invalid("gpu.idle_warning_secs must be less than gpu.idle_after_secs".into()));
        }
        if raw.gpu.emulate > ssp_gpu::emulated::MAX_EMULATED {
            return Err(invalid(format!("gpu.emulate is at most {}", ssp_gpu::emulated::MAX_EMULATED)));
        }
        raw.gateway.check().map_err(invalid)?;
        raw.portal.check().map_err(invalid)?;
        raw.desktop.check().map_err(invalid)?;
        let share_ids = raw.storage.share_ids().map_err(|e| invalid(format!("storage.{e}")))?;
        if raw.storage.interval_secs == 0 {
            return Err(invalid("storage.interval_secs must be at least 1".into()));
        }
        if raw.reconcile.interval_secs == 0 || raw.reconcile.parallelism == 0 {
            return Err(invalid("reconcile.interval_secs and reconcile.parallelism must be at least 1".into()));
        }
        let default_resources = Resources {
            cpus: raw.defaults.cpus,
            memory: size("defaults.memory", &raw.defaults.memory)?,
            disk: size("defaults.disk", &raw.defaults.disk)?,
            gpus: 0,
        };
        let default_quota = Quota {
            max_containers: raw.quota.max_containers,
            max_cpus: raw.quota.max_cpus,
            max_memory: ByteSize::parse(&raw.quota.max_memory)
                .map_err(|e| invalid(format!("quota.max_memory: {e}")))?,
            max_disk: ByteSize::parse(&raw.quota.max_disk).map_err(|e| invalid(format!("quota.max_disk: {e}")))?,
            max_gpus: raw.quota.max_gpus,
        };
        let default_image =
            ImageName::parse(&raw.defaults.image).map_err(|e| invalid(format!("defaults.image: {e}")))?;
        let pool = Name::parse(&raw.lxd.pool).map_err(|e| invalid(format!("lxd.pool: {e}")))?;
        let network = Name::parse(&raw.lxd.network).map_err(|e| invalid(format!("lxd.network: {e}")))?;
        Ok(Self { raw, listen, default_resources, default_image, default_quota, pool, network, share_ids })
    }

    /// The state database.
    pub fn database_path(&self) -> PathBuf {
        self.raw.state_dir.join("ssp.db")
    }

    /// The emulated telemetry script.
    pub fn telemetry_script(&self) -> PathBuf {
        self.raw.gpu.telemetry_script.clone().unwrap_or_else(|| self.raw.state_dir.join("gpu-telemetry.json"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_means_defaults() {
        let settings = Settings::load(Path::new("/nonexistent/ssp.toml")).unwrap();
        assert_eq!(settings.raw.state_dir, PathBuf::from("/var/lib/ssp"));
        assert_eq!(settings.listen, Some("0.0.0.0:8443".parse().unwrap()));
        assert_eq!(settings.default_resources.memory, ByteSize::parse("4GiB").unwrap());
        assert_eq!(settings.pool.as_str(), "default");
    }

    #[test]
    fn values_are_checked_with_the_key_named() {
        let parse = |text: &str| toml::from_str::<Config>(text).map_err(|e| e.to_string());
        assert!(parse("[api]\nlisten = \"127.0.0.1:1\"\n").is_ok());
        assert!(parse("[api]\nlistn = \"x\"\n").unwrap_err().contains("listn"));
        let bad = Settings::check(parse("[defaults]\nmemory = \"lots\"\n").unwrap(), Path::new("t.toml"));
        assert!(bad.unwrap_err().to_string().contains("defaults.memory"));
        let off = Settings::check(parse("[api]\nlisten = \"none\"\n").unwrap(), Path::new("t.toml")).unwrap();
        assert_eq!(off.listen, None);
        let pool = Settings::check(parse("[lxd]\npool = \"../x\"\n").unwrap(), Path::new("t.toml"));
        assert!(pool.unwrap_err().to_string().contains("lxd.pool"));
        // Every section is checked when the file is loaded, not when its part starts.
        let ids = Settings::check(parse("[storage]\nshare_ids = \"1:2\"\n").unwrap(), Path::new("t.toml"));
        assert!(ids.unwrap_err().to_string().contains("storage.share_ids"));
        let gateway = Settings::check(parse("[gateway]\nciphers = \"rc4\"\n").unwrap(), Path::new("t.toml"));
        assert!(gateway.unwrap_err().to_string().contains("gateway.ciphers"));
        for bad in [
            "session_idle_secs = 10",
            "session_idle_secs = 600\nsession_max_secs = 300",
            "invite_hours = 0",
            "invite_hours = 721",
            "public_url = \"http://lab.example\"",
            "public_url = \"https://lab.example/portal\"",
            "public_url = \"https://\"",
        ] {
            let portal = Settings::check(parse(&format!("[portal]\n{bad}\n")).unwrap(), Path::new("t.toml"));
            assert!(portal.unwrap_err().to_string().contains("portal."), "{bad}");
        }
        let good = "[portal]\npublic_url = \"https://lab.example:8443/\"\ninvite_hours = 720\n";
        assert!(Settings::check(parse(good).unwrap(), Path::new("t.toml")).is_ok());
        let path = Settings::check(parse("[gateway]\nsession_path = \"ssh\"\n").unwrap(), Path::new("t.toml"));
        assert!(path.unwrap_err().to_string().contains("gateway.session_path"));
    }
}
