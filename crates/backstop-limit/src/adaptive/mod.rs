//! Adaptive concurrency limits: an in-flight limit found from measured latency, with
//! priority classes that shed the least important work first.
//!
//! A fixed bulkhead is wrong most of the time: too high and an overloaded backend's
//! latency explodes while queues grow, too low and capacity sits idle. An
//! [`AdaptiveLimiter`] measures each call's latency and outcome and, once per window,
//! lets an algorithm move the limit: [AIMD](AimdConfig), [Vegas](VegasConfig) or
//! [Gradient2](Gradient2Config) (the default), as in Netflix's concurrency-limits and
//! Envoy's adaptive concurrency filter.
//!
//! # Guarded against the known traps
//!
//! - **No probe that collapses the limit.** Envoy pinned concurrency to a few calls to
//!   measure its minimum RTT, refusing traffic meanwhile (envoy #8337). The baseline here
//!   is read from ordinary windows.
//! - **A baseline that cannot drift up under load.** A minimum measured while the backend
//!   queues is too high, and trusting it admits more, which queues more (envoy PR #11579,
//!   Uber's "ever-drifting target latency"; Netflix's Gradient2 long average follows load
//!   too). The baseline falls at once to a lower smoothed window mean and rises only from
//!   windows that used under half the limit, or after `recalibrate_after` windows at the
//!   floor (the backend itself became slower, as Envoy later added), a tenth of the gap
//!   per window.
//! - **Smoothing against noise.** Algorithms see window means, never single samples, and
//!   the baseline follows a smoothed mean: a ±30 % jitter would put a per-sample minimum
//!   30 % low and convince Vegas the backend is always queueing.
//! - **No growth while app-limited**: a window that used under half the limit says nothing
//!   about a higher one.
//!
//! # Priority classes
//!
//! Classes (for example `critical`, `normal`, `sheddable`, highest first) each hold a share
//! of the current limit against every lower class; higher classes may borrow a lower
//! class's idle share, so when the limit shrinks the lowest class is refused first
//! ([`RejectKind::Shed`](backstop_core::RejectKind::Shed)). A class may have a bounded
//! queue with a timeout.
//!
//! # Example: a critical and a sheddable class
//!
//! ```
//! use backstop_limit::{AdaptiveLimitConfig, AdaptiveLimiter, PriorityClassConfig};
//! use backstop_core::RejectKind;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let limiter = AdaptiveLimiter::new(AdaptiveLimitConfig {
//!     initial_limit: 4,
//!     classes: vec![
//!         PriorityClassConfig::new("critical", 0.5),
//!         PriorityClassConfig::new("sheddable", 0.0),
//!     ],
//!     ..Default::default()
//! })
//! .unwrap();
//! let critical = limiter.class("critical").unwrap();
//! let sheddable = limiter.class("sheddable").unwrap();
//!
//! // Sheddable work gets the two permits not held for critical work, no more.
//! let _a = limiter.acquire_as(sheddable).await.unwrap();
//! let _b = limiter.acquire_as(sheddable).await.unwrap();
//! assert_eq!(limiter.try_acquire_as(sheddable).unwrap_err().kind, RejectKind::Shed);
//! // Critical work still finds its share.
//! let _c = limiter.acquire_as(critical).await.unwrap();
//! let _d = limiter.acquire_as(critical).await.unwrap();
//! assert_eq!(limiter.stats().classes[1].shed, 1);
//! # }
//! ```

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
