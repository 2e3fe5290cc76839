//! Snapshots in LXD: take, list, delete, restore, and the schedules.
//!
//! A snapshot is an action, like a restart, not a level state: it is done at once through
//! LXD, and its row (protection, scheduled or not) is written right after LXD made it. A
//! snapshot LXD has without a row (a crash between the two, or one made by hand) is listed
//! and treated as protected, so retention never prunes what ssp cannot account for.
//!
//! Restore holds the container away from the reconciler's loop, stops it, restores, and
//! has the reconciler's executor converge it while still held: it puts back ssp's own config
//! and devices (LXD restores the snapshot's, which may predate a share, a GPU or a fix of
//! drift), and only then starts it again — restore writes no config of its own.

use std::collections::HashMap;
use std::time::Duration;

use ssp_api as api;
use ssp_core::retention;
use ssp_store::Container;

use super::StorageError;
use crate::instance;
use crate::AppState;

const TIMEOUT: Duration = Duration::from_secs(300);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The snapshots of `row` as LXD has them, with what ssp recorded.
pub async fn list(state: &AppState, row: &Container) -> Result<Vec<api::Snapshot>, StorageError> {
    let found = state.lxd.snapshots(&instance::lxd_name(row)).await?;
    let uid = row.uid.clone();
    let rows: HashMap<String, ssp_store::SnapshotRow> =
        state.db.run(move |s| s.snapshots_of(&uid)).await?.into_iter().map(|r| (r.name.clone(), r)).collect();
    let mut out: Vec<api::Snapshot> = found
        .into_iter()
        .map(|snapshot| {
            let known = rows.get(&snapshot.name);
            api::Snapshot {
                protected: known.is_none_or(|r| r.protected),
                scheduled: known.is_some_and(|r| r.scheduled),
                created_at: snapshot.created_at,
                name: snapshot.name,
            }
        })
        .collect();
    out.sort_by(|a, b| (&a.created_at, &a.name).cmp(&(&b.created_at, &b.name)));
    Ok(out)
}

/// Takes snapshot `name` of `row` and records it.
pub async fn take(
    state: &AppState,
    row: &Container,
    name: &str,
    protected: bool,
    scheduled: bool,
    actor: Option<String>,
) -> Result<(), StorageError> {
    let lxd_name = instance::lxd_name(row);
    let (lxd, on) = (&state.lxd, lxd_name.as_str());
    lxd.when_idle(on, instance::BUSY_PATIENCE, || async move {
        lxd.create_snapshot(on, name).await?.wait(Some(TIMEOUT)).await
    })
    .await
    .map_err(StorageError::lxd_on(row))?;
    let (uid, name) = (row.uid.clone(), name.to_string());
    state.db.run(move |s| s.record_snapshot(actor.as_deref(), &uid, &name, protected, scheduled)).await?;
    Ok(())
}

/// Deletes snapshot `name` of `row` (gone already is fine) and forgets it.
pub async fn delete(state: &AppState, row: &Container, name: &str, actor: Option<String>) -> Result<(), StorageError> {
    let lxd_name = instance::lxd_name(row);
    let (lxd, on) = (&state.lxd, lxd_name.as_str());
    let deleted = lxd
        .when_idle(on, instance::BUSY_PATIENCE, || async move {
            lxd.delete_snapshot(on, name).await?.wait(Some(TIMEOUT)).await
        })
        .await;
    match deleted {
        Ok(_) => {}
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(StorageError::lxd_on(row)(e)),
    }
    let (uid, name) = (row.uid.clone(), name.to_string());
    state.db.run(move |s| s.forget_snapshot(actor.as_deref(), &uid, &name)).await?;
    Ok(())
}

/// Restores `row` to snapshot `name`: stop, restore, then converge (repair, start, account).
pub async fn restore(state: &AppState, row: &Container, name: &str, actor: Option<String>) -> Result<(), StorageError> {
    let _hold = state.reconciler_pass.hold(&row.uid).await;
    let lxd_name = instance::lxd_name(row);
    let busy = StorageError::lxd_on(row);
    let (lxd, on) = (&state.lxd, lxd_name.as_str());
    let stop =
        |force: bool| lxd.when_idle(on, instance::BUSY_PATIENCE, move || lxd.stop_instance(on, STOP_TIMEOUT, force));
    let current = state.lxd.instance(&lxd_name).await?.value;
    if current.status != "Stopped" {
        match stop(false).await {
            Ok(()) => {}
            Err(e) if e.is_busy() => return Err(busy(e)),
            // The clean stop timed out: force it.
            Err(_) => stop(true).await.map_err(&busy)?,
        }
    }
    lxd.when_idle(on, instance::BUSY_PATIENCE, || async move {
        lxd.restore_snapshot(on, name).await?.wait(Some(TIMEOUT)).await
    })
    .await
    .map_err(&busy)?;
    // LXD brought back the snapshot's config and devices (which may predate a share, a GPU
    // or a fix of drift): the reconciler's executor — the one writer of ssp's config — puts
    // ssp's back, starts it if it should run, and sets up the account and GPUs again, while
    // this restore still holds it.
    state.reconciler_pass.converge_held(&row.uid).await?;
    let object = format!("{}/{}@{name}", row.owner, row.name);
    state.db.run(move |s| s.log(actor.as_deref(), "snapshot.restore", &object, None)).await?;
    Ok(())
}

/// One scheduler round: takes the snapshots that are due and prunes by each policy.
pub async fn run_schedules(state: &AppState) -> api::ScheduleReport {
    let mut report = api::ScheduleReport::default();
    let schedules = match state
        .db
        .run(|store| {
            let rows: HashMap<String, Container> =
                store.all_containers()?.into_iter().map(|c| (c.uid.clone(), c)).collect();
            Ok(store
                .all_schedules()?
                .into_iter()
                .filter_map(|(uid, s)| rows.get(&uid).cloned().map(|r| (r, s)))
                .collect::<Vec<_>>())
        })
        .await
    {
        Ok(schedules) => schedules,
        Err(e) => {
            tracing::warn!("snapshot schedules: {e}");
            report.failed += 1;
            return report;
        }
    };
    for (row, schedule) in schedules {
        if row.phase != ssp_store::ContainerPhase::Ready {
            continue;
        }
        match run_one(state, &row, &schedule).await {
            Ok((taken, pruned)) => {
                report.taken += u32::from(taken);
                report.pruned += pruned;
            }
            Err(e) => {
                tracing::warn!(container = %format!("{}/{}", row.owner, row.name), "snapshot schedule: {e}");
                report.failed += 1;
            }
        }
    }
    report
}

async fn run_one(
    state: &AppState,
    row: &Container,
    schedule: &ssp_store::Schedule,
) -> Result<(bool, u32), StorageError> {
    let now = now();
    let mut taken = false;
    if retention::due(schedule.every_secs, schedule.last_run_at, now) {
        let name = retention::scheduled_name(now);
        let exists = state.lxd.snapshots(&instance::lxd_name(row)).await?.iter().any(|s| s.name == name);
        if !exists {
            take(state, row, &name, false, true, None).await?;
            taken = true;
        }
    }
    let found = state.lxd.snapshots(&instance::lxd_name(row)).await?;
    let uid = row.uid.clone();
    let rows = state.db.run(move |s| s.snapshots_of(&uid)).await?;
    // Rows whose snapshot LXD no longer has are forgotten.
    for gone in rows.iter().filter(|r| !found.iter().any(|s| s.name == r.name)) {
        let (uid, name) = (row.uid.clone(), gone.name.clone());
        state.db.run(move |s| s.forget_snapshot(None, &uid, &name)).await?;
    }
    let candidates: Vec<retention::Snapshot> = found
        .iter()
        .map(|s| match rows.iter().find(|r| r.name == s.name) {
            Some(r) => retention::Snapshot { name: r.name.clone(), taken_at: r.created_at, protected: r.protected },
            None => retention::Snapshot { name: s.name.clone(), taken_at: 0, protected: true },
        })
        .collect();
    let mut pruned = 0;
    for name in retention::prune(&schedule.policy, &candidates) {
        delete(state, row, &name, None).await?;
        pruned += 1;
    }
    Ok((taken, pruned))
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
