//! GPU allocation: which host GPUs a container may be given, decided from plain data.
//!
//! [`allocate`] takes the host's GPUs as the store sees them (each with its holders, whether
//! the admin marked it shared, and whom it is reserved for), the asking user's policy, and a
//! [`GpuRequest`]; it answers the GPUs to grant or a [`Refusal`] that says why and what is
//! free. It never grants a GPU that another container holds unless that GPU is shared, never
//! one reserved for someone else, never beyond the user's count or outside their allowlist.
//! The store runs it inside one write transaction (and a partial unique index backs it), so
//! two racing grants cannot both see a GPU as free.

use std::collections::BTreeSet;
use std::fmt;

/// A host GPU as the allocator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuSlot {
    /// Host index (`/dev/nvidiaN`).
    pub index: u32,
    /// Model name, for model allowlists.
    pub model: String,
    /// Several containers may hold it at once.
    pub shared: bool,
    /// Only this user may be given it.
    pub reserved_for: Option<String>,
    /// The containers (by uid) holding it now.
    pub holders: Vec<String>,
}

impl GpuSlot {
    fn is_free_for(&self, user: &str, container: &str) -> bool {
        self.reserved_for.as_deref().is_none_or(|owner| owner == user)
            && !self.holders.iter().any(|h| h == container)
            && (self.shared || self.holders.is_empty())
    }
}

/// Which GPUs a user may be given beyond their count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GpuPolicy {
    /// Most GPUs held at once over all the user's containers.
    pub max_gpus: u32,
    /// If set, only these host indices.
    pub allowed_indices: Option<BTreeSet<u32>>,
    /// If set, only GPUs whose model is one of these (compared without case).
    pub allowed_models: Option<BTreeSet<String>>,
}

impl GpuPolicy {
    /// Whether the policy lets its user have `gpu` at all (ignoring the count).
    pub fn allows(&self, gpu: &GpuSlot) -> bool {
        self.allowed_indices.as_ref().is_none_or(|set| set.contains(&gpu.index))
            && self
                .allowed_models
                .as_ref()
                .is_none_or(|models| models.iter().any(|m| m.eq_ignore_ascii_case(&gpu.model)))
    }
}

/// What a grant asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuRequest {
    /// This many, any that are free (lowest indices first, so placement is predictable).
    Any(u32),
    /// Exactly these host indices.
    Exact(BTreeSet<u32>),
}

impl GpuRequest {
    /// How many GPUs it asks for.
    pub fn count(&self) -> u32 {
        match self {
            GpuRequest::Any(n) => *n,
            GpuRequest::Exact(set) => u32::try_from(set.len()).unwrap_or(u32::MAX),
        }
    }
}

/// Why GPUs were not granted; each message says what is free or what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Nothing asked.
    #[error("ask for at least one GPU")]
    Nothing,
    /// Beyond the user's count.
    #[error("GPU quota exceeded: {user} may hold {max} GPU(s), holds {held}, asked for {asked} more")]
    Quota {
        /// The user.
        user: String,
        /// Their count.
        max: u32,
        /// Held now.
        held: u32,
        /// Asked.
        asked: u32,
    },
    /// No such GPU on this host.
    #[error("there is no GPU {index} on this host; GPUs: {}", list(.all))]
    Unknown {
        /// The index asked for.
        index: u32,
        /// Every index there is.
        all: Vec<u32>,
    },
    /// The user's allowlist leaves it out.
    #[error("GPU {index} is not among the GPUs {user} may use; allowed and free: {}", list(.free))]
    NotAllowed {
        /// The user.
        user: String,
        /// The GPU.
        index: u32,
        /// What the user could have now.
        free: Vec<u32>,
    },
    /// Reserved for someone else.
    #[error("GPU {index} is reserved by the admin; free for you: {}", list(.free))]
    Reserved {
        /// The GPU.
        index: u32,
        /// What the user could have now.
        free: Vec<u32>,
    },
    /// Held by another container and not shared.
    #[error("GPU {index} is in use by another container; free for you: {}", list(.free))]
    Busy {
        /// The GPU.
        index: u32,
        /// What the user could have now.
        free: Vec<u32>,
    },
    /// The container holds it already.
    #[error("the container already holds GPU {index}")]
    AlreadyHeld {
        /// The GPU.
        index: u32,
    },
    /// Not enough free GPUs for `Any(n)`.
    #[error("{asked} GPU(s) asked but only {} free for you: {}", .free.len(), list(.free))]
    NotEnoughFree {
        /// Asked.
        asked: u32,
        /// What the user could have now.
        free: Vec<u32>,
    },
}

fn list(indices: &[u32]) -> String {
    if indices.is_empty() {
        return "none".into();
    }
    indices.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// Who asks, and for which container.
#[derive(Debug, Clone, Copy)]
pub struct Asker<'a> {
    /// The user's name.
    pub user: &'a str,
    /// The container's uid.
    pub container: &'a str,
    /// GPUs the user holds now over all their containers (one per lease).
    pub held: u32,
}

/// The GPUs to grant `asker` for `request`, sorted, or why not.
pub fn allocate(
    gpus: &[GpuSlot],
    asker: Asker<'_>,
    policy: &GpuPolicy,
    request: &GpuRequest,
) -> Result<Vec<u32>, Refusal> {
    let asked = request.count();
    if asked == 0 {
        return Err(Refusal::Nothing);
    }
    if u64::from(asker.held) + u64::from(asked) > u64::from(policy.max_gpus) {
        return Err(Refusal::Quota { user: asker.user.into(), max: policy.max_gpus, held: asker.held, asked });
    }
    let free: Vec<u32> = gpus
        .iter()
        .filter(|g| policy.allows(g) && g.is_free_for(asker.user, asker.container))
        .map(|g| g.index)
        .collect();
    match request {
        GpuRequest::Any(n) => {
            let wanted = usize::try_from(*n).unwrap_or(usize::MAX);
            if free.len() < wanted {
                return Err(Refusal::NotEnoughFree { asked: *n, free });
            }
            Ok(free.into_iter().take(wanted).collect())
        }
        GpuRequest::Exact(indices) => {
            for &index in indices {
                let Some(gpu) = gpus.iter().find(|g| g.index == index) else {
                    return Err(Refusal::Unknown { index, all: gpus.iter().map(|g| g.index).collect() });
                };
                if gpu.holders.iter().any(|h| h == asker.container) {
                    return Err(Refusal::AlreadyHeld { index });
                }
                if !policy.allows(gpu) {
                    return Err(Refusal::NotAllowed { user: asker.user.into(), index, free });
                }
                if gpu.reserved_for.as_deref().is_some_and(|owner| owner != asker.user) {
                    return Err(Refusal::Reserved { index, free });
                }
                if !gpu.shared && !gpu.holders.is_empty() {
                    return Err(Refusal::Busy { index, free });
                }
            }
            Ok(indices.iter().copied().collect())
        }
    }
}

/// Parses a list of GPU indices as people type them: `2,3` or `2 3`, each at most 4 digits.
pub fn parse_indices(text: &str) -> Result<BTreeSet<u32>, String> {
    let mut set = BTreeSet::new();
    for part in text.split([',', ' ']).filter(|p| !p.is_empty()) {
        if part.len() > 4 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("GPU index {part:?} is not a number; give indices like 2,3"));
        }
        let index: u32 = part.parse().map_err(|_| format!("GPU index {part:?} is not a number"))?;
        if !set.insert(index) {
            return Err(format!("GPU {index} is listed twice"));
        }
    }
    if set.is_empty() {
        return Err("no GPU index given; give indices like 2,3".into());
    }
    Ok(set)
}

/// The numbering a container sees: its GPUs by host index, in order, become 0, 1, …
pub fn container_numbering(held: &BTreeSet<u32>) -> Vec<(u32, u32)> {
    held.iter().enumerate().map(|(k, &host)| (host, u32::try_from(k).unwrap_or(u32::MAX))).collect()
}

impl fmt::Display for GpuRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GpuRequest::Any(n) => write!(f, "any {n}"),
            GpuRequest::Exact(set) => write!(f, "{}", list(&set.iter().copied().collect::<Vec<_>>())),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn host(n: u32) -> Vec<GpuSlot> {
        (0..n)
            .map(|index| GpuSlot {
                index,
                model: if index < 2 { "RTX 4090".into() } else { "H100".into() },
                shared: false,
                reserved_for: None,
                holders: vec![],
            })
            .collect()
    }

    fn policy(max: u32) -> GpuPolicy {
        GpuPolicy { max_gpus: max, ..GpuPolicy::default() }
    }

    fn alice(held: u32) -> Asker<'static> {
        Asker { user: "alice", container: "c1", held }
    }

    fn exact(indices: &[u32]) -> GpuRequest {
        GpuRequest::Exact(indices.iter().copied().collect())
    }

    #[test]
    fn any_takes_the_lowest_free() {
        let mut gpus = host(4);
        gpus[0].holders.push("other".into());
        assert_eq!(allocate(&gpus, alice(0), &policy(4), &GpuRequest::Any(2)), Ok(vec![1, 2]));
    }

    #[test]
    fn exact_gets_exactly_those_or_says_why() {
        let mut gpus = host(4);
        assert_eq!(allocate(&gpus, alice(0), &policy(4), &exact(&[2, 3])), Ok(vec![2, 3]));
        gpus[3].holders.push("bobs".into());
        let refusal = allocate(&gpus, alice(0), &policy(4), &exact(&[2, 3])).unwrap_err();
        assert_eq!(refusal, Refusal::Busy { index: 3, free: vec![0, 1, 2] });
        assert_eq!(refusal.to_string(), "GPU 3 is in use by another container; free for you: 0,1,2");
        assert!(matches!(allocate(&gpus, alice(0), &policy(4), &exact(&[7])), Err(Refusal::Unknown { index: 7, .. })));
    }

    #[test]
    fn shared_gpus_take_several_holders_but_not_twice_the_same() {
        let mut gpus = host(2);
        gpus[1].shared = true;
        gpus[1].holders.push("bobs".into());
        assert_eq!(allocate(&gpus, alice(0), &policy(2), &exact(&[1])), Ok(vec![1]));
        gpus[1].holders.push("c1".into());
        assert_eq!(allocate(&gpus, alice(1), &policy(2), &exact(&[1])), Err(Refusal::AlreadyHeld { index: 1 }));
    }

    #[test]
    fn the_count_the_allowlist_and_reservations_hold() {
        let mut gpus = host(4);
        let refusal = allocate(&gpus, alice(1), &policy(2), &GpuRequest::Any(2)).unwrap_err();
        assert_eq!(refusal.to_string(), "GPU quota exceeded: alice may hold 2 GPU(s), holds 1, asked for 2 more");
        let models = GpuPolicy { max_gpus: 4, allowed_models: Some(["h100".to_string()].into()), ..policy(4) };
        assert_eq!(allocate(&gpus, alice(0), &models, &GpuRequest::Any(2)), Ok(vec![2, 3]));
        assert!(matches!(allocate(&gpus, alice(0), &models, &exact(&[0])), Err(Refusal::NotAllowed { index: 0, .. })));
        let indices = GpuPolicy { max_gpus: 4, allowed_indices: Some([1].into()), ..policy(4) };
        assert_eq!(
            allocate(&gpus, alice(0), &indices, &GpuRequest::Any(2)),
            Err(Refusal::NotEnoughFree { asked: 2, free: vec![1] })
        );
        gpus[2].reserved_for = Some("bob".into());
        assert!(matches!(allocate(&gpus, alice(0), &policy(4), &exact(&[2])), Err(Refusal::Reserved { index: 2, .. })));
        assert_eq!(allocate(&gpus, Asker { user: "bob", ..alice(0) }, &policy(4), &exact(&[2])), Ok(vec![2]));
        assert_eq!(allocate(&gpus, alice(0), &policy(4), &GpuRequest::Any(0)), Err(Refusal::Nothing));
    }

    #[test]
    fn indices_parse_strictly() {
        assert_eq!(parse_indices("2,3").unwrap(), [2, 3].into());
        assert_eq!(parse_indices("3 2").unwrap(), [2, 3].into());
        for bad in ["", "a", "-1", "2,2", "1;rm", "99999"] {
            assert!(parse_indices(bad).is_err(), "{bad:?}");
        }
        assert_eq!(container_numbering(&[2, 3].into()), vec![(2, 0), (3, 1)]);
    }

    #[derive(Debug, Clone)]
    enum Step {
        Grant { user: u8, container: u8, request: GpuRequest },
        Release { container: u8 },
        Share { gpu: u32, shared: bool },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0u8..3, 0u8..6, prop_oneof![
                (0u32..4).prop_map(GpuRequest::Any),
                proptest::collection::btree_set(0u32..6, 0..4).prop_map(GpuRequest::Exact),
            ]).prop_map(|(user, container, request)| Step::Grant { user, container, request }),
            2 => (0u8..6).prop_map(|container| Step::Release { container }),
            1 => (0u32..5, any::<bool>()).prop_map(|(gpu, shared)| Step::Share { gpu, shared }),
        ]
    }

    proptest! {
        /// Random grants and releases against a model of the holdings: no unshared GPU ever
        /// has two holders, no user exceeds their count, and releasing everything frees all.
        #[test]
        fn grants_never_double_book_or_leak(steps in proptest::collection::vec(step(), 1..80)) {
            let mut gpus = host(5);
            gpus[4].reserved_for = Some("u0".into());
            let mut owner_of: BTreeMap<String, String> = BTreeMap::new();
            let max = 3;
            for step in steps {
                match step {
                    Step::Grant { user, container, request } => {
                        let user = format!("u{user}");
                        let container = format!("c{container}");
                        // A container belongs to whoever first used it.
                        let owner = owner_of.entry(container.clone()).or_insert_with(|| user.clone()).clone();
                        let held = gpus.iter().map(|g| g.holders.iter().filter(|h| owner_of.get(*h) == Some(&owner)).count()).sum::<usize>();
                        let asker = Asker { user: &owner, container: &container, held: u32::try_from(held).unwrap() };
                        if let Ok(granted) = allocate(&gpus, asker, &policy(max), &request) {
                            prop_assert_eq!(granted.len(), request.count() as usize);
                            for index in granted {
                                let gpu = gpus.iter_mut().find(|g| g.index == index).unwrap();
                                prop_assert!(gpu.shared || gpu.holders.is_empty(), "GPU {} double-booked", index);
                                prop_assert!(gpu.reserved_for.as_deref().is_none_or(|r| r == owner));
                                gpu.holders.push(container.clone());
                            }
                        }
                    }
                    Step::Release { container } => {
                        let container = format!("c{container}");
                        for gpu in &mut gpus {
                            gpu.holders.retain(|h| *h != container);
                        }
                    }
                    Step::Share { gpu, shared } => {
                        // The admin may only unshare a GPU that has at most one holder.
                        let gpu = &mut gpus[gpu as usize];
                        if shared || gpu.holders.len() <= 1 {
                            gpu.shared = shared;
                        }
                    }
                }
                for gpu in &gpus {
                    prop_assert!(gpu.shared || gpu.holders.len() <= 1);
                    let unique: BTreeSet<_> = gpu.holders.iter().collect();
                    prop_assert_eq!(unique.len(), gpu.holders.len());
                }
                let mut per_user: BTreeMap<&String, u32> = BTreeMap::new();
                for gpu in &gpus {
                    for holder in &gpu.holders {
                        *per_user.entry(&owner_of[holder]).or_default() += 1;
                    }
                }
                prop_assert!(per_user.values().all(|&n| n <= max));
            }
            for c in 0..6 {
                let container = format!("c{c}");
                for gpu in &mut gpus {
                    gpu.holders.retain(|h| *h != container);
                }
            }
            // Nothing leaked: a newcomer can take every unreserved GPU.
            let newcomer = Asker { user: "u9", container: "c9", held: 0 };
            prop_assert_eq!(allocate(&gpus, newcomer, &policy(4), &GpuRequest::Any(4)), Ok(vec![0, 1, 2, 3]));
        }
    }
}
