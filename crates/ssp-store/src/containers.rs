//! The `containers` table: what each user's containers should be. `phase` tracks the
//! reconciler's progress (`creating` until LXD has it, `deleting` until LXD no longer has
//! it, `lost` when it vanished from LXD behind ssp's back).

use rusqlite::{params, OptionalExtension, Row};
use ssp_core::names::Name;
use ssp_core::size::ByteSize;

use crate::journal::record;
use crate::{now, unique, Error, Result, Store};

/// Whether a container should run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DesiredState {
    /// Keep it running.
    Running,
    /// Keep it stopped.
    Stopped,
}

/// Where the reconciler is with a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerPhase {
    /// Recorded; LXD may not have it yet.
    Creating,
    /// LXD has it.
    Ready,
    /// Being removed from LXD; the row goes once LXD no longer has it.
    Deleting,
    /// Gone from LXD without ssp removing it.
    Lost,
}

impl DesiredState {
    fn as_str(self) -> &'static str {
        match self {
            DesiredState::Running => "running",
            DesiredState::Stopped => "stopped",
        }
    }
}

impl ContainerPhase {
    fn as_str(self) -> &'static str {
        match self {
            ContainerPhase::Creating => "creating",
            ContainerPhase::Ready => "ready",
            ContainerPhase::Deleting => "deleting",
            ContainerPhase::Lost => "lost",
        }
    }
}

/// Where a container's LXD instance comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerSource {
    /// Made from its image.
    Image,
    /// A copy of the container with this uid (its root file system, not its snapshots).
    Copy(String),
    /// Imported from a backup archive: the import makes the instance, not the reconciler.
    Import,
}

impl ContainerSource {
    fn to_sql(&self) -> Option<String> {
        match self {
            ContainerSource::Image => None,
            ContainerSource::Copy(uid) => Some(format!("copy:{uid}")),
            ContainerSource::Import => Some("import".into()),
        }
    }

    fn from_sql(text: Option<String>) -> Self {
        match text.as_deref() {
            Some("import") => ContainerSource::Import,
            Some(other) => match other.strip_prefix("copy:") {
                Some(uid) => ContainerSource::Copy(uid.into()),
                None => ContainerSource::Image,
            },
            None => ContainerSource::Image,
        }
    }
}

/// A stored container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// Stable unique id, also tagged on the LXD instance (`user.ssp.id`).
    pub uid: String,
    /// Owner's name.
    pub owner: Name,
    /// Name, unique per owner.
    pub name: Name,
    /// Image alias it was made from.
    pub image: String,
    /// CPU limit.
    pub cpus: u32,
    /// Memory limit.
    pub memory: ByteSize,
    /// Root disk size.
    pub disk: ByteSize,
    /// Should it run.
    pub desired_state: DesiredState,
    /// Reconciler phase.
    pub phase: ContainerPhase,
    /// Seconds since the epoch.
    pub created_at: i64,
    /// Where its instance comes from.
    pub source: ContainerSource,
    /// Whether it offers its owner a desktop.
    pub desktop: bool,
}

/// A container to record.
#[derive(Debug, Clone)]
pub struct NewContainer {
    /// Owner's name.
    pub owner: Name,
    /// Name, unique per owner.
    pub name: Name,
    /// Image alias.
    pub image: String,
    /// CPU limit.
    pub cpus: u32,
    /// Memory limit.
    pub memory: ByteSize,
    /// Root disk size.
    pub disk: ByteSize,
    /// Should it run.
    pub desired_state: DesiredState,
    /// A client's key: repeating a create with the same key returns the first one.
    pub idempotency_key: Option<String>,
    /// GPUs to grant with it: granted in the same transaction, or the create is refused.
    pub gpus: Option<LeaseRequest>,
}

/// GPUs asked for with a new container.
#[derive(Debug, Clone)]
pub struct LeaseRequest {
    /// Which GPUs.
    pub request: ssp_core::gpu::GpuRequest,
    /// When the lease ends by itself (seconds since the epoch), if ever.
    pub expires_at: Option<i64>,
}

const SELECT: &str =
    "SELECT c.uid, u.name, c.name, c.image, c.cpus, c.memory, c.disk, c.desired_state, c.phase, c.created_at, c.source,
                           c.desktop
                      FROM containers c JOIN users u ON u.id = c.owner_id";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Container> {
    let name = |i: usize| -> rusqlite::Result<Name> {
        let text: String = row.get(i)?;
        Name::parse(&text)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e)))
    };
    let bytes =
        |i: usize| -> rusqlite::Result<ByteSize> { Ok(ByteSize::from_bytes(row.get::<_, i64>(i)?.max(0) as u64)) };
    Ok(Container {
        uid: row.get(0)?,
        owner: name(1)?,
        name: name(2)?,
        image: row.get(3)?,
        cpus: row.get(4)?,
        memory: bytes(5)?,
        disk: bytes(6)?,
        desired_state: if row.get::<_, String>(7)? == "running" {
            DesiredState::Running
        } else {
            DesiredState::Stopped
        },
        phase: match row.get::<_, String>(8)?.as_str() {
            "creating" => ContainerPhase::Creating,
            "ready" => ContainerPhase::Ready,
            "deleting" => ContainerPhase::Deleting,
            _ => ContainerPhase::Lost,
        },
        created_at: row.get(9)?,
        source: ContainerSource::from_sql(row.get(10)?),
        desktop: row.get(11)?,
    })
}

fn new_uid() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| Error::Random(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn size(value: ByteSize) -> i64 {
    i64::try_from(value.bytes()).unwrap_or(i64::MAX)
}

impl Store {
    /// Records a container in phase `creating`. With an idempotency key already used by the
    /// same owner, returns the container that key created instead (or a conflict if the key
    /// was used for another name).
    pub fn create_container(&mut self, actor: Option<&str>, new: &NewContainer) -> Result<Container> {
        self.create_container_from(actor, new, &ContainerSource::Image)
    }

    /// [`Store::create_container`] for a container whose instance comes from `source`.
    pub fn create_container_from(
        &mut self,
        actor: Option<&str>,
        new: &NewContainer,
        source: &ContainerSource,
    ) -> Result<Container> {
        let owner = self.user(new.owner.as_str())?;
        if let Some(key) = &new.idempotency_key {
            let earlier: Option<String> = self
                .conn
                .query_row(
                    "SELECT name FROM containers WHERE owner_id = ?1 AND idempotency_key = ?2",
                    params![owner.id, key],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(name) = earlier {
                if name != new.name.as_str() {
                    return Err(Error::Conflict(format!(
                        "idempotency key {key:?} was already used to create container {name}"
                    )));
                }
                return self.container(new.owner.as_str(), &name);
            }
        }
        let uid = new_uid()?;
        let object = format!("{}/{}", new.owner, new.name);
        self.write(|tx| {
            tx.execute(
                "INSERT INTO containers (uid, owner_id, name, image, cpus, memory, disk, desired_state, phase,
                 idempotency_key, created_at, source) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'creating', ?9, ?10, ?11)",
                params![
                    uid,
                    owner.id,
                    new.name.as_str(),
                    new.image,
                    new.cpus,
                    size(new.memory),
                    size(new.disk),
                    new.desired_state.as_str(),
                    new.idempotency_key,
                    now(),
                    source.to_sql()
                ],
            )
            .map_err(unique("container", &object))?;
            let action = match source {
                ContainerSource::Image => "container.create",
                ContainerSource::Copy(_) => "container.copy",
                ContainerSource::Import => "container.import",
            };
            record(tx, actor, action, &object, Some(&uid))?;
            if let Some(gpus) = &new.gpus {
                crate::gpus::grant_in(tx, actor, &uid, &gpus.request, gpus.expires_at)?;
            }
            Ok(())
        })?;
        self.container(new.owner.as_str(), new.name.as_str())
    }

    /// One of `owner`'s containers.
    pub fn container(&self, owner: &str, name: &str) -> Result<Container> {
        self.conn
            .query_row(&format!("{SELECT} WHERE u.name = ?1 AND c.name = ?2"), params![owner, name], from_row)
            .optional()?
            .ok_or_else(|| Error::NotFound { kind: "container", name: format!("{owner}/{name}") })
    }

    /// The container with this uid.
    pub fn container_by_uid(&self, uid: &str) -> Result<Container> {
        self.conn
            .query_row(&format!("{SELECT} WHERE c.uid = ?1"), params![uid], from_row)
            .optional()?
            .ok_or_else(|| Error::NotFound { kind: "container", name: format!("with id {uid}") })
    }

    /// `owner`'s containers, by name.
    pub fn containers_of(&self, owner: &str) -> Result<Vec<Container>> {
        let mut stmt = self.conn.prepare(&format!("{SELECT} WHERE u.name = ?1 ORDER BY c.name"))?;
        let rows = stmt.query_map([owner], from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every container, for the reconciler.
    pub fn all_containers(&self) -> Result<Vec<Container>> {
        let mut stmt = self.conn.prepare(&format!("{SELECT} ORDER BY u.name, c.name"))?;
        let rows = stmt.query_map([], from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Sets whether a container should run.
    pub fn set_desired_state(
        &mut self,
        actor: Option<&str>,
        owner: &str,
        name: &str,
        state: DesiredState,
    ) -> Result<()> {
        self.update_container(actor, owner, name, "desired_state", state.as_str(), "container.state")
    }

    /// Sets whether a container offers its owner a desktop.
    pub fn set_desktop(&mut self, actor: Option<&str>, owner: &str, name: &str, enabled: bool) -> Result<()> {
        let value = if enabled { "1" } else { "0" };
        self.update_container(actor, owner, name, "desktop", value, "container.desktop")
    }

    fn update_container(
        &mut self,
        actor: Option<&str>,
        owner: &str,
        name: &str,
        column: &'static str,
        value: &str,
        action: &str,
    ) -> Result<()> {
        let object = format!("{owner}/{name}");
        self.write(|tx| {
            let n = tx.execute(
                &format!(
                    "UPDATE containers SET {column} = ?3 WHERE name = ?2 AND owner_id = (SELECT id FROM users WHERE name = ?1)"
                ),
                params![owner, name, value],
            )?;
            if n == 0 {
                return Err(Error::NotFound { kind: "container", name: object.clone() });
            }
            record(tx, actor, action, &object, Some(value))
        })
    }

    /// Records the reconciler's progress on the container with this uid; `false` when there is
    /// no such row (deleted meanwhile), which is not an error for the reconciler.
    pub fn set_phase_of(&mut self, uid: &str, phase: ContainerPhase) -> Result<bool> {
        self.change_by_uid(uid, None, "container.phase", phase.as_str(), |tx| {
            tx.execute("UPDATE containers SET phase = ?2 WHERE uid = ?1", params![uid, phase.as_str()])
        })
    }

    /// Moves the container with this uid from phase `from` to `to`, only if it is still in
    /// `from`: the reconciler's view may be stale (the API may have marked it `deleting`
    /// meanwhile), and a stale write must not undo a newer intent. `false` when it was not.
    pub fn advance_phase(&mut self, uid: &str, from: ContainerPhase, to: ContainerPhase) -> Result<bool> {
        self.change_by_uid(uid, Some(from), "container.phase", to.as_str(), |tx| {
            tx.execute("UPDATE containers SET phase = ?2 WHERE uid = ?1", params![uid, to.as_str()])
        })
    }

    /// Forgets the container with this uid once LXD no longer has it; `false` if already gone.
    pub fn forget_container(&mut self, uid: &str) -> Result<bool> {
        self.change_by_uid(uid, None, "container.remove", uid, |tx| {
            crate::gpus::end_all_in(tx, uid, "removed")?;
            tx.execute("DELETE FROM containers WHERE uid = ?1", [uid])
        })
    }

    /// Runs `change` on the row with this uid if it exists and (with `only_in`) is in that
    /// phase, journaling `action` with `detail`; `false` when no row qualified.
    fn change_by_uid(
        &mut self,
        uid: &str,
        only_in: Option<ContainerPhase>,
        action: &str,
        detail: &str,
        change: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<usize>,
    ) -> Result<bool> {
        self.write(|tx| {
            let object: Option<String> = tx
                .query_row(
                    "SELECT u.name || '/' || c.name FROM containers c JOIN users u ON u.id = c.owner_id
                     WHERE c.uid = ?1 AND (?2 IS NULL OR c.phase = ?2)",
                    params![uid, only_in.map(ContainerPhase::as_str)],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(object) = object else { return Ok(false) };
            change(tx)?;
            record(tx, None, action, &object, Some(detail))?;
            Ok(true)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use crate::users::tests::alice;

    pub(crate) fn dev(key: Option<&str>) -> NewContainer {
        NewContainer {
            owner: Name::parse("alice").unwrap(),
            name: Name::parse("dev").unwrap(),
            image: "debian-12".into(),
            cpus: 4,
            memory: ByteSize::parse("16GiB").unwrap(),
            disk: ByteSize::parse("50GiB").unwrap(),
            desired_state: DesiredState::Running,
            idempotency_key: key.map(str::to_owned),
            gpus: None,
        }
    }

    #[test]
    fn containers_round_trip_with_idempotency() {
        let mut store = Store::open_in_memory().unwrap();
        alice(&mut store);
        let first = store.create_container(Some("alice"), &dev(Some("k1"))).unwrap();
        assert_eq!(
            (first.phase, first.cpus, first.memory),
            (ContainerPhase::Creating, 4, ByteSize::parse("16GiB").unwrap())
        );
        assert_eq!(first.uid.len(), 32);
        let repeat = store.create_container(Some("alice"), &dev(Some("k1"))).unwrap();
        assert_eq!(repeat, first, "the same key returns the same container");
        let dup = store.create_container(Some("alice"), &dev(None)).unwrap_err();
        assert!(matches!(dup, Error::Exists { kind: "container", .. }), "{dup}");
        let mut other = dev(Some("k1"));
        other.name = Name::parse("other").unwrap();
        assert!(matches!(store.create_container(None, &other), Err(Error::Conflict(_))));
        assert_eq!(store.containers_of("alice").unwrap().len(), 1);

        store.set_desired_state(None, "alice", "dev", DesiredState::Stopped).unwrap();
        let uid = store.container("alice", "dev").unwrap().uid;
        assert!(store.advance_phase(&uid, ContainerPhase::Creating, ContainerPhase::Ready).unwrap());
        let now = store.container("alice", "dev").unwrap();
        assert_eq!((now.desired_state, now.phase), (DesiredState::Stopped, ContainerPhase::Ready));
        assert!(!now.desktop, "no desktop unless asked for");
        store.set_desktop(Some("alice"), "alice", "dev", true).unwrap();
        assert!(store.container("alice", "dev").unwrap().desktop);
        assert!(matches!(store.set_desktop(None, "alice", "nope", true), Err(Error::NotFound { .. })));
        assert!(matches!(store.remove_user(None, "alice"), Err(Error::Conflict(_))), "owners of containers stay");
        assert!(matches!(store.container("bob", "dev"), Err(Error::NotFound { .. })));
        assert!(store.forget_container(&uid).unwrap());
        assert!(store.all_containers().unwrap().is_empty());
    }

    #[test]
    fn a_stale_phase_change_never_undoes_a_delete() {
        let mut store = Store::open_in_memory().unwrap();
        alice(&mut store);
        let made = store.create_container(None, &dev(None)).unwrap();
        assert!(store.set_phase_of(&made.uid, ContainerPhase::Deleting).unwrap());
        assert!(!store.advance_phase(&made.uid, ContainerPhase::Creating, ContainerPhase::Ready).unwrap());
        assert_eq!(store.container("alice", "dev").unwrap().phase, ContainerPhase::Deleting);
        assert!(store.forget_container(&made.uid).unwrap());
        assert!(!store.forget_container(&made.uid).unwrap());
    }
}
