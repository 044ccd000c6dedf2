//! An LLM-response cache shared by two gateway processes: each has its own in-memory L1,
//! both share a Redis L2, and each keeps a redb L3 on disk that survives restarts.
//!
//! ```sh
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --release --example tiered_cache --features redis,persistent
//! # or a Redis Cluster, from any of its nodes:
//! REDIS_CLUSTER_NODES=10.0.0.1:6379,10.0.0.2:6379 cargo run --release --example tiered_cache --features redis,persistent
//! ```
//!
//! Each gateway's L1 is subscribed to the other's writes through Redis
//! (`RedisTier::invalidate_l1`). Without `REDIS_CLUSTER_NODES` or `REDIS_URL` it runs with
//! memory and disk tiers only and says so. It prints the
//! hits answered by each tier, the loader calls the cache saved, and the latency cost.

use backstop::breaker::Breaker;
use backstop::cache::{
    Entry, GuardedTier, L1Invalidation, MemoryTier, PersistentTier, RedisTier, RedisTierConfig,
    TieredCache, TieredConfig, ValueCodec,
};
use backstop::redis::RedisConfig;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

type ResponseCache = TieredCache<String, String>;

/// A pretend LLM: 30 ms per call, answers derived from the prompt.
async fn complete(prompt: String, calls: Arc<AtomicU64>) -> Result<Option<String>, std::io::Error> {
    calls.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(30)).await;
    Ok(Some(format!("completion for [{prompt}]")))
}

/// The Redis the environment names: a cluster (`REDIS_CLUSTER_NODES`) or one server
/// (`REDIS_URL`).
fn redis_from_env() -> Option<RedisConfig> {
    if let Ok(nodes) = std::env::var("REDIS_CLUSTER_NODES")
        && !nodes.is_empty()
    {
        return Some(RedisConfig::cluster(nodes.split(',')));
    }
    std::env::var("REDIS_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .map(RedisConfig::url)
}

async fn gateway(
    name: &str,
    redis: Option<&RedisConfig>,
    dir: &std::path::Path,
) -> (ResponseCache, Option<L1Invalidation>) {
    let config = TieredConfig {
        fresh_for: Duration::from_secs(600),
        stale_grace: Some(Duration::from_secs(60)),
        ..TieredConfig::default()
    };
    let memory = MemoryTier::with_capacity(200).expect("a positive capacity is valid");
    let l1 = memory.cache().clone();
    let mut builder = TieredCache::builder()
        .config(config)
        .memory(memory, Some(Duration::from_secs(60)));
    let mut invalidation = None;
    if let Some(redis) = redis {
        let redis_config = RedisTierConfig {
            namespace: "backstop-example:llm:".to_string(),
            ..RedisTierConfig::default()
        };
        let redis: RedisTier<Entry<String>> = RedisTier::connect_to(redis, redis_config)
            .await
            .expect("the Redis the environment names is reachable");
        // The other gateway's writes drop this one's L1 copies.
        invalidation = Some(redis.invalidate_l1(l1));
        let breaker = Breaker::builder()
            .name("redis-l2")
            .consecutive_failures(5)
            .build()
            .expect("valid breaker config");
        builder = builder.tier(GuardedTier::new(redis, breaker), None);
    }
    let disk = PersistentTier::open(dir.join(format!("{name}.redb")), ValueCodec::new())
        .expect("the example's temp dir is writable");
    let cache = builder
        .tier(disk, None)
        .build()
        .expect("valid tiered cache");
    (cache, invalidation)
}

/// A skewed prompt mix: a few prompts are asked very often, most rarely (Zipf-like).
fn prompt(request: u64) -> String {
    let mut x = request.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
    x ^= x >> 7;
    let rank = (x % 1000) as f64 / 1000.0;
    format!("prompt-{}", (rank.powi(4) * 500.0) as u64)
}

#[tokio::main]
async fn main() {
    let redis = redis_from_env();
    match &redis {
        None => println!(
            "neither REDIS_CLUSTER_NODES nor REDIS_URL is set: running with memory and disk tiers only (no shared L2)"
        ),
        Some(config) if !config.cluster_nodes.is_empty() => println!(
            "shared L2: a Redis Cluster, {} seed nodes",
            config.cluster_nodes.len()
        ),
        Some(_) => println!("shared L2: one Redis server"),
    }
    let dir = std::env::temp_dir().join(format!("backstop-tiered-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir is writable");

    let (a, a_invalidation) = gateway("gateway-a", redis.as_ref(), &dir).await;
    let (b, b_invalidation) = gateway("gateway-b", redis.as_ref(), &dir).await;
    for subscription in [&a_invalidation, &b_invalidation].into_iter().flatten() {
        subscription.subscribed().await;
    }
    let gateways = [a, b];
    if redis.is_some() {
        // Everything in this example's Redis namespace, and nothing outside it.
        gateways[0].invalidate_all().await.expect("a clean start");
    }
    let llm_calls = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let requests = 2_000u64;
    let mut tasks = Vec::new();
    for worker in 0..16u64 {
        let gateways = gateways.clone();
        let llm_calls = llm_calls.clone();
        tasks.push(tokio::spawn(async move {
            for request in (worker..requests).step_by(16) {
                let cache = &gateways[(request % 2) as usize];
                let prompt = prompt(request);
                let calls = llm_calls.clone();
                let key = prompt.clone();
                cache
                    .get_or_load(&key, move || complete(prompt, calls))
                    .await
                    .expect("the pretend LLM never fails");
            }
        }));
    }
    for task in tasks {
        task.await.expect("workers do not panic");
    }
    let elapsed = started.elapsed();

    for (name, cache) in ["gateway-a", "gateway-b"].iter().zip(&gateways) {
        let stats = cache.stats();
        let answered: u64 = stats.hits_by_tier.iter().sum::<u64>() + stats.misses;
        for ((tier, _), hits) in stats.tiers.iter().zip(&stats.hits_by_tier) {
            println!(
                "hit_rate workload=zipf_llm contender={name}/{tier} value={:.3}",
                *hits as f64 / answered.max(1) as f64
            );
        }
        println!(
            "{name}: lookups={answered} loads={} load_p95={:?}",
            stats.loads, stats.load_time.p95
        );
    }
    for (name, subscription) in [
        ("gateway-a", &a_invalidation),
        ("gateway-b", &b_invalidation),
    ] {
        if let Some(subscription) = subscription {
            println!(
                "{name}: l1_invalidations_applied={}",
                subscription.stats().applied
            );
        }
    }
    let calls = llm_calls.load(Ordering::Relaxed);
    println!(
        "requests={requests} llm_calls={calls} saved={:.1}% elapsed={elapsed:?} (uncached would take >= {:?})",
        100.0 * (1.0 - calls as f64 / requests as f64),
        Duration::from_millis(30) * (requests / 16) as u32
    );
    let _ = std::fs::remove_dir_all(&dir);
}
