//! Adaptive concurrency limits with priority classes; the design is documented on
//! [`AdaptiveLimiter`].

mod aimd;
mod baseline;
mod config;
mod gradient2;
mod layer;
mod limiter;
mod partition;
mod permit;
mod stats;
mod vegas;
mod window;

pub use config::{
    AdaptiveLimitConfig, AimdConfig, Gradient2Config, LimitAlgorithm, MAX_ADAPTIVE_LIMIT,
    MAX_PRIORITY_CLASSES, MAX_WINDOW, MAX_WINDOW_SAMPLES, PriorityClassConfig, VegasConfig,
};
pub use layer::{
    AdaptiveLayer, AdaptiveService, ClassifyOutcome, DefaultOutcome, DefaultPriority, PriorityKey,
};
pub use limiter::AdaptiveLimiter;
pub use partition::PriorityClass;
pub use permit::{AdaptiveOutcome, AdaptivePermit};
pub use stats::{AdaptiveLimitStats, PriorityClassStats};
