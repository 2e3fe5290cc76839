//! Filesystem helpers with the safety rules builds need: scratch trees that are removed on
//! every exit path but never while something is mounted inside them, free-space checks, and
//! a lock so two builds of one recipe do not race.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::Error;

pub(crate) fn create_dir(path: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(path).map_err(Error::io("creating", path))
}

/// Fails with [`Error::NoSpace`] unless `path`'s filesystem has `needed` bytes free.
pub(crate) fn require_space(path: &Path, needed: u64) -> Result<(), Error> {
    let stat = rustix::fs::statvfs(path).map_err(|e| Error::Io {
        what: "checking free space in",
        path: path.into(),
        source: e.into(),
    })?;
    let available = stat.f_bavail.saturating_mul(stat.f_frsize);
    if available < needed {
        return Err(Error::NoSpace { path: path.into(), needed, available });
    }
    Ok(())
}

/// An exclusive lock held until dropped.
pub(crate) struct Lock(#[allow(dead_code)] File);

pub(crate) fn lock(path: &Path) -> Result<Lock, Error> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(Error::io("opening lock", path))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| Error::Io { what: "locking", path: path.into(), source: e.into() })?;
    Ok(Lock(file))
}

/// A scratch folder for one build, removed when dropped.
pub(crate) struct Scratch {
    path: PathBuf,
}

impl Scratch {
    pub(crate) fn new(work_dir: &Path, name: &str) -> Result<Self, Error> {
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let path = work_dir.join(format!("{name}.{}.{stamp}", std::process::id()));
        std::fs::create_dir(&path).map_err(Error::io("creating", &path))?;
        Ok(Self { path })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let mounts = unmount_below(&self.path);
        if !mounts.is_empty() {
            // Deleting through a mount would delete the host's files: leave it for a person.
            eprintln!("ssp-image: not removing {}: still mounted: {}", self.path.display(), mounts.join(", "));
            return;
        }
        // remove_dir_all does not follow symlinks, so a tree's absolute links stay harmless.
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            eprintln!("ssp-image: could not remove {}: {e}", self.path.display());
        }
    }
}

/// Mount points at or below `path`, deepest first.
pub(crate) fn mounts_below(path: &Path) -> Vec<String> {
    let prefix = path.to_string_lossy().to_string();
    let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|m| m.replace("\\040", " "))
        .filter(|m| m == &prefix || m.starts_with(&format!("{prefix}/")))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    mounts
}

/// Unmounts everything below `path`; returns what is still mounted.
pub(crate) fn unmount_below(path: &Path) -> Vec<String> {
    for mount in mounts_below(path) {
        let _ = Command::new("umount").arg("-l").arg(&mount).status();
    }
    mounts_below(path)
}

/// Whether `tool` is on the PATH.
pub(crate) fn have_tool(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn scratch_is_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let scratch = Scratch::new(dir.path(), "x").unwrap();
        let path = scratch.path().to_path_buf();
        std::fs::create_dir_all(path.join("a/b")).unwrap();
        std::os::unix::fs::symlink("/etc", path.join("a/etc")).unwrap();
        drop(scratch);
        assert!(!path.exists());
        assert!(Path::new("/etc/hostname").exists() || Path::new("/etc/passwd").exists());
    }

    #[test]
    fn impossible_space_is_refused() {
        let err = require_space(Path::new("/"), u64::MAX).unwrap_err();
        assert!(matches!(err, Error::NoSpace { .. }), "{err}");
        assert!(err.to_string().contains("not enough free disk space"));
    }
}
