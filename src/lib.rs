//! Backstop keeps LLM- and agent-backed systems fast and standing under load.
//!
//! This umbrella crate re-exports the Backstop libraries, each behind a feature of the
//! same name (all on by default):
//!
//! | module | crate | what it holds |
//! |---|---|---|
//! | [`core`] | `backstop-core` | clocks, `Service`/`Layer`/`Stack`, load signals, config helpers |
//! | `limit` | `backstop-limit` | rate limiters and bulkhead |
//! | `breaker` | `backstop-breaker` | circuit breaker |
//! | `dedup` | `backstop-dedup` | singleflight and duplicate-detection window |
//! | `cache` | `backstop-cache` | in-memory and tiered cache |
//! | `batch` | `backstop-batch` | dynamic batcher |
//! | `pool` | `backstop-pool` | connection pool |
//! | `scale` | `backstop-scale` | autoscaling policies and simulator |
//!
//! ```
//! use backstop::core::{Service, Stack, service_fn};
//!
//! let model = service_fn(|prompt: String| async move {
//!     Ok::<_, std::io::Error>(prompt.to_uppercase())
//! });
//! let stack = Stack::new().service(model);
//! # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! # rt.block_on(async {
//! assert_eq!(stack.call("hi".into()).await.unwrap(), "HI");
//! # });
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use backstop_core as core;

#[cfg(feature = "config")]
pub mod config;
#[cfg(feature = "metrics")]
pub mod metrics;

#[cfg(feature = "batch")]
pub use backstop_batch as batch;
#[cfg(feature = "breaker")]
pub use backstop_breaker as breaker;
#[cfg(feature = "cache")]
pub use backstop_cache as cache;
#[cfg(feature = "dedup")]
pub use backstop_dedup as dedup;
#[cfg(feature = "limit")]
pub use backstop_limit as limit;
#[cfg(feature = "pool")]
pub use backstop_pool as pool;
#[cfg(feature = "scale")]
pub use backstop_scale as scale;
