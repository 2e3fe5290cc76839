//! The `gpus`, `gpu_allowlists` and `gpu_leases` tables: the host's GPUs as last seen, the
//! admin's marks on them (shared, reserved), each user's allowlist, and leases.
//!
//! A lease is one container holding one GPU, from its grant until it ends (detach, expiry,
//! idle reclaim, the container's removal). Grants run [`ssp_core::gpu::allocate`] inside one
//! immediate transaction over the current leases, so two racing grants are serialized by
//! SQLite and the second sees the first; partial unique indexes back that up. Ended leases
//! are kept for GPU-hour accounting.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::{params, OptionalExtension, Transaction};
use ssp_core::gpu::{allocate, Asker, GpuPolicy, GpuRequest, GpuSlot, Refusal};

use crate::journal::record;
use crate::{now, Error, Result, Store};

/// A GPU as an inventory reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuRecord {
    /// Host index.
    pub index: u32,
    /// Stable id (`GPU-…` for NVIDIA cards).
    pub uuid: String,
    /// Model name.
    pub model: String,
    /// Memory in bytes.
    pub memory: u64,
    /// PCI address (`0000:01:00.0`), where known.
    pub pci: Option<String>,
    /// An emulated GPU (no hardware behind it).
    pub emulated: bool,
}

/// A stored GPU with the admin's marks and its current leases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpu {
    /// What the inventory said.
    pub record: GpuRecord,
    /// Still present in the latest inventory.
    pub present: bool,
    /// Several containers may hold it.
    pub shared: bool,
    /// Only this user may be given it.
    pub reserved_for: Option<String>,
    /// Its active leases.
    pub leases: Vec<Lease>,
}

/// One container holding one GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Row id.
    pub id: i64,
    /// Host GPU index.
    pub gpu: u32,
    /// The holding container's uid.
    pub container_uid: String,
    /// The container's owner.
    pub owner: String,
    /// The container's name.
    pub container: String,
    /// Seconds since the epoch.
    pub granted_at: i64,
    /// When it ends by itself, if ever.
    pub expires_at: Option<i64>,
}

/// GPU-hours a user has held, over ended and active leases.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuHours {
    /// The user.
    pub user: String,
    /// Sum of lease durations, in hours.
    pub hours: f64,
    /// GPUs held now.
    pub holding: u32,
}

const LEASE_SELECT: &str = "SELECT l.id, l.gpu, l.container_uid, u.name, c.name, l.granted_at, l.expires_at
     FROM gpu_leases l JOIN users u ON u.id = l.user_id JOIN containers c ON c.uid = l.container_uid
     WHERE l.ended_at IS NULL";

fn lease_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Lease> {
    Ok(Lease {
        id: row.get(0)?,
        gpu: row.get(1)?,
        container_uid: row.get(2)?,
        owner: row.get(3)?,
        container: row.get(4)?,
        granted_at: row.get(5)?,
        expires_at: row.get(6)?,
    })
}

fn join(set: &BTreeSet<impl ToString>) -> String {
    set.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}

/// The container's owner as (user id, name, container object name).
fn container_owner(tx: &Transaction<'_>, uid: &str) -> Result<(i64, String, String)> {
    tx.query_row(
        "SELECT u.id, u.name, u.name || '/' || c.name FROM containers c JOIN users u ON u.id = c.owner_id
         WHERE c.uid = ?1 AND c.phase IN ('creating', 'ready')",
        [uid],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .optional()?
    .ok_or_else(|| Error::NotFound { kind: "container", name: uid.into() })
}

/// A user's GPU allowlists as the admin set them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist {
    /// Only these host indices (`None`: any).
    pub indices: Option<Vec<u32>>,
    /// Only these models (`None`: any).
    pub models: Option<Vec<String>>,
}

/// A user's allowlists as stored: indices comma-separated, models one per line.
fn allowlist_in(conn: &rusqlite::Connection, user_id: i64) -> Result<Allowlist> {
    let lists: Option<(Option<String>, Option<String>)> = conn
        .query_row("SELECT indices, models FROM gpu_allowlists WHERE user_id = ?1", [user_id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let (indices, models) = lists.unwrap_or_default();
    Ok(Allowlist {
        indices: indices.map(|text| text.split(',').filter_map(|i| i.parse().ok()).collect()),
        models: models.map(|text| text.split('\n').map(str::to_owned).collect()),
    })
}

fn policy_in(tx: &Transaction<'_>, user_id: i64) -> Result<GpuPolicy> {
    let max_gpus: u32 = tx.query_row("SELECT max_gpus FROM users WHERE id = ?1", [user_id], |r| r.get(0))?;
    let allowlist = allowlist_in(tx, user_id)?;
    Ok(GpuPolicy {
        max_gpus,
        allowed_indices: allowlist.indices.map(|indices| indices.into_iter().collect()),
        allowed_models: allowlist.models.map(|models| models.into_iter().collect()),
    })
}

fn slots_in(tx: &Transaction<'_>) -> Result<Vec<GpuSlot>> {
    let mut statement = tx.prepare(
        "SELECT g.idx, g.model, g.shared, r.name FROM gpus g LEFT JOIN users r ON r.id = g.reserved_for
         WHERE g.present = 1 ORDER BY g.idx",
    )?;
    let mut slots: Vec<GpuSlot> = statement
        .query_map([], |r| {
            Ok(GpuSlot {
                index: r.get(0)?,
                model: r.get(1)?,
                shared: r.get::<_, i64>(2)? == 1,
                reserved_for: r.get(3)?,
                holders: Vec::new(),
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut leases = tx.prepare("SELECT gpu, container_uid FROM gpu_leases WHERE ended_at IS NULL")?;
    let rows = leases.query_map([], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, String>(1)?)))?;
    for row in rows {
        let (gpu, holder) = row?;
        if let Some(slot) = slots.iter_mut().find(|s| s.index == gpu) {
            slot.holders.push(holder);
        }
    }
    Ok(slots)
}

/// Grants `request` to container `uid` inside `tx`: the allocator decides over the current
/// leases, then one lease per GPU is written. Used by grants and by container creation.
pub(crate) fn grant_in(
    tx: &Transaction<'_>,
    actor: Option<&str>,
    uid: &str,
    request: &GpuRequest,
    expires_at: Option<i64>,
) -> Result<Vec<u32>> {
    let (user_id, user, object) = container_owner(tx, uid)?;
    let held: u32 =
        tx.query_row("SELECT count(*) FROM gpu_leases WHERE user_id = ?1 AND ended_at IS NULL", [user_id], |r| {
            r.get(0)
        })?;
    let slots = slots_in(tx)?;
    let policy = policy_in(tx, user_id)?;
    let granted = allocate(&slots, Asker { user: &user, container: uid, held }, &policy, request)?;
    let at = now();
    for &index in &granted {
        let exclusive = slots.iter().any(|s| s.index == index && !s.shared);
        tx.execute(
            "INSERT INTO gpu_leases (gpu, container_uid, user_id, exclusive, granted_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![index, uid, user_id, exclusive, at, expires_at],
        )?;
        let detail = match expires_at {
            Some(until) => format!("gpu {index} until {until}"),
            None => format!("gpu {index}"),
        };
        record(tx, actor, "gpu.grant", &object, Some(&detail))?;
    }
    Ok(granted)
}

/// Ends every active lease of container `uid` (it is being removed).
pub(crate) fn end_all_in(tx: &Transaction<'_>, uid: &str, reason: &str) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE gpu_leases SET ended_at = ?2, end_reason = ?3 WHERE container_uid = ?1 AND ended_at IS NULL",
        params![uid, now(), reason],
    )?;
    Ok(())
}

/// Drops a departing user's ended leases (they hold no active ones: they own no containers);
/// the journal keeps the history of their grants.
pub(crate) fn forget_user_in(tx: &Transaction<'_>, user_id: i64) -> rusqlite::Result<()> {
    tx.execute("DELETE FROM gpu_leases WHERE user_id = ?1 AND ended_at IS NOT NULL", [user_id])?;
    Ok(())
}

impl From<Refusal> for Error {
    fn from(refusal: Refusal) -> Self {
        Error::Refused(refusal.to_string())
    }
}

impl Store {
    /// Records the inventory just read: new GPUs are added, known ones updated, missing ones
    /// marked absent (their leases stay until the admin or the reconciler ends them).
    pub fn sync_gpus(&mut self, inventory: &[GpuRecord]) -> Result<()> {
        self.write(|tx| {
            tx.execute("UPDATE gpus SET present = 0", [])?;
            for gpu in inventory {
                tx.execute(
                    "INSERT INTO gpus (idx, uuid, model, memory, pci, emulated, present)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1)
                     ON CONFLICT (idx) DO UPDATE SET uuid = ?2, model = ?3, memory = ?4, pci = ?5,
                         emulated = ?6, present = 1",
                    params![
                        gpu.index,
                        gpu.uuid,
                        gpu.model,
                        i64::try_from(gpu.memory).unwrap_or(i64::MAX),
                        gpu.pci,
                        gpu.emulated
                    ],
                )?;
            }
            Ok(())
        })
    }

    /// Every GPU present, with its marks and active leases.
    pub fn gpus(&self) -> Result<Vec<Gpu>> {
        let mut statement = self.conn.prepare(
            "SELECT g.idx, g.uuid, g.model, g.memory, g.pci, g.emulated, g.present, g.shared, r.name
             FROM gpus g LEFT JOIN users r ON r.id = g.reserved_for WHERE g.present = 1 ORDER BY g.idx",
        )?;
        let mut gpus: Vec<Gpu> = statement
            .query_map([], |r| {
                Ok(Gpu {
                    record: GpuRecord {
                        index: r.get(0)?,
                        uuid: r.get(1)?,
                        model: r.get(2)?,
                        memory: r.get::<_, i64>(3)?.max(0) as u64,
                        pci: r.get(4)?,
                        emulated: r.get::<_, i64>(5)? == 1,
                    },
                    present: r.get::<_, i64>(6)? == 1,
                    shared: r.get::<_, i64>(7)? == 1,
                    reserved_for: r.get(8)?,
                    leases: Vec::new(),
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        for lease in self.active_leases()? {
            if let Some(gpu) = gpus.iter_mut().find(|g| g.record.index == lease.gpu) {
                gpu.leases.push(lease);
            }
        }
        Ok(gpus)
    }

    /// Every active lease, by GPU then container.
    pub fn active_leases(&self) -> Result<Vec<Lease>> {
        let mut statement = self.conn.prepare(&format!("{LEASE_SELECT} ORDER BY l.gpu, l.id"))?;
        let leases = statement.query_map([], lease_from_row)?.collect::<rusqlite::Result<_>>()?;
        Ok(leases)
    }

    /// The active leases of container `uid`, by GPU.
    pub fn leases_of(&self, uid: &str) -> Result<Vec<Lease>> {
        let mut statement = self.conn.prepare(&format!("{LEASE_SELECT} AND l.container_uid = ?1 ORDER BY l.gpu"))?;
        let leases = statement.query_map([uid], lease_from_row)?.collect::<rusqlite::Result<_>>()?;
        Ok(leases)
    }

    /// Grants `request` to container `uid` (see [`ssp_core::gpu::allocate`]); the GPUs granted.
    pub fn grant_gpus(
        &mut self,
        actor: Option<&str>,
        uid: &str,
        request: &GpuRequest,
        expires_at: Option<i64>,
    ) -> Result<Vec<u32>> {
        self.write(|tx| grant_in(tx, actor, uid, request, expires_at))
    }

    /// Ends container `uid`'s lease on GPU `index` with `reason` (`detach`, `expired`, `idle`);
    /// `false` if it held no such lease.
    pub fn end_lease(&mut self, actor: Option<&str>, uid: &str, index: u32, reason: &str) -> Result<bool> {
        self.write(|tx| {
            let object: Option<String> = tx
                .query_row(
                    "SELECT u.name || '/' || c.name FROM containers c JOIN users u ON u.id = c.owner_id
                     WHERE c.uid = ?1",
                    [uid],
                    |r| r.get(0),
                )
                .optional()?;
            let ended = tx.execute(
                "UPDATE gpu_leases SET ended_at = ?3, end_reason = ?4
                 WHERE container_uid = ?1 AND gpu = ?2 AND ended_at IS NULL",
                params![uid, index, now(), reason],
            )?;
            if ended > 0 {
                let object = object.unwrap_or_else(|| uid.to_string());
                record(tx, actor, &format!("gpu.{reason}"), &object, Some(&format!("gpu {index}")))?;
            }
            Ok(ended > 0)
        })
    }

    /// Active leases whose end time is at or before `at`.
    pub fn expired_leases(&self, at: i64) -> Result<Vec<Lease>> {
        let mut statement = self.conn.prepare(&format!(
            "{LEASE_SELECT} AND l.expires_at IS NOT NULL AND l.expires_at <= ?1 ORDER BY l.expires_at"
        ))?;
        let leases = statement.query_map([at], lease_from_row)?.collect::<rusqlite::Result<_>>()?;
        Ok(leases)
    }

    /// Marks GPU `index` shared or not (unsharing needs at most one holder) and sets or
    /// clears its reservation.
    pub fn set_gpu(
        &mut self,
        actor: Option<&str>,
        index: u32,
        shared: Option<bool>,
        reserve: Option<Option<&str>>,
    ) -> Result<()> {
        self.write(|tx| {
            let known: Option<i64> = tx
                .query_row("SELECT idx FROM gpus WHERE idx = ?1 AND present = 1", [index], |r| r.get(0))
                .optional()?;
            if known.is_none() {
                return Err(Error::NotFound { kind: "GPU", name: index.to_string() });
            }
            let object = format!("gpu {index}");
            if let Some(shared) = shared {
                let holders: i64 = tx.query_row(
                    "SELECT count(*) FROM gpu_leases WHERE gpu = ?1 AND ended_at IS NULL",
                    [index],
                    |r| r.get(0),
                )?;
                if !shared && holders > 1 {
                    return Err(Error::Conflict(format!(
                        "GPU {index} is held by {holders} containers; detach all but one before making it exclusive"
                    )));
                }
                tx.execute("UPDATE gpus SET shared = ?2 WHERE idx = ?1", params![index, shared])?;
                // Leases follow the GPU's mark, so the unique index keeps guarding it.
                tx.execute(
                    "UPDATE gpu_leases SET exclusive = ?2 WHERE gpu = ?1 AND ended_at IS NULL",
                    params![index, !shared],
                )?;
                record(tx, actor, if shared { "gpu.share" } else { "gpu.unshare" }, &object, None)?;
            }
            if let Some(reserve) = reserve {
                let user_id: Option<i64> = match reserve {
                    Some(name) => Some(
                        tx.query_row("SELECT id FROM users WHERE name = ?1", [name], |r| r.get(0))
                            .optional()?
                            .ok_or_else(|| Error::NotFound { kind: "user", name: name.into() })?,
                    ),
                    None => None,
                };
                tx.execute("UPDATE gpus SET reserved_for = ?2 WHERE idx = ?1", params![index, user_id])?;
                record(tx, actor, "gpu.reserve", &object, Some(reserve.unwrap_or("nobody")))?;
            }
            Ok(())
        })
    }

    /// `user`'s GPU policy: their count and allowlists.
    pub fn gpu_policy(&mut self, user: &str) -> Result<GpuPolicy> {
        let id = self.user(user)?.id;
        self.write(|tx| policy_in(tx, id))
    }

    /// `user`'s allowlists as set.
    pub fn gpu_allowlist(&self, user: &str) -> Result<Allowlist> {
        allowlist_in(&self.conn, self.user(user)?.id)
    }

    /// Sets `user`'s allowlists (`None`: any GPU, any model).
    pub fn set_gpu_allowlist(
        &mut self,
        actor: Option<&str>,
        user: &str,
        indices: Option<&BTreeSet<u32>>,
        models: Option<&BTreeSet<String>>,
    ) -> Result<()> {
        let id = self.user(user)?.id;
        self.write(|tx| {
            tx.execute(
                "INSERT INTO gpu_allowlists (user_id, indices, models) VALUES (?1, ?2, ?3)
                 ON CONFLICT (user_id) DO UPDATE SET indices = ?2, models = ?3",
                params![id, indices.map(join), models.map(|m| m.iter().cloned().collect::<Vec<_>>().join("\n"))],
            )?;
            let detail = format!(
                "indices {} models {}",
                indices.map_or("any".into(), join),
                models.map_or("any".into(), |m| m.iter().cloned().collect::<Vec<_>>().join("|"))
            );
            record(tx, actor, "gpu.allow", user, Some(&detail))
        })
    }

    /// GPU-hours per user (users who never held a GPU are left out), by name.
    pub fn gpu_hours(&self) -> Result<Vec<GpuHours>> {
        let at = now();
        let mut statement = self.conn.prepare(
            "SELECT u.name, sum(coalesce(l.ended_at, ?1) - l.granted_at), sum(l.ended_at IS NULL)
             FROM gpu_leases l JOIN users u ON u.id = l.user_id GROUP BY u.name ORDER BY u.name",
        )?;
        let rows = statement.query_map([at], |r| {
            Ok(GpuHours { user: r.get(0)?, hours: r.get::<_, i64>(1)?.max(0) as f64 / 3600.0, holding: r.get(2)? })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Which GPUs (host indices) each container holds, by container uid.
    pub fn gpus_by_container(&self) -> Result<BTreeMap<String, BTreeSet<u32>>> {
        let mut map: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
        for lease in self.active_leases()? {
            map.entry(lease.container_uid).or_default().insert(lease.gpu);
        }
        Ok(map)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use ssp_core::names::Name;
    use ssp_core::size::ByteSize;

    use super::*;
    use crate::{DesiredState, NewContainer, NewUser, Role};

    pub(crate) fn four_gpus() -> Vec<GpuRecord> {
        (0..4)
            .map(|index| GpuRecord {
                index,
                uuid: format!("GPU-emulated-{index}"),
                model: "Emulated GPU".into(),
                memory: 24 << 30,
                pci: None,
                emulated: true,
            })
            .collect()
    }

    pub(crate) fn user_with_gpus(store: &mut Store, name: &str, max_gpus: u32) {
        let quota = ssp_core::quota::Quota {
            max_containers: 10,
            max_cpus: 64,
            max_memory: ByteSize::parse("64GiB").unwrap(),
            max_disk: ByteSize::parse("1TiB").unwrap(),
            max_gpus,
        };
        store.create_user(None, &NewUser { name: Name::parse(name).unwrap(), role: Role::User, quota }).unwrap();
    }

    pub(crate) fn container(store: &mut Store, owner: &str, name: &str) -> String {
        store
            .create_container(
                None,
                &NewContainer {
                    owner: Name::parse(owner).unwrap(),
                    name: Name::parse(name).unwrap(),
                    image: "busybox".into(),
                    cpus: 1,
                    memory: ByteSize::parse("1GiB").unwrap(),
                    disk: ByteSize::parse("1GiB").unwrap(),
                    desired_state: DesiredState::Running,
                    idempotency_key: None,
                    gpus: None,
                },
            )
            .unwrap()
            .uid
    }

    #[test]
    fn grants_detaches_and_refusals() {
        let mut store = Store::open_in_memory().unwrap();
        store.sync_gpus(&four_gpus()).unwrap();
        user_with_gpus(&mut store, "alice", 2);
        user_with_gpus(&mut store, "bob", 4);
        let a = container(&mut store, "alice", "dev");
        let b = container(&mut store, "bob", "dev");
        let exact = |i: &[u32]| GpuRequest::Exact(i.iter().copied().collect());
        assert_eq!(store.grant_gpus(Some("alice"), &a, &exact(&[2, 3]), None).unwrap(), vec![2, 3]);
        let refused = store.grant_gpus(Some("bob"), &b, &exact(&[3]), None).unwrap_err();
        assert_eq!(refused.to_string(), "GPU 3 is in use by another container; free for you: 0,1");
        assert_eq!(store.grant_gpus(Some("bob"), &b, &GpuRequest::Any(2), None).unwrap(), vec![0, 1]);
        assert!(store.end_lease(Some("alice"), &a, 3, "detach").unwrap());
        assert!(!store.end_lease(Some("alice"), &a, 3, "detach").unwrap());
        assert_eq!(store.grant_gpus(Some("bob"), &b, &exact(&[3]), None).unwrap(), vec![3]);
        let held = store.gpus_by_container().unwrap();
        assert_eq!(held[&a], [2].into());
        assert_eq!(held[&b], [0, 1, 3].into());
        let hours = store.gpu_hours().unwrap();
        assert_eq!((hours[0].user.as_str(), hours[0].holding), ("alice", 1));

        // A user who once held GPUs can be removed once their containers are gone.
        store.forget_container(&a).unwrap();
        store.remove_user(None, "alice").unwrap();
        assert!(store.gpu_hours().unwrap().iter().all(|h| h.user != "alice"));
    }

    #[test]
    fn marks_allowlists_and_expiry() {
        let mut store = Store::open_in_memory().unwrap();
        store.sync_gpus(&four_gpus()).unwrap();
        user_with_gpus(&mut store, "alice", 4);
        user_with_gpus(&mut store, "bob", 4);
        let a = container(&mut store, "alice", "dev");
        let b = container(&mut store, "bob", "dev");
        store.set_gpu(None, 1, Some(true), Some(Some("bob"))).unwrap();
        let refused = store.grant_gpus(None, &a, &GpuRequest::Exact([1].into()), None).unwrap_err();
        assert!(refused.to_string().contains("reserved"), "{refused}");
        store.set_gpu(None, 1, None, Some(None)).unwrap();
        store.grant_gpus(None, &a, &GpuRequest::Exact([1].into()), Some(100)).unwrap();
        store.grant_gpus(None, &b, &GpuRequest::Exact([1].into()), None).unwrap();
        let conflict = store.set_gpu(None, 1, Some(false), None).unwrap_err();
        assert!(conflict.to_string().contains("held by 2"), "{conflict}");
        assert_eq!(store.expired_leases(99).unwrap().len(), 0);
        assert_eq!(store.expired_leases(100).unwrap()[0].container_uid, a);

        assert_eq!(store.gpu_allowlist("alice").unwrap(), Allowlist::default(), "none set: any GPU");
        store.set_gpu_allowlist(None, "alice", Some(&[3].into()), None).unwrap();
        assert_eq!(store.gpu_allowlist("alice").unwrap(), Allowlist { indices: Some(vec![3]), models: None });
        let refused = store.grant_gpus(None, &a, &GpuRequest::Any(2), None).unwrap_err();
        assert_eq!(refused.to_string(), "2 GPU(s) asked but only 1 free for you: 3");
        assert!(matches!(store.set_gpu(None, 9, Some(true), None), Err(Error::NotFound { .. })));
    }
}
