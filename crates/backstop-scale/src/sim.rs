//! A discrete-time simulator that replays a trace against a policy and a replica model.

use std::collections::VecDeque;
use std::time::Duration;

use backstop_core::config::{ConfigError, Validate, ensure, ensure_duration};
use serde::{Deserialize, Serialize};

use crate::config::{ensure_nonzero, ensure_positive};
use crate::decision::{Decision, Policy, Reason};
use crate::observation::{MetricSample, Observation, Reading, Target};
use crate::trace::Trace;

/// Names of the metrics the simulator puts in each observation.
pub mod metrics {
    /// Average CPU-like utilization of ready replicas, percent ([`Target::Utilization`](crate::Target)).
    pub const CPU: &str = "cpu";
    /// Total arrival rate ([`Target::AverageValue`](crate::Target) per replica).
    pub const REQUESTS: &str = "requests_per_second";
    /// Waiting plus in-service requests ([`Target::AverageValue`](crate::Target) per replica).
    pub const QUEUE: &str = "queue_length";
}

/// The most replicas the simulator runs: a policy asking for more is held to this, so a
/// runaway decision cannot allocate a warming queue without bound.
pub const MAX_SIM_REPLICAS: u32 = 1 << 20;

/// The simulated replicas and the SLO.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReplicaModel {
    /// Requests per second one ready replica serves.
    pub capacity_per_replica: f64,
    /// Seconds one request occupies a replica (for the in-flight part of the queue metric).
    pub service_time: f64,
    /// Time from requesting a replica until it serves.
    #[serde(with = "backstop_core::duration::human")]
    pub startup_delay: Duration,
    /// Policy evaluation interval (the HPA's sync period).
    #[serde(with = "backstop_core::duration::human")]
    pub interval: Duration,
    /// An interval violates the SLO when the expected queueing delay exceeds this.
    #[serde(with = "backstop_core::duration::human")]
    pub slo_wait: Duration,
    /// Fraction of capacity the metric targets advertise (0.7: aim for 70 % busy).
    pub target_utilization: f64,
    /// Replicas at the start (already warm).
    pub initial_replicas: u32,
    /// A change in the opposite direction within this long after the previous one is a flap.
    #[serde(with = "backstop_core::duration::human")]
    pub flap_window: Duration,
}

impl Default for ReplicaModel {
    fn default() -> Self {
        Self {
            capacity_per_replica: 10.0,
            service_time: 1.0,
            startup_delay: Duration::from_secs(180),
            interval: Duration::from_secs(15),
            slo_wait: Duration::from_secs(2),
            target_utilization: 0.7,
            initial_replicas: 2,
            flap_window: Duration::from_secs(600),
        }
    }
}

impl Validate for ReplicaModel {
    fn validate(&self) -> Result<(), ConfigError> {
        ensure_positive("capacity_per_replica", self.capacity_per_replica)?;
        ensure_positive("service_time", self.service_time)?;
        ensure_nonzero("interval", self.interval)?;
        ensure_duration("interval", self.interval)?;
        ensure_duration("startup_delay", self.startup_delay)?;
        ensure_duration("slo_wait", self.slo_wait)?;
        ensure_duration("flap_window", self.flap_window)?;
        ensure(
            self.initial_replicas <= MAX_SIM_REPLICAS,
            "initial_replicas",
            format!("must be at most {MAX_SIM_REPLICAS}"),
        )?;
        ensure(
            self.target_utilization > 0.0 && self.target_utilization <= 1.0,
            "target_utilization",
            "must be in (0, 1]",
        )
    }
}

impl ReplicaModel {
    /// The `cpu` utilization target, percent.
    pub fn cpu_target(&self) -> f64 {
        self.target_utilization * 100.0
    }

    /// The `requests_per_second` target per replica.
    pub fn requests_target(&self) -> f64 {
        self.target_utilization * self.capacity_per_replica
    }

    /// The `queue_length` target per replica.
    pub fn queue_target(&self) -> f64 {
        self.requests_target() * self.service_time
    }

    /// Replicas a fixed fleet needs for `peak` requests per second at the target utilization.
    pub fn fleet_for(&self, peak: f64) -> u32 {
        (peak / self.requests_target()).ceil().max(1.0) as u32
    }
}

/// A fixed fleet: the baseline every dynamic policy is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedPolicy {
    /// Replicas to run.
    pub replicas: u32,
}

impl Policy for FixedPolicy {
    fn commit(&mut self, _obs: &Observation, _decision: &Decision) {}

    fn apply_failed(&mut self, _obs: &Observation, _decision: &Decision) {}

    fn recommend(&self, obs: &Observation) -> Decision {
        let reason = if self.replicas == obs.current_replicas {
            Reason::Steady
        } else {
            Reason::BelowMin
        };
        Decision {
            desired: self.replicas,
            ..Decision::hold(obs.at, obs.current_replicas, reason)
        }
    }
}

/// What one simulation run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimReport {
    /// The trace's name.
    pub workload: String,
    /// The policy's name.
    pub contender: String,
    /// Minutes in which the expected queueing delay exceeded the SLO.
    pub slo_violation_min: f64,
    /// Replica-hours paid for (warming replicas included).
    pub replica_hours: f64,
    /// Decisions that changed the replica count.
    pub actions: u64,
    /// Actions that reversed the previous one within the flap window.
    pub flaps: u64,
    /// Largest backlog, requests.
    pub peak_backlog: f64,
    /// Most replicas at once.
    pub peak_replicas: u32,
    /// The longest unbroken stretch of SLO violation, minutes: the worst time to recover from
    /// a burst.
    pub longest_violation_min: f64,
}

impl SimReport {
    /// The report as `autoscale workload=… contender=… slo_violation_min=… …`.
    pub fn line(&self) -> String {
        format!(
            "autoscale workload={} contender={} slo_violation_min={:.2} replica_hours={:.2} actions={} flaps={} peak_backlog={:.0} peak_replicas={} longest_violation_min={:.2}",
            self.workload,
            self.contender,
            self.slo_violation_min,
            self.replica_hours,
            self.actions,
            self.flaps,
            self.peak_backlog,
            self.peak_replicas,
            self.longest_violation_min
        )
    }
}

/// Replays `trace` against `policy` on the replica model.
///
/// Each interval: warming replicas whose start-up delay has passed become ready; arrivals join
/// the backlog and ready replicas drain it; the policy sees the metrics listed in [`metrics`];
/// new replicas start warming, and removals take warming replicas first.
///
/// ```
/// use backstop_scale::{FixedPolicy, ReplicaModel, Trace, simulate};
///
/// let trace = Trace::step_change(1, 100.0);
/// let fleet = ReplicaModel::default().fleet_for(trace.peak());
/// let model = ReplicaModel { initial_replicas: fleet, ..ReplicaModel::default() };
/// let report = simulate(&trace, &model, "fixed", &mut FixedPolicy { replicas: fleet }).unwrap();
/// assert_eq!(report.slo_violation_min, 0.0);
/// ```
pub fn simulate<P: Policy + ?Sized>(
    trace: &Trace,
    model: &ReplicaModel,
    contender: &str,
    policy: &mut P,
) -> Result<SimReport, ConfigError> {
    model.validate()?;
    let dt = model.interval.as_secs_f64();
    let mut ready = model.initial_replicas;
    // Times at which warming replicas become ready, oldest first.
    let mut warming: VecDeque<Duration> = VecDeque::new();
    let mut backlog = 0.0f64;
    let mut report = SimReport {
        workload: trace.name.clone(),
        contender: contender.to_owned(),
        slo_violation_min: 0.0,
        replica_hours: 0.0,
        actions: 0,
        flaps: 0,
        peak_backlog: 0.0,
        peak_replicas: ready,
        longest_violation_min: 0.0,
    };
    let mut violating_for = 0.0f64;
    let mut last_action: Option<(Duration, bool)> = None;
    let mut at = Duration::ZERO;
    let end = trace.duration();
    while at < end {
        while warming.front().is_some_and(|t| *t <= at) {
            warming.pop_front();
            ready += 1;
        }
        let current = ready + warming.len() as u32;
        let rate = trace.rate_at(at);
        let capacity = f64::from(ready) * model.capacity_per_replica;
        let offered = backlog + rate * dt;
        let served = offered.min(capacity * dt);
        backlog = offered - served;
        let wait = if capacity > 0.0 {
            backlog / capacity
        } else if backlog > 0.0 {
            f64::INFINITY
        } else {
            0.0
        };
        if wait > model.slo_wait.as_secs_f64() {
            report.slo_violation_min += dt / 60.0;
            violating_for += dt / 60.0;
            report.longest_violation_min = report.longest_violation_min.max(violating_for);
        } else {
            violating_for = 0.0;
        }
        report.peak_backlog = report.peak_backlog.max(backlog);
        report.replica_hours += f64::from(current) * dt / 3600.0;

        let cpu = if ready > 0 {
            Reading::Average(served / dt / capacity * 100.0)
        } else {
            Reading::Failed("no ready replica".to_owned())
        };
        let in_flight = served / dt * model.service_time;
        let obs = Observation::new(at, current, ready)
            .metric(MetricSample::new(
                metrics::CPU,
                Target::Utilization(model.cpu_target()),
                cpu,
            ))
            .metric(MetricSample::new(
                metrics::REQUESTS,
                Target::AverageValue(model.requests_target()),
                Reading::Total(rate),
            ))
            .metric(MetricSample::new(
                metrics::QUEUE,
                Target::AverageValue(model.queue_target()),
                Reading::Total(backlog + in_flight),
            ));
        let mut decision = policy.decide(&obs);
        decision.desired = decision.desired.min(MAX_SIM_REPLICAS);
        if decision.desired != current {
            let up = decision.desired > current;
            report.actions += 1;
            if let Some((t, was_up)) = last_action
                && was_up != up
                && at.saturating_sub(t) <= model.flap_window
            {
                report.flaps += 1;
            }
            last_action = Some((at, up));
            if up {
                for _ in current..decision.desired {
                    warming.push_back(at.saturating_add(model.startup_delay));
                }
            } else {
                let mut remove = current - decision.desired;
                while remove > 0 && warming.pop_back().is_some() {
                    remove -= 1;
                }
                ready -= remove.min(ready);
            }
        }
        report.peak_replicas = report.peak_replicas.max(ready + warming.len() as u32);
        at += model.interval;
    }
    Ok(report)
}
