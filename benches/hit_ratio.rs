//! Hit ratios of the in-memory cache against moka, quick_cache and a plain LRU on
//! synthetic traces, and memory per entry against moka.
//!
//! `cargo bench -p backstop --bench hit_ratio`
//!
//! Every contender sees the same trace and does `get`, then `insert` on a miss. Prints
//! `hit_ratio workload=<w> contender=<c> value=<v>` and
//! `cache_memory contender=<c> value=<bytes per entry>` (resident-set growth while filling
//! 1,000,000 `u64 -> u64` entries, each contender measured in a fresh child process).
//!
//! Workloads over a key space of 100,000 (`cap1`/`cap10` = capacity 1% / 10% of it):
//! - `zipf<α>_cap<p>`: Zipf(α) keys, α ∈ {0.6, 0.8, 1.0}.
//! - `scan_mix`: 70% Zipf(0.9) hot set, 30% a looping scan over 50,000 other keys; capacity 5,000.
//! - `loop`: a loop over 5,500 keys with capacity 5,000 (LRU's worst case).
//! - `shifting`: Zipf(1.0) whose hot set moves to new keys five times; capacity 5,000.
//!
//! Resident-set growth rather than a counting allocator because a `GlobalAlloc` needs
//! `unsafe`, which the workspace forbids.
//!
//! Policy sweeps: `HIT_RATIO_POLICY=0.002:0.5,0.01:1` replaces `backstop` with one
//! contender per `small_ratio:ghost_ratio` pair (see `PolicyConfig`) next to moka; this
//! is how the defaults were chosen.

mod cache_support;

use std::process::Command;

use cache_support::{XorShift, contenders, zipf_keys};

const KEYS: u64 = 100_000;
const LEN: usize = 2_000_000;

fn scan_mix() -> Vec<u64> {
    let hot = zipf_keys(KEYS, 0.9, LEN, 3);
    let mut rng = XorShift(5);
    let mut scan = 0u64;
    hot.into_iter()
        .map(|k| {
            if rng.next() % 10 < 3 {
                scan = (scan + 1) % 50_000;
                KEYS + scan
            } else {
                k
            }
        })
        .collect()
}

fn shifting() -> Vec<u64> {
    let phase = LEN / 5;
    zipf_keys(KEYS, 1.0, LEN, 9)
        .into_iter()
        .enumerate()
        .map(|(i, k)| k + (i / phase) as u64 * KEYS)
        .collect()
}

fn hit_ratio(workload: &str, capacity: u64, trace: &[u64]) {
    let mut all = contenders(capacity);
    if let Ok(spec) = std::env::var("HIT_RATIO_POLICY") {
        all.retain(|(n, _)| *n == "moka");
        for p in spec.split(',') {
            let mut it = p.split(':').filter_map(|x| x.parse::<f64>().ok());
            let (Some(small_ratio), Some(ghost_ratio)) = (it.next(), it.next()) else {
                continue;
            };
            let config = backstop::cache::CacheConfig {
                max_capacity: capacity,
                policy: backstop::cache::PolicyConfig {
                    small_ratio,
                    ghost_ratio,
                },
                ..Default::default()
            };
            let cache = backstop::cache::MemoryCache::<u64, u64>::from_config(config)
                .expect("valid policy");
            all.push((Box::leak(p.to_string().into_boxed_str()), Box::new(cache)));
        }
    }
    for (name, cache) in all {
        let mut hits = 0u64;
        for &k in trace {
            if cache.get(k).is_some() {
                hits += 1;
            } else {
                cache.insert(k, k);
            }
        }
        let value = hits as f64 / trace.len() as f64;
        println!("hit_ratio workload={workload} contender={name} value={value:.4}");
    }
}

fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Child-process body: fill one contender with 1,000,000 entries and print bytes/entry.
fn memory(contender: &str) {
    const N: u64 = 1_000_000;
    let before = resident_bytes();
    let Some((name, cache)) = contenders(N).into_iter().find(|(n, _)| *n == contender) else {
        return;
    };
    for k in 0..N {
        cache.insert(k, k);
    }
    let held = (0..N).filter(|k| cache.get(*k).is_some()).count().max(1) as u64;
    let per_entry = resident_bytes().saturating_sub(before) / held;
    println!("cache_memory contender={name} value={per_entry}");
}

fn main() {
    if let Ok(c) = std::env::var("CACHE_MEMORY_CONTENDER") {
        memory(&c);
        return;
    }
    for alpha in [0.6, 0.8, 1.0] {
        let trace = zipf_keys(KEYS, alpha, LEN, 1);
        for pct in [1u64, 10] {
            hit_ratio(
                &format!("zipf{alpha:.1}_cap{pct}"),
                KEYS * pct / 100,
                &trace,
            );
        }
    }
    hit_ratio("scan_mix", 5_000, &scan_mix());
    let looped: Vec<u64> = (0..LEN as u64).map(|i| i % 5_500).collect();
    hit_ratio("loop", 5_000, &looped);
    hit_ratio("shifting", 5_000, &shifting());
    if let Ok(exe) = std::env::current_exe() {
        for c in ["backstop", "moka"] {
            if let Ok(out) = Command::new(&exe).env("CACHE_MEMORY_CONTENDER", c).output() {
                print!("{}", String::from_utf8_lossy(&out.stdout));
            }
        }
    }
}
