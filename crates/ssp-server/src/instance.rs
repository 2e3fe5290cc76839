//! What an ssp container looks like in LXD: its instance name, tags, limits, security keys
//! and devices, computed from the stored row alone (the script that sets up its owner's
//! account inside is `guest/account.sh`).
//!
//! Every value written into LXD config comes from a checked name, a parsed size or a
//! constant; no user string reaches LXD unparsed. The instance is unprivileged with an
//! isolated idmap (its own 65536 ids), has no profile (so nothing outside ssp shapes it) and
//! no `raw.*` key.

use sha2::{Digest, Sha256};
use ssp_lxd::wire::{ConfigMap, DeviceMap, Instance, InstancePut, InstancesPost};
use ssp_store::Container;

/// Tag: the container's uid (the row's primary identity).
pub const TAG_ID: &str = "user.ssp.id";
/// Tag: the owner's name.
pub const TAG_OWNER: &str = "user.ssp.owner";
/// Tag: the container's name.
pub const TAG_NAME: &str = "user.ssp.name";
/// Tag: which ssp installation made it (several may share one LXD, as the tests do).
pub const TAG_PLATFORM: &str = "user.ssp.platform";
/// Set by the reconciler: a digest of the account set up inside (user, host name, keys).
pub const TAG_ACCOUNT: &str = "user.ssp.account";

/// Set by the reconciler: a digest of the desktop service installed inside (absent: none).
pub const TAG_DESKTOP: &str = "user.ssp.desktop";

/// The uid and gid of the owner's account inside every container.
pub const OWNER_UID: u32 = 1000;

/// How long a user's action on a container waits while LXD says another operation (often the
/// reconciler's own) holds it, before answering "busy, try again" (409). Long enough for an
/// update or a clean stop, short enough that a person is not left wondering.
pub const BUSY_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// How a command runs inside as the owner's account (uid/gid [`OWNER_UID`] with the
/// account's groups — its share groups among them — in their home, with `HOME`, `USER` and
/// `LOGNAME` set): `ssp exec` and the SSH gateway both use it.
pub fn owner_exec_options(row: &Container) -> ssp_lxd::ExecOptions {
    let home = format!("/home/{}", row.owner);
    let mut options = ssp_lxd::ExecOptions {
        uid: OWNER_UID,
        gid: OWNER_UID,
        cwd: Some(home.clone()),
        init_groups: true,
        ..Default::default()
    };
    options.environment.insert("HOME".into(), home);
    options.environment.insert("USER".into(), row.owner.as_str().into());
    options.environment.insert("LOGNAME".into(), row.owner.as_str().into());
    options
}

/// Config key prefixes ssp owns: any key under them that ssp did not set is drift.
const OWNED_PREFIXES: [&str; 5] = ["limits.", "security.", "raw.", "user.ssp.", "nvidia."];

/// Tags the reconciler records on an instance as it works (not part of the desired shape).
const RECORDED_TAGS: [&str; 3] = [TAG_ACCOUNT, TAG_DESKTOP, crate::gpu::devices::TAG_GPU_HEALTH];

/// Where containers go in LXD.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Storage pool for root disks.
    pub pool: String,
    /// Bridge for `eth0`.
    pub network: String,
    /// This installation's id (`user.ssp.platform`).
    pub platform: String,
    /// How GPU leases become devices.
    pub gpu: crate::gpu::devices::GpuPlumbing,
    /// The SSH gateway's devices in use (a forwarded agent's socket, a jump's sshd socket):
    /// kept; any other `gateway-` device is a leftover and goes.
    pub gateway_devices: ssp_gateway::LiveDevices,
    /// Most processes in one container (`[defaults] max_processes`): a fork bomb stays
    /// inside its limits.
    pub max_processes: u32,
}

/// What shapes a container beyond its own row: config keys and devices that other tables
/// call for (GPU leases, shares, volumes, the gateway's socket), each computed by the
/// module that owns that table, and the owner's SSH keys. The reconciler gathers one per
/// container per pass (`attachments.rs`); everything here must already be checked values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attachments {
    /// Extra config keys; they cannot override the keys ssp always sets.
    pub config: ConfigMap,
    /// Extra devices; they cannot replace `root` or `eth0`.
    pub devices: DeviceMap,
    /// The owner's public keys, one canonical line each.
    pub keys: Vec<String>,
    /// Host indices of the GPUs it holds.
    pub gpus: std::collections::BTreeSet<u32>,
    /// Groups the owner's account is a member of inside, by name, with their inside gid
    /// (the share groups of its read-write shares; names and gids from `ssp_core::idblock`).
    pub groups: std::collections::BTreeMap<String, u32>,
    /// Devices whose files only have the right owners once the `raw.idmap` of `config` is
    /// in effect (shares and homes): a running container gets them at its next start.
    pub needs_idmap: std::collections::BTreeSet<String>,
}

impl Attachments {
    /// These attachments without the devices that need an id map not yet in effect.
    pub fn without_idmapped_devices(&self) -> Attachments {
        let mut reduced = self.clone();
        reduced.devices.retain(|name, _| !self.needs_idmap.contains(name));
        reduced.needs_idmap.clear();
        reduced
    }
}

/// One entry of LXD's id map as it records it (`volatile.idmap.current`).
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct IdmapEntry {
    isuid: bool,
    isgid: bool,
    hostid: u64,
    nsid: u64,
    maprange: u64,
}

/// Whether `instance` runs with every line of `raw` (a `raw.idmap`: `both|uid|gid HOST
/// INSIDE`) in the id map it was started with. LXD applies a changed `raw.idmap` only at
/// the next start, so a running container may still have the old map. A stopped one gets
/// the new map when it starts, and one without a recorded map (privileged) maps nothing:
/// both count as in effect.
pub fn idmap_in_effect(instance: &Instance, raw: &str) -> bool {
    if instance.status != "Running" {
        return true;
    }
    let Some(current) = instance.config.get("volatile.idmap.current") else { return true };
    let Ok(entries) = serde_json::from_str::<Vec<IdmapEntry>>(current) else { return false };
    let maps = |uid: bool, host: u64, inside: u64| {
        entries.iter().any(|e| {
            (if uid { e.isuid } else { e.isgid })
                && (e.hostid..e.hostid.saturating_add(e.maprange)).contains(&host)
                && e.nsid.checked_add(host - e.hostid) == Some(inside)
        })
    };
    raw.lines().filter(|line| !line.trim().is_empty()).all(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(kind), Some(Ok(host)), Some(Ok(inside))) =
            (fields.first(), fields.get(1).map(|h| h.parse::<u64>()), fields.get(2).map(|i| i.parse::<u64>()))
        else {
            return false;
        };
        match *kind {
            "both" => maps(true, host, inside) && maps(false, host, inside),
            "uid" => maps(true, host, inside),
            "gid" => maps(false, host, inside),
            _ => false,
        }
    })
}

/// The LXD instance name: readable (`alice-dev-…`) and unique through the uid's first
/// eight hex digits, within LXD's 63 characters. Identity still comes from the tags.
pub fn lxd_name(row: &Container) -> String {
    let mut readable = format!("{}-{}", row.owner, row.name);
    readable.truncate(54);
    let readable = readable.trim_end_matches('-');
    format!("{readable}-{}", &row.uid[..8.min(row.uid.len())])
}

/// The config keys ssp sets.
pub fn desired_config(row: &Container, layout: &Layout, extra: &Attachments) -> ConfigMap {
    let mut config = extra.config.clone();
    let mut set = |key: &str, value: String| {
        config.insert(key.to_string(), value);
    };
    set("limits.cpu", row.cpus.to_string());
    set("limits.memory", row.memory.to_lxd());
    set("limits.processes", layout.max_processes.to_string());
    set("security.privileged", "false".into());
    set("security.idmap.isolated", "true".into());
    set("security.nesting", "false".into());
    set(TAG_ID, row.uid.clone());
    set(TAG_OWNER, row.owner.as_str().into());
    set(TAG_NAME, row.name.as_str().into());
    set(TAG_PLATFORM, layout.platform.clone());
    config
}

/// The devices ssp sets: the root disk (sized), `eth0` on the bridge, and the attachments'.
pub fn desired_devices(row: &Container, layout: &Layout, extra: &Attachments) -> DeviceMap {
    let device =
        |pairs: &[(&str, String)]| -> ConfigMap { pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect() };
    let mut devices = extra.devices.clone();
    devices.insert(
        "root".to_string(),
        device(&[
            ("type", "disk".into()),
            ("path", "/".into()),
            ("pool", layout.pool.clone()),
            ("size", row.disk.to_lxd()),
        ]),
    );
    devices.insert(
        "eth0".to_string(),
        device(&[("type", "nic".into()), ("name", "eth0".into()), ("network", layout.network.clone())]),
    );
    devices
}

/// The create request: stopped, no profiles, everything local.
pub fn create_request(row: &Container, layout: &Layout, extra: &Attachments) -> InstancesPost {
    let mut request = InstancesPost::container_from_alias(lxd_name(row), row.image.clone());
    request.config = desired_config(row, layout, extra);
    request.devices = desired_devices(row, layout, extra);
    request.profiles = Some(Vec::new());
    request.description = format!("ssp container {}/{}", row.owner, row.name);
    request.start = false;
    request
}

/// Whether `key` is one ssp owns (and so must match exactly).
fn owned(key: &str) -> bool {
    !RECORDED_TAGS.contains(&key) && OWNED_PREFIXES.iter().any(|prefix| key.starts_with(prefix))
}

/// The instance with ssp's keys and devices restored, or `None` when nothing drifted. Keys
/// ssp does not own (`volatile.*`, `image.*`, …) are kept as LXD has them.
pub fn repair(instance: &Instance, row: &Container, layout: &Layout, extra: &Attachments) -> Option<InstancePut> {
    let want_config = desired_config(row, layout, extra);
    let mut want_devices = desired_devices(row, layout, extra);
    // The SSH gateway's devices come and go with its sessions: it registers what it wants and
    // asks the executor to apply it. Those it no longer knows of were left by a daemon that
    // stopped abruptly, and go.
    for (name, device) in layout.gateway_devices.wanted(&instance.name) {
        if name.starts_with(ssp_gateway::DEVICE_PREFIX) && device.get("type").map(String::as_str) == Some("proxy") {
            want_devices.insert(name, device);
        }
    }
    let mut config: ConfigMap =
        instance.config.iter().filter(|(k, _)| !owned(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    config.extend(want_config);
    if config == instance.config && want_devices == instance.devices && instance.profiles.is_empty() {
        return None;
    }
    Some(InstancePut {
        architecture: instance.architecture.clone(),
        config,
        devices: want_devices,
        ephemeral: false,
        profiles: Vec::new(),
        stateful: instance.stateful,
        description: instance.description.clone(),
    })
}

/// The account script's arguments after `$0`: user, host name, then `NAME=GID` for each of
/// `groups` (names from `ssp_core::idblock::group_name`: `share_` and a checked name); see `guest/account.sh`.
pub fn account_args(row: &Container, groups: &std::collections::BTreeMap<String, u32>) -> Vec<String> {
    let mut args = vec![row.owner.to_string(), row.name.to_string()];
    args.extend(groups.iter().map(|(name, gid)| format!("{name}={gid}")));
    args
}

/// What the account set-up writes: its digest goes into `user.ssp.account` so the
/// reconciler runs it again only when something changed (a key added, a script update).
pub fn account_digest(row: &Container, extra: &Attachments) -> String {
    let mut hash = Sha256::new();
    hash.update(crate::guest::Script::Account.text().as_bytes());
    for (i, arg) in account_args(row, &extra.groups).iter().enumerate() {
        if i > 0 {
            hash.update([0]);
        }
        hash.update(arg.as_bytes());
    }
    for key in &extra.keys {
        hash.update([0]);
        hash.update(key.as_bytes());
    }
    // A home (or share) mounted over the account's folders hides what the script wrote
    // there (`.ssh/authorized_keys`): once it is mounted, the account is set up again.
    for name in &extra.needs_idmap {
        if let Some(path) = extra.devices.get(name).and_then(|d| d.get("path")) {
            hash.update([1]);
            hash.update(path.as_bytes());
        }
    }
    hash.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// What [`TAG_DESKTOP`] should say: a digest of the desktop script and whose session it
/// serves when the container offers a desktop, `None` when it does not.
pub fn desktop_digest(row: &Container) -> Option<String> {
    if !row.desktop {
        return None;
    }
    let mut hash = Sha256::new();
    hash.update(crate::guest::Script::Desktop.text().as_bytes());
    hash.update([0]);
    hash.update(row.owner.as_str().as_bytes());
    Some(hash.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect())
}

/// The `authorized_keys` contents for `keys` (canonical lines, no comments).
pub fn authorized_keys(keys: &[String]) -> String {
    let mut text = String::from("# Managed by ssp: changes here are replaced; use `ssp key add`.\n");
    for key in keys {
        text.push_str(key);
        text.push('\n');
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ssp_core::names::Name;
    use ssp_core::size::ByteSize;
    use ssp_store::{ContainerPhase, DesiredState};

    fn row() -> Container {
        Container {
            uid: "0123456789abcdef0123456789abcdef".into(),
            owner: Name::parse("alice").unwrap(),
            name: Name::parse("dev").unwrap(),
            image: "debian-12".into(),
            cpus: 4,
            memory: ByteSize::parse("16GiB").unwrap(),
            disk: ByteSize::parse("50GiB").unwrap(),
            desired_state: DesiredState::Running,
            phase: ContainerPhase::Ready,
            created_at: 0,
            source: ssp_store::ContainerSource::Image,
            desktop: false,
        }
    }

    fn layout() -> Layout {
        Layout {
            pool: "default".into(),
            network: "sspbr0".into(),
            platform: "p1".into(),
            gpu: crate::gpu::devices::GpuPlumbing::default(),
            gateway_devices: ssp_gateway::LiveDevices::default(),
            max_processes: 10_000,
        }
    }

    #[test]
    fn names_are_readable_unique_and_fit() {
        assert_eq!(lxd_name(&row()), "alice-dev-01234567");
        let mut long = row();
        long.owner = Name::parse(&"a".repeat(32)).unwrap();
        long.name = Name::parse(&"b".repeat(63)).unwrap();
        let name = lxd_name(&long);
        assert!(name.len() <= 63 && name.ends_with("-01234567"), "{name}");
    }

    #[test]
    fn the_instance_is_unprivileged_isolated_limited_and_tagged() {
        let request = create_request(&row(), &layout(), &Attachments::default());
        let config = &request.config;
        assert_eq!(config["security.privileged"], "false");
        assert_eq!(config["security.idmap.isolated"], "true");
        assert_eq!(config["limits.cpu"], "4");
        assert_eq!(config["limits.memory"], ByteSize::parse("16GiB").unwrap().to_lxd());
        assert_eq!(config[TAG_OWNER], "alice");
        assert_eq!(config[TAG_PLATFORM], "p1");
        assert!(!config.keys().any(|k| k.starts_with("raw.")));
        assert_eq!(request.devices["root"]["size"], ByteSize::parse("50GiB").unwrap().to_lxd());
        assert_eq!(request.profiles, Some(vec![]));
        assert!(!request.start);
    }

    #[test]
    fn drift_is_repaired_and_foreign_keys_kept() {
        let request = create_request(&row(), &layout(), &Attachments::default());
        let mut instance =
            Instance { config: request.config.clone(), devices: request.devices.clone(), ..Instance::default() };
        instance.config.insert("volatile.eth0.hwaddr".into(), "00:16:3e:00:00:01".into());
        instance.config.insert(TAG_ACCOUNT.into(), "abc".into());
        assert!(repair(&instance, &row(), &layout(), &Attachments::default()).is_none());

        instance.config.insert("security.privileged".into(), "true".into());
        instance.config.insert("raw.lxc".into(), "lxc.apparmor.profile=unconfined".into());
        instance.config.insert("limits.memory".into(), "64GiB".into());
        instance.devices.insert("host".into(), [("type".to_string(), "disk".to_string())].into());
        let fixed = repair(&instance, &row(), &layout(), &Attachments::default()).unwrap();
        assert_eq!(fixed.config["security.privileged"], "false");
        assert!(!fixed.config.contains_key("raw.lxc"));
        assert_eq!(fixed.config["volatile.eth0.hwaddr"], "00:16:3e:00:00:01");
        assert_eq!(fixed.config[TAG_ACCOUNT], "abc");
        assert!(!fixed.devices.contains_key("host"));
    }

    #[test]
    fn the_gateways_registered_proxies_are_applied_and_nothing_else_under_its_prefix() {
        let layout = layout();
        let request = create_request(&row(), &layout, &Attachments::default());
        let mut instance = Instance {
            name: lxd_name(&row()),
            config: request.config.clone(),
            devices: request.devices.clone(),
            ..Instance::default()
        };
        let proxy: ssp_lxd::wire::ConfigMap =
            [("type".to_string(), "proxy".to_string()), ("bind".to_string(), "instance".to_string())].into();
        instance.devices.insert("gateway-agent-0a1b".into(), proxy.clone());
        layout.gateway_devices.insert(&instance.name, "gateway-agent-0a1b", proxy.clone());
        assert!(repair(&instance, &row(), &layout, &Attachments::default()).is_none());
        // Left by a daemon that was killed: the gateway does not know it.
        instance.devices.insert("gateway-sshd".into(), proxy.clone());
        let disk: ssp_lxd::wire::ConfigMap = [("type".to_string(), "disk".to_string())].into();
        instance.devices.insert("gateway-disk".into(), disk.clone());
        layout.gateway_devices.insert(&instance.name, "gateway-disk", disk);
        let fixed = repair(&instance, &row(), &layout, &Attachments::default()).unwrap();
        assert!(fixed.devices.contains_key("gateway-agent-0a1b"));
        assert!(!fixed.devices.contains_key("gateway-sshd"));
        assert!(!fixed.devices.contains_key("gateway-disk"));
        // Registered and not there yet: added, as registered.
        layout.gateway_devices.insert(&instance.name, "gateway-fwd-2222", proxy.clone());
        let fixed = repair(&instance, &row(), &layout, &Attachments::default()).unwrap();
        assert_eq!(fixed.devices["gateway-fwd-2222"], proxy);
    }

    #[test]
    fn the_account_digest_follows_the_keys() {
        let keyed = Attachments { keys: vec!["ssh-ed25519 AAAA".into()], ..Attachments::default() };
        let one = account_digest(&row(), &keyed);
        assert_eq!(one, account_digest(&row(), &keyed.clone()));
        assert_ne!(one, account_digest(&row(), &Attachments::default()));
        let lab: std::collections::BTreeMap<String, u32> = [("share_lab".to_string(), 60_001)].into();
        let grouped = Attachments { groups: lab.clone(), ..keyed.clone() };
        assert_ne!(one, account_digest(&row(), &grouped), "a new share group");
        assert_eq!(account_args(&row(), &lab), ["alice", "dev", "share_lab=60001"]);
        // A home mounted over /home/alice: set up again; the same home still waiting: not.
        let mut homed = keyed.clone();
        homed.devices.insert("ssp-home".into(), [("path".to_string(), "/home/alice".to_string())].into());
        assert_eq!(one, account_digest(&row(), &homed), "a device that needs no id map");
        homed.needs_idmap.insert("ssp-home".into());
        assert_ne!(one, account_digest(&row(), &homed), "the home mounted");
        assert_eq!(one, account_digest(&row(), &homed.without_idmapped_devices()), "the home waiting");
    }

    #[test]
    fn an_idmap_is_in_effect_when_the_running_map_has_every_line() {
        let running = |current: Option<&str>, status: &str| Instance {
            status: status.into(),
            config: current.map(|c| ("volatile.idmap.current".to_string(), c.to_string())).into_iter().collect(),
            ..Instance::default()
        };
        let old = r#"[{"Isuid":true,"Isgid":false,"Hostid":1065536,"Nsid":0,"Maprange":65536},
                      {"Isuid":false,"Isgid":true,"Hostid":1065536,"Nsid":0,"Maprange":65536}]"#;
        let new = r#"[{"Isuid":true,"Isgid":true,"Hostid":1200000,"Nsid":1000,"Maprange":1},
                      {"Isuid":false,"Isgid":true,"Hostid":1300005,"Nsid":2005,"Maprange":1},
                      {"Isuid":true,"Isgid":true,"Hostid":1065536,"Nsid":0,"Maprange":1000}]"#;
        // (map, raw.idmap, in effect)
        let table = [
            (old, "both 1200000 1000", false),
            (new, "both 1200000 1000", true),
            (new, "both 1200000 1000\ngid 1300005 2005", true),
            (new, "both 1200000 1000\ngid 1300006 2006", false),
            (new, "uid 1300005 2005", false),
            (new, "both 1200000 1001", false),
            (new, "nonsense", false),
            ("not json", "both 1200000 1000", false),
        ];
        for (current, raw, want) in table {
            assert_eq!(idmap_in_effect(&running(Some(current), "Running"), raw), want, "{raw} in {current}");
        }
        // A stopped container applies it at its start; one without a recorded map has none.
        assert!(idmap_in_effect(&running(Some(old), "Stopped"), "both 1200000 1000"));
        assert!(idmap_in_effect(&running(None, "Running"), "both 1200000 1000"));
    }
}
