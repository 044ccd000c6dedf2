//! Backstop keeps LLM- and agent-backed systems fast and standing under load.
//!
//! This umbrella crate puts the Backstop libraries behind one dependency, each behind a
//! feature of the same name (`full`, the default, turns on all of them):
//!
//! | module | feature | what it holds |
//! |---|---|---|
//! | [`core`] | always | clocks, `Service`/`Layer`/`Stack`, load signals, histograms, config errors |
//! | `limit` | `limit` | GCRA, keyed, multi-quota and sliding-window limiters, bulkhead, adaptive concurrency (`limit-sync`: the synchronous limiters alone, no runtime) |
//! | `breaker` | `breaker` | circuit breaker with count/time windows, registry |
//! | `dedup` | `dedup` | singleflight `Group` and idempotency `DedupWindow` |
//! | `retry` | `retry` | retries with a budget, one deadline across attempts, hedging |
//! | `route` | `route` | fallback chains, P2C Peak-EWMA balancing over providers and keys, cooldowns |
//! | `load` | `load` | load tests of any stack: open and closed loop, stress, regression checks |
//! | `cache` | `cache` | S3-FIFO memory cache and the tiered cache (memory → Redis → file) |
//! | `batch` | `batch` | dynamic batcher |
//! | `pool` | `pool` | connection pool for any deadpool `Manager`, with its own fair core |
//! | `scale` | `scale` | autoscaling policies and simulator |
//! | `config` | `config` | [`BackstopConfig`](config::BackstopConfig): one TOML file for the stack |
//! | `metrics` | `metrics` | every primitive's stats through the `metrics` facade |
//! | `core::tower` | `tower` | every layer as a `tower::Layer`, any tower service as a Backstop one; readiness for `LoadShed` |
//! | `core::http` | `http` | refusals as 429/503, `Retry-After` and rate-limit headers |
//!
//! plus `redis` (one Redis connection for standalone, cluster and Sentinel, as [`redis`]
//! re-exports it, under the cache tier, the distributed limiter and dedup, and the pool's
//! manager; `redis-tls` adds TLS), `persistent` (file cache tier)
//! and `quanta` (a TSC clock).
//!
//! # A whole request path on one screen
//!
//! Each layer is built from a cheap-clone handle, so clones of the stack share one limit,
//! one circuit and one cache. Outer to inner: per-user limit → response cache (which also
//! coalesces identical in-flight prompts) → bulkhead → breaker → model. The model lifts
//! its own error once (`.lift()`); from then on the whole stack, in any order, has the one
//! error type [`Error<E>`](core::Error): a single `match` tells a refusal (which primitive,
//! `retry_after`) from the model's own typed error, and `.boxed()` names the stack.
//!
//! ```
//! use backstop::prelude::*;
//! use std::time::Duration;
//!
//! #[derive(Clone)]
//! struct Ask { user: String, prompt: String }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let model = service_fn(|ask: Ask| async move {
//!     Ok::<_, std::io::Error>(format!("answer to {}", ask.prompt))
//! })
//! .lift();
//!
//! let per_user = KeyedRateLimiter::new(Quota::per_minute(60)?.with_burst(1)?);
//! let cache: TieredCache<String, String> = TieredCache::in_memory(10_000)?;
//! let bulkhead = Bulkhead::new(BulkheadConfig { max_concurrent: 32, ..Default::default() })?;
//! let breaker = Breaker::builder()
//!     .name("model")
//!     .failure_rate_threshold(50.0)
//!     .wait_in_open(Duration::from_secs(10))
//!     .build()?;
//!
//! let gateway: BoxService<Ask, String, Error<std::io::Error>> = Stack::new()
//!     .layer(RateLimitLayer::new(per_user).key(|a: &Ask| a.user.clone()))
//!     .layer(CacheLayer::new(cache.clone()).key(|a: &Ask| Some(a.prompt.clone())))
//!     .layer(BulkheadLayer::new(bulkhead))
//!     .layer(BreakerLayer::new(breaker.clone()))
//!     .service(model)
//!     .boxed();
//!
//! let ask = Ask { user: "ann".into(), prompt: "plan the trip".into() };
//! assert_eq!(gateway.call(ask.clone()).await?, "answer to plan the trip");
//! match gateway.call(ask).await {
//!     Err(Error::Rejected(refused)) => {
//!         // Over ann's burst: what an HTTP gateway answers with 429 and Retry-After.
//!         assert_eq!(refused.kind, RejectKind::RateLimited { quota: 0 });
//!         assert!(refused.retry_after.is_some());
//!     }
//!     other => panic!("expected a refusal, got {other:?}"),
//! }
//! assert_eq!(breaker.stats().buffered_calls, 1);
//! # Ok(())
//! # }
//! ```
//!
//! The same layers go into `tower::ServiceBuilder` through
//! [`TowerLayer`](core::tower::TowerLayer); [`BackstopConfig`](config::BackstopConfig)
//! builds them from a TOML file (see `examples/backstop.toml`); a
//! [`MetricsReporter`](metrics::MetricsReporter) publishes their stats; and
//! `cargo run --release -p agent-gateway` runs the whole path — limit, dedup,
//! tiered cache, breaker, batcher, pool and an autoscaler — against a simulated provider.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
// docs.rs builds with `--cfg docsrs` on nightly: every item is labelled with the features it
// needs (rustdoc's `doc_cfg`, which now includes what `doc_auto_cfg` did).
#![cfg_attr(docsrs, feature(doc_cfg))]

#[doc(inline)]
pub use backstop_core as core;

#[cfg(feature = "config")]
pub mod config;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod prelude;

#[cfg(feature = "batch")]
#[doc(inline)]
pub use backstop_batch as batch;
#[cfg(feature = "breaker")]
#[doc(inline)]
pub use backstop_breaker as breaker;
#[cfg(feature = "cache")]
#[doc(inline)]
pub use backstop_cache as cache;
#[cfg(feature = "dedup")]
#[doc(inline)]
pub use backstop_dedup as dedup;
#[cfg(any(feature = "limit", feature = "limit-sync"))]
#[doc(inline)]
pub use backstop_limit as limit;
#[cfg(feature = "load")]
#[doc(inline)]
pub use backstop_load as load;
#[cfg(feature = "pool")]
#[doc(inline)]
pub use backstop_pool as pool;
#[cfg(feature = "redis")]
#[doc(inline)]
pub use backstop_redis as redis;
#[cfg(feature = "retry")]
#[doc(inline)]
pub use backstop_retry as retry;
#[cfg(feature = "route")]
#[doc(inline)]
pub use backstop_route as route;
#[cfg(feature = "scale")]
#[doc(inline)]
pub use backstop_scale as scale;
