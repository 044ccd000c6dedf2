//! The tiered cache: tiers (memory, Redis, an embedded store) stacked into one cache with
//! promotion, stampede protection, stale-while-revalidate and graceful degradation.

pub(crate) mod cache;
#[cfg(feature = "codec")]
pub(crate) mod codec;
pub(crate) mod config;
pub(crate) mod entry;
#[cfg(feature = "breaker")]
pub(crate) mod guarded_tier;
pub(crate) mod layer;
pub(crate) mod load;
pub(crate) mod load_error;
pub(crate) mod memory_tier;
pub(crate) mod namespace;
#[cfg(feature = "persistent")]
pub(crate) mod persistent_tier;
#[cfg(feature = "redis")]
pub(crate) mod redis_tier;
pub(crate) mod semantic;
pub(crate) mod tier;
pub(crate) mod warm;
pub(crate) mod write_behind;
