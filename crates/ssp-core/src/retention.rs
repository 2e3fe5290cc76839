//! Snapshot schedules and retention: when the next scheduled snapshot is due, what it is
//! called, and which snapshots a policy prunes.
//!
//! Retention is a pure, deterministic function of the snapshots and the policy: the same
//! set (in any order) always prunes the same names. The policy is the classic
//! grandfather-father-son one (as restic's `forget` and sanoid use it): keep the `last` N
//! newest, the newest of each of the `daily` most recent days that have a snapshot, and the
//! newest of each of the `weekly` most recent ISO weeks (Monday to Sunday, UTC) that have
//! one. A snapshot kept by any rule is kept. Protected snapshots are outside the policy
//! altogether: never pruned, and not counted by any rule.
//!
//! No IO and no clock: `now` is always an argument.

use std::collections::BTreeSet;

/// Seconds in a day.
pub const DAY: i64 = 86_400;
/// The shortest schedule interval: one snapshot a minute is already a lot of copies.
pub const MIN_INTERVAL_SECS: u64 = 60;
/// The most snapshots any one rule may keep.
pub const MAX_KEEP: u32 = 1000;
/// Scheduled snapshots' names start with this; a person's may not.
pub const SCHEDULED_PREFIX: &str = "auto-";

/// How many snapshots each rule keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Policy {
    /// The N newest.
    pub last: u32,
    /// The newest of each of the N most recent days with a snapshot.
    pub daily: u32,
    /// The newest of each of the N most recent ISO weeks with a snapshot.
    pub weekly: u32,
}

/// Why a schedule or policy was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Nothing would be kept: every scheduled snapshot would be pruned at once.
    #[error("a retention policy must keep something: give --keep-last, --keep-daily or --keep-weekly above 0")]
    KeepsNothing,
    /// A count is absurdly large.
    #[error("keep counts are at most {MAX_KEEP}")]
    TooMany,
    /// The interval is too short.
    #[error("a schedule's interval is at least {MIN_INTERVAL_SECS} seconds")]
    TooOften,
}

impl Policy {
    /// Checks that the policy keeps something and nothing absurd.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.last == 0 && self.daily == 0 && self.weekly == 0 {
            return Err(PolicyError::KeepsNothing);
        }
        if self.last > MAX_KEEP || self.daily > MAX_KEEP || self.weekly > MAX_KEEP {
            return Err(PolicyError::TooMany);
        }
        Ok(())
    }
}

/// Checks a schedule's interval.
pub fn validate_interval(every_secs: u64) -> Result<(), PolicyError> {
    if every_secs < MIN_INTERVAL_SECS {
        return Err(PolicyError::TooOften);
    }
    Ok(())
}

/// One snapshot as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Its name, unique within its container (ties in time are broken by name).
    pub name: String,
    /// When it was taken, seconds since the epoch.
    pub taken_at: i64,
    /// Never pruned.
    pub protected: bool,
}

/// The day (days since the epoch, UTC) of `t`.
pub fn day_of(t: i64) -> i64 {
    t.div_euclid(DAY)
}

/// The ISO week (weeks since the Monday before the epoch, UTC) of `t`. 1970-01-01 was a
/// Thursday, so Monday-based weeks start three days before it.
pub fn week_of(t: i64) -> i64 {
    (day_of(t) + 3).div_euclid(7)
}

/// The names `policy` prunes from `snapshots`, sorted. Deterministic: the input's order
/// does not matter.
pub fn prune(policy: &Policy, snapshots: &[Snapshot]) -> Vec<String> {
    let mut candidates: Vec<&Snapshot> = snapshots.iter().filter(|s| !s.protected).collect();
    // Newest first; equal times by name, descending, so the order is total.
    candidates.sort_by(|a, b| b.taken_at.cmp(&a.taken_at).then_with(|| b.name.cmp(&a.name)));
    let mut keep: BTreeSet<&str> = BTreeSet::new();
    for snapshot in candidates.iter().take(policy.last as usize) {
        keep.insert(&snapshot.name);
    }
    for (count, bucket) in [(policy.daily, day_of as fn(i64) -> i64), (policy.weekly, week_of)] {
        let mut seen = 0u32;
        let mut last_bucket = None;
        for snapshot in &candidates {
            if seen >= count {
                break;
            }
            let b = bucket(snapshot.taken_at);
            if last_bucket != Some(b) {
                last_bucket = Some(b);
                seen += 1;
                keep.insert(&snapshot.name);
            }
        }
    }
    let mut pruned: Vec<String> =
        candidates.iter().filter(|s| !keep.contains(s.name.as_str())).map(|s| s.name.clone()).collect();
    pruned.sort();
    pruned
}

/// Whether a scheduled snapshot is due at `now`, given when the last one was taken.
pub fn due(every_secs: u64, last: Option<i64>, now: i64) -> bool {
    match last {
        None => true,
        Some(last) => now.saturating_sub(last) >= i64::try_from(every_secs).unwrap_or(i64::MAX),
    }
}

/// The name of a scheduled snapshot taken at `t`: `auto-YYYYMMDD-HHMMSS` (UTC), which sorts
/// by time and is a valid object name.
pub fn scheduled_name(t: i64) -> String {
    let (year, month, day) = civil_from_days(day_of(t));
    let secs = t.rem_euclid(DAY);
    format!("{SCHEDULED_PREFIX}{year:04}{month:02}{day:02}-{:02}{:02}{:02}", secs / 3600, (secs % 3600) / 60, secs % 60)
}

/// Year, month, day of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;

    fn snap(name: &str, taken_at: i64) -> Snapshot {
        Snapshot { name: name.into(), taken_at, protected: false }
    }

    #[test]
    fn names_sort_by_time_and_are_valid() {
        assert_eq!(scheduled_name(0), "auto-19700101-000000");
        assert_eq!(scheduled_name(1_700_000_000), "auto-20231114-221320");
        assert_eq!(scheduled_name(951_825_600), "auto-20000229-120000");
        assert!(crate::names::Name::parse(&scheduled_name(1_700_000_000)).is_ok());
        assert!(scheduled_name(1_700_000_000) < scheduled_name(1_700_000_001));
    }

    #[test]
    fn weeks_start_on_monday() {
        // 2024-01-01 was a Monday; 2023-12-31 a Sunday.
        let monday = 1_704_067_200;
        assert_eq!(week_of(monday), week_of(monday + 6 * DAY + DAY - 1));
        assert_ne!(week_of(monday), week_of(monday - 1));
    }

    #[test]
    fn a_table_of_policies() {
        let hour = 3600;
        let all: Vec<Snapshot> = (0..10).map(|i| snap(&format!("s{i}"), i * 12 * hour)).collect();
        // Ten snapshots twelve hours apart: days 0,0,1,1,2,2,3,3,4,4.
        assert_eq!(prune(&Policy { last: 3, daily: 0, weekly: 0 }, &all).len(), 7);
        let daily = prune(&Policy { last: 0, daily: 2, weekly: 0 }, &all);
        let kept: BTreeSet<_> = all.iter().map(|s| s.name.clone()).filter(|n| !daily.contains(n)).collect();
        assert_eq!(kept, ["s9", "s7"].iter().map(|s| s.to_string()).collect());
        let mut protected = all.clone();
        protected[0].protected = true;
        assert!(!prune(&Policy { last: 1, daily: 0, weekly: 0 }, &protected).contains(&"s0".to_string()));
        assert!(Policy::default().validate().is_err());
        assert!(Policy { last: 1, ..Policy::default() }.validate().is_ok());
        assert!(validate_interval(59).is_err() && validate_interval(60).is_ok());
        assert!(due(60, None, 0) && !due(60, Some(10), 69) && due(60, Some(10), 70));
    }

    /// The reference: rule by rule, in the plainest terms — group by bucket, take the most
    /// recent buckets, keep each one's newest.
    fn reference(policy: &Policy, snapshots: &[Snapshot]) -> BTreeSet<String> {
        let open: Vec<&Snapshot> = snapshots.iter().filter(|s| !s.protected).collect();
        let newer = |a: &Snapshot, b: &Snapshot| (a.taken_at, &a.name) > (b.taken_at, &b.name);
        let mut keep = BTreeSet::new();
        let mut by_age = open.clone();
        by_age.sort_by(|a, b| (b.taken_at, &b.name).cmp(&(a.taken_at, &a.name)));
        keep.extend(by_age.iter().take(policy.last as usize).map(|s| s.name.clone()));
        for (count, bucket) in [(policy.daily, day_of as fn(i64) -> i64), (policy.weekly, week_of)] {
            let mut newest: BTreeMap<i64, &Snapshot> = BTreeMap::new();
            for s in &open {
                let entry = newest.entry(bucket(s.taken_at)).or_insert(s);
                if newer(s, entry) {
                    *entry = s;
                }
            }
            keep.extend(newest.values().rev().take(count as usize).map(|s| s.name.clone()));
        }
        open.iter().map(|s| s.name.clone()).filter(|n| !keep.contains(n)).collect()
    }

    /// What happens to a container over time.
    #[derive(Debug, Clone)]
    enum Step {
        /// Time passes, then a snapshot is taken.
        Take { after: i64, protected: bool },
        /// A person protects (or unprotects) the i-th surviving snapshot.
        Toggle(usize),
        /// The scheduler prunes.
        Prune,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0i64..4 * DAY, proptest::bool::weighted(0.1)).prop_map(|(after, protected)| Step::Take { after, protected }),
            1 => (0usize..64).prop_map(Step::Toggle),
            2 => Just(Step::Prune),
        ]
    }

    fn policy() -> impl Strategy<Value = Policy> {
        (0u32..6, 0u32..8, 0u32..5).prop_map(|(last, daily, weekly)| Policy { last, daily, weekly })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Model-based: a random timeline of snapshots, protections and prunes, applied to
        /// the real function and to the reference, leaves the same snapshots after every step.
        #[test]
        fn random_timelines_match_the_reference(policy in policy(), steps in proptest::collection::vec(step(), 1..80)) {
            let mut now = 1_700_000_000i64;
            let mut real: Vec<Snapshot> = Vec::new();
            let mut model: BTreeMap<String, (i64, bool)> = BTreeMap::new();
            for (i, step) in steps.iter().enumerate() {
                match step {
                    Step::Take { after, protected } => {
                        now += after;
                        let name = format!("{}-{i}", scheduled_name(now));
                        real.push(Snapshot { name: name.clone(), taken_at: now, protected: *protected });
                        model.insert(name, (now, *protected));
                    }
                    Step::Toggle(k) if !real.is_empty() => {
                        let k = k % real.len();
                        real[k].protected = !real[k].protected;
                        let entry = model.get_mut(&real[k].name).unwrap();
                        entry.1 = !entry.1;
                    }
                    Step::Toggle(_) => {}
                    Step::Prune => {
                        let gone = prune(&policy, &real);
                        let as_model: Vec<Snapshot> = model.iter()
                            .map(|(n, (t, p))| Snapshot { name: n.clone(), taken_at: *t, protected: *p }).collect();
                        let expected = reference(&policy, &as_model);
                        prop_assert_eq!(gone.iter().cloned().collect::<BTreeSet<_>>(), expected.clone());
                        real.retain(|s| !gone.contains(&s.name));
                        for name in &expected {
                            model.remove(name);
                        }
                        // Pruning again right away prunes nothing: the policy is a fixed point.
                        prop_assert!(prune(&policy, &real).is_empty());
                    }
                }
                let names: BTreeSet<_> = real.iter().map(|s| s.name.clone()).collect();
                prop_assert_eq!(names, model.keys().cloned().collect::<BTreeSet<_>>());
            }
        }

        /// Protected snapshots are never pruned; the newest `last` open ones always stay;
        /// the answer does not depend on the input's order.
        #[test]
        fn invariants(policy in policy(), mut times in proptest::collection::vec((0i64..30 * DAY, proptest::bool::weighted(0.2)), 0..60), seed in any::<u64>()) {
            let snapshots: Vec<Snapshot> = times.iter().enumerate()
                .map(|(i, (t, p))| Snapshot { name: format!("s{i:03}"), taken_at: *t, protected: *p }).collect();
            let pruned = prune(&policy, &snapshots);
            for s in &snapshots {
                if s.protected {
                    prop_assert!(!pruned.contains(&s.name));
                }
            }
            let mut open: Vec<&Snapshot> = snapshots.iter().filter(|s| !s.protected).collect();
            open.sort_by(|a, b| (b.taken_at, &b.name).cmp(&(a.taken_at, &a.name)));
            for s in open.iter().take(policy.last as usize) {
                prop_assert!(!pruned.contains(&s.name));
            }
            // A deterministic shuffle.
            let mut shuffled = snapshots.clone();
            let mut state = seed | 1;
            for i in (1..shuffled.len()).rev() {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                shuffled.swap(i, (state % (i as u64 + 1)) as usize);
            }
            prop_assert_eq!(prune(&policy, &shuffled), pruned);
            times.clear();
        }
    }
}
