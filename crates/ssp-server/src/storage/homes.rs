//! Persistent home volumes: one LXD custom volume per user (sized, on the containers'
//! pool), mounted at `/home/<user>` in every container of theirs, surviving container
//! delete and re-create.
//!
//! Why not an LXD volume device: LXD 5.0.2 remaps a custom volume's files to the idmap of
//! the container it is attached to and refuses a second running container with another
//! map — and with isolated idmaps every container has its own. So the volume is made and
//! sized by LXD (a btrfs subvolume with a quota) but mounted like a share: its folder in
//! the pool is staged `nosuid,nodev` under `state_dir/mounts/homes/` and attached as a path
//! disk device, owned by the user's stable share identity (uid 1000 inside every one of
//! their containers at once). LXD never shifts it, because it never sees it attached.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ssp_lxd::wire::{ConfigMap, StorageVolume};
use ssp_store::{Home, HomePhase};

use super::{stage, unstage, Context, StorageError};

/// The device name of the home volume.
pub const DEVICE: &str = "ssp-home";

/// The LXD volume name of `home`: unique per installation and user.
pub fn volume_name(context: &Context, home: &Home) -> String {
    format!("ssp-{}-home-{}", &context.platform[..context.platform.len().min(16)], home.user_id)
}

/// The volume's folder on the host (LXD's layout for custom volumes of the default project).
pub fn volume_path(context: &Context, home: &Home) -> PathBuf {
    context
        .lxd_dir
        .join("storage-pools")
        .join(&context.pool)
        .join("custom")
        .join(format!("default_{}", volume_name(context, home)))
}

/// Where `home`'s staging mount lives.
pub fn staging(context: &Context, home: &Home) -> PathBuf {
    context.mounts().join("homes").join(home.user.as_str())
}

/// Where a home is mounted inside containers.
pub fn mount_path(user: &str) -> String {
    format!("/home/{user}")
}

/// The disk device for a ready `home` whose staging mount is in place.
pub fn device(context: &Context, home: &Home, mounted: &[PathBuf]) -> Option<(String, ConfigMap)> {
    let source = staging(context, home);
    if home.phase != HomePhase::Ready || !mounted.contains(&source) {
        return None;
    }
    let device: ConfigMap = [
        ("type", "disk".to_string()),
        ("source", source.to_str()?.to_string()),
        ("path", mount_path(home.user.as_str())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Some((DEVICE.to_string(), device))
}

/// Makes LXD and the staging mounts match the `homes` table.
pub async fn converge(state: &crate::AppState) -> Result<(), StorageError> {
    let Some(context) = super::context() else { return Ok(()) };
    if !context.delegated {
        return Ok(());
    }
    let homes = state.db.run(|store| store.all_homes()).await?;
    let mut changed = false;
    for home in &homes {
        let name = volume_name(context, home);
        match home.phase {
            HomePhase::Creating => {
                match state.lxd.custom_volume(&context.pool, &name).await {
                    Ok(_) => {}
                    Err(e) if e.is_not_found() => {
                        let volume = StorageVolume {
                            name: name.clone(),
                            config: ConfigMap::from([("size".into(), home.size.to_lxd())]),
                            description: format!("ssp home volume of {}", home.user),
                            ..StorageVolume::default()
                        };
                        state.lxd.create_custom_volume(&context.pool, &volume).await?;
                    }
                    Err(e) => return Err(e.into()),
                }
                let identity = state
                    .db
                    .run({
                        let user = home.user.to_string();
                        move |store| store.user(&user)
                    })
                    .await
                    .ok()
                    .and_then(|u| context.identity(u.id))
                    .ok_or_else(|| StorageError::Io(format!("user {} has no share identity", home.user)))?;
                let path = volume_path(context, home);
                let (home_copy, context_copy) = (home.clone(), context.clone());
                tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                    use std::os::unix::fs::PermissionsExt;
                    std::os::unix::fs::chown(&path, Some(identity), Some(identity))?;
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o750))?;
                    stage(&path, &staging(&context_copy, &home_copy), false)
                })
                .await
                .map_err(|e| StorageError::Io(e.to_string()))?
                .map_err(|e| StorageError::Io(format!("preparing the home volume of {}: {e}", home.user)))?;
                let user = home.user.to_string();
                state.db.run(move |store| store.set_home_phase(None, &user, HomePhase::Ready)).await?;
                changed = true;
            }
            HomePhase::Ready => {
                let (path, target) = (volume_path(context, home), staging(context, home));
                if !super::mount_points().contains(&target) {
                    tokio::task::spawn_blocking(move || stage(&path, &target, false))
                        .await
                        .map_err(|e| StorageError::Io(e.to_string()))?
                        .map_err(|e| StorageError::Io(format!("staging the home volume of {}: {e}", home.user)))?;
                    changed = true;
                }
            }
            HomePhase::Deleting => {
                // Only once no container mounts it any more (the reconciler removes the
                // device first, since a deleting home is not attached).
                let source = staging(context, home);
                let in_use = state
                    .lxd
                    .instances()
                    .await?
                    .iter()
                    .any(|i| i.devices.values().any(|d| d.get("source").map(Path::new) == Some(source.as_path())));
                if in_use {
                    state.reconciler.wake();
                    continue;
                }
                tokio::task::spawn_blocking(move || unstage(&source))
                    .await
                    .map_err(|e| StorageError::Io(e.to_string()))?
                    .map_err(|e| StorageError::Io(format!("unstaging the home volume of {}: {e}", home.user)))?;
                match state.lxd.delete_custom_volume(&context.pool, &name).await {
                    Err(e) if !e.is_not_found() => return Err(e.into()),
                    _ => {}
                }
                let user = home.user.to_string();
                state.db.run(move |store| store.forget_home(&user)).await?;
            }
        }
    }
    // Staging folders of homes that no longer exist.
    let wanted: BTreeSet<String> = homes.iter().map(|h| h.user.to_string()).collect();
    if let Ok(entries) = std::fs::read_dir(context.mounts().join("homes")) {
        for entry in entries.flatten() {
            if !wanted.contains(&entry.file_name().to_string_lossy().into_owned()) {
                unstage(&entry.path()).ok();
            }
        }
    }
    if changed {
        state.reconciler.wake();
    }
    Ok(())
}
