//! The web portal's tables: `web_sessions`, one per signed-in browser, and `invites`, one-time
//! links for a new user to set a password and a key. Secrets are kept only as SHA-256 hashes
//! (like API tokens): a copy of the database opens no session and redeems no invitation.
//! Whether a session is still valid (idle and absolute timeouts) is the caller's decision,
//! passed in as the oldest `created_at` and `last_seen_at` still allowed.

use rusqlite::{params, OptionalExtension};
use sha2::{Digest, Sha256};

use crate::journal::record;
use crate::{now, Error, Result, Store, User};

fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// A live web session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSession {
    /// Its row id.
    pub id: i64,
    /// Whose it is.
    pub user: User,
    /// The token every state-changing request of this session must carry.
    pub csrf_token: String,
    /// Seconds since the epoch.
    pub created_at: i64,
}

/// An invitation, as its link's owner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    /// The invited user.
    pub user: String,
    /// Seconds since the epoch.
    pub expires_at: i64,
}

impl Store {
    /// Opens a web session for `user` (enabled) from `source`, with the cookie's `secret` and
    /// its `csrf_token`. Recorded in the journal as a sign-in.
    pub fn open_web_session(&mut self, user: &str, secret: &str, csrf_token: &str, source: &str) -> Result<()> {
        let row = self.user(user)?;
        if row.disabled {
            return Err(Error::Conflict(format!("user {user} is disabled")));
        }
        let at = now();
        self.write(|tx| {
            tx.execute(
                "INSERT INTO web_sessions (secret_hash, user_id, csrf_token, source, created_at, last_seen_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                params![hash(secret), row.id, csrf_token, source, at],
            )?;
            record(tx, Some(user), "session.sign_in", user, Some(source))
        })
    }

    /// The session of cookie `secret`, if it exists, its user is enabled, it was made after
    /// `created_after` and used after `seen_after`; a session past either is deleted. Its
    /// last use is recorded at most once a minute.
    pub fn web_session(&mut self, secret: &str, created_after: i64, seen_after: i64) -> Result<Option<WebSession>> {
        let digest = hash(secret);
        let found: Option<(i64, i64, String, i64, i64)> = self
            .conn
            .query_row(
                "SELECT id, user_id, csrf_token, created_at, last_seen_at FROM web_sessions WHERE secret_hash = ?1",
                [&digest],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()?;
        let Some((id, user_id, csrf_token, created_at, last_seen_at)) = found else { return Ok(None) };
        if created_at <= created_after || last_seen_at <= seen_after {
            self.conn.execute("DELETE FROM web_sessions WHERE id = ?1", [id])?;
            return Ok(None);
        }
        let user = self.user_by_id(user_id)?;
        if user.disabled {
            return Ok(None);
        }
        self.conn.execute(
            "UPDATE web_sessions SET last_seen_at = ?2 WHERE id = ?1 AND last_seen_at < ?2 - 60",
            params![id, now()],
        )?;
        Ok(Some(WebSession { id, user, csrf_token, created_at }))
    }

    /// Whether the session of cookie `secret` is still good (within its timeouts, its user
    /// enabled), without counting this as activity: what a long-lived stream checks now and
    /// then, so that an open tab alone does not keep a session from timing out.
    pub fn web_session_alive(&self, secret: &str, created_after: i64, seen_after: i64) -> Result<bool> {
        let digest = hash(secret);
        let found: Option<(i64, i64, i64)> = self
            .conn
            .query_row(
                "SELECT s.created_at, s.last_seen_at, u.disabled FROM web_sessions s JOIN users u ON u.id = s.user_id \
                 WHERE s.secret_hash = ?1",
                [&digest],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        Ok(found.is_some_and(|(created_at, last_seen_at, disabled)| {
            created_at > created_after && last_seen_at > seen_after && disabled == 0
        }))
    }

    /// Ends the session of cookie `secret` (sign-out); whether there was one.
    pub fn close_web_session(&mut self, secret: &str) -> Result<bool> {
        let digest = hash(secret);
        self.write(|tx| {
            let user: Option<String> = tx
                .query_row(
                    "SELECT u.name FROM web_sessions s JOIN users u ON u.id = s.user_id WHERE s.secret_hash = ?1",
                    [&digest],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(user) = user else { return Ok(false) };
            tx.execute("DELETE FROM web_sessions WHERE secret_hash = ?1", [&digest])?;
            record(tx, Some(&user), "session.sign_out", &user, None)?;
            Ok(true)
        })
    }

    /// Records a refused sign-in (unknown name, wrong password, disabled user or throttled)
    /// in the journal, without saying which.
    pub fn record_failed_sign_in(&mut self, name: &str, source: &str, why: &str) -> Result<()> {
        self.write(|tx| record(tx, None, "session.sign_in_failed", name, Some(&format!("{source}: {why}"))))
    }

    /// Deletes sessions made before `created_after` or unused since `seen_after`.
    pub fn forget_old_web_sessions(&mut self, created_after: i64, seen_after: i64) -> Result<usize> {
        Ok(self.conn.execute(
            "DELETE FROM web_sessions WHERE created_at <= ?1 OR last_seen_at <= ?2",
            params![created_after, seen_after],
        )?)
    }

    /// Makes a one-time invitation for `user` with link secret `secret`, valid until
    /// `expires_at`; an earlier unused one of the same user stops working.
    pub fn create_invite(&mut self, actor: Option<&str>, user: &str, secret: &str, expires_at: i64) -> Result<Invite> {
        let row = self.user(user)?;
        self.write(|tx| {
            tx.execute("DELETE FROM invites WHERE user_id = ?1 AND used_at IS NULL", [row.id])?;
            tx.execute(
                "INSERT INTO invites (secret_hash, user_id, created_by, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![hash(secret), row.id, actor, now(), expires_at],
            )?;
            record(tx, actor, "user.invite", user, None)
        })?;
        Ok(Invite { user: user.into(), expires_at })
    }

    /// The unused, unexpired invitation with link secret `secret`, whose user is enabled.
    pub fn invite(&self, secret: &str) -> Result<Option<Invite>> {
        Ok(self
            .conn
            .query_row(
                "SELECT u.name, i.expires_at FROM invites i JOIN users u ON u.id = i.user_id
                 WHERE i.secret_hash = ?1 AND i.used_at IS NULL AND i.expires_at > ?2 AND u.disabled = 0",
                params![hash(secret), now()],
                |r| Ok(Invite { user: r.get(0)?, expires_at: r.get(1)? }),
            )
            .optional()?)
    }

    /// Redeems invitation `secret` once: sets the user's password hash and, if given, adds a
    /// key (name, OpenSSH line, fingerprint), all or nothing. `NotFound` when it is not
    /// (or no longer) valid.
    pub fn redeem_invite(
        &mut self,
        secret: &str,
        password_hash: &str,
        key: Option<(&str, &str, &str)>,
    ) -> Result<String> {
        let digest = hash(secret);
        let at = now();
        self.write(|tx| {
            let found: Option<(i64, i64, String)> = tx
                .query_row(
                    "SELECT i.id, u.id, u.name FROM invites i JOIN users u ON u.id = i.user_id
                     WHERE i.secret_hash = ?1 AND i.used_at IS NULL AND i.expires_at > ?2 AND u.disabled = 0",
                    params![digest, at],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            let Some((invite, user_id, name)) = found else {
                return Err(Error::NotFound { kind: "invitation", name: "this link".into() });
            };
            tx.execute("UPDATE invites SET used_at = ?2 WHERE id = ?1", params![invite, at])?;
            tx.execute("UPDATE users SET password_hash = ?2 WHERE id = ?1", params![user_id, password_hash])?;
            if let Some((key_name, line, fingerprint)) = key {
                tx.execute(
                    "INSERT INTO ssh_keys (user_id, name, public_key, fingerprint, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![user_id, key_name, line, fingerprint, at],
                )
                .map_err(|e| match e {
                    rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                        Error::Exists { kind: "key", name: format!("{key_name} ({fingerprint})") }
                    }
                    other => other.into(),
                })?;
                record(tx, Some(&name), "key.add", &format!("{name}/{key_name}"), Some(fingerprint))?;
            }
            record(tx, Some(&name), "user.invite_redeemed", &name, None)?;
            Ok(name)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::Store;

    #[test]
    fn a_session_lives_until_a_timeout_or_sign_out() {
        let mut store = Store::open_in_memory().unwrap();
        crate::users::tests::alice(&mut store);
        store.open_web_session("alice", "secret-1", "csrf-1", "127.0.0.1").unwrap();
        let session = store.web_session("secret-1", 0, 0).unwrap().unwrap();
        assert_eq!((session.user.name.as_str(), session.csrf_token.as_str()), ("alice", "csrf-1"));
        assert!(store.web_session("secret-2", 0, 0).unwrap().is_none(), "another secret");
        // Past the idle limit: gone for good.
        assert!(store.web_session("secret-1", 0, i64::MAX - 1).unwrap().is_none());
        assert!(store.web_session("secret-1", 0, 0).unwrap().is_none());
        store.open_web_session("alice", "secret-3", "csrf-3", "127.0.0.1").unwrap();
        assert!(store.close_web_session("secret-3").unwrap());
        assert!(!store.close_web_session("secret-3").unwrap());
        assert!(store.web_session("secret-3", 0, 0).unwrap().is_none());
        store.record_failed_sign_in("alice", "127.0.0.1", "wrong password").unwrap();
        let actions: Vec<String> = store.journal(10).unwrap().into_iter().map(|e| e.action).collect();
        for action in ["session.sign_in", "session.sign_out", "session.sign_in_failed"] {
            assert!(actions.iter().any(|a| a == action), "{action} in {actions:?}");
        }
    }

    #[test]
    fn a_stream_checks_its_session_without_keeping_it_alive() {
        let mut store = Store::open_in_memory().unwrap();
        crate::users::tests::alice(&mut store);
        store.open_web_session("alice", "secret-1", "csrf-1", "127.0.0.1").unwrap();
        assert!(store.web_session_alive("secret-1", 0, 0).unwrap());
        assert!(!store.web_session_alive("secret-2", 0, 0).unwrap(), "another secret");
        assert!(!store.web_session_alive("secret-1", 0, i64::MAX - 1).unwrap(), "idle too long");
        assert!(!store.web_session_alive("secret-1", i64::MAX - 1, 0).unwrap(), "too old");
        let seen = |store: &Store| -> i64 {
            store.conn.query_row("SELECT last_seen_at FROM web_sessions", [], |r| r.get(0)).unwrap()
        };
        store.conn.execute("UPDATE web_sessions SET last_seen_at = 5", []).unwrap();
        assert!(store.web_session_alive("secret-1", 0, 0).unwrap());
        assert_eq!(seen(&store), 5, "a check is not activity");
        assert!(store.close_web_session("secret-1").unwrap());
        assert!(!store.web_session_alive("secret-1", 0, 0).unwrap(), "signed out");
    }

    #[test]
    fn an_invitation_works_once_and_before_it_expires() {
        let mut store = Store::open_in_memory().unwrap();
        crate::users::tests::alice(&mut store);
        let later = crate::now() + 3600;
        store.create_invite(Some("root"), "alice", "link-1", later).unwrap();
        assert_eq!(store.invite("link-1").unwrap().unwrap().user, "alice");
        // A newer invitation replaces the unused one.
        store.create_invite(Some("root"), "alice", "link-2", later).unwrap();
        assert!(store.invite("link-1").unwrap().is_none());
        let key = ("laptop", "ssh-ed25519 AAAA", "SHA256:x");
        assert_eq!(store.redeem_invite("link-2", "$argon2id$fake", Some(key)).unwrap(), "alice");
        assert_eq!(store.password_hash("alice").unwrap().as_deref(), Some("$argon2id$fake"));
        assert_eq!(store.keys("alice").unwrap().len(), 1);
        assert!(store.redeem_invite("link-2", "$argon2id$other", None).is_err(), "used twice");
        assert!(store.invite("link-2").unwrap().is_none());
        store.create_invite(Some("root"), "alice", "link-3", crate::now() - 1).unwrap();
        assert!(store.invite("link-3").unwrap().is_none(), "expired");
        assert!(store.redeem_invite("link-3", "$argon2id$late", None).is_err());
    }
}
