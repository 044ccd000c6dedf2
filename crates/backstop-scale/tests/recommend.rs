//! Properties of the two-step decision: `recommend` is pure, and a failed apply leaves the
//! history as if the change had never been attempted.

use std::time::Duration;

use backstop_scale::{
    HpaConfig, MetricSample, Observation, Policy, QueueConfig, QueuePolicy, Reading, Target,
    TargetTracking,
};
use proptest::prelude::*;

fn rps(v: f64) -> MetricSample {
    MetricSample::new("rps", Target::AverageValue(100.0), Reading::Average(v))
}

fn queue(v: Option<f64>) -> MetricSample {
    let reading = v.map_or(Reading::Failed("down".into()), Reading::Total);
    MetricSample::new("queue_length", Target::AverageValue(10.0), reading)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Interleaving any number of `recommend` calls (on any observations) changes no later
    /// decision of the HPA policy, noise band included.
    #[test]
    fn recommend_is_pure(
        steps in prop::collection::vec((0.0f64..2000.0, 1u64..40, 0usize..3, 0.0f64..2000.0), 1..60),
        noise in prop::bool::ANY,
    ) {
        let config = HpaConfig::default()
            .with_bounds(1, 50)
            .with_noise_tolerance(if noise { 3.0 } else { 0.0 });
        let mut plain = TargetTracking::new(config.clone()).unwrap();
        let mut probed = TargetTracking::new(config).unwrap();
        let (mut a, mut b) = (4u32, 4u32);
        let mut at = Duration::ZERO;
        for (value, gap, probes, probe_value) in steps {
            at += Duration::from_secs(gap);
            for _ in 0..probes {
                let probe = Observation::new(at, b, b).metric(rps(probe_value));
                let first = probed.recommend(&probe);
                prop_assert_eq!(first, probed.recommend(&probe));
            }
            let da = plain.decide(&Observation::new(at, a, a).metric(rps(value)));
            let db = probed.decide(&Observation::new(at, b, b).metric(rps(value)));
            prop_assert_eq!(&da, &db);
            a = da.desired;
            b = db.desired;
        }
    }

    /// The queue policy's `recommend` is pure too, across outages (fallback) and idling.
    #[test]
    fn queue_recommend_is_pure(
        steps in prop::collection::vec((prop::option::of(0.0f64..300.0), 1u64..120, 0usize..3), 1..60),
    ) {
        let config = QueueConfig::default().with_target(10.0).with_bounds(0, 30).with_fallback(2, 5);
        let mut plain = QueuePolicy::new(config.clone()).unwrap();
        let mut probed = QueuePolicy::new(config).unwrap();
        let mut current = 3u32;
        let mut at = Duration::ZERO;
        for (value, gap, probes) in steps {
            at += Duration::from_secs(gap);
            let obs = Observation::new(at, current, current).metric(queue(value));
            for _ in 0..probes {
                probed.recommend(&obs);
            }
            let da = plain.decide(&obs);
            prop_assert_eq!(&da, &probed.decide(&obs));
            prop_assert_eq!(plain.failures(), probed.failures());
            current = da.desired;
        }
    }

    /// After any history of applied and failed changes, a failed apply leaves the retry's
    /// decision exactly what it was: no allowance is spent on a change that did not happen.
    #[test]
    fn a_failed_apply_leaves_the_retry_unchanged(
        steps in prop::collection::vec((0.0f64..2000.0, 1u64..40, prop::bool::ANY), 1..60),
    ) {
        let mut hpa = TargetTracking::new(HpaConfig::default().with_bounds(1, 50)).unwrap();
        let mut current = 4u32;
        let mut at = Duration::ZERO;
        for (value, gap, fails) in steps {
            at += Duration::from_secs(gap);
            let obs = Observation::new(at, current, current).metric(rps(value));
            let decision = hpa.recommend(&obs);
            if fails && decision.is_change() {
                hpa.apply_failed(&obs, &decision);
                // The retry, at the same time with the same fleet, gets the same answer.
                prop_assert_eq!(&hpa.recommend(&obs), &decision);
            } else {
                hpa.commit(&obs, &decision);
                current = decision.desired;
            }
        }
    }
}
