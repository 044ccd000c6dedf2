//! The circuit breaker: admission, outcome recording and the state machine.

use std::future::Future;
use std::mem::ManuallyDrop;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use backstop_core::{Clock, DefaultClock, Error, Panicked, RejectKind, Rejected, contain};
use parking_lot::Mutex;

use crate::event::{BreakerEvent, Listeners};
use crate::stats::BreakerStats;
use crate::window::{Sample, Totals, Window};
use crate::{BreakerConfig, CancelledCalls, Classify, DefaultClassifier, Outcome, State};

/// The state word packs the state in its low byte and an epoch, bumped by every
/// transition, above it. A permit remembers the word it was issued under, so an outcome
/// that finishes after the circuit moved on is recognised as stale and dropped.
const STATE_MASK: u64 = 0xff;
const EPOCH_SHIFT: u32 = 8;
const CLOSED: u64 = State::Closed.code();
const OPEN: u64 = State::Open.code();
const FORCED_OPEN: u64 = State::ForcedOpen.code();
const DISABLED: u64 = State::Disabled.code();
const METRICS_ONLY: u64 = State::MetricsOnly.code();

fn state_of(word: u64) -> State {
    State::from_code(word & STATE_MASK)
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// A circuit breaker. Cloning is cheap and clones share one circuit.
///
/// In the closed state admitting a call is one atomic load and recording its outcome one
/// `fetch_add` on the window's cursor (plus a slot swap when the outcome differs from the
/// one it replaces); no lock and, unless slow-call tracking or a time window is on, no
/// clock read. Open rejections are a load and a clock read. Only the rare paths (tripping,
/// half-open probes, operator changes) take a lock.
///
/// ```
/// use backstop_breaker::{Breaker, State};
/// use backstop_core::{Error, ManualClock, RejectKind};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let breaker = Breaker::builder()
///     .name("llm")
///     .count_window(4)
///     .minimum_calls(4)
///     .failure_rate_threshold(50.0)
///     .wait_in_open(Duration::from_secs(10))
///     .permitted_calls_in_half_open(1)
///     .clock(clock.clone())
///     .build()
///     .unwrap();
///
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # rt.block_on(async {
/// for _ in 0..4 {
///     let _ = breaker.call(|| async { Err::<(), _>("upstream 503") }).await;
/// }
/// assert_eq!(breaker.state(), State::Open);
/// let Err(Error::Rejected(rejected)) = breaker.call(|| async { Ok::<_, ()>(1) }).await
/// else { panic!("the circuit is open") };
/// assert_eq!(rejected.kind, RejectKind::CircuitOpen);
/// assert_eq!(rejected.retry_after, Some(Duration::from_secs(10)));
///
/// clock.advance(Duration::from_secs(10));
/// assert_eq!(breaker.call(|| async { Ok::<_, ()>(1) }).await.unwrap(), 1); // the probe
/// assert_eq!(breaker.state(), State::Closed);
/// # });
/// ```
pub struct Breaker<C: Clock = DefaultClock> {
    inner: Arc<Inner<C>>,
}

impl<C: Clock> Clone for Breaker<C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<C: Clock> std::fmt::Debug for Breaker<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breaker")
            .field("name", &self.inner.name)
            .field("state", &state_of(self.inner.word.load(Ordering::Relaxed)))
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner<C> {
    name: Arc<str>,
    config: BreakerConfig,
    clock: C,
    /// The clock's reading when the breaker was built; times below count from it.
    origin: u64,
    word: AtomicU64,
    /// End of the open period, in nanoseconds since `origin`.
    open_until: AtomicU64,
    window: Window,
    consecutive_failures: AtomicU32,
    rejected: AtomicU64,
    classifier_panics: AtomicU64,
    /// Whether this state's first rejection has been traced.
    rejection_traced: AtomicBool,
    slow_nanos: Option<u64>,
    /// Successes need no clock read and only a count-window write: no slow-call
    /// tracking and no time window.
    plain_successes: bool,
    control: Mutex<Control>,
    listeners: Listeners,
}

/// State only the slow paths touch, under the lock.
#[derive(Default)]
struct Control {
    /// Probe rounds failed since the circuit last closed; drives the backoff.
    failed_rounds: u32,
    probes: Probes,
}

#[derive(Default)]
struct Probes {
    issued: u32,
    finished: u32,
    failures: u32,
    slow: u32,
    started: u64,
}

#[derive(Clone, Copy)]
struct Transition {
    from: State,
    to: State,
}

enum Admission {
    Admit { word: u64, start: u64 },
    Reject(State, Option<Duration>),
}

impl<C: Clock> Breaker<C> {
    pub(crate) fn from_parts(name: Arc<str>, config: BreakerConfig, clock: C) -> Self {
        let origin = clock.now_nanos();
        let window = Window::new(config.window, config.minimum_calls);
        let slow_nanos = config.slow_call_duration.map(nanos);
        let plain_successes = slow_nanos.is_none() && !window.needs_time();
        Self {
            inner: Arc::new(Inner {
                name,
                config,
                clock,
                origin,
                word: AtomicU64::new(CLOSED),
                open_until: AtomicU64::new(0),
                window,
                consecutive_failures: AtomicU32::new(0),
                rejected: AtomicU64::new(0),
                classifier_panics: AtomicU64::new(0),
                rejection_traced: AtomicBool::new(false),
                slow_nanos,
                plain_successes,
                control: Mutex::new(Control::default()),
                listeners: Listeners::default(),
            }),
        }
    }

    /// The breaker's name, as in events, stats and tracing.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &BreakerConfig {
        &self.inner.config
    }

    /// Runs `f()` if the circuit admits it, counting `Ok` as success and `Err` as failure.
    ///
    /// A refusal is [`Error::Rejected`] (kind [`RejectKind::CircuitOpen`], with the rest of
    /// the open period as `retry_after` when known); `f`'s own error is [`Error::Inner`].
    ///
    /// If the returned future is dropped before `f`'s future completes, the call counts
    /// as configured by [`cancelled_calls`](BreakerConfig::cancelled_calls) (ignored by
    /// default, which returns a half-open probe permit for another caller).
    // Returns `call_with`'s future itself rather than awaiting it in a second state
    // machine, which would cost the closed path a copy of the whole future.
    pub fn call<F, Fut, T, E>(&self, f: F) -> impl Future<Output = Result<T, Error<E>>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.call_with(&DefaultClassifier, f)
    }

    /// Like [`call`](Self::call), with `classifier` deciding how the result counts.
    ///
    /// ```
    /// use backstop_breaker::{Breaker, Outcome};
    ///
    /// #[derive(Debug)]
    /// enum LlmError { RateLimited, BadPrompt }
    ///
    /// let breaker = Breaker::builder().build().unwrap();
    /// // A rejected prompt is the caller's fault, not the provider's: ignore it.
    /// let classify = |result: &Result<String, LlmError>| match result {
    ///     Ok(answer) if answer.is_empty() => Outcome::Failure,
    ///     Ok(_) => Outcome::Success,
    ///     Err(LlmError::BadPrompt) => Outcome::Ignored,
    ///     Err(LlmError::RateLimited) => Outcome::Failure,
    /// };
    /// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// # rt.block_on(async {
    /// let answer = breaker
    ///     .call_with(&classify, || async { Ok::<_, LlmError>("42".to_string()) })
    ///     .await;
    /// assert_eq!(answer.unwrap(), "42");
    /// # });
    /// ```
    pub fn call_with<K, F, Fut, T, E>(
        &self,
        classifier: &K,
        f: F,
    ) -> impl Future<Output = Result<T, Error<E>>>
    where
        K: Classify<Result<T, E>, Outcome> + ?Sized,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.guard(classifier, f, Error::Rejected, Error::Inner)
    }

    /// Runs `f()` if admitted and records its result, reporting a refusal through
    /// `rejected` and `f`'s error through `failed`: one body for [`call_with`] and the
    /// layer, which keeps the stack's own error type.
    ///
    /// [`call_with`]: Self::call_with
    pub(crate) async fn guard<K, F, Fut, T, E, Out>(
        &self,
        classifier: &K,
        f: F,
        rejected: impl FnOnce(Rejected) -> Out,
        failed: impl FnOnce(E) -> Out,
    ) -> Result<T, Out>
    where
        K: Classify<Result<T, E>, Outcome> + ?Sized,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        // Built here rather than unpacked from `try_acquire`'s `Result`, whose niche
        // layout made the closed path copy the permit through mismatched stores.
        let inner = &*self.inner;
        let word = inner.word.load(Ordering::Acquire);
        let permit = if inner.admits_plainly(word) {
            Permit {
                inner,
                word,
                start: 0,
            }
        } else {
            match inner.acquire(word) {
                Ok(permit) => permit,
                Err(refused) => return Err(rejected(refused)),
            }
        };
        let result = f().await;
        permit.record(inner.classify(classifier, &result));
        result.map_err(failed)
    }

    /// Asks for permission to make one call, for callers that run the call themselves.
    /// Report its outcome through the [`Permit`]; dropping the permit unreported counts
    /// as a cancelled call.
    #[inline]
    pub fn try_acquire(&self) -> Result<Permit<'_, C>, Rejected> {
        let inner = &*self.inner;
        let word = inner.word.load(Ordering::Acquire);
        if inner.admits_plainly(word) {
            return Ok(Permit {
                inner,
                word,
                start: 0,
            });
        }
        inner.acquire(word)
    }

    /// Whether a call now would be admitted, without taking a permit or counting a
    /// rejection: the circuit's answer to [`Service::readiness`](backstop_core::Service).
    /// An open circuit whose period is over reports ready (the next call probes).
    pub fn readiness(&self) -> Result<(), Rejected> {
        let inner = &*self.inner;
        let refused = Rejected::new(RejectKind::CircuitOpen);
        match state_of(inner.word.load(Ordering::Acquire)) {
            State::Closed | State::Disabled | State::MetricsOnly => Ok(()),
            State::ForcedOpen => Err(refused),
            State::Open => {
                let now = inner.now_nanos();
                let until = inner.open_until.load(Ordering::Acquire);
                if now < until {
                    Err(refused.with_retry_after(Duration::from_nanos(until - now)))
                } else {
                    Ok(())
                }
            }
            State::HalfOpen => {
                let control = inner.control.lock();
                if control.probes.issued < inner.config.permitted_calls_in_half_open {
                    Ok(())
                } else {
                    Err(refused)
                }
            }
        }
    }

    /// The current state. With
    /// [`automatic_transition`](BreakerConfig::automatic_transition) this also performs a
    /// transition that is due (open period over, half-open wait exceeded).
    pub fn state(&self) -> State {
        if self.inner.config.automatic_transition {
            self.inner.settle_now();
        }
        state_of(self.inner.word.load(Ordering::Acquire))
    }

    /// A snapshot of the breaker's figures.
    pub fn stats(&self) -> BreakerStats {
        let inner = &*self.inner;
        let state = self.state();
        let now = inner.now_nanos();
        let (totals, minimum) = if state == State::HalfOpen {
            let control = inner.control.lock();
            let probes = &control.probes;
            let totals = Totals {
                calls: u64::from(probes.finished),
                failures: u64::from(probes.failures),
                slow: u64::from(probes.slow),
            };
            (totals, u64::from(inner.config.permitted_calls_in_half_open))
        } else {
            (
                inner.window.totals(now),
                u64::from(inner.config.minimum_calls),
            )
        };
        let decided = totals.calls >= minimum && totals.calls > 0;
        let retry_after = match state {
            State::Open => Some(Duration::from_nanos(
                inner.open_until.load(Ordering::Acquire).saturating_sub(now),
            )),
            _ => None,
        };
        BreakerStats {
            name: inner.name.to_string(),
            state,
            failure_rate: decided.then(|| totals.failure_rate()),
            slow_call_rate: decided.then(|| totals.slow_rate()),
            buffered_calls: totals.calls,
            failed_calls: totals.failures,
            slow_calls: totals.slow,
            rejected_calls: inner.rejected.load(Ordering::Relaxed),
            listener_panics: inner.listeners.panicked(),
            classifier_panics: inner.classifier_panics.load(Ordering::Relaxed),
            retry_after,
        }
    }

    /// Registers `listener` for every later [`BreakerEvent`]. Listeners run on the thread
    /// that caused the event, outside the breaker's lock; keep them short (or forward to
    /// a channel).
    pub fn subscribe(&self, listener: impl Fn(&BreakerEvent) + Send + Sync + 'static) {
        self.inner.listeners.add(Arc::new(listener));
    }

    /// Moves the circuit to `state` now, as an operator. Moving to `Closed` clears the
    /// window and the backoff; moving to `Open` starts an open period; `ForcedOpen`,
    /// `Disabled` and `MetricsOnly` hold until the operator moves the circuit again.
    pub fn transition_to(&self, state: State) {
        let inner = &*self.inner;
        let now = inner.now_nanos();
        let mut control = inner.control.lock();
        let word = inner.word.load(Ordering::Acquire);
        if state_of(word) == state {
            return;
        }
        let transition = inner.transition(&mut control, word, state, now);
        drop(control);
        inner.announce(transition);
    }

    /// Rejects every call until the operator changes the state.
    pub fn force_open(&self) {
        self.transition_to(State::ForcedOpen);
    }

    /// Admits every call and records nothing until the operator changes the state.
    pub fn disable(&self) {
        self.transition_to(State::Disabled);
    }

    /// Admits every call and records outcomes, but never opens.
    pub fn metrics_only(&self) {
        self.transition_to(State::MetricsOnly);
    }

    /// Closes the circuit with an empty window and no backoff.
    pub fn reset(&self) {
        let inner = &*self.inner;
        let now = inner.now_nanos();
        let mut control = inner.control.lock();
        let word = inner.word.load(Ordering::Acquire);
        let transition = inner.transition(&mut control, word, State::Closed, now);
        drop(control);
        if transition.from != State::Closed {
            inner.announce(transition);
        }
    }
}

impl<C: Clock> Inner<C> {
    /// How `result` counts, by `classifier`; a classifier that panics counts the call as
    /// neither success nor failure (it could not say), so the caller still gets its result.
    #[inline]
    fn classify<K, T, E>(&self, classifier: &K, result: &Result<T, E>) -> Outcome
    where
        K: Classify<Result<T, E>, Outcome> + ?Sized,
    {
        match contain("breaker.classify", || classifier.classify(result)) {
            Ok(outcome) => outcome,
            Err(panicked) => self.classifier_panicked(&panicked),
        }
    }

    #[cold]
    #[inline(never)]
    fn classifier_panicked(&self, panicked: &Panicked) -> Outcome {
        self.classifier_panics.fetch_add(1, Ordering::Relaxed);
        tracing::error!(breaker = %self.name, %panicked, "breaker classifier panicked; call ignored");
        Outcome::Ignored
    }

    /// Whether a call is admitted by the state word alone, with no clock read.
    #[inline]
    fn admits_plainly(&self, word: u64) -> bool {
        word & STATE_MASK == CLOSED && self.slow_nanos.is_none()
    }

    fn now_nanos(&self) -> u64 {
        self.clock.now_nanos().saturating_sub(self.origin)
    }

    /// Admission in every case but a plain closed circuit; the rare cases (half-open,
    /// a due open period) are out of line in `admit_slow`.
    #[inline]
    fn acquire(&self, word: u64) -> Result<Permit<'_, C>, Rejected> {
        let admission = match word & STATE_MASK {
            OPEN => {
                let now = self.now_nanos();
                let until = self.open_until.load(Ordering::Acquire);
                if now < until {
                    let retry_after = Some(Duration::from_nanos(until - now));
                    return Err(self.reject(State::Open, retry_after));
                }
                self.admit_slow(now)
            }
            CLOSED | DISABLED | METRICS_ONLY => {
                let start = if self.slow_nanos.is_some() {
                    self.now_nanos()
                } else {
                    0
                };
                Admission::Admit { word, start }
            }
            FORCED_OPEN => Admission::Reject(State::ForcedOpen, None),
            _ => self.admit_slow(self.now_nanos()),
        };
        match admission {
            Admission::Admit { word, start } => Ok(Permit {
                inner: self,
                word,
                start,
            }),
            Admission::Reject(state, retry_after) => Err(self.reject(state, retry_after)),
        }
    }

    #[inline]
    fn reject(&self, state: State, retry_after: Option<Duration>) -> Rejected {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        if self.listeners.active() || !self.rejection_traced.load(Ordering::Relaxed) {
            self.report_rejection(state, retry_after);
        }
        let refused = Rejected::new(RejectKind::CircuitOpen);
        match retry_after {
            Some(wait) => refused.with_retry_after(wait),
            None => refused,
        }
    }

    /// Every rejection goes to the listeners; `tracing` gets the first of each state
    /// only, since an open circuit rejects at the caller's full rate and the count is in
    /// [`stats`](Breaker::stats).
    #[inline(never)]
    fn report_rejection(&self, state: State, retry_after: Option<Duration>) {
        if !self.rejection_traced.swap(true, Ordering::Relaxed) {
            tracing::debug!(
                breaker = %self.name, %state, ?retry_after,
                "rejecting calls (traced once per state; see stats for the count)"
            );
        }
        self.listeners.publish(|| BreakerEvent::Rejected {
            name: self.name.clone(),
            state,
        });
    }

    /// Admission when the fast path could not decide: a due open period, or half-open.
    #[cold]
    #[inline(never)]
    fn admit_slow(&self, now: u64) -> Admission {
        let mut control = self.control.lock();
        let settled = self.settle(&mut control, now);
        let word = self.word.load(Ordering::Acquire);
        let admission = match state_of(word) {
            State::Closed | State::Disabled | State::MetricsOnly => {
                Admission::Admit { word, start: now }
            }
            State::ForcedOpen => Admission::Reject(State::ForcedOpen, None),
            State::Open => {
                let until = self.open_until.load(Ordering::Acquire);
                Admission::Reject(
                    State::Open,
                    Some(Duration::from_nanos(until.saturating_sub(now))),
                )
            }
            State::HalfOpen => {
                let probes = &mut control.probes;
                if probes.issued < self.config.permitted_calls_in_half_open {
                    probes.issued += 1;
                    Admission::Admit { word, start: now }
                } else {
                    Admission::Reject(State::HalfOpen, None)
                }
            }
        };
        drop(control);
        if let Some(transition) = settled {
            self.announce(transition);
        }
        admission
    }

    fn settle_now(&self) {
        let state = state_of(self.word.load(Ordering::Acquire));
        if !matches!(state, State::Open | State::HalfOpen) {
            return;
        }
        let now = self.now_nanos();
        let mut control = self.control.lock();
        let settled = self.settle(&mut control, now);
        drop(control);
        if let Some(transition) = settled {
            self.announce(transition);
        }
    }

    /// Performs the time-driven transition that is due, if any.
    fn settle(&self, control: &mut Control, now: u64) -> Option<Transition> {
        let word = self.word.load(Ordering::Acquire);
        match state_of(word) {
            State::Open if now >= self.open_until.load(Ordering::Acquire) => {
                Some(self.transition(control, word, State::HalfOpen, now))
            }
            State::HalfOpen => {
                let max_wait = self.config.max_wait_in_half_open?;
                (now.saturating_sub(control.probes.started) >= nanos(max_wait))
                    .then(|| self.transition(control, word, State::Open, now))
            }
            _ => None,
        }
    }

    /// Moves from the state in `word` to `to`; the caller holds the control lock.
    fn transition(&self, control: &mut Control, word: u64, to: State, now: u64) -> Transition {
        let from = state_of(word);
        match to {
            State::Closed => {
                self.window.reset();
                self.consecutive_failures.store(0, Ordering::Relaxed);
                control.failed_rounds = 0;
            }
            State::Open => {
                if from == State::HalfOpen {
                    control.failed_rounds = control.failed_rounds.saturating_add(1);
                }
                let period = self.config.open_period(control.failed_rounds);
                self.open_until
                    .store(now.saturating_add(nanos(period)), Ordering::Release);
            }
            State::HalfOpen => {
                control.probes = Probes {
                    started: now,
                    ..Probes::default()
                };
            }
            State::ForcedOpen | State::Disabled | State::MetricsOnly => {}
        }
        self.rejection_traced.store(false, Ordering::Relaxed);
        let epoch = (word >> EPOCH_SHIFT).wrapping_add(1);
        self.word
            .store((epoch << EPOCH_SHIFT) | to.code(), Ordering::Release);
        Transition { from, to }
    }

    fn announce(&self, Transition { from, to }: Transition) {
        if to == State::Open || to == State::ForcedOpen {
            tracing::warn!(breaker = %self.name, %from, %to, "circuit breaker state changed");
        } else {
            tracing::info!(breaker = %self.name, %from, %to, "circuit breaker state changed");
        }
        self.listeners.publish(|| BreakerEvent::StateTransition {
            name: self.name.clone(),
            from,
            to,
        });
    }

    fn rates_exceeded(&self, totals: &Totals) -> bool {
        totals.failure_rate() >= self.config.failure_rate_threshold
            || (self.slow_nanos.is_some()
                && totals.slow_rate() >= self.config.slow_call_rate_threshold)
    }

    fn slow_call(&self, elapsed: u64) {
        let duration = Duration::from_nanos(elapsed);
        tracing::debug!(breaker = %self.name, ?duration, "slow call");
        self.listeners.publish(|| BreakerEvent::SlowCall {
            name: self.name.clone(),
            duration,
        });
    }

    /// Records how the call admitted under `word` at `start` went.
    #[inline]
    fn complete(&self, word: u64, start: u64, outcome: Outcome) {
        if word & STATE_MASK == CLOSED && outcome == Outcome::Success && self.plain_successes {
            self.record_plain_success(word);
        } else {
            self.complete_general(word, start, outcome);
        }
    }

    /// A success in a closed circuit that tracks neither slow calls nor time: a
    /// count-window write, and a decision only when the window may call for one.
    #[inline]
    fn record_plain_success(&self, word: u64) {
        if self.word.load(Ordering::Acquire) != word {
            return;
        }
        let totals = self.window.record(Sample::SUCCESS, 0);
        if self.config.consecutive_failures.is_some()
            && self.consecutive_failures.load(Ordering::Relaxed) != 0
        {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
        if let Some(totals) = totals {
            self.decide(word, totals, 0);
        }
    }

    #[inline(never)]
    fn complete_general(&self, word: u64, start: u64, outcome: Outcome) {
        let state = state_of(word);
        let failed = match (state, outcome) {
            (State::Disabled | State::ForcedOpen | State::Open, _) => return,
            (_, Outcome::Ignored) => {
                if state == State::HalfOpen {
                    self.return_probe(word);
                }
                return;
            }
            (_, Outcome::Failure) => true,
            (_, Outcome::Success) => false,
        };
        let needs_now =
            self.slow_nanos.is_some() || self.window.needs_time() || state == State::HalfOpen;
        let now = if needs_now { self.now_nanos() } else { 0 };
        let elapsed = now.saturating_sub(start);
        let slow = self.slow_nanos.is_some_and(|limit| elapsed >= limit);
        let sample = Sample { failed, slow };
        if state == State::HalfOpen {
            self.finish_probe(word, sample, now);
        } else {
            self.record_closed(word, sample, now);
        }
        if slow {
            self.slow_call(elapsed);
        }
    }

    fn record_closed(&self, word: u64, sample: Sample, now: u64) {
        if self.word.load(Ordering::Acquire) != word {
            return;
        }
        let totals = self.window.record(sample, now);
        if word & STATE_MASK == METRICS_ONLY {
            return;
        }
        let mut trip = false;
        if let Some(limit) = self.config.consecutive_failures {
            if sample.failed {
                let run = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
                trip |= run >= limit;
            } else if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
                self.consecutive_failures.store(0, Ordering::Relaxed);
            }
        }
        if let Some(totals) = totals {
            trip |= self.should_trip(&totals);
        }
        if trip {
            self.trip(word, now);
        }
    }

    fn should_trip(&self, totals: &Totals) -> bool {
        totals.calls >= u64::from(self.config.minimum_calls) && self.rates_exceeded(totals)
    }

    /// The window just reached a point where it may call for opening.
    #[cold]
    fn decide(&self, word: u64, totals: Totals, now: u64) {
        if self.should_trip(&totals) {
            self.trip(word, now);
        }
    }

    #[cold]
    fn trip(&self, word: u64, now: u64) {
        let mut control = self.control.lock();
        if self.word.load(Ordering::Acquire) != word {
            return;
        }
        let transition =
            self.transition(&mut control, word, State::Open, now.max(self.now_nanos()));
        drop(control);
        self.announce(transition);
    }

    fn return_probe(&self, word: u64) {
        let mut control = self.control.lock();
        if self.word.load(Ordering::Acquire) == word {
            control.probes.issued = control.probes.issued.saturating_sub(1);
        }
    }

    fn finish_probe(&self, word: u64, sample: Sample, now: u64) {
        let mut control = self.control.lock();
        if self.word.load(Ordering::Acquire) != word {
            return;
        }
        let probes = &mut control.probes;
        probes.finished += 1;
        probes.failures += u32::from(sample.failed);
        probes.slow += u32::from(sample.slow);
        if probes.finished < self.config.permitted_calls_in_half_open {
            return;
        }
        let totals = Totals {
            calls: u64::from(probes.finished),
            failures: u64::from(probes.failures),
            slow: u64::from(probes.slow),
        };
        let to = if self.rates_exceeded(&totals) {
            State::Open
        } else {
            State::Closed
        };
        let transition = self.transition(&mut control, word, to, now);
        drop(control);
        self.announce(transition);
    }
}

/// Permission to make one call; report how it went with [`record`](Self::record) (or
/// [`success`](Self::success) / [`failure`](Self::failure) / [`ignore`](Self::ignore)).
/// Dropping it unreported counts as a cancelled call, so a caller that is itself dropped
/// mid-call never strands a half-open probe.
#[must_use = "a permit dropped unreported counts as a cancelled call"]
pub struct Permit<'a, C: Clock = DefaultClock> {
    inner: &'a Inner<C>,
    word: u64,
    start: u64,
}

impl<C: Clock> Permit<'_, C> {
    /// The state the call was admitted in.
    pub fn state(&self) -> State {
        state_of(self.word)
    }

    /// Reports the call's outcome.
    #[inline]
    pub fn record(self, outcome: Outcome) {
        // Reported, so the drop that counts a cancelled call must not run.
        let permit = ManuallyDrop::new(self);
        permit.inner.complete(permit.word, permit.start, outcome);
    }

    /// Reports a success.
    pub fn success(self) {
        self.record(Outcome::Success);
    }

    /// Reports a failure.
    pub fn failure(self) {
        self.record(Outcome::Failure);
    }

    /// Reports a call that should not count either way.
    pub fn ignore(self) {
        self.record(Outcome::Ignored);
    }
}

impl<C: Clock> Drop for Permit<'_, C> {
    fn drop(&mut self) {
        let outcome = match self.inner.config.cancelled_calls {
            CancelledCalls::Ignore => Outcome::Ignored,
            CancelledCalls::Failure => Outcome::Failure,
            CancelledCalls::Success => Outcome::Success,
        };
        tracing::trace!(breaker = %self.inner.name, ?outcome, "call cancelled");
        self.inner.complete(self.word, self.start, outcome);
    }
}

impl<C: Clock> std::fmt::Debug for Permit<'_, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("breaker", &self.inner.name)
            .field("state", &self.state())
            .finish()
    }
}
