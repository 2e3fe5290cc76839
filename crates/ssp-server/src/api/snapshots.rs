//! `/api/v1/containers/{owner}/{name}/snapshots` and `/schedule`: snapshots of a container
//! (take, list, protect, delete, restore) and its schedule; `/api/v1/snapshots/run` runs
//! the scheduler once (admin). Someone else's container answers like a missing one.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use ssp_api as api;
use ssp_core::names::Name;
use ssp_core::retention::{self, Policy};

use crate::api::shared::visible;
use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiResult};
use crate::storage::snapshots;
use crate::AppState;

/// Checks a snapshot name a person gives: an object name, not in the schedule's namespace.
fn snapshot_name(name: &str) -> ApiResult<Name> {
    let name = Name::parse(name)?;
    if name.as_str().starts_with(retention::SCHEDULED_PREFIX) {
        return Err(ApiError::BadRequest(format!(
            "snapshot names starting with {:?} are the schedule's; choose another",
            retention::SCHEDULED_PREFIX
        )));
    }
    Ok(name)
}

async fn find(state: &AppState, row: &ssp_store::Container, name: &str) -> ApiResult<api::Snapshot> {
    snapshots::list(state, row)
        .await?
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| ApiError::not_found("snapshot", &format!("{}/{}@{name}", row.owner, row.name)))
}

/// Lists a container's snapshots, oldest first.
#[utoipa::path(get, path = "/api/v1/containers/{owner}/{name}/snapshots", tag = "snapshots",
    responses((status = 200, body = [api::Snapshot]), (status = 404, body = api::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path((owner, name)): Path<(String, String)>,
) -> ApiResult<Json<Vec<api::Snapshot>>> {
    let row = visible(&state, &caller, &owner, &name).await?;
    Ok(Json(snapshots::list(&state, &row).await?))
}

/// Takes a snapshot now (protected from retention unless `protected: false`).
#[utoipa::path(post, path = "/api/v1/containers/{owner}/{name}/snapshots", tag = "snapshots",
    request_body = api::SnapshotCreate,
    responses((status = 201, body = api::Snapshot), (status = 400, body = api::ErrorBody),
        (status = 404, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path((owner, name)): Path<(String, String)>,
    ApiJson(request): ApiJson<api::SnapshotCreate>,
) -> ApiResult<(StatusCode, Json<api::Snapshot>)> {
    let row = visible(&state, &caller, &owner, &name).await?;
    let snapshot = match &request.name {
        Some(given) => snapshot_name(given)?.to_string(),
        None => retention::scheduled_name(snapshots::now()).replacen(retention::SCHEDULED_PREFIX, "snap-", 1),
    };
    if row.phase != ssp_store::ContainerPhase::Ready {
        return Err(ApiError::Conflict(format!("container {owner}/{name} is not ready; wait for it")));
    }
    if snapshots::list(&state, &row).await?.iter().any(|s| s.name == snapshot) {
        return Err(ApiError::Conflict(format!("snapshot {owner}/{name}@{snapshot} already exists")));
    }
    snapshots::take(&state, &row, &snapshot, request.protected.unwrap_or(true), false, Some(caller.name.clone()))
        .await?;
    Ok((StatusCode::CREATED, Json(find(&state, &row, &snapshot).await?)))
}

/// Protects a snapshot from retention, or unprotects it.
#[utoipa::path(patch, path = "/api/v1/containers/{owner}/{name}/snapshots/{snapshot}", tag = "snapshots",
    request_body = api::SnapshotUpdate,
    responses((status = 200, body = api::Snapshot), (status = 404, body = api::ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path((owner, name, snapshot)): Path<(String, String, String)>,
    ApiJson(request): ApiJson<api::SnapshotUpdate>,
) -> ApiResult<Json<api::Snapshot>> {
    let row = visible(&state, &caller, &owner, &name).await?;
    let snapshot = Name::parse(&snapshot)?.to_string();
    find(&state, &row, &snapshot).await?;
    let (uid, actor, target) = (row.uid.clone(), caller.name.clone(), snapshot.clone());
    state.db.run(move |s| s.set_snapshot_protected(Some(&actor), &uid, &target, request.protected)).await?;
    Ok(Json(find(&state, &row, &snapshot).await?))
}

/// Deletes a snapshot.
#[utoipa::path(delete, path = "/api/v1/containers/{owner}/{name}/snapshots/{snapshot}", tag = "snapshots",
    responses((status = 204), (status = 404, body = api::ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path((owner, name, snapshot)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let row = visible(&state, &caller, &owner, &name).await?;
    let snapshot = Name::parse(&snapshot)?.to_string();
    find(&state, &row, &snapshot).await?;
    snapshots::delete(&state, &row, &snapshot, Some(caller.name.clone())).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Restores the container to a snapshot: stopped, restored, ssp's config put back, started
/// again if it should run. Files changed since the snapshot are gone.
#[utoipa::path(post, path = "/api/v1/containers/{owner}/{name}/snapshots/{snapshot}/restore", tag = "snapshots",
    responses((status = 200, body = api::Snapshot), (status = 404, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
pub async fn restore(
    State(state): State<AppState>,
    caller: Caller,
    Path((owner, name, snapshot)): Path<(String, String, String)>,
) -> ApiResult<Json<api::Snapshot>> {
    let row = visible(&state, &caller, &owner, &name).await?;
    let snapshot = Name::parse(&snapshot)?.to_string();
    let found = find(&state, &row, &snapshot).await?;
    if row.phase != ssp_store::ContainerPhase::Ready {
        return Err(ApiError::Conflict(format!("container {owner}/{name} is not ready; wait for it")));
    }
    snapshots::restore(&state, &row, &snapshot, Some(caller.name.clone())).await?;
    Ok(Json(found))
}

/// The container's snapshot schedule.
#[utoipa::path(get, path = "/api/v1/containers/{owner}/{name}/schedule", tag = "snapshots",
    responses((status = 200, body = api::SnapshotSchedule), (status = 404, body = api::ErrorBody)))]
pub async fn schedule(
    State(state): State<AppState>,
    caller: Caller,
    Path((owner, name)): Path<(String, String)>,
) -> ApiResult<Json<api::SnapshotSchedule>> {
    let row = visible(&state, &caller, &owner, &name).await?;
    let uid = row.uid.clone();
    let schedule = state.db.run(move |s| s.schedule_of(&uid)).await?;
    let schedule = schedule.ok_or_else(|| ApiError::not_found("snapshot schedule of", &format!("{owner}/{name}")))?;
    Ok(Json(api::SnapshotSchedule {
        every_secs: schedule.every_secs,
        keep_last: schedule.policy.last,
        keep_daily: schedule.policy.daily,
        keep_weekly: schedule.policy.weekly,
        last_run_at: schedule.last_run_at,
    }))
}

/// Sets the container's snapshot schedule and retention policy.
#[utoipa::path(put, path = "/api/v1/containers/{owner}/{name}/schedule", tag = "snapshots",
    request_body = api::SnapshotSchedule,
    responses((status = 200, body = api::SnapshotSchedule), (status = 400, body = api::ErrorBody), (status = 404, body = api::ErrorBody)))]
pub async fn set_schedule(
    State(state): State<AppState>,
    caller: Caller,
    Path((owner, name)): Path<(String, String)>,
    ApiJson(request): ApiJson<api::SnapshotSchedule>,
) -> ApiResult<Json<api::SnapshotSchedule>> {
    let row = visible(&state, &caller, &owner, &name).await?;
    let policy = Policy { last: request.keep_last, daily: request.keep_daily, weekly: request.keep_weekly };
    policy.validate().map_err(|e| ApiError::BadRequest(e.to_string()))?;
    retention::validate_interval(request.every_secs).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let (uid, actor) = (row.uid.clone(), caller.name.clone());
    // The worker's next round takes the first snapshot (it is due at once).
    state.db.run(move |s| s.set_schedule(Some(&actor), &uid, request.every_secs, &policy)).await?;
    schedule(State(state), caller, Path((owner, name))).await
}

/// Removes the container's schedule (its snapshots stay).
#[utoipa::path(delete, path = "/api/v1/containers/{owner}/{name}/schedule", tag = "snapshots",
    responses((status = 204), (status = 404, body = api::ErrorBody)))]
pub async fn remove_schedule(
    State(state): State<AppState>,
    caller: Caller,
    Path((owner, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let row = visible(&state, &caller, &owner, &name).await?;
    let (uid, actor) = (row.uid.clone(), caller.name.clone());
    if !state.db.run(move |s| s.remove_schedule(Some(&actor), &uid)).await? {
        return Err(ApiError::not_found("snapshot schedule of", &format!("{owner}/{name}")));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Runs the snapshot scheduler once now: takes what is due, prunes by each policy (admin).
#[utoipa::path(post, path = "/api/v1/snapshots/run", tag = "snapshots",
    responses((status = 200, body = api::ScheduleReport), (status = 403, body = api::ErrorBody)))]
pub async fn run(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<api::ScheduleReport>> {
    caller.require_admin("run the snapshot scheduler")?;
    Ok(Json(state.storage.round(&state).await))
}
