//! Emulated GPUs for hosts without any: real character devices and scripted telemetry.
//!
//! Each GPU N is a node `<dev_dir>/nvidiaN`, a character device with the NVIDIA driver's
//! numbers (major 195, minor N), so it passes into containers through the same LXD
//! `unix-char` plumbing and shows up inside exactly as a driver-made node would. It must lie
//! under `/dev` (LXD refuses `unix-char` sources elsewhere), in a folder of its own so it can
//! never be mistaken for a real card's node.
//!
//! Telemetry comes from a JSON script that tests (or a person trying ssp out) write:
//!
//! ```json
//! { "gpus": [ { "index": 2, "utilization": 90, "memory_used": 1073741824,
//!               "processes": [ { "pid": 4242, "memory": 536870912 } ] } ] }
//! ```
//!
//! GPUs the script leaves out are idle. It is read afresh at every sample.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{Error, GpuInfo, GpuProcess, GpuSample, GpuSource, Result, NVIDIA_MAJOR};

/// Where emulated nodes go unless configured otherwise.
pub const DEFAULT_DEV_DIR: &str = "/dev/ssp-gpu";

/// Memory an emulated GPU reports.
const EMULATED_MEMORY: u64 = 24 << 30;

/// Most emulated GPUs: NVIDIA minors 0..=254 are cards (255 is `nvidiactl`).
pub const MAX_EMULATED: u32 = 64;

/// An emulated inventory of `count` GPUs.
#[derive(Debug, Clone)]
pub struct Emulated {
    count: u32,
    dev_dir: PathBuf,
    script: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Script {
    #[serde(default)]
    gpus: Vec<ScriptedGpu>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptedGpu {
    index: u32,
    #[serde(default)]
    utilization: u32,
    #[serde(default)]
    memory_used: u64,
    #[serde(default)]
    processes: Vec<ScriptedProcess>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptedProcess {
    pid: u32,
    #[serde(default)]
    memory: u64,
}

impl Emulated {
    /// `count` GPUs with nodes under `dev_dir` (made if missing) and telemetry from `script`.
    pub fn new(count: u32, dev_dir: &Path, script: &Path) -> Result<Self> {
        if !dev_dir.starts_with("/dev/") {
            return Err(Error::Io {
                what: format!("emulated GPU folder {}", dev_dir.display()),
                source: std::io::Error::other("must lie under /dev (LXD passes unix-char devices only from there)"),
            });
        }
        if count > MAX_EMULATED {
            return Err(Error::Io {
                what: format!("{count} emulated GPUs"),
                source: std::io::Error::other(format!("at most {MAX_EMULATED}")),
            });
        }
        let emulated = Self { count, dev_dir: dev_dir.to_path_buf(), script: script.to_path_buf() };
        emulated.make_nodes()?;
        Ok(emulated)
    }

    /// The node of GPU `index`.
    pub fn node(&self, index: u32) -> PathBuf {
        self.dev_dir.join(format!("nvidia{index}"))
    }

    fn make_nodes(&self) -> Result<()> {
        let io = |what: String| move |source| Error::Io { what, source };
        std::fs::create_dir_all(&self.dev_dir).map_err(io(format!("making {}", self.dev_dir.display())))?;
        for index in 0..self.count {
            let node = self.node(index);
            match std::fs::symlink_metadata(&node) {
                Ok(meta) => {
                    let right = meta.file_type().is_char_device()
                        && rustix::fs::major(meta.rdev()) == NVIDIA_MAJOR
                        && rustix::fs::minor(meta.rdev()) == index;
                    if !right {
                        return Err(Error::Io {
                            what: format!("emulated GPU node {}", node.display()),
                            source: std::io::Error::other(format!(
                                "exists but is not character device {NVIDIA_MAJOR}:{index}; remove it"
                            )),
                        });
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    match rustix::fs::mknodat(
                        rustix::fs::CWD,
                        &node,
                        rustix::fs::FileType::CharacterDevice,
                        rustix::fs::Mode::from_raw_mode(0o666),
                        rustix::fs::makedev(NVIDIA_MAJOR, index),
                    ) {
                        // Another ssp on this host made it in the meantime.
                        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => return Err(io(format!("making {}", node.display()))(e.into())),
                    }
                }
                Err(e) => return Err(io(format!("reading {}", node.display()))(e)),
            }
            // As the driver's nodes: usable by every account; access is decided by which
            // containers get the node at all.
            std::fs::set_permissions(&node, std::fs::Permissions::from_mode(0o666))
                .map_err(io(format!("setting the mode of {}", node.display())))?;
        }
        Ok(())
    }

    fn script(&self) -> Result<Script> {
        match std::fs::read_to_string(&self.script) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| Error::Script { path: self.script.clone(), message: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Script { gpus: Vec::new() }),
            Err(source) => Err(Error::Io { what: format!("reading {}", self.script.display()), source }),
        }
    }
}

impl GpuSource for Emulated {
    fn inventory(&self) -> Result<Vec<GpuInfo>> {
        Ok((0..self.count)
            .map(|index| GpuInfo {
                index,
                uuid: format!("GPU-5350ee00-0000-4000-8000-{index:012x}"),
                model: "Emulated GPU".into(),
                memory: EMULATED_MEMORY,
                pci: None,
                device_node: self.node(index),
                emulated: true,
            })
            .collect())
    }

    fn sample(&self) -> Result<Vec<GpuSample>> {
        let script = self.script()?;
        Ok((0..self.count)
            .map(|index| match script.gpus.iter().find(|g| g.index == index) {
                Some(g) => GpuSample {
                    index,
                    utilization: g.utilization.min(100),
                    memory_used: g.memory_used.min(EMULATED_MEMORY),
                    processes: g.processes.iter().map(|p| GpuProcess { pid: p.pid, memory: p.memory }).collect(),
                },
                None => GpuSample { index, ..GpuSample::default() },
            })
            .collect())
    }

    fn kind(&self) -> &'static str {
        "emulated"
    }

    fn emulated(&self) -> bool {
        true
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn nodes_are_real_nvidia_character_devices_and_telemetry_is_scripted() {
        let unique = format!("/dev/ssp-gpu-test-{}", std::process::id());
        let dir = Path::new(&unique);
        let scratch = tempfile::tempdir().unwrap();
        let script = scratch.path().join("telemetry.json");
        let gpus = Emulated::new(3, dir, &script).unwrap();
        for index in 0..3 {
            let meta = std::fs::metadata(gpus.node(index)).unwrap();
            assert!(meta.file_type().is_char_device());
            assert_eq!((rustix::fs::major(meta.rdev()), rustix::fs::minor(meta.rdev())), (195, index));
            assert_eq!(meta.permissions().mode() & 0o777, 0o666);
        }
        // Making them again is a no-op.
        Emulated::new(3, dir, &script).unwrap();
        assert_eq!(gpus.inventory().unwrap()[2].device_node, dir.join("nvidia2"));
        assert!(gpus.sample().unwrap().iter().all(|s| s.utilization == 0 && s.processes.is_empty()));

        std::fs::write(
            &script,
            r#"{"gpus": [{"index": 1, "utilization": 85, "memory_used": 1024, "processes": [{"pid": 7, "memory": 512}]}]}"#,
        )
        .unwrap();
        let sample = gpus.sample().unwrap();
        assert_eq!(sample[1].utilization, 85);
        assert_eq!(sample[1].processes, vec![GpuProcess { pid: 7, memory: 512 }]);
        assert_eq!(sample[0].utilization, 0);
        std::fs::write(&script, r#"{"gpus": [{"index": 1, "load": 3}]}"#).unwrap();
        assert!(gpus.sample().unwrap_err().to_string().contains("unknown field"));

        // A node of the wrong kind is refused, not used.
        std::fs::remove_file(gpus.node(0)).unwrap();
        std::fs::write(gpus.node(0), "not a device").unwrap();
        assert!(Emulated::new(3, dir, &script).unwrap_err().to_string().contains("not character device"));
        std::fs::remove_dir_all(dir).unwrap();
        assert!(Emulated::new(1, Path::new("/tmp/x"), &script).is_err());
    }
}
