//! Shared by the `cache` and `hit_ratio` benches: the contenders (Backstop, moka,
//! quick_cache, Cloudflare's TinyUFO, a mutex-guarded LRU) behind one trait and the
//! synthetic key generators.

#![allow(dead_code)] // each bench uses a different part

use std::num::NonZeroUsize;
use std::sync::Mutex;

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
            "quick_cache",
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
