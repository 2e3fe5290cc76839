//! The reconciler: makes LXD match the containers in the state database, level-driven.
//!
//! A pass reads every stored container and every LXD instance tagged with this platform's
//! id, and converges each pair from what it finds — never from why it was woken (periodic
//! timer, an LXD event, an API change). That makes every step idempotent and lets a daemon
//! killed at any instant finish or undo its work on the next pass:
//!
//! - a row in `creating` gets its instance made (or adopted, if a previous run made it and
//!   died before recording it), then moves to `ready`;
//! - a `ready` row is kept at its desired state, its drifted config and devices restored,
//!   its owner's account and keys synced; if its instance vanished it becomes `lost`;
//! - a `deleting` row has its instance removed, then the row;
//! - an instance tagged with this platform whose row is gone is an orphan and is removed.
//!
//! Rows are only ever written *before* LXD is touched (by the API) or *after* LXD reached the
//! recorded state (by the reconciler), so every acknowledged create exists after a crash and
//! nothing in LXD is left without a row.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use ssp_api::ReconcileReport;
use ssp_lxd::wire::Instance;
use ssp_lxd::StateAction;
use ssp_store::{Container, ContainerPhase, ContainerSource, DesiredState};
use tokio::sync::Notify;

use crate::attachments;
use crate::db::Db;
use crate::gpu;
use crate::instance::{self, Attachments, Layout, TAG_ACCOUNT, TAG_ID, TAG_PLATFORM};

const START_TIMEOUT: Duration = Duration::from_secs(60);
const CLEAN_STOP_TIMEOUT: Duration = Duration::from_secs(30);
const OPERATION_TIMEOUT: Duration = Duration::from_secs(300);
const WORK_TIMEOUT: Duration = Duration::from_secs(600);
/// Inside work (account set-up, the GPU probe) rides out LXD's exec stalls (see `ssp-lxd`).
const ACCOUNT_TIMEOUT: Duration = Duration::from_secs(200);

/// What went wrong converging one container; kept as its `problem` until a pass succeeds.
#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error("{0}")]
    Lxd(#[from] ssp_lxd::Error),
    #[error("{0}")]
    Store(#[from] ssp_store::Error),
    #[error("{0}")]
    Other(String),
}

/// Why a whole pass could not run.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    /// LXD could not list instances.
    #[error("LXD: {0}")]
    Lxd(#[from] ssp_lxd::Error),
    /// The state database could not be read.
    #[error("state database: {0}")]
    Store(#[from] ssp_store::Error),
}

/// What converging one container did.
#[derive(Debug, Default, Clone, Copy)]
struct Outcome {
    created: bool,
    started: bool,
    stopped: bool,
    repaired: bool,
    account: bool,
    deleted: bool,
    lost: bool,
}

impl Outcome {
    fn any(&self) -> bool {
        self.created || self.started || self.stopped || self.repaired || self.account || self.deleted || self.lost
    }
}

/// Shared with the API: wakes the reconciler and reads its per-container problems.
#[derive(Debug, Clone)]
pub struct ReconcilerHandle {
    wake: Arc<Notify>,
    problems: Arc<Mutex<HashMap<String, String>>>,
    gpu_health: Arc<Mutex<HashMap<String, String>>>,
    progress: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Default for ReconcilerHandle {
    fn default() -> Self {
        Self {
            wake: Arc::default(),
            problems: Arc::default(),
            gpu_health: Arc::default(),
            progress: Arc::new(tokio::sync::watch::channel(0).0),
        }
    }
}

impl ReconcilerHandle {
    /// Ticks whenever some container moved (made, started, stopped, removed, converged):
    /// what API waits listen to instead of polling LXD.
    pub fn progress(&self) -> tokio::sync::watch::Receiver<u64> {
        self.progress.subscribe()
    }

    fn moved(&self) {
        self.progress.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Asks for a pass soon (changes made by the API).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The last problem with container `uid`, if it is not converged.
    pub fn problem(&self, uid: &str) -> Option<String> {
        self.problems.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(uid).cloned()
    }

    /// The last GPU health probe of container `uid`: `healthy`, or what failed.
    pub fn gpu_health(&self, uid: &str) -> Option<String> {
        self.gpu_health.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(uid).cloned()
    }

    fn set_gpu_health(&self, uid: &str, health: Option<String>) {
        let mut map = self.gpu_health.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match health {
            Some(text) => map.insert(uid.to_string(), text),
            None => map.remove(uid),
        };
    }

    fn set_problem(&self, uid: &str, problem: Option<String>) {
        let mut problems = self.problems.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match problem {
            Some(text) => problems.insert(uid.to_string(), text),
            None => problems.remove(uid),
        };
    }
}

/// The reconciler.
#[derive(Debug, Clone)]
pub struct Reconciler {
    db: Db,
    lxd: ssp_lxd::Client,
    layout: Layout,
    parallelism: usize,
    handle: ReconcilerHandle,
    one_at_a_time: Arc<tokio::sync::Mutex<()>>,
    one_create_at_a_time: Arc<tokio::sync::Mutex<()>>,
    in_flight: Arc<Mutex<HashSet<String>>>,
    slots: Arc<tokio::sync::Semaphore>,
    unknown_reported: Arc<Mutex<HashSet<String>>>,
}

/// One container's work: its row, its instance if LXD has one, what else shapes it.
type Work = (Container, Option<Instance>, Attachments);

impl Reconciler {
    /// A reconciler over `db` and `lxd`.
    pub fn new(db: Db, lxd: ssp_lxd::Client, layout: Layout, parallelism: usize) -> Self {
        Self {
            db,
            lxd,
            layout,
            parallelism: parallelism.max(1),
            handle: ReconcilerHandle::default(),
            one_at_a_time: Arc::new(tokio::sync::Mutex::new(())),
            one_create_at_a_time: Arc::new(tokio::sync::Mutex::new(())),
            in_flight: Arc::new(Mutex::new(HashSet::new())),
            slots: Arc::new(tokio::sync::Semaphore::new(parallelism.max(1))),
            unknown_reported: Arc::default(),
        }
    }

    /// The handle the API uses.
    pub fn handle(&self) -> ReconcilerHandle {
        self.handle.clone()
    }

    /// Where containers go in LXD.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Keeps the reconciler's hands off container `uid` until the [`Hold`] drops: a
    /// multi-step action (a snapshot restore stops, restores, repairs and starts it) must
    /// not race a pass that would start it half-way. Waits for work already in flight.
    pub async fn hold(&self, uid: &str) -> Hold {
        loop {
            {
                let _one = self.one_at_a_time.lock().await;
                if self.claim(uid) {
                    return Hold {
                        in_flight: Arc::clone(&self.in_flight),
                        handle: self.handle.clone(),
                        uid: uid.into(),
                    };
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs forever: after every wake-up, LXD event, and at least every `interval`, observes
    /// everything and dispatches work for each container that is not already being worked
    /// on — without waiting for it, so a slow container (a first boot, an account set-up)
    /// never delays the next one's create.
    pub async fn run(self, interval: Duration) {
        let events = self.clone();
        tokio::spawn(async move { events.follow_lxd_events().await });
        loop {
            if let Err(e) = self.dispatch().await {
                tracing::warn!("reconcile: {e}");
            }
            tokio::select! {
                _ = self.handle.wake.notified() => {}
                _ = tokio::time::sleep(interval) => {}
            }
            // Let a burst of changes (or our own actions' events) settle into one look.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn follow_lxd_events(&self) {
        let mut backoff = Duration::from_millis(500);
        loop {
            match self.lxd.events(&[ssp_lxd::EventKind::Lifecycle]).await {
                Ok(mut stream) => {
                    backoff = Duration::from_millis(500);
                    while let Some(event) = stream.next().await {
                        match event {
                            Ok(event) if is_instance_event(&event) => self.handle.wake(),
                            Ok(_) => {}
                            Err(e) => {
                                tracing::debug!("LXD event stream ended: {e}");
                                break;
                            }
                        }
                    }
                }
                Err(e) => tracing::debug!("cannot follow LXD events: {e}"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }

    /// What ssp wants and what LXD has: each row with its instance and its attachments, and
    /// the instances tagged with this platform that no row claims (orphans).
    async fn observe(&self) -> Result<(Vec<Work>, HashMap<String, Instance>), PassError> {
        let layout = self.layout.clone();
        let (rows, mut attachments) = self
            .db
            .run(move |store| {
                let rows = store.all_containers()?;
                let attachments = attachments::load(store, &rows, &layout)?;
                Ok((rows, attachments))
            })
            .await?;
        // Several instances may carry one id for a moment: an import (or a copy) starts
        // with its source's tags until ssp's replace them. A row's own instance is the one
        // with its name; the others are someone's work in progress, not orphans.
        let mut ours: HashMap<String, Vec<Instance>> = HashMap::new();
        for found in self.lxd.instances().await? {
            if found.config.get(TAG_PLATFORM) != Some(&self.layout.platform) {
                continue;
            }
            if let Some(id) = found.config.get(TAG_ID).cloned() {
                ours.entry(id).or_default().push(found);
            }
        }
        // An instance named like a row's (an import still carrying its archive's tags) is
        // that row's work in progress, whatever its tags say: never an orphan.
        let row_names: HashSet<String> = rows.iter().map(instance::lxd_name).collect();
        let work = rows
            .into_iter()
            .map(|row| {
                let name = instance::lxd_name(&row);
                let found = ours.remove(&row.uid).and_then(|mut list| {
                    let at = list.iter().position(|i| i.name == name).unwrap_or(0);
                    (at < list.len()).then(|| list.swap_remove(at))
                });
                let extra = attachments.remove(&row.uid).unwrap_or_default();
                (row, found, extra)
            })
            .collect();
        let orphans = ours
            .into_iter()
            .filter_map(|(id, list)| list.into_iter().find(|i| !row_names.contains(&i.name)).map(|i| (id, i)))
            .collect();
        Ok((work, orphans))
    }

    /// Marks `uid` as being worked on; `false` if it already is.
    fn claim(&self, uid: &str) -> bool {
        self.in_flight.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(uid.to_string())
    }

    fn release(&self, uid: &str) {
        self.in_flight.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(uid);
    }

    fn busy(&self) -> bool {
        !self.in_flight.lock().unwrap_or_else(std::sync::PoisonError::into_inner).is_empty()
    }

    /// Converges one container under a parallelism slot and records its problem, if any.
    async fn work_on(&self, (row, found, extra): Work) -> Result<Outcome, StepError> {
        let uid = row.uid.clone();
        let object = format!("{}/{}", row.owner, row.name);
        let outcome = {
            let _slot = self.slots.acquire().await;
            // A hung LXD call (an exec whose websocket never ends) must not hold this
            // container's claim forever: give up, and the next pass tries again.
            match tokio::time::timeout(WORK_TIMEOUT, self.converge(row, found, &extra)).await {
                Ok(outcome) => outcome,
                Err(_) => Err(StepError::Other(format!("no answer from LXD within {} s", WORK_TIMEOUT.as_secs()))),
            }
        };
        match &outcome {
            Ok(done) => {
                self.handle.set_problem(&uid, None);
                if done.any() {
                    tracing::info!(container = %object, ?done, "converged");
                }
            }
            Err(e) => {
                tracing::warn!(container = %object, "not converged: {e}");
                self.handle.set_problem(&uid, Some(e.to_string()));
            }
        }
        self.release(&uid);
        self.handle.moved();
        outcome
    }

    /// The loop's step: dispatch work for every idle container, remove orphans, return.
    async fn dispatch(&self) -> Result<(), PassError> {
        let _one = self.one_at_a_time.lock().await;
        let (work, orphans) = self.observe().await?;
        for item in work {
            if !self.claim(&item.0.uid) {
                continue;
            }
            let this = self.clone();
            tokio::spawn(async move {
                // Whatever changed may call for a follow-up (a create is followed by a start).
                if matches!(this.work_on(item).await, Ok(done) if done.any()) {
                    this.handle.wake();
                }
            });
        }
        self.remove_orphans(orphans).await;
        Ok(())
    }

    /// One full pass over every container, waiting for all of it (and for work dispatched
    /// earlier): after it returns, LXD matches the database as far as it can be made to.
    pub async fn pass(&self) -> Result<ReconcileReport, PassError> {
        let _one = self.one_at_a_time.lock().await;
        let started = Instant::now();
        while self.busy() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (work, orphans) = self.observe().await?;
        let mut report =
            ReconcileReport { containers: u32::try_from(work.len()).unwrap_or(u32::MAX), ..Default::default() };
        let outcomes: Vec<Result<Outcome, StepError>> = futures_util::stream::iter(work)
            .map(|item| async move {
                // Nothing else can claim while this pass holds the lock and the queue is empty.
                self.claim(&item.0.uid);
                self.work_on(item).await
            })
            .buffer_unordered(self.parallelism)
            .collect()
            .await;
        for outcome in outcomes {
            match outcome {
                Ok(outcome) => {
                    report.created += u32::from(outcome.created);
                    report.started += u32::from(outcome.started);
                    report.stopped += u32::from(outcome.stopped);
                    report.repaired += u32::from(outcome.repaired);
                    report.accounts += u32::from(outcome.account);
                    report.deleted += u32::from(outcome.deleted);
                    report.lost += u32::from(outcome.lost);
                }
                Err(_) => report.failed += 1,
            }
        }
        report.orphans_removed = self.remove_orphans(orphans).await;
        report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(report)
    }

    /// Removes instances that carry this platform's tag but have no row: their row was
    /// removed, so nothing may keep them.
    ///
    /// Only orphans this database once recorded are removed (a create, copy or import of
    /// that uid is in the journal): one it never saw was made under a state that has since
    /// been replaced by an older backup (`ssp serve --restore-state`), and is kept — and
    /// reported — rather than destroyed.
    async fn remove_orphans(&self, orphans: HashMap<String, Instance>) -> u32 {
        let mut removed = 0;
        for (uid, orphan) in orphans {
            let id = uid.clone();
            match self.db.run(move |s| s.ever_recorded(&id)).await {
                Ok(true) => {}
                Ok(false) => {
                    if self
                        .unknown_reported
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(uid.clone())
                    {
                        tracing::warn!(
                            instance = %orphan.name,
                            %uid,
                            "an instance tagged by this installation that its state database never recorded \
                             (restored from an older backup?): kept; delete it with lxc if it is not wanted"
                        );
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!(instance = %orphan.name, "cannot read the journal: {e}");
                    continue;
                }
            }
            match self.remove_instance(&orphan).await {
                Ok(()) => {
                    removed += 1;
                    let detail = format!("uid {uid}");
                    let name = orphan.name.clone();
                    self.db.run(move |s| s.log(None, "container.orphan-removed", &name, Some(&detail))).await.ok();
                }
                Err(e) => tracing::warn!(instance = %orphan.name, "cannot remove orphan: {e}"),
            }
        }
        removed
    }

    async fn converge(
        &self,
        row: Container,
        found: Option<Instance>,
        extra: &Attachments,
    ) -> Result<Outcome, StepError> {
        let mut outcome = Outcome::default();
        let uid = row.uid.clone();
        match (row.phase, found) {
            (ContainerPhase::Deleting, Some(existing)) => {
                self.remove_instance(&existing).await?;
                self.db.run(move |s| s.forget_container(&uid)).await?;
                outcome.deleted = true;
            }
            (ContainerPhase::Deleting, None) => {
                self.db.run(move |s| s.forget_container(&uid)).await?;
                outcome.deleted = true;
            }
            (ContainerPhase::Creating, None) => {
                let mut request = instance::create_request(&row, &self.layout, extra);
                // A copy starts only after `keep` replaced the config LXD copied from its
                // source (another owner's identity in `raw.idmap`, say) with its own.
                let mut start_now = true;
                match &row.source {
                    ContainerSource::Image => {}
                    ContainerSource::Copy(from) => {
                        let from = from.clone();
                        let source = match self.db.run(move |s| s.container_by_uid(&from)).await {
                            Ok(source) => source,
                            Err(ssp_store::Error::NotFound { .. }) => {
                                return Err(StepError::Other(
                                    "the container it copies was deleted before the copy was made; delete this one"
                                        .into(),
                                ))
                            }
                            Err(e) => return Err(e.into()),
                        };
                        request.source = ssp_lxd::wire::InstanceSource::copy_of(instance::lxd_name(&source));
                        start_now = false;
                    }
                    ContainerSource::Import => {
                        return Err(StepError::Other(
                            "its import did not finish; delete it and import the archive again".into(),
                        ))
                    }
                }
                {
                    // LXD 5.0.2 hands out isolated idmap ranges racily: concurrent creates got
                    // overlapping ranges, or ranges outside /etc/subuid that then fail to start
                    // ("newuidmap ... not allowed"). Creates go one at a time — in this process
                    // and across every ssp process on this LXD; starts do not.
                    let _one = self.one_create_at_a_time.lock().await;
                    let _host_wide = HostLock::acquire(self.lxd.socket()).await?;
                    let operation = self.lxd.create_instance(&request).await?;
                    operation.wait(Some(OPERATION_TIMEOUT)).await?;
                }
                outcome.created = true;
                // Made exactly as desired: record it and start it at once, side by side.
                let name = request.name.clone();
                let start = async {
                    if row.desired_state == DesiredState::Running && start_now {
                        self.lxd.start_instance(&name, START_TIMEOUT).await.map(|()| true)
                    } else {
                        Ok(false)
                    }
                };
                let record =
                    self.db.run(move |s| s.advance_phase(&uid, ContainerPhase::Creating, ContainerPhase::Ready));
                let (advanced, started) = tokio::join!(record, start);
                outcome.started = started?;
                self.handle.moved();
                // Deleted meanwhile: the next pass removes what was just made.
                if advanced? {
                    let made = self.lxd.instance(&name).await?.value;
                    self.keep(&row, made, extra, &mut outcome).await?;
                }
            }
            (from @ (ContainerPhase::Creating | ContainerPhase::Lost), Some(existing)) => {
                // Made by a predecessor that died: its create may still be running in LXD,
                // and acting on a half-made instance wedges it ("Error" status).
                self.wait_for_operations_on(&existing.name).await?;
                let existing = self.lxd.instance(&existing.name).await?.value;
                if self.db.run(move |s| s.advance_phase(&uid, from, ContainerPhase::Ready)).await? {
                    self.keep(&row, existing, extra, &mut outcome).await?;
                }
            }
            (ContainerPhase::Ready, Some(existing)) => self.keep(&row, existing, extra, &mut outcome).await?,
            (ContainerPhase::Ready, None) => {
                outcome.lost =
                    self.db.run(move |s| s.advance_phase(&uid, ContainerPhase::Ready, ContainerPhase::Lost)).await?;
            }
            (ContainerPhase::Lost, None) => {
                return Err(StepError::Other(
                    "its LXD instance vanished outside ssp; delete it (`ssp container delete`) and create it again"
                        .into(),
                ))
            }
        }
        Ok(outcome)
    }

    /// Starts instance `name`. LXD refuses while another operation holds the instance ("is
    /// busy running a stop operation"): a stop a killed predecessor started, or LXD's own
    /// clean-up right after an instance stopped (which is not an API operation one can wait
    /// for). Then it waits for the API operations on it and tries again, for up to 10 s.
    async fn start_when_idle(&self, name: &str) -> Result<(), StepError> {
        let mut attempts = 0;
        loop {
            match self.lxd.start_instance(name, START_TIMEOUT).await {
                Err(e) if e.to_string().contains("is busy running") && attempts < 40 => {
                    attempts += 1;
                    self.wait_for_operations_on(name).await?;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                other => return Ok(other?),
            }
        }
    }

    /// Waits for LXD operations still running on instance `name`.
    async fn wait_for_operations_on(&self, name: &str) -> Result<(), StepError> {
        let path = format!("/1.0/instances/{name}");
        for operation in self.lxd.running_operations().await? {
            let on_it = operation.state().resources.get("instances").is_some_and(|list| list.contains(&path))
                || operation
                    .state()
                    .resources
                    .get("containers")
                    .is_some_and(|list| list.iter().any(|p| p == &format!("/1.0/containers/{name}")));
            if on_it {
                tracing::info!(instance = %name, operation = %operation.id(), "waiting for an operation a predecessor started");
                match operation.wait(Some(OPERATION_TIMEOUT)).await {
                    Ok(_) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => tracing::warn!(instance = %name, "an earlier operation on it failed: {e}"),
                }
            }
        }
        Ok(())
    }

    /// Keeps an existing instance at the row's desired shape and state.
    async fn keep(
        &self,
        row: &Container,
        mut existing: Instance,
        extra: &Attachments,
        outcome: &mut Outcome,
    ) -> Result<(), StepError> {
        let name = existing.name.clone();
        if let Some(put) = instance::repair(&existing, row, &self.layout, extra) {
            self.lxd.update_instance(&name, &put, None).await?.wait(Some(OPERATION_TIMEOUT)).await?;
            outcome.repaired = true;
            let object = format!("{}/{}", row.owner, row.name);
            self.db.run(move |s| s.log(None, "container.repaired", &object, None)).await?;
            existing = self.lxd.instance(&name).await?.value;
        }
        let running = existing.status == "Running";
        match row.desired_state {
            DesiredState::Running if existing.status == "Frozen" => {
                self.lxd
                    .change_state(&name, StateAction::Unfreeze, START_TIMEOUT, false)
                    .await?
                    .wait(Some(START_TIMEOUT))
                    .await?;
                outcome.started = true;
            }
            DesiredState::Running if existing.status == "Error" => {
                // LXD leaves an instance whose start went wrong in "Error": stop it for real first.
                self.lxd.stop_instance(&name, CLEAN_STOP_TIMEOUT, true).await.ok();
                self.start_when_idle(&name).await?;
                outcome.started = true;
            }
            DesiredState::Running if !running => {
                self.start_when_idle(&name).await?;
                outcome.started = true;
                self.handle.moved();
            }
            DesiredState::Stopped if running => {
                self.stop(&name).await?;
                outcome.stopped = true;
                return Ok(());
            }
            _ => {}
        }
        if row.desired_state == DesiredState::Running {
            let digest = instance::account_digest(row, &extra.keys, &extra.groups);
            if existing.config.get(TAG_ACCOUNT) != Some(&digest) {
                self.set_up_account(&name, row, extra).await?;
                self.pin_host_key(&name, row).await;
                let current = self.lxd.instance(&name).await?;
                let mut put = current.value.to_put();
                put.config.insert(TAG_ACCOUNT.into(), digest);
                self.lxd
                    .update_instance(&name, &put, current.etag.as_deref())
                    .await?
                    .wait(Some(OPERATION_TIMEOUT))
                    .await?;
                outcome.account = true;
            }
            self.check_gpus(&name, row, extra).await?;
        }
        Ok(())
    }

    /// After each start (and each change of its GPUs), probes inside that the container sees
    /// exactly its GPUs; a failed probe re-plugs them and is tried again on the next pass.
    async fn check_gpus(&self, name: &str, row: &Container, extra: &Attachments) -> Result<(), StepError> {
        if extra.gpus.is_empty() {
            self.handle.set_gpu_health(&row.uid, None);
            return Ok(());
        }
        let current = self.lxd.instance(name).await?;
        if current.value.status != "Running" {
            return Ok(());
        }
        let digest = gpu::health_digest(&current.value.devices, &current.value.last_used_at);
        if current.value.config.get(gpu::TAG_GPU_HEALTH) == Some(&digest) {
            return Ok(());
        }
        let kind = if self.layout.gpu.emulated { "emulated" } else { "nvidia" };
        let expected = extra.gpus.len().to_string();
        let command: Vec<String> =
            ["sh", "-c", gpu::PROBE_SCRIPT, "ssp-gpu-probe", &expected, kind].iter().map(|s| s.to_string()).collect();
        let exec = self.lxd.exec_output_with(name, &command, &[], ssp_lxd::ExecOptions::default());
        let output = tokio::time::timeout(ACCOUNT_TIMEOUT, exec)
            .await
            .map_err(|_| StepError::Other("the GPU health probe got no answer from LXD in time".into()))??;
        let object = format!("{}/{}", row.owner, row.name);
        if output.exit_code == 0 {
            self.handle.set_gpu_health(&row.uid, Some("healthy".into()));
            let mut put = current.value.to_put();
            put.config.insert(gpu::TAG_GPU_HEALTH.into(), digest);
            self.lxd.update_instance(name, &put, current.etag.as_deref()).await?.wait(Some(OPERATION_TIMEOUT)).await?;
            let detail = format!("gpus {expected}");
            self.db.run(move |s| s.log(None, "gpu.healthy", &object, Some(&detail))).await?;
            return Ok(());
        }
        let why = format!("{}{}", output.stdout_text().trim(), output.stderr_text().trim());
        self.handle.set_gpu_health(&row.uid, Some(format!("unhealthy: {why}")));
        // Re-plug: take the GPU devices out, then let the next pass's repair put them back.
        let mut put = current.value.to_put();
        put.devices.retain(|device, _| !device.starts_with("gpu"));
        self.lxd.update_instance(name, &put, current.etag.as_deref()).await?.wait(Some(OPERATION_TIMEOUT)).await?;
        let detail = why.clone();
        self.db.run(move |s| s.log(None, "gpu.unhealthy", &object, Some(&detail))).await?;
        self.handle.wake();
        Err(StepError::Other(format!("GPU health probe failed ({why}); its GPUs were re-plugged and are probed again")))
    }

    /// Pins the container's sshd host key when its account is first set up (it never
    /// changes a pin): `ssp ssh-config` gives it to clients, so a ProxyJump to the container's
    /// own sshd is verified end to end. Images generate their keys at first boot, which may
    /// still be running: the read waits for the key a while, and only where sshd is installed.
    async fn pin_host_key(&self, name: &str, row: &Container) {
        let uid = row.uid.clone();
        match self.db.run(move |store| store.ssh_host_key(&uid)).await {
            Ok(None) => {}
            Ok(Some(_)) => return,
            Err(e) => return tracing::warn!("reading {}/{}'s host key: {e}", row.owner, row.name),
        }
        const READ_HOST_KEY: &str = "[ -x /usr/sbin/sshd ] || exit 3; for i in $(seq 60); do \
            [ -s /etc/ssh/ssh_host_ed25519_key.pub ] && exec cat /etc/ssh/ssh_host_ed25519_key.pub; sleep 1; done; exit 1";
        let command: Vec<String> = ["sh", "-c", READ_HOST_KEY].iter().map(|s| s.to_string()).collect();
        let exec = self.lxd.exec_output_with(name, &command, &[], ssp_lxd::ExecOptions::default());
        let output = match tokio::time::timeout(ACCOUNT_TIMEOUT, exec).await {
            Ok(Ok(output)) if output.exit_code == 0 => output,
            Ok(Ok(output)) => {
                return tracing::debug!("{}/{} has no sshd host key (exit {})", row.owner, row.name, output.exit_code)
            }
            Ok(Err(e)) => return tracing::warn!("reading {}/{}'s host key: {e}", row.owner, row.name),
            Err(_) => return tracing::warn!("reading {}/{}'s host key took too long", row.owner, row.name),
        };
        let line = match ssp_core::sshkey::PublicKey::parse(output.stdout_text().trim()) {
            Ok(key) => key.to_line(),
            Err(e) => return tracing::warn!("{}/{}'s sshd host key is not usable: {e}", row.owner, row.name),
        };
        let uid = row.uid.clone();
        match self.db.run(move |store| store.pin_ssh_host_key(&uid, &line)).await {
            Ok(_) => tracing::info!("pinned {}/{}'s sshd host key", row.owner, row.name),
            Err(e) => tracing::warn!("pinning {}/{}'s host key: {e}", row.owner, row.name),
        }
    }

    async fn set_up_account(&self, name: &str, row: &Container, extra: &Attachments) -> Result<(), StepError> {
        let mut command: Vec<String> =
            ["sh", "-c", instance::ACCOUNT_SCRIPT, "ssp-account"].iter().map(|s| s.to_string()).collect();
        command.extend(instance::account_args(row, &extra.groups));
        let stdin = instance::authorized_keys(&extra.keys);
        let exec = self.lxd.exec_output_with(name, &command, stdin.as_bytes(), ssp_lxd::ExecOptions::default());
        let output = tokio::time::timeout(ACCOUNT_TIMEOUT, exec).await.map_err(|_| {
            StepError::Other(format!("setting up account {} took over {} s", row.owner, ACCOUNT_TIMEOUT.as_secs()))
        })??;
        if output.exit_code != 0 {
            return Err(StepError::Other(format!(
                "setting up account {} failed (exit {}): {}",
                row.owner,
                output.exit_code,
                output.stderr_text().trim()
            )));
        }
        Ok(())
    }

    async fn stop(&self, name: &str) -> Result<(), StepError> {
        if self.lxd.stop_instance(name, CLEAN_STOP_TIMEOUT, false).await.is_err() {
            self.lxd.stop_instance(name, CLEAN_STOP_TIMEOUT, true).await?;
        }
        Ok(())
    }

    async fn remove_instance(&self, existing: &Instance) -> Result<(), StepError> {
        if existing.status != "Stopped" {
            match self.lxd.stop_instance(&existing.name, CLEAN_STOP_TIMEOUT, true).await {
                Err(e) if !e.is_not_found() => return Err(e.into()),
                _ => {}
            }
        }
        match self.lxd.delete_instance(&existing.name).await {
            Ok(operation) => {
                operation.wait(Some(OPERATION_TIMEOUT)).await?;
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }
}

/// A container held away from the reconciler; dropping it lets the reconciler look again.
#[derive(Debug)]
pub struct Hold {
    in_flight: Arc<Mutex<HashSet<String>>>,
    handle: ReconcilerHandle,
    uid: String,
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.in_flight.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&self.uid);
        self.handle.moved();
        self.handle.wake();
    }
}

/// An exclusive `flock` on a file named after the LXD socket, held until dropped, so ssp
/// processes sharing one LXD daemon (as the tests do) create one instance at a time.
struct HostLock {
    _file: std::fs::File,
}

impl HostLock {
    async fn acquire(socket: &std::path::Path) -> Result<Self, StepError> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        socket.hash(&mut hasher);
        let path = std::env::temp_dir().join(format!("ssp-lxd-create-{:016x}.lock", hasher.finish()));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| StepError::Other(format!("opening {}: {e}", path.display())))?;
        tokio::task::spawn_blocking(move || {
            rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).map(|()| HostLock { _file: file })
        })
        .await
        .map_err(|e| StepError::Other(format!("waiting for the create lock: {e}")))?
        .map_err(|e| StepError::Other(format!("locking {}: {e}", path.display())))
    }
}

fn is_instance_event(event: &ssp_lxd::wire::Event) -> bool {
    event.metadata.get("action").and_then(|a| a.as_str()).is_some_and(|action| action.starts_with("instance-"))
}
