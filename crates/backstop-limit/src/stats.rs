//! The one stats type every limiter reports, in process or in Redis.

use serde::Serialize;

/// A point-in-time view of any limiter: direct ([`RateLimiter`](crate::RateLimiter),
/// [`MultiRateLimiter`](crate::MultiRateLimiter),
/// [`SlidingWindowLimiter`](crate::SlidingWindowLimiter)), keyed
/// ([`KeyedRateLimiter`](crate::KeyedRateLimiter),
/// [`KeyedMultiRateLimiter`](crate::KeyedMultiRateLimiter),
/// [`KeyedSlidingWindow`](crate::KeyedSlidingWindow)) or `RedisRateLimiter`.
///
/// Every limiter counts `admitted` and `rejected` the same way; the other fields belong to
/// one kind of store and are zero for the others, so one type serves every limiter, its
/// metrics and its logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct LimiterStats {
    /// Checks that admitted their cost (for Redis: by Redis or by the failure policy).
    pub admitted: u64,
    /// Checks that were turned away: over the limit, impossible, over the key cap, or
    /// refused by the Redis limiter's fail-closed policy or its local fallback.
    pub rejected: u64,
    /// Cells a direct limiter could admit right now under its tightest limit; zero for
    /// keyed and Redis limiters, whose room is per key (a keyed limiter's `remaining(key)`,
    /// a Redis decision's `remaining`).
    pub remaining: u64,
    /// Keys a keyed limiter holds state for; zero for direct and Redis limiters.
    pub keys: usize,
    /// Keys a keyed limiter removed by sweeps since creation; zero for direct and Redis
    /// limiters.
    pub evicted: u64,
    /// Keys of a keyed limiter with an override of the limits; zero for direct and Redis
    /// limiters.
    pub overrides: usize,
    /// Sweeps a full keyed limiter ran to make room for a new key (at most one per eighth
    /// of the cap's worth of refused new keys); zero for direct and Redis limiters.
    pub cap_sweeps: u64,
    /// Redis limiter calls where Redis failed or timed out and the failure policy decided;
    /// zero for local limiters.
    pub redis_errors: u64,
    /// Redis limiter calls refused because the deployment is misconfigured (no policy
    /// applied); zero for local limiters.
    pub misconfigured: u64,
}
