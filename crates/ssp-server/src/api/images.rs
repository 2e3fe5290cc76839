//! `/api/v1/images` (publish, delete) and `/api/v1/containers/{owner}/{name}/copy`: images
//! users publish from their containers, and copies of containers.
//!
//! A published image belongs to the container's owner and lives in LXD under an alias
//! namespaced by installation and owner (`ssp_<platform>_<owner>_<name>`; image names
//! cannot hold `_`, so no name a user types can reach it). Who may use it is decided here:
//! its owner, everyone when it is public, admins always; anyone else gets exactly the
//! answer a missing image gets. Publishing is an action like a snapshot — done at once
//! through LXD, from a snapshot so a running container need not stop, and recorded after
//! LXD made it. A copy is intent like a create: a row the reconciler turns into an LXD
//! copy of the source's root file system (not its snapshots), with ssp's config applied.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use ssp_api as api;
use ssp_core::names::{ImageName, Name};
use ssp_store::{ContainerPhase, ContainerSource, NewContainer, NewImage};

use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiResult};
use crate::instance;
use crate::AppState;

use super::shared::{image_view, random_hex, record};

/// Publishing copies the whole root file system: allow it time.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(1800);

/// Image property: the installation that published it.
pub const PROPERTY_PLATFORM: &str = "ssp.platform";

/// Deletes the images this installation published that no row records: a daemon killed
/// between LXD's publish and the insert left them. Run at start, before the API serves, so
/// no publish is in flight.
pub async fn remove_unrecorded(db: &crate::db::Db, lxd: &ssp_lxd::Client, platform: &str) {
    let recorded = match db.run(|s| s.images_visible_to("", true)).await {
        Ok(rows) => rows.into_iter().map(|r| r.fingerprint).collect::<std::collections::HashSet<_>>(),
        Err(e) => return tracing::warn!("cannot read the images table: {e}"),
    };
    let images = match lxd.images().await {
        Ok(images) => images,
        Err(e) => return tracing::warn!("cannot list LXD's images to clean up: {e}"),
    };
    for image in images {
        if image.properties.get(PROPERTY_PLATFORM).map(String::as_str) != Some(platform)
            || recorded.contains(&image.fingerprint)
        {
            continue;
        }
        tracing::warn!(fingerprint = %image.fingerprint, "removing an image published but never recorded");
        for alias in &image.aliases {
            lxd.delete_image_alias(&alias.name).await.ok();
        }
        match lxd.delete_image(&image.fingerprint).await {
            Ok(operation) => {
                operation.wait(Some(PUBLISH_TIMEOUT)).await.ok();
            }
            Err(e) => tracing::warn!(fingerprint = %image.fingerprint, "cannot remove it: {e}"),
        }
    }
}

/// The LXD alias of `owner`'s image `name` on installation `platform`.
pub fn alias(platform: &str, owner: &Name, name: &ImageName) -> String {
    format!("ssp_{platform}_{owner}_{name}")
}

/// `owner/name` or `name` (the caller's own).
fn split_ref(text: &str, caller: &str) -> ApiResult<(Name, Name)> {
    match text.split_once('/') {
        Some((owner, name)) => Ok((Name::parse(owner)?, Name::parse(name)?)),
        None => Ok((Name::parse(caller)?, Name::parse(text)?)),
    }
}

/// Publishes a container as an image of its owner (public: admins only).
#[utoipa::path(post, path = "/api/v1/images", tag = "images", request_body = api::ImagePublish,
    responses((status = 201, body = api::Image), (status = 400, body = api::ErrorBody),
        (status = 404, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
pub async fn publish(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<api::ImagePublish>,
) -> ApiResult<(StatusCode, Json<api::Image>)> {
    let (owner, container) = split_ref(&request.container, &caller.name)?;
    let row = super::shared::visible(&state, &caller, owner.as_str(), container.as_str()).await?;
    if request.public {
        caller.require_admin("publish an image for every user")?;
    }
    let name = ImageName::parse(&request.name)?;
    if row.phase != ContainerPhase::Ready {
        return Err(ApiError::Conflict(format!("container {owner}/{container} is not ready; try again once it is")));
    }
    let (o, n) = (owner.to_string(), name.to_string());
    match state.db.run(move |s| s.image(&o, &n)).await {
        Ok(_) => return Err(ApiError::Conflict(format!("image {owner}/{name} already exists; delete it first"))),
        Err(ssp_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let alias = alias(&state.reconciler_pass.layout().platform, &owner, &name);
    let lxd_name = instance::lxd_name(&row);
    let snapshot = format!("ssp-publish-{}", random_hex()?);
    let object = format!("{owner}/{container}");
    let (lxd, on, snap) = (&state.lxd, lxd_name.as_str(), snapshot.as_str());
    lxd.when_idle(on, instance::BUSY_PATIENCE, || async move {
        lxd.create_snapshot(on, snap).await?.wait(Some(PUBLISH_TIMEOUT)).await
    })
    .await
    .map_err(|e| ApiError::lxd_on(&object, e))?;
    let platform = state.reconciler_pass.layout().platform.clone();
    let properties = [
        ("description".to_string(), format!("{owner}/{name}, published from {owner}/{container}")),
        // Finds an image a killed daemon published but never recorded (see `remove_unrecorded`).
        (PROPERTY_PLATFORM.to_string(), platform),
    ]
    .into_iter()
    .collect();
    let published = async {
        let done =
            state.lxd.publish_snapshot(&lxd_name, &snapshot, &properties).await?.wait(Some(PUBLISH_TIMEOUT)).await?;
        let fingerprint = done.metadata.get("fingerprint").and_then(|f| f.as_str()).unwrap_or_default().to_string();
        if fingerprint.is_empty() {
            return Err(ApiError::Internal(format!("LXD published {lxd_name}/{snapshot} without a fingerprint")));
        }
        Ok::<_, ApiError>(fingerprint)
    }
    .await;
    // The snapshot only served the publish: a snapshot LXD has without a row would show
    // up in the owner's list as a protected one.
    let removed = lxd
        .when_idle(on, instance::BUSY_PATIENCE, || async move {
            lxd.delete_snapshot(on, snap).await?.wait(Some(PUBLISH_TIMEOUT)).await
        })
        .await;
    if let Err(e) = removed {
        tracing::warn!(instance = %lxd_name, %snapshot, "cannot remove the publish snapshot: {e}");
    }
    let fingerprint = published?;
    let recorded = async {
        let size = state.lxd.image(&fingerprint).await.map(|i| u64::try_from(i.size).unwrap_or(0)).unwrap_or(0);
        state.lxd.create_image_alias(&alias, &fingerprint, &format!("ssp image {owner}/{name}")).await?;
        let new = NewImage {
            owner: owner.clone(),
            name: name.clone(),
            alias: alias.clone(),
            fingerprint: fingerprint.clone(),
            size,
            public: request.public,
            source: format!("{owner}/{container}"),
        };
        let actor = caller.name.clone();
        Ok::<_, ApiError>(state.db.run(move |s| s.create_image(Some(&actor), &new)).await?)
    }
    .await;
    match recorded {
        Ok(row) => Ok((StatusCode::CREATED, Json(image_view(&row)))),
        Err(e) => {
            // Nothing half-made stays: no row, so no image either.
            state.lxd.delete_image_alias(&alias).await.ok();
            if let Ok(operation) = state.lxd.delete_image(&fingerprint).await {
                operation.wait(Some(PUBLISH_TIMEOUT)).await.ok();
            }
            Err(e)
        }
    }
}

/// Deletes a published image (its owner or an admin); containers made from it keep their files.
#[utoipa::path(delete, path = "/api/v1/images/{owner}/{name}", tag = "images",
    responses((status = 204), (status = 404, body = api::ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path((owner, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let object = format!("{owner}/{name}");
    if !caller.is_admin() && caller.name != owner {
        return Err(ApiError::not_found("image", &object));
    }
    let (o, n) = (owner.clone(), name.clone());
    let row = state.db.run(move |s| s.image(&o, &n)).await?;
    match state.lxd.delete_image(&row.fingerprint).await {
        Ok(operation) => {
            operation.wait(Some(PUBLISH_TIMEOUT)).await?;
        }
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e.into()),
    }
    let actor = caller.name.clone();
    state.db.run(move |s| s.remove_image(Some(&actor), &owner, &name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Copies a container: a new one with its files (not its snapshots), limits and image,
/// owned by the source's owner (or, by an admin, anyone); the new owner's quota applies.
#[utoipa::path(post, path = "/api/v1/containers/{owner}/{name}/copy", tag = "containers",
    request_body = api::ContainerCopy,
    responses((status = 201, body = api::Container), (status = 404, body = api::ErrorBody),
        (status = 409, body = api::ErrorBody)))]
pub async fn copy(
    State(state): State<AppState>,
    caller: Caller,
    Path((owner, name)): Path<(String, String)>,
    ApiJson(request): ApiJson<api::ContainerCopy>,
) -> ApiResult<(StatusCode, Json<api::Container>)> {
    let source = super::shared::visible(&state, &caller, &owner, &name).await?;
    let new_owner = match &request.owner {
        Some(other) if other != source.owner.as_str() => {
            caller.require_admin("copy a container to another user")?;
            Name::parse(other)?
        }
        _ => source.owner.clone(),
    };
    let new_name = Name::parse(&request.name)?;
    if !matches!(source.phase, ContainerPhase::Ready) {
        return Err(ApiError::Conflict(format!("container {owner}/{name} is not ready; copy it once it is")));
    }
    let new = NewContainer {
        owner: new_owner,
        name: new_name,
        image: source.image.clone(),
        cpus: source.cpus,
        memory: source.memory,
        disk: source.disk,
        desired_state: ssp_store::DesiredState::Running,
        idempotency_key: None,
        gpus: None,
    };
    let row = record(&state, &caller.name, new, ContainerSource::Copy(source.uid.clone())).await?;
    Ok((StatusCode::CREATED, Json(super::shared::view(&state, &row, false).await)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::api::shared::is_user_alias;

    #[test]
    fn aliases_are_namespaced_and_unreachable_by_typed_names() {
        let owner = Name::parse("alice").unwrap();
        let name = ImageName::parse("lab-base").unwrap();
        let alias = alias("0123abcd", &owner, &name);
        assert_eq!(alias, "ssp_0123abcd_alice_lab-base");
        assert!(is_user_alias(&alias));
        assert_eq!(crate::convert::image_name(&alias), "alice/lab-base");
        assert_eq!(crate::convert::image_name("debian-12"), "debian-12");
        // No image name a user can type is one of these aliases.
        assert!(ImageName::parse(&alias).is_err());
        assert!(!is_user_alias("busybox"));
    }

    #[test]
    fn container_references_name_an_owner() {
        let (owner, name) = split_ref("dev", "alice").unwrap();
        assert_eq!((owner.as_str(), name.as_str()), ("alice", "dev"));
        let (owner, name) = split_ref("bob/dev", "alice").unwrap();
        assert_eq!((owner.as_str(), name.as_str()), ("bob", "dev"));
        for bad in ["../dev", "bob/dev/x", "Bob/dev", "/dev", ""] {
            assert!(split_ref(bad, "alice").is_err(), "{bad:?}");
        }
    }
}
