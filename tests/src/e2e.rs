//! Small helpers every black-box suite uses: output as text, "it succeeded or say why",
//! running the CLI off the async runtime, and waiting for a condition with a deadline (a
//! deadline only bounds how long a broken run hangs; nothing asserts on speed).

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};

use crate::Platform;

/// How long a check that needs LXD exec inside a container may keep trying: inside work can
/// be slow on a loaded machine, and LXD 5.0.2 stops accepting connections while any client
/// holds a silent one (see `ssp_lxd::Client::new`).
pub const EXEC_PATIENCE: Duration = Duration::from_secs(240);

/// Bytes as (lossy) text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The command's stdout if it succeeded; otherwise an error with its exit code and output.
pub fn ok(output: Output, what: &str) -> Result<String> {
    ensure!(
        output.status.success(),
        "{what} failed ({:?}): {}{}",
        output.status.code(),
        text(&output.stderr),
        text(&output.stdout)
    );
    Ok(text(&output.stdout))
}

/// Runs the CLI as the user whose config is `config`, on a blocking thread.
pub async fn cli(platform: &Platform, config: &Path, args: &[&str]) -> Result<Output> {
    let mut command = platform.cli_command(config, args);
    tokio::task::spawn_blocking(move || Ok(command.output()?)).await?
}

/// Runs the CLI as the host's root (admin over the local socket), on a blocking thread.
pub async fn root(platform: &Platform, args: &[&str]) -> Result<Output> {
    let mut command = platform.root_command(args);
    tokio::task::spawn_blocking(move || Ok(command.output()?)).await?
}

/// Checks until `check` says yes, failing with `what` (and the last error) after `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_error = String::new();
    loop {
        match check().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_error = format!("{e:#}"),
        }
        if Instant::now() > deadline {
            bail!("{what}: not within {timeout:?} {last_error}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Creates a container and waits until its owner's account answers through `ssp exec`.
pub async fn create_answering(platform: &Platform, config: &Path, name: &str) -> Result<()> {
    let created = cli(platform, config, &["container", "create", name]).await?;
    if !created.status.success() {
        // The CLI gives up waiting when LXD is slow (seen when other suites load it); the
        // create itself was recorded if the container is listed, and is waited for below.
        let listed = ok(cli(platform, config, &["--json", "container", "list"]).await?, "container list")?;
        let listed: serde_json::Value = serde_json::from_str(&listed)?;
        let known = listed.as_array().is_some_and(|all| all.iter().any(|c| c["name"] == name));
        ensure!(known, "create {name} failed: {created:?}");
    }
    eventually(&format!("{name} answers as its owner"), EXEC_PATIENCE, || async {
        let out = cli(platform, config, &["exec", name, "--", "id", "-u"]).await?;
        Ok(out.status.success() && text(&out.stdout).trim() == "1000")
    })
    .await
}
