//! A container's own sshd as a host unix socket, for ProxyJump and `ssh -W HOST:22`. Those
//! bytes are the client's inner SSH connection, already encrypted end to end, so they go
//! through an LXD `proxy` device (listening on a host socket, connecting to `127.0.0.1:22`
//! in the container) instead of LXD exec's websocket framing: the gateway copies them
//! between the channel and the socket and nothing else.
//!
//! Adding a proxy device takes LXD about a second and each one keeps a `forkproxy` process
//! (about 12 MiB), so a container gets its device on its first jump and loses it once no
//! jump has used it for the linger time: the next connections of an IDE reuse it, and idle
//! containers cost nothing.
//!
//! The client checks the sshd's host key itself (`ssp ssh-config` pins it), and so does the
//! gateway: before it relays, it runs a key exchange of its own with that sshd and compares
//! the host key with the one ssp pinned when it set the container up — never trust on first
//! use, whatever the client does. A check holds for [`RECHECK_AFTER`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UnixStream;

use crate::devices::{connect_once_listening, proxy, set_device, LiveDevices, DEVICE_PREFIX};

/// The device's name in every container that has one.
pub(crate) const DEVICE: &str = "gateway-sshd";

const _: () = assert!(DEVICE.len() > DEVICE_PREFIX.len());

/// How long a host key check holds before the next jump checks again.
const RECHECK_AFTER: Duration = Duration::from_secs(300);

/// The longest socket path used as is (the kernel's limit is 107 bytes).
const MAX_SOCKET_PATH: usize = 100;

/// The sshd sockets of the containers that were jumped to lately.
pub(crate) struct SshdSockets {
    lxd: ssp_lxd::Client,
    live: LiveDevices,
    dir: PathBuf,
    linger: Duration,
    entries: Mutex<HashMap<String, Arc<Entry>>>,
}

struct Entry {
    path: PathBuf,
    /// Held while the device is added or removed.
    changing: tokio::sync::Mutex<()>,
    /// Whether the device was added (and not removed since) by this gateway.
    present: AtomicBool,
    /// Jumps using the socket now.
    users: AtomicUsize,
    last_used: Mutex<Instant>,
    /// The pinned key last found on the sshd, and when (under `changing`).
    checked: Mutex<Option<(String, Instant)>>,
}

/// One jump's hold on a socket: while any lives, the device stays.
pub(crate) struct Lease(Arc<Entry>);

impl Drop for Lease {
    fn drop(&mut self) {
        *lock(&self.0.last_used) = Instant::now();
        self.0.users.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Where the socket for `instance` lives under `dir`: named after it when the path fits.
fn socket_path(dir: &Path, instance: &str) -> PathBuf {
    let named = dir.join(format!("sshd-{instance}.sock"));
    if named.as_os_str().len() <= MAX_SOCKET_PATH {
        return named;
    }
    // FNV-1a: short, stable, and instance names are unique already.
    let hash = instance.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    dir.join(format!("sshd-{hash:016x}.sock"))
}

impl SshdSockets {
    pub(crate) fn new(lxd: ssp_lxd::Client, live: LiveDevices, dir: PathBuf, linger: Duration) -> Self {
        Self { lxd, live, dir, linger, entries: Mutex::new(HashMap::new()) }
    }

    fn entry(&self, instance: &str) -> Arc<Entry> {
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = entries.entry(instance.to_string()).or_insert_with(|| {
            Arc::new(Entry {
                path: socket_path(&self.dir, instance),
                changing: tokio::sync::Mutex::new(()),
                present: AtomicBool::new(false),
                users: AtomicUsize::new(0),
                last_used: Mutex::new(Instant::now()),
                checked: Mutex::new(None),
            })
        });
        // Counted under the map's lock: the reaper never removes a device someone is about to use.
        entry.users.fetch_add(1, Ordering::AcqRel);
        Arc::clone(entry)
    }

    /// A connection to the sshd of `instance`, adding its device first when needed, once that
    /// sshd was found to hold `pinned`.
    pub(crate) async fn connect(&self, instance: &str, pinned: Option<&str>) -> Result<(UnixStream, Lease), String> {
        let pinned =
            pinned.ok_or("ssp has not pinned this container's sshd host key (is openssh-server installed?)")?;
        let entry = self.entry(instance);
        let lease = Lease(Arc::clone(&entry));
        let _changing = entry.changing.lock().await;
        let mut stream = None;
        if entry.present.load(Ordering::Acquire) {
            stream = UnixStream::connect(&entry.path).await.ok();
        }
        let mut stream = match stream {
            Some(stream) => stream,
            None => {
                *lock(&entry.checked) = None;
                self.add_device(instance, &entry).await?
            }
        };
        let recent =
            lock(&entry.checked).as_ref().is_some_and(|(key, at)| key == pinned && at.elapsed() < RECHECK_AFTER);
        if !recent {
            holds_key_once_up(&entry.path, pinned).await?;
            *lock(&entry.checked) = Some((pinned.to_string(), Instant::now()));
            // The first connection may have been made before sshd listened (LXD's proxy then
            // closes it): relay over one made after the check.
            stream = UnixStream::connect(&entry.path)
                .await
                .map_err(|e| format!("connecting to {}: {e}", entry.path.display()))?;
        }
        Ok((stream, lease))
    }

    /// Adds (or adds again: the container may have restarted) the device, and connects.
    async fn add_device(&self, instance: &str, entry: &Entry) -> Result<UnixStream, String> {
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("creating {}: {e}", self.dir.display()))?;
        let _ = std::fs::remove_file(&entry.path);
        let config = proxy(&[
            ("bind", "host".into()),
            ("listen", format!("unix:{}", entry.path.display())),
            ("connect", "tcp:127.0.0.1:22".into()),
            ("mode", "0600".into()),
        ]);
        set_device(&self.lxd, &self.live, instance, DEVICE, None).await?;
        set_device(&self.lxd, &self.live, instance, DEVICE, Some(&config)).await?;
        entry.present.store(true, Ordering::Release);
        connect_once_listening(&entry.path).await
    }

    /// Removes the devices no jump has used for the linger time, until the task is dropped.
    pub(crate) async fn reap(self: Arc<Self>) {
        let every = (self.linger / 2).clamp(Duration::from_millis(200), Duration::from_secs(30));
        loop {
            tokio::time::sleep(every).await;
            let entries: Vec<(String, Arc<Entry>)> = {
                let entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                entries.iter().map(|(k, v)| (k.clone(), Arc::clone(v))).collect()
            };
            for (instance, entry) in entries {
                if !entry.present.load(Ordering::Acquire) {
                    continue;
                }
                let Ok(_changing) = entry.changing.try_lock() else { continue };
                let idle = entry.last_used.lock().unwrap_or_else(std::sync::PoisonError::into_inner).elapsed();
                if entry.users.load(Ordering::Acquire) > 0 || idle < self.linger {
                    continue;
                }
                entry.present.store(false, Ordering::Release);
                if let Err(e) = set_device(&self.lxd, &self.live, &instance, DEVICE, None).await {
                    tracing::warn!("gateway: removing the sshd socket of {instance}: {e}");
                }
                let _ = std::fs::remove_file(&entry.path);
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// [`holds_key`], riding out an sshd that is not listening yet: right after a container
/// (re)starts, LXD's proxy accepts and then closes the connection until sshd is up. A key
/// that does not match is final at once.
async fn holds_key_once_up(path: &Path, pinned: &str) -> Result<(), String> {
    let deadline = Instant::now() + SSHD_START_PATIENCE;
    loop {
        match holds_key(path, pinned).await {
            Err(Check::NotUp(why)) if Instant::now() < deadline => {
                tracing::debug!("the container's sshd is not up yet ({why}); trying again");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(Check::NotUp(why)) => {
                return Err(format!("its sshd did not come up within {} s ({why})", SSHD_START_PATIENCE.as_secs()))
            }
            Err(Check::Refused(why)) => return Err(why),
            Ok(()) => return Ok(()),
        }
    }
}

/// How long a jump waits for a container's sshd to start listening.
const SSHD_START_PATIENCE: Duration = Duration::from_secs(30);

/// Why a key check did not pass.
enum Check {
    /// No sshd answered (yet): worth another try.
    NotUp(String),
    /// An sshd answered, and not as it must.
    Refused(String),
}

/// Whether the sshd behind `path` holds `pinned` (an OpenSSH public key line): the gateway's
/// own key exchange with it, ended before authentication.
async fn holds_key(path: &Path, pinned: &str) -> Result<(), Check> {
    let expected = russh::keys::PublicKey::from_openssh(pinned)
        .map_err(|e| Check::Refused(format!("the pinned host key: {e}")))?;
    let stream =
        UnixStream::connect(path).await.map_err(|e| Check::NotUp(format!("connecting to {}: {e}", path.display())))?;
    let mut config = russh::client::Config::default();
    config.preferred.key = Cow::Owned(vec![expected.algorithm()]);
    let seen = Arc::new(Mutex::new(None));
    let check = KeyCheck { expected, seen: Arc::clone(&seen) };
    let handshake = russh::client::connect_stream(Arc::new(config), stream, check);
    let outcome = tokio::time::timeout(Duration::from_secs(30), handshake).await;
    let found = *lock(&seen);
    match (outcome, found) {
        (Ok(Ok(handle)), Some(true)) => {
            let _ = handle.disconnect(russh::Disconnect::ByApplication, "", "en").await;
            Ok(())
        }
        (_, Some(false)) => Err(Check::Refused("its sshd's host key is not the one ssp pinned; refused".into())),
        // Closed before any key was shown: nothing listens behind LXD's proxy yet.
        (Ok(Err(e)), None) => Err(Check::NotUp(format!("checking its sshd's host key: {e}"))),
        (Ok(Err(e)), Some(true)) => Err(Check::Refused(format!("checking its sshd's host key: {e}"))),
        (Err(_), _) => Err(Check::Refused("its sshd did not finish a key exchange within 30 s".into())),
        (Ok(Ok(_)), None) => Err(Check::Refused("its sshd showed no host key".into())),
    }
}

struct KeyCheck {
    expected: russh::keys::PublicKey,
    seen: Arc<Mutex<Option<bool>>>,
}

impl russh::client::Handler for KeyCheck {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &russh::keys::PublicKey) -> Result<bool, Self::Error> {
        let matches = key.key_data() == self.expected.key_data();
        *lock(&self.seen) = Some(matches);
        Ok(matches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_paths_fit_the_kernel_limit_and_stay_distinct() {
        let short = socket_path(Path::new("/var/lib/ssp/gateway/sockets"), "alice-dev-0a1b2c3d");
        assert_eq!(short, Path::new("/var/lib/ssp/gateway/sockets/sshd-alice-dev-0a1b2c3d.sock"));
        let deep = Path::new("/tmp/ssp-lxd.abcdefgh/ssp-0123456789abcdef/state/gateway/sockets");
        let a = socket_path(deep, &format!("{}-0a1b2c3d", "a".repeat(54)));
        let b = socket_path(deep, &format!("{}-0a1b2c3e", "a".repeat(54)));
        assert!(a.as_os_str().len() <= MAX_SOCKET_PATH && b.as_os_str().len() <= MAX_SOCKET_PATH, "{a:?}");
        assert_ne!(a, b);
        assert!(a.starts_with(deep));
    }
}
