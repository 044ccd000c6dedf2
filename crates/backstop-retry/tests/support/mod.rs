//! Policies the tests share: waits without surprises and a budget that stays out of the way.
#![allow(dead_code)] // each test binary uses a different part of it

pub(crate) mod tail;

use backstop_retry::{Jitter, RetryBackoffConfig, RetryBudgetConfig, RetryConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// Held by an attempt while it is alive: `live` counts attempts started and not yet
/// finished or dropped, so a test sees whether a cancelled attempt was really dropped.
pub(crate) struct Live(Arc<AtomicI64>);

impl Live {
    /// Counts one more attempt alive in `live` until the guard drops.
    pub(crate) fn enter(live: &Arc<AtomicI64>) -> Self {
        live.fetch_add(1, Ordering::Relaxed);
        Self(live.clone())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Waits from `initial`, doubling up to 1 s, with `jitter`.
pub(crate) fn backoff(initial: Duration, jitter: Jitter) -> RetryBackoffConfig {
    RetryBackoffConfig {
        initial,
        max: Duration::from_secs(1),
        multiplier: 2.0,
        jitter,
    }
}

/// A budget that never runs dry in these tests, which are about something else.
pub(crate) fn unlimited_budget() -> RetryBudgetConfig {
    RetryBudgetConfig {
        ratio: 1.0,
        min_per_sec: 1_000,
        max_banked: 1_000,
    }
}

/// `max_attempts` with exact waits of 100, 200, 400 ms … and the unlimited budget.
pub(crate) fn exact_policy(max_attempts: u32) -> RetryConfig {
    RetryConfig {
        max_attempts,
        backoff: backoff(Duration::from_millis(100), Jitter::None),
        budget: unlimited_budget(),
        ..RetryConfig::default()
    }
}
