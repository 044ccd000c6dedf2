//! The retry budget: retries may add at most a share of the request rate plus a small floor
//! per second, shared by every clone (as Finagle's `RetryBudget` and tower's `TpsBudget`).

use crate::config::RetryBudgetConfig;
use backstop_core::StripedCounters;
use parking_lot::Mutex;
use std::sync::Arc;
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
/// A deposit only counts the call, on a per-thread stripe (no shared cache line, no locked
/// instruction: it is on every call's success path); the balance takes in the calls counted
/// since it was last read when a retry is asked for. Between two withdrawals only deposits
/// and the floor add to the balance, and capped additions add up to the same capped sum in
/// any grouping, so the lazy balance is the eager one exactly.
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
    started: Instant,
    /// Calls deposited, striped per thread; shared with the hedge budget of the same
    /// handle, which earns from the same calls.
    calls: Arc<StripedCounters<1>>,
    settled: Mutex<Settled>,
}

/// The balance as of the last withdrawal or read.
#[derive(Debug)]
struct Settled {
    balance: i64,
    /// Calls already taken into `balance`.
    calls: u64,
    /// Milliseconds since `started` whose floor is in `balance`.
    credited_ms: u64,
}

impl RetryBudget {
    /// A budget with `config`'s share, floor and cap (validated by
    /// [`RetryConfig`](crate::RetryConfig); out-of-range values are clamped here).
    pub fn new(config: RetryBudgetConfig) -> Self {
        Self::counting(config, Arc::new(StripedCounters::new()))
    }

    /// A budget earning from the calls deposited into `self`: one deposit feeds both.
    pub(crate) fn sharing_calls(&self, config: RetryBudgetConfig) -> Self {
        Self::counting(config, self.inner.calls.clone())
    }

    fn counting(config: RetryBudgetConfig, calls: Arc<StripedCounters<1>>) -> Self {
        let ratio = if config.ratio.is_finite() {
            config.ratio.clamp(0.0, 1_000.0)
        } else {
            0.0
        };
        let already = calls.get(0);
        Self {
            inner: Arc::new(BudgetState {
                deposit: (ratio * UNIT as f64).round() as i64,
                floor_per_ms: i64::from(config.min_per_sec),
                cap: i64::from(config.max_banked).saturating_mul(UNIT),
                started: Instant::now(),
                calls,
                settled: Mutex::new(Settled {
                    balance: i64::from(config.min_per_sec.min(config.max_banked))
                        .saturating_mul(UNIT),
                    calls: already,
                    credited_ms: 0,
                }),
            }),
        }
    }

    /// Records one call (a first attempt), earning `ratio` of a retry.
    #[inline]
    pub fn deposit(&self) {
        self.inner.calls.add(0);
    }

    /// Calls deposited since creation.
    pub(crate) fn calls(&self) -> u64 {
        self.inner.calls.get(0)
    }

    /// Takes one retry from the budget; `false` (and nothing taken) when it is empty.
    pub fn try_withdraw(&self) -> bool {
        let mut settled = self.settle();
        let granted = settled.balance >= UNIT;
        if granted {
            settled.balance -= UNIT;
        }
        granted
    }

    /// Retries the budget would grant now.
    pub fn available(&self) -> u64 {
        (self.settle().balance.max(0) / UNIT) as u64
    }

    /// The balance with every call deposited and every whole millisecond of floor since
    /// the last settlement credited, each exactly once, capped.
    fn settle(&self) -> parking_lot::MutexGuard<'_, Settled> {
        let s = &*self.inner;
        let mut settled = s.settled.lock();
        // Read under the lock: a sum read later is never smaller (each stripe only grows).
        let calls = s.calls.get(0);
        let new_calls = i64::try_from(calls.saturating_sub(settled.calls)).unwrap_or(i64::MAX);
        settled.calls = settled.calls.max(calls);
        let mut earned = new_calls.saturating_mul(s.deposit);
        if s.floor_per_ms != 0 {
            let now_ms = u64::try_from(s.started.elapsed().as_millis()).unwrap_or(u64::MAX);
            if now_ms > settled.credited_ms {
                let ms = i64::try_from(now_ms - settled.credited_ms).unwrap_or(i64::MAX);
                earned = earned.saturating_add(ms.saturating_mul(s.floor_per_ms));
                settled.credited_ms = now_ms;
            }
        }
        settled.balance = settled.balance.saturating_add(earned).min(s.cap);
        settled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    proptest! {
        /// The lazy balance (calls taken in at each withdrawal) grants exactly what an eager
        /// bucket capped at every deposit grants, in any order of deposits and withdrawals.
        #[test]
        fn the_lazy_balance_is_the_eager_one(
            ops in proptest::collection::vec(any::<bool>(), 0..400),
            ratio in 0.0f64..2.0,
            max_banked in 0u32..20,
        ) {
            let config = RetryBudgetConfig { ratio, min_per_sec: 0, max_banked };
            let budget = RetryBudget::new(config);
            let (deposit, cap) = ((ratio * UNIT as f64).round() as i64, i64::from(max_banked) * UNIT);
            let mut eager = 0i64;
            for deposit_now in ops {
                if deposit_now {
                    budget.deposit();
                    eager = (eager + deposit).min(cap);
                } else {
                    let granted = eager >= UNIT;
                    if granted {
                        eager -= UNIT;
                    }
                    prop_assert_eq!(budget.try_withdraw(), granted);
                }
            }
        }
    }

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
