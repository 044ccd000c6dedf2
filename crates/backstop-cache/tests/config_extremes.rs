//! Issue 19: every value a config can hold, extremes included, either is refused with a
//! typed error naming its field or builds a cache that works — no panic, no hang, no
//! allocation in proportion to a setting. Each accepted config is driven briefly on
//! paused time: writes, reads, loads (one timing out), invalidation.

use backstop_cache::{
    CacheConfig, MemoryCache, MemoryTier, PolicyConfig, Promotion, TieredCache, TieredConfig,
};
use backstop_core::config::{MAX_DURATION, Validate};
use backstop_testkit::on_paused_clock;
use proptest::prelude::*;
use std::time::Duration;

/// Durations around every boundary a bound or an overflow could sit on.
fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        Just(MAX_DURATION),
        Just(MAX_DURATION + Duration::from_nanos(1)),
        Just(Duration::MAX),
        (0u64..u64::MAX).prop_map(Duration::from_nanos),
        any::<u64>().prop_map(Duration::from_secs),
        (1u64..3_600_000).prop_map(Duration::from_millis),
    ]
}

fn capacity() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1u64),
        Just(1u64 << 48),
        Just((1u64 << 48) + 1),
        Just(u64::MAX),
        1u64..100_000,
    ]
}

fn memory_config() -> impl Strategy<Value = CacheConfig> {
    (
        capacity(),
        proptest::option::of(prop_oneof![Just(0usize), Just(usize::MAX), 1usize..2048]),
        proptest::option::of(duration()),
        proptest::option::of(duration()),
        prop_oneof![Just(0.0f64), Just(1.0), Just(f64::NAN), 0.0001f64..0.9],
    )
        .prop_map(
            |(max_capacity, shards, ttl, tti, small_ratio)| CacheConfig {
                max_capacity,
                shards,
                ttl,
                tti,
                policy: PolicyConfig {
                    small_ratio,
                    ..PolicyConfig::default()
                },
            },
        )
}

fn tiered_config() -> impl Strategy<Value = TieredConfig> {
    (
        duration(),
        proptest::option::of(duration()),
        proptest::option::of(duration()),
        proptest::option::of(duration()),
        proptest::option::of(duration()),
        prop_oneof![
            Just(Promotion::Always),
            Just(Promotion::Never),
            any::<u32>().prop_map(Promotion::AfterHits),
        ],
    )
        .prop_map(
            |(fresh_for, stale_grace, refresh_ahead, negative_ttl, loader_timeout, promotion)| {
                TieredConfig {
                    fresh_for,
                    stale_grace,
                    refresh_ahead,
                    negative_ttl,
                    loader_timeout,
                    promotion,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_memory_config_is_refused_by_name_or_works(config in memory_config(), ttl in duration()) {
        let valid = config.validate();
        match MemoryCache::<u32, u32>::from_config(config) {
            Err(error) => {
                prop_assert!(valid.is_err());
                prop_assert!(!error.field().is_empty());
            }
            Ok(cache) => {
                prop_assert!(valid.is_ok());
                cache.insert(1, 1);
                cache.insert_with_ttl(2, 2, ttl);
                let _ = cache.get(&1);
                let _ = cache.get(&2);
                cache.run_pending_tasks();
                prop_assert!(cache.len() <= 2);
            }
        }
    }

    #[test]
    fn any_tiered_config_is_refused_by_name_or_works(
        config in tiered_config(),
        tier_ttl in proptest::option::of(duration()),
    ) {
        on_paused_clock(async move {
            let built = TieredCache::<String, String>::builder()
                .memory(MemoryTier::with_capacity(100).unwrap(), tier_ttl)
                .config(config.clone())
                .build();
            let cache = match built {
                Err(error) => {
                    assert!(
                        config.validate().is_err() || tier_ttl.is_some_and(|t| t > MAX_DURATION),
                        "refused a valid config: {error}"
                    );
                    assert!(!error.field().is_empty());
                    return;
                }
                Ok(cache) => cache,
            };
            let key = "k".to_string();
            cache.insert(&key, "v".to_string()).await.unwrap();
            let _ = cache.get(&key).await;
            let loaded = cache
                .get_or_load(&"cold".to_string(), || async {
                    Ok::<_, std::io::Error>(Some("loaded".to_string()))
                })
                .await;
            assert_eq!(loaded.unwrap().as_deref(), Some("loaded"));
            // A loader that outlives any timeout: cut off by `loader_timeout` when one is
            // set (paused time jumps to it), else left to finish on its own.
            let slow_key = "slow".to_string();
            let slow = cache.get_or_load(&slow_key, || async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok::<_, std::io::Error>(None)
            });
            let _ = slow.await;
            let _ = cache.get_or_load(&"nothing".to_string(), || async {
                Ok::<_, std::io::Error>(None)
            })
            .await;
            cache.invalidate_prefix("k").await.unwrap();
            cache.invalidate_all().await.unwrap();
        });
    }
}
