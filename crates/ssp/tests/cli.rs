//! The `ssp` binary, driven as a person or a script would, against a private LXD daemon.

use std::path::PathBuf;
use std::process::{Command, Output};

use anyhow::{ensure, Context, Result};
use ssp_testkit::PrivateLxd;

/// The `ssp` binary cargo built for this test.
fn ssp_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ssp"))
}

fn ssp(lxd: &PrivateLxd, args: &[&str]) -> Result<Output> {
    Ok(Command::new(ssp_binary()).args(args).env("LXD_DIR", lxd.dir()).output()?)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn image_build_imports_then_is_instant(lxd: &'static PrivateLxd) -> Result<()> {
    let first =
        tokio::task::spawn_blocking(move || ssp(lxd, &["image", "build", "busybox", "--alias", "bb-cli"])).await??;
    ensure!(first.status.success(), "first build failed: {}", text(&first.stderr));
    ensure!(text(&first.stdout).contains("image bb-cli ready"), "stdout: {}", text(&first.stdout));

    let second =
        tokio::task::spawn_blocking(move || ssp(lxd, &["--json", "image", "build", "busybox", "--alias", "bb-cli"]))
            .await??;
    ensure!(second.status.success(), "second build failed: {}", text(&second.stderr));
    let report: serde_json::Value = serde_json::from_slice(&second.stdout).context("--json output is JSON")?;
    ensure!(report["imported"] == false && report["built"] == false, "second run did work: {report}");

    let list = tokio::task::spawn_blocking(move || ssp(lxd, &["image", "list", "--local"])).await??;
    ensure!(list.status.success());
    let table = text(&list.stdout);
    ensure!(
        table.starts_with("ALIAS") && table.lines().any(|l| l.starts_with("bb-cli") && l.contains("busybox")),
        "{table}"
    );
    Ok(())
}

async fn bad_input_is_refused_with_a_clear_error(lxd: &'static PrivateLxd) -> Result<()> {
    let unknown = ssp(lxd, &["image", "build", "no-such-recipe"])?;
    ensure!(unknown.status.code() == Some(2), "unknown recipe exit code {:?}", unknown.status.code());
    let message = text(&unknown.stderr);
    ensure!(
        message.contains("no-such-recipe") && message.contains("debian-12") && message.contains("busybox"),
        "{message}"
    );

    for bad in ["../etc", "Bad", "a b", "x;rm"] {
        let out = ssp(lxd, &["image", "build", "busybox", "--alias", bad])?;
        ensure!(out.status.code() == Some(2), "alias {bad:?}: exit {:?}", out.status.code());
        ensure!(
            text(&out.stderr).contains("not allowed") || text(&out.stderr).contains("empty"),
            "{}",
            text(&out.stderr)
        );
    }
    // Counting images would race the other test's import; the refused alias must not exist.
    let out = ssp(lxd, &["image", "build", "busybox", "--alias", "../x"])?;
    ensure!(!out.status.success());
    let aliases = lxd.client().image_alias_names().await?;
    ensure!(!aliases.iter().any(|a| a == "../x" || a == "x"), "a refused build must not import anything: {aliases:?}");

    let no_daemon =
        Command::new(ssp_binary()).args(["image", "list", "--local"]).env("LXD_DIR", "/nonexistent").output()?;
    ensure!(no_daemon.status.code() == Some(3), "unreachable LXD exit {:?}", no_daemon.status.code());
    ensure!(text(&no_daemon.stderr).contains("/nonexistent/unix.socket"), "{}", text(&no_daemon.stderr));
    Ok(())
}

ssp_testkit::lxd_tests![image_build_imports_then_is_instant, bad_input_is_refused_with_a_clear_error];
