//! What the Redis limiter and budget tests share.
#![allow(dead_code)] // each test binary uses a different part of it

use backstop_limit::{CheckError, RedisRateLimiter};
use backstop_redis::Misconfiguration;
use backstop_testkit::RedisTestContext;

/// The mistake `limiter` reports for a check, which must be a misconfiguration.
pub(crate) async fn misconfiguration(limiter: &RedisRateLimiter) -> Misconfiguration {
    match limiter.check_key("ann").await {
        Err(CheckError::Misconfigured(mistake)) => mistake,
        other => panic!("not a misconfiguration: {other:?}"),
    }
}

/// Runs `test` on the test server under a key prefix of its own (`name`), then deletes its
/// keys; skipped without `REDIS_URL`, as [`RedisTestContext::from_env`] says.
pub(crate) async fn on_redis(name: &str, test: impl AsyncFnOnce(&RedisTestContext)) {
    let Some(redis) = RedisTestContext::from_env(name).await else {
        return;
    };
    test(&redis).await;
    redis.cleanup().await;
}
