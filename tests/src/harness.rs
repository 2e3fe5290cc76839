//! The test runner behind [`crate::lxd_tests!`]: libtest-compatible output and arguments
//! (so `cargo test` filters and reports as usual), one daemon for the whole binary, started
//! only if a selected test runs, torn down after the last one.

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::OnceLock;

use libtest_mimic::{Arguments, Failed, Trial};

use crate::daemon::{random, PrivateLxd};

/// A test: an async function of the shared daemon.
pub type TestFn = fn(&'static PrivateLxd) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

const HANG_GUARD: std::time::Duration = std::time::Duration::from_secs(900);

static DAEMON: OnceLock<Result<PrivateLxd, String>> = OnceLock::new();

fn daemon() -> Result<&'static PrivateLxd, Failed> {
    DAEMON
        .get_or_init(|| PrivateLxd::start().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| Failed::from(e.as_str()))
}

/// Runs `tests` with libtest's arguments and output; returns the process exit code.
pub fn run_tests(tests: Vec<(&'static str, TestFn)>) -> ExitCode {
    let args = Arguments::from_args();
    let trials = tests
        .into_iter()
        .map(|(name, test)| {
            Trial::test(name, move || {
                let lxd = daemon()?;
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| Failed::from(e.to_string()))?;
                // A hang guard, not a performance bound: a stuck test fails and the rest run.
                match runtime.block_on(async { tokio::time::timeout(HANG_GUARD, test(lxd)).await }) {
                    Ok(result) => result.map_err(|e| Failed::from(format!("{e:#}"))),
                    Err(_) => Err(Failed::from(format!("{name} did not finish within {HANG_GUARD:?}"))),
                }
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    if let Some(Ok(lxd)) = DAEMON.get() {
        if conclusion.has_failed() {
            eprintln!(
                "\n===== private LXD log ({}) =====\n{}\n===== end of LXD log =====",
                lxd.dir().display(),
                lxd.log()
            );
        }
        lxd.teardown();
    }
    if conclusion.has_failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// A name unique to this run, for instances and images a test creates (`prefix-1a2b3c`):
/// the kernel's cgroup names are shared by every LXD daemon on the host.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{:06x}", random() & 0xff_ffff)
}
