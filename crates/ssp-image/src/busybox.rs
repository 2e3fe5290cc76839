//! The tiny busybox image: the host's static busybox, a symlink per applet, busybox's own
//! init with an inittab that brings the network up and shuts down on LXD's halt signal
//! (SIGPWR, which busybox init handles as halt).

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;

use crate::error::Error;
use crate::fsutil::have_tool;
use crate::recipe::Recipe;
use crate::Progress;

/// Debian's busybox-static installs here; a dynamically linked busybox would not run inside.
const HOST_BUSYBOX: &str = "/bin/busybox";

pub(crate) fn build_rootfs(recipe: &Recipe, rootfs: &Path, progress: &mut dyn FnMut(Progress)) -> Result<(), Error> {
    progress(Progress::Step("assembling busybox root".into()));
    if !Path::new(HOST_BUSYBOX).exists() || !have_tool("busybox") {
        return Err(Error::MissingTool { tool: "busybox".into(), package: "busybox-static".into() });
    }
    let binary = std::fs::read(HOST_BUSYBOX).map_err(Error::io("reading", HOST_BUSYBOX))?;
    if !is_static_elf(&binary) {
        return Err(Error::MissingTool { tool: "a static busybox".into(), package: "busybox-static".into() });
    }
    for dir in ["bin", "sbin", "etc/init.d", "usr/bin", "usr/sbin", "usr/share/udhcpc", "proc", "sys", "dev", "run", "tmp", "root", "var/log"] {
        let path = rootfs.join(dir);
        std::fs::create_dir_all(&path).map_err(Error::io("creating", &path))?;
    }
    set_mode(&rootfs.join("tmp"), 0o1777)?;
    set_mode(&rootfs.join("root"), 0o700)?;
    let busybox = rootfs.join("bin/busybox");
    std::fs::write(&busybox, &binary).map_err(Error::io("writing", &busybox))?;
    set_mode(&busybox, 0o755)?;
    let list = Command::new(HOST_BUSYBOX).arg("--list-full").output().map_err(Error::io("running", HOST_BUSYBOX))?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim();
        let safe = !applet.is_empty() && !applet.contains("..") && applet.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_-.[".contains(&b));
        if !safe || applet == "bin/busybox" {
            continue;
        }
        let link = rootfs.join(applet);
        if link.exists() {
            continue;
        }
        let depth = applet.matches('/').count();
        let target = format!("{}bin/busybox", "../".repeat(depth));
        symlink(&target, &link).map_err(Error::io("linking", &link))?;
    }
    let files: [(&str, &str, u32); 7] = [
        ("etc/inittab", recipe.file("inittab")?, 0o644),
        ("etc/init.d/rcS", recipe.file("rcS")?, 0o755),
        ("usr/share/udhcpc/default.script", recipe.file("udhcpc.script")?, 0o755),
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n", 0o644),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n", 0o644),
        ("etc/hostname", "busybox\n", 0o644),
        ("etc/profile", "export PATH=/usr/sbin:/usr/bin:/sbin:/bin\n", 0o644),
    ];
    for (path, content, mode) in files {
        let path = rootfs.join(path);
        std::fs::write(&path, content).map_err(Error::io("writing", &path))?;
        set_mode(&path, mode)?;
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<(), Error> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(Error::io("setting the mode of", path))
}

/// An ELF executable without a PT_INTERP program header needs no dynamic loader.
fn is_static_elf(binary: &[u8]) -> bool {
    let u16_at = |at: usize| binary.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let u64_at = |at: usize| binary.get(at..at + 8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
    if binary.get(..5) != Some(b"\x7fELF\x02") {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return false;
    };
    const PT_INTERP: u32 = 3;
    (0..phnum).all(|i| {
        let at = phoff as usize + i * phentsize;
        binary.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])) != Some(PT_INTERP)
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
    }
}
