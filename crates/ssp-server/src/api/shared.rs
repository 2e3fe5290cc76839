//! What several handler files use, so that no handler file reaches into another: finding a
//! container the caller may address (another user's answers exactly like a missing one) and
//! its API view, resolving an image a create names, parsing a GPU ask, recording a new
//! container through admission, naming a new SSH key, and removing the LXD backup an export
//! streams once the stream ends. Route handlers depend on this module, never on each other.

use std::collections::BTreeSet;

use ssp_api as api;
use ssp_core::gpu::GpuRequest;
use ssp_core::names::{ImageName, Name};
use ssp_core::quota::Resources;
use ssp_core::sshkey::PublicKey;
use ssp_store::{Container, ContainerPhase, ContainerSource, ImageRow, NewContainer, Store};

use crate::auth::Caller;
use crate::convert;
use crate::error::{ApiError, ApiResult};
use crate::instance;
use crate::reconcile::Condition;
use crate::{gpu, AppState};

/// The row for `owner/name` if the caller may see it; otherwise the same not-found answer.
pub(crate) async fn visible(state: &AppState, caller: &Caller, owner: &str, name: &str) -> ApiResult<Container> {
    let object = format!("{owner}/{name}");
    if !caller.is_admin() && caller.name != owner {
        return Err(ApiError::not_found("container", &object));
    }
    let (owner, name) = (owner.to_string(), name.to_string());
    state.db.run(move |store| store.container(&owner, &name)).await.map_err(|e| match e {
        ssp_store::Error::NotFound { .. } => ApiError::not_found("container", &object),
        other => other.into(),
    })
}

/// The API view: the row plus LXD's status and addresses.
pub(crate) async fn view(state: &AppState, row: &Container, with_addresses: bool) -> api::Container {
    let mut container = lxd_view(state, row, with_addresses).await;
    let uid = row.uid.clone();
    container.gpus = match state.db.run(move |s| s.leases_of(&uid)).await {
        Ok(leases) => leases.into_iter().map(|l| l.gpu).collect(),
        Err(e) => {
            tracing::warn!("reading GPU leases: {e}");
            Vec::new()
        }
    };
    container.gpu_health = state.reconciler.gpu_health(&row.uid);
    match state.reconciler.condition(&row.uid) {
        Some(Condition::Converged) => container.converged = true,
        Some(Condition::Pending(what)) => {
            container.converged = true;
            container.pending = Some(what);
        }
        Some(Condition::Waiting(what)) => container.waiting_for = Some(what),
        Some(Condition::Failed(retry)) => {
            container.problem_at = Some(retry.failed_at_ms / 1000);
            container.next_try_at = Some(retry.next_at_ms.div_euclid(1000) + 1);
        }
        Some(Condition::Stuck(_)) | None => {}
    }
    let uid = row.uid.clone();
    container.ssh_host_key = state.db.run(move |s| s.ssh_host_key(&uid)).await.unwrap_or_else(|e| {
        tracing::warn!("reading a pinned host key: {e}");
        None
    });
    container
}

async fn lxd_view(state: &AppState, row: &Container, with_addresses: bool) -> api::Container {
    let lxd_name = instance::lxd_name(row);
    let problem = state.reconciler.problem(&row.uid);
    if row.phase == ContainerPhase::Creating {
        return convert::container(row, None, Vec::new(), problem);
    }
    match state.lxd.instance_state(&lxd_name).await {
        Ok(found) => {
            let addresses = if with_addresses { addresses(&found) } else { Vec::new() };
            convert::container(row, Some(&found.status), addresses, problem)
        }
        Err(e) if e.is_not_found() => convert::container(row, None, Vec::new(), problem),
        Err(e) => convert::container(row, Some("Unknown"), Vec::new(), problem.or(Some(format!("LXD: {e}")))),
    }
}

fn addresses(state: &ssp_lxd::wire::InstanceState) -> Vec<String> {
    let Some(networks) = &state.network else { return Vec::new() };
    networks
        .iter()
        .filter(|(name, _)| name.as_str() != "lo")
        .flat_map(|(_, net)| net.addresses.iter())
        .filter(|a| a.family == "inet" && a.scope == "global")
        .map(|a| a.address.clone())
        .collect()
}

/// Whether an LXD alias is one of ssp's user images (hidden from the host's image list).
pub(crate) fn is_user_alias(alias: &str) -> bool {
    alias.starts_with("ssp_")
}

/// The API view of a user's image.
pub(crate) fn image_view(row: &ImageRow) -> api::Image {
    api::Image {
        name: format!("{}/{}", row.owner, row.name),
        description: format!("published from {}", row.source),
        fingerprint: row.fingerprint.clone(),
        size: row.size,
        created_at: row.created_at,
        owner: Some(row.owner.to_string()),
        public: row.public,
    }
}

fn may_use(caller: &Caller, row: &ImageRow) -> bool {
    row.public || caller.is_admin() || caller.name == row.owner.as_str()
}

/// `name` if the host's LXD has an image under that alias; otherwise the missing-image answer.
pub(crate) async fn host_image(state: &AppState, name: &str) -> ApiResult<String> {
    match state.lxd.image_alias(name).await {
        Ok(_) if !is_user_alias(name) => Ok(name.to_string()),
        Ok(_) => Err(missing(state, name).await),
        Err(e) if e.is_not_found() => Err(missing(state, name).await),
        Err(e) => Err(e.into()),
    }
}

/// The answer for an image that does not exist — or that the caller may not use.
async fn missing(state: &AppState, image: &str) -> ApiError {
    let known: Vec<String> =
        state.lxd.image_alias_names().await.unwrap_or_default().into_iter().filter(|a| !is_user_alias(a)).collect();
    ApiError::BadRequest(format!(
        "image {image} does not exist; images: {} (and yours: ssp image list)",
        known.join(", ")
    ))
}

/// The LXD alias a create's `image` names, as `caller` creating for `owner` may use it:
/// `owner/name` (a user's image), `name` (the owner's own image, else a public one of that
/// name, else an image the host provides). An image the caller may not use answers like a
/// missing one.
pub(crate) async fn resolve(state: &AppState, caller: &Caller, owner: &Name, image: &str) -> ApiResult<String> {
    if let Some((who, name)) = image.split_once('/') {
        let (who, name) = (Name::parse(who)?, ImageName::parse(name)?);
        let (w, n) = (who.to_string(), name.to_string());
        return match state.db.run(move |s| s.image(&w, &n)).await {
            Ok(row) if may_use(caller, &row) => Ok(row.alias),
            Ok(_) | Err(ssp_store::Error::NotFound { .. }) => Err(missing(state, image).await),
            Err(e) => Err(e.into()),
        };
    }
    let name = ImageName::parse(image)?;
    let (viewer, admin, wanted) = (owner.to_string(), caller.is_admin(), name.to_string());
    let candidates = state.db.run(move |s| s.images_visible_to(&viewer, admin)).await?;
    let named: Vec<&ImageRow> = candidates.iter().filter(|r| r.name.as_str() == wanted).collect();
    if let Some(own) = named.iter().find(|r| r.owner == *owner) {
        return Ok(own.alias.clone());
    }
    let public: Vec<&&ImageRow> = named.iter().filter(|r| r.public).collect();
    match public.as_slice() {
        [one] => return Ok(one.alias.clone()),
        [] => {}
        many => {
            let names: Vec<String> = many.iter().map(|r| format!("{}/{}", r.owner, r.name)).collect();
            return Err(ApiError::BadRequest(format!(
                "image {image} is ambiguous: say which one ({})",
                names.join(", ")
            )));
        }
    }
    host_image(state, name.as_str()).await
}

/// The images the caller may use: their own, the public ones (admins: all).
pub(crate) async fn visible_images(state: &AppState, caller: &Caller) -> ApiResult<Vec<api::Image>> {
    let (viewer, admin) = (caller.name.clone(), caller.is_admin());
    let rows = state.db.run(move |s| s.images_visible_to(&viewer, admin)).await?;
    Ok(rows.iter().map(image_view).collect())
}

/// Records a new container for `owner` from `source`, quota checked in the same transaction.
pub(crate) async fn record(
    state: &AppState,
    actor: &str,
    new: NewContainer,
    source: ContainerSource,
) -> ApiResult<Container> {
    let actor = actor.to_string();
    let row = state
        .db
        .run(move |store| -> Result<Result<Container, ApiError>, ssp_store::Error> {
            let resources = Resources { cpus: new.cpus, memory: new.memory, disk: new.disk, gpus: 0 };
            crate::admission::admit(store, &new.owner, &resources, |store| {
                store.create_container_from(Some(&actor), &new, &source)
            })
        })
        .await??;
    state.reconciler.changed(&row.uid);
    Ok(row)
}

/// 16 random hex digits.
pub(crate) fn random_hex() -> ApiResult<String> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| ApiError::Internal(format!("no randomness: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Most GPUs one request may name.
const MAX_ASK: u32 = 64;

/// A wire ask as a store grant: a count or exact indices (not both), and an optional duration.
pub(crate) fn lease_request(ask: &api::GpuAsk) -> ApiResult<ssp_store::LeaseRequest> {
    let request = match (ask.count, &ask.indices) {
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest("ask for a count of GPUs or for exact indices, not both".into()))
        }
        (Some(n), None) if (1..=MAX_ASK).contains(&n) => GpuRequest::Any(n),
        (Some(n), None) => return Err(ApiError::BadRequest(format!("a GPU count must be 1 to {MAX_ASK}, not {n}"))),
        (None, Some(indices)) => {
            let set: BTreeSet<u32> = indices.iter().copied().collect();
            if set.is_empty() || set.len() != indices.len() || set.len() > MAX_ASK as usize {
                return Err(ApiError::BadRequest("GPU indices must be 1 to 64 distinct numbers".into()));
            }
            GpuRequest::Exact(set)
        }
        (None, None) => return Err(ApiError::BadRequest("ask for a count of GPUs or for exact indices".into())),
    };
    let expires_at = match &ask.duration {
        Some(text) => {
            let duration = ssp_core::duration::parse(text).map_err(ApiError::BadRequest)?;
            Some(gpu::unix_now() + i64::try_from(duration.as_secs()).unwrap_or(i64::MAX / 2))
        }
        None => None,
    };
    Ok(ssp_store::LeaseRequest { request, expires_at })
}

/// A free key name: `requested` if given (checked), else the key's comment made into a name,
/// else `key-N`.
pub(crate) fn unique_key_name(
    store: &Store,
    user: &str,
    requested: Option<&str>,
    key: &PublicKey,
    also_taken: &[String],
) -> Result<String, ssp_store::Error> {
    let taken: Vec<String> = store.keys(user)?.into_iter().map(|k| k.name).chain(also_taken.iter().cloned()).collect();
    if let Some(name) = requested {
        return Ok(name.to_string());
    }
    let from_comment = key.comment().map(|comment| {
        let mut name: String = comment
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() { c } else { '-' })
            .collect();
        name.truncate(40);
        name.trim_matches('-').to_string()
    });
    if let Some(base) = from_comment.filter(|n| Name::parse(n).is_ok()) {
        if !taken.contains(&base) {
            return Ok(base);
        }
    }
    Ok((1..).map(|n| format!("key-{n}")).find(|n| !taken.contains(n)).unwrap_or_else(|| "key".into()))
}

/// What an LXD backup is a backup of.
#[derive(Debug, Clone)]
pub enum BackupOf {
    /// The instance of this LXD name.
    Instance(String),
    /// The custom volume `volume` on `pool`.
    Volume {
        /// The storage pool.
        pool: String,
        /// The volume.
        volume: String,
    },
}

/// Deletes an LXD backup when the export stream that reads it ends or is dropped.
pub struct BackupCleanup {
    /// The LXD daemon.
    pub lxd: ssp_lxd::Client,
    /// Whose backup.
    pub of: BackupOf,
    /// The backup's name.
    pub backup: String,
    /// How long LXD may take to delete it.
    pub timeout: std::time::Duration,
}

impl Drop for BackupCleanup {
    fn drop(&mut self) {
        let (lxd, of, backup, timeout) = (self.lxd.clone(), self.of.clone(), self.backup.clone(), self.timeout);
        tokio::spawn(async move {
            let deleted = match &of {
                BackupOf::Instance(instance) => lxd.delete_backup(instance, &backup).await,
                BackupOf::Volume { pool, volume } => lxd.delete_volume_backup(pool, volume, &backup).await,
            };
            match deleted {
                Ok(operation) => {
                    operation.wait(Some(timeout)).await.ok();
                }
                Err(e) => tracing::warn!(?of, %backup, "cannot remove the export's backup: {e}"),
            }
        });
    }
}
