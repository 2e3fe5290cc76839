//! Checks on an instance backup archive before it reaches LXD: imported archives are
//! untrusted input. Pure: the caller reads the tar stream and hands each entry's header
//! here, then the text of `backup/index.yaml`.
//!
//! What is accepted is what LXD's own portable (not storage-optimized) container export
//! holds: every entry under `backup/`, no absolute path and no `..`, no entry reached
//! through a symbolic link an earlier entry made, device nodes and FIFOs only inside a root
//! file system (`backup/container/rootfs/`, `backup/snapshots/NAME/rootfs/`), symbolic links
//! only there too, hard links only to paths that pass the same rules, within size and entry
//! limits, with an index that says it is a non-optimized container whose snapshots are the
//! ones the archive holds.

use std::collections::{BTreeSet, HashSet};

/// What a tar entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A hard link to an earlier entry.
    HardLink,
    /// A character device node.
    CharDevice,
    /// A block device node.
    BlockDevice,
    /// A named pipe.
    Fifo,
    /// Anything else (GNU sparse, extended headers are handled by the reader).
    Other,
}

/// One entry's header.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// The path as stored.
    pub path: &'a str,
    /// Its kind.
    pub kind: EntryKind,
    /// A link's target, as stored.
    pub link: Option<&'a str>,
    /// Bytes of content.
    pub size: u64,
}

/// How big an archive may be.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most bytes of content, all entries together.
    pub max_bytes: u64,
    /// Most entries.
    pub max_entries: u64,
}

/// Why an archive was refused; the message names the entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    /// An entry outside `backup/`, absolute, or with `..`.
    #[error("entry {0:?} is outside backup/ (absolute paths and '..' are refused)")]
    Outside(String),
    /// An entry reached through a symbolic link.
    #[error("entry {0:?} lies under a symbolic link made earlier in the archive")]
    ThroughLink(String),
    /// A device node, FIFO or link where none belongs.
    #[error("entry {path:?}: a {kind} is only allowed inside a root file system")]
    Misplaced {
        /// The entry.
        path: String,
        /// What it is.
        kind: &'static str,
    },
    /// A hard link whose target breaks the rules.
    #[error("hard link {path:?} points outside the archive's files ({target:?})")]
    BadHardLink {
        /// The entry.
        path: String,
        /// Its target.
        target: String,
    },
    /// An entry type LXD never writes.
    #[error("entry {0:?} has a type an LXD export never holds")]
    Unsupported(String),
    /// Over the size or entry limit.
    #[error("the archive is too big: {0}")]
    TooBig(String),
    /// `backup/index.yaml` is missing, repeated or wrong.
    #[error("backup/index.yaml: {0}")]
    Index(String),
}

/// What a checked archive holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The instance name the index gives (ssp imports under a name of its own).
    pub name: String,
    /// Its snapshots.
    pub snapshots: Vec<String>,
    /// Entries.
    pub entries: u64,
    /// Bytes of content.
    pub bytes: u64,
}

/// What the index says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Index {
    /// Instance name.
    pub name: String,
    /// `container` or `virtual-machine`.
    pub kind: String,
    /// Storage-optimized (a driver's binary stream, which cannot be checked).
    pub optimized: bool,
    /// Snapshot names.
    pub snapshots: Vec<String>,
}

/// The path of the index inside an archive.
pub const INDEX: &str = "backup/index.yaml";

/// The largest index accepted.
pub const MAX_INDEX_BYTES: u64 = 1 << 20;

/// Checks an archive entry by entry.
#[derive(Debug)]
pub struct Checker {
    limits: Limits,
    entries: u64,
    bytes: u64,
    links: HashSet<String>,
    snapshot_dirs: BTreeSet<String>,
    index_seen: bool,
    config_seen: bool,
}

/// The path without a leading `./` and trailing `/`, if it is a safe relative path under
/// `backup/` (or `backup` itself).
fn normalize(path: &str) -> Option<&str> {
    let path = path.strip_prefix("./").unwrap_or(path);
    let path = path.trim_end_matches('/');
    if path.is_empty() || path.starts_with('/') || path.contains('\0') || path.contains('\\') {
        return None;
    }
    if path.split('/').any(|part| part.is_empty() || part == "." || part == "..") {
        return None;
    }
    (path == "backup" || path.starts_with("backup/")).then_some(path)
}

/// Whether `path` lies inside a root file system of the archive (not the folder itself).
fn in_rootfs(path: &str) -> bool {
    if path.strip_prefix("backup/container/rootfs/").is_some() {
        return true;
    }
    path.strip_prefix("backup/snapshots/")
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(_, rest)| rest.starts_with("rootfs/"))
}

impl Checker {
    /// A checker with these limits.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            entries: 0,
            bytes: 0,
            links: HashSet::new(),
            snapshot_dirs: BTreeSet::new(),
            index_seen: false,
            config_seen: false,
        }
    }

    fn under_link(&self, path: &str) -> bool {
        let mut prefix = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            if self.links.contains(&prefix) {
                return true;
            }
        }
        false
    }

    /// Checks one entry; `Ok(true)` when it is the index, whose text the caller then reads
    /// (at most [`MAX_INDEX_BYTES`]) and passes to [`Checker::finish`].
    pub fn entry(&mut self, entry: Entry<'_>) -> Result<bool, ArchiveError> {
        let path = normalize(entry.path).ok_or_else(|| ArchiveError::Outside(entry.path.into()))?;
        self.entries += 1;
        self.bytes = self.bytes.saturating_add(entry.size);
        if self.entries > self.limits.max_entries {
            return Err(ArchiveError::TooBig(format!("more than {} entries", self.limits.max_entries)));
        }
        if self.bytes > self.limits.max_bytes {
            return Err(ArchiveError::TooBig(format!("more than {} bytes of content", self.limits.max_bytes)));
        }
        if self.under_link(path) {
            return Err(ArchiveError::ThroughLink(path.into()));
        }
        if let Some(rest) = path.strip_prefix("backup/snapshots/") {
            let name = rest.split('/').next().unwrap_or(rest);
            self.snapshot_dirs.insert(name.to_string());
        }
        let rootfs = in_rootfs(path);
        let misplaced = |kind| ArchiveError::Misplaced { path: path.into(), kind };
        match entry.kind {
            EntryKind::File | EntryKind::Dir => {}
            EntryKind::Symlink if rootfs => {
                self.links.insert(path.to_string());
            }
            EntryKind::Symlink => return Err(misplaced("symbolic link")),
            EntryKind::HardLink => {
                let target = entry.link.unwrap_or_default();
                let ok =
                    normalize(target).is_some_and(|t| in_rootfs(t) && !self.under_link(t) && !self.links.contains(t));
                if !rootfs || !ok {
                    return Err(ArchiveError::BadHardLink { path: path.into(), target: target.into() });
                }
            }
            EntryKind::CharDevice if rootfs => {}
            EntryKind::CharDevice => return Err(misplaced("character device")),
            EntryKind::BlockDevice if rootfs => {}
            EntryKind::BlockDevice => return Err(misplaced("block device")),
            EntryKind::Fifo if rootfs => {}
            EntryKind::Fifo => return Err(misplaced("FIFO")),
            EntryKind::Other => return Err(ArchiveError::Unsupported(path.into())),
        }
        if path == "backup/container/backup.yaml" {
            self.config_seen = true;
        }
        if path == INDEX {
            if self.index_seen || entry.kind != EntryKind::File {
                return Err(ArchiveError::Index("must be one regular file".into()));
            }
            if entry.size > MAX_INDEX_BYTES {
                return Err(ArchiveError::Index(format!("larger than {MAX_INDEX_BYTES} bytes")));
            }
            self.index_seen = true;
            return Ok(true);
        }
        Ok(false)
    }

    /// After the last entry: the index (its text) must describe what the archive holds.
    pub fn finish(self, index: Option<&str>) -> Result<Summary, ArchiveError> {
        let text = match (self.index_seen, index) {
            (true, Some(text)) => text,
            _ => return Err(ArchiveError::Index("missing; this is not an LXD instance backup".into())),
        };
        let index = parse_index(text)?;
        if index.kind != "container" {
            return Err(ArchiveError::Index(format!("type {:?}: only containers are imported", index.kind)));
        }
        if index.optimized {
            return Err(ArchiveError::Index(
                "a storage-optimized backup cannot be checked; export without --optimized-storage".into(),
            ));
        }
        if !self.config_seen {
            return Err(ArchiveError::Index("the archive has no backup/container/backup.yaml".into()));
        }
        let listed: BTreeSet<String> = index.snapshots.iter().cloned().collect();
        if listed != self.snapshot_dirs {
            return Err(ArchiveError::Index(format!(
                "lists snapshots {:?} but the archive holds {:?}",
                listed, self.snapshot_dirs
            )));
        }
        Ok(Summary { name: index.name, snapshots: index.snapshots, entries: self.entries, bytes: self.bytes })
    }
}

/// Reads the fields ssp needs from LXD's `index.yaml`: the top-level `name`, `type`,
/// `optimized` and the `snapshots` list (nested sections are skipped).
pub fn parse_index(text: &str) -> Result<Index, ArchiveError> {
    let mut index = Index::default();
    let mut in_snapshots = false;
    let mut seen_type = false;
    for line in text.lines() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if let Some(item) = line.strip_prefix("- ") {
            if in_snapshots {
                let name = item.trim().trim_matches('"').to_string();
                if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                    return Err(ArchiveError::Index(format!("snapshot name {name:?} is not allowed")));
                }
                index.snapshots.push(name);
            }
            continue;
        }
        if line.starts_with(' ') {
            // Inside a nested section (`config:`), or a list item of one.
            continue;
        }
        in_snapshots = false;
        let Some((key, value)) = line.split_once(':') else {
            return Err(ArchiveError::Index(format!("unreadable line {line:?}")));
        };
        let value = value.trim().trim_matches('"');
        match key {
            "name" => index.name = value.to_string(),
            "type" => {
                index.kind = value.to_string();
                seen_type = true;
            }
            "optimized" => index.optimized = value == "true",
            "snapshots" => in_snapshots = value.is_empty(),
            _ => {}
        }
    }
    if index.name.is_empty() {
        return Err(ArchiveError::Index("no instance name".into()));
    }
    if !seen_type {
        // LXD before instance types wrote containers only.
        index.kind = "container".into();
    }
    Ok(index)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits { max_bytes: 1 << 30, max_entries: 1000 };

    const INDEX_TEXT: &str = "name: c1\nbackend: btrfs\npool: pool\nsnapshots:\n- snap0\noptimized: false\n\
        optimized_header: false\ntype: container\nconfig:\n  container:\n    name: c1\n    snapshots:\n    - x\n";

    fn e(path: &str, kind: EntryKind) -> Entry<'_> {
        Entry { path, kind, link: None, size: 10 }
    }

    fn good(checker: &mut Checker) {
        for (path, kind) in [
            ("backup/", EntryKind::Dir),
            ("backup/index.yaml", EntryKind::File),
            ("backup/container/backup.yaml", EntryKind::File),
            ("backup/container/rootfs/bin", EntryKind::Symlink),
            ("backup/container/rootfs/dev/null", EntryKind::CharDevice),
            ("backup/snapshots/snap0/rootfs/etc/passwd", EntryKind::File),
        ] {
            checker.entry(e(path, kind)).unwrap();
        }
    }

    #[test]
    fn an_lxd_export_passes() {
        let mut checker = Checker::new(LIMITS);
        good(&mut checker);
        let summary = checker.finish(Some(INDEX_TEXT)).unwrap();
        assert_eq!(summary.name, "c1");
        assert_eq!(summary.snapshots, ["snap0"]);
        assert_eq!(summary.entries, 6);
    }

    #[test]
    fn paths_outside_backup_are_refused() {
        for bad in [
            "/etc/passwd",
            "backup/../etc/passwd",
            "backup/container/rootfs/../../../x",
            "etc/passwd",
            "backupx/a",
            "./../x",
            "backup//x",
            "",
        ] {
            let mut checker = Checker::new(LIMITS);
            let err = checker.entry(e(bad, EntryKind::File)).unwrap_err();
            assert!(matches!(err, ArchiveError::Outside(_)), "{bad:?}: {err}");
        }
        assert!(Checker::new(LIMITS).entry(e("./backup/index.yaml", EntryKind::File)).unwrap());
    }

    #[test]
    fn nothing_is_written_through_a_link_and_devices_stay_in_a_rootfs() {
        let mut checker = Checker::new(LIMITS);
        checker.entry(e("backup/container/rootfs/x", EntryKind::Symlink)).unwrap();
        let err = checker.entry(e("backup/container/rootfs/x/passwd", EntryKind::File)).unwrap_err();
        assert!(matches!(err, ArchiveError::ThroughLink(_)), "{err}");
        for (path, kind) in [
            ("backup/container/x", EntryKind::CharDevice),
            ("backup/x", EntryKind::BlockDevice),
            ("backup/container/backup.yaml", EntryKind::Symlink),
            ("backup/x", EntryKind::Fifo),
        ] {
            let err = Checker::new(LIMITS).entry(e(path, kind)).unwrap_err();
            assert!(matches!(err, ArchiveError::Misplaced { .. }), "{path}: {err}");
        }
        let mut link = e("backup/container/rootfs/a", EntryKind::HardLink);
        link.link = Some("/etc/shadow");
        assert!(matches!(Checker::new(LIMITS).entry(link), Err(ArchiveError::BadHardLink { .. })));
        link.link = Some("backup/container/rootfs/b");
        assert!(Checker::new(LIMITS).entry(link).is_ok());
        assert!(matches!(
            Checker::new(LIMITS).entry(e("backup/container/rootfs/s", EntryKind::Other)),
            Err(ArchiveError::Unsupported(_))
        ));
    }

    #[test]
    fn limits_hold() {
        let mut checker = Checker::new(Limits { max_bytes: 15, max_entries: 10 });
        checker.entry(e("backup/a", EntryKind::File)).unwrap();
        assert!(matches!(checker.entry(e("backup/b", EntryKind::File)), Err(ArchiveError::TooBig(_))));
        let mut checker = Checker::new(Limits { max_bytes: 1000, max_entries: 1 });
        checker.entry(e("backup/a", EntryKind::File)).unwrap();
        assert!(matches!(checker.entry(e("backup/b", EntryKind::File)), Err(ArchiveError::TooBig(_))));
    }

    #[test]
    fn a_wrong_index_is_refused() {
        let cases = [
            (None, "missing"),
            (Some("backend: btrfs\n"), "no instance name"),
            (Some("name: v\ntype: virtual-machine\nsnapshots:\n- snap0\n"), "only containers"),
            (Some("name: c\noptimized: true\nsnapshots:\n- snap0\n"), "optimized"),
            (Some("name: c\nsnapshots:\n- other\n"), "lists snapshots"),
            (Some("name: c\nsnapshots: []\n"), "lists snapshots"),
            (Some("name: c\nsnapshots:\n- ../x\n"), "not allowed"),
        ];
        for (text, expect) in cases {
            let mut checker = Checker::new(LIMITS);
            good(&mut checker);
            let err = checker.finish(text).unwrap_err().to_string();
            assert!(err.contains(expect), "{text:?}: {err}");
        }
        let mut checker = Checker::new(LIMITS);
        checker.entry(e("backup/index.yaml", EntryKind::File)).unwrap();
        assert!(checker.entry(e("backup/index.yaml", EntryKind::File)).is_err(), "a second index");
        let mut without_config = Checker::new(LIMITS);
        without_config.entry(e("backup/index.yaml", EntryKind::File)).unwrap();
        assert!(without_config.finish(Some("name: c\n")).unwrap_err().to_string().contains("backup.yaml"));
    }
}
