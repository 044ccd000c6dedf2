//! Predictive scaling: scales ahead of a learned pattern, stays out when forecasts are poor.

use std::time::Duration;

use backstop_scale::{
    Behavior, ForecastModel, HpaConfig, MetricSample, Observation, Policy, PredictiveConfig,
    PredictivePolicy, Reading, Reason, ScalingRules, Target,
};

const INTERVAL: u64 = 15;

fn config(model: ForecastModel) -> PredictiveConfig {
    PredictiveConfig {
        metric: "rps".into(),
        target_per_replica: 10.0,
        model,
        interval: Duration::from_secs(INTERVAL),
        season: Duration::from_secs(INTERVAL * 40),
        lead_time: Duration::from_secs(INTERVAL * 4),
        max_error: 0.2,
        error_window: 20,
        // Immediate scale-down, so each cycle starts low and the lead is visible.
        reactive: HpaConfig::default()
            .with_bounds(1, 100)
            .with_behavior(Behavior {
                scale_down: ScalingRules::default_down().with_window(Duration::ZERO),
                ..Behavior::default()
            }),
    }
}

/// A square wave: 20 rps, with 200 rps in samples 20..30 of every 40.
fn demand(step: u64) -> f64 {
    if (20..30).contains(&(step % 40)) {
        200.0
    } else {
        20.0
    }
}

fn run(
    policy: &mut PredictivePolicy,
    steps: u64,
    load: impl Fn(u64) -> f64,
) -> Vec<(u64, u32, Reason)> {
    let mut current = 2;
    let mut out = vec![];
    for step in 0..steps {
        let obs = Observation::new(Duration::from_secs(step * INTERVAL), current, current).metric(
            MetricSample::new(
                "rps",
                Target::AverageValue(10.0),
                Reading::Total(load(step)),
            ),
        );
        let d = policy.decide(&obs);
        out.push((step, d.desired, d.reason));
        current = d.desired;
    }
    out
}

#[test]
fn seasonal_forecast_scales_ahead_of_a_recurring_burst() {
    for model in [
        ForecastModel::SeasonalNaive,
        ForecastModel::HoltWinters {
            alpha: 0.5,
            beta: 0.0,
            gamma: 0.5,
        },
    ] {
        let mut policy = PredictivePolicy::new(config(model)).unwrap();
        let trace = run(&mut policy, 40 * 5, demand);
        // In the last cycle, capacity for 200 rps (20 replicas) is requested before the burst.
        let last = &trace[160..200];
        let first_full = last.iter().find(|(_, r, _)| *r >= 20).unwrap();
        // Exactly the lead time (4 intervals) before the burst at 20.
        assert_eq!(first_full.0 % 40, 16, "{model:?}");
        assert_eq!(first_full.2, Reason::Predicted);
        // And back down once the forecast passes.
        assert!(last[35].1 <= 3, "{model:?}: {:?}", last[35]);
        let stats = policy.stats();
        assert!(stats.confident && stats.predicted > 0, "{stats:?}");
        // What a burst envelope around it reads to stand down.
        assert!(policy.forecast_trusted());
    }
}

#[test]
fn unpredictable_load_leaves_the_reactive_policy_in_charge() {
    let mut rng = fastrand_like(7);
    let loads: Vec<f64> = (0..400).map(|_| 10.0 + 190.0 * rng()).collect();
    let mut policy = PredictivePolicy::new(config(ForecastModel::SeasonalNaive)).unwrap();
    let trace = run(&mut policy, 400, |s| loads[s as usize]);
    assert!(trace.iter().all(|(_, _, r)| *r != Reason::Predicted));
    let stats = policy.stats();
    assert!(!stats.confident && !policy.forecast_trusted());
    assert!(stats.forecast_error.unwrap() > 0.2);
}

#[test]
fn linear_trend_scales_ahead_of_a_ramp() {
    let mut policy =
        PredictivePolicy::new(config(ForecastModel::LinearTrend { window: 10 })).unwrap();
    let trace = run(&mut policy, 100, |s| 10.0 + 5.0 * s as f64);
    // Demand at step 84 is 430 rps → 43 replicas, already running at step 80.
    assert!(trace[80].1 >= 43, "{:?}", trace[80]);
    assert!(trace.iter().filter(|t| t.2 == Reason::Predicted).count() > 10);
}

/// A tiny deterministic generator, so the test needs no extra dependency.
fn fastrand_like(seed: u64) -> impl FnMut() -> f64 {
    let mut state = seed;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 10_000) as f64 / 10_000.0
    }
}
