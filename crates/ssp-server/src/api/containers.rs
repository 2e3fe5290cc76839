//! `/api/v1/containers`: users' containers. Handlers record intent in the state database
//! and wake the reconciler, which does the LXD work; they never create or delete in LXD.
//! Someone else's container answers exactly like a missing one.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use futures_util::StreamExt;
use serde::Deserialize;
use ssp_api as api;
use ssp_core::names::Name;
use ssp_core::quota::{self, PartialResources, Resources};
use ssp_core::size::ByteSize;
use ssp_store::{Container, ContainerPhase, NewContainer};

use crate::admission;
use crate::auth::Caller;
use crate::convert;
use crate::error::{ApiError, ApiJson, ApiResult};
use crate::instance;
use crate::AppState;

use super::shared::{view, visible};

/// Filters for the list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// Only this owner's containers (admins; users always see only their own).
    pub owner: Option<String>,
}

/// Lists containers: the caller's own; an admin's view is everyone's (or `?owner=`).
#[utoipa::path(get, path = "/api/v1/containers", tag = "containers", params(ListQuery),
    responses((status = 200, body = [api::Container])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Vec<api::Container>>> {
    let owner = match (caller.is_admin(), query.owner) {
        (true, owner) => owner,
        (false, Some(owner)) if owner != caller.name => return Ok(Json(Vec::new())),
        (false, _) => Some(caller.name.clone()),
    };
    let rows = state
        .db
        .run(move |store| match owner {
            Some(owner) => match store.containers_of(&owner) {
                Err(ssp_store::Error::NotFound { .. }) => Ok(Vec::new()),
                other => other,
            },
            None => store.all_containers(),
        })
        .await?;
    // One LXD call per container for status and addresses, a few at a time.
    let with_addresses = rows.len() <= 100;
    let views: Vec<api::Container> = futures_util::stream::iter(rows)
        .map(|row| {
            let state = state.clone();
            async move { view(&state, &row, with_addresses).await }
        })
        .buffered(8)
        .collect()
        .await;
    Ok(Json(views))
}

fn check_idempotency_key(key: &str) -> ApiResult<String> {
    let ok = !key.is_empty() && key.len() <= 128 && key.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(key.to_string())
    } else {
        Err(ApiError::BadRequest("an idempotency key is 1-128 printable ASCII characters without spaces".into()))
    }
}

/// Records a new container; the reconciler makes it. Repeating a create with the same
/// idempotency key answers with the first one's container (200).
#[utoipa::path(post, path = "/api/v1/containers", tag = "containers", request_body = api::ContainerCreate,
    responses((status = 201, body = api::Container), (status = 200, body = api::Container),
        (status = 400, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(request): ApiJson<api::ContainerCreate>,
) -> ApiResult<(StatusCode, Json<api::Container>)> {
    let owner = match &request.owner {
        Some(owner) if owner != &caller.name => {
            caller.require_admin("create containers for other users")?;
            Name::parse(owner)?
        }
        Some(owner) => Name::parse(owner)?,
        None => Name::parse(&caller.name)?,
    };
    let name = Name::parse(&request.name)?;

    let idempotency_key = match headers.get(api::IDEMPOTENCY_HEADER) {
        Some(value) => Some(check_idempotency_key(
            value.to_str().map_err(|_| ApiError::BadRequest("the Idempotency-Key header must be ASCII".into()))?,
        )?),
        None => request.idempotency_key.as_deref().map(check_idempotency_key).transpose()?,
    };
    let gpus = request.gpus.as_ref().map(super::shared::lease_request).transpose()?;
    let requested = PartialResources {
        cpus: request.cpus,
        memory: request.memory.as_deref().map(ByteSize::parse_nonzero).transpose()?,
        disk: request.disk.as_deref().map(ByteSize::parse_nonzero).transpose()?,
        gpus: None,
    };
    // The default is always the host's image, never a user's image that shares its name.
    let image = match &request.image {
        Some(asked) => super::shared::resolve(&state, &caller, &owner, asked).await?,
        None => super::shared::host_image(&state, state.settings.default_image.as_str()).await?,
    };
    let defaults = state.settings.default_resources;
    let actor = caller.name.clone();
    let desired = convert::store_desired(request.state);
    let (status, row) = state
        .db
        .run(move |store| -> Result<Result<(StatusCode, Container), ApiError>, ssp_store::Error> {
            let user = store.user(owner.as_str())?;
            if let Some(key) = &idempotency_key {
                if let Ok(existing) = store.container(owner.as_str(), name.as_str()) {
                    return Ok(store
                        .create_container(
                            Some(&actor),
                            &NewContainer {
                                owner: owner.clone(),
                                name: name.clone(),
                                image: image.clone(),
                                cpus: existing.cpus,
                                memory: existing.memory,
                                disk: existing.disk,
                                desired_state: desired,
                                idempotency_key: Some(key.clone()),
                                gpus: None,
                            },
                        )
                        .map(|c| (StatusCode::OK, c))
                        .map_err(ApiError::from));
                }
            }
            // A default never asks for more than the whole quota allows.
            let capped = Resources {
                cpus: defaults.cpus.min(user.quota.max_cpus.max(1)),
                memory: defaults.memory.min(user.quota.max_memory.max(quota::MIN_MEMORY)),
                disk: defaults.disk.min(user.quota.max_disk.max(quota::MIN_DISK)),
                gpus: 0,
            };
            let resources = quota::resolve(requested, &capped);
            if let Err(e) = resources.validate() {
                return Ok(Err(ApiError::BadRequest(e.to_string())));
            }
            let new = NewContainer {
                owner: owner.clone(),
                name: name.clone(),
                image: image.clone(),
                cpus: resources.cpus,
                memory: resources.memory,
                disk: resources.disk,
                desired_state: desired,
                idempotency_key: idempotency_key.clone(),
                gpus: gpus.clone(),
            };
            let created =
                admission::admit(store, &owner, &resources, |store| store.create_container(Some(&actor), &new))?;
            Ok(created.map(|c| (StatusCode::CREATED, c)))
        })
        .await??;
    state.reconciler.changed(&row.uid);
    Ok((status, Json(view(&state, &row, false).await)))
}

/// One container, with LXD's status and addresses.
#[utoipa::path(get, path = "/api/v1/containers/{owner}/{name}", tag = "containers", params(WaitQuery),
    responses((status = 200, body = api::Container), (status = 404, body = api::ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path((owner, name)): Path<(String, String)>,
    Query(wait): Query<WaitQuery>,
) -> ApiResult<Json<api::Container>> {
    let Some(target) = wait.wait else {
        let row = visible(&state, &caller, &owner, &name).await?;
        return Ok(Json(view(&state, &row, true).await));
    };
    // Long poll: look again each time the reconciler moves something, not on a timer.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait.timeout.unwrap_or(60).min(300));
    let mut progress = state.reconciler.progress();
    loop {
        progress.borrow_and_update();
        let row = visible(&state, &caller, &owner, &name).await?;
        let current = view(&state, &row, true).await;
        let reached = current.phase == api::Phase::Ready
            && current.converged
            && match target {
                WaitFor::Running => current.status == "Running",
                WaitFor::Stopped => current.status == "Stopped",
            };
        if reached || current.problem.is_some() {
            return Ok(Json(current));
        }
        match tokio::time::timeout_at(deadline, progress.changed()).await {
            Ok(Ok(())) => {}
            _ => return Ok(Json(current)),
        }
    }
}

/// What `GET /api/v1/containers/{owner}/{name}?wait=` waits for.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WaitFor {
    /// Ready and running.
    Running,
    /// Ready and stopped.
    Stopped,
}

/// Optional long poll on a container.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct WaitQuery {
    /// Answer once the container is ready and running (or stopped), or has a problem.
    pub wait: Option<WaitFor>,
    /// Longest wait in seconds (default 60, at most 300); the current state is answered then.
    pub timeout: Option<u64>,
}

/// Marks a container for deletion; it answers 404 once the reconciler has removed it.
#[utoipa::path(delete, path = "/api/v1/containers/{owner}/{name}", tag = "containers",
    responses((status = 202, body = api::Container), (status = 404, body = api::ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path((owner, name)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<api::Container>)> {
    let row = visible(&state, &caller, &owner, &name).await?;
    let uid = row.uid.clone();
    let actor = caller.name.clone();
    state
        .db
        .run(move |store| {
            store.log(Some(&actor), "container.delete", &format!("{owner}/{name}"), None)?;
            store.set_phase_of(&uid, ContainerPhase::Deleting)
        })
        .await?;
    state.reconciler.wake();
    let mut answer = convert::container(&row, None, Vec::new(), None);
    answer.phase = api::Phase::Deleting;
    Ok((StatusCode::ACCEPTED, Json(answer)))
}

/// Sets whether the container should run; the reconciler starts or stops it.
#[utoipa::path(put, path = "/api/v1/containers/{owner}/{name}/state", tag = "containers",
    request_body = api::StateChange,
    responses((status = 202, body = api::Container), (status = 404, body = api::ErrorBody)))]
pub async fn set_state(
    State(state): State<AppState>,
    caller: Caller,
    Path((owner, name)): Path<(String, String)>,
    ApiJson(change): ApiJson<api::StateChange>,
) -> ApiResult<(StatusCode, Json<api::Container>)> {
    let row = visible(&state, &caller, &owner, &name).await?;
    if row.phase == ContainerPhase::Deleting {
        return Err(ApiError::Conflict(format!("container {owner}/{name} is being deleted")));
    }
    let actor = caller.name.clone();
    let desired = convert::store_desired(change.state);
    let row = state
        .db
        .run(move |store| {
            store.set_desired_state(Some(&actor), &owner, &name, desired)?;
            store.container(&owner, &name)
        })
        .await?;
    state.reconciler.changed(&row.uid);
    Ok((StatusCode::ACCEPTED, Json(view(&state, &row, false).await)))
}

/// Restarts a running container (an action, not a state: done at once).
///
/// While another LXD operation holds the container, waits for it (up to 30 s), then answers
/// 409 with code `busy`.
#[utoipa::path(post, path = "/api/v1/containers/{owner}/{name}/restart", tag = "containers",
    responses((status = 202, body = api::Container), (status = 404, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
pub async fn restart(
    State(state): State<AppState>,
    caller: Caller,
    Path((owner, name)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<api::Container>)> {
    let row = visible(&state, &caller, &owner, &name).await?;
    if row.phase != ContainerPhase::Ready || row.desired_state != ssp_store::DesiredState::Running {
        return Err(ApiError::Conflict(format!(
            "container {owner}/{name} is not running; start it instead (ssp container start)"
        )));
    }
    let lxd_name = instance::lxd_name(&row);
    let object = format!("{owner}/{name}");
    // A restart stops, then starts: a reconciler pass in between would see it stopped and
    // start it too, and LXD then fails the restart ("Failed stopping instance, status is
    // Running"). Keep the reconciler off it meanwhile, once its work in flight is done.
    let Ok(_hold) = tokio::time::timeout(instance::BUSY_PATIENCE, state.reconciler_pass.hold(&row.uid)).await else {
        return Err(ApiError::Busy(format!("{object} is busy: ssp is still working on it; try again in a moment")));
    };
    let restart = |force: bool| {
        let (lxd, lxd_name) = (&state.lxd, &lxd_name);
        lxd.when_idle(lxd_name, instance::BUSY_PATIENCE, move || {
            lxd.restart_instance(lxd_name, Duration::from_secs(30), force)
        })
    };
    match restart(false).await {
        Ok(()) => {}
        Err(e) if e.is_busy() => return Err(ApiError::lxd_on(&object, e)),
        // A clean restart failed (its shutdown timed out, most often): force it.
        Err(e) => {
            tracing::info!(container = %object, "clean restart failed, forcing it: {e}");
            restart(true).await.map_err(|e| ApiError::lxd_on(&object, e))?;
        }
    }
    // Ready means ready: the executor brings it back to usable (its GPUs probed again after
    // the new start, anything that drifted meanwhile put back) before the answer.
    state.reconciler.changed(&row.uid);
    state.reconciler_pass.converge_held(&row.uid).await?;
    let actor = caller.name.clone();
    state.db.run(move |store| store.log(Some(&actor), "container.restart", &object, None)).await?;
    Ok((StatusCode::ACCEPTED, Json(view(&state, &row, false).await)))
}

fn check_environment(environment: &BTreeMap<String, String>) -> ApiResult<()> {
    for (key, value) in environment {
        let ok = !key.is_empty()
            && key.len() <= 128
            && !key.as_bytes()[0].is_ascii_digit()
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !ok || value.contains('\0') {
            return Err(ApiError::BadRequest(format!(
                "environment variable {key:?}: names are letters, digits and '_' (not starting with a digit), values have no NUL"
            )));
        }
    }
    Ok(())
}

/// Runs a command in the container and waits for it: as the owner's account, or as root.
#[utoipa::path(post, path = "/api/v1/containers/{owner}/{name}/exec", tag = "containers",
    request_body = api::ExecRequest,
    responses((status = 200, body = api::ExecResult), (status = 404, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
pub async fn exec(
    State(state): State<AppState>,
    caller: Caller,
    Path((owner, name)): Path<(String, String)>,
    ApiJson(request): ApiJson<api::ExecRequest>,
) -> ApiResult<Json<api::ExecResult>> {
    let row = visible(&state, &caller, &owner, &name).await?;
    if request.command.is_empty() || request.command.iter().any(|arg| arg.contains('\0')) {
        return Err(ApiError::BadRequest("command must be a non-empty list of arguments without NUL bytes".into()));
    }
    check_environment(&request.environment)?;
    let stdin = match &request.stdin_base64 {
        Some(text) => STANDARD.decode(text).map_err(|_| ApiError::BadRequest("stdin_base64 is not base64".into()))?,
        None => Vec::new(),
    };
    if row.phase != ContainerPhase::Ready {
        return Err(ApiError::Conflict(format!("container {owner}/{name} is not ready (it is {:?})", row.phase)));
    }
    let mut options = ssp_lxd::ExecOptions::default();
    if !request.root {
        options = instance::owner_exec_options(&row);
    }
    // The caller's variables win, as they did before the account's were factored out.
    options.environment.extend(request.environment.clone());
    let lxd_name = instance::lxd_name(&row);
    let (lxd, on, command, input) = (&state.lxd, lxd_name.as_str(), &request.command, stdin.as_slice());
    let output = lxd
        .when_idle(on, instance::BUSY_PATIENCE, || lxd.exec_output_with(on, command, input, options.clone()))
        .await
        .map_err(|e| match e {
            busy if busy.is_busy() => ApiError::lxd_on(&format!("{owner}/{name}"), busy),
            ssp_lxd::Error::Api { status: 400, .. } => {
                ApiError::Conflict(format!("container {owner}/{name} is not running; start it first ({e})"))
            }
            other => other.into(),
        })?;
    let object = format!("{}/{}", row.owner, row.name);
    let detail = format!("exit {}", output.exit_code);
    let actor = caller.name.clone();
    state.db.run(move |store| store.log(Some(&actor), "container.exec", &object, Some(&detail))).await?;
    Ok(Json(api::ExecResult {
        exit_code: output.exit_code,
        stdout_base64: STANDARD.encode(&output.stdout),
        stderr_base64: STANDARD.encode(&output.stderr),
    }))
}
