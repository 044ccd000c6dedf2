//! The flagship: a gateway in front of an LLM provider, built from Backstop layers.
//!
//! ```sh
//! cargo run --release --example agent_gateway            # add REDIS_URL=... for a shared L2
//! ```
//!
//! Outer to inner, each request passes:
//! 1. a per-user rate limit (requests per second, GCRA, keyed);
//! 2. a tiered response cache keyed by model and prompt (memory L1, Redis L2 when
//!    `REDIS_URL` is set), which also coalesces identical in-flight prompts into one call;
//! 3. a bulkhead capping concurrent provider calls;
//! 4. a circuit breaker that sheds load while the provider is failing;
//! 5. the provider itself: here a simulation with 40 ms latency that fails every call
//!    during a 600 ms outage.
//!
//! It prints what happened to every request and each component's stats.

use backstop::breaker::{Breaker, BreakerError, BreakerLayer};
use backstop::cache::{
    Entry, GuardedTier, LoadError, MemoryTier, RedisTier, RedisTierConfig, TieredCache,
    TieredCacheLayer,
};
use backstop::core::{Service, Stack, service_fn};
use backstop::limit::{
    Bulkhead, BulkheadConfig, BulkheadLayer, BulkheadServiceError, KeyedRateLimiter, Quota,
    RateLimitError, RateLimitLayer,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
struct ChatRequest {
    user: String,
    model: String,
    prompt: String,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("provider returned 503")]
struct ProviderUnavailable;

/// The simulated provider: 40 ms per call, down between 0.6 s and 1.2 s after start.
fn provider(
    started: Instant,
    calls: Arc<AtomicU64>,
) -> impl Service<ChatRequest, Response = String, Error = ProviderUnavailable> {
    service_fn(move |request: ChatRequest| {
        calls.fetch_add(1, Ordering::Relaxed);
        async move {
            tokio::time::sleep(Duration::from_millis(40)).await;
            let elapsed = started.elapsed();
            if elapsed > Duration::from_millis(600) && elapsed < Duration::from_millis(1200) {
                return Err(ProviderUnavailable);
            }
            Ok(format!(
                "[{}] answer to '{}'",
                request.model, request.prompt
            ))
        }
    })
}

/// What the caller would turn into an HTTP status.
fn outcome(result: &Result<String, RateLimitError<LoadError>>) -> &'static str {
    let load_error = match result {
        Ok(_) => return "200 ok",
        Err(RateLimitError::Limited(_)) => return "429 rate limited",
        Err(RateLimitError::Inner(error)) => error,
    };
    let LoadError::Loader(inner) = load_error else {
        return "504 loader timeout or panic";
    };
    match inner.downcast_ref::<BulkheadServiceError<BreakerError<ProviderUnavailable>>>() {
        Some(BulkheadServiceError::Bulkhead(_)) => "503 bulkhead full",
        Some(BulkheadServiceError::Inner(BreakerError::Rejected(_))) => "503 circuit open (shed)",
        Some(BulkheadServiceError::Inner(BreakerError::Inner(_))) => "502 provider error",
        None => "500 other",
    }
}

#[tokio::main]
async fn main() {
    let started = Instant::now();
    let provider_calls = Arc::new(AtomicU64::new(0));

    let per_user = Arc::new(KeyedRateLimiter::new(
        Quota::per_second(40)
            .expect("a positive rate")
            .with_burst(20)
            .expect("a positive burst"),
    ));
    let breaker = Breaker::builder()
        .name("llm-provider")
        .count_window(20)
        .minimum_calls(10)
        .failure_rate_threshold(50.0)
        .wait_in_open(Duration::from_millis(300))
        .permitted_calls_in_half_open(3)
        .build()
        .expect("valid breaker config");
    let bulkhead = Bulkhead::new(BulkheadConfig {
        max_concurrent: 8,
        max_queued: 64,
        ..BulkheadConfig::default()
    })
    .expect("valid bulkhead config");

    let mut cache_builder = TieredCache::builder().memory(
        MemoryTier::with_capacity(10_000).expect("a positive capacity"),
        None,
    );
    if let Ok(url) = std::env::var("REDIS_URL") {
        let redis: RedisTier<Entry<String>> = RedisTier::connect(
            &url,
            RedisTierConfig {
                namespace: format!("agent-gateway:{}:", std::process::id()),
                ..RedisTierConfig::default()
            },
        )
        .await
        .expect("REDIS_URL is reachable");
        let redis_breaker = Breaker::builder()
            .name("redis-l2")
            .consecutive_failures(5)
            .build()
            .expect("valid breaker config");
        cache_builder = cache_builder.tier(GuardedTier::new(redis, redis_breaker), None);
        println!("cache tiers: memory L1 + Redis L2 at {url}");
    } else {
        println!("cache tiers: memory L1 only (set REDIS_URL for a shared Redis L2)");
    }
    let cache: TieredCache<String, String> = cache_builder.build().expect("valid cache");

    let gateway = Arc::new(
        Stack::new()
            .layer(RateLimitLayer::keyed(
                per_user.clone(),
                |request: &ChatRequest| request.user.clone(),
                |_| 1,
            ))
            .layer(TieredCacheLayer::new(
                cache.clone(),
                |request: &ChatRequest| Some(format!("{}:{}", request.model, request.prompt)),
            ))
            .layer(BulkheadLayer::new(bulkhead.clone()))
            .layer(BreakerLayer::new(breaker.clone()))
            .service(provider(started, provider_calls.clone())),
    );

    // 12 agents (two per user), each sending 60 requests over ~1.8 s, drawing on 150
    // prompts, so agents often repeat each other's questions.
    let mut agents = Vec::new();
    for agent in 0..12u64 {
        let gateway = gateway.clone();
        agents.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for turn in 0..60u64 {
                let request = ChatRequest {
                    user: format!("user-{}", agent % 6),
                    model: "gpt-small".to_string(),
                    prompt: format!("step {} of the plan", (turn * 5 + agent * 3) % 150),
                };
                outcomes.push(outcome(&gateway.call(request).await));
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            outcomes
        }));
    }
    let mut tally: BTreeMap<&str, u64> = BTreeMap::new();
    for agent in agents {
        for outcome in agent.await.expect("agents do not panic") {
            *tally.entry(outcome).or_default() += 1;
        }
    }

    let total: u64 = tally.values().sum();
    println!("\n{total} requests in {:?}:", started.elapsed());
    for (outcome, count) in &tally {
        println!("  {outcome:<28} {count}");
    }
    println!(
        "provider calls: {} (the cache and coalescing answered the rest)",
        provider_calls.load(Ordering::Relaxed)
    );
    println!("\ncache:    {}", json(&cache.stats()));
    println!("breaker:  {}", json(&breaker.stats()));
    println!("bulkhead: {}", json(&bulkhead.stats()));
    println!("limiter:  {}", json(&per_user.stats()));
}

/// A stats snapshot as one JSON line.
fn json<T: serde::Serialize>(stats: &T) -> String {
    serde_json::to_string(stats).unwrap_or_else(|error| format!("<{error}>"))
}
