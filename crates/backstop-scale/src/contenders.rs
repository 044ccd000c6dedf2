//! The policies the simulator compares, configured once so the example and the tests
//! measure the same thing.

use std::time::Duration;

use backstop_core::ConfigError;

use crate::burst::BurstHold;
use crate::config::{
    Behavior, BurstEnvelopeConfig, BurstHoldConfig, ForecastModel, HpaConfig, PredictiveConfig,
    QueueConfig, ScalingRules, ThresholdConfig,
};
use crate::decision::Policy;
use crate::envelope::BurstEnvelope;
use crate::hpa::TargetTracking;
use crate::predictive::PredictivePolicy;
use crate::queue::QueuePolicy;
use crate::sim::{FixedPolicy, ReplicaModel, metrics};
use crate::threshold::ThresholdPolicy;
use crate::trace::Trace;

/// One policy in a comparison, with the name its report carries.
pub struct Contender {
    /// The report's `contender=` name.
    pub name: &'static str,
    /// Whether it is one of the four dynamic policies (HPA, threshold, queue,
    /// predictive) rather than a variant or the fixed fleet.
    pub dynamic: bool,
    /// The policy, fresh (no history).
    pub policy: Box<dyn Policy>,
}

/// The standard line-up for `trace` on `model`: reactive HPA target tracking, the
/// threshold/step policy, KEDA-style queue scaling and the predictive policy (seasonal
/// naive over a day, leading by the start-up delay), each bounded at 1 and at 1.5 times the
/// peak's fleet; the HPA and queue policies again with the noise-aware band
/// (`*_noise_aware`); the HPA and predictive policies under the burst-aware scale-down
/// [`BurstHold`](crate::BurstHold) (`hpa_burst_hold`, `predictive_burst_hold`) and under the
/// burst-envelope headroom with the start-up-aware cap [`BurstEnvelope`](crate::BurstEnvelope)
/// (`hpa_envelope`, `predictive_envelope`: the predictive policy degrading to the envelope
/// while its forecasts are inaccurate); and a fixed fleet sized for the peak (`fixed_peak`).
///
/// ```
/// use backstop_scale::{ReplicaModel, Trace, contenders, simulate};
///
/// let trace = Trace::step_change(1, 200.0);
/// let model = ReplicaModel::default();
/// for mut contender in contenders(&model, &trace).unwrap() {
///     let report = simulate(&trace, &model, contender.name, contender.policy.as_mut()).unwrap();
///     assert!(report.replica_hours > 0.0);
/// }
/// ```
///
/// Fails only when `model` makes a policy's configuration invalid (a zero interval or
/// capacity).
pub fn contenders(model: &ReplicaModel, trace: &Trace) -> Result<Vec<Contender>, ConfigError> {
    let max = model.fleet_for(trace.peak() * 1.5);
    let hpa = HpaConfig::default().with_bounds(1, max);
    let predictive = PredictiveConfig {
        metric: metrics::REQUESTS.to_owned(),
        target_per_replica: model.requests_target(),
        model: ForecastModel::SeasonalNaive,
        interval: model.interval,
        season: Duration::from_secs(86_400),
        lead_time: model.startup_delay + model.interval * 2,
        max_error: 0.25,
        error_window: 240,
        reactive: hpa.clone(),
    };
    // Bounded below at 1 like the other policies, so the comparison measures the scaling rule
    // rather than the floor (from zero, every activation waits a whole start-up).
    let queue = QueueConfig::default()
        .with_metric(metrics::QUEUE)
        .with_bounds(1, max)
        .with_target(model.queue_target())
        .with_behavior(Behavior::default());
    // A percent step (KEDA/HPA `Percent` policy) so the step grows with the fleet; the
    // classic +1 per 300 s cooldown needs hours to cover a 4x load change. The queue metric
    // sizes a scale-up past saturation: utilization stops at 100 % however large the burst.
    let threshold = ThresholdConfig::default()
        .with_bounds(1, max)
        .with_step_percents(50.0, 20.0)
        .with_demand_metric(Some(metrics::QUEUE.to_owned()));
    // The hold replaces the scale-down stabilization window, with the HPA's 300 s as its floor.
    let unstabilized = hpa.clone().with_behavior(Behavior {
        scale_down: ScalingRules::default_down().with_window(Duration::ZERO),
        ..Behavior::default()
    });
    let hold = BurstHoldConfig::default();
    let envelope = BurstEnvelopeConfig::default()
        .with_metric(metrics::REQUESTS, model.requests_target())
        .with_backlog_metric(Some(metrics::QUEUE.to_owned()))
        .with_startup(model.startup_delay)
        .with_max_replicas(max);
    let predictive_held = PredictiveConfig {
        reactive: unstabilized.clone(),
        ..predictive.clone()
    };
    Ok(vec![
        contender("hpa", true, TargetTracking::new(hpa.clone())?),
        contender(
            "hpa_noise_aware",
            false,
            TargetTracking::new(hpa.clone().with_noise_tolerance(3.0))?,
        ),
        contender("threshold", true, ThresholdPolicy::new(threshold)?),
        contender("queue", true, QueuePolicy::new(queue.clone())?),
        contender(
            "queue_noise_aware",
            false,
            QueuePolicy::new(queue.with_noise_tolerance(3.0))?,
        ),
        contender(
            "predictive",
            true,
            PredictivePolicy::new(predictive.clone())?,
        ),
        contender(
            "hpa_burst_hold",
            false,
            BurstHold::new(TargetTracking::new(unstabilized)?, hold.clone())?,
        ),
        contender(
            "predictive_burst_hold",
            false,
            BurstHold::new(PredictivePolicy::new(predictive_held)?, hold)?,
        ),
        contender(
            "hpa_envelope",
            false,
            BurstEnvelope::new(TargetTracking::new(hpa)?, envelope.clone())?,
        ),
        contender(
            "predictive_envelope",
            false,
            BurstEnvelope::new(PredictivePolicy::new(predictive)?, envelope)?,
        ),
        contender(
            "fixed_peak",
            false,
            FixedPolicy {
                replicas: model.fleet_for(trace.peak()),
            },
        ),
    ])
}

/// `policy` in the line-up as `name`.
fn contender(name: &'static str, dynamic: bool, policy: impl Policy + 'static) -> Contender {
    Contender {
        name,
        dynamic,
        policy: Box::new(policy),
    }
}
