//! The generator: sends a plan's traffic to a service and records what happened.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use backstop_core::config::Validate;
use backstop_core::{LoadSignal, Service, StackError, contain, contain_future};
use futures::FutureExt as _;
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use tokio::time::Instant;

use crate::LoadTestError;
use crate::plan::{Arrivals, LoadMode, LoadPlan};
use crate::recorder::{OutcomeClass, StageRecorder};
use crate::report::{LoadReport, SignalReading, TimelinePoint};

/// Arrivals handled back to back before the driver yields to the runtime, so a generator
/// running behind schedule cannot starve other tasks.
const BURST: u32 = 1024;
/// Longest integration step of a time-varying rate.
const RATE_STEP: f64 = 0.010;

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

/// Runs a [`LoadPlan`] against any Backstop [`Service`].
///
/// The service's futures are polled by the generator's own task (no spawn per request), so
/// the generator adds as little as possible to what it measures; a service that needs
/// parallel CPU work spawns it itself.
pub struct LoadTest {
    plan: LoadPlan,
    signals: Vec<(String, Arc<dyn LoadSignal>)>,
    progress: Option<Box<ProgressFn>>,
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
            progress: None,
        })
    }

    /// Also reads `signal` every sample interval (a pool, a batcher, a bulkhead).
    pub fn signal(mut self, name: impl Into<String>, signal: impl LoadSignal + 'static) -> Self {
        self.signals.push((name.into(), Arc::new(signal)));
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
        let stage_ends: Vec<Duration> = plan
            .stages
            .iter()
            .scan(Duration::ZERO, |end, stage| {
                *end = end.saturating_add(stage.duration);
                Some(*end)
            })
            .collect();
        let end = start + plan.duration();
        let drain_deadline = end + backstop_core::time::clamp(plan.drain_timeout);
        let stage_at = |at: Instant| {
            let offset = at.saturating_duration_since(start);
            stage_ends
                .partition_point(|end| *end <= offset)
                .min(stage_ends.len() - 1)
        };
        let mut recorders: Vec<StageRecorder> = (0..plan.stages.len() as u64)
            .map(|i| StageRecorder::new(plan.samples_per_stage, plan.seed ^ (i + 1)))
            .collect();
        let mut timeline = Timeline::new(start, plan.sample_interval, plan.duration());
        let mut readings = Vec::new();
        let mut schedule = match plan.mode {
            LoadMode::OpenLoop { arrivals } => Some(Schedule::new(plan, arrivals, start)),
            LoadMode::ClosedLoop { .. } => None,
        };
        let (users, think) = match plan.mode {
            LoadMode::ClosedLoop { users, think } => (users, think),
            LoadMode::OpenLoop { .. } => (0, Duration::ZERO),
        };

        let mut in_flight = FuturesUnordered::new();
        let mut issued: u64 = 0;
        let mut next_arrival = schedule.as_mut().and_then(Schedule::next);
        let mut next_tick = start + plan.sample_interval;
        let mut finished: Option<Done> = None;
        let sleep = tokio::time::sleep_until(start);
        tokio::pin!(sleep);

        let mut build = |issued: &mut u64| {
            let i = *issued;
            *issued += 1;
            contain("backstop_load::request", || request(i)).map_err(LoadTestError::RequestPanicked)
        };
        // Closed loop: every user sends its first request at the start.
        if users > 0 && !plan.duration().is_zero() {
            for _ in 0..users {
                let req = build(&mut issued)?;
                recorders[0].sent += 1;
                recorders[0].in_flight += 1;
                timeline.sent(start);
                in_flight.push(one_call(service, req, None, Duration::ZERO, plan.timeout));
            }
        }

        loop {
            let mut now = Instant::now();
            // Send every arrival that is due, back to back.
            let mut burst = 0;
            while let Some((at, stage)) = next_arrival {
                if at > now {
                    break;
                }
                timeline.sent(at);
                let recorder = &mut recorders[stage];
                if in_flight.len() as u64 >= plan.max_in_flight {
                    recorder.dropped += 1;
                } else {
                    let req = build(&mut issued)?;
                    recorder.sent += 1;
                    recorder.in_flight += 1;
                    in_flight.push(one_call(
                        service,
                        req,
                        Some(at),
                        Duration::ZERO,
                        plan.timeout,
                    ));
                }
                next_arrival = schedule.as_mut().and_then(Schedule::next);
                burst += 1;
                if burst == BURST {
                    break;
                }
            }
            // Record what finished: the request the select below woke for, then whatever
            // else is already done, without waiting.
            loop {
                let done = match finished.take() {
                    Some(done) => done,
                    None => match in_flight.next().now_or_never() {
                        Some(Some(done)) => done,
                        _ => break,
                    },
                };
                let stage = stage_at(done.from);
                let now = Instant::now();
                timeline.completed(now, done.class);
                recorders[stage].record(done.class, done.latency);
                if users > 0 && now < end {
                    // Closed loop: the user sends again (after its think time).
                    let req = build(&mut issued)?;
                    let next_stage = stage_at(now);
                    recorders[next_stage].sent += 1;
                    recorders[next_stage].in_flight += 1;
                    timeline.sent(now);
                    in_flight.push(one_call(service, req, None, think, plan.timeout));
                }
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
                }
                if let Some(progress) = &self.progress {
                    progress(&LoadProgress {
                        elapsed: now.saturating_duration_since(start),
                        stage: &plan.stages[stage_at(now)].name,
                        sent: recorders.iter().map(|r| r.sent).sum(),
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
            let wake = next_arrival
                .map_or(drain_deadline, |(at, _)| at)
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

        let stages = recorders
            .into_iter()
            .zip(&plan.stages)
            .map(|(recorder, stage)| recorder.finish(stage, &plan.mode))
            .collect();
        Ok(LoadReport {
            mode: plan.mode.label(),
            stages,
            timeline: timeline.points,
            signals: readings,
        })
    }
}

/// One finished request.
struct Done {
    from: Instant,
    latency: Duration,
    class: OutcomeClass,
}

/// Sends one request. Latency counts from `scheduled` when given (open loop: the time the
/// request should have gone out, so waiting behind a stalled service is measured), else
/// from the actual send after `think` (closed loop).
async fn one_call<S, Req>(
    service: &S,
    req: Req,
    scheduled: Option<Instant>,
    think: Duration,
    timeout: Option<Duration>,
) -> Done
where
    S: Service<Req>,
    S::Error: StackError,
{
    if !think.is_zero() {
        tokio::time::sleep(think).await;
    }
    let from = scheduled.unwrap_or_else(Instant::now);
    let call = contain_future("backstop_load::call", service.call(req));
    let class = match timeout {
        Some(timeout) => {
            match tokio::time::timeout_at(from + backstop_core::time::clamp(timeout), call).await {
                Ok(result) => OutcomeClass::of_contained(&result),
                Err(_) => OutcomeClass::Timeout,
            }
        }
        None => OutcomeClass::of_contained(&call.await),
    };
    Done {
        from,
        latency: Instant::now().saturating_duration_since(from),
        class,
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
            t: 0.0,
            need: 0.0,
        };
        // Constant arrivals sit mid-slot, so a stage of n slots sends exactly n requests.
        schedule.need = match arrivals {
            Arrivals::Constant => 0.5,
            _ => schedule.draw(),
        };
        schedule
    }

    fn draw(&mut self) -> f64 {
        match self.arrivals {
            Arrivals::Constant => 1.0,
            // 1 - U is in (0, 1], so the logarithm is finite.
            _ => -(1.0 - self.rng.f64()).ln(),
        }
    }

    fn next(&mut self) -> Option<(Instant, usize)> {
        loop {
            let stage = self.plan.stages.get(self.stage)?;
            let length = stage.duration.as_secs_f64();
            let stage_end = self.stage_start + length;
            if self.t >= stage_end {
                self.stage += 1;
                self.stage_start = stage_end;
                continue;
            }
            let step = (stage_end - self.t).min(RATE_STEP);
            let midpoint = Duration::from_secs_f64(self.t - self.stage_start + step / 2.0);
            let rate = stage.pattern.rate_at(midpoint, stage.duration);
            if rate > 0.0 && rate * step >= self.need {
                self.t += self.need / rate;
                self.need = self.draw();
                let at = self.start + Duration::from_secs_f64(self.t);
                return Some((at, self.stage));
            }
            self.need -= rate.max(0.0) * step;
            self.t += step;
        }
    }
}

/// Requests per sample interval; the last point also takes everything after the plan.
struct Timeline {
    start: Instant,
    interval: Duration,
    points: Vec<TimelinePoint>,
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
        Self {
            start,
            interval,
            points,
        }
    }

    fn point(&mut self, at: Instant) -> &mut TimelinePoint {
        let index = at.saturating_duration_since(self.start).as_nanos() / self.interval.as_nanos();
        let last = self.points.len() - 1;
        &mut self.points[(index as usize).min(last)]
    }

    fn sent(&mut self, at: Instant) {
        self.point(at).sent += 1;
    }

    fn completed(&mut self, at: Instant, class: OutcomeClass) {
        let point = self.point(at);
        point.completed += 1;
        if class == OutcomeClass::Ok {
            point.ok += 1;
        }
    }
}
