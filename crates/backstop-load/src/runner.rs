//! The generator: sends a plan's traffic to a service and records what happened.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use backstop_core::config::Validate;
use backstop_core::{LoadSignal, Service, StackError, contain};
use futures::FutureExt as _;
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use tokio::time::{Instant, Sleep};

use crate::LoadTestError;
use crate::plan::{Arrivals, LoadMode, LoadPlan, RatePattern};
use crate::recorder::{OutcomeClass, StageRecorder};
use crate::report::{LoadReport, SignalReading, StatsReading, TimelinePoint};

/// Arrivals handled back to back before the driver yields to the runtime, so a generator
/// running behind schedule cannot starve other tasks.
const BURST: u32 = 1024;
/// Longest integration step of a time-varying rate.
const RATE_STEP: f64 = 0.010;
/// Emptied call slots kept for reuse; more are freed (a burst of slow calls is over).
const SPARE_SLOTS: usize = 1024;
/// Calls answered on their first poll that may share one clock reading within a burst.
/// Reading the clock was a fifth of the driver's time per request flat out (the virtual
/// clock of a VM makes each reading cost more than the rest of the request's bookkeeping);
/// sharing one reading among at most this many back-to-back answers understates each of
/// their latencies by at most the time spent sending and polling the ones before it in the
/// burst (microseconds for services that answer without waiting), and only while the
/// generator runs behind its schedule: on schedule a burst sends one or two requests
/// right after its own reading.
const CLOCK_REUSE: u32 = 32;

/// A live view of a running test, given to the progress callback every sample interval.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct LoadProgress<'a> {
    /// Time since the start of the run.
    pub elapsed: Duration,
    /// The stage now sending (the last one while draining).
    pub stage: &'a str,
    /// Requests sent so far.
    pub sent: u64,
    /// Requests answered so far.
    pub completed: u64,
    /// Requests outstanding.
    pub in_flight: u64,
}

impl fmt::Display for LoadProgress<'_> {
    /// A one-line status, for a live progress line (`\r` + this).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{:>7.1}s] stage {} sent {} done {} in flight {}",
            self.elapsed.as_secs_f64(),
            self.stage,
            self.sent,
            self.completed,
            self.in_flight
        )
    }
}

type ProgressFn = dyn Fn(&LoadProgress<'_>) + Send + Sync;
type StatsFn = dyn Fn() -> serde_json::Value + Send + Sync;

/// Runs a [`LoadPlan`] against any Backstop [`Service`].
///
/// The service's futures are polled by the generator's own task (no spawn per request), so
/// the generator adds as little as possible to what it measures; a service that needs
/// parallel CPU work spawns it itself. Each call is polled once as it is sent: one that
/// answers at once is recorded there and then, and only a call that has to wait joins the
/// set of calls in flight, in a heap slot reused from earlier calls. Calls answered at once
/// and sent back to back share a clock reading, up to 32 of them (a generator running
/// behind its schedule would otherwise spend a fifth of its time reading the clock): their
/// latency is understated by at most the time spent sending the ones before them in that
/// burst. A call that waits is stamped when it finishes.
pub struct LoadTest {
    plan: LoadPlan,
    signals: Vec<(String, Arc<dyn LoadSignal>)>,
    stats: Vec<(String, Box<StatsFn>)>,
    progress: Option<Box<ProgressFn>>,
    #[cfg(feature = "metrics")]
    metrics: Option<crate::live::LiveMetrics>,
}

impl fmt::Debug for LoadTest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadTest")
            .field("plan", &self.plan)
            .field("signals", &self.signals.len())
            .finish_non_exhaustive()
    }
}

impl LoadTest {
    /// A test of `plan`, validated now.
    pub fn new(plan: LoadPlan) -> Result<Self, LoadTestError> {
        plan.validate()?;
        Ok(Self {
            plan,
            signals: Vec::new(),
            stats: Vec::new(),
            progress: None,
            #[cfg(feature = "metrics")]
            metrics: None,
        })
    }

    /// Also reads `signal` every sample interval (a pool, a batcher, a bulkhead).
    pub fn signal(mut self, name: impl Into<String>, signal: impl LoadSignal + 'static) -> Self {
        self.signals.push((name.into(), Arc::new(signal)));
        self
    }

    /// Also records what `stats` returns every sample interval: any primitive's `stats()`
    /// snapshot (they are `Serialize`), as JSON in [`LoadReport::stats`]. A panic in
    /// `stats` skips that reading.
    ///
    /// ```
    /// # use backstop_load::{Arrivals, LoadPlan, LoadStage, LoadTest};
    /// # use std::sync::{Arc, atomic::{AtomicU64, Ordering}};
    /// # let plan = LoadPlan::open_loop(Arrivals::Constant)
    /// #     .stage(LoadStage::constant("s", 10.0, std::time::Duration::from_secs(1)));
    /// let calls = Arc::new(AtomicU64::new(0));
    /// let seen = calls.clone();
    /// let test = LoadTest::new(plan)?.stats("calls", move || seen.load(Ordering::Relaxed));
    /// # Ok::<(), backstop_load::LoadTestError>(())
    /// ```
    pub fn stats<T: serde::Serialize>(
        mut self,
        name: impl Into<String>,
        stats: impl Fn() -> T + Send + Sync + 'static,
    ) -> Self {
        self.stats.push((
            name.into(),
            Box::new(move || serde_json::to_value(stats()).unwrap_or_default()),
        ));
        self
    }

    /// Calls `progress` every sample interval, for a live progress line.
    pub fn on_progress(
        mut self,
        progress: impl Fn(&LoadProgress<'_>) + Send + Sync + 'static,
    ) -> Self {
        self.progress = Some(Box::new(progress));
        self
    }

    /// Publishes the run live through the [`metrics`](https://docs.rs/metrics) facade
    /// (feature `metrics`), labelled `test = name`, for Prometheus or any recorder:
    /// - `backstop_loadtest_requests_total{test, stage, outcome}` answered requests by
    ///   outcome class (`ok`, `rejected:<kind>`, `error`, `timeout`), as they finish;
    /// - `backstop_loadtest_latency_seconds{test, stage, outcome}` their latencies, a
    ///   histogram (from the scheduled send in open loop);
    /// - `backstop_loadtest_sent_total{test, stage}`, `backstop_loadtest_dropped_total{test,
    ///   stage}` and the gauge `backstop_loadtest_in_flight{test}`, every sample interval.
    #[cfg(feature = "metrics")]
    pub fn metrics(mut self, name: impl Into<String>) -> Self {
        self.metrics = Some(crate::live::LiveMetrics::new(name.into()));
        self
    }

    /// The plan this test runs.
    pub fn plan(&self) -> &LoadPlan {
        &self.plan
    }

    /// Sends the plan's traffic to `service`, building request `i` with `request(i)`, and
    /// reports per stage.
    pub async fn run<S, Req, F>(
        &self,
        service: &S,
        mut request: F,
    ) -> Result<LoadReport, LoadTestError>
    where
        S: Service<Req>,
        S::Error: StackError,
        F: FnMut(u64) -> Req,
    {
        let plan = &self.plan;
        let start = Instant::now();
        let mut tally = Tally::new(plan, start);
        #[cfg(feature = "metrics")]
        if let Some(metrics) = &self.metrics {
            for (recorder, stage) in tally.recorders.iter_mut().zip(&plan.stages) {
                recorder.publish(metrics.stage(&stage.name));
            }
        }
        let end = tally.end;
        let drain_deadline = end + backstop_core::time::clamp(plan.drain_timeout);
        let mut readings = Vec::new();
        let mut stats_readings = Vec::new();
        let mut schedule = match plan.mode {
            LoadMode::OpenLoop { arrivals } => Some(Schedule::new(plan, arrivals, start)),
            LoadMode::ClosedLoop { .. } => None,
        };
        let users = tally.users;

        let mut in_flight = FuturesUnordered::new();
        let mut slots = Vec::new();
        let mut issued: u64 = 0;
        let mut next_arrival = schedule.as_mut().and_then(Schedule::next);
        let mut next_tick = start + plan.sample_interval;
        let mut finished = None;
        let sleep = tokio::time::sleep_until(start);
        tokio::pin!(sleep);

        let mut build = |issued: &mut u64| {
            let i = *issued;
            *issued += 1;
            contain("backstop_load::request", || request(i)).map_err(LoadTestError::RequestPanicked)
        };
        // Closed loop: every user sends its first request at the start.
        if !plan.duration().is_zero() {
            tally.waiting.extend((0..users).map(|_| start));
        }

        loop {
            let mut now = Instant::now();
            let mut clock = BurstClock::new(now);
            // Send every arrival (or closed-loop user) that is due, back to back.
            let mut burst = 0;
            while let Some((at, stage)) = next_arrival {
                if at > now {
                    break;
                }
                tally.timeline.sent(at);
                if in_flight.len() as u64 >= plan.max_in_flight {
                    tally.recorders[stage].dropped += 1;
                } else {
                    let req = build(&mut issued)?;
                    tally.recorders[stage].count_sent();
                    let call = send(
                        &mut slots,
                        service.call(req),
                        at,
                        stage,
                        plan.timeout,
                        &mut clock,
                    );
                    match call {
                        Sent::Answered(done) => tally.complete(done),
                        Sent::Waiting(call) => in_flight.push(call),
                    }
                }
                next_arrival = schedule.as_mut().and_then(Schedule::next);
                burst += 1;
                if burst == BURST {
                    break;
                }
            }
            while tally.waiting.front().is_some_and(|due| *due <= now) && now < end {
                tally.waiting.pop_front();
                let req = build(&mut issued)?;
                let from = Instant::now();
                let stage = tally.stage_at(from);
                tally.recorders[stage].count_sent();
                tally.timeline.sent(from);
                let mut clock = BurstClock::new(from);
                match send(
                    &mut slots,
                    service.call(req),
                    from,
                    stage,
                    plan.timeout,
                    &mut clock,
                ) {
                    Sent::Answered(done) => tally.complete(done),
                    Sent::Waiting(call) => in_flight.push(call),
                }
            }
            // Record what finished: the request the select below woke for, then whatever
            // else is already done, without waiting.
            loop {
                let (done, slot) = match finished.take() {
                    Some(done) => done,
                    None => match in_flight.next().now_or_never() {
                        Some(Some(done)) => done,
                        _ => break,
                    },
                };
                if slots.len() < SPARE_SLOTS {
                    slots.push(slot);
                }
                tally.complete(done);
            }
            now = Instant::now();
            if now >= next_tick {
                let at_ms = backstop_core::time::millis(now.saturating_duration_since(start));
                if readings.len() < crate::plan::MAX_TIMELINE_POINTS as usize {
                    readings.extend(self.signals.iter().map(|(name, signal)| {
                        let load = signal.load();
                        SignalReading {
                            name: name.clone(),
                            at_ms,
                            in_flight: load.in_flight,
                            queued: load.queued,
                            capacity: load.capacity,
                            mean_wait_us: backstop_core::time::nanos(load.mean_wait) / 1000,
                            p95_wait_us: backstop_core::time::nanos(load.p95_wait) / 1000,
                        }
                    }));
                    for (name, stats) in &self.stats {
                        if let Ok(value) = contain("backstop_load::stats", stats) {
                            stats_readings.push(StatsReading {
                                name: name.clone(),
                                at_ms,
                                value,
                            });
                        }
                    }
                }
                #[cfg(feature = "metrics")]
                if let Some(metrics) = &self.metrics {
                    metrics.tick(&tally.recorders, in_flight.len() as u64);
                }
                if let Some(progress) = &self.progress {
                    progress(&LoadProgress {
                        elapsed: now.saturating_duration_since(start),
                        stage: &plan.stages[tally.stage_at(now)].name,
                        sent: tally.recorders.iter().map(|r| r.sent).sum(),
                        completed: issued.saturating_sub(in_flight.len() as u64),
                        in_flight: in_flight.len() as u64,
                    });
                }
                while next_tick <= now {
                    next_tick += plan.sample_interval;
                }
            }
            let sending = next_arrival.is_some() || (users > 0 && now < end);
            if !sending && in_flight.is_empty() {
                break;
            }
            if !sending && now >= drain_deadline {
                break;
            }
            if burst == BURST {
                tokio::task::yield_now().await;
                continue;
            }
            let user_due = tally.waiting.front().copied().filter(|_| now < end);
            let wake = next_arrival
                .map_or(drain_deadline, |(at, _)| at)
                .min(user_due.unwrap_or(drain_deadline))
                .min(next_tick);
            if wake <= now {
                continue;
            }
            sleep.as_mut().reset(wake);
            finished = tokio::select! {
                biased;
                Some(done) = in_flight.next(), if !in_flight.is_empty() => Some(done),
                () = &mut sleep => None,
            };
        }

        #[cfg(feature = "metrics")]
        if let Some(metrics) = &self.metrics {
            metrics.tick(&tally.recorders, in_flight.len() as u64);
        }
        let stages = tally
            .recorders
            .into_iter()
            .zip(&plan.stages)
            .map(|(recorder, stage)| recorder.finish(stage, &plan.mode))
            .collect();
        Ok(LoadReport {
            mode: plan.mode.label(),
            stages,
            timeline: tally.timeline.points,
            signals: readings,
            stats: stats_readings,
        })
    }
}

/// What the driver keeps per run besides the calls in flight.
struct Tally {
    start: Instant,
    end: Instant,
    stage_ends: Vec<Duration>,
    recorders: Vec<StageRecorder>,
    timeline: Timeline,
    /// Closed loop: when each idle user sends next, in order (think time is constant).
    waiting: VecDeque<Instant>,
    users: u64,
    think: Duration,
}

impl Tally {
    fn new(plan: &LoadPlan, start: Instant) -> Self {
        let stage_ends = plan
            .stages
            .iter()
            .scan(Duration::ZERO, |end, stage| {
                *end = end.saturating_add(stage.duration);
                Some(*end)
            })
            .collect();
        let (users, think) = match plan.mode {
            LoadMode::ClosedLoop { users, think } => (users, think),
            LoadMode::OpenLoop { .. } => (0, Duration::ZERO),
        };
        Self {
            start,
            end: start + plan.duration(),
            stage_ends,
            recorders: (0..plan.stages.len() as u64)
                .map(|i| StageRecorder::new(plan.samples_per_stage, plan.seed ^ (i + 1)))
                .collect(),
            timeline: Timeline::new(start, plan.sample_interval, plan.duration()),
            waiting: VecDeque::new(),
            users,
            think,
        }
    }

    fn stage_at(&self, at: Instant) -> usize {
        let offset = at.saturating_duration_since(self.start);
        self.stage_ends
            .partition_point(|end| *end <= offset)
            .min(self.stage_ends.len() - 1)
    }

    fn complete(&mut self, done: Done) {
        self.timeline.completed(done.end, done.class);
        self.recorders[done.stage]
            .record(done.class, done.end.saturating_duration_since(done.from));
        if self.users > 0 && done.end < self.end {
            // Closed loop: the user sends again after its think time.
            self.waiting.push_back(done.end + self.think);
        }
    }
}

/// One finished request.
struct Done {
    /// Scheduled send (open loop) or actual send (closed loop): latency counts from here.
    from: Instant,
    /// The stage it was sent in, whose figures it counts in.
    stage: usize,
    end: Instant,
    class: OutcomeClass,
}

/// A heap place for one call's future, reused from call to call: `Option` so it can be
/// emptied and refilled in place without being moved.
type Slot<C> = Pin<Box<Option<C>>>;

enum Sent<C> {
    Answered(Done),
    Waiting(Waiting<C>),
}

/// One clock reading shared by up to [`CLOCK_REUSE`] calls answered back to back.
struct BurstClock {
    now: Instant,
    uses: u32,
}

impl BurstClock {
    /// Starts from a reading just taken.
    fn new(now: Instant) -> Self {
        Self { now, uses: 0 }
    }

    /// The time an immediate answer is stamped with: the shared reading, read afresh
    /// once it has served `CLOCK_REUSE` answers.
    #[inline]
    fn read(&mut self) -> Instant {
        if self.uses == CLOCK_REUSE {
            self.now = Instant::now();
            self.uses = 0;
        }
        self.uses += 1;
        self.now
    }
}

/// Starts `call`: polls it once at once, so an immediate answer costs no allocation and
/// no trip through the set of calls in flight (it is stamped by `clock`). Latency counts
/// from `from`; a call not answered `timeout` after it is a timeout.
fn send<C, T, E>(
    slots: &mut Vec<Slot<C>>,
    call: C,
    from: Instant,
    stage: usize,
    timeout: Option<Duration>,
    clock: &mut BurstClock,
) -> Sent<C>
where
    C: Future<Output = Result<T, E>>,
    E: StackError,
{
    let mut slot = slots.pop().unwrap_or_else(|| Box::pin(None));
    slot.set(Some(call));
    // The set of calls in flight polls a waiting call again with its own waker before the
    // driver sleeps, so this first poll needs none.
    let mut cx = Context::from_waker(Waker::noop());
    match poll_contained(&mut slot, &mut cx) {
        Poll::Ready(class) => {
            slot.set(None);
            slots.push(slot);
            Sent::Answered(Done {
                from,
                stage,
                // Never before the scheduled send, even on a reading shared in a burst.
                end: clock.read().max(from),
                class,
            })
        }
        Poll::Pending => Sent::Waiting(Waiting {
            slot: Some(slot),
            from,
            stage,
            deadline: timeout.map(|t| {
                Box::pin(tokio::time::sleep_until(
                    from + backstop_core::time::clamp(t),
                ))
            }),
        }),
    }
}

/// Polls the call in `slot`; a panic while polling is an `Error` outcome.
fn poll_contained<C, T, E>(slot: &mut Slot<C>, cx: &mut Context<'_>) -> Poll<OutcomeClass>
where
    C: Future<Output = Result<T, E>>,
    E: StackError,
{
    let Some(call) = slot.as_mut().as_pin_mut() else {
        return Poll::Ready(OutcomeClass::Error);
    };
    match contain("backstop_load::call", || call.poll(cx)) {
        Ok(Poll::Ready(result)) => Poll::Ready(OutcomeClass::of(&result)),
        Ok(Poll::Pending) => Poll::Pending,
        Err(_) => Poll::Ready(OutcomeClass::Error),
    }
}

/// A call that did not answer on its first poll, waiting in the set of calls in flight.
/// It gives its slot back with the outcome.
struct Waiting<C> {
    slot: Option<Slot<C>>,
    from: Instant,
    stage: usize,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<C, T, E> Future for Waiting<C>
where
    C: Future<Output = Result<T, E>>,
    E: StackError,
{
    type Output = (Done, Slot<C>);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(slot) = this.slot.as_mut() else {
            return Poll::Pending;
        };
        let class = match poll_contained(slot, cx) {
            Poll::Ready(class) => class,
            Poll::Pending => {
                let expired = this
                    .deadline
                    .as_mut()
                    .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
                if !expired {
                    return Poll::Pending;
                }
                OutcomeClass::Timeout
            }
        };
        let Some(mut slot) = this.slot.take() else {
            return Poll::Pending;
        };
        slot.set(None);
        Poll::Ready((
            Done {
                from: this.from,
                stage: this.stage,
                end: Instant::now(),
                class,
            },
            slot,
        ))
    }
}

/// Open-loop send times. An arrival is due each time the integral of the target rate has
/// grown by `need`: 1 for constant arrivals, an Exp(1) draw for Poisson ones (the
/// time-rescaling theorem makes that an inhomogeneous Poisson process for any pattern).
struct Schedule<'a> {
    plan: &'a LoadPlan,
    arrivals: Arrivals,
    start: Instant,
    rng: fastrand::Rng,
    stage: usize,
    stage_start: f64,
    /// The current stage's end and, for a constant pattern, its rate and the gap one unit
    /// of `need` spans (`1 / rate`): read per arrival, so kept rather than recomputed.
    stage_end: f64,
    constant: Option<(f64, f64)>,
    t: f64,
    need: f64,
}

impl<'a> Schedule<'a> {
    fn new(plan: &'a LoadPlan, arrivals: Arrivals, start: Instant) -> Self {
        let mut schedule = Self {
            plan,
            arrivals,
            start,
            rng: fastrand::Rng::with_seed(plan.seed),
            stage: 0,
            stage_start: 0.0,
            stage_end: 0.0,
            constant: None,
            t: 0.0,
            need: 0.0,
        };
        schedule.enter(0, 0.0);
        // Constant arrivals sit mid-slot, so a stage of n slots sends exactly n requests.
        schedule.need = match arrivals {
            Arrivals::Constant => 0.5,
            _ => schedule.draw(),
        };
        schedule
    }

    fn enter(&mut self, stage: usize, stage_start: f64) {
        self.stage = stage;
        self.stage_start = stage_start;
        let (length, constant) = match self.plan.stages.get(stage) {
            Some(stage) => (
                stage.duration.as_secs_f64(),
                match stage.pattern {
                    RatePattern::Constant { rate } if rate > 0.0 => Some((rate, 1.0 / rate)),
                    RatePattern::Constant { rate } => Some((rate, 0.0)),
                    _ => None,
                },
            ),
            None => (0.0, None),
        };
        self.stage_end = stage_start + length;
        self.constant = constant;
    }

    fn draw(&mut self) -> f64 {
        match self.arrivals {
            Arrivals::Constant => 1.0,
            // 1 - U is in (0, 1], so the logarithm is finite.
            _ => -(1.0 - self.rng.f64()).ln(),
        }
    }

    fn next(&mut self) -> Option<(Instant, usize)> {
        // A constant stage whose next arrival falls inside it: one step, no integration.
        if let Some((rate, gap)) = self.constant
            && rate > 0.0
            && self.need * gap <= self.stage_end - self.t
        {
            self.t += self.need * gap;
            self.need = self.draw();
            return Some((self.instant(), self.stage));
        }
        loop {
            let stage = self.plan.stages.get(self.stage)?;
            if self.t >= self.stage_end {
                self.enter(self.stage + 1, self.stage_end);
                continue;
            }
            let step = (self.stage_end - self.t).min(RATE_STEP);
            let rate = match self.constant {
                Some((rate, _)) => rate,
                None => stage.pattern.rate_at(
                    Duration::from_secs_f64(self.t - self.stage_start + step / 2.0),
                    stage.duration,
                ),
            };
            if rate > 0.0 && rate * step >= self.need {
                self.t += self.need / rate;
                self.need = self.draw();
                return Some((self.instant(), self.stage));
            }
            self.need -= rate.max(0.0) * step;
            self.t += step;
        }
    }

    /// The current schedule time as an instant, in whole nanoseconds (saturating cast:
    /// plans last at most a year, 3.2e16 ns).
    #[inline]
    fn instant(&self) -> Instant {
        self.start + Duration::from_nanos((self.t * 1e9) as u64)
    }
}

/// Requests per sample interval; the last point also takes everything after the plan.
struct Timeline {
    start: Instant,
    interval: u64,
    points: Vec<TimelinePoint>,
    /// The point sends and answers were last counted in, with its time span, so a
    /// count in the same interval as the last needs no division.
    sending: Cursor,
    answering: Cursor,
}

#[derive(Clone, Copy)]
struct Cursor {
    index: usize,
    from: Instant,
    until: Instant,
}

impl Timeline {
    fn new(start: Instant, interval: Duration, duration: Duration) -> Self {
        let count = (duration.as_nanos() / interval.as_nanos()) as usize + 1;
        let points = (0..count)
            .map(|i| TimelinePoint {
                at_ms: backstop_core::time::millis(interval.saturating_mul(i as u32)),
                ..TimelinePoint::default()
            })
            .collect();
        // Validation keeps the interval at 1 ms or more and at most a year.
        let interval = backstop_core::time::nanos(interval).max(1);
        let cursor = Cursor {
            index: 0,
            from: start,
            until: start,
        };
        Self {
            start,
            interval,
            points,
            sending: cursor,
            answering: cursor,
        }
    }

    /// The point `at` counts in: `cursor`'s, as it nearly always is, without arithmetic.
    #[inline]
    fn locate(&self, cursor: Cursor, at: Instant) -> Cursor {
        if cursor.from <= at && at < cursor.until {
            return cursor;
        }
        self.relocate(at)
    }

    #[cold]
    fn relocate(&self, at: Instant) -> Cursor {
        let offset = backstop_core::time::nanos(at.saturating_duration_since(self.start));
        let last = self.points.len() - 1;
        let index = ((offset / self.interval) as usize).min(last);
        let from = self.start + Duration::from_nanos(index as u64 * self.interval);
        let until = if index == last {
            from + backstop_core::config::MAX_DURATION
        } else {
            from + Duration::from_nanos(self.interval)
        };
        Cursor { index, from, until }
    }

    #[inline]
    fn sent(&mut self, at: Instant) {
        self.sending = self.locate(self.sending, at);
        self.points[self.sending.index].sent += 1;
    }

    #[inline]
    fn completed(&mut self, at: Instant, class: OutcomeClass) {
        self.answering = self.locate(self.answering, at);
        let point = &mut self.points[self.answering.index];
        point.completed += 1;
        if class == OutcomeClass::Ok {
            point.ok += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_shared_reading_stamps_a_bounded_run_of_answers_then_is_read_afresh() {
        let start = Instant::now();
        let mut clock = BurstClock::new(start);
        tokio::time::advance(Duration::from_millis(1)).await;
        for _ in 0..CLOCK_REUSE {
            assert_eq!(clock.read(), start);
        }
        assert_eq!(clock.read(), start + Duration::from_millis(1));
    }
}
