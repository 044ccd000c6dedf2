//! Each tier implementation against the shared tier contract.
#![cfg(all(feature = "redis", feature = "persistent"))]

use backstop_cache::{PersistentTier, RedisTier, RedisTierConfig, Tier, TierError, ValueCodec};
use backstop_testkit::RedisTestContext;
use std::time::Duration;

async fn redis_tier(test: &str) -> Option<(RedisTestContext, RedisTier<String>)> {
    let redis = RedisTestContext::from_env(test).await?;
    let config = RedisTierConfig {
        namespace: redis.prefix().to_string(),
        ..RedisTierConfig::default()
    };
    let tier = RedisTier::connect(redis.url(), config).await.unwrap();
    Some((redis, tier))
}

/// The behaviour every tier shares, run against each implementation.
async fn contract(tier: &dyn Tier<String>) {
    assert_eq!(tier.get("missing").await, Ok(None));
    tier.set("user:1:answer", &"42".to_string(), None)
        .await
        .unwrap();
    tier.set(
        "user:1:plan",
        &"x".repeat(5000),
        Some(Duration::from_secs(60)),
    )
    .await
    .unwrap();
    tier.set("user:2:answer", &"7".to_string(), None)
        .await
        .unwrap();
    tier.set("user:[1]*", &"glob".to_string(), None)
        .await
        .unwrap();
    assert_eq!(tier.get("user:1:answer").await, Ok(Some("42".to_string())));
    assert_eq!(tier.get("user:1:plan").await, Ok(Some("x".repeat(5000))));
    assert_eq!(
        tier.get_many(&["user:2:answer", "nope", "user:1:answer"])
            .await,
        Ok(vec![Some("7".to_string()), None, Some("42".to_string())])
    );

    assert_eq!(tier.invalidate_prefix("user:1:").await, Ok(2));
    assert_eq!(tier.get("user:1:answer").await, Ok(None));
    assert_eq!(tier.get("user:2:answer").await, Ok(Some("7".to_string())));
    assert_eq!(
        tier.get("user:[1]*").await,
        Ok(Some("glob".to_string())),
        "glob chars are literal"
    );

    tier.delete("user:2:answer").await.unwrap();
    tier.delete("user:2:answer").await.unwrap();
    assert_eq!(tier.get("user:2:answer").await, Ok(None));

    let stats = tier.stats();
    assert_eq!(stats.sets, 4);
    assert_eq!(stats.invalidated, 2);
    assert_eq!(stats.errors, 0);
    assert!(stats.hits >= 5 && stats.misses >= 3, "{stats:?}");
}

#[tokio::test]
async fn redis_tier_fulfils_the_tier_contract() {
    let Some((redis, tier)) = redis_tier("redis_tier_fulfils_the_tier_contract").await else {
        return;
    };
    contract(&tier).await;
    redis.cleanup().await;
}

#[tokio::test]
async fn redis_tier_sets_ttl_with_px_and_compresses_large_values() {
    let Some((redis, tier)) = redis_tier("redis_tier_sets_ttl_with_px").await else {
        return;
    };
    tier.set("big", &"y".repeat(10_000), Some(Duration::from_secs(30)))
        .await
        .unwrap();
    let mut connection = redis.connection().await;
    let ttl: i64 = redis::cmd("PTTL")
        .arg(redis.key("big"))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!((1..=30_000).contains(&ttl), "{ttl}");
    let stored: Vec<u8> = redis::cmd("GET")
        .arg(redis.key("big"))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(
        stored.len() < 1_000,
        "10 kB of one letter compresses: {}",
        stored.len()
    );
    redis.cleanup().await;
}

#[tokio::test]
async fn redis_tier_reports_a_down_server_as_an_error() {
    let config = RedisTierConfig {
        operation_timeout: Duration::from_millis(200),
        ..RedisTierConfig::default()
    };
    // Port 1 on loopback: nothing listens there.
    let result = RedisTier::<String>::connect("redis://127.0.0.1:1", config).await;
    assert!(matches!(
        result,
        Err(TierError::Backend(_) | TierError::Timeout(_))
    ));
}

#[tokio::test]
async fn redis_tier_reports_undecodable_values_as_codec_errors() {
    let Some((redis, tier)) = redis_tier("redis_tier_undecodable").await else {
        return;
    };
    let mut connection = redis.connection().await;
    let () = redis::cmd("SET")
        .arg(redis.key("junk"))
        .arg("not msgpack")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(matches!(tier.get("junk").await, Err(TierError::Codec(_))));
    assert_eq!(tier.stats().errors, 1);
    redis.cleanup().await;
}

#[tokio::test]
async fn persistent_tier_fulfils_the_tier_contract_and_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.redb");
    {
        let tier =
            PersistentTier::<String>::open(&path, ValueCodec::new().compress_above(256)).unwrap();
        contract(&tier).await;
        tier.set(
            "kept",
            &"across restarts".to_string(),
            Some(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    }
    let reopened = PersistentTier::<String>::open(&path, ValueCodec::new()).unwrap();
    assert_eq!(
        reopened.get("kept").await,
        Ok(Some("across restarts".to_string()))
    );
}

#[tokio::test]
async fn persistent_tier_refuses_a_file_that_is_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-a-db");
    std::fs::write(&path, b"definitely not redb").unwrap();
    assert!(matches!(
        PersistentTier::<String>::open(&path, ValueCodec::new()),
        Err(TierError::Backend(_))
    ));
}
