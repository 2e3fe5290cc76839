//! The `shares` and `share_users` tables: host folders an admin shares into containers,
//! with everyone or with named users. Paths arrive already checked (`ssp_core::sharepath`).

use rusqlite::{params, OptionalExtension};
use ssp_core::names::Name;

use crate::journal::record;
use crate::{now, unique, Error, Result, Store};

/// A stored share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    /// Its name.
    pub name: Name,
    /// The canonical host folder.
    pub host_path: String,
    /// Where it is mounted inside containers.
    pub path: String,
    /// Mounted read-only.
    pub read_only: bool,
    /// For every user (else only `users`).
    pub all_users: bool,
    /// The users it is shared with when not with all, by name.
    pub users: Vec<String>,
    /// Seconds since the epoch.
    pub created_at: i64,
    /// Its share group's number (`ssp_core::idblock`), 1-based and never reused; `None`
    /// for read-only shares and shares recorded before share groups existed.
    pub group: Option<i64>,
}

/// A share to record.
#[derive(Debug, Clone)]
pub struct NewShare {
    /// Its name.
    pub name: Name,
    /// The canonical host folder.
    pub host_path: String,
    /// Where it is mounted inside containers.
    pub path: String,
    /// Mounted read-only.
    pub read_only: bool,
    /// The users to share it with; `None` for everyone.
    pub users: Option<Vec<Name>>,
    /// How many share groups the id block holds: a read-write share gets the next group
    /// number, and is refused when that is beyond this.
    pub group_limit: u32,
}

impl Store {
    /// Records a share; every named user must exist. A read-write share gets a new share
    /// group number (see [`NewShare::group_limit`]).
    pub fn create_share(&mut self, actor: Option<&str>, share: &NewShare) -> Result<Share> {
        self.write(|tx| {
            let group = if share.read_only {
                None
            } else {
                tx.execute(
                    "INSERT INTO share_groups (share, created_at) VALUES (?1, ?2)",
                    params![share.name.as_str(), now()],
                )?;
                let group = tx.last_insert_rowid();
                if group > i64::from(share.group_limit) {
                    return Err(Error::Refused(format!(
                        "no share group left for read-write share {}: all {} are used (numbers are never reused); \
                         widen [storage] share_ids, or share it read-only",
                        share.name, share.group_limit
                    )));
                }
                Some(group)
            };
            tx.execute(
                "INSERT INTO shares (name, host_path, path, read_only, all_users, created_at, group_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    share.name.as_str(),
                    share.host_path,
                    share.path,
                    share.read_only,
                    share.users.is_none(),
                    now(),
                    group
                ],
            )
            .map_err(unique("share", share.name.as_str()))?;
            let id = tx.last_insert_rowid();
            for user in share.users.iter().flatten() {
                let user_id: i64 = tx
                    .query_row("SELECT id FROM users WHERE name = ?1", [user.as_str()], |r| r.get(0))
                    .optional()?
                    .ok_or_else(|| Error::NotFound { kind: "user", name: user.to_string() })?;
                tx.execute(
                    "INSERT OR IGNORE INTO share_users (share_id, user_id) VALUES (?1, ?2)",
                    params![id, user_id],
                )?;
            }
            let mode = if share.read_only { "ro" } else { "rw" };
            record(tx, actor, "share.create", share.name.as_str(), Some(&format!("{} {mode}", share.host_path)))
        })?;
        self.share(share.name.as_str())
    }

    /// One share.
    pub fn share(&self, name: &str) -> Result<Share> {
        self.all_shares()?
            .into_iter()
            .find(|s| s.name.as_str() == name)
            .ok_or_else(|| Error::NotFound { kind: "share", name: name.to_string() })
    }

    /// Every share, by name.
    pub fn all_shares(&self) -> Result<Vec<Share>> {
        let mut stmt = self.conn.prepare(
            "SELECT s.id, s.name, s.host_path, s.path, s.read_only, s.all_users, s.created_at,
                    (SELECT group_concat(u.name, ',') FROM share_users su JOIN users u ON u.id = su.user_id
                     WHERE su.share_id = s.id),
                    s.group_id
             FROM shares s ORDER BY s.name",
        )?;
        let rows = stmt.query_map([], |r| {
            let name: String = r.get(1)?;
            let users: Option<String> = r.get(7)?;
            let mut users: Vec<String> =
                users.unwrap_or_default().split(',').filter(|u| !u.is_empty()).map(str::to_string).collect();
            users.sort();
            Ok(Share {
                name: Name::parse(&name).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e))
                })?,
                host_path: r.get(2)?,
                path: r.get(3)?,
                read_only: r.get(4)?,
                all_users: r.get(5)?,
                users,
                created_at: r.get(6)?,
                group: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The shares `user` gets in their containers.
    pub fn shares_of(&self, user: &str) -> Result<Vec<Share>> {
        Ok(self.all_shares()?.into_iter().filter(|s| s.all_users || s.users.iter().any(|u| u == user)).collect())
    }

    /// Removes a share.
    pub fn remove_share(&mut self, actor: Option<&str>, name: &str) -> Result<()> {
        self.write(|tx| {
            let n = tx.execute("DELETE FROM shares WHERE name = ?1", [name])?;
            if n == 0 {
                return Err(Error::NotFound { kind: "share", name: name.to_string() });
            }
            record(tx, actor, "share.remove", name, None)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::users::tests::alice;

    #[test]
    fn shares_for_everyone_or_named_users() {
        let mut store = Store::open_in_memory().unwrap();
        alice(&mut store);
        let everyone = NewShare {
            name: Name::parse("datasets").unwrap(),
            host_path: "/srv/datasets".into(),
            path: "/shares/datasets".into(),
            read_only: true,
            users: None,
            group_limit: 2,
        };
        let made = store.create_share(Some("root"), &everyone).unwrap();
        assert!(made.all_users && made.read_only && made.users.is_empty());
        assert!(matches!(store.create_share(None, &everyone), Err(Error::Exists { .. })));
        let lab = NewShare {
            name: Name::parse("lab").unwrap(),
            read_only: false,
            users: Some(vec![Name::parse("alice").unwrap()]),
            ..everyone.clone()
        };
        let made = store.create_share(None, &lab).unwrap();
        assert_eq!(made.users, ["alice"]);
        assert_eq!(made.group, Some(1), "a read-write share gets a group");
        let ghost =
            NewShare { name: Name::parse("ghost").unwrap(), users: Some(vec![Name::parse("bob").unwrap()]), ..lab };
        assert!(matches!(store.create_share(None, &ghost), Err(Error::NotFound { .. })));
        assert!(store.share("ghost").is_err(), "nothing half-made");
        assert_eq!(store.shares_of("alice").unwrap().len(), 2);
        assert_eq!(store.shares_of("bob").unwrap().len(), 1);
        store.remove_share(None, "lab").unwrap();
        assert!(matches!(store.remove_share(None, "lab"), Err(Error::NotFound { .. })));
        assert_eq!(store.all_shares().unwrap().len(), 1);
        // Group numbers are never reused, and run out at the limit.
        let again = NewShare { name: Name::parse("lab").unwrap(), read_only: false, users: None, ..everyone.clone() };
        assert_eq!(
            store.create_share(None, &again).unwrap().group,
            Some(2),
            "1 is not reused; a rolled-back insert takes none"
        );
        let full = NewShare { name: Name::parse("full").unwrap(), ..again };
        assert!(matches!(store.create_share(None, &full), Err(Error::Refused(m)) if m.contains("no share group left")));
        assert!(store.share("full").is_err());
    }
}
