//! Operation sequences on the memory cache against a map of what was written. Checked:
//! a read returns nothing or the latest value written for that key — never an older or
//! another key's value, never a removed one — and the cache never holds more entries
//! than its capacity once its pending work has run. First, an arbitrary configuration
//! (extremes included) must build a cache or be refused with a typed error, never panic;
//! per-entry TTLs of any size must not overflow a deadline.
#![no_main]

use arbitrary::Arbitrary;
use backstop_cache::{CacheConfig, Compute, MemoryCache};
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use std::time::Duration;

#[derive(Debug, Arbitrary)]
enum Op {
    Insert(u8, u32),
    /// An entry with its own time to live, in nanoseconds (any size).
    InsertWithTtl(u8, u32, u64),
    Get(u8),
    Remove(u8),
    Compute(u8),
    InvalidateAll,
}

#[derive(Debug, Arbitrary)]
struct Input {
    /// A configuration as a file might hold it: capacity, shards, TTL and TTI seconds.
    config: (u64, Option<usize>, Option<u64>, Option<u64>),
    capacity: u8,
    shards: bool,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let (max_capacity, shards, ttl, tti) = input.config;
    let config = CacheConfig {
        max_capacity,
        shards,
        ttl: ttl.map(Duration::from_secs),
        tti: tti.map(Duration::from_secs),
        ..CacheConfig::default()
    };
    if let Ok(cache) = MemoryCache::<u8, u8>::from_config(config) {
        cache.insert(1, 1);
        cache.insert_with_ttl(2, 2, Duration::MAX);
        let _ = cache.get(&1);
        cache.run_pending_tasks();
    }

    let capacity = u64::from(input.capacity % 32) + 1;
    let mut builder = MemoryCache::builder().max_capacity(capacity);
    if input.shards && capacity >= 2 {
        builder = builder.shards(2);
    }
    let cache: MemoryCache<u8, u32> = builder.build().expect("a valid capacity");
    let mut written: HashMap<u8, u32> = HashMap::new();

    for op in input.ops.into_iter().take(500) {
        match op {
            Op::Insert(key, value) => {
                let key = key % 48;
                cache.insert(key, value);
                written.insert(key, value);
            }
            Op::InsertWithTtl(key, value, nanos) => {
                let key = key % 48;
                cache.insert_with_ttl(key, value, Duration::from_nanos(nanos));
                if nanos == 0 {
                    written.remove(&key);
                } else {
                    written.insert(key, value);
                }
            }
            Op::Get(key) => {
                let key = key % 48;
                if let Some(value) = cache.get(&key) {
                    assert_eq!(Some(&value), written.get(&key), "stale or foreign value");
                }
            }
            Op::Remove(key) => {
                let key = key % 48;
                cache.remove(&key);
                written.remove(&key);
                assert_eq!(cache.get(&key), None, "removed key still readable");
            }
            Op::Compute(key) => {
                let key = key % 48;
                let next = cache.compute(key, |old| {
                    Compute::Put(old.map_or(1, |v| v.wrapping_add(1)))
                });
                match next {
                    Some(value) => {
                        written.insert(key, value);
                    }
                    None => {
                        written.remove(&key);
                    }
                }
            }
            Op::InvalidateAll => {
                cache.invalidate_all();
                written.clear();
            }
        }
        cache.run_pending_tasks();
        assert!(
            cache.len() <= capacity,
            "{} entries over capacity {capacity}",
            cache.len()
        );
    }
});
