//! Admission: whether a user may hold more, decided in the same store transaction as the
//! insert that would make them hold it — one path for every way a container comes to be
//! (create, copy, import) and for the home volume. A departing user is admitted nothing.
//!
//! What a user holds is summed here once: every container not being deleted, plus the home
//! volume's size against the disk limit. The rule itself (`ssp_core::quota::check`) is pure.
//! Must not: talk to LXD, or decide anything the quota rule does not.

use ssp_core::names::Name;
use ssp_core::quota::{self, Quota, Resources};
use ssp_core::size::ByteSize;
use ssp_store::{ContainerPhase, HomePhase, Store};

use crate::error::ApiError;

/// What `owner` holds now, in the quota's terms: each container not being deleted, and the
/// home volume (disk only) unless it is being deleted.
pub fn holdings(store: &Store, owner: &str) -> ssp_store::Result<Vec<Resources>> {
    let mut held: Vec<Resources> = store
        .containers_of(owner)?
        .iter()
        .filter(|c| c.phase != ContainerPhase::Deleting)
        .map(|c| Resources { cpus: c.cpus, memory: c.memory, disk: c.disk, gpus: 0 })
        .collect();
    match store.home(owner) {
        Ok(home) if home.phase != HomePhase::Deleting => {
            held.push(Resources { cpus: 0, memory: ByteSize::from_bytes(0), disk: home.size, gpus: 0 });
        }
        Ok(_) | Err(ssp_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(e),
    }
    Ok(held)
}

/// Checks `request` against `limits` and what `owner` holds: the quota refusal, said for
/// people, or `Ok`. Nothing new is made for a user being removed.
pub fn check(
    store: &Store,
    owner: &Name,
    limits: &Quota,
    request: &Resources,
) -> ssp_store::Result<Result<(), ApiError>> {
    if store.user(owner.as_str())?.departing() {
        return Ok(Err(ApiError::Conflict(format!(
            "{owner} is being removed (ssp user remove --purge): nothing new can be made for them"
        ))));
    }
    let held = holdings(store, owner.as_str())?;
    Ok(quota::check(limits, &held, request).map_err(|e| ApiError::QuotaExceeded(format!("{owner}: {e}"))))
}

/// Admits a new container of `request` for `owner` and records it with `insert`, in the
/// caller's transaction: two racing requests cannot both pass the sum.
pub fn admit<T>(
    store: &mut Store,
    owner: &Name,
    request: &Resources,
    insert: impl FnOnce(&mut Store) -> ssp_store::Result<T>,
) -> ssp_store::Result<Result<T, ApiError>> {
    let user = store.user(owner.as_str())?;
    if let Err(refused) = check(store, owner, &user.quota, request)? {
        return Ok(Err(refused));
    }
    Ok(insert(store).map_err(ApiError::from))
}
