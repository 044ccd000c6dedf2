//! Routing for LLM gateways: fallback chains over priority groups, load balancing over
//! providers, models, keys and regions, and cooldowns by error class.
//!
//! - **Targets** ([`TargetConfig`]): named upstreams (provider × model × key × region),
//!   each with its own circuit breaker (`backstop-breaker`), optional request and token
//!   budgets per minute (`backstop-limit`), a weight, a context window and a priority
//!   group.
//! - **Fallback chain**: groups are tried in order; a failure is classified
//!   ([`ErrorClass`]: server error, timeout, 429 with its `Retry-After`, open circuit,
//!   context length, fatal) and the chain moves on — a context-length error only to
//!   targets with a larger window — within **one deadline** for the whole request and
//!   `max_attempts` calls. A 429 whose `Retry-After` is short may be waited out instead.
//! - **Cooldowns** per target, by class: `Retry-After` for a 429 (capped), a fixed length
//!   after `consecutive_failures` server errors or timeouts. When every target is cooling
//!   down, [`AllCooling`] decides: refuse at once with the soonest `retry_after`, or probe
//!   the least recently failed target.
//! - **Balancing** within a group: power of two choices over a Peak-EWMA latency estimate
//!   times calls in flight (as Finagle, Linkerd and `tower::balance`), **weighted**, and
//!   **budget-aware**: a target whose token or request budget is nearly spent is chosen
//!   less, and one without room for the request is skipped without a call. Budgets are the
//!   target's own limiters and what its provider reports ([`Router::observe_quotas`], from
//!   rate-limit headers, for keys shared with traffic the router does not see).
//! - **Sticky routing** ([`RouteHints::sticky`], [`RouteLayer::key`]): weighted rendezvous
//!   hashing keeps a conversation on one target (its prompt cache warm) while the target
//!   can take it; the fallback rules still apply.
//! - Standalone ([`Router::call`], [`Router::run`]) or as a layer ([`RouteLayer`]), serde
//!   config validated with typed errors, [`Router::stats`] per target, `tracing` events
//!   on cooldowns and fallbacks, and a [`LoadSignal`](backstop_core::LoadSignal).
//!
//! # Choosing within a group
//!
//! The first candidate is drawn in proportion to weight, the second uniformly among the
//! others; each scores `weight × headroom / cost³` (cost: the Peak-EWMA latency times the
//! calls in flight plus one; headroom: the fraction left of the tightest budget), and the
//! first wins with probability `s₁ / (s₁ + s₂)`. Equal targets then get traffic exactly in
//! proportion to their weights, and a target twice as slow (or twice as loaded) as its
//! rival loses eight times out of nine. Scores, cooldowns and budgets are read without locks,
//! and nothing is allocated per pick.
//!
//! # Example
//!
//! Two keys of one provider and a second provider as fallback; the first key is out of
//! budget, and the provider answers 503 for the other, so the request lands on the backup:
//!
//! ```
//! use backstop_core::{Error, RejectKind, Rejected};
//! use backstop_route::{RouteConfig, RouteHints, TargetConfig};
//! use std::time::Duration;
//!
//! # let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
//! # rt.block_on(async {
//! let router = RouteConfig {
//!     targets: vec![
//!         TargetConfig { key: "a".into(), tokens_per_minute: Some(1_000), ..TargetConfig::named("openai-a") },
//!         TargetConfig { key: "b".into(), ..TargetConfig::named("openai-b") },
//!         TargetConfig { group: 1, ..TargetConfig::named("anthropic") },
//!     ],
//!     timeout: Some(Duration::from_secs(30)), // one deadline for every attempt
//!     ..RouteConfig::default()
//! }
//! .build()
//! .unwrap();
//!
//! let answer = router
//!     .call(&RouteHints::new().tokens(4_000), |target| {
//!         let name = target.name().to_string();
//!         async move {
//!             match name.as_str() {
//!                 "openai-b" => Err("503 from openai"),
//!                 _ => Ok(format!("answered by {name}")),
//!             }
//!         }
//!     })
//!     .await;
//! assert_eq!(answer.unwrap(), "answered by anthropic");
//!
//! let stats = router.stats();
//! assert_eq!(stats.targets[0].chosen, 0); // no room for 4,000 tokens: skipped, no call
//! assert_eq!(stats.targets[0].skipped_no_budget, 1);
//! assert_eq!(stats.targets[1].failed.server_error, 1);
//! assert_eq!((stats.calls, stats.succeeded, stats.fallbacks), (1, 1, 1));
//!
//! // A refusal from the router itself is a typed `Rejected`:
//! let refused: Result<(), Error<&str>> = Err(Rejected::new(RejectKind::Unavailable).into());
//! assert!(refused.unwrap_err().rejection().is_some());
//! # });
//! ```

#![forbid(unsafe_code)]
// docs.rs builds with `--cfg docsrs` on nightly: every item is labelled with the features it
// needs (rustdoc's `doc_cfg`, which now includes what `doc_auto_cfg` did).
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

mod chain;
mod class;
mod config;
mod ewma;
mod hints;
mod layer;
mod pick;
mod reported;
mod router;
mod stats;
mod target;

pub use backstop_core::classify::Classify;
pub use class::{
    ClassifyRoute, ErrorClass, HintedRouteClassify, StandardRouteClassify, hinted_class,
    standard_class,
};
pub use config::{
    AllCooling, BalanceConfig, CooldownConfig, MAX_LABEL_LEN, MAX_TARGETS, MAX_WEIGHT, RouteConfig,
    TargetConfig,
};
pub use hints::{RouteHints, sticky_hash};
pub use layer::{
    NoRouteCost, NoRouteKey, RouteCost, RouteKey, RouteLayer, RouteService, Routed, TargetServices,
};
pub use router::Router;
pub use stats::{FailedByClass, RouterStats, TargetStats};
pub use target::TargetInfo;
