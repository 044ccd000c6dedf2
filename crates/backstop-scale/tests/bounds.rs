//! Issue 19: settings the config accepted and then hung or aborted on are refused at
//! validation with the field named, and stay harmless even when validation is bypassed.

use std::time::{Duration, Instant};

use backstop_scale::forecast::{Forecaster, LinearTrend, MAX_TREND_WINDOW};
use backstop_scale::{
    Behavior, ForecastModel, HpaConfig, MAX_ERROR_WINDOW, MAX_LEAD_SAMPLES, MAX_LEAD_TIME,
    MetricSample, Observation, Policy, PredictiveConfig, PredictivePolicy, QueueConfig,
    QueuePolicy, Reading, Target, TargetTracking, ThresholdConfig, ThresholdPolicy,
};

const HUGE: Duration = Duration::from_secs(150_000_000_000_000 * 86_400);

/// The field validation names when it refuses `config`.
fn refused(config: PredictiveConfig) -> String {
    PredictivePolicy::new(config)
        .unwrap_err()
        .field()
        .to_owned()
}

#[test]
fn a_huge_lead_time_is_refused_and_clamped() {
    // `"150000000000000d"`: the old policy looped over every interval of the lead per decision.
    let config = PredictiveConfig {
        lead_time: HUGE,
        ..PredictiveConfig::default()
    };
    assert_eq!(config.lead_samples(), MAX_LEAD_SAMPLES);
    assert_eq!(refused(config), "lead_time");
    // Just above the bound, and a lead within the time bound but too many intervals.
    let over = PredictiveConfig {
        lead_time: MAX_LEAD_TIME + Duration::from_secs(1),
        ..PredictiveConfig::default()
    };
    assert_eq!(refused(over), "lead_time");
    let fine = PredictiveConfig {
        lead_time: MAX_LEAD_TIME,
        interval: Duration::from_millis(100),
        ..PredictiveConfig::default()
    };
    assert_eq!(refused(fine), "lead_time");
}

#[test]
fn the_largest_lead_decides_promptly() {
    let config = PredictiveConfig {
        model: ForecastModel::LinearTrend {
            window: MAX_TREND_WINDOW,
        },
        interval: Duration::from_secs(1),
        lead_time: MAX_LEAD_TIME,
        ..PredictiveConfig::default()
    };
    let mut policy = PredictivePolicy::new(config).unwrap();
    let started = Instant::now();
    for t in 0..200u64 {
        let obs = Observation::new(Duration::from_secs(t), 2, 2).metric(MetricSample::new(
            "requests_per_second",
            Target::AverageValue(10.0),
            Reading::Total(20.0 + t as f64),
        ));
        policy.decide(&obs);
    }
    // Generous: the point is that it returns, not a benchmark.
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn a_huge_linear_trend_window_is_refused_and_never_allocated() {
    let config = PredictiveConfig {
        model: ForecastModel::LinearTrend { window: 1 << 40 },
        ..PredictiveConfig::default()
    };
    assert_eq!(refused(config), "model.window");
    // Built directly (no validation): clamped, and memory grows with samples, not the setting.
    let mut trend = LinearTrend::new(1 << 40);
    for i in 0..10 {
        trend.observe(f64::from(i));
    }
    assert!((trend.forecast(1).unwrap() - 10.0).abs() < 1e-9);
}

#[test]
fn a_huge_error_window_is_refused() {
    let config = PredictiveConfig {
        error_window: MAX_ERROR_WINDOW + 1,
        ..PredictiveConfig::default()
    };
    assert_eq!(refused(config), "error_window");
}

#[test]
fn huge_cooldowns_are_refused() {
    let behavior = Behavior {
        cooldown: HUGE,
        ..Behavior::default()
    };
    let error = TargetTracking::new(HpaConfig::default().with_behavior(behavior)).unwrap_err();
    assert_eq!(error.field(), "behavior.cooldown");
    let error = ThresholdPolicy::new(ThresholdConfig::default().with_cooldown(HUGE)).unwrap_err();
    assert_eq!(error.field(), "cooldown");
    let queue = QueueConfig {
        cooldown: HUGE,
        ..QueueConfig::default()
    };
    assert_eq!(QueuePolicy::new(queue).unwrap_err().field(), "cooldown");
}

#[test]
fn the_simulator_refuses_huge_durations_and_holds_a_runaway_policy() {
    use backstop_scale::{FixedPolicy, MAX_SIM_REPLICAS, ReplicaModel, Trace, simulate};
    let trace = Trace::new("flat", Duration::from_secs(60), vec![10.0; 3]);
    let model = ReplicaModel {
        startup_delay: HUGE,
        ..ReplicaModel::default()
    };
    let error = simulate(&trace, &model, "x", &mut FixedPolicy { replicas: 2 }).unwrap_err();
    assert_eq!(error.field(), "startup_delay");
    // A policy asking for u32::MAX replicas is held to the bound instead of allocating 4 G
    // warming entries.
    let report = simulate(
        &trace,
        &ReplicaModel::default(),
        "runaway",
        &mut FixedPolicy { replicas: u32::MAX },
    )
    .unwrap();
    assert_eq!(report.peak_replicas, MAX_SIM_REPLICAS);
}
