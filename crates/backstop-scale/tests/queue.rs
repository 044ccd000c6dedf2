//! KEDA-style queue scaling, with KEDA's reported bugs as regression tests.

use std::time::Duration;

use backstop_scale::{
    Behavior, MetricSample, Observation, Policy, QueueConfig, QueuePolicy, RatePolicy, Reading,
    Reason, ScalingRules, Target, ThresholdConfig, ThresholdPolicy,
};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn backlog(n: f64) -> MetricSample {
    MetricSample::new(
        "queue_length",
        Target::AverageValue(10.0),
        Reading::Total(n),
    )
}

fn failed() -> MetricSample {
    MetricSample::new(
        "queue_length",
        Target::AverageValue(10.0),
        Reading::Failed("metrics API unavailable".into()),
    )
}

fn obs(at: u64, current: u32, sample: MetricSample) -> Observation {
    Observation::new(secs(at), current, current).metric(sample)
}

fn policy(config: QueueConfig) -> QueuePolicy {
    QueuePolicy::new(config.with_target(10.0)).unwrap()
}

#[test]
fn activation_is_strictly_greater_than_the_threshold() {
    let mut p = policy(QueueConfig::default().with_activation(5.0));
    assert_eq!(p.decide(&obs(0, 0, backlog(5.0))).desired, 0);
    let d = p.decide(&obs(15, 0, backlog(5.5)));
    assert_eq!((d.desired, d.reason), (1, Reason::Activated));
    let d = p.decide(&obs(30, 0, backlog(45.0)));
    assert_eq!(d.desired, 5);
}

#[test]
fn metric_outage_never_scales_to_zero_kedas_1850() {
    let mut p = policy(QueueConfig::default());
    assert_eq!(p.decide(&obs(0, 4, backlog(40.0))).desired, 4);
    for t in 1..100 {
        let d = p.decide(&obs(t * 15, 4, failed()));
        assert_eq!((d.desired, d.reason), (4, Reason::MetricUnavailable));
    }
    assert_eq!(p.failures(), 99);
}

#[test]
fn fallback_applies_once_failures_exceed_the_threshold_even_from_zero_kedas_7239() {
    // KEDA fires when failures > failureThreshold: with 3, failures 1, 2 and 3 hold and the
    // 4th applies the fallback (the old `>=` fired on the 3rd).
    let mut p = policy(QueueConfig::default().with_fallback(3, 6));
    for t in 0..3 {
        assert_eq!(p.decide(&obs(t * 15, 0, failed())).desired, 0);
    }
    let d = p.decide(&obs(45, 0, failed()));
    assert_eq!((d.desired, d.reason), (6, Reason::Fallback));
    // A good reading resets the count.
    p.decide(&obs(60, 6, backlog(60.0)));
    assert_eq!(p.failures(), 0);
}

#[test]
fn scale_to_zero_follows_the_scale_down_policy_first_kedas_7770() {
    let behavior = Behavior {
        scale_down: ScalingRules::default_down()
            .with_window(Duration::ZERO)
            .with_policies(vec![RatePolicy::pods(2, secs(60))]),
        ..Behavior::default()
    };
    let mut p = policy(QueueConfig::default().with_behavior(behavior));
    let mut current = 10;
    assert_eq!(p.decide(&obs(0, current, backlog(100.0))).desired, 10);
    let mut path = vec![];
    let mut t = 60;
    while current > 0 && t < 3600 {
        let d = p.decide(&obs(t, current, backlog(0.0)));
        if d.desired != current {
            assert!(
                current - d.desired <= 2,
                "dropped {current} → {}",
                d.desired
            );
            path.push((t, d.desired, d.reason.clone()));
            current = d.desired;
        }
        t += 60;
    }
    let counts: Vec<u32> = path.iter().map(|p| p.1).collect();
    assert_eq!(counts, vec![8, 6, 4, 2, 1, 0]);
    // Zero only after the 300 s cooldown since the last activity at t=0.
    let (at, _, reason) = path.last().unwrap();
    assert_eq!(*reason, Reason::ScaleToZero);
    assert!(*at >= 300);
}

#[test]
fn min_replicas_above_zero_never_goes_to_zero() {
    let mut p = policy(QueueConfig::default().with_bounds(2, 10));
    for t in 0..100 {
        assert!(p.decide(&obs(t * 60, 2, backlog(0.0))).desired >= 2);
    }
}

#[test]
fn threshold_policy_steps_and_cools_down() {
    let mut p = ThresholdPolicy::new(ThresholdConfig::default().with_steps(2, 1)).unwrap();
    let cpu = |v: f64| MetricSample::new("cpu", Target::Utilization(60.0), Reading::Average(v));
    let d = p.decide(&Observation::new(secs(0), 3, 3).metric(cpu(85.0)));
    assert_eq!((d.desired, d.reason), (5, Reason::ThresholdUp));
    let d = p.decide(&Observation::new(secs(100), 5, 5).metric(cpu(95.0)));
    assert_eq!((d.desired, d.reason), (5, Reason::Cooldown));
    assert_eq!(
        p.decide(&Observation::new(secs(300), 5, 5).metric(cpu(50.0)))
            .desired,
        5
    );
    let d = p.decide(&Observation::new(secs(300), 5, 5).metric(cpu(20.0)));
    assert_eq!((d.desired, d.reason), (4, Reason::ThresholdDown));
    let d = p.decide(&Observation::new(secs(400), 4, 4));
    assert_eq!((d.desired, d.reason), (4, Reason::NoMetrics));
    assert_eq!(p.stats().scale_ups, 1);
}

#[test]
fn threshold_percent_step_scales_with_the_fleet() {
    let config = ThresholdConfig::default()
        .with_bounds(1, 100)
        .with_step_percents(50.0, 20.0);
    let cpu = |v: f64| MetricSample::new("cpu", Target::Utilization(60.0), Reading::Average(v));
    let mut p = ThresholdPolicy::new(config).unwrap();
    // ceil(40 × 50 %) = 20 beats the absolute step of 1.
    let d = p.decide(&Observation::new(secs(0), 40, 40).metric(cpu(90.0)));
    assert_eq!((d.desired, d.reason), (60, Reason::ThresholdUp));
    // floor(60 × 20 %) = 12 down.
    let d = p.decide(&Observation::new(secs(300), 60, 60).metric(cpu(10.0)));
    assert_eq!((d.desired, d.reason), (48, Reason::ThresholdDown));
    // On a tiny fleet the percent rounds to 0 and the absolute step of 1 applies.
    let d = p.decide(&Observation::new(secs(600), 3, 3).metric(cpu(10.0)));
    assert_eq!(d.desired, 2);
    // Capped by max_replicas.
    let d = p.decide(&Observation::new(secs(900), 90, 90).metric(cpu(95.0)));
    assert_eq!(d.desired, 100);
}

#[test]
fn threshold_demand_metric_sizes_a_scale_up_past_saturation() {
    let config = ThresholdConfig::default()
        .with_bounds(1, 100)
        .with_step_percents(50.0, 20.0)
        .with_demand_metric(Some("queue".to_owned()));
    let mut p = ThresholdPolicy::new(config).unwrap();
    let obs = |s: u64, replicas: u32, queue: f64| {
        Observation::new(secs(s), replicas, replicas)
            .metric(MetricSample::new(
                "cpu",
                Target::Utilization(70.0),
                Reading::Average(100.0),
            ))
            .metric(MetricSample::new(
                "queue",
                Target::AverageValue(7.0),
                Reading::Total(queue),
            ))
    };
    // Utilization stops at 100 %; the queue of 70 at 7 a replica asks for ceil(70 / 7) = 10,
    // where the step alone gives 1 + ceil(1 × 50 %) = 2.
    let d = p.decide(&obs(0, 1, 70.0));
    assert_eq!((d.desired, d.reason), (10, Reason::ThresholdUp));
    // Within the cooldown the demand's count still applies: ceil(140 / 7) = 20 ...
    let d = p.decide(&obs(60, 10, 140.0));
    assert_eq!((d.desired, d.reason), (20, Reason::ThresholdUp));
    // ... but the step does not: 20 replicas already cover a queue of 100 (ceil(100 / 7) = 15).
    let d = p.decide(&obs(120, 20, 100.0));
    assert_eq!((d.desired, d.reason), (20, Reason::Cooldown));
}

#[test]
fn a_fallback_goes_through_stabilization_instead_of_cutting_the_fleet() {
    // 10 replicas carrying 100 messages at 10 each, then the metrics API goes down with a
    // fallback of 2 after 1 failure. The fallback is a recommendation: the default 300 s
    // scale-down window still holds 10 (the highest recommendation since t=0), where the old
    // policy jumped 10 → 2 in one step.
    let mut p = policy(
        QueueConfig::default()
            .with_fallback(1, 2)
            .with_behavior(Behavior::default()),
    );
    assert_eq!(p.decide(&obs(0, 10, backlog(100.0))).desired, 10);
    assert_eq!(
        p.decide(&obs(15, 10, failed())).reason,
        Reason::MetricUnavailable
    );
    let d = p.decide(&obs(30, 10, failed()));
    assert_eq!((d.desired, d.reason), (10, Reason::Fallback));
    // Once the window holds only fallback recommendations (after t=300 the t=0 one is out),
    // the count falls to 2 within the scale-down rate (−100 % per 15 s).
    let mut current = 10;
    for t in (45..=330).step_by(15) {
        current = p.decide(&obs(t, current, failed())).desired;
    }
    assert_eq!(current, 2);
}

#[test]
fn fallback_behaviours_aim_for_current_or_the_larger_or_smaller() {
    use backstop_scale::FallbackBehavior;
    let run = |behavior: FallbackBehavior, current: u32| {
        let mut p = policy(
            QueueConfig::default()
                .with_fallback(0, 6)
                .with_fallback_behavior(behavior)
                .with_behavior(Behavior {
                    scale_down: ScalingRules::default_down().with_window(Duration::ZERO),
                    ..Behavior::default()
                }),
        );
        p.decide(&obs(0, current, failed())).desired
    };
    // Threshold 0: the first failure exceeds it. Scale-up allows max(2 × 3, 3 + 4) = 7.
    assert_eq!(run(FallbackBehavior::Static, 3), 6);
    assert_eq!(run(FallbackBehavior::CurrentReplicas, 3), 3);
    assert_eq!(run(FallbackBehavior::CurrentReplicasIfHigher, 3), 6);
    assert_eq!(run(FallbackBehavior::CurrentReplicasIfHigher, 9), 9);
    assert_eq!(run(FallbackBehavior::CurrentReplicasIfLower, 9), 6);
    assert_eq!(run(FallbackBehavior::CurrentReplicasIfLower, 3), 3);
}

#[test]
fn initial_cooldown_lets_a_never_active_workload_go_idle_early() {
    // KEDA's initialCooldownPeriod: a new object with an empty queue may go to zero once 60 s
    // have passed since it was first seen, instead of waiting the full 300 s cooldown.
    let config = QueueConfig::default().with_initial_cooldown(secs(60));
    let mut p = policy(config);
    assert_eq!(p.decide(&obs(0, 1, backlog(0.0))).desired, 1);
    assert_eq!(p.decide(&obs(45, 1, backlog(0.0))).desired, 1);
    let d = p.decide(&obs(60, 1, backlog(0.0)));
    assert_eq!((d.desired, d.reason), (0, Reason::ScaleToZero));
    // Without it, the same workload waits the cooldown (300 s) from when it was first seen.
    let mut p = policy(QueueConfig::default());
    assert_eq!(p.decide(&obs(0, 1, backlog(0.0))).desired, 1);
    assert_eq!(p.decide(&obs(285, 1, backlog(0.0))).desired, 1);
    assert_eq!(p.decide(&obs(300, 1, backlog(0.0))).desired, 0);
    // Once active, the ordinary cooldown applies from the last activity.
    let mut p = policy(QueueConfig::default().with_initial_cooldown(secs(60)));
    assert_eq!(p.decide(&obs(0, 1, backlog(5.0))).desired, 1);
    assert_eq!(p.decide(&obs(120, 1, backlog(0.0))).desired, 1);
    assert_eq!(p.decide(&obs(300, 1, backlog(0.0))).desired, 0);
}

#[test]
fn idle_replicas_replace_zero_when_inactive() {
    // KEDA's idleReplicaCount = 1 below minReplicaCount = 3: inactive for the cooldown, the
    // workload goes from 3 to 1 (not 0); activity takes it back to at least 3.
    let config = QueueConfig::default()
        .with_bounds(3, 10)
        .with_idle_replicas(1)
        .with_behavior(Behavior {
            scale_down: ScalingRules::default_down().with_window(Duration::ZERO),
            ..Behavior::default()
        });
    let mut p = policy(config);
    assert_eq!(p.decide(&obs(0, 3, backlog(0.0))).desired, 3);
    let d = p.decide(&obs(300, 3, backlog(0.0)));
    assert_eq!((d.desired, d.reason), (1, Reason::ScaleToZero));
    assert_eq!(p.decide(&obs(315, 1, backlog(0.0))).desired, 1);
    // 12 messages at 10 each need 2, raised to the minimum 3.
    let d = p.decide(&obs(330, 1, backlog(12.0)));
    assert_eq!((d.desired, d.reason), (3, Reason::Activated));
    // idle_replicas must be below min_replicas.
    let bad = QueueConfig::default()
        .with_bounds(2, 10)
        .with_idle_replicas(2);
    assert_eq!(QueuePolicy::new(bad).unwrap_err().field(), "idle_replicas");
}

#[test]
fn several_triggers_take_the_largest_and_any_activates() {
    use backstop_scale::QueueTrigger;
    let config = QueueConfig::default()
        .with_behavior(Behavior {
            scale_down: ScalingRules::default_down().with_window(Duration::ZERO),
            ..Behavior::default()
        })
        .with_trigger(QueueTrigger {
            metric: "jobs".into(),
            target_per_replica: 2.0,
            activation_threshold: 0.0,
        });
    let jobs = |n: f64| MetricSample::new("jobs", Target::AverageValue(2.0), Reading::Total(n));
    let mut p = policy(config);
    // From zero the queue is empty but 7 jobs wait: active, ceil(7 / 2) = 4.
    let o = Observation::new(secs(0), 0, 0)
        .metric(backlog(0.0))
        .metric(jobs(7.0));
    let d = p.decide(&o);
    assert_eq!((d.desired, d.reason), (4, Reason::Activated));
    // At 4: the queue wants ceil(30 / 10) = 3, the jobs ceil(12 / 2) = 6; the largest decides.
    let o = Observation::new(secs(15), 4, 4)
        .metric(backlog(30.0))
        .metric(jobs(12.0));
    let d = p.decide(&o);
    assert_eq!(
        (d.desired, d.reason),
        (
            6,
            Reason::Metric {
                metric: "jobs".into()
            }
        )
    );
    // One trigger failing holds the count even though the other says scale down.
    let o = Observation::new(secs(30), 6, 6)
        .metric(backlog(0.0))
        .metric(failed_jobs());
    let d = p.decide(&o);
    assert_eq!((d.desired, d.reason), (6, Reason::MetricUnavailable));
}

fn failed_jobs() -> MetricSample {
    MetricSample::new(
        "jobs",
        Target::AverageValue(2.0),
        Reading::Failed("down".into()),
    )
}

#[test]
fn a_stale_backlog_is_a_failure() {
    let config = QueueConfig {
        max_metric_age: Some(secs(30)),
        ..QueueConfig::default()
    };
    let mut p = policy(config);
    let d = p.decide(&obs(100, 4, backlog(0.0).measured_at(secs(50))));
    assert_eq!((d.desired, d.reason), (4, Reason::MetricUnavailable));
    assert_eq!(p.failures(), 1);
}

#[test]
fn activation_can_go_to_the_minimum_first_as_keda_does() {
    // 35 messages at 10 each need 4; KEDA activates to max(min, 1) = 1 and scales from there.
    let mut p = policy(QueueConfig {
        activate_to_min: true,
        ..QueueConfig::default()
    });
    let d = p.decide(&obs(0, 0, backlog(35.0)));
    assert_eq!((d.desired, d.reason), (1, Reason::Activated));
    assert_eq!(d.recommendation, Some(4));
    // Then the ordinary scale-up: 1 at 35 wants 4, allowed by max(1 × 2, 1 + 4) = 5.
    assert_eq!(p.decide(&obs(15, 1, backlog(35.0))).desired, 4);
}
