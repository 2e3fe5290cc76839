//! Filesystem rules a build lives by: a scratch tree that is removed on every exit path but
//! never while anything is mounted inside it and never by following a link out of it; free
//! space checked before starting; one build of a recipe at a time; host tools found even
//! when `PATH` lacks the `sbin` folders.
//!
//! Nothing here removes a path it did not create under the build's work directory.

use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::Error;

/// `mkdir -p`.
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

/// An exclusive advisory lock, held until dropped.
#[derive(Debug)]
pub(crate) struct Lock {
    _file: File,
}

/// Waits for and takes the lock `path` (created if absent).
pub(crate) fn lock(path: &Path) -> Result<Lock, Error> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(Error::io("opening the lock", path))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).map_err(|e| Error::Io {
        what: "locking",
        path: path.into(),
        source: e.into(),
    })?;
    Ok(Lock { _file: file })
}

/// Folders searched for host tools after `PATH`: `sudo` and `su` often leave `sbin` out.
const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The host program `name`, from `PATH` or the system folders.
pub(crate) fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(std::env::split_paths(OsStr::new(SYSTEM_PATH)))
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// `find_tool`, or [`Error::MissingTool`] naming the Debian package to install.
pub(crate) fn require_tool(recipe: &str, name: &str, package: &str) -> Result<PathBuf, Error> {
    find_tool(name).ok_or_else(|| Error::MissingTool {
        recipe: recipe.into(),
        tool: name.into(),
        package: package.into(),
    })
}

/// The `PATH` given to build commands.
pub(crate) fn system_path() -> &'static str {
    SYSTEM_PATH
}

/// A scratch folder for one build, `<work_dir>/<recipe>.build.<pid>.<nanos>`, removed when
/// dropped (see [`remove_tree`] for the care taken).
#[derive(Debug)]
pub(crate) struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// Creates a fresh scratch folder in `work_dir` (which must be canonical, so that mount
    /// points found below it compare equal to the kernel's names).
    pub(crate) fn new(work_dir: &Path, recipe: &str) -> Result<Self, Error> {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let path = work_dir.join(format!("{recipe}.build.{}.{nanos}", std::process::id()));
        // create_dir, not create_dir_all: the folder must be new, hence ours to remove.
        std::fs::create_dir(&path).map_err(Error::io("creating the scratch folder", &path))?;
        Ok(Self { path })
    }

    /// The folder.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = remove_tree(&self.path) {
            // Drop cannot fail; the folder is left for a person, and the next build of the
            // recipe tries again (see `remove_stale_scratch`).
            eprintln!("ssp-image: {e}");
        }
    }
}

/// Removes the scratch tree at `path`: first detaches anything mounted at or below it (a
/// killed debootstrap leaves `proc`, `sys`, maybe a bind-mounted `/dev`), and refuses to go
/// on while anything stays mounted, because deleting through a mount deletes the host's
/// files. `remove_dir_all` never follows symbolic links (the tree's absolute links point at
/// the host's `/`), it removes the links themselves.
pub(crate) fn remove_tree(path: &Path) -> Result<(), Error> {
    let mounted = unmount_below(path);
    if !mounted.is_empty() {
        return Err(Error::Io {
            what: "not removing the scratch folder, because these are still mounted in it: unmount them and remove",
            path: path.into(),
            source: std::io::Error::other(mounted.join(", ")),
        });
    }
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("removing the scratch folder", path)(e)),
        _ => Ok(()),
    }
}

/// Removes scratch folders of `recipe` in `work_dir` left by builds whose process is gone
/// (killed, or the machine lost power). Call it holding the recipe's lock.
pub(crate) fn remove_stale_scratch(work_dir: &Path, recipe: &str) {
    let Ok(entries) = std::fs::read_dir(work_dir) else {
        return;
    };
    let prefix = format!("{recipe}.build.");
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((pid, nanos)) = name.strip_prefix(&prefix).and_then(|rest| rest.split_once('.')) else {
            continue;
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(pid) || !digits(nanos) || Path::new("/proc").join(pid).exists() {
            continue;
        }
        if let Err(e) = remove_tree(&entry.path()) {
            eprintln!("ssp-image: {e}");
        }
    }
}

/// Mount points at or below `path`, deepest first.
pub(crate) fn mounts_below(path: &Path) -> Vec<PathBuf> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts: Vec<PathBuf> = table
        .lines()
        // Field 5 (index 4) is the mount point, relative to this process's root.
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_mount_point(field)))
        .filter(|mount| mount.starts_with(path))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    mounts.dedup();
    mounts
}

/// The kernel writes space, tab, newline and backslash in mount points as `\ooo`.
fn unescape_mount_point(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal =
            bytes.get(i + 1..i + 4).filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Detaches everything mounted at or below `path`, deepest first; returns what is still
/// mounted afterwards (empty when all went).
pub(crate) fn unmount_below(path: &Path) -> Vec<String> {
    for mount in mounts_below(path) {
        let _ = rustix::mount::unmount(&mount, rustix::mount::UnmountFlags::DETACH);
    }
    mounts_below(path).iter().map(|m| m.display().to_string()).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn scratch_is_removed_on_drop_without_following_links() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), "x").unwrap();
        let work = tempfile::tempdir().unwrap();
        let scratch = Scratch::new(work.path(), "busybox").unwrap();
        let path = scratch.path().to_path_buf();
        assert!(path.starts_with(work.path()));
        std::fs::create_dir_all(path.join("rootfs/etc")).unwrap();
        std::os::unix::fs::symlink(outside.path(), path.join("rootfs/etc/out")).unwrap();
        std::os::unix::fs::symlink("/", path.join("rootfs/root-link")).unwrap();
        drop(scratch);
        assert!(!path.exists());
        assert!(outside.path().join("keep").exists(), "a link's target survives");
    }

    #[test]
    fn stale_scratch_of_dead_builds_is_removed_and_live_ones_kept() {
        let work = tempfile::tempdir().unwrap();
        // pid 0 never names a process in /proc; our own pid is alive.
        let dead = work.path().join("busybox.build.0.123");
        let live = work.path().join(format!("busybox.build.{}.456", std::process::id()));
        let other = work.path().join("debian-12.build.0.789");
        let unrelated = work.path().join("busybox.build.notes");
        for dir in [&dead, &live, &other, &unrelated] {
            std::fs::create_dir_all(dir.join("rootfs")).unwrap();
        }
        remove_stale_scratch(work.path(), "busybox");
        assert!(!dead.exists());
        assert!(live.exists() && other.exists() && unrelated.exists());
    }

    #[test]
    fn impossible_space_is_refused() {
        let err = require_space(Path::new("/"), u64::MAX).unwrap_err();
        let Error::NoSpace { path, needed, available } = &err else { panic!("{err}") };
        assert_eq!((path.as_path(), *needed), (Path::new("/"), u64::MAX));
        assert!(*available < u64::MAX);
        assert!(err.to_string().contains("not enough free disk space in /"), "{err}");
        require_space(Path::new("/"), 1).unwrap();
    }

    #[test]
    fn mount_points_are_unescaped() {
        assert_eq!(unescape_mount_point(r"/a\040b\011c\134d"), "/a b\tc\\d");
        assert_eq!(unescape_mount_point(r"/plain\x"), r"/plain\x");
        assert!(mounts_below(Path::new("/proc")).contains(&PathBuf::from("/proc")));
    }

    #[test]
    fn tools_are_found_outside_path_too() {
        assert!(find_tool("sh").is_some());
        assert!(find_tool("no-such-tool-ssp").is_none());
        let err = require_tool("busybox", "no-such-tool-ssp", "some-package").unwrap_err();
        assert!(err.to_string().contains("apt-get install some-package"), "{err}");
    }
}
