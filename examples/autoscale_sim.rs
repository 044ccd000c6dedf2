//! Replays every built-in trace against each policy and prints one line per run:
//! `autoscale workload=<w> contender=<policy> slo_violation_min=<x> replica_hours=<y> actions=<n> …`.
//!
//! Run with `cargo run --release --example autoscale_sim`.

use std::time::Duration;

use backstop::scale::{
    Behavior, FixedPolicy, ForecastModel, HpaConfig, Policy, PredictiveConfig, PredictivePolicy,
    QueueConfig, QueuePolicy, ReplicaModel, TargetTracking, ThresholdConfig, ThresholdPolicy,
    Trace, metrics, simulate,
};

const DAYS: u32 = 4;
const PEAK: f64 = 400.0;
const SEED: u64 = 42;

fn contenders(model: &ReplicaModel, trace: &Trace) -> Vec<(&'static str, Box<dyn Policy>)> {
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
    let queue = QueueConfig::default()
        .with_metric(metrics::QUEUE)
        .with_bounds(0, max)
        .with_target(model.queue_target())
        .with_behavior(Behavior::default());
    // A percent step (KEDA/HPA `Percent` policy) so the step grows with the fleet; the
    // classic +1 per 300 s cooldown needs hours to cover a 4x load change.
    let threshold = ThresholdConfig::default()
        .with_bounds(1, max)
        .with_step_percents(50.0, 20.0);
    vec![
        (
            "hpa",
            Box::new(TargetTracking::new(hpa.clone()).expect("valid hpa config")),
        ),
        (
            // The `*_noise_aware` contenders are not among the four policies: the same
            // policy with its tolerance band widened to 3σ of the metric's measured noise.
            "hpa_noise_aware",
            Box::new(
                TargetTracking::new(hpa.clone().with_noise_tolerance(3.0))
                    .expect("valid hpa config"),
            ),
        ),
        (
            "threshold",
            Box::new(ThresholdPolicy::new(threshold).expect("valid threshold config")),
        ),
        (
            "queue",
            Box::new(QueuePolicy::new(queue.clone()).expect("valid queue config")),
        ),
        (
            "queue_noise_aware",
            Box::new(
                QueuePolicy::new(queue.clone().with_noise_tolerance(3.0))
                    .expect("valid queue config"),
            ),
        ),
        (
            "predictive",
            Box::new(PredictivePolicy::new(predictive).expect("valid predictive config")),
        ),
        (
            "fixed_peak",
            Box::new(FixedPolicy {
                replicas: model.fleet_for(trace.peak()),
            }),
        ),
    ]
}

fn main() {
    for trace in Trace::builtins(DAYS, PEAK, SEED) {
        // Every contender starts warm, sized for the trace's first minute.
        let model = ReplicaModel {
            initial_replicas: ReplicaModel::default().fleet_for(trace.rates[0]),
            ..ReplicaModel::default()
        };
        for (name, mut policy) in contenders(&model, &trace) {
            let report = simulate(&trace, &model, name, policy.as_mut()).expect("valid model");
            println!("{}", report.line());
        }
    }
}
