//! How ssp divides the host id block delegated to it (`[storage] share_ids`, by default
//! `1001000000:65535`) between users' identities and share groups, and the `raw.idmap` text
//! that maps them into a container.
//!
//! The split is fixed by offset into the block, so an id means the same thing on every
//! daemon start and in every container:
//!
//! - offsets `0..60000`: user identities; user N is host uid/gid `base + N`, seen inside as
//!   the owner's account, uid/gid 1000;
//! - offsets `60001..=64999`: share groups; share group K (1-based) is host gid
//!   `base + 60000 + K`, seen inside as gid `60000 + K`. Inside, those gids lie in Debian's
//!   range for ids allocated on demand (60000-64999), above the ids `adduser` hands out
//!   (1000-59999) and below the reserved ones and `nogroup` (65534), so they do not collide
//!   with an image's own users and groups. Using the same offset inside and out makes a
//!   share's gid readable in both places.
//!
//! A block too small for a part simply has none of it: no identities above its end, no
//! share groups when it ends before offset 60001.

use std::fmt;

/// How many user identities the block holds at most (offsets `0..USER_IDS`).
pub const USER_IDS: u32 = 60_000;
/// Offset of share group 0 (never used: groups count from 1) and the inside gid base.
pub const GROUP_OFFSET: u32 = 60_000;
/// The most share groups (inside gids `60001..=64999`).
pub const MAX_GROUPS: u32 = 4_999;
/// A Linux group name's limit in `groupadd` and busybox.
const GROUP_NAME_MAX: usize = 32;

/// Why a share group id cannot be given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdBlockError {
    /// All share groups are taken (they are never reused: a removed share's folder keeps
    /// its group and ACLs on the host).
    #[error(
        "no share group left: share group {group} would be host gid offset {offset}, beyond the {limit} ids ssp \
         uses for share groups in the delegated id block; read-only shares need none"
    )]
    Exhausted {
        /// The group number asked for.
        group: i64,
        /// Its offset into the block.
        offset: i64,
        /// How many share groups this block holds.
        limit: u32,
    },
}

/// The id block delegated to ssp: host ids `base..base + count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdBlock {
    /// First host id.
    pub base: u32,
    /// How many.
    pub count: u32,
}

/// A share group: its host gid and the gid it has inside containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShareGroup {
    /// The host gid (owns the host folder).
    pub host: u32,
    /// The gid inside containers.
    pub inside: u32,
}

impl IdBlock {
    /// How many share groups fit in this block.
    pub fn group_limit(&self) -> u32 {
        self.count.saturating_sub(GROUP_OFFSET + 1).min(MAX_GROUPS)
    }

    /// The host uid/gid of user `user_id`'s identity, if the block has room for it.
    pub fn user(&self, user_id: i64) -> Option<u32> {
        let id = u32::try_from(user_id).ok()?;
        (id < USER_IDS.min(self.count)).then(|| self.base + id)
    }

    /// Share group number `group` (1-based, from the store).
    pub fn share_group(&self, group: i64) -> Result<ShareGroup, IdBlockError> {
        let exhausted = IdBlockError::Exhausted {
            group,
            offset: i64::from(GROUP_OFFSET).saturating_add(group),
            limit: self.group_limit(),
        };
        let k = u32::try_from(group).map_err(|_| exhausted.clone())?;
        if k == 0 || k > self.group_limit() {
            return Err(exhausted);
        }
        Ok(ShareGroup { host: self.base + GROUP_OFFSET + k, inside: GROUP_OFFSET + k })
    }
}

/// The name of a share's group inside containers: `share_NAME`, or `share_K` when that is
/// longer than a group name may be. Share and user names never contain `_` (see
/// [`crate::names`]), so this never collides with the owner's account, another user's or
/// another share's group, and images do not use the prefix.
pub fn group_name(share: &str, group: &ShareGroup) -> String {
    let name = format!("share_{share}");
    if name.len() <= GROUP_NAME_MAX {
        name
    } else {
        format!("share_{}", group.inside)
    }
}

/// One `raw.idmap` entry per line, as LXD 5.0.2 parses it (`both|uid|gid HOST INSIDE`):
/// the owner's identity as uid and gid `inside_uid`, then each share group.
pub fn raw_idmap(identity: u32, inside_uid: u32, groups: &[ShareGroup]) -> String {
    let mut text = format!("both {identity} {inside_uid}");
    for group in groups {
        text.push_str(&format!("\ngid {} {}", group.host, group.inside));
    }
    text
}

impl fmt::Display for ShareGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gid {} ({} inside)", self.host, self.inside)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const BLOCK: IdBlock = IdBlock { base: 1_001_000_000, count: 65_535 };

    #[test]
    fn users_and_share_groups_do_not_overlap() {
        assert_eq!(BLOCK.user(0), Some(1_001_000_000));
        assert_eq!(BLOCK.user(59_999), Some(1_001_059_999));
        assert_eq!(BLOCK.user(60_000), None);
        assert_eq!(BLOCK.user(-1), None);
        assert_eq!(BLOCK.share_group(1).unwrap(), ShareGroup { host: 1_001_060_001, inside: 60_001 });
        assert_eq!(BLOCK.share_group(4_999).unwrap(), ShareGroup { host: 1_001_064_999, inside: 64_999 });
        assert_eq!(BLOCK.group_limit(), 4_999);
        for bad in [0, -3, 5_000, i64::MAX] {
            assert!(matches!(BLOCK.share_group(bad), Err(IdBlockError::Exhausted { .. })), "{bad}");
        }
        let message = BLOCK.share_group(5_000).unwrap_err().to_string();
        assert!(message.contains("no share group left") && message.contains("4999"), "{message}");
    }

    #[test]
    fn every_id_stays_in_the_block_and_inside_gids_avoid_the_images_own() {
        for count in [1, 1_000, 60_000, 60_001, 60_002, 65_000, 65_535, 1_000_000] {
            let block = IdBlock { base: 2_000_000, count };
            for user in [0, 1, 59_999, 60_000, i64::from(count)] {
                if let Some(id) = block.user(user) {
                    assert!(id >= block.base && id < block.base + count && id < block.base + GROUP_OFFSET);
                }
            }
            for group in 1..=i64::from(MAX_GROUPS) + 1 {
                if let Ok(g) = block.share_group(group) {
                    assert!(g.host > block.base + GROUP_OFFSET && g.host < block.base + count, "{count} {g}");
                    assert!((60_001..=64_999).contains(&g.inside), "{g}");
                }
            }
        }
        assert_eq!(IdBlock { base: 2_000_000, count: 60_001 }.group_limit(), 0);
        assert_eq!(IdBlock { base: 2_000_000, count: 60_003 }.group_limit(), 2);
    }

    #[test]
    fn group_names_fit_and_are_unique() {
        let g = BLOCK.share_group(7).unwrap();
        assert_eq!(group_name("lab", &g), "share_lab");
        let long = "a".repeat(26);
        assert_eq!(group_name(&long, &g), format!("share_{long}"));
        assert_eq!(group_name(&"a".repeat(27), &g), "share_60007");
    }

    #[test]
    fn raw_idmap_is_one_entry_per_line() {
        assert_eq!(raw_idmap(1_001_000_004, 1000, &[]), "both 1001000004 1000");
        let groups = [BLOCK.share_group(1).unwrap(), BLOCK.share_group(3).unwrap()];
        assert_eq!(
            raw_idmap(1_001_000_004, 1000, &groups),
            "both 1001000004 1000\ngid 1001060001 60001\ngid 1001060003 60003"
        );
    }
}
