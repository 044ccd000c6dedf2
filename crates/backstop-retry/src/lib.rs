//! Retries for LLM and agent calls that do not turn an outage into a retry storm.
//!
//! - **Policy**: at most `max_attempts`, exponential backoff with full or decorrelated
//!   jitter, and a classification of every failure into retry / retry after a given time /
//!   stop ([`RetryDecision`]). The default ([`StandardClassify`]) honours a
//!   [`Rejected`](backstop_core::Rejected)'s `retry_after` and never retries a refusal that
//!   cannot pass; a provider's own errors (a `Retry-After` header, a 400) are classified
//!   with [`RetryLayer::classify`]. Installing a retry states the call is idempotent.
//! - **Budget** ([`RetryBudget`]): retries add at most `ratio` of the call rate plus a floor
//!   per second, shared by every clone, so a full outage multiplies load by at most
//!   `1 + ratio`, never by the attempt count.
//! - **One deadline** across attempts (`timeout`): each attempt gets what remains, inner
//!   layers read it through `backstop_core::deadline`, and no attempt starts when too
//!   little is left.
//! - **Hedging** ([`HedgeConfig`]): an attempt slower than the observed percentile gets a
//!   second one; the first success wins and the loser is cancelled; a hedge budget caps the
//!   extra load.
//! - **Streams** ([`Retry::stream`]): time-to-first-chunk and idle timeouts, retries before
//!   the first chunk, and a typed error for a stream cut after it began.
//!
//! Standalone, as a layer, with stats:
//!
//! ```
//! use backstop_core::{Error, Layer, RejectKind, Rejected, Service, ServiceExt, service_fn};
//! use backstop_retry::{RetryConfig, RetryLayer};
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::time::Duration;
//!
//! # let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
//! # rt.block_on(async {
//! // A provider that rate-limits the first call and asks for a one-second wait.
//! let calls = AtomicU32::new(0);
//! let provider = service_fn(|prompt: &'static str| {
//!     let n = calls.fetch_add(1, Ordering::Relaxed);
//!     async move {
//!         if n == 0 {
//!             Err(Error::<std::io::Error>::Rejected(
//!                 Rejected::new(RejectKind::RateLimited { quota: 0 })
//!                     .with_retry_after(Duration::from_secs(1)),
//!             ))
//!         } else {
//!             Ok(format!("answer to {prompt}"))
//!         }
//!     }
//! });
//! let retry = RetryConfig {
//!     max_attempts: 3,
//!     timeout: Some(Duration::from_secs(20)), // one deadline for every attempt
//!     ..RetryConfig::default()
//! }
//! .build()
//! .unwrap();
//! let stack = RetryLayer::new(retry.clone()).layer(provider);
//!
//! let started = tokio::time::Instant::now();
//! assert_eq!(stack.call("hi").await.unwrap(), "answer to hi");
//! assert_eq!(started.elapsed(), Duration::from_secs(1)); // waited as told
//! let stats = retry.stats();
//! assert_eq!((stats.attempts, stats.retries, stats.budget_refusals), (2, 1, 0));
//! # });
//! ```

#![forbid(unsafe_code)]
// docs.rs builds with `--cfg docsrs` on nightly: every item is labelled with the features it
// needs (rustdoc's `doc_cfg`, which now includes what `doc_auto_cfg` did).
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

mod backoff;
mod budget;
mod classify;
mod config;
mod first;
mod hedge;
mod layer;
mod retry;
mod stats;
mod stream;

pub use backstop_core::classify::Classify;
pub use budget::RetryBudget;
pub use classify::{
    ClassifyRetry, HintedClassify, RetryDecision, StandardClassify, hinted_decision,
    standard_decision,
};
pub use config::{
    HedgeConfig, Jitter, MAX_ATTEMPTS, MAX_BUDGET_COUNT, RetryBackoffConfig, RetryBudgetConfig,
    RetryConfig,
};
pub use layer::{RetryLayer, RetryService};
pub use retry::Retry;
pub use stats::RetryStats;
pub use stream::{StreamTimeouts, TimedStream};
