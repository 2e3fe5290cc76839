//! The LXD `proxy` devices the gateway adds to containers (named `gateway-…`): adding and
//! removing one, and the registry of those it still uses. The reconciler keeps exactly the
//! registered ones and removes any other `gateway-` device, such as those left behind by a
//! daemon that was killed before it could remove its own.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ssp_lxd::wire::ConfigMap;

/// The prefix of the LXD devices the gateway adds (and removes).
pub const DEVICE_PREFIX: &str = "gateway-";

/// The gateway's devices in use, as (instance, device) pairs. Shared with the reconciler.
#[derive(Debug, Clone, Default)]
pub struct LiveDevices(Arc<Mutex<HashSet<(String, String)>>>);

impl LiveDevices {
    /// Whether the gateway uses `device` on `instance`.
    pub fn contains(&self, instance: &str, device: &str) -> bool {
        self.lock().contains(&(instance.to_string(), device.to_string()))
    }

    /// Records that the gateway uses `device` on `instance`.
    pub fn insert(&self, instance: &str, device: &str) {
        self.lock().insert((instance.to_string(), device.to_string()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<(String, String)>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Adds (`Some`) or removes (`None`) `device` on `instance`, retrying when someone else (the
/// reconciler) changed the instance in between. A device is registered before it is added
/// and forgotten only once it is gone, so the reconciler never removes one in use.
pub(crate) async fn set_device(
    lxd: &ssp_lxd::Client,
    live: &LiveDevices,
    instance: &str,
    device: &str,
    config: Option<&ConfigMap>,
) -> Result<(), String> {
    let key = (instance.to_string(), device.to_string());
    if config.is_some() {
        live.lock().insert(key.clone());
    }
    let mut last = String::new();
    for _ in 0..5 {
        let current = match lxd.instance(instance).await {
            Ok(current) => current,
            Err(e) if config.is_none() && e.is_not_found() => {
                live.lock().remove(&key);
                return Ok(());
            }
            Err(e) => {
                last = e.to_string();
                break;
            }
        };
        let mut put = current.value.to_put();
        match config {
            Some(config) => {
                put.devices.insert(device.to_string(), config.clone());
            }
            None => {
                if put.devices.remove(device).is_none() {
                    live.lock().remove(&key);
                    return Ok(());
                }
            }
        }
        match lxd.update_instance(instance, &put, current.etag.as_deref()).await {
            Ok(operation) => match operation.wait(Some(Duration::from_secs(60))).await {
                Ok(_) => {
                    if config.is_none() {
                        live.lock().remove(&key);
                    }
                    return Ok(());
                }
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Not added, or not removed: the reconciler removes whatever LXD holds of it.
    live.lock().remove(&key);
    Err(format!("changing device {device} of {instance}: {last}"))
}

/// A proxy device's config from its pairs.
pub(crate) fn proxy(pairs: &[(&str, String)]) -> ConfigMap {
    let mut config: ConfigMap = pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    config.insert("type".into(), "proxy".into());
    config
}
