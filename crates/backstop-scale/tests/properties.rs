//! Properties: bounds, no flapping under constant load, scale-down within the rate policy.

use std::time::Duration;

use backstop_scale::{
    Behavior, HpaConfig, MetricSample, Observation, Policy, RatePolicy, Reading, ScalingRules,
    Target, TargetTracking,
};
use proptest::prelude::*;

fn rps(v: f64) -> MetricSample {
    MetricSample::new("rps", Target::AverageValue(100.0), Reading::Average(v))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn desired_stays_within_bounds(
        min in 1u32..10,
        span in 0u32..40,
        steps in prop::collection::vec((0.0f64..5000.0, 0u64..60), 1..60),
    ) {
        let max = min + span;
        let mut hpa = TargetTracking::new(HpaConfig::default().with_bounds(min, max)).unwrap();
        let mut current = min;
        let mut at = Duration::ZERO;
        for (value, gap) in steps {
            at += Duration::from_secs(gap);
            let d = hpa.decide(&Observation::new(at, current, current).metric(rps(value)));
            prop_assert!(d.desired >= min && d.desired <= max, "{} not in [{min}, {max}]", d.desired);
            current = d.desired;
        }
    }

    #[test]
    fn constant_load_never_flaps(load in 1.0f64..20_000.0, start in 1u32..50) {
        let mut hpa = TargetTracking::new(HpaConfig::default().with_bounds(1, 500)).unwrap();
        let mut current = start;
        let mut direction = 0i8;
        for step in 0..80u64 {
            let per_replica = load / f64::from(current);
            let d = hpa.decide(
                &Observation::new(Duration::from_secs(step * 15), current, current)
                    .metric(rps(per_replica)),
            );
            let now = (d.desired > current) as i8 - (d.desired < current) as i8;
            if now != 0 {
                prop_assert!(direction == 0 || direction == now, "reversed at step {step}");
                direction = now;
            }
            current = d.desired;
        }
    }

    #[test]
    fn scale_down_never_exceeds_the_rate_policy(
        pods in 1u32..10,
        percent in 1u32..100,
        period in 15u64..300,
        loads in prop::collection::vec(0.0f64..3000.0, 10..80),
    ) {
        let behavior = Behavior {
            scale_down: ScalingRules::default_down()
                .with_window(Duration::ZERO)
                .with_policies(vec![
                    RatePolicy::pods(pods, Duration::from_secs(period)),
                    RatePolicy::percent(percent, Duration::from_secs(period)),
                ]),
            ..Behavior::default()
        };
        let mut hpa = TargetTracking::new(
            HpaConfig::default().with_bounds(1, 200).with_behavior(behavior),
        )
        .unwrap();
        let mut history: Vec<(u64, u32)> = vec![];
        let mut current = 100u32;
        for (i, load) in loads.into_iter().enumerate() {
            let t = i as u64 * 15;
            let d = hpa.decide(
                &Observation::new(Duration::from_secs(t), current, current).metric(rps(load)),
            );
            history.push((t, current));
            if d.desired < current {
                // Replicas at the start of the period, as the HPA counts it: the count seen by
                // the first evaluation strictly inside the period, before any change in it.
                let start = history
                    .iter()
                    .find(|(at, _)| *at + period > t)
                    .map_or(current, |h| h.1);
                let by_pods = start.saturating_sub(pods);
                let by_percent = (f64::from(start) * (1.0 - f64::from(percent) / 100.0)) as u32;
                prop_assert!(
                    d.desired >= by_pods.min(by_percent).max(1),
                    "t={t} start={start} {current} → {}", d.desired
                );
            }
            current = d.desired;
        }
    }
}
