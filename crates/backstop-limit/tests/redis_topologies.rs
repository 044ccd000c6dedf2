//! The Redis limiter behind Sentinel (`REDIS_SENTINEL`) and over TLS (`REDIS_TLS_URL` with
//! `REDIS_TLS_CA`), and pointed at a replica, on the fleet `.ci/redis-fleet` starts.
#![cfg(feature = "redis")]

use backstop_limit::{FailurePolicy, Quota, RedisRateLimiter};
use backstop_redis::{Misconfiguration, RedisConfig, RedisConnection};
use backstop_testkit::fleet;
use std::time::Duration;

mod common;

async fn admits_exactly_the_burst(config: &RedisConfig, name: &str) {
    let limiter = RedisRateLimiter::new(
        RedisConnection::new(config).unwrap(),
        &fleet::unique(name),
        &[Quota::per_hour(7).unwrap()],
    )
    .unwrap()
    .with_timeout(Duration::from_secs(2))
    .with_failure_policy(FailurePolicy::FailClosed);
    let mut admitted = 0;
    for _ in 0..12 {
        let decision = limiter.check_key_n("{user}", 1).await.unwrap();
        assert!(decision.from_redis);
        admitted += u32::from(decision.admitted);
    }
    assert_eq!(admitted, 7, "{name}");
}

#[tokio::test]
async fn the_limiter_is_exact_behind_sentinel() {
    let Some(config) = fleet::sentinel() else {
        return;
    };
    admits_exactly_the_burst(&config, "limit-sentinel").await;
}

#[tokio::test]
async fn the_limiter_is_exact_over_tls() {
    let Some(config) = fleet::tls() else { return };
    admits_exactly_the_burst(&config, "limit-tls").await;
}

#[tokio::test]
async fn a_url_at_a_replica_is_an_error_even_when_failing_open() {
    let Some(replica) = fleet::sentinel_replica_url() else {
        return;
    };
    let redis = RedisConnection::new(&RedisConfig::url(replica)).unwrap();
    let limiter = RedisRateLimiter::new(
        redis,
        &fleet::unique("limit-replica"),
        &[Quota::per_hour(7).unwrap()],
    )
    .unwrap()
    .with_timeout(Duration::from_secs(2))
    .with_failure_policy(FailurePolicy::FailOpen);
    let mistake = common::misconfiguration(&limiter).await;
    assert!(
        matches!(mistake, Misconfiguration::Replica { .. }),
        "{mistake:?}"
    );
    assert_eq!(limiter.stats().admitted, 0);
}

/// The connection's namespace goes in front of every key the limiter writes, so two
/// namespaces on one Redis keep separate budgets for the same prefix and user.
#[tokio::test]
async fn the_namespace_separates_budgets_on_one_redis() {
    let Some(base) = fleet::standalone() else {
        return;
    };
    let prefix = fleet::unique("limit-ns");
    let limiter = |namespace: &str| {
        let redis = RedisConnection::new(&base.clone().with_namespace(namespace)).unwrap();
        RedisRateLimiter::new(redis, &prefix, &[Quota::per_hour(1).unwrap()])
            .unwrap()
            .with_timeout(Duration::from_secs(2))
            .with_failure_policy(FailurePolicy::FailClosed)
    };
    let (a, b) = (limiter("tenant-a:"), limiter("tenant-b:"));
    assert_eq!(
        a.redis_key("ann", 0),
        format!("tenant-a:{prefix}:{{ann}}:0")
    );
    assert!(a.check_key("ann").await.unwrap().admitted);
    assert!(
        !a.check_key("ann").await.unwrap().admitted,
        "a's budget is spent"
    );
    assert!(
        b.check_key("ann").await.unwrap().admitted,
        "b's budget is its own"
    );
    let redis = RedisConnection::new(&base).unwrap();
    let key = a.redis_key("ann", 0);
    let exists: i64 = redis
        .run(|mut c| async move { redis::cmd("EXISTS").arg(key).query_async(&mut c).await })
        .await
        .unwrap();
    assert_eq!(exists, 1, "the key Redis holds is the namespaced one");
}
