//! Operation sequences on the memory cache against a map of what was written. Checked:
//! a read returns nothing or the latest value written for that key — never an older or
//! another key's value, never a removed one — and the cache never holds more entries
//! than its capacity once its pending work has run.
#![no_main]

use arbitrary::Arbitrary;
use backstop_cache::{Compute, MemoryCache};
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;

#[derive(Debug, Arbitrary)]
enum Op {
    Insert(u8, u32),
    Get(u8),
    Remove(u8),
    Compute(u8),
    InvalidateAll,
}

#[derive(Debug, Arbitrary)]
struct Input {
    capacity: u8,
    shards: bool,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
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
                let next = cache.compute(key, |old| Compute::Put(old.map_or(1, |v| v.wrapping_add(1))));
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
        assert!(cache.len() <= capacity, "{} entries over capacity {capacity}", cache.len());
    }
});
