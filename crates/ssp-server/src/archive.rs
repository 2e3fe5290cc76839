//! Reads an instance backup archive as untrusted input: decompresses it the way LXD does
//! (with the host's `gzip`, `xz`, `bzip2` or `zstd`, or none for a plain tar), walks every
//! tar header and hands it to the pure rules in [`ssp_core::archive`]. Nothing is unpacked:
//! only headers and the small index are read.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

use ssp_core::archive::{ArchiveError, Checker, Entry, EntryKind, Limits, Summary, MAX_INDEX_BYTES};

/// Why an archive could not be read or was refused.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The rules refused it.
    #[error("{0}")]
    Refused(#[from] ArchiveError),
    /// Not a format LXD exports.
    #[error("is neither a tar archive nor compressed with gzip, xz, bzip2 or zstd")]
    Format,
    /// Reading or decompressing failed.
    #[error("cannot be read: {0}")]
    Read(String),
}

/// The decompressor a file's first bytes call for (`None`: a plain tar).
fn decompressor(head: &[u8]) -> Result<Option<&'static str>, CheckError> {
    Ok(Some(match head {
        [0x1f, 0x8b, ..] => "gzip",
        [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => "xz",
        [b'B', b'Z', b'h', ..] => "bzip2",
        [0x28, 0xb5, 0x2f, 0xfd, ..] => "zstd",
        _ if head.len() >= 262 && &head[257..262] == b"ustar" => return Ok(None),
        _ => return Err(CheckError::Format),
    }))
}

fn kind_of(kind: tar::EntryType) -> EntryKind {
    match kind {
        tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File,
        tar::EntryType::Directory => EntryKind::Dir,
        tar::EntryType::Symlink => EntryKind::Symlink,
        tar::EntryType::Link => EntryKind::HardLink,
        tar::EntryType::Char => EntryKind::CharDevice,
        tar::EntryType::Block => EntryKind::BlockDevice,
        tar::EntryType::Fifo => EntryKind::Fifo,
        _ => EntryKind::Other,
    }
}

/// Checks the archive at `path` (blocking: run it off the async runtime).
pub fn check_file(path: &Path, limits: Limits) -> Result<Summary, CheckError> {
    let read_error = |e: std::io::Error| CheckError::Read(e.to_string());
    let mut head = Vec::with_capacity(512);
    std::fs::File::open(path).map_err(read_error)?.take(512).read_to_end(&mut head).map_err(read_error)?;
    let file = std::fs::File::open(path).map_err(read_error)?;
    match decompressor(&head)? {
        None => check_stream(file, limits),
        Some(tool) => {
            let mut child = Command::new(tool)
                .arg("-dc")
                .stdin(Stdio::from(file))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| CheckError::Read(format!("cannot run {tool} to decompress it: {e}")))?;
            let stdout = child.stdout.take().ok_or_else(|| CheckError::Read(format!("no output from {tool}")))?;
            let checked = check_stream(stdout, limits);
            if checked.is_err() {
                child.kill().ok();
            }
            let mut stderr = String::new();
            if let Some(mut err) = child.stderr.take() {
                err.read_to_string(&mut stderr).ok();
            }
            let status = child.wait().map_err(read_error)?;
            let summary = checked?;
            if !status.success() {
                return Err(CheckError::Read(format!("{tool} failed: {}", stderr.trim())));
            }
            Ok(summary)
        }
    }
}

/// Checks a tar stream.
pub fn check_stream(reader: impl Read, limits: Limits) -> Result<Summary, CheckError> {
    let mut archive = tar::Archive::new(reader);
    let mut checker = Checker::new(limits);
    let mut index = None;
    let entries = archive.entries().map_err(|e| CheckError::Read(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| CheckError::Read(format!("a broken tar entry: {e}")))?;
        let header = entry.header();
        let kind = kind_of(header.entry_type());
        let size = header.size().unwrap_or(u64::MAX);
        // Lossy text is safe for the rules: it never makes or removes a '/' or a '.'.
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let link = entry.link_name_bytes().map(|l| String::from_utf8_lossy(&l).into_owned());
        let is_index = checker.entry(Entry { path: &path, kind, link: link.as_deref(), size })?;
        if is_index {
            let mut text = String::new();
            (&mut entry)
                .take(MAX_INDEX_BYTES)
                .read_to_string(&mut text)
                .map_err(|e| CheckError::Refused(ArchiveError::Index(format!("unreadable: {e}"))))?;
            index = Some(text);
        }
    }
    Ok(checker.finish(index.as_deref())?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits { max_bytes: 1 << 20, max_entries: 100 };

    fn tar_of(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            // Write the name bytes directly: `set_path` refuses `..` (as an attacker's tool would not).
            let name = &mut header.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    const INDEX: &[u8] = b"name: c1\nsnapshots:\n- s0\noptimized: false\ntype: container\n";

    #[test]
    fn a_good_archive_passes_in_every_compression() {
        let tar = tar_of(&[
            ("backup/index.yaml", tar::EntryType::Regular, INDEX),
            ("backup/container/backup.yaml", tar::EntryType::Regular, b"x"),
            ("backup/snapshots/s0/rootfs/etc/hostname", tar::EntryType::Regular, b"c1"),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain.tar");
        std::fs::write(&plain, &tar).unwrap();
        assert_eq!(check_file(&plain, LIMITS).unwrap().snapshots, ["s0"]);
        let status = Command::new("gzip").arg("-k").arg(&plain).status().expect("gzip must be installed");
        assert!(status.success());
        assert_eq!(check_file(&dir.path().join("plain.tar.gz"), LIMITS).unwrap().name, "c1");
    }

    #[test]
    fn traversal_and_junk_are_refused() {
        let evil = tar_of(&[
            ("backup/index.yaml", tar::EntryType::Regular, INDEX),
            ("backup/../../etc/cron.d/x", tar::EntryType::Regular, b"x"),
        ]);
        let err = check_stream(&evil[..], LIMITS).unwrap_err().to_string();
        assert!(err.contains("outside backup/"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk");
        std::fs::write(&junk, b"hello").unwrap();
        assert!(matches!(check_file(&junk, LIMITS), Err(CheckError::Format)));
    }
}
