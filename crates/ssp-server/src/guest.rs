//! The scripts ssp runs inside containers, and the one way they are run.
//!
//! Each script is a file under `crates/ssp-server/guest/` (embedded at build time, checked
//! by `shellcheck` in `scripts/test`), written for any POSIX `sh` — Debian's dash and
//! busybox alike — and makes every folder it writes to, since images differ (busybox has
//! no `/etc/ld.so.conf.d` or `/usr/local/bin`). They run as root through LXD exec, with
//! their arguments as separate argv entries (never spliced into a command line) and any
//! secret-free bulk input (the owner's public keys) on stdin.
//!
//! Must not: decide anything. Callers (the reconciler's executor, the GPU loop) decide what
//! to run and what an exit code means.

use std::time::Duration;

/// A script that runs inside containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    /// Sets up the owner's account, host name and `authorized_keys` (keys on stdin).
    /// Arguments: user, host name.
    Account,
    /// Checks the container sees exactly its GPUs. Arguments: count, `emulated`/`nvidia`.
    GpuProbe,
    /// Tells the container's people something. Argument: the message.
    Notice,
    /// Prints the sshd ed25519 host key; exit 3 where there is no sshd.
    HostKey,
    /// The desktop: `enable USER` (installs what it needs and ssp's session service),
    /// `disable`, `start USER` (prints the session's secret), `stop USER`, `status USER`.
    Desktop,
}

impl Script {
    /// The script's text.
    pub fn text(self) -> &'static str {
        match self {
            Script::Account => include_str!("../guest/account.sh"),
            Script::GpuProbe => include_str!("../guest/gpu-probe.sh"),
            Script::Notice => include_str!("../guest/notice.sh"),
            Script::HostKey => include_str!("../guest/host-key.sh"),
            Script::Desktop => include_str!("../guest/desktop.sh"),
        }
    }

    /// Its name: `$0` inside, and what logs and errors call it.
    pub fn name(self) -> &'static str {
        match self {
            Script::Account => "ssp-account",
            Script::GpuProbe => "ssp-gpu-probe",
            Script::Notice => "ssp-notice",
            Script::HostKey => "ssp-host-key",
            Script::Desktop => "ssp-desktop",
        }
    }

    /// The command line that runs it with `args`: `sh -c TEXT NAME ARGS…`.
    pub fn command(self, args: &[&str]) -> Vec<String> {
        let mut command = vec!["sh".to_string(), "-c".into(), self.text().into(), self.name().into()];
        command.extend(args.iter().map(|arg| (*arg).to_string()));
        command
    }
}

/// Why a script could not be run to its end (its own exit code is not an error here).
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// LXD could not run it.
    #[error("{0}")]
    Lxd(#[from] ssp_lxd::Error),
    /// No answer in time.
    #[error("{script} got no answer from LXD within {secs} s")]
    Timeout {
        /// The script's name.
        script: &'static str,
        /// How long it was given.
        secs: u64,
    },
}

/// Runs `script` with `args` as root in instance `instance`, `stdin` as its input, and
/// collects its output; gives up after `timeout` (LXD's exec can stall, see `ssp-lxd`).
pub async fn run(
    lxd: &ssp_lxd::Client,
    instance: &str,
    script: Script,
    args: &[&str],
    stdin: &[u8],
    timeout: Duration,
) -> Result<ssp_lxd::ExecOutput, GuestError> {
    let command = script.command(args);
    let exec = lxd.exec_output_with(instance, &command, stdin, ssp_lxd::ExecOptions::default());
    match tokio::time::timeout(timeout, exec).await {
        Ok(output) => Ok(output?),
        Err(_) => Err(GuestError::Timeout { script: script.name(), secs: timeout.as_secs() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_run_under_sh_with_their_name_and_separate_arguments() {
        let command = Script::GpuProbe.command(&["2", "emulated"]);
        assert_eq!(&command[..2], &["sh", "-c"]);
        assert!(command[2].starts_with("#!/bin/sh"));
        assert_eq!(&command[3..], &["ssp-gpu-probe", "2", "emulated"]);
        // An argument with shell syntax stays one argv entry.
        let command = Script::Notice.command(&["$(reboot); `x`"]);
        assert_eq!(command.last().map(String::as_str), Some("$(reboot); `x`"));
    }

    #[test]
    fn every_script_makes_the_folders_it_writes_to() {
        // Images lack folders (busybox has no /etc/ld.so.conf.d or /usr/local/bin): each
        // folder a script writes into outside /etc itself is made first.
        for (script, folders) in [
            (Script::GpuProbe, &["/etc/ld.so.conf.d", "/usr/local/bin", "/etc/profile.d"][..]),
            (Script::Notice, &["/var/log/ssp"][..]),
            (Script::Account, &["\"$home/.ssh\""][..]),
        ] {
            let made: Vec<&str> = script
                .text()
                .lines()
                .filter_map(|line| line.trim().strip_prefix("mkdir -p "))
                .flat_map(str::split_whitespace)
                .collect();
            for folder in folders {
                assert!(made.contains(folder), "{script:?} writes into {folder} without making it");
            }
        }
    }
}
