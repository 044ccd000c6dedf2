//! Multi-threaded mixed operations: capacity holds and every value that leaves the cache
//! is reported to the listener exactly once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backstop_cache::{Compute, MemoryCache};

#[test]
fn listener_sees_every_removal_exactly_once() {
    const THREADS: u64 = 4;
    const OPS: u64 = 20_000;
    let seen: Arc<Mutex<HashMap<u64, u32>>> = Arc::default();
    let s = Arc::clone(&seen);
    let cache: MemoryCache<u64, u64> = MemoryCache::builder()
        .max_capacity(256)
        .shards(4)
        .eviction_listener(move |_, v, _| *s.lock().unwrap().entry(*v).or_default() += 1)
        .build()
        .unwrap();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let cache = cache.clone();
            std::thread::spawn(move || {
                let mut rng = fastrand_lite(t + 1);
                let mut inserted = Vec::new();
                let mut removed_by_call = 0u64;
                for i in 0..OPS {
                    // Unique values make each insertion identifiable in the listener log.
                    let value = t * OPS + i;
                    let key = rng() % 1024;
                    match rng() % 10 {
                        0..=4 => {
                            let _ = cache.get(&key);
                        }
                        5..=6 => {
                            cache.insert(key, value);
                            inserted.push(value);
                        }
                        7 => {
                            cache.insert_with_ttl(key, value, Duration::from_secs(3600));
                            inserted.push(value);
                        }
                        8 => {
                            if cache.remove(&key).is_some() {
                                removed_by_call += 1;
                            }
                        }
                        _ => {
                            let put = rng().is_multiple_of(2);
                            cache.compute(key, |_| {
                                if put {
                                    Compute::Put(value)
                                } else {
                                    Compute::Remove
                                }
                            });
                            if put {
                                inserted.push(value);
                            }
                        }
                    }
                    assert!(cache.len() <= 256);
                }
                (inserted, removed_by_call)
            })
        })
        .collect();
    let mut inserted = Vec::new();
    for h in handles {
        inserted.extend(h.join().unwrap().0);
    }
    cache.invalidate_all();
    assert!(cache.is_empty());
    let seen = seen.lock().unwrap();
    for v in &inserted {
        assert_eq!(
            seen.get(v),
            Some(&1),
            "value {v} reported {:?} times",
            seen.get(v)
        );
    }
    assert_eq!(seen.len(), inserted.len());
    let s = cache.stats();
    let removals = s.removals.size + s.removals.expired + s.removals.explicit + s.removals.replaced;
    assert_eq!(removals, inserted.len() as u64);
}

/// A tiny xorshift so the test needs no extra dependency and is reproducible per thread.
fn fastrand_lite(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}
