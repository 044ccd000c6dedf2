//! Rate limiting for Backstop: per-user quotas, LLM token budgets and concurrency caps.
//!
//! - [`RateLimiter`]: a GCRA limiter (the governor model). A [`Quota`] is a sustained
//!   rate plus a burst; [`check`](RateLimiter::check) admits one cell and
//!   [`check_n`](RateLimiter::check_n) admits a weighted request (the tokens of one LLM
//!   call) all or nothing. A refusal carries `retry_after`; a cost above the burst is a
//!   distinct [`CheckError::InsufficientCapacity`] because no wait would ever admit it.
//! - [`KeyedRateLimiter`]: one limiter per user, tenant or model on `dashmap`, with
//!   per-key quota overrides and bounded memory (a lossless
//!   [`retain_recent`](KeyedRateLimiter::retain_recent) sweep and an optional key cap; a
//!   full map sweeps at most once per `max_keys / 8` refused new keys, so a key flood
//!   costs O(1) amortized per call).
//! - [`MultiRateLimiter`]: several quotas at once (60/min AND 1,000/hour AND
//!   10,000/day), admitting only if all admit and charging all or none; with
//!   [`check_costs`](MultiRateLimiter::check_costs) each quota gets its own cost, so one
//!   call charges a request against requests-per-minute and its tokens against
//!   tokens-per-minute, or neither. [`KeyedMultiRateLimiter`] does the same per key, with
//!   per-key overrides, the same lossless sweep and a key cap.
//! - Async waiting (feature `tokio`, on by default): [`RateLimiter::until_ready`] and
//!   [`KeyedRateLimiter::until_key_ready`], with jitter and a `max_wait` after which the
//!   caller gives up without being charged ([`WaitPolicy`]).
//! - [`Bulkhead`] (feature `tokio`): at most N calls in flight with a bounded wait queue; permits are RAII
//!   guards, freed on drop, cancellation and panic; it reports a [`backstop_core::LoadSignal`].
//! - [`AdaptiveLimiter`] (feature `tokio`): an in-flight limit found from measured latency (AIMD, Vegas or
//!   Gradient2 against a latency baseline guarded from drift, with no probe), with priority
//!   classes that shed the least important work first; [`AdaptiveLayer`] puts it in front
//!   of a service. Its docs list the anchors' traps it avoids and show a critical and a
//!   sheddable class.
//! - [`RateLimitLayer`] (over any limiter above, `RateLimitLayer::new(limiter)` with
//!   `.key(..)` and `.cost(..)`) and [`BulkheadLayer`] put the same limits in front of any
//!   [`backstop_core::Service`]. A refusal is the workspace's one
//!   [`Rejected`](backstop_core::Rejected) (which quota refused, `retry_after`) carried in
//!   the stack's own error, ready to become `429` + `Retry-After`; the services report
//!   readiness (an empty direct limiter, a full bulkhead) so tower's `LoadShed` works in
//!   front of them.
//! - [`SlidingWindowLimiter`] and [`KeyedSlidingWindow`]: "N per minute/hour/day" as
//!   users state quotas, the two-bucket sliding-window counter (current window plus the
//!   previous one weighted by its remaining overlap, as Cloudflare does). It is an
//!   approximation at window boundaries, but never admits more than N in any aligned window.
//!   The keyed form has per-key limit overrides, a lossless idle sweep and a key cap.
//! - [`Budgets`] (module [`budget`]): token and money budgets that settle — reserve an
//!   estimate on every quota of a key, its team and its organisation (any depth) all or
//!   none, then settle with the actual usage (unused part refunded exactly, overruns
//!   charged as debt, a dropped reservation settled by a [`DropRule`] exactly once); a
//!   [`CostTable`] prices tokens in integer micro-units against daily and monthly budgets
//!   (calendar periods in UTC); `RedisBudgets` (feature `redis`) does the same across
//!   processes, one Lua script to reserve and one to settle.
//! - `RedisRateLimiter` (feature `redis`): the same GCRA shared by every process through
//!   Redis, one Lua script (one round trip, `EVALSHA` with `NOSCRIPT` fallback) per
//!   decision, several quotas per key checked all or none, keys hash-tagged to one
//!   cluster slot, Redis `TIME` or client time, and an explicit `FailurePolicy` (fail
//!   open, fail closed, or a local in-process limiter) when Redis is down or slow,
//!   decided within a per-call timeout. `until_key_ready` waits for admission within a
//!   `max_wait`; [`RateLimitLayer`] puts it in front of a service like every other
//!   limiter (a [`RateLimitHandle`] whose charge is a round trip); `RedisLimitConfig`
//!   reads it from configuration.
//!
//! Every limiter above, in process or in Redis, answers a check with one error,
//! [`CheckError`] (its Redis outcomes, `Unavailable` and `Misconfigured`, under the `redis`
//! feature), a wait with one [`WaitError`], and reports one [`LimiterStats`]: `admitted` and
//! `rejected` everywhere, the room left for a direct limiter, the key bookkeeping for a
//! keyed one, Redis failures for the Redis limiter (zero where they do not apply).
//!
//! # Features
//!
//! - `tokio` (default): everything that waits or holds a permit across an await — the
//!   async waits, [`Bulkhead`] and [`BulkheadLayer`], [`AdaptiveLimiter`] and
//!   [`AdaptiveLayer`], [`TokioClock`]. Without it (`default-features = false`) the crate is
//!   the synchronous limiters, [`RateLimitLayer`] and the local budgets, and pulls no
//!   runtime.
//! - `redis` (implies `tokio`): `RedisRateLimiter` (under the same [`RateLimitLayer`]), and
//!   `RedisBudgets`.
//! - `quanta`: the default clock reads the CPU counter.
//!
//! # Bounds
//!
//! Every size and duration is bounded when it is built or validated, with a typed error
//! naming the field: [`Quota::MAX_CELLS`] for rates and bursts, a year
//! ([`backstop_core::config::MAX_DURATION`]) for periods, windows and waits,
//! [`BulkheadConfig::MAX_SLOTS`] for a bulkhead; every sleep and timeout goes through
//! [`backstop_core::time::clamp`], so a value that bypassed validation cannot overflow a
//! deadline.
//!
//! # Design
//!
//! Every limiter above is one [`Limiter`]: an algorithm ([`Gcra`] over one quota or
//! several, [`SlidingWindow`]) over a state store ([`DirectStore`] for one stream,
//! [`KeyedStore`] for one state per key, with the overrides, the sweep and the key cap), as
//! governor separates its algorithm from its `StateStore`. The public names are aliases of
//! the combinations, so the keyed machinery, the counters, the async waits and the layer
//! are written once. A limiter is a cheap-clone handle (an `Arc` inside): clones share
//! the state, so it goes to layers and tasks as is.
//!
//! GCRA keeps one number per limiter, the theoretical arrival time (TAT), here in
//! nanoseconds since the limiter's origin in one `AtomicU64`: a decision is a clock read
//! and a compare-and-swap, with no lock, no allocation and no background task. It is
//! exactly a token bucket (the tests check this against a token-bucket model) without the
//! refill bookkeeping. Unlike governor, time comes from [`backstop_core::Clock`], so tests
//! drive it with `ManualClock` (or [`TokioClock`] under `tokio::time::pause`), weighted
//! costs are `u64` (token budgets exceed governor's `u32` cells), and a key whose TAT is in
//! the past is indistinguishable from a new key, so sweeping idle keys never changes a
//! decision. Each keyed entry is the key plus 8 bytes of state (`benches/limit_memory.rs`
//! measures about 28 bytes per `u64`-keyed entry beyond the key, map overhead included,
//! the same as governor, and an empty map again after the sweep).
//!
//! Time is read as integer nanoseconds ([`backstop_core::Clock::now_nanos`]; with the
//! `quanta` feature the default clock reads the CPU counter, as governor does), and the
//! `admitted`/`rejected` counters behind `stats()` are striped per thread. A direct
//! check then costs what reading the counter costs, slightly under governor's check
//! (`benches/limit.rs`), while still counting exactly.
//!
//! # Example: a per-user request and token budget
//!
//! ```
//! use backstop_core::ManualClock;
//! use backstop_limit::{CheckError, KeyedMultiRateLimiter, Quota};
//!
//! // Per user: 60 requests per minute AND 10,000 tokens per minute.
//! let budgets = KeyedMultiRateLimiter::with_clock(
//!     vec![Quota::per_minute(60).unwrap(), Quota::per_minute(10_000).unwrap()],
//!     ManualClock::new(),
//! )
//! .unwrap();
//! let admit = |user: &str, tokens: u64| budgets.check_key_costs(&user.to_string(), &[1, tokens]);
//!
//! assert!(admit("ann", 8_000).is_ok());
//! let refused = admit("ann", 4_000).unwrap_err();
//! assert!(refused.retry_after().is_some(), "429 with Retry-After");
//! assert!(admit("ann", 2_000).is_ok(), "the refusal spent neither budget");
//! assert!(matches!(admit("bob", 20_000), Err(CheckError::InsufficientCapacity { .. })));
//! ```
#![forbid(unsafe_code)]
// docs.rs builds with `--cfg docsrs` on nightly: every item is labelled with the features it
// needs (rustdoc's `doc_cfg`, which now includes what `doc_auto_cfg` did).
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

pub mod budget;
#[cfg(feature = "tokio")]
mod bulkhead;
mod cap;
mod counters;
#[cfg(feature = "redis")]
mod distributed;
mod error;
mod gcra;
mod keyed;
mod layer;
mod limiter;
mod multi;
mod quota;
#[cfg(feature = "redis")]
mod redis_config;
#[cfg(feature = "redis")]
mod redis_layer;
mod stats;
mod store;
mod wait;
mod window;

#[cfg(feature = "tokio")]
pub use backstop_core::TokioClock;
pub use budget::{
    BudgetConfig, BudgetError, BudgetLevelConfig, BudgetMeter, BudgetPeriod, BudgetPlan,
    BudgetPlanBuilder, BudgetQuota, BudgetQuotaConfig, BudgetReservation, BudgetStats, Budgets,
    Charges, CostTable, DropRule, EntrySpend, LevelStats, ModelPrice, QuotaUse, Settlement,
    TokenUsage,
};
#[cfg(feature = "redis")]
pub use budget::{
    RedisBudgetReservation, RedisBudgetStats, RedisBudgets, ReserveFailure, SettleRetry,
};
#[cfg(feature = "tokio")]
pub use bulkhead::{Bulkhead, BulkheadConfig, BulkheadError, BulkheadPermit, BulkheadStats};
#[cfg(feature = "redis")]
pub use distributed::{FailurePolicy, RedisDecision, RedisRateLimiter, TimeSource};
pub use error::{CheckError, WaitError};
pub use gcra::{Gcra, MAX_QUOTAS, RateLimiter};
pub use keyed::KeyedRateLimiter;
pub use layer::{
    Admission, Immediate, LimitCost, LimitKey, PerRequest, RateLimitHandle, RateLimitLayer,
    RateLimitService, Unkeyed,
};
#[cfg(feature = "tokio")]
pub use layer::{BulkheadLayer, BulkheadService};
pub use limiter::Limiter;
pub use multi::{KeyedMultiRateLimiter, MultiRateLimiter};
pub use quota::{Quota, QuotaConfig};
#[cfg(feature = "redis")]
pub use redis_config::{FailureMode, RedisLimitConfig, TimeSourceConfig};
pub use stats::LimiterStats;
pub use store::{DirectStore, KeyedStore, RateAlgorithm, StateStore};
pub use wait::WaitPolicy;
#[cfg(feature = "tokio")]
pub use wait::Waiting;
pub use window::{KeyedSlidingWindow, SlidingWindow, SlidingWindowLimiter};

#[cfg(feature = "tokio")]
mod adaptive;
#[cfg(feature = "tokio")]
pub use adaptive::{
    AdaptiveLayer, AdaptiveLimitConfig, AdaptiveLimitStats, AdaptiveLimiter, AdaptiveOutcome,
    AdaptivePermit, AdaptiveService, AimdConfig, ClassifyOutcome, DefaultOutcome, DefaultPriority,
    Gradient2Config, LimitAlgorithm, MAX_ADAPTIVE_LIMIT, MAX_PRIORITY_CLASSES, MAX_WINDOW,
    MAX_WINDOW_SAMPLES, PriorityClass, PriorityClassConfig, PriorityClassStats, PriorityKey,
    VegasConfig,
};
