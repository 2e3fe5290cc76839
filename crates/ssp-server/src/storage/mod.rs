//! Storage: shared host folders, persistent home volumes, snapshot schedules.
//!
//! Shares and homes reach containers as [`Attachments`] ([`attach`], called from
//! `attachments::load`): a disk device whose source is a host-side *staging* bind mount
//! under `state_dir/mounts/` made `nosuid,nodev` (and read-only for read-only shares), so
//! nothing on a share can become a setuid or device path to root, whatever the host folder's
//! own mount allows. A device is only attached once its staging mount exists.
//!
//! Ownership without id shifting (Debian's LXD 5.0.2 cannot shift here): every container of
//! a user who has a share or a home gets `raw.idmap = both <base + user id> 1000`, so the
//! owner's account (uid/gid 1000) is the same host id in all of their containers and on the
//! host, and other containers see those files as `nobody`. The block `base..base+count` is
//! delegated to root in `/etc/subuid` and `/etc/subgid` by the host set-up, *above* root's
//! main range: LXD 5.0.2 ignores subordinate ranges under 65536 ids for its own allocation
//! and sorts raw map entries in with the isolated ranges it hands out, so a block below the
//! main range would pull new isolated ranges down into it. A changed `raw.idmap` takes
//! effect at the container's next start, so share and home devices are marked
//! [`Attachments::needs_idmap`](crate::instance::Attachments): the planner mounts them in a
//! running container only once its map has the owner's identity.
//!
//! Read-write shares are for several people: each gets a *share group* from the same block
//! (`ssp_core::idblock` splits it), which owns the host folder (setgid, group-writable, with
//! default POSIX ACLs, `shares::prepare_host_folder`), is mapped into its users' containers
//! as one more `raw.idmap` line (`gid HOST INSIDE`), and has the owner's account as a member
//! there (the account script, from [`Attachments::groups`]).
//!
//! The [`Worker`] converges what the handlers record (staging mounts, home volumes), takes
//! departing users' removal along (`crate::departures`) and runs snapshot schedules; it
//! never decides policy (retention is `ssp_core::retention`).

pub mod homes;
pub mod shares;
pub mod snapshots;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ssp_core::idblock::{self, IdBlock};
use ssp_store::{Container, Store};
use tokio::sync::Notify;

use crate::instance::{Attachments, OWNER_UID};

/// What the storage code needs to know about this daemon; set once at start.
#[derive(Debug, Clone)]
pub struct Context {
    /// ssp's state folder.
    pub state_dir: PathBuf,
    /// LXD's folder (its socket's).
    pub lxd_dir: PathBuf,
    /// The storage pool.
    pub pool: String,
    /// This installation's id.
    pub platform: String,
    /// First host id of the share identities.
    pub share_base: u32,
    /// How many.
    pub share_count: u32,
    /// Whether /etc/subuid and /etc/subgid delegate the block to root (else no identity
    /// is mapped and shares stay off: containers with a map root may not use would not start).
    pub delegated: bool,
}

static CONTEXT: OnceLock<Context> = OnceLock::new();

/// Sets the context (once per process: one daemon per process).
pub fn init(context: Context) {
    if !context.delegated {
        tracing::warn!(
            "host ids {}:{} are not delegated to root in /etc/subuid and /etc/subgid: shares and home volumes are off \
             until the host set-up (scripts/up) adds them and LXD is restarted",
            context.share_base,
            context.share_count
        );
    }
    CONTEXT.set(context).ok();
}

/// The context, once set.
pub fn context() -> Option<&'static Context> {
    CONTEXT.get()
}

impl Context {
    /// The delegated id block, split between identities and share groups by
    /// `ssp_core::idblock`.
    pub fn block(&self) -> IdBlock {
        IdBlock { base: self.share_base, count: self.share_count }
    }

    /// The host uid and gid of `user_id`'s share identity, if in the block.
    pub fn identity(&self, user_id: i64) -> Option<u32> {
        self.delegated.then(|| self.block().user(user_id)).flatten()
    }

    /// Where staging mounts live.
    pub fn mounts(&self) -> PathBuf {
        self.state_dir.join("mounts")
    }
}

/// Whether `/etc/subuid` and `/etc/subgid` give root the whole block.
pub fn delegated(base: u32, count: u32) -> bool {
    ["/etc/subuid", "/etc/subgid"].iter().all(|file| {
        std::fs::read_to_string(file).unwrap_or_default().lines().any(|line| {
            let mut parts = line.trim().split(':');
            match (
                parts.next(),
                parts.next().and_then(|s| s.parse::<u64>().ok()),
                parts.next().and_then(|s| s.parse::<u64>().ok()),
            ) {
                (Some("root"), Some(start), Some(len)) => {
                    start <= u64::from(base) && u64::from(base) + u64::from(count) <= start + len
                }
                _ => false,
            }
        })
    })
}

/// Adds shares and the home volume to each container's attachments. Called in the store
/// read of every reconciler pass; reads the mount table once.
pub fn attach(store: &Store, rows: &[Container], all: &mut HashMap<String, Attachments>) -> ssp_store::Result<()> {
    let Some(context) = context() else { return Ok(()) };
    let mounted = mount_points();
    let shares = store.all_shares()?;
    let homes = store.all_homes()?;
    let mut ids: HashMap<String, Option<i64>> = HashMap::new();
    for row in rows {
        let owner = row.owner.as_str();
        if !ids.contains_key(owner) {
            ids.insert(owner.to_string(), store.user(owner).ok().map(|u| u.id));
        }
        let Some(identity) = ids[owner].and_then(|id| context.identity(id)) else { continue };
        let Some(extra) = all.get_mut(&row.uid) else { continue };
        let mut any = false;
        let mut groups = Vec::new();
        for share in shares.iter().filter(|s| s.all_users || s.users.iter().any(|u| u == owner)) {
            if let Some((name, device)) = shares::device(context, share, &mounted) {
                extra.needs_idmap.insert(name.clone());
                extra.devices.insert(name, device);
                any = true;
                // A read-write share's group: mapped in, and the owner's account a member,
                // so what any of its users writes there the others can change.
                if let Some(group) = share.group.and_then(|g| context.block().share_group(g).ok()) {
                    extra.groups.insert(idblock::group_name(share.name.as_str(), &group), group.inside);
                    groups.push(group);
                }
            }
        }
        if let Some(home) = homes.iter().find(|h| h.user.as_str() == owner) {
            if let Some((name, device)) = homes::device(context, home, &mounted) {
                extra.needs_idmap.insert(name.clone());
                extra.devices.insert(name, device);
                any = true;
            }
        }
        if any {
            groups.sort();
            extra.config.insert("raw.idmap".into(), idblock::raw_idmap(identity, OWNER_UID, &groups));
        }
    }
    Ok(())
}

/// The mount points in this mount namespace.
pub fn mount_points() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| {
            PathBuf::from(
                field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\"),
            )
        })
        .collect()
}

/// Bind-mounts `source` at `target` with `nosuid,nodev` (and read-only if asked), unless
/// something is mounted there already.
pub fn stage(source: &Path, target: &Path, read_only: bool) -> std::io::Result<()> {
    use rustix::mount::{mount_bind, mount_remount, MountFlags};
    if mount_points().iter().any(|m| m == target) {
        return Ok(());
    }
    std::fs::create_dir_all(target)?;
    mount_bind(source, target)?;
    let mut flags = MountFlags::BIND | MountFlags::NOSUID | MountFlags::NODEV;
    if read_only {
        flags |= MountFlags::RDONLY;
    }
    if let Err(e) = mount_remount(target, flags, "") {
        rustix::mount::unmount(target, rustix::mount::UnmountFlags::DETACH).ok();
        return Err(e.into());
    }
    Ok(())
}

/// Unmounts a staging mount (if mounted) and removes its folder.
pub fn unstage(target: &Path) -> std::io::Result<()> {
    while mount_points().iter().any(|m| m == target) {
        rustix::mount::unmount(target, rustix::mount::UnmountFlags::DETACH)?;
    }
    match std::fs::remove_dir(target) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Sets up storage for a starting daemon: the context, and the worker's loop.
pub fn start(settings: &crate::Settings, state: &crate::AppState, platform: &str) {
    let config = &settings.raw.storage;
    // Checked when the configuration was loaded.
    let (share_base, share_count) = settings.share_ids;
    let lxd_dir = state.lxd.socket().parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/var/lib/lxd"));
    init(Context {
        state_dir: settings.raw.state_dir.clone(),
        lxd_dir,
        pool: settings.pool.as_str().into(),
        platform: platform.into(),
        share_base,
        share_count,
        delegated: delegated(share_base, share_count),
    });
    let interval = Duration::from_secs(config.interval_secs.max(1));
    tokio::spawn(state.storage.clone().run(state.clone(), interval));
}

/// The storage worker: staging mounts, home volumes, snapshot schedules.
#[derive(Debug, Clone, Default)]
pub struct Worker {
    wake: Arc<Notify>,
    one_round_at_a_time: Arc<tokio::sync::Mutex<()>>,
}

impl Worker {
    /// Asks for a round soon.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Runs forever: a round at start, after every wake-up and every `interval`.
    pub async fn run(self, state: crate::AppState, interval: Duration) {
        loop {
            self.round(&state).await;
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }

    /// One round: converge mounts and homes, take departing users as far as they go (before
    /// the homes, so a home their departure marks for deletion goes in this round; after,
    /// so their row goes in the round that removed their home), then run due schedules.
    pub async fn round(&self, state: &crate::AppState) -> ssp_api::ScheduleReport {
        let _one = self.one_round_at_a_time.lock().await;
        if let Err(e) = shares::converge(state).await {
            tracing::warn!("shares: {e}");
        }
        if let Err(e) = crate::departures::advance(state).await {
            tracing::warn!("departing users: {e}");
        }
        if let Err(e) = homes::converge(state).await {
            tracing::warn!("home volumes: {e}");
        }
        if let Err(e) = crate::departures::advance(state).await {
            tracing::warn!("departing users: {e}");
        }
        snapshots::run_schedules(state).await
    }
}

/// Errors of storage work, for logs and API answers.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// LXD failed.
    #[error("LXD: {0}")]
    Lxd(#[from] ssp_lxd::Error),
    /// The store failed.
    #[error("{0}")]
    Store(#[from] ssp_store::Error),
    /// A host file operation failed.
    #[error("{0}")]
    Io(String),
    /// The reconciler could not bring the container back to its desired state.
    #[error("{0}")]
    Converge(#[from] crate::reconcile::handle::StepError),
    /// LXD stayed busy with another operation on a container (its message names both).
    #[error("{0}")]
    Busy(String),
}

impl StorageError {
    /// `error` from LXD while acting on container `row`: busy names the container.
    pub(crate) fn lxd_on(row: &ssp_store::Container) -> impl Fn(ssp_lxd::Error) -> StorageError + '_ {
        move |error| match error.busy_with() {
            Some(kind) => StorageError::Busy(crate::error::busy_message(&format!("{}/{}", row.owner, row.name), kind)),
            None => StorageError::Lxd(error),
        }
    }
}

impl From<StorageError> for crate::error::ApiError {
    fn from(error: StorageError) -> Self {
        match error {
            StorageError::Lxd(e) => e.into(),
            StorageError::Store(e) => e.into(),
            StorageError::Io(e) => crate::error::ApiError::Internal(e),
            StorageError::Converge(e) => e.into(),
            StorageError::Busy(message) => crate::error::ApiError::Busy(message),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn share_id_blocks() {
        use crate::config::StorageConfig;
        assert_eq!(StorageConfig::default().share_ids().unwrap(), (1_001_000_000, 65535));
        for bad in ["", "1:2", "x:1", "100000:0", "4294967295:2", "100000"] {
            let config = StorageConfig { share_ids: bad.into(), ..StorageConfig::default() };
            assert!(config.share_ids().is_err(), "{bad:?}");
        }
        let context = Context {
            state_dir: "/s".into(),
            lxd_dir: "/l".into(),
            pool: "p".into(),
            platform: "x".into(),
            share_base: 2_000_000,
            share_count: 10,
            delegated: true,
        };
        assert_eq!(context.identity(3), Some(2_000_003));
        assert_eq!(context.identity(10), None);
        assert_eq!(Context { share_count: 65_535, ..context.clone() }.identity(60_000), None, "share groups' part");
        assert_eq!(Context { delegated: false, ..context }.identity(3), None);
    }
}
