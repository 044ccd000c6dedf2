//! Property tests against a reference model: random operations with time advances.

use std::collections::HashMap;
use std::time::Duration;

use backstop_cache::MemoryCache;
use backstop_core::ManualClock;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Insert(u8, u32),
    InsertTtl(u8, u32, u64),
    Get(u8),
    Remove(u8),
    Advance(u64),
    Maintain,
}

fn op(keys: u8) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..keys, 1u32..20).prop_map(|(k, v)| Op::Insert(k, v)),
        2 => (0..keys, 1u32..20, 1u64..50).prop_map(|(k, v, t)| Op::InsertTtl(k, v, t)),
        5 => (0..keys).prop_map(Op::Get),
        1 => (0..keys).prop_map(Op::Remove),
        2 => (0u64..30).prop_map(Op::Advance),
        1 => Just(Op::Maintain),
    ]
}

/// Latest value, its ttl deadline and last access, in model milliseconds.
#[derive(Debug, Clone, Copy)]
struct Entry {
    value: u32,
    deadline: u64,
    last_access: u64,
}

const TTL: u64 = 40;
const TTI: u64 = 25;

impl Entry {
    fn live(&self, now: u64) -> bool {
        self.deadline.min(self.last_access + TTI) > now
    }
}

fn build(clock: &ManualClock, capacity: u64, weighted: bool) -> MemoryCache<u8, u32> {
    let b = MemoryCache::builder()
        .max_capacity(capacity)
        .shards(2)
        .ttl(Duration::from_millis(TTL))
        .tti(Duration::from_millis(TTI))
        .clock(clock.clone());
    if weighted {
        b.weigher(|_, v| *v).build()
    } else {
        b.build()
    }
    .unwrap()
}

/// Runs `ops`; with `exact` the cache never evicts, so every get must match the model.
fn run(ops: Vec<Op>, capacity: u64, weighted: bool, exact: bool) -> Result<(), TestCaseError> {
    let clock = ManualClock::new();
    let cache = build(&clock, capacity, weighted);
    let mut model: HashMap<u8, Entry> = HashMap::new();
    let mut now = 0u64;
    for op in ops {
        match op {
            Op::Insert(k, v) | Op::InsertTtl(k, v, _) => {
                let deadline = match op {
                    Op::InsertTtl(_, _, t) => {
                        cache.insert_with_ttl(k, v, Duration::from_millis(t));
                        now + t
                    }
                    _ => {
                        cache.insert(k, v);
                        now + TTL
                    }
                };
                model.insert(
                    k,
                    Entry {
                        value: v,
                        deadline,
                        last_access: now,
                    },
                );
            }
            Op::Get(k) => {
                let got = cache.get(&k);
                let want = model.get_mut(&k).filter(|e| e.live(now));
                match (got, want) {
                    (Some(g), Some(e)) => {
                        prop_assert_eq!(g, e.value, "stale value for key {}", k);
                        e.last_access = now;
                    }
                    (Some(g), None) => {
                        return Err(TestCaseError::fail(format!(
                            "key {k} returned {g} but is absent or expired in the model"
                        )));
                    }
                    (None, Some(e)) => {
                        prop_assert!(!exact, "key {} lost without eviction pressure: {:?}", k, e);
                        model.remove(&k);
                    }
                    (None, None) => {}
                }
            }
            Op::Remove(k) => {
                let got = cache.remove(&k);
                let want = model.remove(&k).filter(|e| e.live(now)).map(|e| e.value);
                if exact {
                    prop_assert_eq!(got, want);
                } else {
                    prop_assert!(got.is_none() || got == want);
                }
            }
            Op::Advance(ms) => {
                now += ms;
                clock.advance(Duration::from_millis(ms));
            }
            Op::Maintain => {
                cache.run_pending_tasks();
                let live = model.values().filter(|e| e.live(now)).count() as u64;
                prop_assert!(cache.len() <= live);
                if exact {
                    prop_assert_eq!(cache.len(), live);
                }
            }
        }
        if weighted {
            prop_assert!(cache.weighted_size() <= capacity);
        } else {
            prop_assert!(cache.len() <= capacity);
        }
        for (k, v) in cache.snapshot() {
            let e = model.get(&k).filter(|e| e.live(now));
            prop_assert_eq!(e.map(|e| e.value), Some(v), "snapshot has stale key {}", k);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn counted_under_pressure(ops in prop::collection::vec(op(32), 1..200)) {
        run(ops, 8, false, false)?;
    }

    #[test]
    fn weighted_under_pressure(ops in prop::collection::vec(op(32), 1..200)) {
        run(ops, 60, true, false)?;
    }

    #[test]
    fn exact_without_pressure(ops in prop::collection::vec(op(16), 1..200)) {
        run(ops, 64, false, true)?;
    }
}
