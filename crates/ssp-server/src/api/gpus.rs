//! `/api/v1/gpus` and a container's GPUs: who holds what and how busy it is, grants
//! (attach) and detaches, the admin's marks (shared, reserved) and allowlists, and usage per
//! container and per user.
//!
//! Grants are decided by the store in one transaction (`ssp_core::gpu::allocate`); handlers
//! only parse, authorize, and wake the reconciler, which plugs or unplugs the devices.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Path, Query, State};
use axum::Json;
use ssp_api as api;
use ssp_core::names::Name;
use ssp_core::size::ByteSize;

use super::shared::{lease_request, visible};
use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiResult};
use crate::{gpu, instance, AppState};

/// Which container each LXD instance is (`owner/name`), to place GPU processes.
async fn containers_by_instance(state: &AppState) -> ApiResult<BTreeMap<String, String>> {
    let rows = state.db.run(|s| s.all_containers()).await?;
    Ok(rows.iter().map(|row| (instance::lxd_name(row), format!("{}/{}", row.owner, row.name))).collect())
}

fn owner_of(container: &str) -> &str {
    container.split_once('/').map_or(container, |(owner, _)| owner)
}

/// The host's GPUs: who holds each, and how busy it is at the last sample. Everyone sees
/// which user holds a GPU (that is what sharing a server needs); container names and
/// processes are shown for the caller's own containers (all of them to admins).
#[utoipa::path(get, path = "/api/v1/gpus", tag = "gpus", responses((status = 200, body = api::GpuList)))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<api::GpuList>> {
    let gpus = state.db.run(|s| s.gpus()).await?;
    let (samples, sampled_at) = state.gpus.samples();
    let placed = gpu::place_processes(&samples, &containers_by_instance(&state).await?, std::path::Path::new("/proc"));
    let sees = |owner: &str| caller.is_admin() || caller.name == owner;
    let list = gpus
        .into_iter()
        .map(|g| {
            let sample = samples.iter().find(|s| s.index == g.record.index);
            let processes = sample
                .map(|s| {
                    s.processes
                        .iter()
                        .map(|p| api::GpuProcess {
                            pid: p.pid,
                            memory: p.memory,
                            container: placed.get(&p.pid).cloned().flatten(),
                        })
                        .filter(|p| caller.is_admin() || p.container.as_deref().is_some_and(|c| sees(owner_of(c))))
                        .collect()
                })
                .unwrap_or_default();
            api::Gpu {
                index: g.record.index,
                uuid: g.record.uuid,
                model: g.record.model,
                memory: ByteSize::from_bytes(g.record.memory).to_string(),
                pci: g.record.pci,
                emulated: g.record.emulated,
                shared: g.shared,
                reserved_for: g.reserved_for,
                holders: g
                    .leases
                    .iter()
                    .map(|l| api::GpuHolder {
                        owner: l.owner.clone(),
                        container: sees(&l.owner).then(|| format!("{}/{}", l.owner, l.container)),
                        granted_at: l.granted_at,
                        expires_at: l.expires_at,
                    })
                    .collect(),
                utilization: sample.map_or(0, |s| s.utilization),
                memory_used: sample.map_or(0, |s| s.memory_used),
                processes,
            }
        })
        .collect();
    Ok(Json(api::GpuList { source: state.gpus.kind().into(), sampled_at, gpus: list }))
}

/// GPU use per container (its GPUs, and the memory and processes found in it) and per user
/// (GPUs held, GPU-hours over all leases, memory and processes now). Admins see everyone.
#[utoipa::path(get, path = "/api/v1/gpus/usage", tag = "gpus", responses((status = 200, body = api::GpuUsage)))]
pub async fn usage(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<api::GpuUsage>> {
    let (leases, hours) = state.db.run(|s| Ok((s.active_leases()?, s.gpu_hours()?))).await?;
    let (samples, _) = state.gpus.samples();
    let placed = gpu::place_processes(&samples, &containers_by_instance(&state).await?, std::path::Path::new("/proc"));
    let sees = |owner: &str| caller.is_admin() || caller.name == owner;
    let mut containers: BTreeMap<String, api::ContainerGpuUsage> = BTreeMap::new();
    for lease in &leases {
        let key = format!("{}/{}", lease.owner, lease.container);
        containers
            .entry(key.clone())
            .or_insert_with(|| api::ContainerGpuUsage {
                container: key,
                gpus: Vec::new(),
                memory_used: 0,
                processes: Vec::new(),
            })
            .gpus
            .push(lease.gpu);
    }
    for process in samples.iter().flat_map(|s| &s.processes) {
        let Some(Some(container)) = placed.get(&process.pid) else { continue };
        let entry = containers.entry(container.clone()).or_insert_with(|| api::ContainerGpuUsage {
            container: container.clone(),
            gpus: Vec::new(),
            memory_used: 0,
            processes: Vec::new(),
        });
        entry.memory_used += process.memory;
        entry.processes.push(api::GpuProcess {
            pid: process.pid,
            memory: process.memory,
            container: Some(container.clone()),
        });
    }
    let containers: Vec<api::ContainerGpuUsage> =
        containers.into_values().filter(|c| sees(owner_of(&c.container))).collect();
    let mut users: BTreeMap<String, api::UserGpuUsage> = hours
        .into_iter()
        .map(|h| {
            (
                h.user.clone(),
                api::UserGpuUsage {
                    user: h.user,
                    holding: h.holding,
                    gpu_hours: h.hours,
                    memory_used: 0,
                    processes: 0,
                },
            )
        })
        .collect();
    for container in &containers {
        let owner = owner_of(&container.container).to_string();
        let entry = users.entry(owner.clone()).or_insert_with(|| api::UserGpuUsage {
            user: owner,
            holding: 0,
            gpu_hours: 0.0,
            memory_used: 0,
            processes: 0,
        });
        entry.memory_used += container.memory_used;
        entry.processes += u32::try_from(container.processes.len()).unwrap_or(u32::MAX);
    }
    let users = users.into_values().filter(|u| sees(&u.user)).collect();
    Ok(Json(api::GpuUsage { containers, users }))
}

/// How `GET /api/v1/gpus/history` sums samples up.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
pub struct HistoryQuery {
    /// Bucket length in seconds, 10 to 600 (default 60: one bucket a minute).
    pub bucket_secs: Option<i64>,
}

/// Each GPU's utilization and memory over the last hour, in buckets (anyone signed in: the
/// GPU list and its telemetry are the lab's common knowledge; which processes and
/// containers use them is in `/gpus/usage`, per caller).
#[utoipa::path(get, path = "/api/v1/gpus/history", tag = "gpus", params(HistoryQuery),
    responses((status = 200, body = api::GpuHistory), (status = 400, body = api::ErrorBody)))]
pub async fn history(
    State(state): State<AppState>,
    _caller: Caller,
    Query(query): Query<HistoryQuery>,
) -> ApiResult<Json<api::GpuHistory>> {
    let bucket_secs = query.bucket_secs.unwrap_or(60);
    if !(10..=600).contains(&bucket_secs) {
        return Err(ApiError::BadRequest(format!("bucket_secs must be 10 to 600 seconds, not {bucket_secs}")));
    }
    let until = gpu::unix_now();
    let gpus = state
        .gpus
        .history(until, bucket_secs)
        .into_iter()
        .map(|(index, buckets)| api::GpuHistorySeries {
            index,
            buckets: buckets
                .into_iter()
                .map(|b| api::GpuHistoryBucket {
                    start: b.start,
                    utilization_avg: b.utilization_avg,
                    utilization_max: b.utilization_max,
                    memory_used_max: b.memory_used_max,
                })
                .collect(),
        })
        .collect();
    Ok(Json(api::GpuHistory { until, window_secs: gpu::history::WINDOW_SECS, bucket_secs, gpus }))
}

/// Whether a change's answer waits until LXD has it (the default) or comes once it is
/// recorded (`?wait=false`, for scripts that want to go on).
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
pub struct ChangeWait {
    /// `false`: answer once recorded, without waiting for the container to have it.
    pub wait: Option<bool>,
}

impl ChangeWait {
    /// Has the reconciler's executor converge the container now (waiting for it) or later.
    async fn apply(&self, state: &AppState, uid: &str) -> ApiResult<()> {
        state.reconciler.changed(uid);
        if self.wait != Some(false) {
            state.reconciler_pass.converge_now(uid).await?;
        }
        Ok(())
    }
}

/// Grants GPUs to a container, running or not: they are plugged in at once (hot-plug), and
/// the answer comes once the container has them (unless `?wait=false`).
#[utoipa::path(post, path = "/api/v1/containers/{owner}/{name}/gpus", tag = "gpus", request_body = api::GpuAsk, params(ChangeWait),
    responses((status = 200, body = api::GpuGrant), (status = 400, body = api::ErrorBody),
        (status = 404, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
pub async fn attach(
    State(state): State<AppState>,
    caller: Caller,
    Path((owner, name)): Path<(String, String)>,
    Query(wait): Query<ChangeWait>,
    ApiJson(ask): ApiJson<api::GpuAsk>,
) -> ApiResult<Json<api::GpuGrant>> {
    let row = visible(&state, &caller, &owner, &name).await?;
    let grant = lease_request(&ask)?;
    if state.gpus.kind() == "none" {
        return Err(ApiError::Conflict("this host has no GPUs".into()));
    }
    let (actor, uid) = (caller.name.clone(), row.uid.clone());
    let expires_at = grant.expires_at;
    let (granted, holds) = state
        .db
        .run(move |s| {
            let granted = s.grant_gpus(Some(&actor), &uid, &grant.request, grant.expires_at)?;
            let holds = s.leases_of(&uid)?.into_iter().map(|l| l.gpu).collect();
            Ok((granted, holds))
        })
        .await?;
    wait.apply(&state, &row.uid).await?;
    Ok(Json(api::GpuGrant { granted, holds, expires_at }))
}

/// Detaches GPU `index` from a container; the container keeps running. The answer comes
/// once the device is gone from it (unless `?wait=false`).
#[utoipa::path(delete, path = "/api/v1/containers/{owner}/{name}/gpus/{index}", tag = "gpus", params(ChangeWait),
    responses((status = 204), (status = 404, body = api::ErrorBody)))]
pub async fn detach(
    State(state): State<AppState>,
    caller: Caller,
    Path((owner, name, index)): Path<(String, String, u32)>,
    Query(wait): Query<ChangeWait>,
) -> ApiResult<axum::http::StatusCode> {
    let row = visible(&state, &caller, &owner, &name).await?;
    let (actor, uid) = (caller.name.clone(), row.uid.clone());
    if !state.db.run(move |s| s.end_lease(Some(&actor), &uid, index, "detach")).await? {
        return Err(ApiError::NotFound(format!("container {owner}/{name} does not hold GPU {index}")));
    }
    wait.apply(&state, &row.uid).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// Marks a GPU shared or exclusive, and reserves it for one user or lifts that (admin).
#[utoipa::path(patch, path = "/api/v1/gpus/{index}", tag = "gpus", request_body = api::GpuUpdate,
    responses((status = 204), (status = 403, body = api::ErrorBody), (status = 404, body = api::ErrorBody),
        (status = 409, body = api::ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(index): Path<u32>,
    ApiJson(update): ApiJson<api::GpuUpdate>,
) -> ApiResult<axum::http::StatusCode> {
    caller.require_admin("mark or reserve GPUs")?;
    let reserve = match update.reserved_for.as_deref() {
        None => None,
        Some("") => Some(None),
        Some(user) => Some(Some(Name::parse(user)?.as_str().to_string())),
    };
    let actor = caller.name.clone();
    state
        .db
        .run(move |s| s.set_gpu(Some(&actor), index, update.shared, reserve.as_ref().map(|r| r.as_deref())))
        .await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// Sets which GPUs (indices) or models a user may be given (admin); absent lists mean any.
#[utoipa::path(put, path = "/api/v1/users/{user}/gpu-allowlist", tag = "gpus", request_body = api::GpuAllowlist,
    responses((status = 204), (status = 400, body = api::ErrorBody), (status = 403, body = api::ErrorBody),
        (status = 404, body = api::ErrorBody)))]
pub async fn allowlist(
    State(state): State<AppState>,
    caller: Caller,
    Path(user): Path<String>,
    ApiJson(list): ApiJson<api::GpuAllowlist>,
) -> ApiResult<axum::http::StatusCode> {
    caller.require_admin("set GPU allowlists")?;
    let user = Name::parse(&user)?;
    let indices: Option<BTreeSet<u32>> = list.indices.map(|i| i.into_iter().collect());
    let models: Option<BTreeSet<String>> = match list.models {
        Some(models) => {
            for model in &models {
                let plain = !model.is_empty()
                    && model.len() <= 64
                    && model.chars().all(|c| c.is_ascii_alphanumeric() || " -_.[]()/".contains(c));
                if !plain {
                    return Err(ApiError::BadRequest(format!(
                        "GPU model {model:?} is not valid: 1-64 letters, digits, spaces and -_.[]()/"
                    )));
                }
            }
            Some(models.into_iter().collect())
        }
        None => None,
    };
    let actor = caller.name.clone();
    state.db.run(move |s| s.set_gpu_allowlist(Some(&actor), user.as_str(), indices.as_ref(), models.as_ref())).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}
