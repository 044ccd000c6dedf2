//! The Redis-backed limiter against a real server (`REDIS_URL`; skipped without it).
#![cfg(feature = "redis")]

use backstop_core::{RejectKind, Service, ServiceExt, Stack, service_fn};
use backstop_limit::{
    CheckError, FailureMode, FailurePolicy, LimitCost, LimitKey, Quota, QuotaConfig,
    RateLimitLayer, RedisLimitConfig, RedisRateLimiter, TimeSource, WaitError, WaitPolicy,
};
use backstop_testkit::RedisTestContext;
use backstop_testkit::assert_fields;
use std::time::{Duration, Instant};

mod common;

fn limiter(redis: &RedisTestContext, quotas: &[Quota]) -> RedisRateLimiter {
    RedisRateLimiter::new(redis.client().clone(), redis.prefix(), quotas)
        .unwrap()
        .with_timeout(Duration::from_secs(2))
        .with_failure_policy(FailurePolicy::FailClosed)
}

/// Whether `limiter` admits `costs` (one per quota) for `key`.
async fn admits(limiter: &RedisRateLimiter, key: &str, costs: &[u64]) -> bool {
    limiter.check_key_costs(key, costs).await.unwrap().admitted
}

async fn admitted(limiter: &RedisRateLimiter, key: &str, tries: usize) -> usize {
    let mut count = 0;
    for _ in 0..tries {
        if limiter.check_key(key).await.unwrap().admitted {
            count += 1;
        }
    }
    count
}

#[tokio::test]
async fn admits_exactly_the_burst_then_reports_retry_after() {
    common::on_redis("limit_exact_burst", async |redis| {
        let limiter = limiter(redis, &[Quota::per_hour(10).unwrap()]);
        let first = limiter.check_key("ann").await.unwrap();
        assert!(first.admitted && first.from_redis);
        assert_eq!(first.remaining, 9);
        assert!(first.reset_after > Duration::from_secs(359));
        assert_eq!(admitted(&limiter, "ann", 20).await, 9);
        let refused = limiter.check_key("ann").await.unwrap();
        assert!(!refused.admitted);
        assert_eq!(refused.remaining, 0);
        // One cell comes back every 6 minutes.
        assert!(refused.retry_after > Duration::from_secs(350));
        assert!(refused.retry_after <= Duration::from_secs(360));
        assert_eq!(admitted(&limiter, "bob", 3).await, 3);
        assert_fields!(limiter.stats(), admitted: 13, redis_errors: 0);
        assert!(redis.key("x").starts_with(redis.prefix()));
    })
    .await;
}

#[tokio::test]
async fn weighted_costs_and_cost_above_burst() {
    common::on_redis("limit_weighted", async |redis| {
        let limiter = limiter(redis, &[Quota::per_minute(10_000).unwrap()]);
        assert!(limiter.check_key_n("ann", 8_000).await.unwrap().admitted);
        let refused = limiter.check_key_n("ann", 4_000).await.unwrap();
        assert!(!refused.admitted);
        assert!(refused.retry_after > Duration::from_secs(10));
        assert!(limiter.check_key_n("ann", 2_000).await.unwrap().admitted);
        assert_eq!(
            limiter.check_key_n("ann", 10_001).await,
            Err(CheckError::InsufficientCapacity {
                cost: 10_001,
                burst: 10_000
            })
        );
    })
    .await;
}

#[tokio::test]
async fn per_quota_costs_are_charged_all_or_none_across_instances() {
    common::on_redis("limit_costs", async |redis| {
        // Requests per hour and tokens per hour, shared by two processes' limiters.
        let quotas = [Quota::per_hour(3).unwrap(), Quota::per_hour(2_000).unwrap()];
        let (first, second) = (limiter(redis, &quotas), limiter(redis, &quotas));
        assert!(admits(&first, "ann", &[1, 900]).await);
        assert!(admits(&second, "ann", &[1, 900]).await);
        // Over the tokens: refused, and the third request slot is not spent.
        let refused = first.check_key_costs("ann", &[1, 900]).await.unwrap();
        assert!(!refused.admitted && refused.retry_after > Duration::ZERO);
        assert!(admits(&second, "ann", &[1, 200]).await);
        // Now the requests are used up, whatever the tokens.
        assert!(!admits(&first, "ann", &[1, 0]).await);
        assert_eq!(
            first.check_key_costs("ann", &[1]).await,
            Err(CheckError::CostsMismatch {
                quotas: 2,
                costs: 1
            })
        );
        assert_eq!(
            first.check_key_costs("ann", &[1, 2_001]).await,
            Err(CheckError::InsufficientCapacity {
                cost: 2_001,
                burst: 2_000
            })
        );
    })
    .await;
}

#[tokio::test]
async fn two_instances_share_one_budget() {
    common::on_redis("limit_shared", async |redis| {
        let quota = [Quota::per_hour(6).unwrap()];
        let a = limiter(redis, &quota);
        let b = RedisRateLimiter::new(redis.client().clone(), redis.prefix(), &quota)
            .unwrap()
            .with_time_source(TimeSource::Client);
        let total = admitted(&a, "ann", 4).await + admitted(&b, "ann", 4).await;
        assert_eq!(total, 6);
    })
    .await;
}

#[tokio::test]
async fn multi_window_is_all_or_none() {
    common::on_redis("limit_multi", async |redis| {
        let hour = Quota::per_hour(100).unwrap().with_burst(5).unwrap();
        let limiter = limiter(redis, &[hour, Quota::per_minute(3).unwrap()]);
        assert_eq!(admitted(&limiter, "ann", 10).await, 3);
        assert!(limiter.redis_key("ann", 0).contains("{ann}"));
        // The seven refusals by the minute quota charged nothing: the hour quota (key index 0,
        // shared by this single-quota limiter) still has exactly 5 - 3 cells.
        let hour_only = self::limiter(redis, &[hour]);
        assert_eq!(admitted(&hour_only, "ann", 5).await, 2);
    })
    .await;
}

#[tokio::test]
async fn client_time_mode_decides_like_server_time() {
    common::on_redis("limit_client_time", async |redis| {
        let limiter =
            limiter(redis, &[Quota::per_hour(5).unwrap()]).with_time_source(TimeSource::Client);
        assert_eq!(admitted(&limiter, "ann", 8).await, 5);
        let refused = limiter.check_key("ann").await.unwrap();
        assert!(refused.retry_after > Duration::from_secs(700));
    })
    .await;
}

/// A limiter of `quotas` whose Redis is down, applying `policy`.
fn down_with(quotas: &[Quota], policy: FailurePolicy) -> RedisRateLimiter {
    let client = redis::Client::open("redis://127.0.0.1:1").unwrap();
    RedisRateLimiter::new(client, "down", quotas)
        .unwrap()
        .with_timeout(Duration::from_millis(500))
        .with_failure_policy(policy)
}

fn down(policy: FailurePolicy) -> RedisRateLimiter {
    down_with(&[Quota::per_hour(2).unwrap()], policy)
}

#[tokio::test]
async fn down_server_applies_each_failure_policy() {
    let open = down(FailurePolicy::FailOpen);
    let decision = open.check_key("ann").await.unwrap();
    assert!(decision.admitted && !decision.from_redis);
    assert_eq!(open.stats().redis_errors, 1);

    let closed = down(FailurePolicy::FailClosed);
    assert!(matches!(
        closed.check_key("ann").await,
        Err(CheckError::Unavailable(_))
    ));
    assert_eq!(closed.stats().redis_errors, 1);
    assert_eq!(closed.stats().rejected, 1);

    let local = down(FailurePolicy::local(&[Quota::per_hour(2).unwrap()]).unwrap());
    assert!(
        FailurePolicy::local(&[]).is_err(),
        "no quotas: a config error"
    );
    let mut allowed = 0;
    for _ in 0..4 {
        let decision = local.check_key("ann").await.unwrap();
        assert!(!decision.from_redis);
        allowed += usize::from(decision.admitted);
    }
    assert_eq!(allowed, 2);
    assert_fields!(local.stats(), admitted: 2, rejected: 2, redis_errors: 4);
}

#[tokio::test]
async fn the_local_fallback_charges_per_quota_costs_all_or_none() {
    let quotas = [Quota::per_hour(3).unwrap(), Quota::per_hour(2_000).unwrap()];
    let limiter = down_with(&quotas, FailurePolicy::local(&quotas).unwrap());
    let mut allowed = Vec::new();
    for costs in [[1, 1_500], [1, 1_000], [1, 500], [1, 0], [1, 0]] {
        let decision = limiter.check_key_costs("ann", &costs).await.unwrap();
        assert!(!decision.from_redis);
        allowed.push(decision.admitted);
    }
    // The refused second call spent no request: the fourth still fits.
    assert_eq!(allowed, [true, false, true, true, false]);
}

struct Call {
    user: &'static str,
    tokens: u64,
}

/// A layer over `limiter` charging each call's tokens to its user.
fn per_user(
    limiter: RedisRateLimiter,
) -> RateLimitLayer<
    RedisRateLimiter,
    impl LimitKey<Call, Key = String>,
    impl LimitCost<Call, Cost = u64>,
> {
    RateLimitLayer::new(limiter)
        .key(|c: &Call| c.user.to_string())
        .cost(|c: &Call| c.tokens)
}

#[tokio::test]
async fn layer_charges_the_shared_budget_and_types_refusals() {
    common::on_redis("limit_layer", async |redis| {
        let config = RedisLimitConfig::default()
            .prefix(redis.prefix())
            .quotas(vec![QuotaConfig {
                rate: 100,
                period: Duration::from_secs(3600),
                burst: None,
            }])
            .timeout(Duration::from_secs(2))
            .on_failure(FailureMode::Closed);
        let limiter = config.build(redis.client().clone()).unwrap();
        let layer = per_user(limiter.clone());
        let model = service_fn(|c: Call| async move {
            if c.tokens == 13 {
                Err("unlucky")
            } else {
                Ok(c.tokens)
            }
        })
        .lift();
        let svc = Stack::new().layer(layer).service(model);
        let call = |user, tokens| svc.call(Call { user, tokens });
        assert_eq!(call("ann", 60).await.unwrap(), 60);
        assert_eq!(call("ann", 13).await.unwrap_err().inner(), Some(&"unlucky"));
        let refused = call("ann", 30).await.unwrap_err();
        assert_eq!(
            refused.rejection().unwrap().kind,
            RejectKind::RateLimited { quota: 0 }
        );
        assert!(refused.retry_after().unwrap() > Duration::from_secs(60));
        assert_eq!(
            call("ann", 101)
                .await
                .unwrap_err()
                .rejection()
                .map(|r| r.kind),
            Some(RejectKind::TooLarge { quota: 0 })
        );
        assert_eq!(call("bob", 100).await.unwrap(), 100);
        assert_fields!(limiter.stats(), admitted: 3, rejected: 1);
    })
    .await;
}

#[tokio::test]
async fn until_key_ready_waits_for_the_refill_or_gives_up_past_max_wait() {
    common::on_redis("limit_wait", async |redis| {
        // One cell every 40 ms: the second request waits about that long.
        let quota = Quota::per_second(25).unwrap().with_burst(1).unwrap();
        let limiter = limiter(redis, &[quota]);
        let policy = WaitPolicy {
            max_wait: Some(Duration::from_secs(1)),
            jitter: Duration::from_millis(2),
        };
        let ann_ready = || limiter.until_key_ready("ann", 1, &policy);
        assert!(ann_ready().await.unwrap().admitted);
        let start = Instant::now();
        assert!(ann_ready().await.unwrap().admitted);
        assert!(start.elapsed() >= Duration::from_millis(30));

        let slow = self::limiter(redis, &[Quota::per_hour(1).unwrap()]);
        assert!(slow.check_key("bob").await.unwrap().admitted);
        let start = Instant::now();
        let gave_up = slow.until_key_ready("bob", 1, &policy).await.unwrap_err();
        assert!(
            matches!(gave_up, WaitError::TooLong { retry_after } if retry_after > Duration::from_secs(3000))
        );
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "gave up without sleeping"
        );
    })
    .await;
}

/// The one `RateLimitLayer` over the Redis store: requests and tokens charged all or
/// none, and a `wait` policy that sleeps a refusal out.
#[tokio::test]
async fn the_layer_charges_each_quota_its_cost_and_waits_when_told() {
    common::on_redis("limit_layer_costs", async |redis| {
        let model = || service_fn(|c: Call| async move { Ok::<_, ()>(c.tokens) }).lift();
        let quotas = [Quota::per_hour(2).unwrap(), Quota::per_hour(100).unwrap()];
        let layer = RateLimitLayer::new(limiter(redis, &quotas))
            .key(|c: &Call| c.user.to_string())
            .cost(|c: &Call| [1, c.tokens]);
        let svc = Stack::new().layer(layer).service(model());
        let call = |user, tokens| svc.call(Call { user, tokens });
        assert_eq!(call("ann", 60).await.unwrap(), 60);
        let refused = call("ann", 50).await.unwrap_err();
        assert!(matches!(
            refused.rejection().unwrap().kind,
            RejectKind::RateLimited { .. }
        ));
        // The refusal on tokens spent no request: the second request still fits.
        assert_eq!(call("ann", 40).await.unwrap(), 40);
        assert!(call("ann", 0).await.is_err(), "two requests an hour");

        // One cell every 40 ms: the second call waits about that long, then passes.
        let quota = Quota::per_second(25).unwrap().with_burst(1).unwrap();
        let policy = WaitPolicy {
            max_wait: Some(Duration::from_secs(1)),
            jitter: Duration::from_millis(2),
        };
        let waiting = per_user(limiter(redis, &[quota])).wait(policy);
        let svc = Stack::new().layer(waiting).service(model());
        let bob = || {
            svc.call(Call {
                user: "bob",
                tokens: 1,
            })
        };
        assert_eq!(bob().await.unwrap(), 1);
        let start = Instant::now();
        assert_eq!(bob().await.unwrap(), 1);
        assert!(start.elapsed() >= Duration::from_millis(30));
    })
    .await;
}

#[tokio::test]
async fn layer_over_a_down_server_fails_closed_within_the_timeout() {
    let layer = per_user(down(FailurePolicy::FailClosed).with_timeout(Duration::from_millis(200)))
        .wait(WaitPolicy::default());
    let svc = Stack::new()
        .layer(layer)
        .service(service_fn(|c: Call| async move { Ok::<_, ()>(c.tokens) }).lift());
    let start = Instant::now();
    let err = svc
        .call(Call {
            user: "ann",
            tokens: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(err.rejection().unwrap().kind, RejectKind::Unavailable);
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_wait_dropped_while_sleeping_charges_nothing() {
    common::on_redis("limit_wait_cancel", async |redis| {
        let limiter = limiter(redis, &[Quota::per_hour(2).unwrap()]);
        assert_eq!(admitted(&limiter, "ann", 2).await, 2);
        let unbounded = WaitPolicy::default();
        let waiting = limiter.until_key_ready("ann", 1, &unbounded);
        assert!(
            tokio::time::timeout(Duration::from_millis(100), waiting)
                .await
                .is_err(),
            "the wait is for a cell 30 minutes away"
        );
        // Still exactly one emission interval (30 min) to wait: the dropped wait took nothing.
        let refused = limiter.check_key("ann").await.unwrap();
        assert!(!refused.admitted);
        assert!(refused.retry_after > Duration::from_secs(1790));
        assert!(refused.retry_after <= Duration::from_secs(1800));
    })
    .await;
}
