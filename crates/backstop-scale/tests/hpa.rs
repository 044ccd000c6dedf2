//! The HPA documentation's worked examples and rule-by-rule cases, with exact numbers.

use std::time::Duration;

mod support;

use support::{raw, secs};

use backstop_scale::{
    Behavior, HpaConfig, MetricSample, Observation, Policy, RatePolicy, Reading, Reason,
    ReplicaReading, ScalingRules, Select, Target, TargetTracking,
};

/// No stabilization and no rate limit: isolates the replica calculator.
fn raw_hpa(min: u32, max: u32) -> TargetTracking {
    raw(HpaConfig::default().with_bounds(min, max))
}

/// 1 to 100 replicas under `behavior`.
fn hpa_with(behavior: Behavior) -> TargetTracking {
    TargetTracking::new(
        HpaConfig::default()
            .with_bounds(1, 100)
            .with_behavior(behavior),
    )
    .unwrap()
}

fn avg(name: &str, target: f64, value: f64) -> MetricSample {
    MetricSample::new(name, Target::AverageValue(target), Reading::Average(value))
}

/// A metric `m` read per pod: `ready` pods reporting `value`, `missing` ready pods reporting
/// nothing, and `warming` not-ready pods reporting 0.
fn per_pod(
    target: Target,
    value: f64,
    ready: usize,
    missing: usize,
    warming: usize,
) -> MetricSample {
    let pods = std::iter::repeat_n(ReplicaReading::new(true, Some(value)), ready)
        .chain(std::iter::repeat_n(
            ReplicaReading::new(true, None),
            missing,
        ))
        .chain(std::iter::repeat_n(
            ReplicaReading::new(false, Some(0.0)),
            warming,
        ));
    MetricSample::new("m", target, Reading::PerReplica(pods.collect()))
}

/// The desired count and why, for `current` replicas reading `metrics` at `at` seconds.
fn decide_why(
    hpa: &mut TargetTracking,
    at: u64,
    current: u32,
    metrics: Vec<MetricSample>,
) -> (u32, Reason) {
    let mut obs = Observation::new(secs(at), current, current);
    obs.metrics = metrics;
    let decision = hpa.decide(&obs);
    (decision.desired, decision.reason)
}

/// The desired count for `current` replicas reading `metrics` at `at` seconds.
fn decide(hpa: &mut TargetTracking, at: u64, current: u32, metrics: Vec<MetricSample>) -> u32 {
    decide_why(hpa, at, current, metrics).0
}

#[test]
fn docs_example_200m_against_100m_doubles_and_50m_halves() {
    let mut hpa = raw_hpa(1, 100);
    assert_eq!(decide(&mut hpa, 0, 5, vec![avg("m", 100.0, 200.0)]), 10);
    assert_eq!(decide(&mut hpa, 15, 10, vec![avg("m", 100.0, 50.0)]), 5);
}

#[test]
fn tolerance_band_of_ten_percent() {
    let mut hpa = raw_hpa(1, 100);
    // 1.09 and 0.91 are within the default tolerance: no change.
    assert_eq!(decide(&mut hpa, 0, 10, vec![avg("m", 100.0, 109.0)]), 10);
    assert_eq!(decide(&mut hpa, 15, 10, vec![avg("m", 100.0, 91.0)]), 10);
    // 1.11 is outside: ceil(10 × 1.11) = 12.
    assert_eq!(decide(&mut hpa, 30, 10, vec![avg("m", 100.0, 111.0)]), 12);
    // 0.85 is outside: ceil(10 × 0.85) = 9.
    assert_eq!(decide(&mut hpa, 45, 12, vec![avg("m", 100.0, 75.0)]), 9);
}

#[test]
fn utilization_uses_the_same_formula() {
    let mut hpa = raw_hpa(1, 100);
    let cpu = MetricSample::new("cpu", Target::Utilization(50.0), Reading::Average(90.0));
    assert_eq!(decide(&mut hpa, 0, 4, vec![cpu]), 8);
}

/// Steps of a raw HPA on a fleet of 4 read per pod: each `(seconds, value, ready, missing,
/// warming, expected)`, see [`per_pod`].
fn four_pods(target: Target, steps: &[(u64, f64, usize, usize, usize, u32)]) {
    let mut hpa = raw_hpa(1, 100);
    for &(at, value, ready, missing, warming, expected) in steps {
        let metric = per_pod(target, value, ready, missing, warming);
        assert_eq!(decide(&mut hpa, at, 4, vec![metric]), expected, "at {at}s");
    }
}

#[test]
fn missing_metrics_count_as_target_on_scale_down_and_zero_on_scale_up() {
    four_pods(
        Target::AverageValue(100.0),
        &[
            // Three replicas at 50 against 100, one missing: (150 + 100) / 400 = 0.625 →
            // ceil(2.5) = 3.
            (0, 50.0, 3, 1, 0, 3),
            // Three at 200, one missing: 600 / 400 = 1.5 → 6 (not ceil(2 × 3) = 6 by luck:
            // see below).
            (15, 200.0, 3, 1, 0, 6),
            // Two at 300, two missing: without the rule ceil(3 × 2) = 6; with it 600 / 400 =
            // 1.5 → 6. Two at 130 and two missing: 260 / 400 = 0.65 reverses the direction →
            // no change.
            (30, 130.0, 2, 2, 0, 4),
        ],
    );
}

#[test]
fn not_ready_replicas_count_as_zero_on_scale_up_only() {
    four_pods(
        Target::Utilization(100.0),
        &[
            // Three ready at 150, one warming: 450 / 400 = 1.125 → ceil(4.5) = 5.
            (0, 150.0, 3, 0, 1, 5),
            // Two ready at 120, two warming: 240 / 400 = 0.6 reverses → no change.
            (15, 120.0, 2, 0, 2, 4),
            // Scaling down ignores not-ready replicas: two ready at 40 → ceil(0.4 × 2) = 1.
            (30, 40.0, 2, 0, 2, 1),
        ],
    );
}

#[test]
fn several_metrics_take_the_largest_and_a_failure_blocks_scale_down() {
    let mut hpa = raw_hpa(1, 100);
    let d = hpa.decide(
        &Observation::new(secs(0), 4, 4)
            .metric(avg("a", 100.0, 150.0))
            .metric(avg("b", 100.0, 300.0))
            .metric(avg("c", 100.0, 50.0)),
    );
    assert_eq!(d.desired, 12);
    assert_eq!(d.reason, Reason::Metric { metric: "b".into() });
    assert_eq!(d.proposals.len(), 3);
    let failed = MetricSample::new(
        "f",
        Target::AverageValue(1.0),
        Reading::Failed("down".into()),
    );
    let d = hpa.decide(
        &Observation::new(secs(15), 12, 12)
            .metric(avg("a", 100.0, 10.0))
            .metric(failed.clone()),
    );
    assert_eq!(
        (d.desired, d.reason),
        (12, Reason::MissingMetricsNoScaleDown)
    );
    let d = hpa.decide(
        &Observation::new(secs(30), 12, 12)
            .metric(avg("a", 100.0, 200.0))
            .metric(failed.clone()),
    );
    assert_eq!(d.desired, 24);
    let d = hpa.decide(&Observation::new(secs(45), 24, 24).metric(failed));
    assert_eq!((d.desired, d.reason), (24, Reason::NoMetrics));
}

#[test]
fn bounds_apply_before_and_after_the_metrics() {
    let mut hpa = raw_hpa(2, 8);
    assert_eq!(decide(&mut hpa, 0, 4, vec![avg("m", 100.0, 1000.0)]), 8);
    assert_eq!(decide(&mut hpa, 15, 4, vec![avg("m", 100.0, 1.0)]), 2);
    assert_eq!(
        decide_why(&mut hpa, 30, 12, vec![avg("m", 100.0, 100.0)]),
        (8, Reason::AboveMax)
    );
    assert_eq!(
        decide_why(&mut hpa, 45, 1, vec![avg("m", 100.0, 100.0)]),
        (2, Reason::BelowMin)
    );
    assert_eq!(
        decide_why(&mut hpa, 60, 0, vec![avg("m", 100.0, 100.0)]),
        (0, Reason::ScalingDisabled)
    );
}

#[test]
fn default_scale_down_stabilization_holds_the_highest_recommendation_for_300s() {
    let mut hpa = hpa_with(Behavior::default());
    assert_eq!(decide(&mut hpa, 0, 10, vec![avg("m", 100.0, 100.0)]), 10);
    for t in (15..300).step_by(15) {
        assert_eq!(
            decide_why(&mut hpa, t, 10, vec![avg("m", 100.0, 50.0)]),
            (10, Reason::ScaleDownStabilized),
            "t={t}"
        );
    }
    // The recommendations of t=0 leave the window (strictly after now − 300 s) at t=300.
    assert_eq!(decide(&mut hpa, 300, 10, vec![avg("m", 100.0, 50.0)]), 5);
}

#[test]
fn default_scale_up_is_the_larger_of_100_percent_or_4_pods_per_15s() {
    let mut hpa = hpa_with(Behavior::default());
    assert_eq!(
        decide_why(&mut hpa, 0, 1, vec![avg("m", 10.0, 100.0)]),
        (5, Reason::ScaleUpLimit)
    );
    // Within the same period, the 4 pods already added count: no further growth.
    assert_eq!(decide(&mut hpa, 5, 5, vec![avg("m", 10.0, 20.0)]), 5);
    // Next period: max(5 × 2, 5 + 4) = 10.
    assert_eq!(decide(&mut hpa, 15, 5, vec![avg("m", 10.0, 40.0)]), 10);
    assert_eq!(decide(&mut hpa, 30, 10, vec![avg("m", 10.0, 50.0)]), 20);
}

fn docs_scale_down(select: Select) -> TargetTracking {
    // The HPA docs' example: at most 4 pods or 10 % per minute.
    let behavior = Behavior {
        scale_down: ScalingRules::default_down()
            .with_window(Duration::ZERO)
            .with_policies(vec![
                RatePolicy::pods(4, secs(60)),
                RatePolicy::percent(10, secs(60)),
            ])
            .with_select(select),
        ..Behavior::default()
    };
    hpa_with(behavior)
}

#[test]
fn docs_example_scale_down_80_to_10_removes_8_then_8_per_minute() {
    let mut hpa = docs_scale_down(Select::Max);
    assert_eq!(
        decide_why(&mut hpa, 0, 80, vec![avg("m", 100.0, 12.5)]),
        (72, Reason::ScaleDownLimit)
    );
    // Still inside the minute: nothing more may go.
    assert_eq!(decide(&mut hpa, 30, 72, vec![avg("m", 100.0, 10.0)]), 72);
    // 72 × 0.9 = 64.8 → 64, more than 72 − 4.
    assert_eq!(decide(&mut hpa, 60, 72, vec![avg("m", 100.0, 10.0)]), 64);
    // Below 40 replicas the 4-pod policy allows more: 30 → 26.
    let mut hpa = docs_scale_down(Select::Max);
    assert_eq!(decide(&mut hpa, 0, 30, vec![avg("m", 100.0, 10.0)]), 26);
}

#[test]
fn select_min_takes_the_smaller_change_and_disabled_none() {
    let mut hpa = docs_scale_down(Select::Min);
    assert_eq!(decide(&mut hpa, 0, 80, vec![avg("m", 100.0, 12.5)]), 76);
    let mut hpa = docs_scale_down(Select::Disabled);
    assert_eq!(decide(&mut hpa, 0, 80, vec![avg("m", 100.0, 12.5)]), 80);
    // Disabled down does not stop scaling up.
    assert_eq!(decide(&mut hpa, 15, 80, vec![avg("m", 100.0, 105.0)]), 80);
    assert_eq!(decide(&mut hpa, 30, 80, vec![avg("m", 100.0, 120.0)]), 96);
}

#[test]
fn scale_up_stabilization_uses_the_lowest_recent_recommendation() {
    let behavior = Behavior {
        scale_up: ScalingRules::default_up().with_window(secs(60)),
        ..Behavior::default()
    };
    let mut hpa = hpa_with(behavior);
    assert_eq!(decide(&mut hpa, 0, 4, vec![avg("m", 100.0, 100.0)]), 4);
    assert_eq!(
        decide_why(&mut hpa, 15, 4, vec![avg("m", 100.0, 200.0)]),
        (4, Reason::ScaleUpStabilized)
    );
    assert_eq!(decide(&mut hpa, 30, 4, vec![avg("m", 100.0, 200.0)]), 4);
    // At t=60 the t=0 recommendation (4) has left the window; the lowest left is 8.
    assert_eq!(decide(&mut hpa, 60, 4, vec![avg("m", 100.0, 200.0)]), 8);
}

#[test]
fn cooldown_holds_after_an_action() {
    let behavior = Behavior {
        cooldown: secs(120),
        scale_down: ScalingRules::default_down().with_window(Duration::ZERO),
        ..Behavior::default()
    };
    let mut hpa = hpa_with(behavior);
    assert_eq!(decide(&mut hpa, 0, 4, vec![avg("m", 100.0, 200.0)]), 8);
    assert_eq!(
        decide_why(&mut hpa, 60, 8, vec![avg("m", 100.0, 50.0)]),
        (8, Reason::Cooldown)
    );
    assert_eq!(decide(&mut hpa, 120, 8, vec![avg("m", 100.0, 50.0)]), 4);
}

#[test]
fn object_and_external_targets() {
    let mut hpa = raw_hpa(1, 100);
    // Object metric with a total target: ceil(ready × value / target).
    let object = MetricSample::new("q", Target::Value(100.0), Reading::Total(300.0));
    assert_eq!(decide(&mut hpa, 0, 3, vec![object]), 9);
    // External metric with an average target: ceil(total / target).
    let external = MetricSample::new("q", Target::AverageValue(30.0), Reading::Total(300.0));
    assert_eq!(decide(&mut hpa, 15, 9, vec![external]), 10);
}

#[test]
fn decisions_serialize_with_their_reason() {
    let mut hpa = raw_hpa(1, 100);
    let d = hpa.decide(&Observation::new(secs(0), 5, 5).metric(avg("rps", 100.0, 200.0)));
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["desired"], 10);
    assert_eq!(json["reason"]["rule"], "metric");
    assert_eq!(json["reason"]["metric"], "rps");
    assert_eq!(json["proposals"][0]["replicas"], 10);
    assert_eq!(hpa.stats().scale_ups, 1);
}
