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

/// The `setfacl -m` entries for a share group's folder: the group may read, write and
/// enter, the mask lets named entries through, and the same as defaults, so everything
/// created inside inherits them whatever the creator's umask (with a default ACL the
/// kernel ignores the umask). `d:u::rwx` keeps each file's owner able to change it;
/// setfacl copies the folder's own owning-group and others entries into the default ACL.
pub fn acl_entries(gid: u32) -> String {
    format!("g:{gid}:rwx,m::rwx,d:u::rwx,d:g:{gid}:rwx,d:m::rwx")
}

/// Makes a read-write share's host folder usable by all its users: group-owned by the share
/// group, group-writable and setgid (new entries get the group), with access and default
/// POSIX ACLs for it ([`acl_entries`], set with Debian's `setfacl`: it merges with ACLs the
/// folder may already have and computes the mask, which writing the xattrs directly would
/// have to redo). The owner and the others' bits are kept; what is already inside is left
/// as it is (a recursive change could take long and would rewrite files the admin placed
/// deliberately). Returns what it changed, in words.
pub fn prepare_host_folder(
    host_path: &str,
    group: &ssp_core::idblock::ShareGroup,
    group_name: &str,
) -> Result<Vec<String>, String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let path = Path::new(host_path);
    let before = std::fs::metadata(path).map_err(|e| format!("host folder {host_path}: {e}"))?;
    let mut changes = Vec::new();
    if before.gid() != group.host {
        std::os::unix::fs::chown(path, None, Some(group.host))
            .map_err(|e| format!("setting group {} on {host_path}: {e}", group.host))?;
    }
    changes.push(format!(
        "set group {} ({group_name}, gid {} inside containers) on {host_path}, which was gid {}",
        group.host,
        group.inside,
        before.gid()
    ));
    let old_mode = before.mode() & 0o7777;
    let new_mode = old_mode | 0o2070;
    if new_mode != old_mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(new_mode))
            .map_err(|e| format!("setting mode {new_mode:o} on {host_path}: {e}"))?;
    }
    changes
        .push(format!("set mode {new_mode:o} (was {old_mode:o}): group-writable, setgid so new files get the group"));
    let output = std::process::Command::new("setfacl")
        .args(["-m", &acl_entries(group.host), "--", host_path])
        .output()
        .map_err(|e| format!("running setfacl (Debian package acl; scripts/up installs it): {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "setting ACLs on {host_path} failed: {}; its file system must support POSIX ACLs",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    changes.push(format!(
        "added ACL entries group:{gid}:rwx and default:group:{gid}:rwx (with mask rwx), so what one user writes the others can change",
        gid = group.host
    ));
    changes.push("left the files and folders already inside as they were (chgrp/setfacl -R them if its users should change them)".into());
    Ok(changes)
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn acl_entries_name_the_group_for_access_and_default() {
        assert_eq!(acl_entries(1_001_060_001), "g:1001060001:rwx,m::rwx,d:u::rwx,d:g:1001060001:rwx,d:m::rwx");
    }
}
