//! Which LXD instance a host process runs in, from its cgroup.
//!
//! Inside a container `nvidia-smi` lists no processes (the PIDs are another namespace's);
//! on the host NVML gives host PIDs, and `/proc/<pid>/cgroup` names the container: LXD puts
//! each instance's processes under a cgroup named `lxc.payload.<instance>` (older LXC:
//! `lxc.payload/<instance>`), in every hierarchy, cgroup v1 or v2.

use std::path::Path;

/// The instance named in the text of a `/proc/<pid>/cgroup` file, if any.
pub fn instance_from_cgroup(text: &str) -> Option<String> {
    for line in text.lines() {
        let Some(path) = line.splitn(3, ':').nth(2) else { continue };
        let mut segments = path.split('/');
        while let Some(segment) = segments.next() {
            let name = match segment.strip_prefix("lxc.payload.") {
                Some(name) => Some(name),
                None if segment == "lxc.payload" => segments.next(),
                None => None,
            };
            if let Some(name) = name.filter(|n| is_instance_name(n)) {
                return Some(name.to_string());
            }
        }
    }
    None
}

/// LXD instance names: letters, digits and dashes, at most 63.
fn is_instance_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 63 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The instance host process `pid` runs in, read under `proc_root` (`/proc`); `None` when it
/// runs on the host itself or is gone.
pub fn instance_of_pid(proc_root: &Path, pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(proc_root.join(pid.to_string()).join("cgroup")).ok()?;
    instance_from_cgroup(&text)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn container_processes_are_named_by_their_cgroup() {
        let v2 = "0::/lxc.payload.alice-dev-0123abcd/system.slice/jupyter.service\n";
        assert_eq!(instance_from_cgroup(v2).as_deref(), Some("alice-dev-0123abcd"));
        let v1 = "12:memory:/lxc.payload.bob-train-99887766/user.slice\n0::/\n";
        assert_eq!(instance_from_cgroup(v1).as_deref(), Some("bob-train-99887766"));
        let old = "4:cpu:/lxc.payload/carol-x-12345678\n";
        assert_eq!(instance_from_cgroup(old).as_deref(), Some("carol-x-12345678"));
        for host in ["0::/init.scope\n", "4:memory:/process_api/f4cd\n", "0::/lxc.monitor.alice-dev\n", ""] {
            assert_eq!(instance_from_cgroup(host), None, "{host:?}");
        }
        assert_eq!(instance_from_cgroup("0::/lxc.payload.../x\n"), None);
    }

    #[test]
    fn reads_proc() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("42")).unwrap();
        std::fs::write(dir.path().join("42/cgroup"), "0::/lxc.payload.alice-dev-01234567\n").unwrap();
        assert_eq!(instance_of_pid(dir.path(), 42).as_deref(), Some("alice-dev-01234567"));
        assert_eq!(instance_of_pid(dir.path(), 43), None);
        // This test's own process runs on the host.
        assert_eq!(instance_of_pid(Path::new("/proc"), std::process::id()), None);
    }
}
