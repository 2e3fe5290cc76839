//! The `tokens` table: API bearer tokens. A token is 32 random bytes shown once; only its
//! SHA-256 is stored (the secret has full entropy, so a slow hash would add nothing).

use rusqlite::{params, OptionalExtension};
use sha2::{Digest, Sha256};

use crate::journal::record;
use crate::users::User;
use crate::{now, unique, Error, Result, Store};

/// Every token starts with this, so leaked tokens are easy to find and scan for.
pub const TOKEN_PREFIX: &str = "ssp_";

/// A stored token (without its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// Owner's user id.
    pub user_id: i64,
    /// Its name, unique per user.
    pub name: String,
    /// Seconds since the epoch.
    pub created_at: i64,
    /// Last successful use.
    pub last_used_at: Option<i64>,
}

fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

impl Store {
    /// Makes a token for `user`; returns it and its secret, which is not stored.
    pub fn create_token(&mut self, actor: Option<&str>, user: &str, name: &str) -> Result<(Token, String)> {
        let owner = self.user(user)?;
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| Error::Random(e.to_string()))?;
        let secret = format!("{TOKEN_PREFIX}{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>());
        let created_at = now();
        self.write(|tx| {
            tx.execute(
                "INSERT INTO tokens (user_id, name, secret_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![owner.id, name, hash(&secret), created_at],
            )
            .map_err(unique("token", name))?;
            record(tx, actor, "token.create", &format!("{user}/{name}"), None)
        })?;
        Ok((Token { user_id: owner.id, name: name.into(), created_at, last_used_at: None }, secret))
    }

    /// The user a token belongs to, if the token exists and its user is not disabled.
    pub fn authenticate(&mut self, secret: &str) -> Result<Option<User>> {
        if !secret.starts_with(TOKEN_PREFIX) {
            return Ok(None);
        }
        let digest = hash(secret);
        let found: Option<(i64, i64)> = self
            .conn
            .query_row("SELECT id, user_id FROM tokens WHERE secret_hash = ?1", [&digest], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        let Some((token_id, user_id)) = found else { return Ok(None) };
        let user = self.user_by_id(user_id)?;
        if user.disabled {
            return Ok(None);
        }
        // At most one write a minute per token: every request authenticates, and a durable
        // write per request would cost an fsync each.
        self.conn.execute(
            "UPDATE tokens SET last_used_at = ?2 WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at < ?2 - 60)",
            params![token_id, now()],
        )?;
        Ok(Some(user))
    }

    /// A user's tokens, by name.
    pub fn tokens(&self, user: &str) -> Result<Vec<Token>> {
        let owner = self.user(user)?;
        let mut stmt = self
            .conn
            .prepare("SELECT user_id, name, created_at, last_used_at FROM tokens WHERE user_id = ?1 ORDER BY name")?;
        let rows = stmt.query_map([owner.id], |r| {
            Ok(Token { user_id: r.get(0)?, name: r.get(1)?, created_at: r.get(2)?, last_used_at: r.get(3)? })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Revokes a user's token.
    pub fn revoke_token(&mut self, actor: Option<&str>, user: &str, name: &str) -> Result<()> {
        let owner = self.user(user)?;
        self.write(|tx| {
            if tx.execute("DELETE FROM tokens WHERE user_id = ?1 AND name = ?2", params![owner.id, name])? == 0 {
                return Err(Error::NotFound { kind: "token", name: name.into() });
            }
            record(tx, actor, "token.revoke", &format!("{user}/{name}"), None)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::users::tests::alice;
    use crate::Store;

    #[test]
    fn tokens_authenticate_until_revoked_or_disabled() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.db")).unwrap();
        alice(&mut store);
        let (_, secret) = store.create_token(None, "alice", "cli").unwrap();
        assert!(secret.starts_with("ssp_") && secret.len() == 4 + 64);
        assert_eq!(store.authenticate(&secret).unwrap().unwrap().name.as_str(), "alice");
        assert!(store.tokens("alice").unwrap()[0].last_used_at.is_some());
        assert!(store.authenticate("ssp_0000").unwrap().is_none());
        assert!(store.authenticate("").unwrap().is_none());
        // The secret itself is nowhere in the database file.
        let raw: i64 = store
            .conn
            .query_row("SELECT count(*) FROM tokens WHERE CAST(secret_hash AS TEXT) = ?1", [&secret], |r| r.get(0))
            .unwrap();
        assert_eq!(raw, 0);

        store.set_disabled(None, "alice", true).unwrap();
        assert!(store.authenticate(&secret).unwrap().is_none(), "a disabled user's token stops working at once");
        store.set_disabled(None, "alice", false).unwrap();
        assert!(store.authenticate(&secret).unwrap().is_some());
        store.revoke_token(None, "alice", "cli").unwrap();
        assert!(store.authenticate(&secret).unwrap().is_none());
    }
}
