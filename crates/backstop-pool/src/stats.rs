//! Counters, latency histograms and the serializable [`PoolStats`] snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

use std::cell::Cell;
use std::time::Duration;

use backstop_core::{Histogram, HistogramSnapshot, LatencySummary};
use parking_lot::Mutex;
use serde::Serialize;

/// Why the pool closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    Idle,
    Lifetime,
    HealthCheck,
    Broken,
    Resize,
    PoolClosed,
}

/// Live counters shared by the pool, its manager wrapper and its background task.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    created: AtomicU64,
    create_failures: AtomicU64,
    closed: [AtomicU64; 6],
    pub(crate) timeouts: AtomicU64,
    pub(crate) panicked: AtomicU64,
    pub(crate) leaks_suspected: AtomicU64,
    pub(crate) resizes: AtomicU64,
    pub(crate) wait: WaitTimes,
    /// The last creation error and when it happened, in pool-clock nanoseconds.
    last_create_error: Mutex<Option<(u64, String)>>,
}

impl Counters {
    pub(crate) fn on_created(&self) {
        self.created.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn on_create_failed(&self, error: String, at: u64) {
        self.create_failures.fetch_add(1, Ordering::Relaxed);
        *self.last_create_error.lock() = Some((at, error));
    }

    pub(crate) fn on_closed(&self, reason: CloseReason) {
        self.closed[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The last creation error if it happened at or after `since`.
    pub(crate) fn create_error_since(&self, since: u64) -> Option<String> {
        self.last_create_error
            .lock()
            .as_ref()
            .filter(|(at, _)| *at >= since)
            .map(|(_, error)| error.clone())
    }

    pub(crate) fn created(&self) -> u64 {
        self.created.load(Ordering::Relaxed)
    }

    pub(crate) fn create_failures(&self) -> u64 {
        self.create_failures.load(Ordering::Relaxed)
    }

    pub(crate) fn closed(&self) -> ClosedStats {
        let get = |r: CloseReason| self.closed[r as usize].load(Ordering::Relaxed);
        ClosedStats {
            idle: get(CloseReason::Idle),
            lifetime: get(CloseReason::Lifetime),
            health_check: get(CloseReason::HealthCheck),
            broken: get(CloseReason::Broken),
            resize: get(CloseReason::Resize),
            pool_closed: get(CloseReason::PoolClosed),
        }
    }
}

/// Connections closed, by reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct ClosedStats {
    /// Idle longer than `idle_timeout`.
    pub idle: u64,
    /// Older than their (jittered) `max_lifetime`.
    pub lifetime: u64,
    /// Failed or timed out a health check, or was mid-check when its checkout was
    /// cancelled (its state is then unknown).
    pub health_check: u64,
    /// Reported broken by a caller or a [`PoolLayer`](crate::PoolLayer).
    pub broken: u64,
    /// Dropped because the pool shrank.
    pub resize: u64,
    /// Closed by [`Pool::close`](crate::Pool::close): idle ones at once, checked-out ones
    /// when they came back.
    pub pool_closed: u64,
}

impl ClosedStats {
    /// All closed connections.
    pub fn total(&self) -> u64 {
        self.idle + self.lifetime + self.health_check + self.broken + self.resize + self.pool_closed
    }
}

/// A point-in-time view of a pool, ready to serialize into a metrics endpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolStats {
    /// Current `max_size` (moves under adaptive sizing).
    pub max_size: usize,
    /// Open connections (in use plus idle).
    pub size: usize,
    /// Connections checked out.
    pub in_use: usize,
    /// Connections idle in the pool.
    pub idle: usize,
    /// Callers waiting for a connection.
    pub waiters: usize,
    /// Connections created since start.
    pub created: u64,
    /// Failed creation attempts since start.
    pub create_failures: u64,
    /// Connections closed, by reason.
    pub closed: ClosedStats,
    /// Successful checkouts.
    pub checkouts: u64,
    /// Checkouts that timed out.
    pub timeouts: u64,
    /// Checkouts held past the leak-detection threshold.
    pub leaks_suspected: u64,
    /// Manager callbacks (`create`, `recycle`, `detach`) that panicked; each panic was
    /// contained (a typed error for that checkout, or a closed connection).
    pub panicked: u64,
    /// Resizes applied (adaptive or manual).
    pub resizes: u64,
    /// Time spent waiting in `get()`.
    pub wait: LatencySummary,
    /// Time connections were held by callers.
    pub usage: LatencySummary,
    /// Every checkout's wait since creation, bucketed, those that never waited as zero:
    /// what a metrics exporter publishes as a histogram (`wait` summarises it). Not
    /// serialized.
    #[serde(skip)]
    pub wait_histogram: HistogramSnapshot,
    /// Every connection hold since creation, bucketed (`usage` summarises it). Not
    /// serialized.
    #[serde(skip)]
    pub usage_histogram: HistogramSnapshot,
}

const STRIPES: usize = 16;

/// A counter split over cache lines so concurrent checkouts do not contend on one.
#[repr(align(128))]
#[derive(Debug, Default)]
struct Stripe(AtomicU64);

#[derive(Debug, Default)]
struct Striped([Stripe; STRIPES]);

thread_local! {
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

static NEXT_STRIPE: AtomicU64 = AtomicU64::new(0);

impl Striped {
    fn increment(&self) {
        let index = STRIPE.with(|stripe| {
            if stripe.get() == usize::MAX {
                stripe.set(NEXT_STRIPE.fetch_add(1, Ordering::Relaxed) as usize % STRIPES);
            }
            stripe.get()
        });
        self.0[index].0.fetch_add(1, Ordering::Relaxed);
    }

    fn sum(&self) -> u64 {
        self.0.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

/// Checkout wait times. Most checkouts complete on their first poll and never wait;
/// those are only counted (on a striped counter), so the uncontended path reads no
/// clock and touches no shared histogram line. Checkouts that did wait are timed into
/// a histogram; summaries treat the immediate ones as zero waits.
#[derive(Debug, Default)]
pub(crate) struct WaitTimes {
    immediate: Striped,
    waited: Histogram,
}

impl WaitTimes {
    pub(crate) fn record_immediate(&self) {
        self.immediate.increment();
    }

    pub(crate) fn record_wait(&self, waited: Duration) {
        self.waited.record(waited);
    }

    pub(crate) fn snapshot(&self) -> WaitSnapshot {
        WaitSnapshot {
            immediate: self.immediate.sum(),
            waited: self.waited.snapshot(),
        }
    }
}

/// A copy of [`WaitTimes`]; differences give one window's figures.
#[derive(Debug, Clone)]
pub(crate) struct WaitSnapshot {
    immediate: u64,
    waited: HistogramSnapshot,
}

impl WaitSnapshot {
    pub(crate) fn count(&self) -> u64 {
        self.immediate + self.waited.count()
    }

    pub(crate) fn since(&self, earlier: &Self) -> Self {
        Self {
            immediate: self.immediate.saturating_sub(earlier.immediate),
            waited: self.waited.since(&earlier.waited),
        }
    }

    pub(crate) fn mean(&self) -> Duration {
        let total = self.count();
        if total == 0 {
            return Duration::ZERO;
        }
        let waited = self.waited.count();
        self.waited.mean().mul_f64(waited as f64 / total as f64)
    }

    /// The q-quantile over all checkouts, the immediate ones counting as zero.
    pub(crate) fn quantile(&self, q: f64) -> Duration {
        let total = self.count();
        let waited = self.waited.count();
        if waited == 0 {
            return Duration::ZERO;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        if rank <= self.immediate as f64 {
            return Duration::ZERO;
        }
        self.waited
            .quantile(((rank - self.immediate as f64) / waited as f64).clamp(0.0, 1.0))
    }

    /// Every checkout as one histogram, the immediate ones as zero waits.
    pub(crate) fn histogram(&self) -> HistogramSnapshot {
        let mut all = self.waited.clone();
        all.record_many(Duration::ZERO, self.immediate);
        all
    }

    pub(crate) fn summary(&self) -> LatencySummary {
        let waited = self.waited.summary();
        LatencySummary {
            count: self.count(),
            mean: self.mean(),
            p50: self.quantile(0.5),
            p95: self.quantile(0.95),
            p99: self.quantile(0.99),
            max: waited.max,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn immediate_checkouts_count_as_zero_waits() {
        let wait = WaitTimes::default();
        for _ in 0..90 {
            wait.record_immediate();
        }
        for _ in 0..10 {
            wait.record_wait(Duration::from_millis(100));
        }
        let summary = wait.snapshot().summary();
        assert_eq!(summary.count, 100);
        assert_eq!(summary.p50, Duration::ZERO);
        assert!(summary.p95 >= Duration::from_millis(90), "{summary:?}");
        assert!(
            summary.mean >= Duration::from_millis(9) && summary.mean <= Duration::from_millis(11)
        );
        let later = wait.snapshot();
        wait.record_immediate();
        assert_eq!(wait.snapshot().since(&later).count(), 1);
        assert_eq!(
            WaitTimes::default().snapshot().summary().p99,
            Duration::ZERO
        );
    }
}
