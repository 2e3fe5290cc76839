//! The journal: who did what to which object, written in the same transaction as the change.

use rusqlite::{params, Transaction};

use crate::{now, Result, Store};

/// One journal line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// Seconds since the epoch.
    pub at: i64,
    /// The user who asked, if any (the reconciler acts as nobody).
    pub actor: Option<String>,
    /// `user.create`, `container.delete`, …
    pub action: String,
    /// The object, e.g. `alice/dev`.
    pub object: String,
    /// Free text.
    pub detail: Option<String>,
}

pub(crate) fn record(
    tx: &Transaction<'_>,
    actor: Option<&str>,
    action: &str,
    object: &str,
    detail: Option<&str>,
) -> Result<()> {
    tx.execute(
        "INSERT INTO journal (at, actor, action, object, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![now(), actor, action, object, detail],
    )?;
    Ok(())
}

impl Store {
    /// Whether this database ever recorded a container with this uid (its create, copy or
    /// import is in the journal).
    pub fn ever_recorded(&self, uid: &str) -> Result<bool> {
        Ok(self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM journal WHERE detail = ?1
             AND action IN ('container.create', 'container.copy', 'container.import'))",
            [uid],
            |r| r.get(0),
        )?)
    }

    /// The newest `limit` journal entries, newest first.
    pub fn journal(&self, limit: u32) -> Result<Vec<JournalEntry>> {
        let mut stmt =
            self.conn.prepare("SELECT at, actor, action, object, detail FROM journal ORDER BY id DESC LIMIT ?1")?;
        let rows = stmt.query_map([limit], |r| {
            Ok(JournalEntry {
                at: r.get(0)?,
                actor: r.get(1)?,
                action: r.get(2)?,
                object: r.get(3)?,
                detail: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

impl Store {
    /// Records something done outside a store change (the reconciler's actions on LXD).
    pub fn log(&mut self, actor: Option<&str>, action: &str, object: &str, detail: Option<&str>) -> Result<()> {
        self.write(|tx| record(tx, actor, action, object, detail))
    }
}
