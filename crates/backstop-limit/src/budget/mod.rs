//! Token and money budgets that settle: reserve an estimate before an LLM call, charge what
//! it actually used after it, per key, team and organisation.
//!
//! An LLM call's cost is unknown until it ends. Charging a guess up front is wrong both
//! ways; charging after the fact overshoots, since many calls run at once. A budget here
//! does what TensorZero does: **reserve** the estimate (the prompt's tokens plus
//! `max_tokens`, priced) on every quota the call touches, all or none, then **settle** the
//! reservation with the provider's reported usage:
//!
//! - the unused part is returned exactly (amounts are integers, money in micro-units);
//! - an overrun is charged even past the limit: the path is in debt, and its next calls are
//!   refused until the period that holds the debt ends;
//! - a reservation dropped without settling (a cancelled request, a panic, an early
//!   return) is settled by the plan's [`DropRule`] — keep the estimate charged (the
//!   default) or refund it all — exactly once, from `Drop`, never panicking there.
//!
//! **Levels.** A [`BudgetPlan`] has levels, narrowest first (`key`, `team`, `org`, up to
//! [`BudgetPlan::MAX_LEVELS`]); each has its own quotas ([`BudgetQuota`]: requests, tokens
//! or spend per period) and per-id overrides. A call names one id per level (its path) and
//! is reserved at every level all or none: a refusal anywhere charges nothing anywhere.
//!
//! **Money.** A [`CostTable`] prices each model's input and output tokens
//! ([`ModelPrice`], micro-units per million tokens, as providers list them), so a spend
//! quota of `5_000_000` is five dollars. [`Budgets::stats`] reports each id's spend per
//! level for the current periods, and its totals.
//!
//! **Periods.** Every quota counts over an aligned [`BudgetPeriod`]: fixed windows aligned
//! to the Unix epoch (`1m` starts on the minute) or calendar days and months in UTC. A
//! daily budget resets at midnight UTC, which is what LiteLLM users expect of a "daily
//! budget" and how providers bill; aligned periods give every process and Redis the same
//! boundaries with no coordination, and give each unit of usage one balance to be
//! refunded to, so refunds are exact. (A rolling window or a GCRA bucket refills while a
//! call runs, so "return the unused part" has no exact meaning there; this is why budgets
//! keep balances per period rather than a theoretical arrival time.) A settlement after
//! its period ended drops the refund (that balance is gone) and charges an overrun to the
//! current period.
//!
//! **Decisions for headers.** A refusal is [`BudgetError::Refused`], carrying the
//! workspace's one [`Rejected`](backstop_core::Rejected) (`RateLimited` with the refusing
//! quota's index, `retry_after` until its period ends) plus its level and quota;
//! [`Budgets::quota_states`] and [`BudgetReservation::quota_states`] give remaining and
//! reset per quota (`key-requests`, `team-spend`, …), requests, tokens and money apart.
//!
//! **Bound on overshoot.** A reservation is admitted only if every quota has room for its
//! estimate, so usage beyond a limit comes only from overruns: at any moment a quota's use
//! is at most its limit plus the overruns of the calls that were in flight together, that
//! is at most `limit + C × (largest overrun)` with `C` calls in flight at once
//! (`tests/budget_model.rs` and `tests/budget_redis.rs` check it).
//!
//! [`Budgets`] keeps the balances in this process; `RedisBudgets` (feature `redis`) keeps
//! them in Redis, one Lua script to reserve and one to settle, exact across processes.
//!
//! # Example: a key inside a team
//!
//! ```
//! use backstop_core::ManualClock;
//! use backstop_limit::{
//!     BudgetError, BudgetPeriod, BudgetPlan, BudgetQuota, Budgets, CostTable, ModelPrice, TokenUsage,
//! };
//! use std::time::SystemTime;
//!
//! let plan = BudgetPlan::builder()
//!     .level("key", [
//!         BudgetQuota::requests(100, BudgetPeriod::minute())?,
//!         BudgetQuota::tokens(20_000, BudgetPeriod::minute())?,
//!     ])
//!     .level("team", [BudgetQuota::spend(100_000, BudgetPeriod::Day)?]) // ten cents a day
//!     .costs(CostTable::new().with("gpt-4o", ModelPrice::per_million(2_500_000, 10_000_000))?)
//!     .build()?;
//! let budgets = Budgets::with_clock(plan, ManualClock::new(), SystemTime::now());
//! let path = ["ann", "ml-team"];
//!
//! // 1,000 prompt tokens and max_tokens of 8,000: 82,500 micro-dollars held on the team.
//! let call = budgets.reserve(&path, "gpt-4o", TokenUsage::new(1_000, 8_000))?;
//! // A second such call does not fit the team's day: refused, and nothing charged.
//! let refused = budgets.reserve(&["bob", "ml-team"], "gpt-4o", TokenUsage::new(1_000, 8_000));
//! let Err(BudgetError::Refused { level: 1, rejected, .. }) = refused else { panic!() };
//! assert!(rejected.retry_after.is_some());
//! // The first call used 500 output tokens: 7,500 micro-dollars; the rest comes back.
//! let settled = call.settle_usage(TokenUsage::new(1_000, 500));
//! assert_eq!(settled.refunded.spend, 75_000);
//! assert!(budgets.reserve(&["bob", "ml-team"], "gpt-4o", TokenUsage::new(1_000, 8_000)).is_ok());
//! let team = budgets.spend("team", "ml-team").unwrap();
//! assert_eq!(team.totals.spend, 7_500 + 82_500, "bob's call is dropped unsettled: charged its estimate");
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! ```

mod config;
mod error;
mod ledger;
mod local;
mod money;
mod period;
mod plan;
#[cfg(feature = "redis")]
mod redis;
mod reservation;
mod stats;

pub use config::{BudgetConfig, BudgetLevelConfig, BudgetQuotaConfig};
pub use error::BudgetError;
pub use local::Budgets;
pub use money::{BudgetMeter, Charges, CostTable, ModelPrice, TokenUsage};
pub use period::BudgetPeriod;
pub use plan::{BudgetPlan, BudgetPlanBuilder, BudgetQuota, DropRule};
#[cfg(feature = "redis")]
pub use redis::{
    RedisBudgetReservation, RedisBudgetStats, RedisBudgets, ReserveFailure, SettleRetry,
};
pub use reservation::{BudgetReservation, Settlement};
pub use stats::{BudgetStats, EntrySpend, LevelStats, QuotaUse};
