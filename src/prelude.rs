//! The names a stack is built from, in one import: `use backstop::prelude::*;`.
//!
//! Holds the composition vocabulary (`Service`, `Layer`, `Stack`, `ServiceExt`,
//! `BoxService`, the one `Rejected` and the stack's `Error`, clocks, load signals),
//! each primitive's main type with its layer, and the config and metrics entry points —
//! each behind the feature of its crate. Error and stats types stay in their modules
//! (`backstop::batch::BatchError`, …) so a glob import cannot shadow your own.

pub use backstop_core::{
    BoxService, Clock, Error, Layer, LoadSignal, LoadSnapshot, ManualClock, RejectKind, Rejected,
    Service, ServiceExt, Stack, StackError, SystemClock, layer_fn, service_fn,
};

#[cfg(feature = "tower")]
pub use backstop_core::tower::{FromTower, IntoTower, TowerLayer};

#[cfg(feature = "batch")]
pub use backstop_batch::{BatchConfig, BatchLayer, Batcher};
#[cfg(feature = "breaker")]
pub use backstop_breaker::{Breaker, BreakerConfig, BreakerLayer, BreakerRegistry};
#[cfg(feature = "cache")]
pub use backstop_cache::{
    CacheConfig, CacheLayer, MemoryCache, MemoryCacheLayer, MemoryTier, StreamCache,
    StreamCacheLayer, Tier, TieredCache,
};
#[cfg(feature = "dedup")]
pub use backstop_dedup::{DedupLayer, DedupWindow, Group, StreamDedupLayer, StreamGroup};
#[cfg(feature = "limit")]
pub use backstop_limit::{
    AdaptiveLayer, AdaptiveLimitConfig, AdaptiveLimiter, Bulkhead, BulkheadConfig, BulkheadLayer,
    KeyedMultiRateLimiter, KeyedRateLimiter, MultiRateLimiter, PriorityClassConfig, Quota,
    RateLimitLayer, RateLimiter,
};
#[cfg(feature = "pool")]
pub use backstop_pool::{Pool, PoolConfig, PoolLayer};
#[cfg(feature = "retry")]
pub use backstop_retry::{Retry, RetryConfig, RetryLayer};
#[cfg(feature = "route")]
pub use backstop_route::{RouteConfig, RouteLayer, Router};
#[cfg(feature = "scale")]
pub use backstop_scale::{Observation, Policy, QueuePolicy, TargetTracking};

#[cfg(feature = "config")]
pub use crate::config::BackstopConfig;
#[cfg(feature = "metrics")]
pub use crate::metrics::MetricsReporter;
