//! The SSH gateway's tables: `gateway_sessions`, its audit log, one row per channel, written
//! when it opens and completed when it ends (a row without an end is a channel that is still
//! open, or was open when the daemon stopped); and `container_host_keys`, each container's
//! sshd host key as pinned when it was first set up.

use rusqlite::params;

use crate::{now, Result, Store};

/// One gateway channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewaySession {
    /// Row id.
    pub id: i64,
    /// The user.
    pub user: String,
    /// The container.
    pub container: String,
    /// `shell`, `exec`, `sftp`, `forward:PORT` or `sshd` (a jump to the container's sshd).
    pub kind: String,
    /// The client's address and port.
    pub source: String,
    /// How the channel reached the container (`attach`, `lxd-exec`, `netns`, `sshd-socket`);
    /// none for rows older than that record.
    pub path: Option<String>,
    /// Seconds since the epoch.
    pub started_at: i64,
    /// Seconds since the epoch, once ended.
    pub ended_at: Option<i64>,
    /// Bytes from the client.
    pub bytes_in: i64,
    /// Bytes to the client.
    pub bytes_out: i64,
    /// The command's exit code, for sessions that reported one.
    pub exit_code: Option<i64>,
}

impl Store {
    /// Records a channel's start; returns its id.
    pub fn gateway_session_start(
        &mut self,
        user: &str,
        container: &str,
        kind: &str,
        source: &str,
        path: &str,
    ) -> Result<i64> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO gateway_sessions (user, container, kind, source, path, started_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![user, container, kind, source, path, now()],
            )?;
            Ok(tx.last_insert_rowid())
        })
    }

    /// Records a channel's end.
    pub fn gateway_session_end(
        &mut self,
        id: i64,
        bytes_in: u64,
        bytes_out: u64,
        exit_code: Option<i32>,
    ) -> Result<()> {
        let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.write(|tx| {
            tx.execute(
                "UPDATE gateway_sessions SET ended_at = ?2, bytes_in = ?3, bytes_out = ?4, exit_code = ?5 WHERE id = ?1",
                params![id, now(), clamp(bytes_in), clamp(bytes_out), exit_code],
            )?;
            Ok(())
        })
    }

    /// Pins `container_uid`'s sshd host key (a canonical OpenSSH line) unless one is pinned
    /// already: a pin is never replaced. Returns whether this call pinned it.
    pub fn pin_ssh_host_key(&mut self, container_uid: &str, public_key: &str) -> Result<bool> {
        self.write(|tx| {
            let added = tx.execute(
                "INSERT OR IGNORE INTO container_host_keys (container_uid, public_key, pinned_at) VALUES (?1, ?2, ?3)",
                params![container_uid, public_key, now()],
            )?;
            Ok(added == 1)
        })
    }

    /// The sshd host key pinned for `container_uid`, if any.
    pub fn ssh_host_key(&self, container_uid: &str) -> Result<Option<String>> {
        use rusqlite::OptionalExtension;
        Ok(self
            .conn
            .query_row("SELECT public_key FROM container_host_keys WHERE container_uid = ?1", [container_uid], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// The sshd host keys pinned for `owner`'s containers, by container uid (one query, for
    /// the gateway's every login and channel).
    pub fn ssh_host_keys_of(&self, owner: &str) -> Result<std::collections::HashMap<String, String>> {
        let mut stmt = self.conn.prepare(
            "SELECT k.container_uid, k.public_key FROM container_host_keys k
             JOIN containers c ON c.uid = k.container_uid JOIN users u ON u.id = c.owner_id WHERE u.name = ?1",
        )?;
        let rows = stmt.query_map([owner], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The newest `limit` gateway channels, newest first; only `user`'s when given.
    pub fn gateway_sessions(&self, user: Option<&str>, limit: u32) -> Result<Vec<GatewaySession>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, user, container, kind, source, started_at, ended_at, bytes_in, bytes_out, exit_code, path
             FROM gateway_sessions WHERE (?1 IS NULL OR user = ?1) ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![user, limit], |r| {
            Ok(GatewaySession {
                id: r.get(0)?,
                user: r.get(1)?,
                container: r.get(2)?,
                kind: r.get(3)?,
                source: r.get(4)?,
                started_at: r.get(5)?,
                ended_at: r.get(6)?,
                bytes_in: r.get(7)?,
                bytes_out: r.get(8)?,
                exit_code: r.get(9)?,
                path: r.get(10)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::Store;

    #[test]
    fn sessions_are_recorded_from_start_to_end() {
        let mut store = Store::open_in_memory().unwrap();
        let id = store.gateway_session_start("alice", "dev", "shell", "127.0.0.1:5000", "attach").unwrap();
        store.gateway_session_start("bob", "web", "sftp", "127.0.0.1:5001", "lxd-exec").unwrap();
        let open = &store.gateway_sessions(Some("alice"), 10).unwrap()[0];
        assert_eq!((open.ended_at, open.bytes_in), (None, 0));
        store.gateway_session_end(id, 10, 2000, Some(7)).unwrap();
        let ended = &store.gateway_sessions(Some("alice"), 10).unwrap()[0];
        assert_eq!(
            (ended.container.as_str(), ended.bytes_in, ended.bytes_out, ended.exit_code, ended.path.as_deref()),
            ("dev", 10, 2000, Some(7), Some("attach"))
        );
        assert!(ended.ended_at.is_some());
        assert_eq!(store.gateway_sessions(None, 10).unwrap().len(), 2);
    }

    #[test]
    fn a_host_key_is_pinned_once_and_goes_with_its_container() {
        let mut store = Store::open_in_memory().unwrap();
        crate::users::tests::alice(&mut store);
        let row = store.create_container(None, &crate::containers::tests::dev(None)).unwrap();
        assert_eq!(store.ssh_host_key(&row.uid).unwrap(), None);
        assert!(store.pin_ssh_host_key(&row.uid, "ssh-ed25519 AAAAfirst").unwrap());
        assert!(!store.pin_ssh_host_key(&row.uid, "ssh-ed25519 AAAAsecond").unwrap());
        assert_eq!(store.ssh_host_key(&row.uid).unwrap().as_deref(), Some("ssh-ed25519 AAAAfirst"));
        assert_eq!(store.ssh_host_keys_of(row.owner.as_str()).unwrap()[&row.uid], "ssh-ed25519 AAAAfirst");
        assert!(store.ssh_host_keys_of("nobody").unwrap().is_empty());
        store.forget_container(&row.uid).unwrap();
        assert_eq!(store.ssh_host_key(&row.uid).unwrap(), None);
    }
}
