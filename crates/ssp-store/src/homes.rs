//! The `homes` table: each user's persistent home volume, its size (counted against the
//! disk quota) and the storage worker's progress on it.

use rusqlite::{params, OptionalExtension};
use ssp_core::names::Name;
use ssp_core::size::ByteSize;

use crate::journal::record;
use crate::{now, Error, Result, Store};

/// Where the storage worker is with a home volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HomePhase {
    /// Recorded; LXD may not have the volume yet.
    Creating,
    /// The volume exists and is mounted in the user's containers.
    Ready,
    /// Being removed; the row goes once LXD no longer has the volume.
    Deleting,
}

impl HomePhase {
    fn as_str(self) -> &'static str {
        match self {
            HomePhase::Creating => "creating",
            HomePhase::Ready => "ready",
            HomePhase::Deleting => "deleting",
        }
    }
}

/// A user's home volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    /// Its user.
    pub user: Name,
    /// The user's row id (their stable share identity).
    pub user_id: i64,
    /// Size.
    pub size: ByteSize,
    /// Progress.
    pub phase: HomePhase,
    /// Seconds since the epoch.
    pub created_at: i64,
}

const SELECT: &str =
    "SELECT u.name, h.user_id, h.size, h.phase, h.created_at FROM homes h JOIN users u ON u.id = h.user_id";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Home> {
    let name: String = r.get(0)?;
    Ok(Home {
        user: Name::parse(&name)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))?,
        user_id: r.get(1)?,
        size: ByteSize::from_bytes(r.get::<_, i64>(2)?.max(0) as u64),
        phase: match r.get::<_, String>(3)?.as_str() {
            "creating" => HomePhase::Creating,
            "ready" => HomePhase::Ready,
            _ => HomePhase::Deleting,
        },
        created_at: r.get(4)?,
    })
}

impl Store {
    /// Records a home volume for `user` (phase `creating`).
    pub fn create_home(&mut self, actor: Option<&str>, user: &str, size: ByteSize) -> Result<Home> {
        let owner = self.user(user)?;
        self.write(|tx| {
            let existing: Option<String> =
                tx.query_row("SELECT phase FROM homes WHERE user_id = ?1", [owner.id], |r| r.get(0)).optional()?;
            if existing.is_some() {
                return Err(Error::Exists { kind: "home volume of", name: user.to_string() });
            }
            tx.execute(
                "INSERT INTO homes (user_id, size, phase, created_at) VALUES (?1, ?2, 'creating', ?3)",
                params![owner.id, i64::try_from(size.bytes()).unwrap_or(i64::MAX), now()],
            )?;
            record(tx, actor, "home.create", user, Some(&size.to_string()))
        })?;
        self.home(user)
    }

    /// `user`'s home volume.
    pub fn home(&self, user: &str) -> Result<Home> {
        self.conn
            .query_row(&format!("{SELECT} WHERE u.name = ?1"), [user], from_row)
            .optional()?
            .ok_or_else(|| Error::NotFound { kind: "home volume of", name: user.to_string() })
    }

    /// Every home volume.
    pub fn all_homes(&self) -> Result<Vec<Home>> {
        let mut stmt = self.conn.prepare(&format!("{SELECT} ORDER BY u.name"))?;
        let rows = stmt.query_map([], from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Moves `user`'s home to `phase` (the API marks `deleting`, the worker `ready`).
    pub fn set_home_phase(&mut self, actor: Option<&str>, user: &str, phase: HomePhase) -> Result<()> {
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE homes SET phase = ?2 WHERE user_id = (SELECT id FROM users WHERE name = ?1)",
                params![user, phase.as_str()],
            )?;
            if n == 0 {
                return Err(Error::NotFound { kind: "home volume of", name: user.to_string() });
            }
            record(tx, actor, "home.phase", user, Some(phase.as_str()))
        })
    }

    /// Forgets `user`'s home once its volume is gone.
    pub fn forget_home(&mut self, user: &str) -> Result<()> {
        self.write(|tx| {
            tx.execute("DELETE FROM homes WHERE user_id = (SELECT id FROM users WHERE name = ?1)", [user])?;
            record(tx, None, "home.remove", user, None)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::users::tests::alice;

    #[test]
    fn one_home_per_user_through_its_phases() {
        let mut store = Store::open_in_memory().unwrap();
        alice(&mut store);
        let size = ByteSize::parse("2GiB").unwrap();
        let home = store.create_home(None, "alice", size).unwrap();
        assert_eq!((home.phase, home.size), (HomePhase::Creating, size));
        assert!(matches!(store.create_home(None, "alice", size), Err(Error::Exists { .. })));
        assert!(matches!(store.create_home(None, "bob", size), Err(Error::NotFound { .. })));
        store.set_home_phase(None, "alice", HomePhase::Ready).unwrap();
        assert_eq!(store.all_homes().unwrap()[0].phase, HomePhase::Ready);
        store.forget_home("alice").unwrap();
        assert!(store.home("alice").is_err());
    }
}
