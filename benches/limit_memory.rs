//! What a keyed limiter costs in memory per key, and what is left after idle keys are swept.
//!
//! `cargo bench -p backstop --bench limit_memory`
//!
//! A counting global allocator (`stats_alloc`) measures the live heap bytes of a keyed
//! limiter holding 1,000,000 active `u64` keys (quota 1/s, one check each), for backstop's
//! `KeyedRateLimiter` and governor's dashmap keyed limiter. Then the clock moves 2 s on, so
//! every key is idle, and each limiter's `retain_recent` + `shrink_to_fit` runs.
//!
//! Prints, one line per figure:
//! - `limit_memory workload=1m_keys contender=<c> value=<bytes per key beyond the u64 key>`
//! - `limit_memory_empty workload=1m_keys contender=<c> value=<bytes of the empty limiter>`
//! - `limit_memory_after_sweep workload=1m_keys contender=<c> value=<bytes after the sweep>`
//! - `limit_memory_after_sweep_vs_empty workload=1m_keys contender=<c> value=<ratio>`

use std::alloc::System;
use std::num::NonZeroU32;
use std::time::Duration;

use backstop::core::ManualClock;
use backstop::limit::{KeyedRateLimiter, Quota};
use governor::clock::FakeRelativeClock;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const KEYS: u64 = 1_000_000;
const WORKLOAD: &str = "1m_keys";

/// Live heap bytes allocated since `region` started.
fn live(region: &Region<'_, System>) -> i64 {
    let change = region.change();
    change.bytes_allocated as i64 - change.bytes_deallocated as i64
        + change.bytes_reallocated as i64
}

fn report(contender: &str, empty: i64, full: i64, swept: i64) {
    let key = std::mem::size_of::<u64>() as f64;
    let per_key = (full - empty) as f64 / KEYS as f64 - key;
    println!("limit_memory workload={WORKLOAD} contender={contender} value={per_key:.1}");
    println!("limit_memory_empty workload={WORKLOAD} contender={contender} value={empty}");
    println!("limit_memory_after_sweep workload={WORKLOAD} contender={contender} value={swept}");
    let ratio = swept as f64 / empty.max(1) as f64;
    println!(
        "limit_memory_after_sweep_vs_empty workload={WORKLOAD} contender={contender} value={ratio:.3}"
    );
}

fn backstop() {
    let clock = ManualClock::new();
    let region = Region::new(GLOBAL);
    let limiter = KeyedRateLimiter::with_clock(Quota::per_second(1).expect("quota"), clock.clone());
    let empty = live(&region);
    for key in 0..KEYS {
        assert!(limiter.check_key(&key).is_ok());
    }
    let full = live(&region);
    clock.advance(Duration::from_secs(2));
    limiter.retain_recent();
    limiter.shrink_to_fit();
    assert!(limiter.is_empty());
    let swept = live(&region);
    report("backstop", empty, full, swept);
}

fn governor() {
    let clock = FakeRelativeClock::default();
    let quota = governor::Quota::per_second(NonZeroU32::new(1).expect("non-zero"));
    let region = Region::new(GLOBAL);
    let limiter = governor::RateLimiter::dashmap_with_clock(quota, clock.clone());
    let empty = live(&region);
    for key in 0..KEYS {
        assert!(limiter.check_key(&key).is_ok());
    }
    let full = live(&region);
    clock.advance(Duration::from_secs(2));
    limiter.retain_recent();
    limiter.shrink_to_fit();
    assert!(limiter.is_empty());
    let swept = live(&region);
    report("governor", empty, full, swept);
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument selects contenders by name.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f));
    if wanted("backstop") {
        backstop();
    }
    if wanted("governor") {
        governor();
    }
}
