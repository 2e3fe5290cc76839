//! The tiny busybox image, written straight into the tarball with the `tar` crate: no root
//! tree on disk, no root privileges, every entry owned by 0:0 whoever builds it.
//!
//! The root tree: the host's static busybox (Debian's `busybox-static`) as `/bin/busybox`, a
//! symbolic link per applet where busybox itself says it belongs (`--list-full`, which
//! includes `/sbin/init`), the usual empty folders, and the recipe's files (inittab, rcS, the
//! udhcpc hook, passwd, …). It must not use a dynamically linked busybox: the image has no
//! C library to load it with.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::Command;

use crate::error::Error;
use crate::recipe::Recipe;

/// Where Debian's `busybox-static` installs its binary.
pub(crate) const HOST_BUSYBOX: &str = "/bin/busybox";

/// Folders of the root tree and their modes. `/proc`, `/sys`, `/dev` and `/run` are mount
/// points that LXD (or rcS) fills at start.
const DIRS: &[(&str, u32)] = &[
    ("bin", 0o755),
    ("dev", 0o755),
    ("etc", 0o755),
    ("etc/init.d", 0o755),
    ("home", 0o755),
    ("mnt", 0o755),
    ("proc", 0o555),
    ("root", 0o700),
    ("run", 0o755),
    ("sbin", 0o755),
    ("sys", 0o555),
    ("tmp", 0o1777),
    ("usr", 0o755),
    ("usr/bin", 0o755),
    ("usr/sbin", 0o755),
    ("usr/share", 0o755),
    ("usr/share/udhcpc", 0o755),
    ("var", 0o755),
    ("var/log", 0o755),
    ("var/tmp", 0o1777),
];

/// The host's static busybox binary, after checking it is one.
pub(crate) fn host_busybox(recipe: &Recipe) -> Result<Vec<u8>, Error> {
    let missing = || Error::MissingTool {
        recipe: recipe.name.clone(),
        tool: format!("a statically linked busybox at {HOST_BUSYBOX}"),
        package: "busybox-static".into(),
    };
    let binary = std::fs::read(HOST_BUSYBOX).map_err(|_| missing())?;
    if !is_static_elf(&binary) {
        return Err(missing());
    }
    Ok(binary)
}

/// Where each applet lives, relative to `/` (`bin/sh`, `sbin/init`, `usr/bin/[`), as the
/// host busybox lists them.
fn applets(recipe: &Recipe) -> Result<BTreeSet<String>, Error> {
    let output = Command::new(HOST_BUSYBOX).arg("--list-full").output().map_err(Error::io("running", HOST_BUSYBOX))?;
    if !output.status.success() {
        return Err(Error::Pack {
            recipe: recipe.name.clone(),
            detail: format!("`{HOST_BUSYBOX} --list-full` failed ({})", output.status),
        });
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let applets: BTreeSet<String> = text
        .lines()
        .map(str::trim)
        .filter(|path| {
            !path.is_empty()
                && !path.starts_with('/')
                && path.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
                && path.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_-.[".contains(&b))
        })
        .map(str::to_owned)
        .collect();
    if !applets.contains("sbin/init") || !applets.contains("bin/sh") {
        return Err(Error::Pack {
            recipe: recipe.name.clone(),
            detail: format!("{HOST_BUSYBOX} lacks the init or sh applet; install Debian's busybox-static"),
        });
    }
    Ok(applets)
}

/// Appends the whole busybox root tree under `rootfs/` to `tar`.
pub(crate) fn append_rootfs<W: Write>(recipe: &Recipe, tar: &mut tar::Builder<W>, mtime: u64) -> Result<(), Error> {
    let binary = host_busybox(recipe)?;
    let applets = applets(recipe)?;
    let fail = |e: std::io::Error| Error::Pack { recipe: recipe.name.clone(), detail: e.to_string() };

    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(size);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(mtime);
        // Names only inform people listing the tar; numeric ids are what count.
        let _ = header.set_username("root");
        let _ = header.set_groupname("root");
        header
    };

    tar.append_data(&mut header(tar::EntryType::Directory, 0o755, 0), "rootfs/", std::io::empty()).map_err(fail)?;
    for (dir, mode) in DIRS {
        tar.append_data(&mut header(tar::EntryType::Directory, *mode, 0), format!("rootfs/{dir}/"), std::io::empty())
            .map_err(fail)?;
    }
    tar.append_data(
        &mut header(tar::EntryType::Regular, 0o755, binary.len() as u64),
        "rootfs/bin/busybox",
        &binary[..],
    )
    .map_err(fail)?;
    for applet in applets.iter().filter(|a| *a != "bin/busybox") {
        tar.append_link(&mut header(tar::EntryType::Symlink, 0o777, 0), format!("rootfs/{applet}"), "/bin/busybox")
            .map_err(fail)?;
    }
    for file in &recipe.spec.files {
        let content = recipe.file(&file.source)?;
        tar.append_data(
            &mut header(tar::EntryType::Regular, file.mode, content.len() as u64),
            format!("rootfs/{}", file.path),
            content.as_bytes(),
        )
        .map_err(fail)?;
    }
    Ok(())
}

/// Whether `binary` is a 64-bit little-endian ELF file without a `PT_INTERP` program header,
/// i.e. one that needs no dynamic loader.
pub(crate) fn is_static_elf(binary: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let u16_at = |at: usize| binary.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let u32_at = |at: usize| binary.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let u64_at = |at: usize| binary.get(at..at + 8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
    // ELFCLASS64, ELFDATA2LSB.
    if binary.get(..6) != Some(b"\x7fELF\x02\x01") {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return false;
    };
    let Ok(phoff) = usize::try_from(phoff) else {
        return false;
    };
    (0..phnum).all(|i| {
        let at = phoff.saturating_add(i.saturating_mul(phentsize));
        matches!(u32_at(at), Some(kind) if kind != PT_INTERP)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn static_busybox_is_told_from_dynamic_binaries() {
        assert!(is_static_elf(&std::fs::read(HOST_BUSYBOX).unwrap()), "Debian's busybox-static is static");
        assert!(!is_static_elf(&std::fs::read("/bin/ls").unwrap()), "ls is dynamically linked");
        assert!(!is_static_elf(b"#!/bin/sh\n"));
        assert!(!is_static_elf(b"\x7fELF\x02\x01"), "truncated");
    }

    #[test]
    fn applets_include_init_and_stay_inside_the_tree() {
        let recipe = crate::recipe("busybox").unwrap();
        let applets = applets(&recipe).unwrap();
        assert!(applets.contains("sbin/init") && applets.contains("bin/sh") && applets.contains("sbin/udhcpc"));
        assert!(applets.iter().all(|a| !a.starts_with('/') && !a.contains("..")));
    }
}
