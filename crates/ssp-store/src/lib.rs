//! ssp's desired state in embedded SQLite — and the only SQL in the project.
//!
//! What ssp *wants* (users, keys, tokens, containers and their desired state) lives here;
//! what LXD *has* lives in LXD, and the reconciler makes the second match the first. So every
//! change is a transaction that records the intent and a journal entry together: after a
//! crash at any instant the file holds either the whole change or none of it.
//!
//! The database runs in WAL mode with `synchronous=FULL` (an acknowledged write survives
//! power loss), foreign keys on, and numbered, append-only migrations (`migrations/`) applied
//! at open. One module per table. The store is synchronous: callers keep it on a thread of
//! its own or in `spawn_blocking`.
//!
//! It must not talk to LXD, decide policy (quotas are checked in `ssp-core`), or hold
//! secrets in the clear: API tokens are stored as SHA-256 hashes.

mod containers;
mod gateway;
mod gpus;
mod homes;
mod images;
mod journal;
mod keys;
mod shares;
mod snapshots;
mod tokens;
mod users;
mod web;

use std::path::Path;

use rusqlite::Connection;
use rusqlite_migration::{Migrations, M};

pub use containers::{Container, ContainerPhase, ContainerSource, DesiredState, LeaseRequest, NewContainer};
pub use gateway::GatewaySession;
pub use gpus::{Allowlist, Gpu, GpuHours, GpuRecord, Lease};
pub use homes::{Home, HomePhase};
pub use images::{ImageRow, NewImage};
pub use journal::{JournalEntry, JournalFilter};
pub use keys::SshKey;
pub use shares::{NewShare, Share};
pub use snapshots::{Schedule, SnapshotRow};
pub use tokens::{Token, TOKEN_PREFIX};
pub use users::{NewUser, Role, User};
pub use web::{Invite, WebSession};

/// What can go wrong in the store; messages name the object.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object does not exist (or is not the caller's: callers answer both the same way).
    #[error("{kind} {name} does not exist")]
    NotFound {
        /// `user`, `container`, `key`, …
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// A unique name is taken.
    #[error("{kind} {name} already exists")]
    Exists {
        /// `user`, `container`, `key`, …
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// The request conflicts with the stored state.
    #[error("{0}")]
    Conflict(String),
    /// SQLite failed.
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A migration failed.
    #[error("migrating the state database: {0}")]
    Migration(#[from] rusqlite_migration::Error),
    /// The GPU allocator said no; the message says why and what is free.
    #[error("{0}")]
    Refused(String),
    /// The OS random source failed.
    #[error("no randomness for a new secret: {0}")]
    Random(String),
}

/// Result alias for the store.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(include_str!("migrations/0001_initial.sql")),
        M::up(include_str!("migrations/0002_gpus.sql")),
        M::up(include_str!("migrations/0003_storage.sql")),
        M::up(include_str!("migrations/0004_images.sql")),
        M::up(include_str!("migrations/0005_gateway.sql")),
        M::up(include_str!("migrations/0006_share_groups.sql")),
        M::up(include_str!("migrations/0007_gateway_session_path.sql")),
        M::up(include_str!("migrations/0008_web.sql")),
        M::up(include_str!("migrations/0009_departing_users.sql")),
        M::up(include_str!("migrations/0010_desktops.sql")),
    ])
}

/// The state database.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        Self::prepare(conn)
    }

    /// A private in-memory database, for tests.
    pub fn open_in_memory() -> Result<Self> {
        Self::prepare(Connection::open_in_memory()?)
    }

    fn prepare(mut conn: Connection) -> Result<Self> {
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        migrations().to_latest(&mut conn)?;
        Ok(Self { conn })
    }

    /// Writes a consistent copy of the whole database to `path` (SQLite's online backup: a
    /// snapshot as of one instant, while the daemon keeps running).
    pub fn backup_to(&self, path: &Path) -> Result<()> {
        self.conn.backup(rusqlite::MAIN_DB, path, None)?;
        Ok(())
    }

    /// Replaces the database at `target` with the backup at `backup`, after checking that
    /// the backup is a sound ssp state database (integrity, a schema this version knows,
    /// migrated to the latest); returns its schema version. The daemon must not be running.
    pub fn restore(backup: &Path, target: &Path) -> Result<i64> {
        let staging = target.with_extension("db.restoring");
        std::fs::copy(backup, &staging)
            .map_err(|e| Error::Conflict(format!("cannot copy {} to {}: {e}", backup.display(), staging.display())))?;
        let checked = (|| {
            let store = Store::open(&staging)?;
            let integrity: String = store.conn.pragma_query_value(None, "integrity_check", |r| r.get(0))?;
            if integrity != "ok" {
                return Err(Error::Conflict(format!("{} is damaged: {integrity}", backup.display())));
            }
            store.conn.query_row("SELECT count(*) FROM users", [], |r| r.get::<_, i64>(0))?;
            let version = store.schema_version()?;
            store.conn.pragma_update(None, "wal_checkpoint", "TRUNCATE")?;
            Ok(version)
        })();
        let version = match checked {
            Ok(version) => version,
            Err(e) => {
                std::fs::remove_file(&staging).ok();
                return Err(match e {
                    Error::Sqlite(e) => {
                        Error::Conflict(format!("{} is not an ssp state database: {e}", backup.display()))
                    }
                    other => other,
                });
            }
        };
        for suffix in ["-wal", "-shm"] {
            let mut side = target.as_os_str().to_owned();
            side.push(suffix);
            std::fs::remove_file(&side).ok();
            let mut staged = staging.as_os_str().to_owned();
            staged.push(suffix);
            std::fs::remove_file(&staged).ok();
        }
        std::fs::rename(&staging, target)
            .map_err(|e| Error::Conflict(format!("cannot move the restored state into {}: {e}", target.display())))?;
        Ok(version)
    }

    /// The schema version (the number of migrations applied).
    pub fn schema_version(&self) -> Result<i64> {
        Ok(self.conn.pragma_query_value(None, "user_version", |row| row.get(0))?)
    }

    /// Runs `f` in one immediate transaction: all of it is stored, or none of it.
    fn write<T>(&mut self, f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>) -> Result<T> {
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let value = f(&tx)?;
        tx.commit()?;
        Ok(value)
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Maps a UNIQUE violation to [`Error::Exists`].
pub(crate) fn unique(kind: &'static str, name: &str) -> impl FnOnce(rusqlite::Error) -> Error {
    let name = name.to_owned();
    move |e| match e {
        rusqlite::Error::SqliteFailure(f, _) if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE => {
            Error::Exists { kind, name }
        }
        other => Error::Sqlite(other),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn migrations_count() -> i64 {
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/src/migrations")).unwrap().count() as i64
    }

    #[test]
    fn migrations_are_valid_and_applied() {
        migrations().validate().unwrap();
        let store = Store::open_in_memory().unwrap();
        assert_eq!(store.schema_version().unwrap(), migrations_count());
    }

    /// A database from before the departing mark (schema 8) keeps its users, none departing.
    #[test]
    fn users_of_an_older_database_are_not_departing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let mut conn = Connection::open(&path).unwrap();
            migrations().to_version(&mut conn, 8).unwrap();
            conn.execute(
                "INSERT INTO users (name, role, max_containers, max_cpus, max_memory, max_disk, max_gpus, created_at)
                 VALUES ('alice', 'user', 1, 1, 1, 1, 0, 0)",
                [],
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), migrations_count());
        let alice = store.user("alice").unwrap();
        assert_eq!(alice.departing_at, None);
        assert!(store.departing_users().unwrap().is_empty());
    }

    #[test]
    fn a_file_database_is_durable_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let store = Store::open(&path).unwrap();
            let mode: String = store.conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
            assert_eq!(mode, "wal");
            let sync: i64 = store.conn.pragma_query_value(None, "synchronous", |r| r.get(0)).unwrap();
            assert_eq!(sync, 2, "synchronous=FULL");
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), migrations_count());
    }

    #[test]
    fn a_backup_restores_and_junk_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("ssp.db");
        let copy = dir.path().join("backup.db");
        let mut store = Store::open(&live).unwrap();
        crate::users::tests::alice(&mut store);
        store.backup_to(&copy).unwrap();
        store.remove_user(None, "alice").unwrap();
        drop(store);
        assert_eq!(Store::restore(&copy, &live).unwrap(), migrations_count());
        assert!(Store::open(&live).unwrap().user("alice").is_ok(), "alice is back");
        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, b"not a database at all, not even close to one").unwrap();
        let err = Store::restore(&junk, &live).unwrap_err().to_string();
        assert!(err.contains("not an ssp state database"), "{err}");
        assert!(Store::open(&live).unwrap().user("alice").is_ok(), "a refused restore changes nothing");
    }
}
