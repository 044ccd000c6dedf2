//! What the Redis limiter tests share.

use backstop_limit::{CheckError, RedisRateLimiter};
use backstop_redis::Misconfiguration;

/// The mistake `limiter` reports for a check, which must be a misconfiguration.
pub(crate) async fn misconfiguration(limiter: &RedisRateLimiter) -> Misconfiguration {
    match limiter.check_key("ann").await {
        Err(CheckError::Misconfigured(mistake)) => mistake,
        other => panic!("not a misconfiguration: {other:?}"),
    }
}
