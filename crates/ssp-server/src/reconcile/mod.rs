//! The reconciler: makes LXD match the containers in the state database, level-driven.
//!
//! A pass reads every stored container, every LXD instance tagged with this platform's id
//! and LXD's running operations, and converges each pair from what it finds — never from why
//! it was woken (periodic timer, an LXD event, an API change). The decisions are one pure
//! function, [`plan::plan`]: from the row, its attachments and what LXD shows, the *next*
//! step. This module is the executor: it observes, plans, carries the step out, observes
//! again, and stops at a step that is not an action:
//!
//! - a row in `creating` gets its instance made (or adopted, if a previous run made it and
//!   died before recording it), then moves to `ready`;
//! - a `ready` row is kept at its desired state, its drifted config and devices restored,
//!   its owner's account and keys synced, its GPUs probed; if its instance vanished it
//!   becomes `lost`;
//! - a `deleting` row has its instance removed, then the row;
//! - an instance tagged with this platform whose row is gone is an orphan and is removed.
//!
//! A step that fails is tried again after a capped, jittered backoff (`plan::backoff_ms`),
//! at once when the desired state or LXD's status changed; an instance LXD reports busy is
//! waited for, never counted as a failure. What failed and when the next try is are kept
//! per container ([`Condition`]) for the API to show.
//!
//! **One writer:** every change ssp makes to an instance's config and devices is made here.
//! Other parts record what they want (a lease, a share, a restore) and ask for a converge
//! ([`Reconciler::converge_now`]) when their caller waits for the result.
//!
//! Rows are only ever written *before* LXD is touched (by the API) or *after* LXD reached the
//! recorded state (by the reconciler), so every acknowledged create exists after a crash and
//! nothing in LXD is left without a row.

pub mod handle;
pub mod plan;

pub use handle::{Condition, ReconcilerHandle, StepError};

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use ssp_api::ReconcileReport;
use ssp_lxd::wire::Instance;
use ssp_lxd::StateAction;
use ssp_store::{Container, ContainerPhase, ContainerSource};

use self::plan::{CopySource, Step};
use crate::attachments;
use crate::db::Db;
use crate::gpu;
use crate::guest::{self, Script};
use crate::instance::{self, Attachments, Layout, TAG_ACCOUNT, TAG_DESKTOP, TAG_ID, TAG_PLATFORM};

const START_TIMEOUT: Duration = Duration::from_secs(60);
const CLEAN_STOP_TIMEOUT: Duration = Duration::from_secs(30);
const OPERATION_TIMEOUT: Duration = Duration::from_secs(300);
const WORK_TIMEOUT: Duration = Duration::from_secs(600);
/// Inside work (account set-up, the GPU probe) rides out LXD's exec stalls (see `ssp-lxd`).
const ACCOUNT_TIMEOUT: Duration = Duration::from_secs(200);
/// Installing a desktop may download and unpack a few hundred MiB of packages (inside
/// [`WORK_TIMEOUT`]); an image that has them (`debian-12-desktop`) takes seconds.
const DESKTOP_TIMEOUT: Duration = Duration::from_secs(480);
/// Steps one converge may take before it gives up for now (a plan that never settles is a
/// bug; it must not spin).
const MAX_STEPS: usize = 12;

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
pub struct Outcome {
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

/// One container's work: what ssp wants and what LXD shows of it.
#[derive(Debug, Clone)]
struct Work {
    row: Container,
    instance: Option<Instance>,
    extra: Attachments,
    copy_source: CopySource,
    /// An LXD operation that holds the instance right now.
    busy: Option<String>,
}

impl Work {
    /// What the planner decides from.
    fn input<'a>(&'a self, layout: &'a Layout, retry: Option<&'a plan::Retry>, now_ms: i64) -> plan::Input<'a> {
        plan::Input {
            row: &self.row,
            instance: self.instance.as_ref(),
            extra: &self.extra,
            layout,
            copy_source: &self.copy_source,
            busy: self.busy.as_deref(),
            retry,
            now_ms,
        }
    }
}

/// How patient a converge is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The background loop: honour backoff, come back for a busy instance later.
    Patient,
    /// Someone waits for the result (an explicit pass, a user's action): try now, and wait
    /// for a busy instance.
    Now,
}

/// What to do after a step.
enum Flow {
    /// Observe and plan again.
    Continue,
    /// The container's work is over (its row went, or it changed under us).
    Done,
}

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
    /// multi-step action (a snapshot restore stops and restores it) must not race a pass
    /// that would start it half-way. Waits for work already in flight.
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

    /// Converges container `uid` now and returns when it is done (or failed): what an action
    /// whose caller waits uses after recording its intent (a GPU detach, a restore, a
    /// start). Waits for work on it already in flight; ignores backoff (someone asked).
    pub async fn converge_now(&self, uid: &str) -> Result<(), StepError> {
        let hold = self.hold(uid).await;
        let result = self.converge_held(uid).await;
        drop(hold);
        result
    }

    /// Converges container `uid` while the caller holds it (see [`Reconciler::hold`]).
    pub async fn converge_held(&self, uid: &str) -> Result<(), StepError> {
        let Some(mut work) = self.load(uid).await? else { return Ok(()) };
        self.observe_one(&mut work).await?;
        self.converge_bounded(work, Mode::Now).await.map(|_| ())
    }

    /// Applies ssp's config and devices to LXD instance `instance` now, and nothing more (no
    /// start, no account, no GPU probe): what the SSH gateway's device registry calls after
    /// it registered or dropped a device, so its sessions' devices are written by this one
    /// writer — and still reach a container whose other work fails.
    pub async fn apply_devices(&self, instance: &str) -> Result<(), StepError> {
        let name = instance.to_string();
        let uid = self
            .db
            .run(move |s| Ok(s.all_containers()?.into_iter().find(|r| instance::lxd_name(r) == name).map(|r| r.uid)))
            .await?;
        let Some(uid) = uid else { return Err(StepError::Other(format!("no container has instance {instance}"))) };
        let _hold = self.hold(&uid).await;
        let Some(mut work) = self.load(&uid).await? else { return Ok(()) };
        for _ in 0..MAX_STEPS {
            self.observe_one(&mut work).await?;
            let Step::Repair(put) = plan::plan(&work.input(&self.layout, None, unix_ms())) else { return Ok(()) };
            match self.lxd.update_instance(instance, &put, None).await {
                Ok(operation) => match operation.wait(Some(OPERATION_TIMEOUT)).await {
                    Ok(_) => return Ok(()),
                    Err(e) if e.is_busy() => {}
                    Err(e) => return Err(e.into()),
                },
                Err(e) if e.is_busy() => {}
                Err(e) => return Err(e.into()),
            }
            self.wait_for_operations_on(instance).await?;
        }
        Err(StepError::Other(format!("instance {instance} stayed busy")))
    }

    /// One container's row, attachments and copy source, from the store.
    async fn load(&self, uid: &str) -> Result<Option<Work>, StepError> {
        let layout = self.layout.clone();
        let id = uid.to_string();
        let found = self
            .db
            .run(move |store| {
                let row = match store.container_by_uid(&id) {
                    Ok(row) => row,
                    Err(ssp_store::Error::NotFound { .. }) => return Ok(None),
                    Err(e) => return Err(e),
                };
                let rows = [row];
                let mut extra = attachments::load(store, &rows, &layout)?;
                let [row] = rows;
                let copy_source = copy_source(store, &row)?;
                let extra = extra.remove(&row.uid).unwrap_or_default();
                Ok(Some((row, extra, copy_source)))
            })
            .await?;
        Ok(found.map(|(row, extra, copy_source)| Work { row, instance: None, extra, copy_source, busy: None }))
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

    /// What ssp wants and what LXD has: each row with its instance, attachments and the
    /// operation holding it, and the instances tagged with this platform that no row claims
    /// (orphans).
    async fn observe(&self) -> Result<(Vec<Work>, HashMap<String, Instance>), PassError> {
        let layout = self.layout.clone();
        let (rows, mut attachments, mut copies) = self
            .db
            .run(move |store| {
                let rows = store.all_containers()?;
                let attachments = attachments::load(store, &rows, &layout)?;
                let mut copies = HashMap::new();
                for row in rows.iter().filter(|r| r.phase == ContainerPhase::Creating) {
                    copies.insert(row.uid.clone(), copy_source(store, row)?);
                }
                Ok((rows, attachments, copies))
            })
            .await?;
        // Exec and console sessions hold nothing: only LXD's task operations count.
        let mut busy: HashMap<String, String> = self
            .lxd
            .instances_held()
            .await?
            .into_iter()
            .map(|(name, description)| (name, format!("LXD is busy with \"{description}\"")))
            .collect();
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
                let copy_source = copies.remove(&row.uid).unwrap_or(CopySource::None);
                let busy = found.as_ref().and_then(|i| busy.remove(&i.name));
                Work { row, instance: found, extra, copy_source, busy }
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

    /// Converges one container under a parallelism slot, then lets others claim it.
    async fn work_on(&self, work: Work, mode: Mode) -> Result<Outcome, StepError> {
        let uid = work.row.uid.clone();
        let outcome = {
            let _slot = self.slots.acquire().await;
            self.converge_bounded(work, mode).await
        };
        self.release(&uid);
        outcome
    }

    /// [`Reconciler::converge`] within [`WORK_TIMEOUT`], logged, and reported to waiters.
    async fn converge_bounded(&self, work: Work, mode: Mode) -> Result<Outcome, StepError> {
        let uid = work.row.uid.clone();
        let object = format!("{}/{}", work.row.owner, work.row.name);
        // A hung LXD call (an exec whose websocket never ends) must not hold this
        // container's claim forever: give up, and the next pass tries again.
        let outcome = match tokio::time::timeout(WORK_TIMEOUT, self.converge(work, mode)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(StepError::Other(format!("no answer from LXD within {} s", WORK_TIMEOUT.as_secs()))),
        };
        match &outcome {
            Ok(done) => {
                if done.deleted {
                    self.handle.forget(&uid);
                }
                if done.any() {
                    tracing::info!(container = %object, ?done, "converged");
                }
            }
            Err(e) => tracing::warn!(container = %object, "not converged: {e}"),
        }
        self.handle.moved();
        outcome
    }

    /// The loop's step: dispatch work for every idle container, remove orphans, return.
    async fn dispatch(&self) -> Result<(), PassError> {
        let _one = self.one_at_a_time.lock().await;
        let (work, orphans) = self.observe().await?;
        for item in work {
            if !self.claim(&item.row.uid) {
                continue;
            }
            let this = self.clone();
            tokio::spawn(async move {
                // Whatever changed may call for a follow-up.
                if matches!(this.work_on(item, Mode::Patient).await, Ok(done) if done.any()) {
                    this.handle.wake();
                }
            });
        }
        self.remove_orphans(orphans).await;
        Ok(())
    }

    /// One full pass over every container, waiting for all of it (and for work dispatched
    /// earlier), trying failed work now rather than after its backoff: after it returns, LXD
    /// matches the database as far as it can be made to.
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
                self.claim(&item.row.uid);
                self.work_on(item, Mode::Now).await
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

    /// Converges one container: plan a step, carry it out, observe again, until the plan is
    /// not an action (converged, waiting for LXD, backing off, stuck) or `MAX_STEPS` ran.
    /// A failed step is recorded with its backoff; a busy LXD is waited out, not a failure.
    async fn converge(&self, mut work: Work, mode: Mode) -> Result<Outcome, StepError> {
        let mut outcome = Outcome::default();
        let uid = work.row.uid.clone();
        for _ in 0..MAX_STEPS {
            self.handle.saw(&uid, work.instance.as_ref());
            let now_ms = unix_ms();
            let retry = match mode {
                Mode::Patient => self.handle.retry(&uid),
                // An explicit pass (an admin's, the crash test's) tries now.
                Mode::Now => None,
            };
            let input = work.input(&self.layout, retry.as_ref(), now_ms);
            let step = plan::plan(&input);
            let fingerprint = plan::fingerprint(&input);
            match step {
                Step::Converged => {
                    self.handle.settle(&uid, Condition::Converged);
                    return Ok(outcome);
                }
                Step::Pending(what) => {
                    self.handle.settle(&uid, Condition::Pending(what));
                    return Ok(outcome);
                }
                Step::Backoff { until_ms } => {
                    self.wake_at(until_ms);
                    return Ok(outcome);
                }
                Step::Stuck(why) => {
                    self.handle.settle(&uid, Condition::Stuck(why.clone()));
                    return Err(StepError::Other(why));
                }
                Step::WaitForLxd(what) => {
                    let name = work.instance.as_ref().map_or_else(|| instance::lxd_name(&work.row), |i| i.name.clone());
                    self.handle.settle(&uid, Condition::Waiting(what));
                    match mode {
                        // Woken again by LXD's event when it is done, or by the timer.
                        Mode::Patient => {
                            self.wake_at(now_ms + 2_000);
                            return Ok(outcome);
                        }
                        Mode::Now => self.wait_for_operations_on(&name).await?,
                    }
                }
                action => {
                    tracing::debug!(container = %format!("{}/{}", work.row.owner, work.row.name), step = action.name(), "step");
                    match self.execute(&mut work, action, &mut outcome).await {
                        Ok(Flow::Continue) => {}
                        Ok(Flow::Done) => {
                            self.handle.settle(&uid, Condition::Converged);
                            return Ok(outcome);
                        }
                        Err(e) if e.is_busy() => {
                            // Someone else's operation got there first: wait it out — now,
                            // when someone waits for this converge; else at the next look.
                            self.handle.settle(&uid, Condition::Waiting(e.to_string()));
                            if mode == Mode::Patient {
                                self.wake_at(unix_ms() + 2_000);
                                return Ok(outcome);
                            }
                            let name = instance::lxd_name(&work.row);
                            self.wait_for_operations_on(&name).await?;
                        }
                        Err(e) => {
                            self.fail(&uid, fingerprint, &e);
                            return Err(e);
                        }
                    }
                }
            }
            self.observe_one(&mut work).await?;
        }
        let e = StepError::Other(format!("did not settle after {MAX_STEPS} steps; trying again later"));
        self.fail(&uid, plan::fingerprint(&work.input(&self.layout, None, unix_ms())), &e);
        Err(e)
    }

    /// Records a failed step and when to try again (the same failure in a row backs off
    /// longer), and has the reconciler woken then.
    fn fail(&self, uid: &str, fingerprint: String, e: &StepError) {
        let now_ms = unix_ms();
        let attempts = match self.handle.retry(uid) {
            Some(previous) if previous.fingerprint == fingerprint => previous.attempts.saturating_add(1),
            _ => 1,
        };
        let seed = {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            (uid, attempts, now_ms).hash(&mut hasher);
            hasher.finish()
        };
        let next_at_ms = now_ms + plan::backoff_ms(attempts, seed);
        self.handle.settle(
            uid,
            Condition::Failed(plan::Retry {
                fingerprint,
                attempts,
                problem: e.to_string(),
                failed_at_ms: now_ms,
                next_at_ms,
            }),
        );
        self.wake_at(next_at_ms);
    }

    /// Wakes the reconciler at `at_ms` (Unix milliseconds).
    fn wake_at(&self, at_ms: i64) {
        let delay = Duration::from_millis(u64::try_from(at_ms - unix_ms()).unwrap_or(0));
        let handle = self.handle.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            handle.wake();
        });
    }

    /// Looks at one container's instance again after a step (LXD changed it).
    async fn observe_one(&self, work: &mut Work) -> Result<(), StepError> {
        let name = instance::lxd_name(&work.row);
        work.busy = None;
        work.instance = match self.lxd.instance(&name).await {
            Ok(found) => Some(found.value),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e.into()),
        };
        Ok(())
    }

    /// Carries out one step.
    async fn execute(&self, work: &mut Work, step: Step, outcome: &mut Outcome) -> Result<Flow, StepError> {
        let uid = work.row.uid.clone();
        let object = format!("{}/{}", work.row.owner, work.row.name);
        let name = work.instance.as_ref().map_or_else(|| instance::lxd_name(&work.row), |i| i.name.clone());
        match step {
            Step::Forget => {
                self.db.run(move |s| s.forget_container(&uid)).await?;
                outcome.deleted = true;
                return Ok(Flow::Done);
            }
            Step::Remove => {
                if let Some(existing) = &work.instance {
                    self.remove_instance(existing).await?;
                }
            }
            Step::Create { request, start } => {
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
                let start_it = async {
                    if start {
                        self.lxd.start_instance(&request.name, START_TIMEOUT).await.map(|()| true)
                    } else {
                        Ok(false)
                    }
                };
                let record =
                    self.db.run(move |s| s.advance_phase(&uid, ContainerPhase::Creating, ContainerPhase::Ready));
                let (advanced, started) = tokio::join!(record, start_it);
                outcome.started = started?;
                self.handle.moved();
                if !advanced? {
                    // Deleted meanwhile: the next pass removes what was just made.
                    return Ok(Flow::Done);
                }
                work.row.phase = ContainerPhase::Ready;
            }
            Step::Adopt => {
                let from = work.row.phase;
                if !self.db.run(move |s| s.advance_phase(&uid, from, ContainerPhase::Ready)).await? {
                    return Ok(Flow::Done);
                }
                work.row.phase = ContainerPhase::Ready;
            }
            Step::MarkLost => {
                outcome.lost =
                    self.db.run(move |s| s.advance_phase(&uid, ContainerPhase::Ready, ContainerPhase::Lost)).await?;
                work.row.phase = ContainerPhase::Lost;
            }
            Step::Repair(put) => {
                self.lxd.update_instance(&name, &put, None).await?.wait(Some(OPERATION_TIMEOUT)).await?;
                outcome.repaired = true;
                self.db.run(move |s| s.log(None, "container.repaired", &object, None)).await?;
            }
            Step::Unfreeze => {
                self.lxd
                    .change_state(&name, StateAction::Unfreeze, START_TIMEOUT, false)
                    .await?
                    .wait(Some(START_TIMEOUT))
                    .await?;
                outcome.started = true;
            }
            Step::Recover => {
                // LXD leaves an instance whose start went wrong in "Error": stop it for real first.
                self.lxd.stop_instance(&name, CLEAN_STOP_TIMEOUT, true).await.ok();
                self.lxd.start_instance(&name, START_TIMEOUT).await?;
                outcome.started = true;
            }
            Step::Start => {
                self.lxd.start_instance(&name, START_TIMEOUT).await?;
                outcome.started = true;
                self.handle.moved();
            }
            Step::Stop => {
                self.stop(&name).await?;
                outcome.stopped = true;
            }
            Step::SetUpAccount { digest } => {
                self.set_up_account(&name, &work.row, &work.extra).await?;
                self.pin_host_key(&name, &work.row).await;
                self.record_tag(&name, TAG_ACCOUNT, digest).await?;
                outcome.account = true;
            }
            Step::SetUpDesktop { digest } => {
                self.set_up_desktop(&name, &work.row, digest.is_some()).await?;
                match digest {
                    Some(digest) => self.record_tag(&name, TAG_DESKTOP, digest).await?,
                    None => self.remove_tag(&name, TAG_DESKTOP).await?,
                }
            }
            Step::ProbeGpus { digest, expected, replug } => {
                if replug {
                    self.replug_gpus(&name).await?;
                }
                self.probe_gpus(&name, &work.row, expected, digest).await?;
            }
            Step::Converged | Step::Pending(_) | Step::WaitForLxd(_) | Step::Backoff { .. } | Step::Stuck(_) => {}
        }
        Ok(Flow::Continue)
    }

    /// Sets one of the tags the reconciler records as it works, against the instance's
    /// current ETag (so a concurrent change is not overwritten).
    async fn record_tag(&self, name: &str, tag: &str, value: String) -> Result<(), StepError> {
        let current = self.lxd.instance(name).await?;
        let mut put = current.value.to_put();
        put.config.insert(tag.into(), value);
        self.lxd.update_instance(name, &put, current.etag.as_deref()).await?.wait(Some(OPERATION_TIMEOUT)).await?;
        Ok(())
    }

    /// Removes one of the tags the reconciler records (when it is there).
    async fn remove_tag(&self, name: &str, tag: &str) -> Result<(), StepError> {
        let current = self.lxd.instance(name).await?;
        let mut put = current.value.to_put();
        if put.config.remove(tag).is_some() {
            self.lxd.update_instance(name, &put, current.etag.as_deref()).await?.wait(Some(OPERATION_TIMEOUT)).await?;
        }
        Ok(())
    }

    /// Installs (`enable`: packages when missing, then ssp's session service) or takes out
    /// (`disable`: the service and its sessions; packages and files stay) the desktop inside.
    async fn set_up_desktop(&self, name: &str, row: &Container, enable: bool) -> Result<(), StepError> {
        let owner = row.owner.as_str();
        let args: &[&str] = if enable { &["enable", owner] } else { &["disable"] };
        let output = guest::run(&self.lxd, name, Script::Desktop, args, &[], DESKTOP_TIMEOUT).await?;
        if output.exit_code != 0 {
            let what = if enable { "installing" } else { "removing" };
            return Err(StepError::Other(format!(
                "{} (exit {}): {}",
                crate::desktop::problem_prefix(what),
                output.exit_code,
                output.stderr_text().trim()
            )));
        }
        Ok(())
    }

    /// Takes the GPU devices out and puts them back: a retry after a failed probe starts
    /// from fresh nodes.
    async fn replug_gpus(&self, name: &str) -> Result<(), StepError> {
        let current = self.lxd.instance(name).await?;
        let mut without = current.value.to_put();
        without.devices.retain(|device, _| !device.starts_with("gpu"));
        self.lxd.update_instance(name, &without, current.etag.as_deref()).await?.wait(Some(OPERATION_TIMEOUT)).await?;
        let back = current.value.to_put();
        self.lxd.update_instance(name, &back, None).await?.wait(Some(OPERATION_TIMEOUT)).await?;
        Ok(())
    }

    /// Probes inside that the container sees exactly its GPUs (`guest/gpu-probe.sh`).
    async fn probe_gpus(&self, name: &str, row: &Container, expected: usize, digest: String) -> Result<(), StepError> {
        let kind = if self.layout.gpu.emulated { "emulated" } else { "nvidia" };
        let count = expected.to_string();
        let output = guest::run(&self.lxd, name, Script::GpuProbe, &[&count, kind], &[], ACCOUNT_TIMEOUT).await?;
        let object = format!("{}/{}", row.owner, row.name);
        if output.exit_code == 0 {
            self.handle.set_gpu_health(&row.uid, Some("healthy".into()));
            self.record_tag(name, gpu::devices::TAG_GPU_HEALTH, digest).await?;
            let detail = format!("gpus {expected}");
            self.db.run(move |s| s.log(None, "gpu.healthy", &object, Some(&detail))).await?;
            return Ok(());
        }
        let why = format!("{}{}", output.stdout_text().trim(), output.stderr_text().trim());
        self.handle.set_gpu_health(&row.uid, Some(format!("unhealthy: {why}")));
        let detail = why.clone();
        self.db.run(move |s| s.log(None, "gpu.unhealthy", &object, Some(&detail))).await?;
        Err(StepError::Other(format!("GPU health probe failed ({why}); its GPUs are re-plugged and probed again")))
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
        let output = match guest::run(&self.lxd, name, Script::HostKey, &[], &[], ACCOUNT_TIMEOUT).await {
            Ok(output) if output.exit_code == 0 => output,
            Ok(output) => {
                return tracing::debug!("{}/{} has no sshd host key (exit {})", row.owner, row.name, output.exit_code)
            }
            Err(e) => return tracing::warn!("reading {}/{}'s host key: {e}", row.owner, row.name),
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
        let stdin = instance::authorized_keys(&extra.keys);
        let args = instance::account_args(row, &extra.groups);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = guest::run(&self.lxd, name, Script::Account, &args, stdin.as_bytes(), ACCOUNT_TIMEOUT).await?;
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

    /// Waits for the LXD operations that hold instance `name` (tasks: start, stop, update,
    /// snapshot, …; never exec sessions, which hold nothing and may last hours).
    async fn wait_for_operations_on(&self, name: &str) -> Result<(), StepError> {
        self.lxd.wait_for_operations_on(name, OPERATION_TIMEOUT).await?;
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

/// Where a copy's source stands (only copies have one).
fn copy_source(store: &ssp_store::Store, row: &Container) -> ssp_store::Result<CopySource> {
    let ContainerSource::Copy(from) = &row.source else { return Ok(CopySource::None) };
    match store.container_by_uid(from) {
        Ok(source) => Ok(CopySource::From(instance::lxd_name(&source))),
        Err(ssp_store::Error::NotFound { .. }) => Ok(CopySource::Gone),
        Err(e) => Err(e),
    }
}

/// Now, in Unix milliseconds.
fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
