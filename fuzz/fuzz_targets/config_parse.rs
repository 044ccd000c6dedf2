//! Any text is either a typed error naming what is wrong, or a configuration whose rules
//! all hold and whose sections build their primitives, which then work for a few
//! operations on paused time; nothing panics, hangs or waits past its configured bound.
#![no_main]

use backstop::config::BackstopConfig;
use backstop::core::config::{MAX_DURATION, Validate};
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

#[path = "../../tests/support/connections.rs"]
mod connections;
use connections::Connections;

/// The call finishes within `bound` (plus a second) of paused time.
async fn bounded<T>(bound: Duration, call: impl Future<Output = T>) -> T {
    let limit = bound.min(MAX_DURATION) + Duration::from_secs(1);
    tokio::time::timeout(limit, call)
        .await
        .expect("a call waited past its configured bound")
}

async fn drive(config: &BackstopConfig) {
    if let Some(limit) = &config.limit {
        let user = "user".to_string();
        if let Some(requests) = limit.requests_limiter().expect("validated quotas build") {
            let _ = requests.check_key(&user);
        }
        if let Some(tokens) = limit.tokens_limiter().expect("validated quotas build") {
            let _ = tokens.check_key_n(&user, 1_000);
        }
        let fallback = backstop::limit::Quota::per_second(1).expect("a valid quota");
        let budget = limit
            .budget_limiter(fallback, fallback)
            .expect("validated quotas build one budget");
        let _ = budget.check_key_costs(&user, &[1, 10]);
        if let Some(bulkhead) = limit.bulkhead().expect("a validated bulkhead builds") {
            let wait = limit.bulkhead.and_then(|b| b.max_wait).unwrap_or_default();
            let _ = bounded(wait, bulkhead.acquire()).await;
        }
    }
    if let Some(registry) = config.breakers().expect("validated breakers build") {
        let _ = bounded(
            MAX_DURATION,
            registry.get("p").call(|| async { Err::<(), _>(()) }),
        )
        .await;
    }
    if let Some(batch) = &config.batch {
        let batcher = backstop::batch::Batcher::new(batch.clone(), |items: Vec<u32>| async move {
            Ok::<_, std::io::Error>(items)
        })
        .expect("a validated batcher builds");
        let bound = batch.max_delay + batch.queue_timeout.unwrap_or_default();
        let _ = bounded(bound, batcher.submit(1)).await;
    }
    if let Some(dedup) = &config.dedup {
        let window = backstop::dedup::DedupWindow::<String, u32, ()>::new(dedup.clone())
            .expect("a validated window builds");
        let bound = dedup.follower_timeout.unwrap_or(MAX_DURATION);
        let _ = bounded(bound, window.work("k".to_string(), || async { Ok(1) })).await;
    }
    if let Some(pool) = &config.pool {
        if let Ok(handle) = backstop::pool::Pool::new(Connections, pool.clone()) {
            let _ = bounded(pool.wait_timeout, handle.get()).await;
        }
    }
    if let Some(retry) = &config.retry {
        let retry = retry.clone().build().expect("a validated retry builds");
        let _ = bounded(
            MAX_DURATION,
            retry.call(|| async { Err::<(), _>(std::io::Error::other("down")) }),
        )
        .await;
    }
    if let Some(scale) = &config.scale {
        let mut policy = scale.policy().expect("a validated policy builds");
        let _ = policy.decide(&backstop::scale::Observation::new(
            Duration::from_secs(60),
            1,
            1,
        ));
    }
    if let Some(cache) = &config.cache {
        if cache.redis.is_none() && cache.persistent.is_none() {
            let cache = cache
                .build::<String>()
                .await
                .expect("a memory cache builds");
            let _ = cache.insert(&"k".to_string(), "v".to_string()).await;
            let _ = cache.get(&"k".to_string()).await;
        }
    }
}

fuzz_target!(|text: &str| {
    match BackstopConfig::from_toml_str(text) {
        Err(error) => assert!(!error.to_string().is_empty()),
        Ok(config) => {
            assert_eq!(config.validate(), Ok(()));
            let printed = config.to_toml_string().expect("a loaded config prints");
            let reloaded =
                BackstopConfig::from_toml_str(&printed).expect("the printed config loads");
            assert_eq!(
                reloaded.to_toml_string().ok().as_deref(),
                Some(printed.as_str())
            );
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .expect("a runtime")
                .block_on(drive(&config));
        }
    }
});
