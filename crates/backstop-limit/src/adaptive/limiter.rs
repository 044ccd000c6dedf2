//! [`AdaptiveLimiter`]: the handle, admission, release and the once-per-window update.

use super::baseline::Baseline;
use super::config::{AdaptiveLimitConfig, LimitAlgorithm};
use super::partition::{Partitions, PriorityClass};
use super::permit::{AdaptiveOutcome, AdaptivePermit};
use super::stats::{AdaptiveLimitStats, PriorityClassStats};
use super::window::{WindowSamples, WindowSummary};
use super::{aimd, gradient2, vegas};
use backstop_core::config::{ConfigError, Validate};
use backstop_core::{
    Clock, DefaultClock, Histogram, LoadSignal, LoadSnapshot, RejectKind, Rejected, deadline, time,
};
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, TryLockError};
use std::time::Duration;

/// An in-flight limit found from measured latency, with priority classes that shed the
/// least important work first.
///
/// A fixed bulkhead is wrong most of the time: too high and an overloaded backend's
/// latency explodes while queues grow, too low and capacity sits idle. An
/// [`AdaptiveLimiter`] measures each call's latency and outcome and, once per window,
/// lets an algorithm move the limit: [AIMD](crate::AimdConfig), [Vegas](crate::VegasConfig)
/// or [Gradient2](crate::Gradient2Config) (the default), as in Netflix's concurrency-limits and
/// Envoy's adaptive concurrency filter.
///
/// # Guarded against the known traps
///
/// - **No probe that collapses the limit.** Envoy pinned concurrency to a few calls to
///   measure its minimum RTT, refusing traffic meanwhile (envoy #8337). The baseline here
///   is read from ordinary windows.
/// - **A baseline that cannot drift up under load.** A minimum measured while the backend
///   queues is too high, and trusting it admits more, which queues more (envoy PR #11579,
///   Uber's "ever-drifting target latency"; Netflix's Gradient2 long average follows load
///   too). The baseline falls at once to a lower smoothed window mean and rises only from
///   windows that used under half the limit, or after `recalibrate_after` windows at the
///   floor (the backend itself became slower, as Envoy later added), a tenth of the gap
///   per window.
/// - **Smoothing against noise.** Algorithms see window means, never single samples, and
///   the baseline follows a smoothed mean: a ±30 % jitter would put a per-sample minimum
///   30 % low and convince Vegas the backend is always queueing.
/// - **No growth while app-limited**: a window that used under half the limit says nothing
///   about a higher one.
///
/// # Priority classes
///
/// Classes (for example `critical`, `normal`, `sheddable`, highest first) each hold a share
/// of the current limit against every lower class; higher classes may borrow a lower
/// class's idle share, so when the limit shrinks the lowest class is refused first
/// ([`RejectKind::Shed`](backstop_core::RejectKind::Shed)). A class may have a bounded
/// queue with a timeout.
///
/// # Example: a critical and a sheddable class
///
/// ```
/// use backstop_limit::{AdaptiveLimitConfig, AdaptiveLimiter, PriorityClassConfig};
/// use backstop_core::RejectKind;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let limiter = AdaptiveLimiter::new(AdaptiveLimitConfig {
///     initial_limit: 4,
///     classes: vec![
///         PriorityClassConfig::new("critical", 0.5),
///         PriorityClassConfig::new("sheddable", 0.0),
///     ],
///     ..Default::default()
/// })
/// .unwrap();
/// let critical = limiter.class("critical").unwrap();
/// let sheddable = limiter.class("sheddable").unwrap();
///
/// // Sheddable work gets the two permits not held for critical work, no more.
/// let _a = limiter.acquire_as(sheddable).await.unwrap();
/// let _b = limiter.acquire_as(sheddable).await.unwrap();
/// assert_eq!(limiter.try_acquire_as(sheddable).unwrap_err().kind, RejectKind::Shed);
/// // Critical work still finds its share.
/// let _c = limiter.acquire_as(critical).await.unwrap();
/// let _d = limiter.acquire_as(critical).await.unwrap();
/// assert_eq!(limiter.stats().classes[1].shed, 1);
/// # }
/// ```
///
/// # Mechanics
///
/// Each call takes an [`AdaptivePermit`]; when the permit ends, its latency and
/// [`AdaptiveOutcome`] join the current window. Once per window (`window`, and at least
/// `min_window_samples` samples) the configured [`LimitAlgorithm`] moves the limit. A call
/// is refused at once ([`RejectKind::ConcurrencyLimited`] when the limit is full,
/// [`RejectKind::Shed`] when the free permits are held for higher classes) unless its
/// class has a queue, where it waits at most the class's `queue_timeout` and the request's
/// deadline. Clones share one limiter.
///
/// ```
/// use backstop_limit::{AdaptiveLimitConfig, AdaptiveLimiter, AdaptiveOutcome};
/// use backstop_core::RejectKind;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let limiter = AdaptiveLimiter::new(AdaptiveLimitConfig {
///     initial_limit: 1,
///     min_limit: 1,
///     ..Default::default()
/// })
/// .unwrap();
/// let permit = limiter.acquire().await.unwrap();
/// assert_eq!(limiter.try_acquire().unwrap_err().kind, RejectKind::ConcurrencyLimited);
/// permit.complete(AdaptiveOutcome::Success);
/// let answer = limiter.run(async { Ok::<_, std::io::Error>(42) }).await.unwrap();
/// assert_eq!(answer.unwrap(), 42);
/// assert_eq!(limiter.stats().admitted, 2);
/// # }
/// ```
pub struct AdaptiveLimiter<C: Clock = DefaultClock> {
    shared: Arc<Shared<C>>,
}

impl<C: Clock> Clone for AdaptiveLimiter<C> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<C: Clock> fmt::Debug for AdaptiveLimiter<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveLimiter")
            .field("limit", &self.shared.limit.load(Ordering::Relaxed))
            .field("in_flight", &self.shared.in_flight.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// The algorithm's state, touched once per window by whichever release ends it.
#[derive(Debug)]
struct Control {
    estimate: f64,
    baseline: Baseline,
    last_traced: u64,
}

pub(crate) struct Shared<C> {
    clock: C,
    config: AdaptiveLimitConfig,
    window_nanos: u64,
    limit: AtomicU64,
    in_flight: AtomicU64,
    queued: AtomicUsize,
    partitions: Partitions,
    samples: WindowSamples,
    window_end: AtomicU64,
    control: Mutex<Control>,
    baseline_nanos: AtomicU64,
    window_latency_nanos: AtomicU64,
    windows: AtomicU64,
    dropped: AtomicU64,
    panicked: AtomicU64,
    queue_waits: Histogram,
}

impl AdaptiveLimitConfig {
    /// Validates the settings and builds the limiter.
    pub fn build(&self) -> Result<AdaptiveLimiter, ConfigError> {
        AdaptiveLimiter::new(self.clone())
    }
}

impl AdaptiveLimiter {
    /// A limiter from validated settings, reading the default clock.
    pub fn new(config: AdaptiveLimitConfig) -> Result<Self, ConfigError> {
        Self::with_clock(config, DefaultClock::default())
    }
}

impl<C: Clock> AdaptiveLimiter<C> {
    /// A limiter reading `clock` (`TokioClock` under paused Tokio time in tests).
    pub fn with_clock(config: AdaptiveLimitConfig, clock: C) -> Result<Self, ConfigError> {
        config.validate().map_err(|e| e.within("adaptive"))?;
        let classes = config.effective_classes();
        let now = clock.now_nanos();
        let window_nanos = time::nanos(config.window);
        let initial = config.initial_limit;
        Ok(Self {
            shared: Arc::new(Shared {
                clock,
                window_nanos,
                limit: AtomicU64::new(initial),
                in_flight: AtomicU64::new(0),
                queued: AtomicUsize::new(0),
                partitions: Partitions::new(&classes, initial),
                samples: WindowSamples::default(),
                window_end: AtomicU64::new(now.saturating_add(window_nanos)),
                control: Mutex::new(Control {
                    estimate: initial as f64,
                    baseline: Baseline::default(),
                    last_traced: initial,
                }),
                baseline_nanos: AtomicU64::new(0),
                window_latency_nanos: AtomicU64::new(0),
                windows: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                panicked: AtomicU64::new(0),
                queue_waits: Histogram::new(),
                config,
            }),
        })
    }

    /// The class named `name`, if configured (`"default"` without classes).
    pub fn class(&self, name: &str) -> Option<PriorityClass> {
        self.shared
            .partitions
            .classes
            .iter()
            .position(|c| &*c.name == name)
            .map(|i| PriorityClass(i as u8))
    }

    /// The class of calls that name none: the lowest, so unclassified work is shed first.
    pub fn default_class(&self) -> PriorityClass {
        PriorityClass((self.shared.partitions.classes.len() - 1) as u8)
    }

    /// The current limit.
    pub fn limit(&self) -> u64 {
        self.shared.limit.load(Ordering::Relaxed)
    }

    /// A permit of the default class without waiting.
    pub fn try_acquire(&self) -> Result<AdaptivePermit<C>, Rejected> {
        self.try_acquire_as(self.default_class())
    }

    /// A permit of `class` without waiting.
    pub fn try_acquire_as(&self, class: PriorityClass) -> Result<AdaptivePermit<C>, Rejected> {
        let index = self.shared.partitions.index(class);
        self.shared
            .try_admit(index)
            .map(|in_flight| self.permit(index, in_flight))
            .map_err(|kind| self.shared.refuse(index, kind))
    }

    /// A permit of the default class, waiting in its queue if it has one.
    pub async fn acquire(&self) -> Result<AdaptivePermit<C>, Rejected> {
        self.acquire_as(self.default_class()).await
    }

    /// A permit of `class`, waiting in its queue (if configured) at most its
    /// `queue_timeout` and the request's deadline.
    ///
    /// Cancellation-safe: a dropped wait leaves the queue and holds no permit.
    pub async fn acquire_as(&self, class: PriorityClass) -> Result<AdaptivePermit<C>, Rejected> {
        let shared = &*self.shared;
        let index = shared.partitions.index(class);
        let first = match shared.try_admit(index) {
            Ok(in_flight) => return Ok(self.permit(index, in_flight)),
            Err(kind) => kind,
        };
        let state = &shared.partitions.classes[index];
        if state
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                (q < state.max_queued).then_some(q + 1)
            })
            .is_err()
        {
            return Err(shared.refuse(index, first));
        }
        let _queue_slot = QueueSlot(shared, index);
        shared.queued.fetch_add(1, Ordering::AcqRel);
        let (wait, expiry) = match (state.queue_timeout, deadline::remaining()) {
            (Some(timeout), Some(left)) if left < timeout => {
                (Some(left), RejectKind::DeadlineExceeded)
            }
            (Some(timeout), _) => (Some(timeout), RejectKind::Timeout),
            (None, Some(left)) => (Some(left), RejectKind::DeadlineExceeded),
            (None, None) => (None, RejectKind::Timeout),
        };
        let started = tokio::time::Instant::now();
        let until = wait.map(|wait| started + time::clamp(wait));
        loop {
            let notified = state.notify.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the check, so a permit freed between the check and the
            // wait still wakes this caller.
            notified.as_mut().enable();
            if let Ok(in_flight) = shared.try_admit(index) {
                shared.queue_waits.record(started.elapsed());
                return Ok(self.permit(index, in_flight));
            }
            match until {
                None => notified.await,
                Some(until) => {
                    if tokio::time::timeout_at(until, notified).await.is_err() {
                        state.timed_out.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(target: "backstop_limit", class = &*state.name, "adaptive limiter wait timed out");
                        return Err(Rejected::new(expiry));
                    }
                }
            }
        }
    }

    /// Runs `call` under a permit of the default class, counting `Ok` as a success, `Err`
    /// as a failure and cancellation as dropped. The outer `Result` is the admission.
    pub async fn run<T, E, F>(&self, call: F) -> Result<Result<T, E>, Rejected>
    where
        F: Future<Output = Result<T, E>>,
    {
        self.run_as(self.default_class(), call).await
    }

    /// [`run`](Self::run) under a permit of `class`.
    pub async fn run_as<T, E, F>(
        &self,
        class: PriorityClass,
        call: F,
    ) -> Result<Result<T, E>, Rejected>
    where
        F: Future<Output = Result<T, E>>,
    {
        let permit = self.acquire_as(class).await?;
        let result = call.await;
        permit.complete(if result.is_ok() {
            AdaptiveOutcome::Success
        } else {
            AdaptiveOutcome::Failure
        });
        Ok(result)
    }

    /// `Err` when a call of the highest class made now would be refused or would wait:
    /// every permit is taken. Charges nothing.
    pub fn readiness(&self) -> Result<(), Rejected> {
        let shared = &*self.shared;
        if shared.in_flight.load(Ordering::Acquire) >= shared.limit.load(Ordering::Acquire) {
            Err(Rejected::new(RejectKind::ConcurrencyLimited))
        } else {
            Ok(())
        }
    }

    /// Counts a panic of user code run on the limiter's behalf (a layer's key or classify
    /// closure).
    pub(crate) fn note_panicked(&self) {
        self.shared.panicked.fetch_add(1, Ordering::Relaxed);
    }

    /// A snapshot of the limit, the baseline and the per-class counters.
    pub fn stats(&self) -> AdaptiveLimitStats {
        let shared = &*self.shared;
        let nanos = |atomic: &AtomicU64| match atomic.load(Ordering::Relaxed) {
            0 => None,
            n => Some(Duration::from_nanos(n)),
        };
        let single = shared.partitions.classes.len() == 1;
        let classes: Vec<PriorityClassStats> = shared
            .partitions
            .classes
            .iter()
            .map(|c| PriorityClassStats {
                name: c.name.clone(),
                guaranteed: c.guaranteed.load(Ordering::Relaxed),
                in_flight: if single {
                    shared.in_flight.load(Ordering::Relaxed)
                } else {
                    c.in_flight.load(Ordering::Relaxed)
                },
                queued: c.queued.load(Ordering::Relaxed) as u64,
                admitted: c.admitted.load(Ordering::Relaxed),
                rejected: c.rejected.load(Ordering::Relaxed),
                shed: c.shed.load(Ordering::Relaxed),
                timed_out: c.timed_out.load(Ordering::Relaxed),
            })
            .collect();
        let sum = |f: fn(&PriorityClassStats) -> u64| classes.iter().map(f).sum();
        AdaptiveLimitStats {
            limit: shared.limit.load(Ordering::Relaxed),
            in_flight: shared.in_flight.load(Ordering::Relaxed),
            queued: shared.queued.load(Ordering::Relaxed) as u64,
            baseline: nanos(&shared.baseline_nanos),
            window_latency: nanos(&shared.window_latency_nanos),
            windows: shared.windows.load(Ordering::Relaxed),
            admitted: sum(|c| c.admitted),
            rejected: sum(|c| c.rejected),
            shed: sum(|c| c.shed),
            timed_out: sum(|c| c.timed_out),
            dropped: shared.dropped.load(Ordering::Relaxed),
            panicked: shared.panicked.load(Ordering::Relaxed),
            classes,
        }
    }

    fn permit(&self, class: usize, in_flight: u64) -> AdaptivePermit<C> {
        self.shared.partitions.classes[class]
            .admitted
            .fetch_add(1, Ordering::Relaxed);
        AdaptivePermit {
            shared: self.shared.clone(),
            class,
            started: self.shared.clock.now_nanos(),
            in_flight,
            outcome: AdaptiveOutcome::Dropped,
        }
    }
}

impl<C: Clock> LoadSignal for AdaptiveLimiter<C> {
    /// Waits: callers admitted at once waited zero, so the mean is the queued callers'
    /// total over every admission, and the 95th percentile is read from the queued
    /// callers' waits at the matching rank (zero when under 5 % of callers queued).
    fn load(&self) -> LoadSnapshot {
        let shared = &*self.shared;
        let admitted: u64 = shared
            .partitions
            .classes
            .iter()
            .map(|c| c.admitted.load(Ordering::Relaxed))
            .sum();
        let waits = shared.queue_waits.snapshot();
        let queued_count = waits.count();
        let (mean_wait, p95_wait) = if queued_count == 0 || admitted == 0 {
            (Duration::ZERO, Duration::ZERO)
        } else {
            let total = waits
                .mean()
                .saturating_mul(u32::try_from(queued_count).unwrap_or(u32::MAX));
            let mean = total / u32::try_from(admitted.max(queued_count)).unwrap_or(u32::MAX);
            let tail = 0.05 * admitted.max(queued_count) as f64;
            let p95 = if (queued_count as f64) <= tail {
                Duration::ZERO
            } else {
                waits.quantile(1.0 - tail / queued_count as f64)
            };
            (mean, p95)
        };
        LoadSnapshot {
            in_flight: shared.in_flight.load(Ordering::Relaxed),
            queued: shared.queued.load(Ordering::Relaxed) as u64,
            capacity: Some(shared.limit.load(Ordering::Relaxed)),
            mean_wait,
            p95_wait,
        }
    }
}

/// Leaves the class queue however the wait ends, including cancellation.
struct QueueSlot<'a, C>(&'a Shared<C>, usize);

impl<C> Drop for QueueSlot<'_, C> {
    fn drop(&mut self) {
        self.0.partitions.classes[self.1]
            .queued
            .fetch_sub(1, Ordering::AcqRel);
        self.0.queued.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<C: Clock> Shared<C> {
    /// Takes one permit for class `index`, returning the in-flight count including it.
    #[inline]
    fn try_admit(&self, index: usize) -> Result<u64, RejectKind> {
        let limit = self.limit.load(Ordering::Acquire);
        let reserved = if index == 0 {
            0
        } else {
            self.partitions.reserved_above(index)
        };
        let mut current = self.in_flight.load(Ordering::Relaxed);
        loop {
            if current >= limit {
                return Err(RejectKind::ConcurrencyLimited);
            }
            if current.saturating_add(reserved) >= limit {
                return Err(RejectKind::Shed);
            }
            match self.in_flight.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        // Per-class counts only feed the reservation of higher classes; with one class the
        // total is its count, and the hot path skips an atomic.
        if self.partitions.classes.len() > 1 {
            self.partitions.classes[index]
                .in_flight
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(current + 1)
    }

    /// Counts a refusal and builds it (no allocation).
    #[cold]
    fn refuse(&self, index: usize, kind: RejectKind) -> Rejected {
        let class = &self.partitions.classes[index];
        match kind {
            RejectKind::Shed => class.shed.fetch_add(1, Ordering::Relaxed),
            _ => class.rejected.fetch_add(1, Ordering::Relaxed),
        };
        Rejected::new(kind)
    }

    /// Frees a permit and records its sample; ends the window if it is due.
    pub(crate) fn release(
        &self,
        class: usize,
        started: u64,
        in_flight: u64,
        outcome: AdaptiveOutcome,
    ) {
        let now = self.clock.now_nanos();
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        if self.partitions.classes.len() > 1 {
            self.partitions.classes[class]
                .in_flight
                .fetch_sub(1, Ordering::Relaxed);
        }
        match outcome {
            AdaptiveOutcome::Success | AdaptiveOutcome::Failure => self
                .samples
                .record_rtt(now.saturating_sub(started), in_flight),
            AdaptiveOutcome::Dropped => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                self.samples.record_drop(in_flight);
            }
            AdaptiveOutcome::Ignored => {}
        }
        if now >= self.window_end.load(Ordering::Relaxed) {
            self.end_window(now);
        }
        if self.queued.load(Ordering::Acquire) > 0 {
            self.partitions.wake();
        }
    }

    /// Runs the algorithm on the window just ended, if this caller is first to see it end.
    #[cold]
    fn end_window(&self, now: u64) {
        let mut control = match self.control.try_lock() {
            Ok(control) => control,
            // Only this module's arithmetic runs under the lock; if it ever panicked, the
            // state it left is still numbers within bounds.
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        if now < self.window_end.load(Ordering::Relaxed) {
            return;
        }
        self.window_end
            .store(now.saturating_add(self.window_nanos), Ordering::Relaxed);
        if self.samples.len() < self.config.min_window_samples {
            // Too few samples to judge: keep gathering into the same window.
            return;
        }
        let summary = self.samples.take();
        self.windows.fetch_add(1, Ordering::Relaxed);
        let previous = self.limit.load(Ordering::Relaxed);
        let next = self.next_estimate(&mut control, &summary);
        control.estimate = next;
        let limit = (next.round() as u64).clamp(self.config.min_limit, self.config.max_limit);
        if limit != previous {
            self.partitions.set_limit(limit);
            self.limit.store(limit, Ordering::Release);
        }
        let moved = limit.abs_diff(control.last_traced) as f64;
        if moved > self.config.trace_step * control.last_traced as f64 {
            tracing::info!(
                target: "backstop_limit",
                limit,
                previous = control.last_traced,
                window_latency_ms = summary.mean_rtt / 1e6,
                baseline_ms = control.baseline.get().unwrap_or(0.0) / 1e6,
                drops = summary.drops,
                "adaptive concurrency limit moved"
            );
            control.last_traced = limit;
        }
        drop(control);
        if limit > previous {
            self.partitions.wake();
        }
    }

    fn next_estimate(&self, control: &mut Control, summary: &WindowSummary) -> f64 {
        let config = &self.config;
        let limit = control.estimate;
        if summary.mean_rtt > 0.0 {
            self.window_latency_nanos
                .store(summary.mean_rtt as u64, Ordering::Relaxed);
            let at_floor = limit <= config.min_limit as f64 + 0.5;
            control.baseline.observe(
                summary.mean_rtt,
                summary.app_limited(limit),
                at_floor,
                config.recalibrate_after,
            );
        }
        let Some(baseline) = control.baseline.get() else {
            // Only drops so far: back off, there is nothing to compare latency with.
            return if summary.drops > 0 {
                (limit * 0.9).max(config.min_limit as f64)
            } else {
                limit
            };
        };
        self.baseline_nanos
            .store(baseline as u64, Ordering::Relaxed);
        let next = match &config.algorithm {
            LimitAlgorithm::Aimd(c) => aimd::next_limit(c, limit, summary, baseline),
            LimitAlgorithm::Vegas(c) => vegas::next_limit(c, limit, summary, baseline),
            LimitAlgorithm::Gradient2(c) => gradient2::next_limit(c, limit, summary, baseline),
        };
        if next.is_finite() {
            next.clamp(config.min_limit as f64, config.max_limit as f64)
        } else {
            limit
        }
    }
}
