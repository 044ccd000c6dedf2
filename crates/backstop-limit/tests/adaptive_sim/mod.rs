//! A simulated backend and open-loop load for adaptive-limit tests and the
//! `adaptive_quality` bench, on paused Tokio time.
//!
//! The backend serves `capacity` calls at once, each taking `service` (± `noise`, uniform);
//! calls beyond `capacity` wait in its FIFO queue. So latency is `service` up to the knee
//! `capacity` and grows with the queue beyond it, like a model server with a fixed batch
//! of slots.
#![allow(dead_code, unreachable_pub)]

use backstop_core::TokioClock;
use backstop_limit::{AdaptiveLimiter, Bulkhead, PriorityClass};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// The simulated backend.
pub struct Backend {
    slots: Arc<Semaphore>,
    service: Duration,
    noise: f64,
    rng: Mutex<fastrand::Rng>,
}

impl Backend {
    pub fn new(capacity: usize, service: Duration, noise: f64) -> Arc<Self> {
        Arc::new(Self {
            slots: Arc::new(Semaphore::new(capacity)),
            service,
            noise,
            rng: Mutex::new(fastrand::Rng::with_seed(7)),
        })
    }

    /// One call: wait for a slot, then the (noisy) service time.
    pub async fn serve(&self) {
        let _slot = self.slots.acquire().await.expect("never closed");
        let factor = if self.noise > 0.0 {
            1.0 + self.noise * (2.0 * self.rng.lock().unwrap().f64() - 1.0)
        } else {
            1.0
        };
        tokio::time::sleep(self.service.mul_f64(factor)).await;
    }

    /// Changes the number of slots from `from` to `to` (shrinking takes effect as calls
    /// in service finish).
    pub fn resize(&self, from: usize, to: usize) {
        if to > from {
            self.slots.add_permits(to - from);
        } else if from > to {
            let slots = self.slots.clone();
            let remove = u32::try_from(from - to).unwrap();
            tokio::spawn(async move {
                slots.acquire_many_owned(remove).await.unwrap().forget();
            });
        }
    }
}

/// What stands between callers and the backend.
#[derive(Clone)]
pub enum Contender {
    /// A fixed bulkhead (waiting in its queue).
    Fixed(Bulkhead),
    /// The adaptive limiter (refusing at once).
    Adaptive(AdaptiveLimiter<TokioClock>),
}

/// One stretch of the run: how long, the arrival rate per class (calls per second), and
/// optionally the backend's new capacity at its start (old, new).
pub struct Phase {
    pub duration: Duration,
    pub rates: Vec<(PriorityClass, f64)>,
    pub resize: Option<(usize, usize)>,
}

/// Per class and phase: latencies of answered calls and refusals.
#[derive(Default, Clone)]
pub struct ClassReport {
    pub latencies: Vec<Duration>,
    pub refused: u64,
    pub arrived: u64,
}

impl ClassReport {
    pub fn quantile(&self, q: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        sorted.sort_unstable();
        sorted[((sorted.len() - 1) as f64 * q).round() as usize]
    }

    /// Answered calls over arrivals.
    pub fn success(&self) -> f64 {
        if self.arrived == 0 {
            1.0
        } else {
            self.latencies.len() as f64 / self.arrived as f64
        }
    }

    /// Answered calls per second within `slo`.
    pub fn goodput(&self, slo: Duration, over: Duration) -> f64 {
        self.latencies.iter().filter(|l| **l <= slo).count() as f64 / over.as_secs_f64()
    }
}

/// Everything a run measured.
pub struct Report {
    /// `phases[p][class]`.
    pub phases: Vec<Vec<ClassReport>>,
    /// The adaptive limit sampled at every `sample_every`, per phase.
    pub limits: Vec<Vec<u64>>,
    /// The baseline (ms) sampled likewise, per phase.
    pub baselines: Vec<Vec<f64>>,
}

/// Runs `phases` of open-loop arrivals (spread evenly over each millisecond) against
/// `contender` in front of `backend`, sampling the limit every `sample_every`.
pub async fn run(
    backend: Arc<Backend>,
    contender: Contender,
    classes: usize,
    phases: Vec<Phase>,
    sample_every: Duration,
) -> Report {
    let report = Arc::new(Mutex::new(Report {
        phases: vec![vec![ClassReport::default(); classes]; phases.len()],
        limits: vec![Vec::new(); phases.len()],
        baselines: vec![Vec::new(); phases.len()],
    }));
    let tick = Duration::from_millis(1);
    for (index, phase) in phases.iter().enumerate() {
        if let Some((from, to)) = phase.resize {
            backend.resize(from, to);
        }
        let mut credits = vec![0.0f64; phase.rates.len()];
        let ticks = (phase.duration.as_millis() / tick.as_millis()) as u64;
        let sample_ticks = (sample_every.as_millis() / tick.as_millis()).max(1) as u64;
        let mut next = Instant::now();
        for t in 0..ticks {
            for (slot, (class, rate)) in phase.rates.iter().enumerate() {
                credits[slot] += rate * tick.as_secs_f64();
                while credits[slot] >= 1.0 {
                    credits[slot] -= 1.0;
                    spawn_call(&backend, &contender, *class, index, &report);
                }
            }
            if let Contender::Adaptive(limiter) = &contender
                && t % sample_ticks == sample_ticks - 1
            {
                let stats = limiter.stats();
                let mut r = report.lock().unwrap();
                r.limits[index].push(stats.limit);
                r.baselines[index].push(stats.baseline.map_or(0.0, |b| b.as_secs_f64() * 1e3));
            }
            next += tick;
            tokio::time::sleep_until(next).await;
        }
    }
    // Let calls in flight finish (a fixed bulkhead's queue may hold more than this).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut r = report.lock().unwrap();
    Report {
        phases: std::mem::take(&mut r.phases),
        limits: std::mem::take(&mut r.limits),
        baselines: std::mem::take(&mut r.baselines),
    }
}

fn spawn_call(
    backend: &Arc<Backend>,
    contender: &Contender,
    class: PriorityClass,
    phase: usize,
    report: &Arc<Mutex<Report>>,
) {
    let (backend, contender, report) = (backend.clone(), contender.clone(), report.clone());
    if let Some(entry) = report.lock().unwrap().phases.get_mut(phase) {
        entry[class.index()].arrived += 1;
    }
    tokio::spawn(async move {
        let started = Instant::now();
        let answered = match &contender {
            Contender::Adaptive(limiter) => match limiter.try_acquire_as(class) {
                Ok(permit) => {
                    backend.serve().await;
                    permit.success();
                    true
                }
                Err(_) => false,
            },
            Contender::Fixed(bulkhead) => match bulkhead.acquire().await {
                Ok(_permit) => {
                    backend.serve().await;
                    true
                }
                Err(_) => false,
            },
        };
        let mut r = report.lock().unwrap();
        // Calls still queued when the run ended (a fixed bulkhead's) are not reported.
        let Some(entry) = r.phases.get_mut(phase).map(|p| &mut p[class.index()]) else {
            return;
        };
        if answered {
            entry.latencies.push(started.elapsed());
        } else {
            entry.refused += 1;
        }
    });
}
