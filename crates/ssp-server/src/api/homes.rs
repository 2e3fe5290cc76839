//! `/api/v1/users/{user}/home`: a user's persistent home volume, mounted at `/home/<user>`
//! in all their containers and kept when containers are deleted. Its size counts against
//! the user's disk quota together with their containers' root disks. Its files can be
//! exported as an archive (LXD's custom volume backup), e.g. before the user is removed.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::Json;
use futures_util::StreamExt;
use ssp_api as api;
use ssp_core::quota::Resources;
use ssp_core::size::ByteSize;
use ssp_store::HomePhase;

use super::shared::{BackupCleanup, BackupOf};
use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiResult};
use crate::storage;
use crate::AppState;

fn wire(home: &ssp_store::Home) -> api::Home {
    api::Home {
        user: home.user.to_string(),
        size: home.size.to_string(),
        phase: match home.phase {
            HomePhase::Creating => "creating",
            HomePhase::Ready => "ready",
            HomePhase::Deleting => "deleting",
        }
        .into(),
        path: storage::homes::mount_path(home.user.as_str()),
        used: None,
    }
}

/// A user's home volume.
#[utoipa::path(get, path = "/api/v1/users/{user}/home", tag = "homes",
    responses((status = 200, body = api::Home), (status = 404, body = api::ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(user): Path<String>,
) -> ApiResult<Json<api::Home>> {
    caller.may_address(&user)?;
    let home = state.db.run(move |s| s.home(&user)).await?;
    let mut answer = wire(&home);
    if let (HomePhase::Ready, Some(context)) = (home.phase, storage::context()) {
        // How full it is, if LXD can say at once; the rest of the answer does not wait on it.
        let volume = storage::homes::volume_name(context, &home);
        let asked = state.lxd.custom_volume_used(&context.pool, &volume);
        match tokio::time::timeout(std::time::Duration::from_secs(2), asked).await {
            Ok(Ok(used)) => answer.used = used.map(|bytes| ssp_core::size::ByteSize::from_bytes(bytes).to_string()),
            Ok(Err(e)) => tracing::debug!("usage of {volume}: {e}"),
            Err(_) => tracing::debug!("usage of {volume}: LXD did not answer in 2 s"),
        }
    }
    Ok(Json(answer))
}

/// Creates the user's home volume (within their disk quota); it is mounted in their
/// containers once made. A container already running sees it after its next restart.
#[utoipa::path(put, path = "/api/v1/users/{user}/home", tag = "homes", request_body = api::HomeCreate,
    responses((status = 201, body = api::Home), (status = 400, body = api::ErrorBody),
        (status = 404, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(user): Path<String>,
    ApiJson(request): ApiJson<api::HomeCreate>,
) -> ApiResult<(StatusCode, Json<api::Home>)> {
    caller.may_address(&user)?;
    let size = ByteSize::parse_nonzero(&request.size)?;
    let context = storage::context().ok_or_else(|| ApiError::Unavailable("storage is not set up".into()))?;
    if !context.delegated {
        return Err(ApiError::Conflict(
            "home volumes need the host's share ids delegated to root (run scripts/up on the host)".into(),
        ));
    }
    let actor = caller.name.clone();
    let home = state
        .db
        .run(move |store| -> Result<Result<ssp_store::Home, ApiError>, ssp_store::Error> {
            let owner = store.user(&user)?;
            let request = Resources { cpus: 0, memory: ByteSize::from_bytes(0), disk: size, gpus: 0 };
            // The home is not a container: count it against the disk limit only.
            let mut limits = owner.quota;
            limits.max_containers = u32::MAX;
            if let Err(refused) = crate::admission::check(store, &owner.name, &limits, &request)? {
                return Ok(Err(refused));
            }
            Ok(store.create_home(Some(&actor), &user, size).map_err(ApiError::from))
        })
        .await??;
    state.storage.wake();
    Ok((StatusCode::CREATED, Json(wire(&home))))
}

/// Deletes the user's home volume and everything on it, once no container mounts it.
#[utoipa::path(delete, path = "/api/v1/users/{user}/home", tag = "homes",
    responses((status = 202, body = api::Home), (status = 404, body = api::ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(user): Path<String>,
) -> ApiResult<(StatusCode, Json<api::Home>)> {
    caller.may_address(&user)?;
    let actor = caller.name.clone();
    let home = state
        .db
        .run(move |s| {
            s.home(&user)?;
            s.set_home_phase(Some(&actor), &user, HomePhase::Deleting)?;
            s.home(&user)
        })
        .await?;
    state.reconciler.wake();
    state.storage.wake();
    Ok((StatusCode::ACCEPTED, Json(wire(&home))))
}

/// An export reads the whole volume.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(3600);

/// Streams the user's home volume as an archive (LXD's portable custom-volume backup,
/// gzip-compressed tar, without snapshots): admins, or the user themself.
#[utoipa::path(get, path = "/api/v1/users/{user}/home/export", tag = "homes",
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>),
        (status = 404, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
pub async fn export(State(state): State<AppState>, caller: Caller, Path(user): Path<String>) -> ApiResult<Response> {
    caller.may_address(&user)?;
    let who = user.clone();
    let home = state.db.run(move |s| s.home(&who)).await?;
    if home.phase != HomePhase::Ready {
        let what = if home.phase == HomePhase::Creating { "is not made yet" } else { "is being deleted" };
        return Err(ApiError::Conflict(format!("the home volume of {user} {what}")));
    }
    let context = storage::context().ok_or_else(|| ApiError::Unavailable("storage is not set up".into()))?;
    let (pool, volume) = (context.pool.clone(), storage::homes::volume_name(context, &home));
    let backup = format!("ssp-export-{}", super::shared::random_hex()?);
    state.lxd.create_volume_backup(&pool, &volume, &backup).await?.wait(Some(EXPORT_TIMEOUT)).await?;
    let cleanup = BackupCleanup {
        lxd: state.lxd.clone(),
        of: BackupOf::Volume { pool: pool.clone(), volume: volume.clone() },
        backup: backup.clone(),
        timeout: EXPORT_TIMEOUT,
    };
    let response = state.lxd.export_volume_backup(&pool, &volume, &backup).await?;
    let length = response.content_length();
    let stream = response.bytes_stream().map(move |chunk| {
        let _until_the_end = &cleanup;
        chunk.map_err(std::io::Error::other)
    });
    let actor = caller.name.clone();
    let object = user.clone();
    state.db.run(move |s| s.log(Some(&actor), "home.export", &object, None)).await?;
    let mut answer = Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_DISPOSITION, format!("attachment; filename=\"{user}-home.tar.gz\""));
    if let Some(length) = length {
        answer = answer.header(header::CONTENT_LENGTH, length);
    }
    answer.body(Body::from_stream(stream)).map_err(|e| ApiError::Internal(e.to_string()))
}
