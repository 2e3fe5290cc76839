//! The test harness: a private, real LXD daemon per test binary.
//!
//! Each integration-test binary that uses [`lxd_tests!`] gets its own daemon — its own
//! `LXD_DIR` under `/tmp`, its own bridge with a unique name and an explicitly chosen subnet
//! (LXD's automatic choice pings random addresses), its own btrfs pool on a loop file — started
//! on first use, shared by the binary's tests, and torn down when they end: instances, images,
//! network, pool (and so its loop device), the daemon, the folder. When a test fails the
//! daemon's log is printed. A binary killed before teardown leaves a folder whose owner is
//! dead; the next harness to start removes it (see [`daemon::remove_stale`]).
//!
//! It must not touch the host's own LXD daemon or any object it did not create.

pub mod daemon;
pub mod e2e;
mod harness;
pub mod platform;
pub mod web;

pub use daemon::PrivateLxd;
pub use harness::{run_tests, unique_name, TestFn};
pub use platform::{Answer, Platform};

/// Declares the binary's tests and runs them against one shared private LXD daemon.
///
/// ```text
/// async fn creates_a_container(lxd: &'static ssp_testkit::PrivateLxd) -> anyhow::Result<()> { Ok(()) }
/// ssp_testkit::lxd_tests![creates_a_container];
/// ```
/// The test binary needs `harness = false` in its `[[test]]` section.
#[macro_export]
macro_rules! lxd_tests {
    ($($test:ident),+ $(,)?) => {
        fn main() -> std::process::ExitCode {
            $crate::run_tests(vec![
                $((stringify!($test), (|lxd| Box::pin($test(lxd))) as $crate::TestFn)),+
            ])
        }
    };
}
