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
        self.journal_where(&JournalFilter { limit, ..JournalFilter::default() })
    }

    /// Journal entries that pass `filter`, newest first, at most `filter.limit`.
    pub fn journal_where(&self, filter: &JournalFilter) -> Result<Vec<JournalEntry>> {
        // An unset filter is NULL and passes every row; the action is a prefix
        // (`session.` finds `session.sign_in`), compared with `substr` so `%` and `_` in
        // it are plain characters.
        let mut stmt = self.conn.prepare(
            "SELECT at, actor, action, object, detail FROM journal
             WHERE (?1 IS NULL OR actor = ?1)
               AND (?2 IS NULL OR substr(action, 1, length(?2)) = ?2)
               AND (?3 IS NULL OR object = ?3)
               AND (?4 IS NULL OR at >= ?4)
             ORDER BY id DESC LIMIT ?5",
        )?;
        let rows = stmt.query_map(
            params![filter.actor, filter.action_prefix, filter.object, filter.since, filter.limit],
            |r| {
                Ok(JournalEntry {
                    at: r.get(0)?,
                    actor: r.get(1)?,
                    action: r.get(2)?,
                    object: r.get(3)?,
                    detail: r.get(4)?,
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// Which journal entries [`Store::journal_where`] returns; `None` fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JournalFilter {
    /// Exactly this actor.
    pub actor: Option<String>,
    /// Actions that start with this (`session.`, or a whole action such as `user.create`).
    pub action_prefix: Option<String>,
    /// Exactly this object.
    pub object: Option<String>,
    /// At or after these seconds since the epoch.
    pub since: Option<i64>,
    /// At most this many.
    pub limit: u32,
}

impl Store {
    /// Records something done outside a store change (the reconciler's actions on LXD).
    pub fn log(&mut self, actor: Option<&str>, action: &str, object: &str, detail: Option<&str>) -> Result<()> {
        self.write(|tx| record(tx, actor, action, object, detail))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use rusqlite::params;

    use super::JournalFilter;
    use crate::Store;

    #[test]
    fn the_journal_filters_by_actor_action_prefix_object_and_time() {
        let store = Store::open_in_memory().unwrap();
        for (at, actor, action, object) in [
            (100, Some("alice"), "session.sign_in", "alice"),
            (200, Some("root"), "user.create", "bob"),
            (300, None, "container.start", "alice/dev"),
            (400, Some("alice"), "session.sign_out", "alice"),
            (500, Some("bob"), "session%sign_in", "bob"),
        ] {
            store
                .conn
                .execute(
                    "INSERT INTO journal (at, actor, action, object, detail) VALUES (?1, ?2, ?3, ?4, NULL)",
                    params![at, actor, action, object],
                )
                .unwrap();
        }
        let f = |actor: Option<&str>, action: Option<&str>, object: Option<&str>, since: Option<i64>, limit| {
            JournalFilter {
                actor: actor.map(Into::into),
                action_prefix: action.map(Into::into),
                object: object.map(Into::into),
                since,
                limit,
            }
        };
        let cases: [(JournalFilter, &[i64]); 9] = [
            (f(None, None, None, None, 200), &[500, 400, 300, 200, 100]),
            (f(None, None, None, None, 2), &[500, 400]),
            (f(Some("alice"), None, None, None, 200), &[400, 100]),
            (f(Some("ali"), None, None, None, 200), &[]),
            (f(None, Some("session."), None, None, 200), &[400, 100]),
            (f(None, Some("user.create"), None, None, 200), &[200]),
            (f(None, None, Some("alice"), None, 200), &[400, 100]),
            (f(None, Some("session"), None, Some(300), 200), &[500, 400]),
            (f(Some("alice"), Some("session."), Some("alice"), Some(101), 200), &[400]),
        ];
        for (filter, want) in cases {
            let got: Vec<i64> = store.journal_where(&filter).unwrap().iter().map(|e| e.at).collect();
            assert_eq!(got, want, "{filter:?}");
        }
    }
}
