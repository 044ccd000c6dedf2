//! Shared by the `cache`, `cache_speed` and `hit_ratio` benches: the contenders
//! (Backstop, moka, quick_cache, Cloudflare's TinyUFO, a mutex-guarded LRU) behind one
//! trait, the synthetic key generators and the speed workloads.

#![allow(dead_code)] // each bench uses a different part

use std::hint::black_box;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use backstop::cache::MemoryCache;

/// One cache under test.
pub(crate) trait Contender: Send + Sync {
    /// A lookup.
    fn get(&self, k: u64) -> Option<u64>;
    /// An insert or replace.
    fn insert(&self, k: u64, v: u64);
}

impl Contender for MemoryCache<u64, u64> {
    fn get(&self, k: u64) -> Option<u64> {
        MemoryCache::get(self, &k)
    }
    fn insert(&self, k: u64, v: u64) {
        MemoryCache::insert(self, k, v)
    }
}

impl Contender for moka::sync::Cache<u64, u64> {
    fn get(&self, k: u64) -> Option<u64> {
        moka::sync::Cache::get(self, &k)
    }
    fn insert(&self, k: u64, v: u64) {
        moka::sync::Cache::insert(self, k, v)
    }
}

impl Contender for quick_cache::sync::Cache<u64, u64> {
    fn get(&self, k: u64) -> Option<u64> {
        quick_cache::sync::Cache::get(self, &k)
    }
    fn insert(&self, k: u64, v: u64) {
        quick_cache::sync::Cache::insert(self, k, v)
    }
}

impl Contender for tinyufo::TinyUfo<u64, u64> {
    fn get(&self, k: u64) -> Option<u64> {
        tinyufo::TinyUfo::get(self, &k)
    }
    fn insert(&self, k: u64, v: u64) {
        tinyufo::TinyUfo::put(self, k, v, 1);
    }
}

pub(crate) struct Lru(Mutex<lru::LruCache<u64, u64>>);

impl Contender for Lru {
    fn get(&self, k: u64) -> Option<u64> {
        self.0.lock().ok()?.get(&k).copied()
    }
    fn insert(&self, k: u64, v: u64) {
        if let Ok(mut c) = self.0.lock() {
            c.put(k, v);
        }
    }
}

/// quick_cache's name in the output: it counts hits and misses only when built with
/// its `stats` feature (this package's `bench-quick-cache-stats`).
pub(crate) const QUICK_CACHE: &str = if cfg!(feature = "bench-quick-cache-stats") {
    "quick_cache_stats"
} else {
    "quick_cache"
};

pub(crate) fn contenders(capacity: u64) -> Vec<(&'static str, Box<dyn Contender>)> {
    let lru_cap = NonZeroUsize::new(capacity as usize).expect("capacity > 0");
    vec![
        (
            "backstop",
            Box::new(
                MemoryCache::<u64, u64>::builder()
                    .max_capacity(capacity)
                    .build()
                    .expect("valid config"),
            ),
        ),
        ("moka", Box::new(moka::sync::Cache::new(capacity))),
        (
            QUICK_CACHE,
            Box::new(quick_cache::sync::Cache::new(capacity as usize)),
        ),
        (
            "tinyufo",
            Box::new(tinyufo::TinyUfo::new(capacity as usize, capacity as usize)),
        ),
        (
            "lru",
            Box::new(Lru(Mutex::new(lru::LruCache::new(lru_cap)))),
        ),
    ]
}

/// Zipf(s) over `0..n` by inverse CDF, driven by a xorshift generator.
pub(crate) fn zipf_keys(n: u64, s: f64, len: usize, seed: u64) -> Vec<u64> {
    let mut cdf = Vec::with_capacity(n as usize);
    let mut sum = 0.0;
    for i in 1..=n {
        sum += 1.0 / (i as f64).powf(s);
        cdf.push(sum);
    }
    let mut rng = XorShift(seed | 1);
    (0..len)
        .map(|_| {
            let u = rng.unit() * sum;
            cdf.partition_point(|c| *c < u) as u64
        })
        .collect()
}

pub(crate) struct XorShift(pub(crate) u64);

impl XorShift {
    /// The next 64 random bits.
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Keys per speed-workload trace; a run cycles through them.
const TRACE: usize = 1 << 16;

/// The operations the speed benches time: `cache` with criterion, one contender after
/// another, and `cache_speed` alternating between contenders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Workload {
    /// A warm cache holding all 100,000 keys, read with Zipf(1.0) keys.
    GetHit,
    /// Inserts of uniformly random keys from 1,000,000 into a cache of 10,000 (nearly
    /// every insert evicts).
    Insert,
    /// 90% get / 10% insert, Zipf(1.0) over 100,000 keys, capacity 10,000.
    Mixed,
}

impl Workload {
    pub(crate) const ALL: [Workload; 3] = [Workload::GetHit, Workload::Insert, Workload::Mixed];

    /// The criterion group's name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Workload::GetHit => "cache_get_hit",
            Workload::Insert => "cache_insert",
            Workload::Mixed => "cache_mixed",
        }
    }

    pub(crate) fn capacity(self) -> u64 {
        match self {
            Workload::GetHit => 100_000,
            Workload::Insert | Workload::Mixed => 10_000,
        }
    }

    /// The keys a run cycles through.
    pub(crate) fn trace(self) -> Vec<u64> {
        match self {
            Workload::GetHit => zipf_keys(100_000, 1.0, TRACE, 7),
            Workload::Insert => {
                let mut rng = XorShift(11);
                (0..TRACE).map(|_| rng.next() % 1_000_000).collect()
            }
            Workload::Mixed => zipf_keys(100_000, 1.0, TRACE, 13),
        }
    }

    /// Brings a new cache to the workload's starting state.
    pub(crate) fn prepare(self, cache: &dyn Contender, trace: &[u64]) {
        match self {
            Workload::GetHit => (0..self.capacity()).for_each(|k| cache.insert(k, k)),
            Workload::Insert => {}
            Workload::Mixed => trace.iter().for_each(|&k| cache.insert(k, k)),
        }
    }

    /// Runs the workload on `threads` threads, `iters` operations each, and returns the
    /// wall time.
    pub(crate) fn run(
        self,
        cache: &dyn Contender,
        threads: usize,
        iters: u64,
        trace: &[u64],
    ) -> Duration {
        match self {
            Workload::GetHit => run(threads, iters, trace, &|_, k| {
                black_box(cache.get(k));
            }),
            Workload::Insert => run(threads, iters, trace, &|i, k| cache.insert(k, i as u64)),
            Workload::Mixed => run(threads, iters, trace, &|i, k| {
                if i % 10 == 0 {
                    cache.insert(k, k);
                } else {
                    black_box(cache.get(k));
                }
            }),
        }
    }
}

/// Runs `op` over the trace on `threads` threads, `iters` operations each, in wall time.
pub(crate) fn run(
    threads: usize,
    iters: u64,
    trace: &[u64],
    op: &(dyn Fn(usize, u64) + Sync),
) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                let offset = t * 7919;
                for i in 0..iters as usize {
                    op(i, trace[(i + offset) % trace.len()]);
                }
            });
        }
    });
    start.elapsed()
}
