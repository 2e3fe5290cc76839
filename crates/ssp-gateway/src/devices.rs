//! The LXD `proxy` devices the gateway adds to containers (named `gateway-…`): the registry
//! of those it wants, and asking for one to be added or removed. The gateway never writes an
//! instance itself when the daemon installed a [`Writer`]: it records the device it wants
//! here and asks the reconciler's executor — ssp's one writer of instance config — to apply
//! it, and waits. The reconciler keeps exactly the registered devices and removes any other
//! `gateway-` device, such as those left behind by a daemon that was killed before it could
//! remove its own.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use ssp_lxd::wire::ConfigMap;

/// The prefix of the LXD devices the gateway adds (and removes).
pub const DEVICE_PREFIX: &str = "gateway-";

/// Applies the registered devices of an LXD instance (by name) and returns when LXD has
/// them: the daemon's reconciler executor.
pub type Writer = Arc<dyn Fn(String) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// The gateway's devices in use, by (instance, device), with their LXD config; and the writer
/// that applies them. Shared with the reconciler.
#[derive(Clone, Default)]
pub struct LiveDevices {
    wanted: Arc<Mutex<HashMap<(String, String), ConfigMap>>>,
    writer: Arc<OnceLock<Writer>>,
}

impl std::fmt::Debug for LiveDevices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveDevices").field("wanted", &self.lock().len()).finish()
    }
}

impl LiveDevices {
    /// Whether the gateway uses `device` on `instance`.
    pub fn contains(&self, instance: &str, device: &str) -> bool {
        self.lock().contains_key(&(instance.to_string(), device.to_string()))
    }

    /// Records that the gateway wants `device` with `config` on `instance`.
    pub fn insert(&self, instance: &str, device: &str, config: ConfigMap) {
        self.lock().insert((instance.to_string(), device.to_string()), config);
    }

    /// The devices the gateway wants on `instance`, by name.
    pub fn wanted(&self, instance: &str) -> BTreeMap<String, ConfigMap> {
        self.lock()
            .iter()
            .filter(|((on, _), _)| on == instance)
            .map(|((_, device), config)| (device.clone(), config.clone()))
            .collect()
    }

    /// Installs the writer that applies registered devices (once; the daemon does this).
    pub fn set_writer(&self, writer: Writer) {
        let _ = self.writer.set(writer);
    }

    fn forget(&self, instance: &str, device: &str) {
        self.lock().remove(&(instance.to_string(), device.to_string()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), ConfigMap>> {
        self.wanted.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Adds (`Some(config)`) or removes (`None`) the gateway's `device` on `instance`, and
/// returns once LXD has it so: through the daemon's writer when one is installed, else (the
/// gateway on its own, as in its unit tests) by updating the instance directly.
pub(crate) async fn set_device(
    lxd: &ssp_lxd::Client,
    live: &LiveDevices,
    instance: &str,
    device: &str,
    config: Option<&ConfigMap>,
) -> Result<(), String> {
    match config {
        Some(config) => live.insert(instance, device, config.clone()),
        None => live.forget(instance, device),
    }
    let result = match live.writer.get() {
        Some(writer) => writer(instance.to_string()).await,
        None => write_directly(lxd, instance, device, config).await,
    };
    if result.is_err() && config.is_some() {
        live.forget(instance, device);
    }
    result.map_err(|e| format!("changing device {device} of {instance}: {e}"))
}

async fn write_directly(
    lxd: &ssp_lxd::Client,
    instance: &str,
    device: &str,
    config: Option<&ConfigMap>,
) -> Result<(), String> {
    let mut last = String::new();
    for _ in 0..5 {
        let current = match lxd.instance(instance).await {
            Ok(current) => current,
            Err(e) if config.is_none() && e.is_not_found() => return Ok(()),
            Err(e) => return Err(e.to_string()),
        };
        let mut put = current.value.to_put();
        match config {
            Some(config) => {
                put.devices.insert(device.to_string(), config.clone());
            }
            None => {
                if put.devices.remove(device).is_none() {
                    return Ok(());
                }
            }
        }
        match lxd.update_instance(instance, &put, current.etag.as_deref()).await {
            Ok(operation) => match operation.wait(Some(Duration::from_secs(60))).await {
                Ok(_) => return Ok(()),
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(last)
}

/// Connects to the host socket of a proxy device LXD has just added: LXD answers once
/// `forkproxy` runs, and its socket may take a moment more (up to 2 s).
pub(crate) async fn connect_once_listening(path: &std::path::Path) -> Result<tokio::net::UnixStream, String> {
    let mut last = String::new();
    for _ in 0..50 {
        match tokio::net::UnixStream::connect(path).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    Err(format!("connecting to {}: {last}", path.display()))
}

/// A proxy device's config from its pairs.
pub(crate) fn proxy(pairs: &[(&str, String)]) -> ConfigMap {
    let mut config: ConfigMap = pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    config.insert("type".into(), "proxy".into());
    config
}
