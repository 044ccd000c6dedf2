//! Speed of the in-memory cache against moka, quick_cache and a mutex-guarded LRU.
//!
//! `cargo bench -p backstop --bench cache`
//!
//! - `cache_get_hit`: a warm cache holding all 100,000 keys, read with Zipf(1.0) keys.
//! - `cache_insert`: inserts of uniformly random keys from 1,000,000 into a cache of 10,000
//!   (nearly every insert evicts).
//! - `cache_mixed`: 90% get / 10% insert, Zipf(1.0) over 100,000 keys, capacity 10,000.
//!
//! - `tiered_get_l1_hit`: a hit in the memory L1 through `TieredCache` against the same
//!   `MemoryCache` read bare (`backstop_memory`).
//! - `tiered_get_l2_hit`: a hit in Redis on loopback through `TieredCache` against a bare
//!   `GET` + decode with the redis crate (`redis`); needs `REDIS_URL`, skipped without it.
//!   With `REDIS_CLUSTER_NODES`, also `cluster/backstop` (the tier on a cluster
//!   `RedisConnection`) against `cluster/redis-rs` (a bare redis-rs cluster client's `GET`
//!   + decode of the same key).
//! - `get_or_load_cold`: 64 concurrent callers on a cold key with a 1 ms loader against
//!   moka's `future::Cache::get_with`.
//!
//! The first three groups run with 1 and 2 threads (`<contender>/<threads>`); with 2 threads the time
//! is wall time per operation of each thread. Hit ratios are printed by the
//! `hit_ratio` bench.

mod cache_support;
#[cfg(feature = "redis")]
mod redis_support;

use std::future::Future;
use std::hint::black_box;

use backstop::cache::{Entry, MemoryCache, MemoryTier, TieredCache};
#[cfg(feature = "redis")]
use backstop::cache::{RedisTier, RedisTierConfig, ValueCodec};
use cache_support::{Workload, contenders};
#[cfg(feature = "redis")]
use criterion::{BenchmarkGroup, measurement::WallTime};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
#[cfg(feature = "redis")]
use redis_support::{bare_cluster_connection, cluster_nodes, redis_url};

/// One criterion group per speed workload, each contender with 1 and 2 threads.
fn speed(c: &mut Criterion) {
    for workload in Workload::ALL {
        let trace = workload.trace();
        let mut g = c.benchmark_group(workload.name());
        g.throughput(Throughput::Elements(1));
        for threads in [1usize, 2] {
            for (name, cache) in contenders(workload.capacity()) {
                workload.prepare(cache.as_ref(), &trace);
                g.bench_function(BenchmarkId::new(name, threads), |b| {
                    b.iter_custom(|iters| workload.run(cache.as_ref(), threads, iters, &trace))
                });
            }
        }
        g.finish();
    }
}

fn tiered_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime builds")
}

/// An L1 hit through the tiered cache against the same memory cache used bare.
fn tiered_get_l1_hit(c: &mut Criterion) {
    let runtime = tiered_runtime();
    let mut group = c.benchmark_group("tiered_get_l1_hit");
    let keys: Vec<String> = (0..1024).map(|i| format!("prompt:{i}")).collect();
    let bare = MemoryCache::<String, Entry<String>>::builder()
        .max_capacity(10_000)
        .build()
        .expect("valid");
    let tiered: TieredCache<String, String> = TieredCache::builder()
        .memory(MemoryTier::new(bare.clone()), None)
        .build()
        .expect("valid");
    runtime.block_on(async {
        for key in &keys {
            tiered
                .insert(key, "cached answer".to_string())
                .await
                .expect("memory tier write");
        }
    });
    // An L1 hit completes on its first poll, so it is polled once, in place, like the
    // bare cache is called: no executor is timed on either side.
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    let mut i = 0usize;
    group.bench_function("backstop", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            let mut lookup = std::pin::pin!(tiered.get(&keys[i]));
            match lookup.as_mut().poll(&mut context) {
                std::task::Poll::Ready(value) => black_box(value),
                std::task::Poll::Pending => unreachable!("an L1 hit never waits"),
            }
        })
    });
    let mut i = 0usize;
    group.bench_function("backstop_memory", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            black_box(bare.get(&keys[i]))
        })
    });
    group.finish();
}

/// A Redis hit on loopback through the tiered cache (L2 only) against a bare GET + decode.
#[cfg(feature = "redis")]
fn tiered_get_l2_hit(c: &mut Criterion) {
    let Some(url) = redis_url("tiered_get_l2_hit") else {
        return;
    };
    let runtime = tiered_runtime();
    let mut group = c.benchmark_group("tiered_get_l2_hit");
    let namespace = format!("bench:{}:", std::process::id());
    let config = RedisTierConfig {
        namespace: namespace.clone(),
        ..RedisTierConfig::default()
    };
    let (tiered, connection) = runtime.block_on(async {
        let l2 = RedisTier::connect(&url, config)
            .await
            .expect("redis reachable");
        let client = redis::Client::open(url.as_str()).expect("valid url");
        let connection = client
            .get_multiplexed_async_connection()
            .await
            .expect("redis reachable");
        (tiered_with_hit(l2).await, connection)
    });
    let contenders = ["backstop", "redis"];
    l2_hit(
        &mut group, &runtime, &tiered, connection, &namespace, contenders,
    );
    tiered_get_l2_hit_cluster(&mut group, &runtime, &namespace);
    group.finish();
}

/// `cluster/backstop` against `cluster/redis-rs`, when `REDIS_CLUSTER_NODES` names a
/// cluster.
#[cfg(feature = "redis")]
fn tiered_get_l2_hit_cluster(
    group: &mut BenchmarkGroup<'_, WallTime>,
    runtime: &tokio::runtime::Runtime,
    namespace: &str,
) {
    use backstop::redis::RedisConfig;
    let Some(nodes) = cluster_nodes("tiered_get_l2_hit") else {
        return;
    };
    let config = RedisTierConfig {
        namespace: namespace.to_string(),
        ..RedisTierConfig::default()
    };
    let (tiered, bare) = runtime.block_on(async {
        let l2 = RedisTier::connect_to(&RedisConfig::cluster(nodes.split(',')), config)
            .await
            .expect("the cluster is reachable");
        (
            tiered_with_hit(l2).await,
            bare_cluster_connection(&nodes).await,
        )
    });
    let contenders = ["cluster/backstop", "cluster/redis-rs"];
    l2_hit(group, runtime, &tiered, bare, namespace, contenders);
}

/// The key every L2 hit reads.
#[cfg(feature = "redis")]
const HIT: &str = "hit";

/// A tiered cache over `l2` alone, holding an answer at [`HIT`].
#[cfg(feature = "redis")]
async fn tiered_with_hit(l2: RedisTier<Entry<String>>) -> TieredCache<String, String> {
    let tiered: TieredCache<String, String> = TieredCache::builder()
        .tier(l2, None)
        .build()
        .expect("valid");
    tiered
        .insert(&HIT.to_string(), "cached answer".to_string())
        .await
        .expect("redis write");
    tiered
}

/// `ours` (the hit through `tiered`) against `theirs` (a GET of the same entry in
/// `namespace` through `bare`, and a decode); the entry is removed afterwards.
#[cfg(feature = "redis")]
fn l2_hit<C: redis::aio::ConnectionLike + Clone>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    runtime: &tokio::runtime::Runtime,
    tiered: &TieredCache<String, String>,
    bare: C,
    namespace: &str,
    [ours, theirs]: [&str; 2],
) {
    let key = HIT.to_string();
    group.bench_function(ours, |b| {
        b.to_async(runtime)
            .iter(|| async { black_box(tiered.get(&key).await) })
    });
    let full_key = format!("{namespace}{HIT}");
    let codec = ValueCodec::new();
    group.bench_function(theirs, |b| {
        b.to_async(runtime).iter(|| {
            let mut connection = bare.clone();
            let full_key = &full_key;
            async move {
                let bytes: Option<Vec<u8>> = redis::cmd("GET")
                    .arg(full_key)
                    .query_async(&mut connection)
                    .await
                    .expect("redis GET");
                black_box(
                    bytes.map(|bytes| codec.decode::<Entry<String>>(&bytes).expect("decodes")),
                )
            }
        })
    });
    runtime.block_on(async {
        let _ = tiered.remove(&key).await;
    });
}

#[cfg(not(feature = "redis"))]
fn tiered_get_l2_hit(_: &mut Criterion) {}

/// 64 concurrent callers on a cold key with a 1 ms loader.
fn get_or_load_cold(c: &mut Criterion) {
    const CALLERS: usize = 64;
    let runtime = tiered_runtime();
    let mut group = c.benchmark_group("get_or_load_cold");
    group.sample_size(20);
    let loader = || async {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        Ok::<_, std::io::Error>(Some("loaded answer".to_string()))
    };
    let mut round = 0u64;
    group.bench_function("backstop", |b| {
        b.to_async(&runtime).iter(|| {
            round += 1;
            let tiered: TieredCache<String, String> = TieredCache::builder()
                .memory(
                    MemoryTier::with_capacity(1_000).expect("valid capacity"),
                    None,
                )
                .build()
                .expect("valid");
            let key = format!("cold:{round}");
            async move {
                let calls = (0..CALLERS).map(|_| tiered.get_or_load(&key, loader));
                black_box(futures::future::join_all(calls).await)
            }
        })
    });
    group.bench_function("moka", |b| {
        b.to_async(&runtime).iter(|| {
            round += 1;
            let cache: moka::future::Cache<String, String> = moka::future::Cache::new(1_000);
            let key = format!("cold:{round}");
            async move {
                let calls = (0..CALLERS).map(|_| {
                    cache.get_with(key.clone(), async {
                        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                        "loaded answer".to_string()
                    })
                });
                black_box(futures::future::join_all(calls).await)
            }
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    speed,
    tiered_get_l1_hit,
    tiered_get_l2_hit,
    get_or_load_cold
);
criterion_main!(benches);
