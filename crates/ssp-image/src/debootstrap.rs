//! Debian trees with `debootstrap` from Debian's own mirror (the one network source our hosts
//! reach), then the recipe's setup script run inside the tree with `chroot`.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::Error;
use crate::fsutil::{have_tool, unmount_below, Scratch};
use crate::recipe::Recipe;
use crate::{BuildOptions, Progress};

const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

pub(crate) fn build_rootfs(
    recipe: &Recipe,
    rootfs: &Path,
    scratch: &Scratch,
    options: &BuildOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<(), Error> {
    for (tool, package) in [("debootstrap", "debootstrap"), ("chroot", "coreutils"), ("tar", "tar")] {
        if !have_tool(tool) {
            return Err(Error::MissingTool { tool: tool.into(), package: package.into() });
        }
    }
    let suite = recipe.spec.suite.clone().ok_or_else(|| Error::BadRecipe {
        name: recipe.name.clone(),
        detail: "a debootstrap recipe needs a suite".into(),
    })?;
    let mirror = options.mirror.clone().unwrap_or_else(|| host_mirror(&suite));
    // Downloaded packages are kept between builds, so a changed recipe rebuilds quickly.
    let debs = options.cache_dir.join("debs").join(&suite);
    std::fs::create_dir_all(&debs).map_err(Error::io("creating", &debs))?;
    progress(Progress::Step(format!("debootstrap {suite} from {mirror} (about a minute)")));
    let log = scratch.path().join("debootstrap.log");
    let log_file = std::fs::File::create(&log).map_err(Error::io("creating", &log))?;
    let log_err = log_file.try_clone().map_err(Error::io("opening", &log))?;
    let status = Command::new("debootstrap")
        .arg("--variant=minbase")
        .arg(format!("--include={}", recipe.spec.packages.join(",")))
        .arg(format!("--cache-dir={}", debs.display()))
        .arg(&suite)
        .arg(rootfs)
        .arg(&mirror)
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err)
        .status()
        .map_err(Error::io("running debootstrap into", rootfs))?;
    // debootstrap mounts /proc and /sys in the tree while it works; make sure they are gone.
    unmount_below(rootfs);
    if !status.success() {
        return Err(Error::Debootstrap { recipe: recipe.name.clone(), status: status.to_string(), log_tail: tail(&log, 20) });
    }

    if let Some(setup) = &recipe.spec.setup {
        progress(Progress::Step("configuring the system".into()));
        let script = rootfs.join("tmp/ssp-setup.sh");
        std::fs::write(&script, recipe.file(setup)?).map_err(Error::io("writing", &script))?;
        let output = Command::new("chroot")
            .arg(rootfs)
            .args(["/bin/sh", "/tmp/ssp-setup.sh"])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LANG", "C.UTF-8")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
            .map_err(Error::io("running the setup script in", rootfs))?;
        let _ = std::fs::remove_file(&script);
        unmount_below(rootfs);
        if !output.status.success() {
            let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&output.stderr));
            let lines: Vec<&str> = text.lines().collect();
            return Err(Error::Setup {
                recipe: recipe.name.clone(),
                status: output.status.to_string(),
                output: lines[lines.len().saturating_sub(20)..].join("\n"),
            });
        }
    }
    Ok(())
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The host's own Debian mirror for `suite` (from apt's sources, one-line or deb822 style),
/// so builds use whatever mirror or proxy the host is set up for.
fn host_mirror(suite: &str) -> String {
    let mut texts = vec![std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default()];
    if let Ok(entries) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        texts.extend(paths.iter().filter_map(|p| std::fs::read_to_string(p).ok()));
    }
    texts.iter().find_map(|t| mirror_in(t, suite)).unwrap_or_else(|| DEFAULT_MIRROR.into())
}

/// The first `http(s)` URI serving `suite`'s main Debian archive in one sources text.
fn mirror_in(text: &str, suite: &str) -> Option<String> {
    let is_debian = |uri: &str| {
        (uri.starts_with("http://") || uri.starts_with("https://"))
            && !uri.contains("security")
            && uri.trim_end_matches('/').ends_with("/debian")
    };
    for line in text.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        if words.next() != Some("deb") {
            continue;
        }
        let mut uri = words.next();
        if let Some(options) = uri.filter(|u| u.starts_with('[')) {
            if !options.ends_with(']') {
                words.find(|w| w.ends_with(']'));
            }
            uri = words.next();
        }
        if let Some(uri) = uri.filter(|u| is_debian(u)) {
            if words.next() == Some(suite) {
                return Some(uri.trim_end_matches('/').to_string());
            }
        }
    }
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_string()))
        };
        let (Some(uris), Some(suites)) = (field("URIs:"), field("Suites:")) else { continue };
        if field("Types:").is_some_and(|t| !t.split_whitespace().any(|t| t == "deb")) {
            continue;
        }
        if suites.split_whitespace().any(|s| s == suite) {
            if let Some(uri) = uris.split_whitespace().find(|u| is_debian(u)) {
                return Some(uri.trim_end_matches('/').to_string());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::mirror_in;

    #[test]
    fn mirrors_are_read_from_both_source_formats() {
        let one_line = "# comment\ndeb http://security.debian.org/debian-security bookworm-security main\n\
                        deb [arch=amd64] http://mirror.example/debian/ bookworm main contrib\n";
        assert_eq!(mirror_in(one_line, "bookworm").as_deref(), Some("http://mirror.example/debian"));
        let spaced = "deb [ arch=amd64 signed-by=/k.gpg ] http://m.example/debian bookworm main";
        assert_eq!(mirror_in(spaced, "bookworm").as_deref(), Some("http://m.example/debian"));
        let deb822 = "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n\
                      Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n";
        assert_eq!(mirror_in(deb822, "bookworm").as_deref(), Some("http://deb.debian.org/debian"));
        assert_eq!(mirror_in(deb822, "trixie"), None);
        assert_eq!(mirror_in("deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main", "bookworm"), None);
    }
}
