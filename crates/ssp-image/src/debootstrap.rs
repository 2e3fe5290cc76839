//! Debian root trees: `debootstrap --variant=minbase` from a Debian mirror (the one network
//! source our hosts reach), then the recipe's setup script inside the tree with `chroot`,
//! then GNU tar over the tree.
//!
//! The host is only ever read (its apt sources, its keyring); nothing is written outside the
//! scratch folder and the cache, and no file inside the tree is written from the host side,
//! because the tree's absolute symbolic links (`/etc/resolv.conf`, …) would resolve to the
//! host's files: the setup script is passed as an argument and runs under `chroot`, where
//! they resolve inside the tree.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::cache::Tarball;
use crate::error::Error;
use crate::fs::{require_tool, system_path, unmount_below};
use crate::recipe::Recipe;
use crate::sources;
use crate::Progress;

/// The archive key debootstrap checks the mirror's `Release` file with. Passed explicitly so
/// an unsigned or wrongly signed mirror is an error, never a warning.
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// Host programs a debootstrap build runs, and the Debian packages that have them.
const TOOLS: &[(&str, &str)] = &[("debootstrap", "debootstrap"), ("chroot", "coreutils"), ("tar", "tar")];

/// Checks that the host can run a debootstrap build of `recipe`, before anything is made.
pub(crate) fn check_host(recipe: &Recipe) -> Result<(), Error> {
    for (tool, package) in TOOLS {
        require_tool(&recipe.name, tool, package)?;
    }
    if !Path::new(KEYRING).is_file() {
        return Err(Error::MissingTool {
            recipe: recipe.name.clone(),
            tool: format!("the Debian archive keyring ({KEYRING})"),
            package: "debian-archive-keyring".into(),
        });
    }
    if !rustix::process::geteuid().is_root() {
        return Err(Error::NotRoot { recipe: recipe.name.clone() });
    }
    Ok(())
}

/// Where packages come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mirrors {
    /// The suite's archive (`http://deb.debian.org/debian`).
    pub main: String,
    /// Its security archive, written into the image's apt sources.
    pub security: String,
}

/// The mirrors for `suite`: `mirror` if given, else the host's apt sources, else Debian's
/// own.
pub(crate) fn mirrors(suite: &str, mirror: Option<&str>) -> Mirrors {
    let texts = sources::host_sources();
    let found = |suite: &str| texts.iter().find_map(|(path, text)| sources::mirror_for(path, text, suite));
    Mirrors {
        main: mirror
            .map(|m| m.trim_end_matches('/').to_string())
            .or_else(|| found(suite))
            .unwrap_or_else(|| sources::DEFAULT_MIRROR.into()),
        security: found(&format!("{suite}-security")).unwrap_or_else(|| sources::DEFAULT_SECURITY_MIRROR.into()),
    }
}

/// Makes `rootfs` (which must not exist yet) with debootstrap and the recipe's setup script.
/// `logs` is a folder for the tools' output.
///
/// Downloaded packages are not kept between builds (`--cache-dir`): measured here, a build
/// with every package already cached took as long as one downloading them all (~45 s), and
/// such a cache only grows.
pub(crate) fn make_rootfs(
    recipe: &Recipe,
    rootfs: &Path,
    logs: &Path,
    mirrors: &Mirrors,
    progress: &mut dyn FnMut(Progress),
) -> Result<(), Error> {
    let Some(suite) = recipe.spec.suite.as_deref() else {
        return Err(Error::BadRecipe { name: recipe.name.clone(), detail: "no suite".into() });
    };
    let debootstrap = require_tool(&recipe.name, "debootstrap", "debootstrap")?;
    let chroot = require_tool(&recipe.name, "chroot", "coreutils")?;

    progress(Progress::Step(format!("debootstrap {suite} from {}", mirrors.main)));
    let log = logs.join("debootstrap.out");
    let out = File::create(&log).map_err(Error::io("creating", &log))?;
    let err = out.try_clone().map_err(Error::io("opening", &log))?;
    let mut command = Command::new(&debootstrap);
    command.arg("--variant=minbase").arg(format!("--keyring={KEYRING}")).arg("--merged-usr");
    if !recipe.spec.packages.is_empty() {
        command.arg(format!("--include={}", recipe.spec.packages.join(",")));
    }
    let status = command
        .arg(suite)
        .arg(rootfs)
        .arg(&mirrors.main)
        // Package scripts run in the tree: no host locale they lack, no questions.
        .env("PATH", system_path())
        .env("LC_ALL", "C.UTF-8")
        .env_remove("LANG")
        .env_remove("LANGUAGE")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(Error::io("running", &debootstrap))?;
    // debootstrap mounts proc and sys in the tree while it works and unmounts them when it
    // ends, unless it was killed: make sure, before anything else touches the tree.
    unmount_below(rootfs);
    if !status.success() {
        let mut log_tail = tail(&std::fs::read_to_string(&log).unwrap_or_default(), 20);
        // On failure debootstrap keeps its own, more detailed, log inside the tree.
        let inner = rootfs.join("debootstrap/debootstrap.log");
        if let Ok(text) = std::fs::read_to_string(&inner) {
            log_tail.push_str(&format!("\n--- debootstrap.log ---\n{}", tail(&text, 10)));
        }
        return Err(Error::Debootstrap { status: status.to_string(), log_tail });
    }

    let Some(setup) = recipe.spec.setup.as_deref() else {
        return Ok(());
    };
    progress(Progress::Step("configuring rootfs".into()));
    let script = recipe.file(setup)?;
    let log = logs.join("setup.out");
    let out = File::create(&log).map_err(Error::io("creating", &log))?;
    let err = out.try_clone().map_err(Error::io("opening", &log))?;
    let status = Command::new(&chroot)
        .arg(rootfs)
        .args(["/bin/sh", "-c", script, setup])
        .env_clear()
        .env("PATH", system_path())
        .env("LC_ALL", "C.UTF-8")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("SSP_MIRROR", &mirrors.main)
        .env("SSP_SECURITY_MIRROR", &mirrors.security)
        .env("SSP_SUITE", suite)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(Error::io("running the setup script with", &chroot))?;
    unmount_below(rootfs);
    if !status.success() {
        return Err(Error::Setup {
            recipe: recipe.name.clone(),
            status: status.to_string(),
            output: tail(&std::fs::read_to_string(&log).unwrap_or_default(), 20),
        });
    }
    Ok(())
}

/// Packs `dir` (`metadata.yaml`, `templates/`, `rootfs/`) into `tarball` with GNU tar, which
/// keeps device nodes, hard links, setuid bits and file capabilities (xattrs) exactly, with
/// numeric owners. Its output streams through `tarball`, which hashes it on the way.
pub(crate) fn pack(recipe: &Recipe, dir: &Path, logs: &Path, tarball: &mut Tarball) -> Result<(), Error> {
    let tar = require_tool(&recipe.name, "tar", "tar")?;
    let log = logs.join("tar.err");
    let err = File::create(&log).map_err(Error::io("creating", &log))?;
    let mut child = Command::new(&tar)
        .args(["--numeric-owner", "--xattrs", "--xattrs-include=*", "--sort=name", "-C"])
        .arg(dir)
        .args(["-cf", "-", "metadata.yaml", "templates", "rootfs"])
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(err)
        .spawn()
        .map_err(Error::io("running", &tar))?;
    let copied = match child.stdout.take() {
        Some(mut stdout) => std::io::copy(&mut stdout, tarball).map(|_| ()),
        None => Err(std::io::Error::other("tar's output was not captured")),
    };
    let status = child.wait().map_err(Error::io("waiting for", &tar))?;
    let fail = |detail: String| Error::Pack { recipe: recipe.name.clone(), detail };
    if let Err(e) = copied {
        return Err(fail(format!("writing {}: {e}", tarball.path().display())));
    }
    if !status.success() {
        return Err(fail(format!(
            "tar failed ({status}): {}",
            tail(&std::fs::read_to_string(&log).unwrap_or_default(), 10)
        )));
    }
    Ok(())
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        let text: String = (1..=30).map(|i| format!("line {i}\n")).collect();
        let last = tail(&text, 20);
        assert!(last.starts_with("line 11\n") && last.ends_with("line 30"));
        assert_eq!(tail("one\ntwo", 20), "one\ntwo");
        assert_eq!(tail("", 20), "");
    }

    #[test]
    fn an_explicit_mirror_wins() {
        let m = mirrors("bookworm", Some("http://mirror.example/debian/"));
        assert_eq!(m.main, "http://mirror.example/debian");
        assert!(m.security.starts_with("http"));
    }
}
