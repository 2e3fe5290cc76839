//! The `images` table: images users published from their containers. LXD holds the image
//! itself (under `alias`); the row says whose it is and who may see it.

use rusqlite::{params, OptionalExtension, Row};
use ssp_core::names::{ImageName, Name};

use crate::journal::record;
use crate::{now, unique, Error, Result, Store};

/// A published image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRow {
    /// Its owner.
    pub owner: Name,
    /// Its name, unique per owner.
    pub name: ImageName,
    /// The LXD alias it lives under.
    pub alias: String,
    /// LXD's fingerprint.
    pub fingerprint: String,
    /// Bytes (compressed, as LXD stores it).
    pub size: u64,
    /// Whether every user may make containers from it.
    pub public: bool,
    /// The container it was published from (`owner/name`).
    pub source: String,
    /// Seconds since the epoch.
    pub created_at: i64,
}

/// An image to record (after LXD made it).
#[derive(Debug, Clone)]
pub struct NewImage {
    /// Its owner.
    pub owner: Name,
    /// Its name.
    pub name: ImageName,
    /// The LXD alias.
    pub alias: String,
    /// LXD's fingerprint.
    pub fingerprint: String,
    /// Bytes.
    pub size: u64,
    /// Visible to all.
    pub public: bool,
    /// The container it came from.
    pub source: String,
}

const SELECT: &str = "SELECT u.name, i.name, i.alias, i.fingerprint, i.size, i.public, i.source, i.created_at
                      FROM images i JOIN users u ON u.id = i.owner_id";

fn from_row(r: &Row<'_>) -> rusqlite::Result<ImageRow> {
    let bad = |i: usize, e: ssp_core::names::NameError| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    };
    Ok(ImageRow {
        owner: Name::parse(&r.get::<_, String>(0)?).map_err(|e| bad(0, e))?,
        name: ImageName::parse(&r.get::<_, String>(1)?).map_err(|e| bad(1, e))?,
        alias: r.get(2)?,
        fingerprint: r.get(3)?,
        size: r.get::<_, i64>(4)?.max(0) as u64,
        public: r.get::<_, i64>(5)? != 0,
        source: r.get(6)?,
        created_at: r.get(7)?,
    })
}

impl Store {
    /// Records a published image.
    pub fn create_image(&mut self, actor: Option<&str>, new: &NewImage) -> Result<ImageRow> {
        let owner = self.user(new.owner.as_str())?;
        let object = format!("{}/{}", new.owner, new.name);
        self.write(|tx| {
            tx.execute(
                "INSERT INTO images (owner_id, name, alias, fingerprint, size, public, source, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    owner.id,
                    new.name.as_str(),
                    new.alias,
                    new.fingerprint,
                    i64::try_from(new.size).unwrap_or(i64::MAX),
                    i64::from(new.public),
                    new.source,
                    now()
                ],
            )
            .map_err(unique("image", &object))?;
            record(tx, actor, "image.publish", &object, Some(&new.source))
        })?;
        self.image(new.owner.as_str(), new.name.as_str())
    }

    /// One of `owner`'s images.
    pub fn image(&self, owner: &str, name: &str) -> Result<ImageRow> {
        self.conn
            .query_row(&format!("{SELECT} WHERE u.name = ?1 AND i.name = ?2"), params![owner, name], from_row)
            .optional()?
            .ok_or_else(|| Error::NotFound { kind: "image", name: format!("{owner}/{name}") })
    }

    /// The images `viewer` may use: their own and the public ones (every image with `all`).
    pub fn images_visible_to(&self, viewer: &str, all: bool) -> Result<Vec<ImageRow>> {
        let mut stmt =
            self.conn.prepare(&format!("{SELECT} WHERE ?2 OR u.name = ?1 OR i.public = 1 ORDER BY i.name, u.name"))?;
        let rows = stmt.query_map(params![viewer, all], from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// `owner`'s own images, by name.
    pub fn images_of(&self, owner: &str) -> Result<Vec<ImageRow>> {
        let mut stmt = self.conn.prepare(&format!("{SELECT} WHERE u.name = ?1 ORDER BY i.name"))?;
        let rows = stmt.query_map([owner], from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Forgets an image once LXD no longer has it.
    pub fn remove_image(&mut self, actor: Option<&str>, owner: &str, name: &str) -> Result<()> {
        let object = format!("{owner}/{name}");
        self.write(|tx| {
            let n = tx.execute(
                "DELETE FROM images WHERE name = ?2 AND owner_id = (SELECT id FROM users WHERE name = ?1)",
                params![owner, name],
            )?;
            if n == 0 {
                return Err(Error::NotFound { kind: "image", name: object.clone() });
            }
            record(tx, actor, "image.delete", &object, None)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::users::tests::alice;
    use crate::{NewUser, Role};

    fn image(owner: &str, name: &str, public: bool) -> NewImage {
        NewImage {
            owner: Name::parse(owner).unwrap(),
            name: ImageName::parse(name).unwrap(),
            alias: format!("ssp_p_{owner}_{name}"),
            fingerprint: "f".repeat(64),
            size: 1,
            public,
            source: format!("{owner}/dev"),
        }
    }

    #[test]
    fn images_are_visible_to_their_owner_or_to_all_when_public() {
        let mut store = Store::open_in_memory().unwrap();
        alice(&mut store);
        let bob = NewUser { name: Name::parse("bob").unwrap(), role: Role::User, quota: crate::users::tests::quota() };
        store.create_user(None, &bob).unwrap();
        store.create_image(Some("alice"), &image("alice", "lab-base", false)).unwrap();
        store.create_image(None, &image("alice", "shared", true)).unwrap();
        let dup = store.create_image(None, &image("alice", "lab-base", false)).unwrap_err();
        assert!(matches!(dup, Error::Exists { kind: "image", .. }), "{dup}");
        let names = |rows: Vec<ImageRow>| rows.into_iter().map(|r| r.name.to_string()).collect::<Vec<_>>();
        assert_eq!(names(store.images_visible_to("alice", false).unwrap()), ["lab-base", "shared"]);
        assert_eq!(names(store.images_visible_to("bob", false).unwrap()), ["shared"]);
        assert_eq!(names(store.images_visible_to("bob", true).unwrap()), ["lab-base", "shared"]);
        assert_eq!(names(store.images_of("alice").unwrap()), ["lab-base", "shared"]);
        assert!(store.images_of("bob").unwrap().is_empty(), "others' public images are not theirs");
        let conflict = store.remove_user(None, "alice").unwrap_err();
        assert!(conflict.to_string().contains("image"), "{conflict}");
        store.remove_image(None, "alice", "lab-base").unwrap();
        store.remove_image(None, "alice", "shared").unwrap();
        assert!(matches!(store.remove_image(None, "alice", "shared"), Err(Error::NotFound { .. })));
        store.remove_user(None, "alice").unwrap();
    }
}
