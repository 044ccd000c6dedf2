//! Speed of the in-memory cache against moka, quick_cache and a mutex-guarded LRU.
//!
//! `cargo bench -p backstop --bench cache`
//!
//! - `cache_get_hit`: a warm cache holding all 100,000 keys, read with Zipf(1.0) keys.
//! - `cache_insert`: inserts of uniformly random keys from 1,000,000 into a cache of 10,000
//!   (nearly every insert evicts).
//! - `cache_mixed`: 90% get / 10% insert, Zipf(1.0) over 100,000 keys, capacity 10,000.
//!
//! Each group runs with 1 and 2 threads (`<contender>/<threads>`); with 2 threads the time
//! is wall time per operation of each thread. Hit ratios are printed by the
//! `cache_hit_ratio` bench.

mod cache_support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use cache_support::{XorShift, contenders, zipf_keys};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const TRACE: usize = 1 << 16;

/// Runs `op` over the trace on `threads` threads, `iters` operations each, in wall time.
fn run(threads: usize, iters: u64, trace: &[u64], op: &(dyn Fn(usize, u64) + Sync)) -> Duration {
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

fn get_hit(c: &mut Criterion) {
    const KEYS: u64 = 100_000;
    let trace = zipf_keys(KEYS, 1.0, TRACE, 7);
    let mut g = c.benchmark_group("cache_get_hit");
    g.throughput(Throughput::Elements(1));
    for threads in [1usize, 2] {
        for (name, cache) in contenders(KEYS) {
            for k in 0..KEYS {
                cache.insert(k, k);
            }
            g.bench_function(BenchmarkId::new(name, threads), |b| {
                b.iter_custom(|iters| {
                    run(threads, iters, &trace, &|_, k| {
                        black_box(cache.get(k));
                    })
                })
            });
        }
    }
    g.finish();
}

fn insert(c: &mut Criterion) {
    let mut rng = XorShift(11);
    let trace: Vec<u64> = (0..TRACE).map(|_| rng.next() % 1_000_000).collect();
    let mut g = c.benchmark_group("cache_insert");
    g.throughput(Throughput::Elements(1));
    for threads in [1usize, 2] {
        for (name, cache) in contenders(10_000) {
            g.bench_function(BenchmarkId::new(name, threads), |b| {
                b.iter_custom(|iters| {
                    run(threads, iters, &trace, &|i, k| cache.insert(k, i as u64))
                })
            });
        }
    }
    g.finish();
}

fn mixed(c: &mut Criterion) {
    let trace = zipf_keys(100_000, 1.0, TRACE, 13);
    let mut g = c.benchmark_group("cache_mixed");
    g.throughput(Throughput::Elements(1));
    for threads in [1usize, 2] {
        for (name, cache) in contenders(10_000) {
            for &k in &trace {
                cache.insert(k, k);
            }
            g.bench_function(BenchmarkId::new(name, threads), |b| {
                b.iter_custom(|iters| {
                    run(threads, iters, &trace, &|i, k| {
                        if i % 10 == 0 {
                            cache.insert(k, k);
                        } else {
                            black_box(cache.get(k));
                        }
                    })
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, get_hit, insert, mixed);
criterion_main!(benches);
