//! Circuit breaking for Backstop: stop calling a degraded LLM provider or tool backend,
//! fail fast while it recovers, and probe it carefully before trusting it again.
//!
//! [`Breaker`] offers what resilience4j's CircuitBreaker does, in async Rust:
//!
//! - states `Closed`, `Open`, `HalfOpen`, plus operator states `ForcedOpen`, `Disabled`
//!   and `MetricsOnly` ([`Breaker::transition_to`]);
//! - a **count-based** window (last N calls) or a **time-based** one (last N seconds in
//!   one-second buckets), with `minimum_calls` before any decision;
//! - **failure-rate** and **slow-call-rate** thresholds, and a consecutive-failures mode;
//! - an open period with optional exponential **backoff** and cap after each failed probe
//!   round; a half-open state that admits **exactly** `permitted_calls_in_half_open`
//!   probes, and `max_wait_in_half_open` so a stuck probe cannot wedge it;
//! - **classification** of results ([`Classify`]): which errors count, which are ignored,
//!   and which successes are failures after all;
//! - **cancellation safety**: a call whose future is dropped returns its permit (by
//!   default it counts as neither success nor failure, see [`CancelledCalls`]);
//! - [`BreakerLayer`] for [`backstop_core::Service`], a [`BreakerRegistry`] of named
//!   breakers, [`BreakerEvent`]s through `tracing` and [`Breaker::subscribe`], and
//!   [`Breaker::stats`].
//!
//! # Design
//!
//! The closed state is the one that matters for speed, so it takes no lock: admission is
//! one atomic load of a state word, and recording an outcome is one `fetch_add` on the
//! count window's cursor plus a slot swap only when the outcome differs from the one it
//! evicts. The clock is read only when slow-call tracking or a time window needs it.
//! Everything rare — tripping, half-open probes, operator changes — goes through one
//! mutex, which is what makes the half-open probe count exact (failsafe-rs and recloser
//! admit every call in half-open; Polly had a probe stampede). The state word carries an
//! epoch bumped by every transition, so a slow call that finishes after the circuit moved
//! on cannot corrupt the new state's counts. Time is read through
//! [`backstop_core::Clock`], so every transition is testable with `ManualClock`.
//!
//! The open → half-open transition is lazy (on the next call), or also performed by
//! `state()`/`stats()` with [`automatic_transition`](BreakerConfig::automatic_transition);
//! no background task is needed, so the crate is runtime-agnostic.
//!
//! The time-based window keeps its buckets under a short mutex; only the count-based
//! window is lock-free.
//!
//! # Example
//!
//! ```
//! use backstop_breaker::{Breaker, State};
//! use backstop_core::{Error, RejectKind};
//! use std::time::Duration;
//!
//! let breaker = Breaker::builder()
//!     .name("openai")
//!     .count_window(10)
//!     .minimum_calls(5)
//!     .failure_rate_threshold(50.0)
//!     .wait_in_open(Duration::from_secs(30))
//!     .build()
//!     .expect("valid config");
//!
//! # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! # rt.block_on(async {
//! for _ in 0..5 {
//!     let _ = breaker.call(|| async { Err::<String, _>("503") }).await;
//! }
//! match breaker.call(|| async { Ok::<_, &str>("answer".to_string()) }).await {
//!     Err(Error::Rejected(rejected)) => {
//!         assert_eq!(rejected.kind, RejectKind::CircuitOpen);
//!         assert_eq!(breaker.state(), State::Open);
//!         assert!(rejected.retry_after.is_some()); // map to 503 + Retry-After
//!     }
//!     other => panic!("expected a rejection, got {other:?}"),
//! }
//! # });
//! ```

#![forbid(unsafe_code)]
// docs.rs builds with `--cfg docsrs` on nightly: every item is labelled with the features it
// needs (rustdoc's `doc_cfg`, which now includes what `doc_auto_cfg` did).
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

mod breaker;
mod builder;
mod config;
mod event;
mod layer;
mod registry;
mod state;
mod stats;
mod window;

pub use breaker::{Breaker, Permit};
pub use builder::BreakerBuilder;
pub use config::{
    Backoff, BreakerConfig, BreakerWindow, CancelledCalls, MAX_COUNT_WINDOW,
    MAX_TIME_WINDOW_SECONDS,
};
pub use event::BreakerEvent;
pub use layer::{BreakerLayer, BreakerService};
pub use registry::{BreakerRegistry, RegistryConfig};
pub use state::{Classify, DefaultClassifier, IgnoreRejections, Outcome, State};
pub use stats::BreakerStats;
