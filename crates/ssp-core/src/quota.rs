//! What a container asks for, what a user may hold in all, and the check between the two.
//!
//! A [`Quota`] bounds the totals over all of one user's containers; [`check`] decides whether
//! one more container with the given [`Resources`] still fits. The sums are taken in `u128`, so
//! no number of containers or size of limit can overflow, wrap round and slip a request through.

use std::fmt;

use crate::size::ByteSize;

/// The least memory a container is given: less and a system container cannot boot its init.
pub const MIN_MEMORY: ByteSize = ByteSize::from_bytes(64 << 20);

/// The least disk a container is given: less and no image fits.
pub const MIN_DISK: ByteSize = ByteSize::from_bytes(256 << 20);

/// What one container asks for, or holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Resources {
    /// CPU cores (`limits.cpu`).
    pub cpus: u32,
    /// Memory (`limits.memory`).
    pub memory: ByteSize,
    /// Size of the root disk.
    pub disk: ByteSize,
    /// Whole GPUs passed through; zero for a container without one.
    pub gpus: u32,
}

/// A request in which any field may be left out, to be filled from defaults by [`resolve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PartialResources {
    /// CPU cores, if asked for.
    pub cpus: Option<u32>,
    /// Memory, if asked for.
    pub memory: Option<ByteSize>,
    /// Root disk size, if asked for.
    pub disk: Option<ByteSize>,
    /// GPUs, if asked for.
    pub gpus: Option<u32>,
}

/// Why resources were refused for a container: every container has limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    /// No CPU.
    #[error("a container needs at least 1 cpu; 0 were asked")]
    NoCpus,
    /// Too little memory.
    #[error("memory {memory} is too little for a container; at least {min} is needed", min = MIN_MEMORY)]
    MemoryTooSmall {
        /// The memory asked for.
        memory: ByteSize,
    },
    /// Too little disk.
    #[error("disk {disk} is too little for a container; at least {min} is needed", min = MIN_DISK)]
    DiskTooSmall {
        /// The disk asked for.
        disk: ByteSize,
    },
}

impl Resources {
    /// Refuses resources no container can run with: no CPU, less than [`MIN_MEMORY`] or less
    /// than [`MIN_DISK`]. Zero GPUs is fine.
    pub fn validate(&self) -> Result<(), ResourceError> {
        if self.cpus == 0 {
            return Err(ResourceError::NoCpus);
        }
        if self.memory < MIN_MEMORY {
            return Err(ResourceError::MemoryTooSmall { memory: self.memory });
        }
        if self.disk < MIN_DISK {
            return Err(ResourceError::DiskTooSmall { disk: self.disk });
        }
        Ok(())
    }
}

/// Fills the fields left out of `requested` from `defaults`.
pub fn resolve(requested: PartialResources, defaults: &Resources) -> Resources {
    Resources {
        cpus: requested.cpus.unwrap_or(defaults.cpus),
        memory: requested.memory.unwrap_or(defaults.memory),
        disk: requested.disk.unwrap_or(defaults.disk),
        gpus: requested.gpus.unwrap_or(defaults.gpus),
    }
}

/// The most one user may hold, summed over all their containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    /// Containers.
    pub max_containers: u32,
    /// CPU cores.
    pub max_cpus: u32,
    /// Memory.
    pub max_memory: ByteSize,
    /// Root disk.
    pub max_disk: ByteSize,
    /// GPUs.
    pub max_gpus: u32,
}

/// Which limit of a [`Quota`] was exceeded, in the order [`check`] tries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Limit {
    /// [`Quota::max_containers`].
    Containers,
    /// [`Quota::max_cpus`].
    Cpus,
    /// [`Quota::max_memory`].
    Memory,
    /// [`Quota::max_disk`].
    Disk,
    /// [`Quota::max_gpus`].
    Gpus,
}

impl Limit {
    /// Every limit, in the order [`check`] tries them.
    pub const ALL: [Limit; 5] = [Limit::Containers, Limit::Cpus, Limit::Memory, Limit::Disk, Limit::Gpus];

    /// The limit's name, as in messages: `containers`, `cpus`, `memory`, `disk`, `gpus`.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Containers => "containers",
            Limit::Cpus => "cpus",
            Limit::Memory => "memory",
            Limit::Disk => "disk",
            Limit::Gpus => "gpus",
        }
    }

    /// Whether amounts of this limit are bytes (shown as sizes) rather than counts.
    fn is_bytes(self) -> bool {
        matches!(self, Limit::Memory | Limit::Disk)
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request refused because it would take the user over one limit of their quota.
///
/// Amounts are counts, or bytes for [`Limit::Memory`] and [`Limit::Disk`]; `in_use` saturates
/// at `u64::MAX` in the (impossible in practice) case that the true sum is larger.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{limit} quota exceeded: {in_use} in use + {asked} asked > {max} allowed ({free} free)",
    in_use = self.show(self.in_use),
    asked = self.show(self.asked),
    max = self.show(self.max),
    free = self.show(self.free()),
)]
pub struct QuotaExceeded {
    /// The limit exceeded.
    pub limit: Limit,
    /// What the user's containers already hold.
    pub in_use: u64,
    /// What the request asks for.
    pub asked: u64,
    /// The quota's maximum.
    pub max: u64,
}

impl QuotaExceeded {
    /// What is still free under this limit: zero where the user already holds more than the
    /// maximum (the quota was lowered after they took it).
    pub fn free(&self) -> u64 {
        self.max.saturating_sub(self.in_use)
    }

    fn show(&self, amount: u64) -> String {
        if self.limit.is_bytes() {
            ByteSize::from_bytes(amount).to_string()
        } else {
            amount.to_string()
        }
    }
}

/// Decides whether a user holding `held` may have one more container with `request`.
///
/// Refuses with the first limit, in the order of [`Limit::ALL`], whose total (what is held plus
/// what is asked) would exceed the quota's maximum. A user already over a lowered quota is
/// refused any new container until they are back under it, even one asking for none of the
/// resource they hold too much of: the totals must fit, always.
pub fn check(quota: &Quota, held: &[Resources], request: &Resources) -> Result<(), QuotaExceeded> {
    for limit in Limit::ALL {
        let amount = |r: &Resources| -> u64 {
            match limit {
                Limit::Containers => 1,
                Limit::Cpus => r.cpus.into(),
                Limit::Memory => r.memory.bytes(),
                Limit::Disk => r.disk.bytes(),
                Limit::Gpus => r.gpus.into(),
            }
        };
        let max = match limit {
            Limit::Containers => quota.max_containers.into(),
            Limit::Cpus => quota.max_cpus.into(),
            Limit::Memory => quota.max_memory.bytes(),
            Limit::Disk => quota.max_disk.bytes(),
            Limit::Gpus => quota.max_gpus.into(),
        };
        // A u128 holds the sum of 2^64 u64s, more than any slice can have: no overflow.
        let in_use: u128 = held.iter().map(|r| u128::from(amount(r))).sum();
        let asked = amount(request);
        if in_use + u128::from(asked) > u128::from(max) {
            let in_use = u64::try_from(in_use).unwrap_or(u64::MAX);
            return Err(QuotaExceeded { limit, in_use, asked, max });
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const GIB: u64 = 1 << 30;

    fn gib(n: u64) -> ByteSize {
        ByteSize::from_bytes(n * GIB)
    }

    fn res(cpus: u32, memory_gib: u64, disk_gib: u64, gpus: u32) -> Resources {
        Resources { cpus, memory: gib(memory_gib), disk: gib(disk_gib), gpus }
    }

    const QUOTA: Quota = Quota {
        max_containers: 3,
        max_cpus: 16,
        max_memory: ByteSize::from_bytes(32 * GIB),
        max_disk: ByteSize::from_bytes(200 * GIB),
        max_gpus: 2,
    };

    #[test]
    fn each_limit_and_its_message() {
        let two = [res(4, 8, 50, 1), res(4, 16, 50, 0)];
        let cases: &[(&[Resources], Resources, Option<Limit>, &str)] = &[
            (&[], res(16, 32, 200, 2), None, ""),
            (&two, res(8, 8, 100, 1), None, ""),
            (
                &[res(1, 1, 1, 0), res(1, 1, 1, 0), res(1, 1, 1, 0)],
                res(1, 1, 1, 0),
                Some(Limit::Containers),
                "containers quota exceeded: 3 in use + 1 asked > 3 allowed (0 free)",
            ),
            (&two, res(9, 1, 1, 0), Some(Limit::Cpus), "cpus quota exceeded: 8 in use + 9 asked > 16 allowed (8 free)"),
            (
                &two,
                res(1, 16, 1, 0),
                Some(Limit::Memory),
                "memory quota exceeded: 24GiB in use + 16GiB asked > 32GiB allowed (8GiB free)",
            ),
            (
                &two,
                res(1, 1, 101, 0),
                Some(Limit::Disk),
                "disk quota exceeded: 100GiB in use + 101GiB asked > 200GiB allowed (100GiB free)",
            ),
            (&two, res(1, 1, 1, 2), Some(Limit::Gpus), "gpus quota exceeded: 1 in use + 2 asked > 2 allowed (1 free)"),
            // Several limits exceeded: the first in the fixed order is reported.
            (&two, res(99, 99, 999, 9), Some(Limit::Cpus), "cpus quota exceeded"),
            (&two, res(1, 99, 999, 9), Some(Limit::Memory), "memory quota exceeded"),
            // Over a lowered quota already: nothing is free, and even asking for none of that
            // limit is refused, because the totals must fit.
            (&[res(20, 1, 1, 0)], res(1, 1, 1, 0), Some(Limit::Cpus), "20 in use + 1 asked > 16 allowed (0 free)"),
            (&[res(1, 1, 1, 3)], res(1, 1, 1, 0), Some(Limit::Gpus), "3 in use + 0 asked > 2 allowed (0 free)"),
        ];
        for (held, request, limit, message) in cases {
            match (check(&QUOTA, held, request), limit) {
                (Ok(()), None) => {}
                (Err(err), Some(limit)) => {
                    assert_eq!(err.limit, *limit, "{request:?}");
                    assert!(err.to_string().contains(message), "{err}");
                }
                (got, want) => panic!("{held:?} + {request:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn exceeded_amounts_are_fields() {
        let err = check(&QUOTA, &[res(4, 24, 10, 0)], &res(1, 16, 1, 0)).unwrap_err();
        assert_eq!(err, QuotaExceeded { limit: Limit::Memory, in_use: 24 * GIB, asked: 16 * GIB, max: 32 * GIB });
        assert_eq!(err.free(), 8 * GIB);
        assert_eq!(Limit::Memory.to_string(), "memory");
    }

    #[test]
    fn sizes_that_are_not_whole_units_show_exactly() {
        let quota = Quota { max_memory: ByteSize::from_bytes(1536 << 20), ..QUOTA };
        let err = check(&quota, &[], &Resources { memory: ByteSize::from_bytes(2 * GIB), ..res(1, 0, 1, 0) });
        let err = err.unwrap_err().to_string();
        assert_eq!(err, "memory quota exceeded: 0B in use + 2GiB asked > 1536MiB allowed (1536MiB free)");
    }

    #[test]
    fn resolve_fills_what_is_left_out() {
        let defaults = res(2, 4, 20, 0);
        assert_eq!(resolve(PartialResources::default(), &defaults), defaults);
        let asked = PartialResources { cpus: Some(8), gpus: Some(1), ..PartialResources::default() };
        assert_eq!(resolve(asked, &defaults), res(8, 4, 20, 1));
        let all = PartialResources { cpus: Some(1), memory: Some(gib(1)), disk: Some(gib(2)), gpus: Some(2) };
        assert_eq!(resolve(all, &defaults), res(1, 1, 2, 2));
    }

    #[test]
    fn validate() {
        let mib = |n: u64| ByteSize::from_bytes(n << 20);
        let ok = Resources { cpus: 1, memory: mib(64), disk: mib(256), gpus: 0 };
        assert_eq!(ok.validate(), Ok(()));
        let cases: &[(Resources, ResourceError, &str)] = &[
            (Resources { cpus: 0, ..ok }, ResourceError::NoCpus, "a container needs at least 1 cpu; 0 were asked"),
            (
                Resources { memory: mib(63), ..ok },
                ResourceError::MemoryTooSmall { memory: mib(63) },
                "memory 63MiB is too little for a container; at least 64MiB is needed",
            ),
            (
                Resources { memory: ByteSize::ZERO, ..ok },
                ResourceError::MemoryTooSmall { memory: ByteSize::ZERO },
                "memory 0B is too little",
            ),
            (
                Resources { disk: mib(255), ..ok },
                ResourceError::DiskTooSmall { disk: mib(255) },
                "disk 255MiB is too little for a container; at least 256MiB is needed",
            ),
        ];
        for (resources, error, message) in cases {
            let got = resources.validate().unwrap_err();
            assert_eq!(&got, error);
            assert!(got.to_string().contains(message), "{got}");
        }
    }

    fn any_resources() -> impl Strategy<Value = Resources> {
        // Mix small values (which often fit) with huge ones (which test overflow).
        let count = prop_oneof![0u32..8, any::<u32>()];
        let bytes = prop_oneof![(0u64..64).prop_map(|n| n * GIB), any::<u64>()];
        (count.clone(), bytes.clone(), bytes, count).prop_map(|(cpus, memory, disk, gpus)| Resources {
            cpus,
            memory: ByteSize::from_bytes(memory),
            disk: ByteSize::from_bytes(disk),
            gpus,
        })
    }

    fn any_quota() -> impl Strategy<Value = Quota> {
        let count = prop_oneof![0u32..32, any::<u32>()];
        let bytes = prop_oneof![(0u64..256).prop_map(|n| n * GIB), any::<u64>()];
        (count.clone(), count.clone(), bytes.clone(), bytes, count).prop_map(|(c, cpus, memory, disk, gpus)| Quota {
            max_containers: c,
            max_cpus: cpus,
            max_memory: ByteSize::from_bytes(memory),
            max_disk: ByteSize::from_bytes(disk),
            max_gpus: gpus,
        })
    }

    proptest! {
        /// `check` accepts exactly when every total fits, never panics, and on refusal names a
        /// limit that really is exceeded, after all the limits before it fit.
        #[test]
        fn accepts_iff_every_total_fits(
            quota in any_quota(),
            held in prop::collection::vec(any_resources(), 0..6),
            request in any_resources(),
        ) {
            let total = |f: &dyn Fn(&Resources) -> u128| held.iter().map(f).sum::<u128>() + f(&request);
            let fits = [
                (Limit::Containers, total(&|_| 1) <= quota.max_containers.into()),
                (Limit::Cpus, total(&|r| r.cpus.into()) <= quota.max_cpus.into()),
                (Limit::Memory, total(&|r| r.memory.bytes().into()) <= quota.max_memory.bytes().into()),
                (Limit::Disk, total(&|r| r.disk.bytes().into()) <= quota.max_disk.bytes().into()),
                (Limit::Gpus, total(&|r| r.gpus.into()) <= quota.max_gpus.into()),
            ];
            let first_exceeded = fits.iter().find(|(_, fits)| !fits).map(|(limit, _)| *limit);
            match check(&quota, &held, &request) {
                Ok(()) => prop_assert_eq!(first_exceeded, None),
                Err(err) => {
                    prop_assert_eq!(Some(err.limit), first_exceeded);
                    prop_assert!(!err.to_string().is_empty());
                    prop_assert!(err.free() <= err.max);
                }
            }
        }

        /// Whatever `resolve` returns comes field by field from the request or the defaults.
        #[test]
        fn resolve_takes_each_field_from_one_side(
            defaults in any_resources(),
            asked in any_resources(),
            mask in any::<[bool; 4]>(),
        ) {
            let partial = PartialResources {
                cpus: mask[0].then_some(asked.cpus),
                memory: mask[1].then_some(asked.memory),
                disk: mask[2].then_some(asked.disk),
                gpus: mask[3].then_some(asked.gpus),
            };
            let got = resolve(partial, &defaults);
            prop_assert_eq!(got.cpus, if mask[0] { asked.cpus } else { defaults.cpus });
            prop_assert_eq!(got.memory, if mask[1] { asked.memory } else { defaults.memory });
            prop_assert_eq!(got.disk, if mask[2] { asked.disk } else { defaults.disk });
            prop_assert_eq!(got.gpus, if mask[3] { asked.gpus } else { defaults.gpus });
        }
    }
}
