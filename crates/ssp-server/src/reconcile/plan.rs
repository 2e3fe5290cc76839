//! The reconciler's decisions, as one pure function: from what ssp wants for a container
//! and what LXD shows of it, the *next* step — and nothing else.
//!
//! [`plan`] does no IO and cannot fail. The executor (`mod.rs`) observes, asks for a step,
//! carries it out, observes again, and stops at a step that is not an action
//! ([`Step::Converged`], [`Step::WaitForLxd`], [`Step::Backoff`], [`Step::Stuck`]). Every
//! branch is a row in the table tests below, so a new case (a state LXD reports, a failure
//! seen on a real host) is added there first.
//!
//! Backoff is decided here too: a step that failed is not tried again before its retry is
//! due, unless what the step depends on changed since (the [`fingerprint`] of the desired
//! state and of LXD's status), which resets it.

use sha2::{Digest, Sha256};
use ssp_lxd::wire::{Instance, InstancePut, InstancesPost};
use ssp_store::{Container, ContainerPhase, ContainerSource, DesiredState};

use crate::instance::{self, Attachments, Layout, TAG_ACCOUNT, TAG_DESKTOP};

/// Where a copy's source stands, as the store says (looked up only for copies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopySource {
    /// Not a copy.
    None,
    /// The LXD instance the copy is made from.
    From(String),
    /// The source container was deleted before the copy was made.
    Gone,
}

/// An earlier failure of this container's work, and when to try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    /// [`fingerprint`] of the inputs the failed step was planned from.
    pub fingerprint: String,
    /// Failures in a row with that fingerprint.
    pub attempts: u32,
    /// What failed, as shown to people.
    pub problem: String,
    /// When it last failed (Unix milliseconds).
    pub failed_at_ms: i64,
    /// When the next try is due (Unix milliseconds).
    pub next_at_ms: i64,
}

/// Everything [`plan`] decides from: plain data, gathered by the executor.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The stored row: what ssp wants.
    pub row: &'a Container,
    /// LXD's instance for it, if LXD has one.
    pub instance: Option<&'a Instance>,
    /// What other tables add (keys, GPUs, shares, homes).
    pub extra: &'a Attachments,
    /// Where containers go in LXD.
    pub layout: &'a Layout,
    /// For copies: where the source stands.
    pub copy_source: &'a CopySource,
    /// The description of an LXD operation running on the instance right now, if any.
    pub busy: Option<&'a str>,
    /// The last failure, if the container's work failed before.
    pub retry: Option<&'a Retry>,
    /// Now (Unix milliseconds).
    pub now_ms: i64,
}

/// The one next thing to do for a container.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// LXD matches what ssp wants: nothing to do, and the owner can use it.
    Converged,
    /// As converged as it can be while it runs, and usable; the text says what waits for
    /// its next start (shares and homes added while it ran).
    Pending(String),
    /// LXD is busy with an operation on the instance (someone's update, stop, snapshot):
    /// a normal state, not a failure; look again when it ends.
    WaitForLxd(String),
    /// The last try failed; the next is due at `until_ms`.
    Backoff {
        /// When the next try is due (Unix milliseconds).
        until_ms: i64,
    },
    /// Nothing ssp can do by itself; the text says what a person should do.
    Stuck(String),
    /// Remove the row (its instance is gone, as asked).
    Forget,
    /// Stop and delete the instance (the row is being deleted).
    Remove,
    /// Make the instance; start it right after when `start`.
    Create {
        /// The LXD request, ssp's whole shape included.
        request: Box<InstancesPost>,
        /// Start it side by side with recording it (a copy starts only after `Repair`).
        start: bool,
    },
    /// A predecessor made the instance and died before recording it: record it.
    Adopt,
    /// The instance vanished outside ssp: record that.
    MarkLost,
    /// Put ssp's config and devices back (drift, a changed lease, share or limit).
    Repair(Box<InstancePut>),
    /// Thaw a frozen instance that should run.
    Unfreeze,
    /// LXD left it in `Error`: stop it for real, then start it.
    Recover,
    /// Start it.
    Start,
    /// Stop it.
    Stop,
    /// Set up the owner's account and keys inside (and pin its sshd key); record `digest`.
    SetUpAccount {
        /// The account digest to record in `user.ssp.account` afterwards.
        digest: String,
    },
    /// Install the desktop service inside and record `Some(digest)` in `user.ssp.desktop`,
    /// or (`None`) remove it and the tag.
    SetUpDesktop {
        /// The desktop digest to record afterwards; `None`: take the desktop out.
        digest: Option<String>,
    },
    /// Probe inside that it sees exactly its GPUs; re-plug them first when `replug`
    /// (an earlier probe failed). Record `digest` in `user.ssp.gpu-health` on success.
    ProbeGpus {
        /// The health digest to record afterwards.
        digest: String,
        /// How many GPUs it must see.
        expected: usize,
        /// Take the GPU devices out and put them back before probing.
        replug: bool,
    },
}

impl Step {
    /// Whether carrying it out touches LXD or the store (and so can fail and back off).
    pub fn is_action(&self) -> bool {
        !matches!(
            self,
            Step::Converged | Step::Pending(_) | Step::WaitForLxd(_) | Step::Backoff { .. } | Step::Stuck(_)
        )
    }

    /// A short name for logs and the journal.
    pub fn name(&self) -> &'static str {
        match self {
            Step::Converged => "converged",
            Step::Pending(_) => "pending",
            Step::WaitForLxd(_) => "wait-for-lxd",
            Step::Backoff { .. } => "backoff",
            Step::Stuck(_) => "stuck",
            Step::Forget => "forget",
            Step::Remove => "remove",
            Step::Create { .. } => "create",
            Step::Adopt => "adopt",
            Step::MarkLost => "mark-lost",
            Step::Repair(_) => "repair",
            Step::Unfreeze => "unfreeze",
            Step::Recover => "recover",
            Step::Start => "start",
            Step::Stop => "stop",
            Step::SetUpAccount { .. } => "account",
            Step::SetUpDesktop { .. } => "desktop",
            Step::ProbeGpus { .. } => "gpu-probe",
        }
    }
}

/// The next step for one container. Pure: the same input always gives the same step.
pub fn plan(input: &Input<'_>) -> Step {
    let step = next(input);
    match input.retry {
        Some(retry)
            if step.is_action() && retry.fingerprint == fingerprint(input) && input.now_ms < retry.next_at_ms =>
        {
            Step::Backoff { until_ms: retry.next_at_ms }
        }
        _ => step,
    }
}

fn next(input: &Input<'_>) -> Step {
    let row = input.row;
    let Some(found) = input.instance else {
        return match row.phase {
            ContainerPhase::Deleting => Step::Forget,
            ContainerPhase::Ready => Step::MarkLost,
            ContainerPhase::Lost => Step::Stuck(
                "its LXD instance vanished outside ssp; delete it (`ssp container delete`) and create it again".into(),
            ),
            ContainerPhase::Creating => create(input),
        };
    };
    if let Some(operation) = input.busy {
        return Step::WaitForLxd(operation.to_string());
    }
    match row.phase {
        ContainerPhase::Deleting => return Step::Remove,
        ContainerPhase::Creating | ContainerPhase::Lost => return Step::Adopt,
        ContainerPhase::Ready => {}
    }
    // A share or home added while it runs: its files are owned by ids the running map
    // lacks (root inside could not even make the owner's `.ssh` in it), so those devices
    // wait for the next start; the id map itself is set now, to be applied then.
    let waiting = input.extra.config.get("raw.idmap").is_some_and(|raw| !instance::idmap_in_effect(found, raw))
        && !input.extra.needs_idmap.is_empty();
    let reduced;
    let extra = if waiting {
        reduced = input.extra.without_idmapped_devices();
        &reduced
    } else {
        input.extra
    };
    if let Some(put) = instance::repair(found, row, input.layout, extra) {
        return Step::Repair(Box::new(put));
    }
    match (row.desired_state, found.status.as_str()) {
        (DesiredState::Running, "Running") => match inside(input, found, extra) {
            Step::Converged if waiting => Step::Pending(pending_text(input.row, input.extra)),
            step => step,
        },
        (DesiredState::Running, "Frozen") => Step::Unfreeze,
        (DesiredState::Running, "Error") => Step::Recover,
        (DesiredState::Running, "Stopped") => Step::Start,
        (DesiredState::Stopped, "Stopped") => Step::Converged,
        (DesiredState::Stopped, "Running" | "Frozen" | "Error") => Step::Stop,
        // Starting, Stopping, Freezing, …: LXD is on its way somewhere; look again then.
        (_, other) => Step::WaitForLxd(format!("its instance is {other}")),
    }
}

fn create(input: &Input<'_>) -> Step {
    let row = input.row;
    let mut request = instance::create_request(row, input.layout, input.extra);
    match (&row.source, input.copy_source) {
        (ContainerSource::Image, _) => {
            Step::Create { request: Box::new(request), start: row.desired_state == DesiredState::Running }
        }
        (ContainerSource::Copy(_), CopySource::From(from)) => {
            request.source = ssp_lxd::wire::InstanceSource::copy_of(from.clone());
            // LXD copies the source's other keys (another owner's `raw.idmap`, say): a copy
            // starts only after `Repair` replaced them with its own.
            Step::Create { request: Box::new(request), start: false }
        }
        (ContainerSource::Copy(_), _) => {
            Step::Stuck("the container it copies was deleted before the copy was made; delete this one".into())
        }
        (ContainerSource::Import, _) => {
            Step::Stuck("its import did not finish; delete it and import the archive again".into())
        }
    }
}

/// A running instance that should run: the owner's account, its desktop, then its GPUs. `extra` is
/// what is attached now (without what waits for the next start).
fn inside(input: &Input<'_>, found: &Instance, extra: &Attachments) -> Step {
    let digest = instance::account_digest(input.row, extra);
    if found.config.get(TAG_ACCOUNT) != Some(&digest) {
        return Step::SetUpAccount { digest };
    }
    let desktop = instance::desktop_digest(input.row);
    if found.config.get(TAG_DESKTOP) != desktop.as_ref() {
        return Step::SetUpDesktop { digest: desktop };
    }
    if input.extra.gpus.is_empty() {
        return Step::Converged;
    }
    let digest = crate::gpu::devices::health_digest(&found.devices, &found.last_used_at);
    if found.config.get(crate::gpu::devices::TAG_GPU_HEALTH) == Some(&digest) {
        return Step::Converged;
    }
    let replug = input.retry.is_some_and(|retry| retry.attempts > 0);
    Step::ProbeGpus { digest, expected: input.extra.gpus.len(), replug }
}

/// What waits for `row`'s next start: the paths of the devices that need its new id map.
fn pending_text(row: &Container, extra: &Attachments) -> String {
    let paths: Vec<&str> =
        extra.needs_idmap.iter().filter_map(|name| extra.devices.get(name)?.get("path").map(String::as_str)).collect();
    format!(
        "{} will be mounted when it starts again (restart it: ssp container restart {})",
        paths.join(" and "),
        row.name
    )
}

/// What a step's success depends on: the desired state (row, attachments) and LXD's status
/// and last start. A failure is retried at once when any of it changes, and after a backoff
/// when none did. Devices and config are left out on purpose: the steps change those
/// themselves (a repair, a re-plug), and that must not count as a new situation.
pub fn fingerprint(input: &Input<'_>) -> String {
    let row = input.row;
    let mut hash = Sha256::new();
    let mut field = |value: &str| {
        hash.update(value.as_bytes());
        hash.update([0]);
    };
    field(&format!("{:?}/{:?}/{:?}", row.phase, row.desired_state, row.source));
    field(&format!("{}/{}/{}/{}", row.image, row.cpus, row.memory.to_lxd(), row.disk.to_lxd()));
    field(&format!("{:?}", input.copy_source));
    for (key, value) in &input.extra.config {
        field(key);
        field(value);
    }
    for (name, device) in &input.extra.devices {
        field(name);
        for (key, value) in device {
            field(key);
            field(value);
        }
    }
    for key in &input.extra.keys {
        field(key);
    }
    for (group, gid) in &input.extra.groups {
        field(&format!("{group}={gid}"));
    }
    field(&format!("{:?}", input.extra.gpus));
    field(if row.desktop { "desktop" } else { "no desktop" });
    match input.instance {
        Some(found) => {
            field(&found.status);
            field(&found.last_used_at);
        }
        None => field("missing"),
    }
    hash.finalize().iter().take(12).map(|b| format!("{b:02x}")).collect()
}

/// How long to wait after the `attempts`-th failure in a row: 2 s doubling to 5 minutes,
/// spread by ±20 % (from `seed`, so containers failing together do not retry together).
pub fn backoff_ms(attempts: u32, seed: u64) -> i64 {
    const FIRST_MS: i64 = 2_000;
    const MOST_MS: i64 = 300_000;
    let doublings = attempts.saturating_sub(1).min(20);
    let base = FIRST_MS.saturating_mul(1_i64 << doublings).min(MOST_MS);
    // seed % 401 ∈ 0..=400 → a factor from 0.8 to 1.2 in steps of 0.1 %.
    let permille = 800 + i64::try_from(seed % 401).unwrap_or(0);
    base * permille / 1000
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeSet;

    use ssp_core::names::Name;
    use ssp_core::size::ByteSize;
    use ssp_lxd::wire::{ConfigMap, DeviceMap};

    use super::*;

    fn layout() -> Layout {
        Layout {
            pool: "pool".into(),
            network: "br".into(),
            platform: "p1".into(),
            gpu: crate::gpu::devices::GpuPlumbing::default(),
            gateway_devices: ssp_gateway::LiveDevices::default(),
            max_processes: 10_000,
        }
    }

    fn row(phase: ContainerPhase, desired: DesiredState) -> Container {
        Container {
            uid: "0123456789abcdef".into(),
            owner: Name::parse("alice").unwrap(),
            name: Name::parse("dev").unwrap(),
            image: "debian-12".into(),
            cpus: 2,
            memory: ByteSize::parse("4GiB").unwrap(),
            disk: ByteSize::parse("10GiB").unwrap(),
            desired_state: desired,
            phase,
            created_at: 0,
            source: ContainerSource::Image,
            desktop: false,
        }
    }

    fn gpus(indices: &[u32]) -> Attachments {
        let inventory: Vec<ssp_store::GpuRecord> = (0..4)
            .map(|index| ssp_store::GpuRecord {
                index,
                uuid: format!("GPU-{index}"),
                model: "m".into(),
                memory: 1,
                pci: None,
                emulated: true,
            })
            .collect();
        let held: BTreeSet<u32> = indices.iter().copied().collect();
        let (config, devices) =
            crate::gpu::devices::attachments(&held, &inventory, &crate::gpu::devices::GpuPlumbing::default());
        Attachments { config, devices, keys: vec!["ssh-ed25519 AAAA".into()], gpus: held, ..Attachments::default() }
    }

    /// The instance exactly as ssp wants it, in `status`, account set up and GPUs probed.
    fn converged_instance(row: &Container, extra: &Attachments, status: &str) -> Instance {
        let layout = layout();
        let mut config: ConfigMap = instance::desired_config(row, &layout, extra);
        config.insert(TAG_ACCOUNT.into(), instance::account_digest(row, extra));
        config.insert("volatile.idmap.base".into(), "1065536".into());
        let devices: DeviceMap = instance::desired_devices(row, &layout, extra);
        let last_used_at = "2026-12-04T10:00:00Z".to_string();
        config.insert(
            crate::gpu::devices::TAG_GPU_HEALTH.into(),
            crate::gpu::devices::health_digest(&devices, &last_used_at),
        );
        Instance {
            name: instance::lxd_name(row),
            status: status.into(),
            config,
            devices,
            last_used_at,
            ..Instance::default()
        }
    }

    struct Case<'a> {
        row: Container,
        instance: Option<Instance>,
        extra: Attachments,
        copy_source: CopySource,
        busy: Option<&'a str>,
        retry: Option<Retry>,
        now_ms: i64,
    }

    impl<'a> Case<'a> {
        fn new(phase: ContainerPhase, desired: DesiredState, status: Option<&str>) -> Self {
            let row = row(phase, desired);
            let extra = gpus(&[]);
            let instance = status.map(|s| converged_instance(&row, &extra, s));
            Self { row, instance, extra, copy_source: CopySource::None, busy: None, retry: None, now_ms: 1_000_000 }
        }

        fn plan(&self) -> Step {
            let layout = layout();
            plan(&self.input(&layout))
        }

        fn input<'b>(&'b self, layout: &'b Layout) -> Input<'b> {
            Input {
                row: &self.row,
                instance: self.instance.as_ref(),
                extra: &self.extra,
                layout,
                copy_source: &self.copy_source,
                busy: self.busy,
                retry: self.retry.as_ref(),
                now_ms: self.now_ms,
            }
        }

        fn fingerprint(&self) -> String {
            let layout = layout();
            fingerprint(&self.input(&layout))
        }

        fn edit(mut self, f: impl FnOnce(&mut Instance)) -> Self {
            f(self.instance.as_mut().unwrap());
            self
        }
    }

    use ContainerPhase::{Creating, Deleting, Lost, Ready};
    use DesiredState::{Running, Stopped};

    #[test]
    fn each_state_has_its_one_next_step() {
        let name = |step: Step| step.name();
        // (phase, desired, LXD status or missing, expected step)
        let table: &[(ContainerPhase, DesiredState, Option<&str>, &str)] = &[
            // Missing from LXD.
            (Creating, Running, None, "create"),
            (Creating, Stopped, None, "create"),
            (Ready, Running, None, "mark-lost"),
            (Ready, Stopped, None, "mark-lost"),
            (Lost, Running, None, "stuck"),
            (Deleting, Running, None, "forget"),
            (Deleting, Stopped, None, "forget"),
            // There.
            (Creating, Running, Some("Stopped"), "adopt"),
            (Lost, Running, Some("Running"), "adopt"),
            (Deleting, Running, Some("Running"), "remove"),
            (Ready, Running, Some("Running"), "converged"),
            (Ready, Running, Some("Stopped"), "start"),
            (Ready, Running, Some("Frozen"), "unfreeze"),
            (Ready, Running, Some("Error"), "recover"),
            (Ready, Running, Some("Starting"), "wait-for-lxd"),
            (Ready, Stopped, Some("Stopped"), "converged"),
            (Ready, Stopped, Some("Running"), "stop"),
            (Ready, Stopped, Some("Frozen"), "stop"),
            (Ready, Stopped, Some("Error"), "stop"),
            (Ready, Stopped, Some("Stopping"), "wait-for-lxd"),
        ];
        for (phase, desired, status, want) in table {
            let got = name(Case::new(*phase, *desired, *status).plan());
            assert_eq!(got, *want, "{phase:?} {desired:?} {status:?}");
        }
    }

    /// alice's home: the device, and the raw id map it needs (host 1200000 is uid 1000).
    fn with_home(mut extra: Attachments) -> Attachments {
        let device: ConfigMap =
            [("type", "disk"), ("source", "/var/lib/ssp/mounts/homes/alice"), ("path", "/home/alice")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        extra.devices.insert("ssp-home".into(), device);
        extra.needs_idmap.insert("ssp-home".into());
        extra.config.insert("raw.idmap".into(), "both 1200000 1000".into());
        extra
    }

    /// The id map LXD records for a running container: isolated from 1065536, with
    /// `mapped` (host 1200000 as 1000 inside) cut in when the map has it.
    fn idmap(mapped: bool) -> String {
        let entry = |uid: bool, host: u64, ns: u64, range: u64| {
            format!(r#"{{"Isuid":{uid},"Isgid":{},"Hostid":{host},"Nsid":{ns},"Maprange":{range}}}"#, !uid)
        };
        let mut entries = Vec::new();
        for uid in [true, false] {
            if mapped {
                entries.push(entry(uid, 1_065_536, 0, 1000));
                entries.push(entry(uid, 1_200_000, 1000, 1));
                entries.push(entry(uid, 1_066_537, 1001, 64_535));
            } else {
                entries.push(entry(uid, 1_065_536, 0, 65_536));
            }
        }
        format!("[{}]", entries.join(","))
    }

    #[test]
    fn a_home_added_while_it_runs_waits_for_the_next_start() {
        // Running with the old map: the id map is set now, the home device waits; the
        // container is usable, and says what its next start brings.
        let mut case = Case::new(Ready, Running, Some("Running"));
        case.extra = with_home(case.extra);
        case.instance.as_mut().unwrap().config.insert("volatile.idmap.current".into(), idmap(false));
        let Step::Repair(put) = case.plan() else { panic!("{:?}", case.plan()) };
        assert_eq!(put.config["raw.idmap"], "both 1200000 1000");
        assert!(!put.devices.contains_key("ssp-home"), "mounted before its owner's ids are mapped");
        let case = case.edit(|found| {
            found.config = put.config.clone();
            found.devices = put.devices.clone();
        });
        let Step::Pending(what) = case.plan() else { panic!("{:?}", case.plan()) };
        assert!(what.contains("/home/alice") && what.contains("ssp container restart dev"), "{what}");
        // Started again with the new map: the home is mounted, then all is converged.
        let case = case.edit(|found| {
            found.config.insert("volatile.idmap.current".into(), idmap(true));
        });
        let Step::Repair(put) = case.plan() else { panic!("{:?}", case.plan()) };
        assert!(put.devices.contains_key("ssp-home"));
        let case = case.edit(|found| found.devices = put.devices.clone());
        // The home hides what the account script wrote in /home/alice: it runs again.
        let Step::SetUpAccount { digest } = case.plan() else { panic!("{:?}", case.plan()) };
        let case = case.edit(|found| {
            found.config.insert(TAG_ACCOUNT.into(), digest);
        });
        assert_eq!(case.plan(), Step::Converged);
        // Stopped, it gets everything at once: its start applies the map.
        let mut stopped = Case::new(Ready, Running, Some("Stopped"));
        stopped.extra = with_home(stopped.extra);
        let Step::Repair(put) = stopped.plan() else { panic!() };
        assert!(put.devices.contains_key("ssp-home"));
    }

    #[test]
    fn create_asks_for_the_whole_shape_and_starts_only_what_should_run() {
        let Step::Create { request, start } = Case::new(Creating, Running, None).plan() else { panic!() };
        assert!(start);
        assert_eq!(request.config["limits.memory"], "4GiB");
        assert!(request.devices.contains_key("root"));
        let Step::Create { start, .. } = Case::new(Creating, Stopped, None).plan() else { panic!() };
        assert!(!start);
    }

    #[test]
    fn a_copy_is_made_from_its_source_and_not_started_until_repaired() {
        let mut case = Case::new(Creating, Running, None);
        case.row.source = ContainerSource::Copy("feedfacefeedface".into());
        case.copy_source = CopySource::From("bob-src-feedface".into());
        let Step::Create { request, start } = case.plan() else { panic!() };
        assert!(!start);
        assert_eq!(request.source, ssp_lxd::wire::InstanceSource::copy_of("bob-src-feedface"));
        case.copy_source = CopySource::Gone;
        assert!(matches!(case.plan(), Step::Stuck(why) if why.contains("copies was deleted")));
    }

    #[test]
    fn an_unfinished_import_is_reported_not_guessed_at() {
        let mut case = Case::new(Creating, Running, None);
        case.row.source = ContainerSource::Import;
        assert!(matches!(case.plan(), Step::Stuck(why) if why.contains("import did not finish")));
    }

    #[test]
    fn a_busy_instance_is_waited_for_whatever_else_is_due() {
        for (phase, desired, status) in [
            (Ready, Running, "Stopped"),
            (Ready, Stopped, "Running"),
            (Deleting, Running, "Running"),
            (Creating, Running, "Stopped"),
        ] {
            let mut case = Case::new(phase, desired, Some(status));
            case.busy = Some("Updating instance");
            assert_eq!(case.plan(), Step::WaitForLxd("Updating instance".into()), "{phase:?} {status}");
        }
    }

    #[test]
    fn drift_is_repaired_before_anything_else() {
        // A limit changed by hand, an extra device, a profile: all put back.
        let case = Case::new(Ready, Running, Some("Stopped")).edit(|i| {
            i.config.insert("limits.memory".into(), "64GiB".into());
        });
        let Step::Repair(put) = case.plan() else { panic!() };
        assert_eq!(put.config["limits.memory"], "4GiB");
        assert_eq!(put.config["volatile.idmap.base"], "1065536", "LXD's own keys are kept");
        let case = Case::new(Ready, Running, Some("Running")).edit(|i| {
            i.devices.insert("extra".into(), [("type".to_string(), "disk".to_string())].into_iter().collect());
        });
        assert!(matches!(case.plan(), Step::Repair(put) if !put.devices.contains_key("extra")));
        let case = Case::new(Ready, Running, Some("Running")).edit(|i| i.profiles = vec!["default".into()]);
        assert!(matches!(case.plan(), Step::Repair(put) if put.profiles.is_empty()));
    }

    #[test]
    fn a_lease_that_ended_unplugs_its_gpu() {
        let mut case = Case::new(Ready, Running, Some("Running"));
        case.extra = gpus(&[2, 3]);
        case.instance = Some(converged_instance(&case.row, &case.extra, "Running"));
        assert_eq!(case.plan(), Step::Converged);
        // The lease on GPU 3 ended (detach, expiry or idle reclaim): the store no longer
        // lists it, so the device goes.
        case.extra = gpus(&[2]);
        let Step::Repair(put) = case.plan() else { panic!() };
        assert!(put.devices.contains_key("gpu2") && !put.devices.contains_key("gpu3"));
    }

    #[test]
    fn the_account_is_set_up_when_its_digest_changes_and_only_while_running() {
        let mut case = Case::new(Ready, Running, Some("Running"));
        case.extra.keys.push("ssh-ed25519 BBBB".into());
        let Step::SetUpAccount { digest } = case.plan() else { panic!() };
        assert_eq!(digest, instance::account_digest(&case.row, &case.extra));
        // Joining a share's group changes it too.
        let mut case = Case::new(Ready, Running, Some("Running"));
        case.extra.groups.insert("share_lab".into(), 60_001);
        assert!(matches!(case.plan(), Step::SetUpAccount { .. }));
        // Stopped and meant to be: nothing to do inside.
        let mut case = Case::new(Ready, Stopped, Some("Stopped"));
        case.extra.keys.push("ssh-ed25519 BBBB".into());
        assert_eq!(case.plan(), Step::Converged);
    }

    #[test]
    fn the_desktop_is_installed_after_the_account_and_taken_out_when_disabled() {
        // Asked for while running: after the account, before anything else.
        let mut case = Case::new(Ready, Running, Some("Running"));
        case.row.desktop = true;
        let Step::SetUpDesktop { digest: Some(digest) } = case.plan() else { panic!("{:?}", case.plan()) };
        assert_eq!(Some(&digest), instance::desktop_digest(&case.row).as_ref());
        // A changed account still comes first.
        case.extra.keys.push("ssh-ed25519 BBBB".into());
        assert!(matches!(case.plan(), Step::SetUpAccount { .. }));
        case.extra.keys.pop();
        // Installed: converged.
        case.instance.as_mut().unwrap().config.insert(TAG_DESKTOP.into(), digest.clone());
        assert_eq!(case.plan(), Step::Converged);
        // Disabled: taken out, then converged without the tag.
        case.row.desktop = false;
        assert_eq!(case.plan(), Step::SetUpDesktop { digest: None });
        case.instance.as_mut().unwrap().config.remove(TAG_DESKTOP);
        assert_eq!(case.plan(), Step::Converged);
        // Stopped: nothing inside is touched; it waits for the next start.
        let mut case = Case::new(Ready, Stopped, Some("Stopped"));
        case.row.desktop = true;
        assert_eq!(case.plan(), Step::Converged);
        // Another owner's session would be another service: the digest says whose it is.
        let mut other = case.row.clone();
        other.owner = Name::parse("bob").unwrap();
        assert_ne!(instance::desktop_digest(&other), instance::desktop_digest(&case.row));
        // A failed install is retried at once when the desktop is switched off meanwhile.
        let mut off = case.row.clone();
        off.desktop = false;
        let (on_case, off_case) = (
            Case { row: case.row.clone(), ..Case::new(Ready, Running, Some("Running")) },
            Case { row: off, ..Case::new(Ready, Running, Some("Running")) },
        );
        assert_ne!(on_case.fingerprint(), off_case.fingerprint());
    }

    #[test]
    fn gpus_are_probed_after_each_start_and_re_plugged_after_a_failure() {
        let mut case = Case::new(Ready, Running, Some("Running"));
        case.extra = gpus(&[1]);
        case.instance = Some(converged_instance(&case.row, &case.extra, "Running"));
        assert_eq!(case.plan(), Step::Converged);
        // A new start: probed again.
        case.instance.as_mut().unwrap().last_used_at = "2026-12-04T11:00:00Z".into();
        assert!(matches!(case.plan(), Step::ProbeGpus { expected: 1, replug: false, .. }));
        // It failed before, and the retry is due: re-plug first.
        case.retry = Some(Retry {
            fingerprint: case.fingerprint(),
            attempts: 1,
            problem: "GPU health probe failed".into(),
            failed_at_ms: 0,
            next_at_ms: case.now_ms,
        });
        assert!(matches!(case.plan(), Step::ProbeGpus { replug: true, .. }));
    }

    #[test]
    fn a_failed_step_waits_for_its_retry_unless_something_changed() {
        let mut case = Case::new(Ready, Running, Some("Stopped"));
        assert_eq!(case.plan(), Step::Start);
        let retry = Retry {
            fingerprint: case.fingerprint(),
            attempts: 3,
            problem: "LXD refused".into(),
            failed_at_ms: case.now_ms - 1_000,
            next_at_ms: case.now_ms + 8_000,
        };
        case.retry = Some(retry.clone());
        assert_eq!(case.plan(), Step::Backoff { until_ms: case.now_ms + 8_000 });
        // Due: tried again.
        case.now_ms += 8_000;
        assert_eq!(case.plan(), Step::Start);
        case.now_ms -= 8_000;
        // The desired state changed (a new limit): at once.
        case.row.memory = ByteSize::parse("8GiB").unwrap();
        assert!(matches!(case.plan(), Step::Repair(_)));
        // LXD's status changed: at once.
        let mut case = Case::new(Ready, Running, Some("Frozen"));
        case.retry = Some(retry);
        assert_eq!(case.plan(), Step::Unfreeze);
    }

    #[test]
    fn backoff_never_holds_up_what_is_not_an_action() {
        let mut case = Case::new(Lost, Running, None);
        let fingerprint = case.fingerprint();
        case.retry =
            Some(Retry { fingerprint, attempts: 9, problem: "x".into(), failed_at_ms: 0, next_at_ms: i64::MAX });
        assert!(matches!(case.plan(), Step::Stuck(_)));
    }

    #[test]
    fn the_fingerprint_ignores_what_steps_change_themselves() {
        let case = Case::new(Ready, Running, Some("Running"));
        let before = case.fingerprint();
        // A re-plug or repair changes devices and config: same situation.
        let case = case.edit(|i| {
            i.devices.retain(|name, _| !name.starts_with("gpu"));
            i.config.insert("limits.cpu".into(), "9".into());
        });
        assert_eq!(case.fingerprint(), before);
        // A start does not.
        let case = case.edit(|i| i.last_used_at = "later".into());
        assert_ne!(case.fingerprint(), before);
    }

    #[test]
    fn backoff_doubles_from_two_seconds_to_five_minutes_with_jitter() {
        let middle = 200; // seed % 401 == 200 → factor 1.0
        assert_eq!(backoff_ms(1, middle), 2_000);
        assert_eq!(backoff_ms(2, middle), 4_000);
        assert_eq!(backoff_ms(3, middle), 8_000);
        assert_eq!(backoff_ms(8, middle), 256_000);
        assert_eq!(backoff_ms(9, middle), 300_000);
        assert_eq!(backoff_ms(1_000, middle), 300_000);
        assert_eq!(backoff_ms(0, middle), 2_000);
        for seed in 0..2_000 {
            let wait = backoff_ms(1, seed);
            assert!((1_600..=2_400).contains(&wait), "{wait}");
            assert!(backoff_ms(40, seed) <= 360_000);
        }
        // Spread: not every seed gives the same wait.
        let distinct: BTreeSet<i64> = (0..100).map(|seed| backoff_ms(3, seed * 7919)).collect();
        assert!(distinct.len() > 50);
    }

    #[test]
    fn an_always_failing_step_costs_a_handful_of_tries_a_minute() {
        // Tries of one step that fails every time, over the first ten minutes.
        let mut at = 0_i64;
        let mut tries = vec![0_i64];
        let mut attempts = 0;
        while at < 600_000 {
            attempts += 1;
            at += backoff_ms(attempts, 200);
            tries.push(at);
        }
        let in_first_minute = tries.iter().filter(|t| **t < 60_000).count();
        assert!(in_first_minute <= 5, "{tries:?}");
        let in_tenth_minute = tries.iter().filter(|t| (540_000..600_000).contains(*t)).count();
        assert!(in_tenth_minute <= 1, "{tries:?}");
    }
}
