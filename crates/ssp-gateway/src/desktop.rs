//! Desktop sessions as host unix sockets: each user's VNC server in a container listens only
//! on a unix socket inside it (`/run/ssp-desktop/USER/rfb.sock`), and ssp reaches it through
//! an LXD `proxy` device (`gateway-desktop-USER`) that listens on a host socket only root can
//! open (mode 0600, in the gateway's root-only socket folder). The device is added on a
//! session's first viewer and removed once no viewer has used it for the linger time, as the
//! sshd sockets are (`sshd.rs`); the session itself runs on until the daemon ends it.
//!
//! Every connection is authenticated here with the session's secret before anything else
//! reads from it ([`DesktopSockets::connect`]), and counted while it lives ([`Viewer`]): how
//! many viewers a session has, and since when none, is what its idle timeout is decided from.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UnixStream;

use crate::devices::{connect_once_listening, proxy, set_device, LiveDevices, DEVICE_PREFIX};
use crate::rfb;

/// The prefix of a desktop's device name; the user's name follows.
const DEVICE_STEM: &str = "gateway-desktop-";

const _: () = assert!(DEVICE_STEM.len() > DEVICE_PREFIX.len());

/// How long a new connection may take to get through the VNC server's handshake.
const HANDSHAKE_PATIENCE: Duration = Duration::from_secs(15);

/// The longest socket path used as is (the kernel's limit is 107 bytes).
const MAX_SOCKET_PATH: usize = 100;

/// Where `user`'s desktop session listens inside a container.
pub fn inside_socket(user: &str) -> String {
    format!("/run/ssp-desktop/{user}/rfb.sock")
}

/// The LXD device that reaches `user`'s desktop.
pub fn device_name(user: &str) -> String {
    format!("{DEVICE_STEM}{user}")
}

/// An authenticated connection to a desktop session: the VNC server's ServerInit comes next,
/// once the viewer's ClientInit is relayed. The session counts it as a viewer while
/// [`DesktopConnection::viewer`] lives.
#[derive(Debug)]
pub struct DesktopConnection {
    /// The stream, past the server's security handshake.
    pub stream: UnixStream,
    /// This viewer's hold on the session.
    pub viewer: Viewer,
}

/// How a session is watched right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watch {
    /// Connections relayed now.
    pub viewers: usize,
    /// How long since the last viewer left (or since this daemon learnt of the session);
    /// `None` while someone watches.
    pub idle: Option<Duration>,
}

/// The desktop sockets of the sessions this daemon knows, by (instance, user).
pub struct DesktopSockets {
    lxd: ssp_lxd::Client,
    live: LiveDevices,
    dir: PathBuf,
    linger: Duration,
    entries: Mutex<HashMap<(String, String), Arc<Entry>>>,
}

impl std::fmt::Debug for DesktopSockets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DesktopSockets").field("dir", &self.dir).finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Entry {
    path: PathBuf,
    /// Held while the device is added or removed.
    changing: tokio::sync::Mutex<()>,
    /// Whether the device was added (and not removed since) by this daemon.
    present: AtomicBool,
    /// Viewers connected now.
    viewers: AtomicUsize,
    /// When the last viewer left (or the entry was made).
    last_left: Mutex<Instant>,
}

/// One viewer's hold on a session: while any lives, the session is watched and its device
/// stays.
#[derive(Debug)]
pub struct Viewer(Arc<Entry>);

impl Drop for Viewer {
    fn drop(&mut self) {
        *lock(&self.0.last_left) = Instant::now();
        self.0.viewers.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Where the socket for `user`'s desktop in `instance` lives under `dir`.
fn socket_path(dir: &Path, instance: &str, user: &str) -> PathBuf {
    let named = dir.join(format!("desktop-{instance}-{user}.sock"));
    if named.as_os_str().len() <= MAX_SOCKET_PATH {
        return named;
    }
    let key = format!("{instance}/{user}");
    // FNV-1a: short and stable; instance and user names are unique already.
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    dir.join(format!("desktop-{hash:016x}.sock"))
}

impl DesktopSockets {
    /// Sockets under `dir` (a folder only root may enter), devices registered in `live`; a
    /// device no viewer used for `linger` is removed.
    pub fn new(lxd: ssp_lxd::Client, live: LiveDevices, dir: PathBuf, linger: Duration) -> Self {
        Self { lxd, live, dir, linger, entries: Mutex::new(HashMap::new()) }
    }

    fn entry(&self, instance: &str, user: &str) -> Arc<Entry> {
        let mut entries = lock(&self.entries);
        let entry = entries.entry((instance.to_string(), user.to_string())).or_insert_with(|| {
            Arc::new(Entry {
                path: socket_path(&self.dir, instance, user),
                changing: tokio::sync::Mutex::new(()),
                present: AtomicBool::new(false),
                viewers: AtomicUsize::new(0),
                last_left: Mutex::new(Instant::now()),
            })
        });
        Arc::clone(entry)
    }

    /// Notes a session found running (say, one started before this daemon): its idle time
    /// counts from now if it was not known yet.
    pub fn note_running(&self, instance: &str, user: &str) {
        self.entry(instance, user);
    }

    /// How `user`'s session in `instance` is watched, if this daemon knows it.
    pub fn watch(&self, instance: &str, user: &str) -> Option<Watch> {
        let entry = Arc::clone(lock(&self.entries).get(&(instance.to_string(), user.to_string()))?);
        let viewers = entry.viewers.load(Ordering::Acquire);
        let idle = (viewers == 0).then(|| lock(&entry.last_left).elapsed());
        Some(Watch { viewers, idle })
    }

    /// The known sessions nobody has watched for at least `idle`, as (instance, user).
    pub fn idle_for(&self, idle: Duration) -> Vec<(String, String)> {
        lock(&self.entries)
            .iter()
            .filter(|(_, e)| e.viewers.load(Ordering::Acquire) == 0 && lock(&e.last_left).elapsed() >= idle)
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// A connection to `user`'s desktop in `instance`, authenticated with `secret`: adds the
    /// device first when needed, and rides out a session whose server is still starting.
    pub async fn connect(&self, instance: &str, user: &str, secret: &str) -> Result<DesktopConnection, String> {
        let entry = self.entry(instance, user);
        // Counted before anything waits, so the reaper leaves the device alone meanwhile.
        entry.viewers.fetch_add(1, Ordering::AcqRel);
        let viewer = Viewer(Arc::clone(&entry));
        let deadline = Instant::now() + HANDSHAKE_PATIENCE;
        let mut last = String::new();
        while Instant::now() < deadline {
            let stream = {
                let _changing = entry.changing.lock().await;
                let existing = if entry.present.load(Ordering::Acquire) {
                    UnixStream::connect(&entry.path).await.ok()
                } else {
                    None
                };
                match existing {
                    Some(stream) => stream,
                    None => self.add_device(instance, user, &entry).await?,
                }
            };
            let mut stream = stream;
            match tokio::time::timeout(HANDSHAKE_PATIENCE, rfb::authenticate(&mut stream, secret)).await {
                Ok(Ok(())) => return Ok(DesktopConnection { stream, viewer }),
                Ok(Err(e)) if e.closed_early() => last = "the desktop's VNC server is not listening yet".into(),
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) => return Err("the desktop's VNC server did not answer its handshake in time".into()),
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        Err(last)
    }

    /// Adds (or adds again: the container may have restarted) the device, and connects.
    async fn add_device(&self, instance: &str, user: &str, entry: &Entry) -> Result<UnixStream, String> {
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("creating {}: {e}", self.dir.display()))?;
        let _ = std::fs::remove_file(&entry.path);
        let config = proxy(&[
            ("bind", "host".into()),
            ("listen", format!("unix:{}", entry.path.display())),
            ("connect", format!("unix:{}", inside_socket(user))),
            ("mode", "0600".into()),
        ]);
        let device = device_name(user);
        set_device(&self.lxd, &self.live, instance, &device, None).await?;
        set_device(&self.lxd, &self.live, instance, &device, Some(&config)).await?;
        entry.present.store(true, Ordering::Release);
        connect_once_listening(&entry.path).await
    }

    /// Forgets `user`'s session in `instance` (it ended): removes its device and socket.
    pub async fn forget(&self, instance: &str, user: &str) {
        let removed = lock(&self.entries).remove(&(instance.to_string(), user.to_string()));
        let Some(entry) = removed else { return };
        let _changing = entry.changing.lock().await;
        if entry.present.swap(false, Ordering::AcqRel) {
            if let Err(e) = set_device(&self.lxd, &self.live, instance, &device_name(user), None).await {
                tracing::warn!("desktop: removing the socket of {user} in {instance}: {e}");
            }
        }
        let _ = std::fs::remove_file(&entry.path);
    }

    /// Removes the devices no viewer has used for the linger time, until the task is dropped
    /// (the sessions stay known, for their idle time).
    pub async fn reap(self: Arc<Self>) {
        let every = (self.linger / 2).clamp(Duration::from_millis(200), Duration::from_secs(30));
        loop {
            tokio::time::sleep(every).await;
            let entries: Vec<((String, String), Arc<Entry>)> =
                lock(&self.entries).iter().map(|(k, v)| (k.clone(), Arc::clone(v))).collect();
            for ((instance, user), entry) in entries {
                if !entry.present.load(Ordering::Acquire) {
                    continue;
                }
                let Ok(_changing) = entry.changing.try_lock() else { continue };
                if entry.viewers.load(Ordering::Acquire) > 0 || lock(&entry.last_left).elapsed() < self.linger {
                    continue;
                }
                entry.present.store(false, Ordering::Release);
                if let Err(e) = set_device(&self.lxd, &self.live, &instance, &device_name(&user), None).await {
                    tracing::warn!("desktop: removing the socket of {user} in {instance}: {e}");
                }
                let _ = std::fs::remove_file(&entry.path);
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_are_named_after_instance_and_user_or_hashed_when_long() {
        let dir = Path::new("/var/lib/ssp/gateway/sockets");
        assert_eq!(
            socket_path(dir, "ssp-alice-dev", "alice"),
            Path::new("/var/lib/ssp/gateway/sockets/desktop-ssp-alice-dev-alice.sock")
        );
        let long = socket_path(dir, &"x".repeat(63), &"y".repeat(32));
        assert!(long.as_os_str().len() <= MAX_SOCKET_PATH, "{}", long.display());
        assert_ne!(long, socket_path(dir, &"x".repeat(63), &"z".repeat(32)));
        assert_eq!(inside_socket("alice"), "/run/ssp-desktop/alice/rfb.sock");
        assert_eq!(device_name("alice"), "gateway-desktop-alice");
    }
}
