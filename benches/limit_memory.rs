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
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DashMapStateStore;
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

/// What the measurement does with a contender's keyed limiter.
trait KeyedLimiter {
    /// Whether one call for `key` is admitted.
    fn admit(&self, key: &u64) -> bool;
    /// Drops every idle key and the map's spare capacity; whether no key is left.
    fn sweep(&self) -> bool;
}

// Both contenders name these operations alike.
macro_rules! keyed_limiter {
    ($($limiter:ty),*) => {$(
        impl KeyedLimiter for $limiter {
            fn admit(&self, key: &u64) -> bool {
                self.check_key(key).is_ok()
            }

            fn sweep(&self) -> bool {
                self.retain_recent();
                self.shrink_to_fit();
                self.is_empty()
            }
        }
    )*};
}

/// What `governor::RateLimiter::dashmap_with_clock` builds on the test clock.
type GovernorKeyed =
    governor::RateLimiter<u64, DashMapStateStore<u64>, FakeRelativeClock, NoOpMiddleware<Nanos>>;

keyed_limiter!(KeyedRateLimiter<u64, ManualClock>, GovernorKeyed);

/// Measures `limiter`, built under `region`: the live heap empty, with `KEYS` keys
/// admitted, and swept once `idle` has made every key idle.
fn measure(
    contender: &str,
    region: &Region<'_, System>,
    limiter: &impl KeyedLimiter,
    idle: impl FnOnce(),
) {
    let empty = live(region);
    for key in 0..KEYS {
        assert!(limiter.admit(&key));
    }
    let full = live(region);
    idle();
    assert!(limiter.sweep());
    let swept = live(region);
    report(contender, empty, full, swept);
}

fn backstop() {
    let clock = ManualClock::new();
    let region = Region::new(GLOBAL);
    let limiter = KeyedRateLimiter::with_clock(Quota::per_second(1).expect("quota"), clock.clone());
    measure("backstop", &region, &limiter, || {
        clock.advance(Duration::from_secs(2));
    });
}

fn governor() {
    let clock = FakeRelativeClock::default();
    let quota = governor::Quota::per_second(NonZeroU32::new(1).expect("non-zero"));
    let region = Region::new(GLOBAL);
    let limiter = GovernorKeyed::dashmap_with_clock(quota, clock.clone());
    measure("governor", &region, &limiter, || {
        clock.advance(Duration::from_secs(2));
    });
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
