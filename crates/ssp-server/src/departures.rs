//! Departing users: finishing `DELETE /api/v1/users/{user}?purge=true`.
//!
//! The request only records intent, in one transaction (`Store::mark_departing`): the user
//! is disabled for good and marked departing, and every container of theirs is marked
//! `deleting`. The rest happens here, level-driven like the reconciler, so a daemon killed
//! at any instant finishes after its restart: from what is left of each departing user,
//! [`next`] (pure, table-tested) picks one step — mark containers made since for deletion,
//! wait for the reconciler to delete them, delete their published images, mark the home
//! volume `deleting` and wait for the storage worker to remove it — and, once nothing is
//! left, the user row goes (`Store::remove_departed_user`, journaled `user.remove`) with
//! everything that cascades from it (keys, tokens, web sessions, invitations, share
//! memberships, the GPU allowlist).
//!
//! [`advance`] runs in every storage worker round (the home volume is the storage worker's
//! to remove, and a round right after it can remove the row); [`watch`] wakes that worker
//! when the reconciler made progress while someone is departing, so the row goes soon after
//! the last container. Must not: delete containers or home volumes itself (the reconciler
//! and the storage worker do, each the one writer of its objects), or decide anything
//! [`next`] does not.

use std::time::Duration;

use ssp_store::{ContainerPhase, HomePhase};

use crate::AppState;

/// Deleting one image may take LXD a while on a loaded host.
const IMAGE_TIMEOUT: Duration = Duration::from_secs(300);

/// What is left of a departing user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Remains {
    /// Their containers, those being deleted included.
    pub containers: u32,
    /// Of those, the ones not marked `deleting` (made or restored after the purge).
    pub containers_not_deleting: u32,
    /// Their published images.
    pub images: u32,
    /// Their home volume, if any, and where it is.
    pub home: Option<HomePhase>,
}

/// The next step of a departure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Mark the containers that are not being deleted yet for deletion.
    DeleteContainers,
    /// The reconciler is deleting their containers: wait.
    WaitForContainers,
    /// Delete their published images (LXD's image, then the row).
    DeleteImages,
    /// Mark their home volume `deleting`: the storage worker removes it.
    DeleteHome,
    /// The storage worker is removing the home volume: wait.
    WaitForHome,
    /// Nothing is left: remove the user row.
    RemoveUser,
}

impl Next {
    /// Whether the step is a state to wait out rather than something to do now.
    pub fn is_wait(self) -> bool {
        matches!(self, Next::WaitForContainers | Next::WaitForHome)
    }
}

/// The next step for a departing user with `remains`. Containers go first: the home volume
/// is mounted in them and the storage worker deletes it only once no container mounts it.
pub fn next(remains: &Remains) -> Next {
    if remains.containers_not_deleting > 0 {
        return Next::DeleteContainers;
    }
    if remains.containers > 0 {
        return Next::WaitForContainers;
    }
    if remains.images > 0 {
        return Next::DeleteImages;
    }
    match remains.home {
        Some(HomePhase::Creating | HomePhase::Ready) => Next::DeleteHome,
        Some(HomePhase::Deleting) => Next::WaitForHome,
        None => Next::RemoveUser,
    }
}

/// Why a departure could not go on (it is tried again in the next round).
#[derive(Debug, thiserror::Error)]
pub enum DepartureError {
    /// The state database failed.
    #[error("{0}")]
    Store(#[from] ssp_store::Error),
    /// LXD failed.
    #[error("LXD: {0}")]
    Lxd(#[from] ssp_lxd::Error),
}

/// What is left of `user` (who may be gone: then `None`).
pub fn remains(store: &ssp_store::Store, user: &str) -> ssp_store::Result<Option<Remains>> {
    match store.user(user) {
        Ok(_) => {}
        Err(ssp_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    }
    let containers = store.containers_of(user)?;
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    let home = match store.home(user) {
        Ok(home) => Some(home.phase),
        Err(ssp_store::Error::NotFound { .. }) => None,
        Err(e) => return Err(e),
    };
    Ok(Some(Remains {
        containers: count(containers.len()),
        containers_not_deleting: count(containers.iter().filter(|c| c.phase != ContainerPhase::Deleting).count()),
        images: count(store.images_of(user)?.len()),
        home,
    }))
}

/// Takes every departing user as far as it can now; returns the users whose row went.
pub async fn advance(state: &AppState) -> Result<Vec<String>, DepartureError> {
    let departing = state.db.run(|store| store.departing_users()).await?;
    let mut removed = Vec::new();
    for user in departing {
        let name = user.name.to_string();
        // Each step changes what is left, so a few steps finish a user whose containers
        // are already gone; a wait ends the user's turn.
        for _ in 0..6 {
            let who = name.clone();
            let Some(left) = state.db.run(move |store| remains(store, &who)).await? else { break };
            let step = next(&left);
            if step.is_wait() {
                break;
            }
            if act(state, &name, step).await? {
                removed.push(name.clone());
                break;
            }
        }
    }
    Ok(removed)
}

/// Carries out `step` for departing user `user`; `true` when the row went.
async fn act(state: &AppState, user: &str, step: Next) -> Result<bool, DepartureError> {
    let who = user.to_string();
    match step {
        Next::WaitForContainers | Next::WaitForHome => {}
        Next::DeleteContainers => {
            // The mark the purge set on the others (a container restored or made since).
            state
                .db
                .run(move |store| {
                    for container in store.containers_of(&who)? {
                        if container.phase != ContainerPhase::Deleting {
                            store.set_phase_of(&container.uid, ContainerPhase::Deleting)?;
                        }
                    }
                    Ok(())
                })
                .await?;
            state.reconciler.wake();
        }
        Next::DeleteImages => {
            let images = state.db.run(move |store| store.images_of(&who)).await?;
            for image in images {
                match state.lxd.delete_image(&image.fingerprint).await {
                    Ok(operation) => {
                        operation.wait(Some(IMAGE_TIMEOUT)).await?;
                    }
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e.into()),
                }
                let (owner, name) = (image.owner.to_string(), image.name.to_string());
                state.db.run(move |store| store.remove_image(None, &owner, &name)).await?;
            }
        }
        Next::DeleteHome => {
            state.db.run(move |store| store.set_home_phase(None, &who, HomePhase::Deleting)).await?;
            state.storage.wake();
        }
        Next::RemoveUser => {
            if state.db.run(move |store| store.remove_departed_user(&who)).await? {
                tracing::info!(%user, "departed: the user and everything they held are removed");
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Runs forever: after the reconciler reports progress (a container deleted, among others),
/// wakes the storage worker if anyone is departing, so their home and row go soon after
/// their last container rather than at the worker's next timer.
pub async fn watch(state: AppState) {
    let mut progress = state.reconciler.progress();
    while progress.changed().await.is_ok() {
        // Let a burst of progress settle into one look.
        tokio::time::sleep(Duration::from_millis(200)).await;
        progress.borrow_and_update();
        match state.db.run(|store| store.departing_users()).await {
            Ok(users) if !users.is_empty() => state.storage.wake(),
            Ok(_) => {}
            Err(e) => tracing::warn!("departing users: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_departure_deletes_containers_then_images_and_home_then_the_row() {
        let none = Remains::default();
        let home = |phase| Remains { home: Some(phase), ..none };
        let cases = [
            (
                "containers made after the purge",
                Remains { containers: 2, containers_not_deleting: 1, ..none },
                Next::DeleteContainers,
            ),
            ("containers being deleted", Remains { containers: 2, ..none }, Next::WaitForContainers),
            (
                "containers before the home",
                Remains { containers: 1, home: Some(HomePhase::Ready), images: 1, ..none },
                Next::WaitForContainers,
            ),
            (
                "images once the containers are gone",
                Remains { images: 2, home: Some(HomePhase::Ready), ..none },
                Next::DeleteImages,
            ),
            ("a ready home", home(HomePhase::Ready), Next::DeleteHome),
            ("a home still being made", home(HomePhase::Creating), Next::DeleteHome),
            ("a home being deleted", home(HomePhase::Deleting), Next::WaitForHome),
            ("nothing left: 0 containers, home gone", none, Next::RemoveUser),
        ];
        for (what, remains, expected) in cases {
            assert_eq!(next(&remains), expected, "{what}");
        }
    }

    #[test]
    fn only_the_reconciler_and_the_storage_worker_are_waited_for() {
        let waits: Vec<Next> = [
            Next::DeleteContainers,
            Next::WaitForContainers,
            Next::DeleteImages,
            Next::DeleteHome,
            Next::WaitForHome,
            Next::RemoveUser,
        ]
        .into_iter()
        .filter(|n| n.is_wait())
        .collect();
        assert_eq!(waits, [Next::WaitForContainers, Next::WaitForHome]);
    }

    #[test]
    fn what_is_left_is_read_from_the_store() {
        use ssp_core::names::Name;
        use ssp_core::quota::Quota;
        use ssp_core::size::ByteSize;
        let mut store = ssp_store::Store::open_in_memory().expect("store");
        let quota = Quota {
            max_containers: 3,
            max_cpus: 8,
            max_memory: ByteSize::from_bytes(1 << 34),
            max_disk: ByteSize::from_bytes(1 << 36),
            max_gpus: 0,
        };
        let alice = Name::parse("alice").expect("name");
        store
            .create_user(None, &ssp_store::NewUser { name: alice.clone(), role: ssp_store::Role::User, quota })
            .expect("user");
        assert_eq!(remains(&store, "bob").expect("read"), None, "a user who is gone has nothing left");
        assert_eq!(remains(&store, "alice").expect("read"), Some(Remains::default()));
        store.create_home(None, "alice", ByteSize::from_bytes(1 << 30)).expect("home");
        let container = ssp_store::NewContainer {
            owner: alice.clone(),
            name: Name::parse("dev").expect("name"),
            image: "busybox".into(),
            cpus: 1,
            memory: ByteSize::from_bytes(1 << 30),
            disk: ByteSize::from_bytes(1 << 30),
            desired_state: ssp_store::DesiredState::Running,
            idempotency_key: None,
            gpus: None,
        };
        store.create_container(None, &container).expect("container");
        let before = remains(&store, "alice").expect("read").expect("alice");
        assert_eq!(
            before,
            Remains { containers: 1, containers_not_deleting: 1, images: 0, home: Some(HomePhase::Creating) }
        );
        store.mark_departing(Some("root"), "alice").expect("purge");
        let after = remains(&store, "alice").expect("read").expect("alice");
        assert_eq!((next(&before), next(&after)), (Next::DeleteContainers, Next::WaitForContainers));
    }
}
