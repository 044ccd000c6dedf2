//! The retry budget: retries may add at most a share of the request rate plus a small floor
//! per second, shared by every clone (as Finagle's `RetryBudget` and tower's `TpsBudget`).

use crate::config::RetryBudgetConfig;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use tokio::time::Instant;

/// One retry, in the budget's integer units (a thousandth of a retry), so a 20 % share is
/// an exact 200 units per request.
const UNIT: i64 = 1_000;

/// A token bucket of retries, shared by every clone.
///
/// Every call deposits `ratio` of a retry; the floor adds `min_per_sec` retries every
/// second; each retry withdraws one. The balance starts with one second of floor (so a
/// fresh handle can retry at once) and never exceeds `max_banked` retries, so over any run
/// of `seconds` the retries are at most `calls × ratio + min_per_sec × (seconds + 1)`: a
/// full outage multiplies load by at most `1 + ratio` (plus the floor), never by the
/// attempt count.
///
/// ```
/// use backstop_retry::{RetryBudget, RetryBudgetConfig};
///
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
/// # rt.block_on(async {
/// let budget = RetryBudget::new(RetryBudgetConfig { ratio: 0.5, min_per_sec: 0, max_banked: 10 });
/// budget.deposit();
/// budget.deposit();
/// assert!(budget.try_withdraw()); // two calls at 50 % earn one retry
/// assert!(!budget.try_withdraw());
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct RetryBudget {
    inner: Arc<BudgetState>,
}

#[derive(Debug)]
struct BudgetState {
    deposit: i64,
    /// Floor units earned per millisecond (`min_per_sec` retries a second).
    floor_per_ms: i64,
    cap: i64,
    balance: AtomicI64,
    started: Instant,
    /// Milliseconds since `started` whose floor has been credited.
    credited_ms: AtomicU64,
}

impl RetryBudget {
    /// A budget with `config`'s share, floor and cap (validated by
    /// [`RetryConfig`](crate::RetryConfig); out-of-range values are clamped here).
    pub fn new(config: RetryBudgetConfig) -> Self {
        let ratio = if config.ratio.is_finite() {
            config.ratio.clamp(0.0, 1_000.0)
        } else {
            0.0
        };
        Self {
            inner: Arc::new(BudgetState {
                deposit: (ratio * UNIT as f64).round() as i64,
                floor_per_ms: i64::from(config.min_per_sec),
                cap: i64::from(config.max_banked).saturating_mul(UNIT),
                balance: AtomicI64::new(
                    i64::from(config.min_per_sec.min(config.max_banked)).saturating_mul(UNIT),
                ),
                started: Instant::now(),
                credited_ms: AtomicU64::new(0),
            }),
        }
    }

    /// Records one call (a first attempt), earning `ratio` of a retry.
    #[inline]
    pub fn deposit(&self) {
        let s = &*self.inner;
        if s.deposit == 0 {
            return;
        }
        let before = s.balance.fetch_add(s.deposit, Ordering::Relaxed);
        if before + s.deposit > s.cap {
            s.balance.fetch_min(s.cap, Ordering::Relaxed);
        }
    }

    /// Takes one retry from the budget; `false` (and nothing taken) when it is empty.
    pub fn try_withdraw(&self) -> bool {
        let s = &*self.inner;
        self.credit_floor();
        s.balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                (b >= UNIT).then(|| b - UNIT)
            })
            .is_ok()
    }

    /// Retries the budget would grant now.
    pub fn available(&self) -> u64 {
        self.credit_floor();
        (self.inner.balance.load(Ordering::Relaxed).max(0) / UNIT) as u64
    }

    /// Credits the floor for the whole milliseconds since the last credit, exactly once.
    fn credit_floor(&self) {
        let s = &*self.inner;
        if s.floor_per_ms == 0 {
            return;
        }
        let now_ms = u64::try_from(s.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let before = s.credited_ms.fetch_max(now_ms, Ordering::Relaxed);
        if now_ms > before {
            let earned = i64::try_from(now_ms - before)
                .unwrap_or(i64::MAX)
                .saturating_mul(s.floor_per_ms);
            let after = s.balance.fetch_add(earned.min(s.cap), Ordering::Relaxed);
            if after.saturating_add(earned) > s.cap {
                s.balance.fetch_min(s.cap, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn the_floor_earns_retries_each_second_and_the_cap_holds() {
        let budget = RetryBudget::new(RetryBudgetConfig {
            ratio: 0.0,
            min_per_sec: 2,
            max_banked: 5,
        });
        // One second of floor to start with.
        assert_eq!(budget.available(), 2);
        assert!(budget.try_withdraw() && budget.try_withdraw() && !budget.try_withdraw());
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(budget.available(), 2);
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert_eq!(budget.available(), 5);
        for _ in 0..5 {
            assert!(budget.try_withdraw());
        }
        assert!(!budget.try_withdraw());
    }

    #[tokio::test(start_paused = true)]
    async fn clones_share_one_balance() {
        let budget = RetryBudget::new(RetryBudgetConfig {
            ratio: 0.2,
            min_per_sec: 0,
            max_banked: 100,
        });
        let other = budget.clone();
        for _ in 0..10 {
            budget.deposit();
        }
        assert!(other.try_withdraw());
        assert!(budget.try_withdraw());
        assert!(!other.try_withdraw());
    }
}
