//! The `snapshots` and `snapshot_schedules` tables: what ssp knows of a container's
//! snapshots beyond LXD's own record (protection, who took it), and its schedule and
//! retention policy. LXD holds the snapshots themselves; a row is written after LXD made
//! one and removed after LXD deleted it.

use rusqlite::{params, OptionalExtension};
use ssp_core::retention::Policy;

use crate::journal::record;
use crate::{now, unique, Error, Result, Store};

/// A snapshot's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRow {
    /// Its name within the container.
    pub name: String,
    /// Never pruned by retention.
    pub protected: bool,
    /// Taken by the scheduler.
    pub scheduled: bool,
    /// Seconds since the epoch.
    pub created_at: i64,
}

/// A container's snapshot schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Seconds between scheduled snapshots.
    pub every_secs: u64,
    /// What retention keeps.
    pub policy: Policy,
    /// When the scheduler last took one.
    pub last_run_at: Option<i64>,
}

fn container_id(tx: &rusqlite::Connection, uid: &str) -> Result<(i64, String)> {
    tx.query_row(
        "SELECT c.id, u.name || '/' || c.name FROM containers c JOIN users u ON u.id = c.owner_id WHERE c.uid = ?1",
        [uid],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()?
    .ok_or_else(|| Error::NotFound { kind: "container", name: uid.to_string() })
}

impl Store {
    /// Records a snapshot LXD has just made of the container with this uid.
    pub fn record_snapshot(
        &mut self,
        actor: Option<&str>,
        uid: &str,
        name: &str,
        protected: bool,
        scheduled: bool,
    ) -> Result<()> {
        self.write(|tx| {
            let (id, object) = container_id(tx, uid)?;
            let object = format!("{object}@{name}");
            tx.execute(
                "INSERT INTO snapshots (container_id, name, protected, scheduled, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (container_id, name) DO UPDATE SET protected = excluded.protected",
                params![id, name, protected, scheduled, now()],
            )
            .map_err(unique("snapshot", &object))?;
            if scheduled {
                tx.execute("UPDATE snapshot_schedules SET last_run_at = ?2 WHERE container_id = ?1", params![id, now()])?;
            }
            record(tx, actor, "snapshot.create", &object, None)
        })
    }

    /// The snapshot rows of the container with this uid, by name.
    pub fn snapshots_of(&self, uid: &str) -> Result<Vec<SnapshotRow>> {
        let mut stmt = self.conn.prepare(
            "SELECT s.name, s.protected, s.scheduled, s.created_at FROM snapshots s
             JOIN containers c ON c.id = s.container_id WHERE c.uid = ?1 ORDER BY s.name",
        )?;
        let rows = stmt.query_map([uid], |r| {
            Ok(SnapshotRow { name: r.get(0)?, protected: r.get(1)?, scheduled: r.get(2)?, created_at: r.get(3)? })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Protects or unprotects a snapshot (one LXD has but ssp did not record gets a row).
    pub fn set_snapshot_protected(
        &mut self,
        actor: Option<&str>,
        uid: &str,
        name: &str,
        protected: bool,
    ) -> Result<()> {
        self.write(|tx| {
            let (id, object) = container_id(tx, uid)?;
            tx.execute(
                "INSERT INTO snapshots (container_id, name, protected, scheduled, created_at) VALUES (?1, ?2, ?3, 0, ?4)
                 ON CONFLICT (container_id, name) DO UPDATE SET protected = excluded.protected",
                params![id, name, protected, now()],
            )?;
            let action = if protected { "snapshot.protect" } else { "snapshot.unprotect" };
            record(tx, actor, action, &format!("{object}@{name}"), None)
        })
    }

    /// Forgets a snapshot once LXD deleted it; `false` if there was no row.
    pub fn forget_snapshot(&mut self, actor: Option<&str>, uid: &str, name: &str) -> Result<bool> {
        self.write(|tx| {
            let (id, object) = container_id(tx, uid)?;
            let n = tx.execute("DELETE FROM snapshots WHERE container_id = ?1 AND name = ?2", params![id, name])?;
            record(tx, actor, "snapshot.delete", &format!("{object}@{name}"), None)?;
            Ok(n > 0)
        })
    }

    /// Sets (or replaces) the schedule of the container with this uid.
    pub fn set_schedule(&mut self, actor: Option<&str>, uid: &str, every_secs: u64, policy: &Policy) -> Result<()> {
        self.write(|tx| {
            let (id, object) = container_id(tx, uid)?;
            let every = i64::try_from(every_secs).unwrap_or(i64::MAX);
            tx.execute(
                "INSERT INTO snapshot_schedules (container_id, every_secs, keep_last, keep_daily, keep_weekly)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (container_id) DO UPDATE SET every_secs = excluded.every_secs,
                   keep_last = excluded.keep_last, keep_daily = excluded.keep_daily, keep_weekly = excluded.keep_weekly",
                params![id, every, policy.last, policy.daily, policy.weekly],
            )?;
            let detail = format!(
                "every {every_secs} s, keep last {} daily {} weekly {}",
                policy.last, policy.daily, policy.weekly
            );
            record(tx, actor, "snapshot.schedule", &object, Some(&detail))
        })
    }

    /// Removes the schedule of the container with this uid; `false` if it had none.
    pub fn remove_schedule(&mut self, actor: Option<&str>, uid: &str) -> Result<bool> {
        self.write(|tx| {
            let (id, object) = container_id(tx, uid)?;
            let n = tx.execute("DELETE FROM snapshot_schedules WHERE container_id = ?1", [id])?;
            record(tx, actor, "snapshot.unschedule", &object, None)?;
            Ok(n > 0)
        })
    }

    /// The schedule of the container with this uid, if any.
    pub fn schedule_of(&self, uid: &str) -> Result<Option<Schedule>> {
        Ok(self
            .conn
            .query_row(
                "SELECT s.every_secs, s.keep_last, s.keep_daily, s.keep_weekly, s.last_run_at FROM snapshot_schedules s
                 JOIN containers c ON c.id = s.container_id WHERE c.uid = ?1",
                [uid],
                schedule_from_row,
            )
            .optional()?)
    }

    /// Every schedule, by container uid.
    pub fn all_schedules(&self) -> Result<Vec<(String, Schedule)>> {
        let mut stmt = self.conn.prepare(
            "SELECT s.every_secs, s.keep_last, s.keep_daily, s.keep_weekly, s.last_run_at, c.uid
             FROM snapshot_schedules s JOIN containers c ON c.id = s.container_id ORDER BY c.uid",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(5)?, schedule_from_row(r)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

fn schedule_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Schedule> {
    Ok(Schedule {
        every_secs: r.get::<_, i64>(0)?.max(0) as u64,
        policy: Policy { last: r.get(1)?, daily: r.get(2)?, weekly: r.get(3)? },
        last_run_at: r.get(4)?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::containers::tests::dev;
    use crate::users::tests::alice;

    #[test]
    fn snapshots_and_schedules_round_trip_and_go_with_their_container() {
        let mut store = Store::open_in_memory().unwrap();
        alice(&mut store);
        let uid = store.create_container(None, &dev(None)).unwrap().uid;
        store.record_snapshot(Some("alice"), &uid, "before", true, false).unwrap();
        store.record_snapshot(None, &uid, "auto-1", false, true).unwrap();
        let rows = store.snapshots_of(&uid).unwrap();
        assert_eq!(
            rows.iter().map(|r| (r.name.as_str(), r.protected)).collect::<Vec<_>>(),
            [("auto-1", false), ("before", true)]
        );
        store.set_snapshot_protected(None, &uid, "auto-1", true).unwrap();
        assert!(store.snapshots_of(&uid).unwrap()[0].protected);
        assert!(store.forget_snapshot(None, &uid, "auto-1").unwrap());
        assert!(!store.forget_snapshot(None, &uid, "auto-1").unwrap());

        let policy = Policy { last: 3, daily: 7, weekly: 0 };
        store.set_schedule(None, &uid, 3600, &policy).unwrap();
        let schedule = store.schedule_of(&uid).unwrap().unwrap();
        assert_eq!((schedule.every_secs, schedule.policy, schedule.last_run_at), (3600, policy, None));
        store.record_snapshot(None, &uid, "auto-2", false, true).unwrap();
        assert!(store.schedule_of(&uid).unwrap().unwrap().last_run_at.is_some());
        assert_eq!(store.all_schedules().unwrap().len(), 1);
        assert!(matches!(store.record_snapshot(None, "nope", "x", false, false), Err(Error::NotFound { .. })));

        store.forget_container(&uid).unwrap();
        assert!(store.all_schedules().unwrap().is_empty());
        assert!(store.snapshots_of(&uid).unwrap().is_empty());
        assert!(store.remove_schedule(None, &uid).is_err());
    }
}
