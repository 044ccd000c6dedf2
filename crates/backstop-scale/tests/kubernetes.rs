//! Scenarios where Backstop disagreed with the Kubernetes controller (`horizontal.go`,
//! `replica_calculator.go`), each with the controller's arithmetic, and the tolerance rules.

use std::time::Duration;

mod support;

use support::{raw, secs};

use backstop_scale::{
    Behavior, HpaConfig, MetricSample, Observation, Policy, Reading, Reason, ReplicaReading,
    ScalingRules, Target, TargetTracking, ToleranceRule,
};

/// No stabilization and no rate limit: isolates the replica calculator.
fn raw_hpa(config: HpaConfig) -> TargetTracking {
    raw(config.with_bounds(1, 100))
}

fn pods(values: &[Option<f64>]) -> Reading {
    Reading::PerReplica(
        values
            .iter()
            .map(|&value| ReplicaReading::new(true, value))
            .collect(),
    )
}

fn avg(value: f64) -> MetricSample {
    MetricSample::new("m", Target::AverageValue(100.0), Reading::Average(value))
}

#[test]
fn a_missing_pod_under_a_utilization_target_counts_at_max_100_percent_and_target() {
    let mut hpa = raw_hpa(HpaConfig::default());
    let readings = [Some(10.0), Some(10.0), Some(10.0), Some(10.0), None];
    // 4 pods at 10 % against 50 %: ratio 0.2, a scale-down, so the missing pod counts at
    // max(100 %, 50 %) = 100 %: (4 × 10 + 100) / (5 × 50) = 0.56, ceil(0.56 × 5) = ceil(2.8) = 3.
    // (Counting it at the target gave (40 + 50) / 250 = 0.36, ceil(1.8) = 2.)
    let cpu = MetricSample::new("cpu", Target::Utilization(50.0), pods(&readings));
    let d = hpa.decide(&Observation::new(secs(0), 5, 5).metric(cpu));
    assert_eq!(d.desired, 3);
    // A Pods (average value) metric has no request: the missing pod counts at the target,
    // (40 + 50) / 250 = 0.36 → 2.
    let value = MetricSample::new("rps", Target::AverageValue(50.0), pods(&readings));
    let d = hpa.decide(&Observation::new(secs(15), 5, 5).metric(value));
    assert_eq!(d.desired, 2);
    // A target above 100 %: the missing pod counts at 150 %: (40 + 150) / (5 × 150) ≈ 0.253,
    // ceil(1.27) = 2 (at 100 % it would be 140 / 750 ≈ 0.187, ceil(0.93) = 1).
    let high = MetricSample::new("cpu", Target::Utilization(150.0), pods(&readings));
    let d = hpa.decide(&Observation::new(secs(30), 5, 5).metric(high));
    assert_eq!(d.desired, 2);
}

#[test]
fn a_ratio_of_exactly_one_with_missing_pods_changes_nothing() {
    let mut hpa = raw_hpa(HpaConfig::default());
    // 2 of 4 pods report exactly the target: ratio 1.0. The controller adds missing pods on
    // neither side at 1.0, so the new ratio stays 1.0 and the count stays 4. (Putting them in
    // the denominator gave 200 / 400 = 0.5 and halved the fleet to 2.)
    let m = MetricSample::new(
        "m",
        Target::AverageValue(100.0),
        pods(&[Some(100.0), Some(100.0), None, None]),
    );
    let d = hpa.decide(&Observation::new(secs(0), 4, 4).metric(m));
    assert_eq!(d.desired, 4);
}

#[test]
fn a_fresh_history_is_seeded_with_the_current_count_whatever_the_windows() {
    // 60 s scale-up window, 0 s scale-down window, default rate policies (4 → 8 allowed).
    let behavior = Behavior {
        scale_up: ScalingRules::default_up().with_window(secs(60)),
        scale_down: ScalingRules::default_down().with_window(Duration::ZERO),
        cooldown: Duration::ZERO,
    };
    let mut hpa = TargetTracking::new(
        HpaConfig::default()
            .with_bounds(1, 20)
            .with_behavior(behavior),
    )
    .unwrap();
    // Every evaluation recommends ceil(4 × 200 / 100) = 8. The history starts as {4 @ 0}:
    // t=0: lowest in (−60, 0] = min(4, 8) = 4; t=30: min(4, 8, 8) = 4; t=60: the seed at 0 is
    // not after the cutoff 0, lowest of {8 @ 0, 8 @ 30, 8} = 8. Kubernetes: 4, 4, 8 (without the
    // seed when the scale-down window is 0: 8, 8, 8).
    let got: Vec<u32> = [0, 30, 60]
        .iter()
        .map(|&t| {
            hpa.decide(&Observation::new(secs(t), 4, 4).metric(avg(200.0)))
                .desired
        })
        .collect();
    assert_eq!(got, vec![4, 4, 8]);
}

#[test]
fn a_failed_apply_records_no_scale_event_so_the_retry_is_not_rate_limited() {
    let mut hpa = TargetTracking::new(HpaConfig::default().with_bounds(1, 20)).unwrap();
    // 2 replicas at 300 against 100: ceil(2 × 3) = 6; the up limit is max(2 × 2, 2 + 4) = 6.
    let obs = Observation::new(secs(0), 2, 2).metric(avg(300.0));
    let first = hpa.recommend(&obs);
    assert_eq!(first.desired, 6);
    hpa.apply_failed(&obs, &first);
    // 5 s later, still 2 replicas. Had the +4 been recorded, the period would start at
    // 2 − 4 = −2 and the limit would be max(−4, 2) → 2 (the old 6, 2). Kubernetes records
    // events only after a successful update: 6 again.
    let retry = Observation::new(secs(5), 2, 2).metric(avg(300.0));
    let second = hpa.recommend(&retry);
    assert_eq!(second.desired, 6);
    hpa.commit(&retry, &second);
    // Now the +4 is recorded: at 10 s, 6 replicas at 300 want 18, but the period began at 2:
    // max(2 × 2, 2 + 4) = 6, so it holds at 6.
    let d = hpa.decide(&Observation::new(secs(10), 6, 6).metric(avg(300.0)));
    assert_eq!((d.desired, d.reason), (6, Reason::ScaleUpLimit));
    assert_eq!(hpa.stats().apply_failures, 1);
}

#[test]
fn recommend_changes_nothing() {
    let mut hpa = TargetTracking::new(HpaConfig::default().with_bounds(1, 20)).unwrap();
    let obs = Observation::new(secs(0), 10, 10).metric(avg(50.0));
    let a = hpa.recommend(&obs);
    let b = hpa.recommend(&obs);
    assert_eq!(a, b);
    assert_eq!(hpa.history_len(), 0);
    assert_eq!(hpa.stats().decisions, 0);
    // Committing records the seed and the recommendation.
    hpa.commit(&obs, &a);
    assert_eq!(hpa.history_len(), 2);
}

#[test]
fn tolerance_at_exactly_1_10_holds_by_default_and_scales_under_the_1_28_rule() {
    // 10 replicas at 110 against 100: ratio 1.1. Current Kubernetes tests 1.1 ≤ 1 + 0.1: holds.
    // 1.28 tests |1 − 1.1| = 0.10000000000000009 ≤ 0.1: false, so ceil(10 × 1.1) = 11.
    let mut current = raw_hpa(HpaConfig::default());
    let d = current.decide(&Observation::new(secs(0), 10, 10).metric(avg(110.0)));
    assert_eq!(d.desired, 10);
    let mut old = raw_hpa(HpaConfig::default().with_tolerance_rule(ToleranceRule::Kubernetes128));
    let d = old.decide(&Observation::new(secs(0), 10, 10).metric(avg(110.0)));
    assert_eq!(d.desired, 11);
}

#[test]
fn tolerances_per_direction() {
    // Up 0.5, down 0.05: 140 against 100 (ratio 1.4 ≤ 1.5) holds; 90 (0.9 < 0.95) scales
    // to ceil(10 × 0.9) = 9, which the symmetric 0.1 would hold (0.9 ≥ 0.9).
    let mut hpa = raw_hpa(HpaConfig::default().with_direction_tolerances(0.5, 0.05));
    let d = hpa.decide(&Observation::new(secs(0), 10, 10).metric(avg(140.0)));
    assert_eq!(d.desired, 10);
    let d = hpa.decide(&Observation::new(secs(15), 10, 10).metric(avg(90.0)));
    assert_eq!(d.desired, 9);
    let mut symmetric = raw_hpa(HpaConfig::default());
    let d = symmetric.decide(&Observation::new(secs(0), 10, 10).metric(avg(90.0)));
    assert_eq!(d.desired, 10);
    // A per-direction tolerance is validated like the shared one.
    let error =
        TargetTracking::new(HpaConfig::default().with_direction_tolerances(1.5, 0.1)).unwrap_err();
    assert_eq!(error.field(), "scale_up_tolerance");
}

#[test]
fn the_state_shows_the_window_the_events_and_the_conditions() {
    let mut hpa = TargetTracking::new(HpaConfig::default().with_bounds(1, 20)).unwrap();
    // 2 → 6 (limit max(4, 6) = 6), then 6 wants 18 but the period allows nothing more.
    hpa.decide(&Observation::new(secs(0), 2, 2).metric(avg(300.0)));
    let d = hpa.decide(&Observation::new(secs(5), 6, 6).metric(avg(300.0)));
    assert_eq!(d.reason, Reason::ScaleUpLimit);
    let state = hpa.state();
    // The seed (2 @ 0), then the recommendations 6 @ 0 and 18 @ 5.
    let window: Vec<(u64, u32)> = state
        .recommendations
        .iter()
        .map(|r| (r.at.as_secs(), r.replicas))
        .collect();
    assert_eq!(window, vec![(0, 2), (0, 6), (5, 18)]);
    assert_eq!(state.events.len(), 1);
    assert_eq!((state.events[0].at, state.events[0].change), (secs(0), 4));
    assert_eq!(state.last_change, Some(secs(0)));
    assert!(state.conditions.scaling_limited && state.conditions.scaling_active);
    let json = serde_json::to_value(&state).unwrap();
    assert_eq!(json["events"][0]["change"], 4);
    assert_eq!(json["conditions"]["able_to_scale"], true);
}

#[test]
fn a_stale_metric_counts_as_failed() {
    let mut hpa = raw_hpa(HpaConfig {
        max_metric_age: Some(secs(60)),
        ..HpaConfig::default()
    });
    // A fresh sample asking to halve and a 90 s old one asking to stay: the stale one counts as
    // failed, and a failed metric blocks the scale-down (as the HPA does).
    let fresh = avg(50.0).measured_at(secs(100));
    let stale = MetricSample::new("old", Target::AverageValue(100.0), Reading::Average(100.0))
        .measured_at(secs(10));
    let d = hpa.decide(
        &Observation::new(secs(100), 10, 10)
            .metric(fresh.clone())
            .metric(stale),
    );
    assert_eq!(
        (d.desired, d.reason),
        (10, Reason::MissingMetricsNoScaleDown)
    );
    assert!(
        d.proposals[1]
            .error
            .as_deref()
            .unwrap()
            .starts_with("stale")
    );
    // Alone, the fresh one halves the fleet; unstamped samples are never stale.
    let d = hpa.decide(&Observation::new(secs(115), 10, 10).metric(fresh));
    assert_eq!(d.desired, 5);
}

#[test]
fn metric_types_take_only_the_targets_kubernetes_allows() {
    use backstop_scale::MetricType;
    let mut hpa = raw_hpa(HpaConfig::default());
    // A Pods metric with a Utilization target is refused by the Kubernetes API; here the
    // metric is invalid, and being the only one, nothing changes.
    let pods_util = MetricSample::new("p", Target::Utilization(50.0), Reading::Average(100.0))
        .of_type(MetricType::Pods);
    let d = hpa.decide(&Observation::new(secs(0), 4, 4).metric(pods_util));
    assert_eq!((d.desired, d.reason), (4, Reason::NoMetrics));
    assert!(d.proposals[0].error.is_some());
    // A Resource metric with a Utilization target: ceil(4 × 100 / 50) = 8.
    let cpu = MetricSample::new("cpu", Target::Utilization(50.0), Reading::Average(100.0))
        .of_type(MetricType::Resource);
    assert_eq!(
        hpa.decide(&Observation::new(secs(15), 4, 4).metric(cpu))
            .desired,
        8
    );
    // An External metric with a Value target: 30 against 10 from 3 ready, ceil(3 × 3) = 9.
    let queue = MetricSample::new("q", Target::Value(10.0), Reading::Total(30.0))
        .of_type(MetricType::External);
    assert_eq!(
        hpa.decide(&Observation::new(secs(30), 3, 3).metric(queue))
            .desired,
        9
    );
    assert!(
        MetricType::ContainerResource {
            container: "app".into()
        }
        .accepts(&Target::Utilization(60.0))
    );
    assert!(!MetricType::Object.accepts(&Target::Utilization(60.0)));
}

#[test]
fn utilization_with_pod_requests_is_usage_over_requests() {
    let mut hpa = raw_hpa(HpaConfig::default());
    let pod =
        |usage: Option<f64>, request: f64| ReplicaReading::new(true, usage).with_request(request);
    // Requests 0.5, 0.5 and 1 core, usage 0.2, 0.2 and 1: utilization is 1.4 / 2 = 70 %
    // against 50 %, ratio 1.4, ceil(3 × 1.4) = ceil(4.2) = 5. (Averaging per-pod percentages,
    // (40 + 40 + 100) / 3 = 60 %, would give ceil(3 × 1.2) = 4.)
    let cpu = MetricSample::new(
        "cpu",
        Target::Utilization(50.0),
        Reading::PerReplica(vec![
            pod(Some(0.2), 0.5),
            pod(Some(0.2), 0.5),
            pod(Some(1.0), 1.0),
        ]),
    );
    assert_eq!(
        hpa.decide(&Observation::new(secs(0), 3, 3).metric(cpu))
            .desired,
        5
    );
    // The scenario in raw units: 4 pods using 0.1 of 1 core, 1 missing, target 50 %.
    // Ratio 0.4 / 4 = 10 % → 0.2, a scale-down: the missing pod counts at max(100 %, 50 %) of
    // its request, 1 core: 1.4 / 5 = 28 % → 0.56, ceil(5 × 0.56) = 3.
    let mut readings = vec![pod(Some(0.1), 1.0); 4];
    readings.push(pod(None, 1.0));
    let cpu = MetricSample::new(
        "cpu",
        Target::Utilization(50.0),
        Reading::PerReplica(readings),
    );
    assert_eq!(
        hpa.decide(&Observation::new(secs(15), 5, 5).metric(cpu))
            .desired,
        3
    );
    // A request on some replicas only is an invalid metric.
    let partial = MetricSample::new(
        "cpu",
        Target::Utilization(50.0),
        Reading::PerReplica(vec![
            pod(Some(0.2), 0.5),
            ReplicaReading::new(true, Some(0.2)),
        ]),
    );
    let d = hpa.decide(&Observation::new(secs(30), 2, 2).metric(partial));
    assert_eq!(d.reason, Reason::NoMetrics);
}
