//! Backups (admins only): a container exported with its snapshots to an archive and
//! imported back, and a consistent copy of ssp's own state database.
//!
//! An archive to import is untrusted input: it is received into a file under the state
//! folder, checked entry by entry (`crate::archive`) and only then handed to LXD, under a
//! name ssp chooses (LXD's `X-LXD-name`), never the one inside the archive. The row is
//! recorded first (quota checked, phase `creating`, source `import`) and held away from the
//! reconciler while LXD imports; then ssp's config and devices replace the archive's and the
//! reconciler keeps it like any other container.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::Json;
use futures_util::StreamExt;
use ssp_api as api;
use ssp_core::archive::Limits;
use ssp_core::names::Name;
use ssp_store::{Container, ContainerPhase, ContainerSource, NewContainer};
use tokio::io::AsyncWriteExt;

use super::shared::{BackupCleanup, BackupOf};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::{archive, attachments, instance, AppState};

const BACKUP_TIMEOUT: Duration = Duration::from_secs(3600);

/// The most an imported archive may hold, unpacked and packed.
const ARCHIVE_LIMITS: Limits = Limits { max_bytes: 256 << 30, max_entries: 20_000_000 };
const MAX_UPLOAD_BYTES: u64 = 256 << 30;

/// Streams a container's backup archive (with its snapshots; LXD's portable format).
#[utoipa::path(get, path = "/api/v1/containers/{owner}/{name}/export", tag = "containers",
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>),
        (status = 403, body = api::ErrorBody), (status = 404, body = api::ErrorBody)))]
pub async fn export(
    State(state): State<AppState>,
    caller: Caller,
    Path((owner, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    caller.require_admin("export containers")?;
    let row = super::shared::visible(&state, &caller, &owner, &name).await?;
    let lxd_name = instance::lxd_name(&row);
    let backup = format!("ssp-export-{}", super::shared::random_hex()?);
    let (lxd, on, backup_name) = (&state.lxd, lxd_name.as_str(), backup.as_str());
    lxd.when_idle(on, instance::BUSY_PATIENCE, || async move {
        lxd.create_backup(on, backup_name).await?.wait(Some(BACKUP_TIMEOUT)).await
    })
    .await
    .map_err(|e| ApiError::lxd_on(&format!("{owner}/{name}"), e))?;
    let cleanup = BackupCleanup {
        lxd: state.lxd.clone(),
        of: BackupOf::Instance(lxd_name.clone()),
        backup: backup.clone(),
        timeout: BACKUP_TIMEOUT,
    };
    let response = state.lxd.export_backup(&lxd_name, &backup).await?;
    let length = response.content_length();
    let stream = response.bytes_stream().map(move |chunk| {
        let _until_the_end = &cleanup;
        chunk.map_err(std::io::Error::other)
    });
    let object = format!("{owner}/{name}");
    let actor = caller.name.clone();
    state.db.run(move |s| s.log(Some(&actor), "container.export", &object, None)).await?;
    let mut answer = Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_DISPOSITION, format!("attachment; filename=\"{owner}-{name}.tar.gz\""));
    if let Some(length) = length {
        answer = answer.header(header::CONTENT_LENGTH, length);
    }
    answer.body(Body::from_stream(stream)).map_err(|e| ApiError::Internal(e.to_string()))
}

/// Removes a file when dropped.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        std::fs::remove_file(&self.0).ok();
    }
}

/// Imports a container from an archive made by `export`, for `owner` as `name`: the archive
/// is checked first (entries under `backup/` only, no traversal, links or device nodes
/// where they do not belong, a sane index, size limits) and refused with the reason.
#[utoipa::path(post, path = "/api/v1/containers/import", tag = "containers", params(api::ImportQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = api::Container), (status = 400, body = api::ErrorBody),
        (status = 403, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
pub async fn import(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<api::ImportQuery>,
    body: Body,
) -> ApiResult<(StatusCode, Json<api::Container>)> {
    caller.require_admin("import containers")?;
    let owner = Name::parse(&query.owner)?;
    let name = Name::parse(&query.name)?;
    let requested = ssp_core::quota::PartialResources {
        cpus: query.cpus,
        memory: query.memory.as_deref().map(ssp_core::size::ByteSize::parse_nonzero).transpose()?,
        disk: query.disk.as_deref().map(ssp_core::size::ByteSize::parse_nonzero).transpose()?,
        gpus: None,
    };
    let resources = ssp_core::quota::resolve(requested, &state.settings.default_resources);
    resources.validate().map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let folder = state.settings.raw.state_dir.join("imports");
    tokio::fs::create_dir_all(&folder).await.map_err(|e| ApiError::Internal(format!("{}: {e}", folder.display())))?;
    let path = folder.join(format!("{}.archive", super::shared::random_hex()?));
    let _remove = RemoveOnDrop(path.clone());
    receive(body, &path).await?;
    let checked = path.clone();
    let summary = tokio::task::spawn_blocking(move || archive::check_file(&checked, ARCHIVE_LIMITS))
        .await
        .map_err(|e| ApiError::Internal(format!("checking the archive: {e}")))?
        .map_err(|e| ApiError::BadRequest(format!("the archive was refused: it {e}")))?;
    // Checked after the body is read: answering before it would break the client's upload.
    let (o, n) = (owner.to_string(), name.to_string());
    state
        .db
        .run(move |s| {
            s.user(&o)?;
            match s.container(&o, &n) {
                Ok(_) => Err(ssp_store::Error::Exists { kind: "container", name: format!("{o}/{n}") }),
                Err(ssp_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(e),
            }
        })
        .await?;

    let new = NewContainer {
        owner: owner.clone(),
        name: name.clone(),
        image: "imported".into(),
        cpus: resources.cpus,
        memory: resources.memory,
        disk: resources.disk,
        desired_state: ssp_store::DesiredState::Running,
        idempotency_key: None,
        gpus: None,
    };
    let row = super::shared::record(&state, &caller.name, new, ContainerSource::Import).await?;
    let hold = state.reconciler_pass.hold(&row.uid).await;
    let lxd_name = instance::lxd_name(&row);
    match adopt(&state, &row, &path).await {
        Ok(()) => {
            let uid = row.uid.clone();
            let detail = format!("from {} with {} snapshot(s)", summary.name, summary.snapshots.len());
            let (actor, object) = (caller.name.clone(), format!("{owner}/{name}"));
            state
                .db
                .run(move |s| {
                    s.log(Some(&actor), "container.imported", &object, Some(&detail))?;
                    s.advance_phase(&uid, ContainerPhase::Creating, ContainerPhase::Ready)
                })
                .await?;
            drop(hold);
            let (o, n) = (owner.to_string(), name.to_string());
            let row = state.db.run(move |s| s.container(&o, &n)).await?;
            Ok((StatusCode::CREATED, Json(super::shared::view(&state, &row, false).await)))
        }
        Err(e) => {
            // Nothing half-imported stays: no instance, no row.
            if let Ok(operation) = state.lxd.delete_instance(&lxd_name).await {
                operation.wait(Some(BACKUP_TIMEOUT)).await.ok();
            }
            let uid = row.uid.clone();
            state.db.run(move |s| s.forget_container(&uid)).await.ok();
            drop(hold);
            Err(e)
        }
    }
}

/// Writes the request body to `path`, refusing more than [`MAX_UPLOAD_BYTES`].
async fn receive(body: Body, path: &std::path::Path) -> ApiResult<()> {
    let io = |e: std::io::Error| ApiError::Internal(format!("writing {}: {e}", path.display()));
    let mut file = tokio::fs::File::create(path).await.map_err(io)?;
    let mut stream = body.into_data_stream();
    let mut total: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("receiving the archive: {e}")))?;
        total += chunk.len() as u64;
        if total > MAX_UPLOAD_BYTES {
            return Err(ApiError::BadRequest(format!("the archive is larger than {MAX_UPLOAD_BYTES} bytes")));
        }
        file.write_all(&chunk).await.map_err(io)?;
    }
    file.flush().await.map_err(io)?;
    if total == 0 {
        return Err(ApiError::BadRequest("the request has no archive in its body".into()));
    }
    Ok(())
}

/// Has LXD import the checked archive under the row's instance name, then replaces the
/// archive's config and devices with ssp's.
async fn adopt(state: &AppState, row: &Container, path: &std::path::Path) -> ApiResult<()> {
    let layout = state.reconciler_pass.layout().clone();
    let lxd_name = instance::lxd_name(row);
    let file = tokio::fs::File::open(path).await.map_err(|e| ApiError::Internal(format!("{}: {e}", path.display())))?;
    let lxd_refused = |e: ssp_lxd::Error| match e {
        ssp_lxd::Error::Api { message, .. } => ApiError::BadRequest(format!("LXD refused the archive: {message}")),
        other => other.into(),
    };
    let operation = state.lxd.import_backup(file, &lxd_name, &layout.pool).await.map_err(lxd_refused)?;
    operation.wait(Some(BACKUP_TIMEOUT)).await.map_err(lxd_refused)?;
    let rows = vec![row.clone()];
    let for_load = layout.clone();
    let mut extra = state.db.run(move |s| attachments::load(s, &rows, &for_load)).await?;
    let extra = extra.remove(&row.uid).unwrap_or_default();
    let current = state.lxd.instance(&lxd_name).await?;
    if let Some(put) = instance::repair(&current.value, row, &layout, &extra) {
        state.lxd.update_instance(&lxd_name, &put, current.etag.as_deref()).await?.wait(Some(BACKUP_TIMEOUT)).await?;
    }
    Ok(())
}

/// A consistent copy of ssp's state database, taken online (SQLite's backup API).
#[utoipa::path(get, path = "/api/v1/admin/backup", tag = "system",
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>),
        (status = 403, body = api::ErrorBody)))]
pub async fn state_backup(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    caller.require_admin("back up ssp's state")?;
    let folder = state.settings.raw.state_dir.join("backups");
    tokio::fs::create_dir_all(&folder).await.map_err(|e| ApiError::Internal(format!("{}: {e}", folder.display())))?;
    let path = folder.join(format!("state-{}.db", super::shared::random_hex()?));
    let target = path.clone();
    let written = state.db.run(move |s| s.backup_to(&target)).await;
    let _remove = RemoveOnDrop(path.clone());
    written?;
    // Open, then unlink: the stream keeps reading the open file, and nothing is left behind.
    let file =
        tokio::fs::File::open(&path).await.map_err(|e| ApiError::Internal(format!("{}: {e}", path.display())))?;
    let length = file.metadata().await.map(|m| m.len()).map_err(|e| ApiError::Internal(e.to_string()))?;
    let actor = caller.name.clone();
    state.db.run(move |s| s.log(Some(&actor), "state.backup", "ssp.db", None)).await?;
    Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, length)
        .body(Body::from_stream(tokio_util::io::ReaderStream::new(file)))
        .map_err(|e| ApiError::Internal(e.to_string()))
}
