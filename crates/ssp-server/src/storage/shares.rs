//! Shares on the host side: checking a host folder, its `nosuid,nodev` staging mount, and
//! the disk device that mounts it into containers.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ssp_lxd::wire::ConfigMap;
use ssp_store::Share;

use super::{stage, unstage, Context, StorageError};

/// Device names of shares start with this.
pub const DEVICE_PREFIX: &str = "share-";

/// Where share `name`'s staging mount lives.
pub fn staging(context: &Context, name: &str) -> PathBuf {
    context.mounts().join("shares").join(name)
}

/// Resolves and checks a host folder an admin wants to share: it must exist, be a folder,
/// and pass `ssp_core::sharepath::check_host_path` once symlinks are resolved.
pub fn check_host_folder(context: &Context, given: &str) -> Result<String, String> {
    let path = Path::new(given);
    if !path.is_absolute() {
        return Err(format!("host folder {given:?} must be an absolute path"));
    }
    let canonical = std::fs::canonicalize(path).map_err(|e| format!("host folder {given:?}: {e}"))?;
    if !canonical.is_dir() {
        return Err(format!("host folder {given:?} is not a folder"));
    }
    ssp_core::sharepath::check_host_path(&canonical, &[context.state_dir.as_path(), context.lxd_dir.as_path()])
        .map_err(|e| e.to_string())?;
    canonical.to_str().map(str::to_string).ok_or_else(|| format!("host folder {given:?} is not valid UTF-8"))
}

/// The LXD disk device for `share`, if its staging mount is in place.
///
/// Read-only comes from the staging mount (`ro,nosuid,nodev`), not from LXD's `readonly`
/// option: LXD makes a read-only disk with a bind *remount* that sets `ro` and drops every
/// other flag, so `nosuid,nodev` were gone inside (seen with LXD 5.0.2). A plain bind
/// inherits all three, and inside the container's user namespace they are locked: root
/// there cannot remount the share writable.
pub fn device(context: &Context, share: &Share, mounted: &[PathBuf]) -> Option<(String, ConfigMap)> {
    let source = staging(context, share.name.as_str());
    if !mounted.contains(&source) {
        return None;
    }
    let device: ConfigMap =
        [("type", "disk".to_string()), ("source", source.to_str()?.to_string()), ("path", share.path.clone())]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
    Some((format!("{DEVICE_PREFIX}{}", share.name), device))
}

/// Makes the staging mounts match the shares: one per share, none for removed ones.
pub async fn converge(state: &crate::AppState) -> Result<(), StorageError> {
    let Some(context) = super::context() else { return Ok(()) };
    if !context.delegated {
        return Ok(());
    }
    let shares = state.db.run(|store| store.all_shares()).await?;
    let context = context.clone();
    let changed = tokio::task::spawn_blocking(move || -> Result<bool, StorageError> {
        let root = context.mounts().join("shares");
        let mut changed = false;
        let wanted: BTreeSet<String> = shares.iter().map(|s| s.name.to_string()).collect();
        let mounted = super::mount_points();
        for share in &shares {
            let target = staging(&context, share.name.as_str());
            if !mounted.contains(&target) {
                stage(Path::new(&share.host_path), &target, share.read_only).map_err(|e| {
                    StorageError::Io(format!("staging share {} from {}: {e}", share.name, share.host_path))
                })?;
                changed = true;
            }
        }
        if let Ok(entries) = std::fs::read_dir(&root) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !wanted.contains(&name) {
                    unstage(&entry.path()).map_err(|e| StorageError::Io(format!("unstaging share {name}: {e}")))?;
                    changed = true;
                }
            }
        }
        Ok(changed)
    })
    .await
    .map_err(|e| StorageError::Io(e.to_string()))??;
    if changed {
        state.reconciler.wake();
    }
    Ok(())
}
