//! A concurrency limiter (bulkhead): at most N calls in flight, a bounded queue behind them.

use backstop_core::config::{
    ConfigError, Validate, ensure, ensure_at_most, ensure_count, ensure_duration,
};
use backstop_core::{Histogram, LoadSignal, LoadSnapshot, RejectKind, Rejected};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bulkhead settings.
///
/// Bounds: `max_concurrent` and `max_queued` at most [`MAX_SLOTS`](Self::MAX_SLOTS),
/// `max_wait` at most [`MAX_DURATION`](backstop_core::config::MAX_DURATION) (a year).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BulkheadConfig {
    /// Calls allowed in flight at once.
    pub max_concurrent: usize,
    /// Callers allowed to wait for a slot; beyond this they are refused at once.
    pub max_queued: usize,
    /// How long a queued caller waits before giving up; `None` waits indefinitely.
    #[serde(with = "backstop_core::duration::human_option")]
    pub max_wait: Option<Duration>,
}

impl BulkheadConfig {
    /// The most calls in flight, and the most queued, a bulkhead accepts: 2^20.
    pub const MAX_SLOTS: usize = 1 << 20;
}

impl Default for BulkheadConfig {
    fn default() -> Self {
        Self {
            max_concurrent: 16,
            max_queued: 64,
            max_wait: None,
        }
    }
}

impl Validate for BulkheadConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        ensure_count("max_concurrent", self.max_concurrent, 1, Self::MAX_SLOTS)?;
        ensure_at_most("max_queued", self.max_queued as u64, Self::MAX_SLOTS as u64)?;
        if let Some(max_wait) = self.max_wait {
            ensure_duration("max_wait", max_wait)?;
        }
        ensure(
            self.max_wait.is_none_or(|w| !w.is_zero()),
            "max_wait",
            "must be greater than zero when set (use max_queued = 0 to never wait)",
        )
    }
}

/// Why the bulkhead did not hand out a permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum BulkheadError {
    /// All slots busy and the wait queue full.
    #[error("bulkhead full: {max_concurrent} in flight and {max_queued} queued")]
    Full {
        /// Configured concurrency.
        max_concurrent: usize,
        /// Configured queue bound.
        max_queued: usize,
    },
    /// Waited `max_wait` without getting a slot.
    #[error("no bulkhead slot within {0:?}")]
    Timeout(Duration),
}

impl From<BulkheadError> for Rejected {
    fn from(error: BulkheadError) -> Self {
        match error {
            BulkheadError::Full { .. } => Rejected::new(RejectKind::ConcurrencyLimited),
            BulkheadError::Timeout(_) => Rejected::new(RejectKind::Timeout),
        }
    }
}

/// A point-in-time view of a bulkhead.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BulkheadStats {
    /// Calls holding a permit.
    pub in_flight: usize,
    /// Callers waiting for a slot.
    pub queued: usize,
    /// Permits handed out since creation.
    pub admitted: u64,
    /// Callers refused because the queue was full.
    pub rejected_full: u64,
    /// Callers that gave up after `max_wait`.
    pub timed_out: u64,
}

#[derive(Debug)]
struct Inner {
    config: BulkheadConfig,
    slots: Arc<Semaphore>,
    queued: AtomicUsize,
    admitted: AtomicU64,
    rejected_full: AtomicU64,
    timed_out: AtomicU64,
    waits: Histogram,
}

/// At most `max_concurrent` calls in flight, at most `max_queued` waiting.
///
/// Permits are RAII guards: dropping one (normally, by cancelling the future that holds it,
/// or by unwinding from a panic) frees the slot. Clones share one bulkhead.
///
/// ```
/// use backstop_limit::{Bulkhead, BulkheadConfig, BulkheadError};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let bulkhead = Bulkhead::new(BulkheadConfig { max_concurrent: 1, max_queued: 0, max_wait: None }).unwrap();
/// let permit = bulkhead.acquire().await.unwrap();
/// assert!(matches!(bulkhead.acquire().await, Err(BulkheadError::Full { .. })));
/// drop(permit);
/// assert!(bulkhead.acquire().await.is_ok());
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Bulkhead {
    inner: Arc<Inner>,
}

/// A slot in a [`Bulkhead`], freed when dropped.
#[derive(Debug)]
pub struct BulkheadPermit {
    _slot: OwnedSemaphorePermit,
}

/// Decrements the queue count however the wait ends, including cancellation.
struct QueueSlot<'a>(&'a AtomicUsize);

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Bulkhead {
    /// A bulkhead from validated settings.
    pub fn new(config: BulkheadConfig) -> Result<Self, ConfigError> {
        config.validate().map_err(|e| e.within("bulkhead"))?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                slots: Arc::new(Semaphore::new(config.max_concurrent)),
                queued: AtomicUsize::new(0),
                admitted: AtomicU64::new(0),
                rejected_full: AtomicU64::new(0),
                timed_out: AtomicU64::new(0),
                waits: Histogram::new(),
            }),
        })
    }

    /// A permit without waiting, or `Full` when every slot is busy.
    pub fn try_acquire(&self) -> Result<BulkheadPermit, BulkheadError> {
        match self.inner.slots.clone().try_acquire_owned() {
            Ok(slot) => Ok(self.admit(slot, Duration::ZERO)),
            Err(_) => Err(self.full()),
        }
    }

    /// A permit, waiting in the bounded queue if every slot is busy.
    ///
    /// Cancellation-safe: a dropped wait leaves the queue and takes no slot.
    pub async fn acquire(&self) -> Result<BulkheadPermit, BulkheadError> {
        if let Ok(slot) = self.inner.slots.clone().try_acquire_owned() {
            return Ok(self.admit(slot, Duration::ZERO));
        }
        let inner = &self.inner;
        let max_queued = inner.config.max_queued;
        if inner
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                (q < max_queued).then_some(q + 1)
            })
            .is_err()
        {
            return Err(self.full());
        }
        let _queue_slot = QueueSlot(&inner.queued);
        let started = tokio::time::Instant::now();
        let wait = inner.slots.clone().acquire_owned();
        let slot = match inner.config.max_wait {
            None => wait.await,
            Some(max_wait) => {
                match tokio::time::timeout(backstop_core::time::clamp(max_wait), wait).await {
                    Ok(slot) => slot,
                    Err(_) => {
                        inner.timed_out.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(target: "backstop_limit", ?max_wait, "bulkhead wait timed out");
                        return Err(BulkheadError::Timeout(max_wait));
                    }
                }
            }
        };
        // The semaphore is never closed, so acquisition only fails if that invariant breaks;
        // report it as a full bulkhead rather than panic.
        slot.map(|slot| self.admit(slot, started.elapsed()))
            .map_err(|_| self.full())
    }

    /// Runs `fut` holding a permit.
    pub async fn run<F: Future>(&self, fut: F) -> Result<F::Output, BulkheadError> {
        let _permit = self.acquire().await?;
        Ok(fut.await)
    }

    fn admit(&self, slot: OwnedSemaphorePermit, waited: Duration) -> BulkheadPermit {
        self.inner.admitted.fetch_add(1, Ordering::Relaxed);
        self.inner.waits.record(waited);
        BulkheadPermit { _slot: slot }
    }

    fn full(&self) -> BulkheadError {
        self.inner.rejected_full.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(target: "backstop_limit", "bulkhead full");
        BulkheadError::Full {
            max_concurrent: self.inner.config.max_concurrent,
            max_queued: self.inner.config.max_queued,
        }
    }

    /// Whether [`acquire`](Self::acquire) would refuse now: every slot busy and the wait
    /// queue full. Charges nothing; what tower's `poll_ready` reports through the bridge.
    pub fn readiness(&self) -> Result<(), Rejected> {
        let inner = &self.inner;
        if inner.slots.available_permits() == 0
            && inner.queued.load(Ordering::Acquire) >= inner.config.max_queued
        {
            return Err(Rejected::new(RejectKind::ConcurrencyLimited));
        }
        Ok(())
    }

    /// A snapshot of occupancy and counters.
    pub fn stats(&self) -> BulkheadStats {
        let inner = &self.inner;
        BulkheadStats {
            in_flight: inner.config.max_concurrent - inner.slots.available_permits(),
            queued: inner.queued.load(Ordering::Acquire),
            admitted: inner.admitted.load(Ordering::Relaxed),
            rejected_full: inner.rejected_full.load(Ordering::Relaxed),
            timed_out: inner.timed_out.load(Ordering::Relaxed),
        }
    }
}

impl LoadSignal for Bulkhead {
    fn load(&self) -> LoadSnapshot {
        let stats = self.stats();
        let waits = self.inner.waits.snapshot();
        LoadSnapshot {
            in_flight: stats.in_flight as u64,
            queued: stats.queued as u64,
            capacity: Some(self.inner.config.max_concurrent as u64),
            mean_wait: waits.mean(),
            p95_wait: waits.quantile(0.95),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    fn bulkhead(max_concurrent: usize, max_queued: usize) -> Bulkhead {
        Bulkhead::new(BulkheadConfig {
            max_concurrent,
            max_queued,
            max_wait: None,
        })
        .unwrap()
    }

    #[test]
    fn invalid_settings_name_the_field() {
        let err = Bulkhead::new(BulkheadConfig {
            max_concurrent: 0,
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(err.field(), "bulkhead.max_concurrent");
        let cfg: BulkheadConfig = serde_json::from_str(r#"{"max_wait":"0s"}"#).unwrap();
        assert_eq!(cfg.validate().unwrap_err().field(), "max_wait");
        let field = |json: &str| {
            let cfg: BulkheadConfig = serde_json::from_str(json).unwrap();
            cfg.validate().unwrap_err().field().to_string()
        };
        assert_eq!(field(r#"{"max_wait":"150000000000000d"}"#), "max_wait");
        assert_eq!(
            field(r#"{"max_concurrent":1099511627776}"#),
            "max_concurrent"
        );
        assert_eq!(field(r#"{"max_queued":1099511627776}"#), "max_queued");
    }

    #[tokio::test(start_paused = true)]
    async fn queue_is_bounded_and_waiters_are_served_in_turn() {
        let b = bulkhead(1, 1);
        let first = b.acquire().await.unwrap();
        let mut waiter = Box::pin(b.acquire());
        assert!((&mut waiter).now_or_never().is_none());
        assert_eq!(b.stats().queued, 1);
        assert!(matches!(b.acquire().await, Err(BulkheadError::Full { .. })));
        tokio::time::advance(Duration::from_millis(10)).await;
        drop(first);
        let second = waiter.await.unwrap();
        let load = b.load();
        assert_eq!(
            (load.in_flight, load.queued, load.capacity),
            (1, 0, Some(1))
        );
        assert!(load.p95_wait >= Duration::from_millis(5));
        drop(second);
        let s = b.stats();
        assert_eq!((s.in_flight, s.admitted, s.rejected_full), (0, 2, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn max_wait_times_out_and_frees_the_queue() {
        let b = Bulkhead::new(BulkheadConfig {
            max_concurrent: 1,
            max_queued: 4,
            max_wait: Some(Duration::from_millis(100)),
        })
        .unwrap();
        let _held = b.acquire().await.unwrap();
        assert_eq!(
            b.acquire().await.unwrap_err(),
            BulkheadError::Timeout(Duration::from_millis(100))
        );
        assert_eq!((b.stats().queued, b.stats().timed_out), (0, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn cancellation_at_every_point_and_panics_leak_nothing() {
        let b = bulkhead(2, 8);
        let held = b.acquire().await.unwrap();
        let _held2 = b.acquire().await.unwrap();
        // Waiters dropped while queued.
        for _ in 0..20 {
            let mut w = Box::pin(b.acquire());
            assert!((&mut w).now_or_never().is_none());
        }
        assert_eq!(b.stats().queued, 0);
        // A waiter dropped after its slot was granted but before it was polled again.
        let mut w = Box::pin(b.acquire());
        assert!((&mut w).now_or_never().is_none());
        drop(held);
        drop(w);
        assert_eq!(b.stats().in_flight, 1);
        // A task that panics while holding a permit.
        let b2 = b.clone();
        let task = tokio::spawn(async move { b2.run(async { panic!("user code failed") }).await });
        assert!(task.await.unwrap_err().is_panic());
        // A running call cancelled mid-flight.
        let b3 = b.clone();
        let task =
            tokio::spawn(async move { b3.run(tokio::time::sleep(Duration::from_secs(60))).await });
        tokio::task::yield_now().await;
        assert_eq!(b.stats().in_flight, 2);
        task.abort();
        let _ = task.await;
        assert_eq!(b.stats().in_flight, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stress_never_exceeds_the_limit() {
        let b = bulkhead(3, 1000);
        let peak = Arc::new(AtomicUsize::new(0));
        let now = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let (b, peak, now) = (b.clone(), peak.clone(), now.clone());
                tokio::spawn(async move {
                    b.run(async {
                        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(n, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        now.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
                    .unwrap();
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert!(peak.load(Ordering::SeqCst) <= 3);
        let s = b.stats();
        assert_eq!((s.in_flight, s.queued, s.admitted), (0, 0, 200));
    }
}
