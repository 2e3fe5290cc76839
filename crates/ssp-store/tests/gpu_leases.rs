//! GPU leases under concurrency, against a real SQLite file: several threads, each with its
//! own connection (as several daemons or request tasks would have), grant, detach, remove
//! containers and "crash" — leave a write transaction half done and drop the connection —
//! thousands of times at random. No GPU may ever have two exclusive holders, no grant may
//! trip the database's own guard (that would mean the allocator decided on stale data), no
//! user may exceed their count, and once every container is gone no lease is left.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;

use ssp_core::gpu::GpuRequest;
use ssp_core::names::Name;
use ssp_core::quota::Quota;
use ssp_core::size::ByteSize;
use ssp_store::{DesiredState, Error, GpuRecord, NewContainer, NewUser, Role, Store};

const USERS: usize = 4;
const CONTAINERS_PER_USER: usize = 3;
const MAX_GPUS: u32 = 3;
const THREADS: usize = 4;
const STEPS: usize = 750;

/// xorshift64*: small, seeded, reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn set_up(path: &Path) -> Vec<(String, Vec<String>)> {
    let mut store = Store::open(path).unwrap();
    let gpus: Vec<GpuRecord> = (0..4)
        .map(|index| GpuRecord {
            index,
            uuid: format!("GPU-{index}"),
            model: "Emulated".into(),
            memory: 1 << 30,
            pci: None,
            emulated: true,
        })
        .collect();
    store.sync_gpus(&gpus).unwrap();
    store.set_gpu(None, 3, Some(true), None).unwrap();
    let quota = Quota {
        max_containers: 100,
        max_cpus: 100,
        max_memory: ByteSize::parse("1TiB").unwrap(),
        max_disk: ByteSize::parse("1TiB").unwrap(),
        max_gpus: MAX_GPUS,
    };
    (0..USERS)
        .map(|u| {
            let user = format!("u{u}");
            store.create_user(None, &NewUser { name: Name::parse(&user).unwrap(), role: Role::User, quota }).unwrap();
            let containers = (0..CONTAINERS_PER_USER).map(|c| new_container(&mut store, &user, c, 0)).collect();
            (user, containers)
        })
        .collect()
}

fn new_container(store: &mut Store, owner: &str, c: usize, generation: usize) -> String {
    store
        .create_container(
            None,
            &NewContainer {
                owner: Name::parse(owner).unwrap(),
                name: Name::parse(&format!("c{c}-{generation}")).unwrap(),
                image: "busybox".into(),
                cpus: 1,
                memory: ByteSize::parse("1GiB").unwrap(),
                disk: ByteSize::parse("1GiB").unwrap(),
                desired_state: DesiredState::Running,
                idempotency_key: None,
                gpus: None,
            },
        )
        .unwrap()
        .uid
}

/// A writer that dies mid-grant: its transaction holds a lease row that never commits.
fn crash_mid_grant(path: &Path, container: &str, gpu: u32) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    // May trip the unique guard when the GPU is held: a crash either way.
    let _ = conn.execute(
        "INSERT INTO gpu_leases (gpu, container_uid, user_id, exclusive, granted_at)
         VALUES (?1, ?2, (SELECT owner_id FROM containers WHERE uid = ?2), 1, 0)",
        rusqlite::params![gpu, container],
    );
    drop(conn);
}

fn check(store: &Store) {
    let mut exclusive_holders: BTreeMap<u32, usize> = BTreeMap::new();
    let mut per_user: BTreeMap<String, u32> = BTreeMap::new();
    for gpu in store.gpus().unwrap() {
        if !gpu.shared {
            *exclusive_holders.entry(gpu.record.index).or_default() += gpu.leases.len();
        }
        for lease in &gpu.leases {
            *per_user.entry(lease.owner.clone()).or_default() += 1;
        }
    }
    assert!(exclusive_holders.values().all(|&n| n <= 1), "a GPU has two holders: {exclusive_holders:?}");
    assert!(per_user.values().all(|&n| n <= MAX_GPUS), "over the count: {per_user:?}");
}

#[test]
fn random_concurrent_grants_releases_and_crashes_never_double_book_or_leak() {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    println!("seed {seed}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let users = set_up(&path);

    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let path = path.clone();
            // Each thread owns some containers; all compete for the same GPUs.
            let mut containers: Vec<(String, usize, String)> = users
                .iter()
                .enumerate()
                .flat_map(|(u, (user, cs))| {
                    cs.iter().enumerate().map(move |(i, c)| (u * CONTAINERS_PER_USER + i, user.clone(), i, c.clone()))
                })
                .filter(|(n, ..)| n % THREADS == t)
                .map(|(_, user, i, c)| (user, i, c))
                .collect();
            std::thread::spawn(move || {
                let mut rng = Rng(seed.wrapping_add((t as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1);
                let mut store = Store::open(&path).unwrap();
                let (mut grants, mut refusals, mut crashes) = (0, 0, 0);
                for step in 0..STEPS {
                    let pick = rng.below(containers.len());
                    let (user, slot, uid) = containers[pick].clone();
                    match rng.below(10) {
                        0..=3 => {
                            let request = if rng.below(2) == 0 {
                                GpuRequest::Any(1 + rng.below(2) as u32)
                            } else {
                                GpuRequest::Exact((0..1 + rng.below(2)).map(|_| rng.below(5) as u32).collect())
                            };
                            match store.grant_gpus(None, &uid, &request, None) {
                                Ok(granted) => {
                                    assert_eq!(granted.len() as u32, request.count());
                                    grants += 1;
                                }
                                Err(Error::Refused(_)) => refusals += 1,
                                Err(other) => panic!("grant {request} for {uid} failed unexpectedly: {other}"),
                            }
                        }
                        4..=6 => {
                            store.end_lease(None, &uid, rng.below(4) as u32, "detach").unwrap();
                        }
                        7 => {
                            crash_mid_grant(&path, &uid, rng.below(4) as u32);
                            crashes += 1;
                        }
                        8 => {
                            // The daemon restarts: a fresh connection.
                            store = Store::open(&path).unwrap();
                        }
                        _ => {
                            // The container is removed and a new one takes its place.
                            assert!(store.forget_container(&uid).unwrap());
                            let fresh = new_container(&mut store, &user, slot, step + 1);
                            containers[pick] = (user, slot, fresh);
                        }
                    }
                }
                (grants, refusals, crashes)
            })
        })
        .collect();
    let checker = {
        let path = path.clone();
        std::thread::spawn(move || {
            let store = Store::open(&path).unwrap();
            for _ in 0..200 {
                check(&store);
                std::thread::yield_now();
            }
        })
    };
    let mut totals = (0, 0, 0);
    for thread in threads {
        let (g, r, c) = thread.join().unwrap();
        totals = (totals.0 + g, totals.1 + r, totals.2 + c);
    }
    checker.join().unwrap();
    println!("grants {}, refusals {}, crashes {}", totals.0, totals.1, totals.2);
    assert!(totals.0 > 100 && totals.1 > 100 && totals.2 > 50, "too little happened: {totals:?}");

    let mut store = Store::open(&path).unwrap();
    check(&store);
    // Every lease belongs to a container that still exists.
    let live: std::collections::BTreeSet<String> = store.all_containers().unwrap().into_iter().map(|c| c.uid).collect();
    assert!(store.active_leases().unwrap().iter().all(|l| live.contains(&l.container_uid)));
    for uid in live {
        store.forget_container(&uid).unwrap();
    }
    assert!(store.active_leases().unwrap().is_empty(), "leases outlived their containers");
    assert!(store.gpus().unwrap().iter().all(|g| g.leases.is_empty()));
}
