//! The web portal in a real browser: Debian's `chromium`, driven by `playwright-core` from npm
//! (`tests/browser/portal.mjs`, never a browser download), against the real `ssp serve` on a
//! private LXD with emulated GPUs. The admin's side (users and invitations with the CLI,
//! scripted GPU telemetry, a host folder to share) is done here; everything a user does is
//! done in the page. The script checks every page with axe-core and saves screenshots under
//! `target/portal-screenshots/`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use ssp_testkit::e2e::{ok, root, text};
use ssp_testkit::{Platform, PrivateLxd};

/// Where this suite's emulated GPU nodes go (removed at the end).
const DEV_DIR: &str = "/dev/ssp-portal-test";

/// How long the whole browser script may run.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(600);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `ssp user invite NAME` as the host's root, with the link on the platform's address.
async fn invite(platform: &Platform, name: &str) -> Result<String> {
    let link = ok(root(platform, &["user", "invite", name]).await?, "user invite")?;
    let (_, token) = link.trim().split_once("/#/invite/").context("an invitation link")?;
    let https = platform.https.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    Ok(format!("{https}/#/invite/{token}"))
}

async fn portal_in_a_browser(lxd: &'static PrivateLxd) -> Result<()> {
    let extra = format!("[gpu]\nemulate = 2\nemulated_dev_dir = \"{DEV_DIR}\"\nsample_interval_secs = 1\n");
    let platform = Platform::start_async_with(PathBuf::from(env!("CARGO_BIN_EXE_ssp")), lxd, "busybox", &extra).await?;
    let result = scenario(&platform).await;
    std::fs::remove_dir_all(DEV_DIR).ok();
    result.map_err(|e| platform.explain(e))
}

async fn scenario(platform: &Platform) -> Result<()> {
    // GPU 0 busy at 73 %, as the admin's GPU map must show it.
    let telemetry = serde_json::json!({ "gpus": [
        { "index": 0, "utilization": 73, "memory_used": 3u64 << 30 },
        { "index": 1, "utilization": 0 },
    ]});
    let telemetry_file = platform.dir().join("state/gpu-telemetry.json");
    std::fs::write(&telemetry_file, telemetry.to_string())?;
    platform.user("alice", &["--max-gpus", "1"])?;
    platform.user("bob", &[])?;
    ok(root(platform, &["user", "add", "ada", "--admin"]).await?, "add ada")?;
    let alice_link = invite(platform, "alice").await?;
    let ada_link = invite(platform, "ada").await?;
    let https = platform.https.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    // A host folder the admin shares read-write in the page: outside the private LXD's
    // folder (which may not be shared), open to all as the storage suite's are.
    let share = tempfile::Builder::new().prefix("ssp-share-portal-").tempdir_in("/tmp")?;
    std::fs::set_permissions(share.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777))?;
    let shots = repo().join("target/portal-screenshots");
    std::fs::create_dir_all(&shots)?;
    let script = repo().join("tests/browser/portal.mjs");
    let mut node = tokio::process::Command::new("node");
    node.arg(&script)
        .current_dir(repo().join("tests/browser"))
        .env("SSP_URL", &https)
        .env("SSP_CERT", platform.cert())
        .env("SSP_ALICE_INVITE", &alice_link)
        .env("SSP_ADA_INVITE", &ada_link)
        .env("SSP_BOB_TOKEN", platform.token("bob")?)
        .env("SSP_SHOTS", &shots)
        .env("SSP_SHARE_DIR", share.path())
        .env("SSP_TELEMETRY", &telemetry_file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(SCRIPT_DEADLINE, node.output()).await.context("the browser script hung")??;
    let said = format!("{}\n{}", text(&out.stdout), text(&out.stderr));
    ensure!(out.status.success(), "the browser script failed ({:?}):\n{said}", out.status.code());
    ensure!(said.contains("portal: all checks passed"), "the browser script did not finish:\n{said}");
    Ok(())
}

ssp_testkit::lxd_tests![portal_in_a_browser];
