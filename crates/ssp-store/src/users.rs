//! The `users` table: accounts, roles, the disabled flag and quotas.

use rusqlite::{params, OptionalExtension, Row};
use ssp_core::names::Name;
use ssp_core::quota::Quota;
use ssp_core::size::ByteSize;

use crate::journal::record;
use crate::{now, unique, Error, Result, Store};

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Manages users, shares and the host.
    Admin,
    /// Manages their own containers.
    User,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
        }
    }

    fn parse(text: &str) -> Self {
        if text == "admin" {
            Role::Admin
        } else {
            Role::User
        }
    }
}

/// A stored user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Row id.
    pub id: i64,
    /// Login name (also their Linux account in containers).
    pub name: Name,
    /// Role.
    pub role: Role,
    /// A disabled user's tokens and keys stop working.
    pub disabled: bool,
    /// Their quota.
    pub quota: Quota,
    /// Whether a password is set (for the web portal).
    pub has_password: bool,
    /// Seconds since the epoch.
    pub created_at: i64,
}

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Login name.
    pub name: Name,
    /// Role.
    pub role: Role,
    /// Quota.
    pub quota: Quota,
}

const COLUMNS: &str =
    "id, name, role, disabled, max_containers, max_cpus, max_memory, max_disk, max_gpus, password_hash IS NOT NULL, created_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<User> {
    let name: String = row.get(1)?;
    let bytes =
        |i: usize| -> rusqlite::Result<ByteSize> { Ok(ByteSize::from_bytes(row.get::<_, i64>(i)?.max(0) as u64)) };
    Ok(User {
        id: row.get(0)?,
        // Names were checked on the way in; a row that fails is a corrupt database.
        name: Name::parse(&name)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e)))?,
        role: Role::parse(&row.get::<_, String>(2)?),
        disabled: row.get(3)?,
        quota: Quota {
            max_containers: row.get(4)?,
            max_cpus: row.get(5)?,
            max_memory: bytes(6)?,
            max_disk: bytes(7)?,
            max_gpus: row.get(8)?,
        },
        has_password: row.get(9)?,
        created_at: row.get(10)?,
    })
}

fn size(value: ByteSize) -> i64 {
    i64::try_from(value.bytes()).unwrap_or(i64::MAX)
}

impl Store {
    /// Creates a user.
    pub fn create_user(&mut self, actor: Option<&str>, user: &NewUser) -> Result<User> {
        let id = self.write(|tx| {
            tx.execute(
                "INSERT INTO users (name, role, max_containers, max_cpus, max_memory, max_disk, max_gpus, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    user.name.as_str(),
                    user.role.as_str(),
                    user.quota.max_containers,
                    user.quota.max_cpus,
                    size(user.quota.max_memory),
                    size(user.quota.max_disk),
                    user.quota.max_gpus,
                    now()
                ],
            )
            .map_err(unique("user", user.name.as_str()))?;
            let id = tx.last_insert_rowid();
            record(tx, actor, "user.create", user.name.as_str(), Some(user.role.as_str()))?;
            Ok(id)
        })?;
        self.user_by_id(id)
    }

    /// The user called `name`.
    pub fn user(&self, name: &str) -> Result<User> {
        self.conn
            .query_row(&format!("SELECT {COLUMNS} FROM users WHERE name = ?1"), [name], from_row)
            .optional()?
            .ok_or_else(|| Error::NotFound { kind: "user", name: name.into() })
    }

    /// The user with row id `id`.
    pub fn user_by_id(&self, id: i64) -> Result<User> {
        self.conn
            .query_row(&format!("SELECT {COLUMNS} FROM users WHERE id = ?1"), [id], from_row)
            .optional()?
            .ok_or_else(|| Error::NotFound { kind: "user", name: format!("#{id}") })
    }

    /// All users, by name.
    pub fn users(&self) -> Result<Vec<User>> {
        let mut stmt = self.conn.prepare(&format!("SELECT {COLUMNS} FROM users ORDER BY name"))?;
        let rows = stmt.query_map([], from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Changes a user's role and quota.
    pub fn update_user(&mut self, actor: Option<&str>, name: &str, role: Role, quota: &Quota) -> Result<User> {
        let changed = self.write(|tx| {
            let n = tx.execute(
                "UPDATE users SET role = ?2, max_containers = ?3, max_cpus = ?4, max_memory = ?5, max_disk = ?6,
                 max_gpus = ?7 WHERE name = ?1",
                params![
                    name,
                    role.as_str(),
                    quota.max_containers,
                    quota.max_cpus,
                    size(quota.max_memory),
                    size(quota.max_disk),
                    quota.max_gpus
                ],
            )?;
            if n == 1 {
                record(tx, actor, "user.update", name, None)?;
            }
            Ok(n)
        })?;
        if changed == 0 {
            return Err(Error::NotFound { kind: "user", name: name.into() });
        }
        self.user(name)
    }

    /// Disables or re-enables a user; returns the user.
    pub fn set_disabled(&mut self, actor: Option<&str>, name: &str, disabled: bool) -> Result<User> {
        let changed = self.write(|tx| {
            let n = tx.execute("UPDATE users SET disabled = ?2 WHERE name = ?1", params![name, disabled])?;
            if n == 1 {
                record(tx, actor, if disabled { "user.disable" } else { "user.enable" }, name, None)?;
            }
            Ok(n)
        })?;
        if changed == 0 {
            return Err(Error::NotFound { kind: "user", name: name.into() });
        }
        self.user(name)
    }

    /// Sets (or clears) the password hash (an argon2id PHC string made by the caller).
    pub fn set_password_hash(&mut self, actor: Option<&str>, name: &str, hash: Option<&str>) -> Result<()> {
        let changed = self.write(|tx| {
            let n = tx.execute("UPDATE users SET password_hash = ?2 WHERE name = ?1", params![name, hash])?;
            if n == 1 {
                record(tx, actor, "user.password", name, None)?;
            }
            Ok(n)
        })?;
        if changed == 0 {
            return Err(Error::NotFound { kind: "user", name: name.into() });
        }
        Ok(())
    }

    /// The stored password hash, if any.
    pub fn password_hash(&self, name: &str) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT password_hash FROM users WHERE name = ?1", [name], |r| r.get(0))
            .optional()?
            .ok_or_else(|| Error::NotFound { kind: "user", name: name.into() })
    }

    /// Removes a user with their keys and tokens. Refused while they own containers.
    pub fn remove_user(&mut self, actor: Option<&str>, name: &str) -> Result<()> {
        self.write(|tx| {
            let id: i64 = tx
                .query_row("SELECT id FROM users WHERE name = ?1", [name], |r| r.get(0))
                .optional()?
                .ok_or_else(|| Error::NotFound { kind: "user", name: name.into() })?;
            let owned: i64 = tx.query_row("SELECT count(*) FROM containers WHERE owner_id = ?1", [id], |r| r.get(0))?;
            if owned > 0 {
                return Err(Error::Conflict(format!("user {name} still owns {owned} container(s): delete them first")));
            }
            let images: i64 = tx.query_row("SELECT count(*) FROM images WHERE owner_id = ?1", [id], |r| r.get(0))?;
            if images > 0 {
                return Err(Error::Conflict(format!(
                    "user {name} still owns {images} image(s): delete them first (ssp image delete)"
                )));
            }
            let homes: i64 = tx.query_row("SELECT count(*) FROM homes WHERE user_id = ?1", [id], |r| r.get(0))?;
            if homes > 0 {
                return Err(Error::Conflict(format!(
                    "user {name} still has a home volume: delete it first (ssp home delete --user {name})"
                )));
            }
            crate::gpus::forget_user_in(tx, id)?;
            tx.execute("DELETE FROM users WHERE id = ?1", [id])?;
            record(tx, actor, "user.remove", name, None)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn quota() -> Quota {
        Quota {
            max_containers: 3,
            max_cpus: 8,
            max_memory: ByteSize::parse("32GiB").unwrap(),
            max_disk: ByteSize::parse("200GiB").unwrap(),
            max_gpus: 2,
        }
    }

    pub(crate) fn alice(store: &mut Store) -> User {
        let new = NewUser { name: Name::parse("alice").unwrap(), role: Role::User, quota: quota() };
        store.create_user(Some("root"), &new).unwrap()
    }

    #[test]
    fn create_answers_with_the_user_it_made_after_other_writes() {
        let mut store = Store::open_in_memory().unwrap();
        alice(&mut store);
        store.log(Some("root"), "something", "else", None).unwrap();
        store.log(Some("root"), "something", "else", None).unwrap();
        let bob = NewUser { name: Name::parse("bob").unwrap(), role: Role::Admin, quota: quota() };
        let created = store.create_user(None, &bob).unwrap();
        assert_eq!(created.name.as_str(), "bob");
        assert_eq!(created, store.user("bob").unwrap());
    }

    #[test]
    fn users_round_trip_and_names_are_unique() {
        let mut store = Store::open_in_memory().unwrap();
        let created = alice(&mut store);
        assert_eq!(store.user("alice").unwrap(), created);
        assert_eq!(created.quota, quota());
        assert!(!created.disabled && !created.has_password && created.role == Role::User);
        let again = NewUser { name: Name::parse("alice").unwrap(), role: Role::Admin, quota: quota() };
        let err = store.create_user(None, &again).unwrap_err();
        assert!(matches!(err, Error::Exists { kind: "user", .. }), "{err}");
        assert_eq!(store.users().unwrap().len(), 1, "a refused create stores nothing");
        let journal = store.journal(10).unwrap();
        assert_eq!(journal.len(), 1);
        assert_eq!((journal[0].action.as_str(), journal[0].object.as_str()), ("user.create", "alice"));
    }

    #[test]
    fn updates_disable_and_remove() {
        let mut store = Store::open_in_memory().unwrap();
        alice(&mut store);
        let mut bigger = quota();
        bigger.max_gpus = 4;
        let updated = store.update_user(None, "alice", Role::Admin, &bigger).unwrap();
        assert_eq!((updated.role, updated.quota.max_gpus), (Role::Admin, 4));
        assert!(store.set_disabled(None, "alice", true).unwrap().disabled);
        store.set_password_hash(None, "alice", Some("$argon2id$v=19$...")).unwrap();
        assert!(store.user("alice").unwrap().has_password);
        assert!(matches!(store.update_user(None, "bob", Role::User, &bigger), Err(Error::NotFound { .. })));
        store.remove_user(None, "alice").unwrap();
        assert!(matches!(store.user("alice"), Err(Error::NotFound { .. })));
        assert!(matches!(store.remove_user(None, "alice"), Err(Error::NotFound { .. })));
    }
}
