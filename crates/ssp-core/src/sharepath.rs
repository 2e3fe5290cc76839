//! Paths of shared folders: where a share is mounted inside containers (an allowlist of
//! places and characters), and which host folders may be shared at all.
//!
//! The host side is checked on the *canonical* path (symlinks resolved by the caller, who
//! does the IO): never `/`, nothing under the kernel's and the system's own trees, and
//! neither inside nor above ssp's or LXD's state (sharing `/var` would expose LXD's).

use std::fmt;
use std::path::{Component, Path};

/// Where shares may be mounted inside a container.
pub const CONTAINER_ROOTS: [&str; 5] = ["/shares", "/data", "/mnt", "/srv", "/opt"];

/// Host trees that are never shared, nor anything inside them.
pub const HOST_FORBIDDEN: [&str; 7] = ["/proc", "/sys", "/dev", "/etc", "/boot", "/run", "/root"];

const MAX_PATH_LEN: usize = 255;
const MAX_DEPTH: usize = 8;

/// Why a path was refused; the message says what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// An in-container path outside the allowlist.
    #[error(
        "mount path {0:?} is not allowed: use an absolute path under /shares, /data, /mnt, /srv or /opt \
         made of up to 8 parts of letters, digits, '.', '_' and '-' (not starting with '.')"
    )]
    Container(String),
    /// A host path that may not be shared.
    #[error("host folder {path:?} cannot be shared: {why}")]
    Host {
        /// The path.
        path: String,
        /// Why not.
        why: String,
    },
}

/// A checked in-container mount path, e.g. `/shares/datasets`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContainerPath(String);

impl ContainerPath {
    /// Checks `path` against the allowlist.
    pub fn parse(path: &str) -> Result<Self, PathError> {
        let bad = || PathError::Container(path.to_string());
        if path.len() > MAX_PATH_LEN || !path.starts_with('/') || path.ends_with('/') {
            return Err(bad());
        }
        let parts: Vec<&str> = path[1..].split('/').collect();
        if parts.len() < 2 || parts.len() > MAX_DEPTH {
            return Err(bad());
        }
        let part_ok = |p: &str| {
            !p.is_empty()
                && !p.starts_with('.')
                && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
        };
        if !parts.iter().all(|p| part_ok(p)) || !CONTAINER_ROOTS.contains(&format!("/{}", parts[0]).as_str()) {
            return Err(bad());
        }
        Ok(Self(path.to_string()))
    }

    /// The default mount path of share `name` (a checked name): `/shares/NAME`.
    pub fn for_share(name: &crate::names::Name) -> Self {
        Self(format!("/shares/{name}"))
    }

    /// The checked path.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContainerPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks an already canonical host folder: absolute, not `/`, not in a forbidden tree, and
/// neither inside nor above any of `protected` (ssp's state folder, LXD's folder).
pub fn check_host_path(canonical: &Path, protected: &[&Path]) -> Result<(), PathError> {
    let refuse = |why: &str| PathError::Host { path: canonical.display().to_string(), why: why.to_string() };
    if !canonical.is_absolute() || canonical.components().any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err(refuse("give an absolute path without '.' or '..'"));
    }
    if canonical == Path::new("/") {
        return Err(refuse("the whole host file system cannot be shared"));
    }
    if canonical.to_str().is_none() {
        return Err(refuse("the path is not valid UTF-8"));
    }
    for forbidden in HOST_FORBIDDEN {
        if canonical.starts_with(forbidden) {
            return Err(refuse(&format!("nothing under {forbidden} can be shared")));
        }
    }
    for dir in protected {
        if canonical.starts_with(dir) || dir.starts_with(canonical) {
            return Err(refuse(&format!("it overlaps {}, which holds ssp's or LXD's own state", dir.display())));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn container_paths() {
        for ok in ["/shares/datasets", "/data/x", "/mnt/a/b.c_d-e", "/srv/Models", "/opt/lab/v1.2"] {
            assert!(ContainerPath::parse(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            "",
            "/",
            "/shares",
            "/shares/",
            "shares/x",
            "/etc/x",
            "/home/alice",
            "/shares/../etc",
            "/shares/./x",
            "/shares/.hidden",
            "/shares//x",
            "/shares/a b",
            "/shares/x;y",
            "/proc/1",
            "/usr/bin",
            "/shares/x/",
            "/shares/a/b/c/d/e/f/g/h",
        ] {
            assert!(ContainerPath::parse(bad).is_err(), "{bad:?}");
        }
        let name = crate::names::Name::parse("datasets").unwrap();
        assert_eq!(ContainerPath::for_share(&name).as_str(), "/shares/datasets");
        assert!(ContainerPath::parse(ContainerPath::for_share(&name).as_str()).is_ok());
    }

    #[test]
    fn host_paths() {
        let state = Path::new("/var/lib/ssp");
        let lxd = Path::new("/var/lib/lxd");
        let protected = [state, lxd];
        assert!(check_host_path(Path::new("/srv/datasets"), &protected).is_ok());
        assert!(check_host_path(Path::new("/tmp/x"), &protected).is_ok());
        for bad in [
            "/",
            "/etc",
            "/etc/ssl",
            "/proc/1",
            "/sys",
            "/dev/shm",
            "/var",
            "/var/lib",
            "/var/lib/lxd/x",
            "/var/lib/ssp",
        ] {
            let error = check_host_path(Path::new(bad), &protected).unwrap_err();
            assert!(error.to_string().contains("cannot be shared"), "{bad}: {error}");
        }
        assert!(check_host_path(Path::new("relative"), &protected).is_err());
        assert!(check_host_path(Path::new("/srv/../etc"), &protected).is_err());
    }

    proptest! {
        /// An accepted container path never climbs out and stays under an allowed root.
        #[test]
        fn accepted_container_paths_stay_put(s in "\\PC{0,40}") {
            if let Ok(path) = ContainerPath::parse(&s) {
                prop_assert!(!path.as_str().contains("..") && !path.as_str().contains("//"));
                let under_root = CONTAINER_ROOTS.iter().any(|r| path.as_str().starts_with(&format!("{r}/")));
                prop_assert!(under_root);
            }
        }
    }
}
