//! The `users` table: accounts, roles, the disabled flag and quotas — and the *departing*
//! mark of a user being removed with everything they hold (`ssp user remove --purge`): the
//! purge request disables them and marks their containers for deletion in one transaction,
//! and [`Store::remove_departed_user`] removes the row once nothing of theirs is left.

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
    /// When their removal was asked for (seconds since the epoch): they are disabled for
    /// good, and the row goes once their containers, home volume and images are gone.
    pub departing_at: Option<i64>,
}

impl User {
    /// Whether the user is being removed.
    pub fn departing(&self) -> bool {
        self.departing_at.is_some()
    }
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
    "id, name, role, disabled, max_containers, max_cpus, max_memory, max_disk, max_gpus, password_hash IS NOT NULL, created_at, \
     departing_at";

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
        departing_at: row.get(11)?,
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

    /// Disables or re-enables a user; returns the user. A departing user stays disabled.
    pub fn set_disabled(&mut self, actor: Option<&str>, name: &str, disabled: bool) -> Result<User> {
        let changed = self.write(|tx| {
            let departing: Option<Option<i64>> =
                tx.query_row("SELECT departing_at FROM users WHERE name = ?1", [name], |r| r.get(0)).optional()?;
            if !disabled && matches!(departing, Some(Some(_))) {
                return Err(Error::Conflict(format!(
                    "{name} is being removed (ssp user remove --purge) and cannot be enabled again"
                )));
            }
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
            remove_user_in(tx, actor, id, name, None)
        })
    }

    /// Starts removing `name` with everything they hold, in one transaction: disables them
    /// for good (`departing_at`), marks every container of theirs `deleting` (journaled as
    /// `container.delete`, as the API's delete does), ends their web sessions and unused
    /// invitations, and journals `user.purge`. Asking again changes nothing but marks any
    /// container made since. Returns the user.
    pub fn mark_departing(&mut self, actor: Option<&str>, name: &str) -> Result<User> {
        self.write(|tx| {
            let id: i64 = tx
                .query_row("SELECT id FROM users WHERE name = ?1", [name], |r| r.get(0))
                .optional()?
                .ok_or_else(|| Error::NotFound { kind: "user", name: name.into() })?;
            tx.execute(
                "UPDATE users SET disabled = 1, departing_at = COALESCE(departing_at, ?2) WHERE id = ?1",
                params![id, now()],
            )?;
            let marked: Vec<String> = {
                let mut stmt = tx
                    .prepare("SELECT name FROM containers WHERE owner_id = ?1 AND phase != 'deleting' ORDER BY name")?;
                let rows = stmt.query_map([id], |r| r.get(0))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            tx.execute("UPDATE containers SET phase = 'deleting' WHERE owner_id = ?1", [id])?;
            for container in &marked {
                record(tx, actor, "container.delete", &format!("{name}/{container}"), Some("purge"))?;
            }
            // The disabled flag already refuses them; nothing of theirs should outlive the ask.
            tx.execute("DELETE FROM web_sessions WHERE user_id = ?1", [id])?;
            tx.execute("DELETE FROM invites WHERE user_id = ?1", [id])?;
            let left: i64 = tx.query_row("SELECT count(*) FROM containers WHERE owner_id = ?1", [id], |r| r.get(0))?;
            record(tx, actor, "user.purge", name, Some(&format!("{left} container(s) to delete")))
        })?;
        self.user(name)
    }

    /// The users being removed, by name.
    pub fn departing_users(&self) -> Result<Vec<User>> {
        let mut stmt =
            self.conn.prepare(&format!("SELECT {COLUMNS} FROM users WHERE departing_at IS NOT NULL ORDER BY name"))?;
        let rows = stmt.query_map([], from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Removes departing user `name` once nothing of theirs is left (journaled `user.remove`
    /// with no actor: the daemon finished what `user.purge` asked). `false` when there is no
    /// such departing user — already removed, or a new user of the same name who must not be
    /// touched; `Conflict` while something of theirs remains.
    pub fn remove_departed_user(&mut self, name: &str) -> Result<bool> {
        self.write(|tx| {
            let id: Option<i64> = tx
                .query_row("SELECT id FROM users WHERE name = ?1 AND departing_at IS NOT NULL", [name], |r| r.get(0))
                .optional()?;
            let Some(id) = id else { return Ok(false) };
            remove_user_in(tx, None, id, name, Some("purged"))?;
            Ok(true)
        })
    }
}

/// Removes user `id` (`name`) with what cascades from the row (keys, tokens, web sessions,
/// invitations, share memberships, the GPU allowlist) and their ended leases; refused while
/// they own containers, images or a home volume.
fn remove_user_in(
    tx: &rusqlite::Transaction<'_>,
    actor: Option<&str>,
    id: i64,
    name: &str,
    detail: Option<&str>,
) -> Result<()> {
    let owned: i64 = tx.query_row("SELECT count(*) FROM containers WHERE owner_id = ?1", [id], |r| r.get(0))?;
    if owned > 0 {
        return Err(Error::Conflict(format!(
            "user {name} still owns {owned} container(s): delete them first, or remove the user with --purge"
        )));
    }
    let images: i64 = tx.query_row("SELECT count(*) FROM images WHERE owner_id = ?1", [id], |r| r.get(0))?;
    if images > 0 {
        return Err(Error::Conflict(format!(
            "user {name} still owns {images} image(s): delete them first (ssp image delete), or remove the user with --purge"
        )));
    }
    let homes: i64 = tx.query_row("SELECT count(*) FROM homes WHERE user_id = ?1", [id], |r| r.get(0))?;
    if homes > 0 {
        return Err(Error::Conflict(format!(
            "user {name} still has a home volume: delete it first (ssp home delete --user {name}), or remove the user with --purge"
        )));
    }
    crate::gpus::forget_user_in(tx, id)?;
    tx.execute("DELETE FROM users WHERE id = ?1", [id])?;
    record(tx, actor, "user.remove", name, detail)
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

    #[test]
    fn a_purge_disables_marks_containers_and_the_row_goes_when_nothing_is_left() {
        use crate::containers::tests::dev;
        use crate::{ContainerPhase, HomePhase};
        let mut store = Store::open_in_memory().unwrap();
        alice(&mut store);
        let bob = NewUser { name: Name::parse("bob").unwrap(), role: Role::User, quota: quota() };
        store.create_user(None, &bob).unwrap();
        let first = store.create_container(Some("root"), &dev(None)).unwrap();
        let mut second = dev(None);
        second.name = Name::parse("lab").unwrap();
        let second = store.create_container(Some("root"), &second).unwrap();
        store.create_home(None, "alice", ByteSize::parse("1GiB").unwrap()).unwrap();
        let line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@laptop";
        store.add_key(None, "alice", "laptop", line, "SHA256:x").unwrap();
        let (_, token) = store.create_token(None, "alice", "ci").unwrap();
        store.open_web_session("alice", "secret-1", "csrf-1", "127.0.0.1").unwrap();
        store.create_invite(None, "alice", "invite-1", crate::now() + 3600).unwrap();
        store.set_gpu_allowlist(None, "alice", None, None).unwrap();
        let share = crate::NewShare {
            name: Name::parse("lab").unwrap(),
            host_path: "/srv/lab".into(),
            path: "/shares/lab".into(),
            read_only: true,
            users: Some(vec![Name::parse("alice").unwrap(), Name::parse("bob").unwrap()]),
            group_limit: 10,
        };
        store.create_share(None, &share).unwrap();
        assert!(!store.remove_departed_user("alice").unwrap(), "not departing: left alone");

        let marked = store.mark_departing(Some("root"), "alice").unwrap();
        assert!(marked.disabled && marked.departing(), "{marked:?}");
        let since = marked.departing_at;
        assert!(store.containers_of("alice").unwrap().iter().all(|c| c.phase == ContainerPhase::Deleting));
        assert!(store.authenticate(&token).unwrap().is_none(), "a departing user's token stops working");
        assert!(store.web_session("secret-1", 0, 0).unwrap().is_none(), "web sessions end at once");
        assert!(store.invite("invite-1").unwrap().is_none(), "invitations go");
        let refused = store.set_disabled(Some("root"), "alice", false).unwrap_err();
        assert!(matches!(refused, Error::Conflict(_)) && refused.to_string().contains("being removed"), "{refused}");
        assert_eq!(store.departing_users().unwrap().iter().map(|u| u.name.to_string()).collect::<Vec<_>>(), ["alice"]);
        assert_eq!(
            store.mark_departing(Some("root"), "alice").unwrap().departing_at,
            since,
            "asking twice keeps the time"
        );
        assert!(matches!(store.mark_departing(None, "carol"), Err(Error::NotFound { .. })));

        // Whatever is left keeps the row.
        assert!(matches!(store.remove_departed_user("alice"), Err(Error::Conflict(_))));
        store.forget_container(&first.uid).unwrap();
        store.forget_container(&second.uid).unwrap();
        let home = store.remove_departed_user("alice").unwrap_err();
        assert!(home.to_string().contains("home volume"), "{home}");
        store.set_home_phase(None, "alice", HomePhase::Deleting).unwrap();
        store.forget_home("alice").unwrap();
        assert!(store.remove_departed_user("alice").unwrap());
        assert!(matches!(store.user("alice"), Err(Error::NotFound { .. })));
        assert!(!store.remove_departed_user("alice").unwrap(), "already gone");
        assert_eq!(store.share("lab").unwrap().users, ["bob"], "share memberships go with the row");
        assert!(store.departing_users().unwrap().is_empty());
        let actions: Vec<(String, String)> =
            store.journal(50).unwrap().into_iter().map(|e| (e.action, e.object)).collect();
        for wanted in [("user.purge", "alice"), ("user.remove", "alice"), ("container.delete", "alice/lab")] {
            assert!(actions.iter().any(|(a, o)| (a.as_str(), o.as_str()) == wanted), "{wanted:?} in {actions:?}");
        }

        // A new user of the same name is never taken for the departed one.
        alice(&mut store);
        assert!(!store.remove_departed_user("alice").unwrap());
        assert!(store.user("alice").is_ok());
    }
}
