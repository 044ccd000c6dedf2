//! What a rate-limit decision costs, against governor on the same quota and clock.
//!
//! `cargo bench -p backstop --bench limit`
//!
//! Both limiters read a quanta (TSC) clock — governor's default, and
//! `backstop_core::QuantaClock` for backstop — and use a quota of 10^9 cells per second with
//! a burst of 10^9, so every check is admitted and the figures are the decision alone.
//!
//! - group `limit_check`: one direct limiter, one thread.
//! - group `limit_check_keyed`: a keyed limiter over 10,000 pre-populated `u64` keys visited
//!   in turn, one thread; both use dashmap with std's `RandomState`.
//! - group `limit_check_contended`: 2 threads checking one direct limiter; one iteration
//!   is one check on each thread (so the time is per pair of concurrent checks).
//! - group `limit_redis`: one decision through the Redis at `REDIS_URL` on loopback, as
//!   checks/s (criterion's throughput): `backstop` is `RedisRateLimiter::check_key` (GCRA
//!   Lua script, `EVALSHA`), `script` a hand-written fixed window (`INCR` + `EXPIRE` in one
//!   Lua script, `EVALSHA`), each one round trip. Without `REDIS_URL` the group prints a
//!   skip line and measures nothing. With `REDIS_CLUSTER_NODES` it also measures
//!   `cluster/backstop` (the limiter on a cluster `RedisConnection`) against
//!   `cluster/redis-rs`, a bare redis-rs cluster client sending the same GCRA script
//!   (`EVALSHA`) to the same key: Backstop's overhead over one cluster round trip.

mod redis_support;

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use backstop::core::QuantaClock;
use backstop::limit::{KeyedRateLimiter, Quota, RateLimiter, RedisRateLimiter};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use redis_support::{bare_cluster_connection, cluster_nodes, redis_client};

const RATE: u32 = 1_000_000_000;
const KEYS: u64 = 10_000;

fn backstop_quota() -> Quota {
    Quota::per_second(u64::from(RATE)).expect("valid quota")
}

fn governor_quota() -> governor::Quota {
    governor::Quota::per_second(NonZeroU32::new(RATE).expect("non-zero"))
}

fn limit_check(c: &mut Criterion) {
    let mut group = c.benchmark_group("limit_check");
    let ours = RateLimiter::with_clock(backstop_quota(), QuantaClock::new());
    group.bench_function("backstop", |b| b.iter(|| black_box(ours.check().is_ok())));
    let theirs = governor::RateLimiter::direct(governor_quota());
    group.bench_function("governor", |b| b.iter(|| black_box(theirs.check().is_ok())));
    group.finish();
}

fn limit_check_keyed(c: &mut Criterion) {
    let mut group = c.benchmark_group("limit_check_keyed");
    let ours = KeyedRateLimiter::with_clock(backstop_quota(), QuantaClock::new());
    let theirs = governor::RateLimiter::dashmap(governor_quota());
    for key in 0..KEYS {
        assert!(ours.check_key(&key).is_ok());
        assert!(theirs.check_key(&key).is_ok());
    }
    let mut next = 0u64;
    group.bench_function("backstop", |b| {
        b.iter(|| {
            next = (next + 1) % KEYS;
            black_box(ours.check_key(&next).is_ok())
        })
    });
    group.bench_function("governor", |b| {
        b.iter(|| {
            next = (next + 1) % KEYS;
            black_box(theirs.check_key(&next).is_ok())
        })
    });
    group.finish();
}

/// Runs `check` `iters` times on each of two threads started together; returns the wall
/// time of the slower thread.
fn two_threads(iters: u64, check: Arc<dyn Fn() -> bool + Send + Sync>) -> Duration {
    let barrier = Arc::new(Barrier::new(2));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (barrier, check) = (barrier.clone(), check.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(check());
                }
                start.elapsed()
            })
        })
        .collect();
    workers
        .into_iter()
        .map(|w| w.join().expect("bench thread"))
        .max()
        .unwrap_or_default()
}

fn limit_check_contended(c: &mut Criterion) {
    let mut group = c.benchmark_group("limit_check_contended");
    // A limiter is a cheap-clone handle: the threads share it without an `Arc` around it.
    let ours = RateLimiter::with_clock(backstop_quota(), QuantaClock::new());
    group.bench_function("backstop", |b| {
        b.iter_custom(|iters| {
            let ours = ours.clone();
            two_threads(iters, Arc::new(move || ours.check().is_ok()))
        })
    });
    let theirs = Arc::new(governor::RateLimiter::direct(governor_quota()));
    group.bench_function("governor", |b| {
        b.iter_custom(|iters| {
            let theirs = theirs.clone();
            two_threads(iters, Arc::new(move || theirs.check().is_ok()))
        })
    });
    group.finish();
}

const FIXED_WINDOW: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
";

fn limit_redis(c: &mut Criterion) {
    let Some((client, rt)) = redis_client("limit_redis") else {
        return;
    };
    let prefix = format!("bench:limit:{}", std::process::id());
    let ours = RedisRateLimiter::new(client.clone(), &prefix, &[backstop_quota()])
        .expect("valid quota")
        .with_timeout(Duration::from_secs(1));
    let mut conn = rt
        .block_on(client.get_multiplexed_async_connection())
        .expect("connect to REDIS_URL");
    let script = redis::Script::new(FIXED_WINDOW);
    let window_key = format!("{prefix}:script");

    let mut group = c.benchmark_group("limit_redis");
    group.throughput(Throughput::Elements(1));
    group.bench_function("backstop", |b| {
        b.to_async(&rt).iter(|| async {
            let decision = ours.check_key("user").await.expect("decision");
            black_box(decision.admitted)
        })
    });
    group.bench_function("script", |b| {
        b.to_async(&rt).iter(|| {
            let mut conn = conn.clone();
            let mut invocation = script.prepare_invoke();
            invocation.key(&window_key).arg(60);
            async move {
                let count: u64 = invocation.invoke_async(&mut conn).await.expect("EVALSHA");
                black_box(count <= u64::from(RATE))
            }
        })
    });
    limit_redis_cluster(&mut group, &rt, &prefix);
    group.finish();
    let _: redis::RedisResult<()> = rt.block_on(async {
        redis::cmd("DEL")
            .arg(&window_key)
            .arg(ours.redis_key("user", 0))
            .query_async(&mut conn)
            .await
    });
}

/// `cluster/backstop` against `cluster/redis-rs` (the same GCRA script on the same key
/// through a bare cluster client), when `REDIS_CLUSTER_NODES` names a cluster.
fn limit_redis_cluster(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    prefix: &str,
) {
    use backstop::redis::{RedisConfig, RedisConnection};
    let Some(nodes) = cluster_nodes("limit_redis") else {
        return;
    };
    let connection = RedisConnection::new(&RedisConfig::cluster(nodes.split(',')))
        .expect("REDIS_CLUSTER_NODES are valid seeds");
    let ours = RedisRateLimiter::new(connection, prefix, &[backstop_quota()])
        .expect("valid quota")
        .with_timeout(Duration::from_secs(1));
    let bare = rt.block_on(bare_cluster_connection(&nodes));
    let script = redis::Script::new(RedisRateLimiter::script_source());
    let key = ours.redis_key("user", 0);
    group.bench_function("cluster/backstop", |b| {
        b.to_async(rt).iter(|| async {
            let decision = ours.check_key("user").await.expect("decision");
            black_box(decision.admitted)
        })
    });
    group.bench_function("cluster/redis-rs", |b| {
        b.to_async(rt).iter(|| {
            let mut conn = bare.clone();
            let mut invocation = script.prepare_invoke();
            // Server time, then emission interval, tolerance and cost in microseconds:
            // what the limiter sends for its quota (a tolerance no cost reaches).
            invocation.key(&key).arg("").arg(0.001).arg(1e9).arg(1);
            async move {
                let decision: (i64, i64, i64, i64) =
                    invocation.invoke_async(&mut conn).await.expect("EVALSHA");
                black_box(decision.0 == 1)
            }
        })
    });
}

criterion_group!(
    benches,
    limit_check,
    limit_check_keyed,
    limit_check_contended,
    limit_redis
);
criterion_main!(benches);
