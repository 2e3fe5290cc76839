//! The `ssh_keys` table: users' public keys. Parsing and fingerprinting a key is the
//! caller's job; a fingerprint is unique across all users, so one key names one person.

use rusqlite::{params, OptionalExtension};

use crate::journal::record;
use crate::{now, unique, Error, Result, Store};

/// A stored public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshKey {
    /// Owner's user id.
    pub user_id: i64,
    /// The key's name, unique per user.
    pub name: String,
    /// The OpenSSH public key line.
    pub public_key: String,
    /// Its SHA-256 fingerprint (`SHA256:…`).
    pub fingerprint: String,
    /// Seconds since the epoch.
    pub created_at: i64,
}

fn user_id(store: &Store, user: &str) -> Result<i64> {
    store
        .conn
        .query_row("SELECT id FROM users WHERE name = ?1", [user], |r| r.get(0))
        .optional()?
        .ok_or_else(|| Error::NotFound { kind: "user", name: user.into() })
}

impl Store {
    /// Adds a key to `user`.
    pub fn add_key(
        &mut self,
        actor: Option<&str>,
        user: &str,
        name: &str,
        public_key: &str,
        fingerprint: &str,
    ) -> Result<SshKey> {
        let owner = user_id(self, user)?;
        let created_at = now();
        self.write(|tx| {
            tx.execute(
                "INSERT INTO ssh_keys (user_id, name, public_key, fingerprint, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![owner, name, public_key, fingerprint, created_at],
            )
            .map_err(unique("key", &format!("{name} ({fingerprint})")))?;
            record(tx, actor, "key.add", &format!("{user}/{name}"), Some(fingerprint))
        })?;
        Ok(SshKey {
            user_id: owner,
            name: name.into(),
            public_key: public_key.into(),
            fingerprint: fingerprint.into(),
            created_at,
        })
    }

    /// A user's keys, by name.
    pub fn keys(&self, user: &str) -> Result<Vec<SshKey>> {
        let owner = user_id(self, user)?;
        let mut stmt = self.conn.prepare(
            "SELECT user_id, name, public_key, fingerprint, created_at FROM ssh_keys WHERE user_id = ?1 ORDER BY name",
        )?;
        let rows = stmt.query_map([owner], |r| {
            Ok(SshKey {
                user_id: r.get(0)?,
                name: r.get(1)?,
                public_key: r.get(2)?,
                fingerprint: r.get(3)?,
                created_at: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Removes a user's key.
    pub fn remove_key(&mut self, actor: Option<&str>, user: &str, name: &str) -> Result<()> {
        let owner = user_id(self, user)?;
        self.write(|tx| {
            if tx.execute("DELETE FROM ssh_keys WHERE user_id = ?1 AND name = ?2", params![owner, name])? == 0 {
                return Err(Error::NotFound { kind: "key", name: name.into() });
            }
            record(tx, actor, "key.remove", &format!("{user}/{name}"), None)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::users::tests::alice;
    use crate::{Error, Store};

    #[test]
    fn keys_are_per_user_and_unique() {
        let mut store = Store::open_in_memory().unwrap();
        alice(&mut store);
        store.add_key(None, "alice", "laptop", "ssh-ed25519 AAAA alice@laptop", "SHA256:abc").unwrap();
        let dup = store.add_key(None, "alice", "again", "ssh-ed25519 AAAA alice@laptop", "SHA256:abc").unwrap_err();
        assert!(matches!(dup, Error::Exists { kind: "key", .. }), "{dup}");
        assert!(matches!(store.add_key(None, "bob", "x", "k", "f"), Err(Error::NotFound { kind: "user", .. })));
        assert_eq!(store.keys("alice").unwrap().len(), 1);
        store.remove_key(None, "alice", "laptop").unwrap();
        assert!(store.keys("alice").unwrap().is_empty());
        assert!(matches!(store.remove_key(None, "alice", "laptop"), Err(Error::NotFound { kind: "key", .. })));
    }
}
