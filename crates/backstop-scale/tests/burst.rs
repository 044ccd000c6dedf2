//! The burst-aware hold: it learns how soon load comes back after a scale-down.

use std::time::Duration;

use backstop_scale::{
    Behavior, BurstHold, BurstHoldConfig, HpaConfig, MetricSample, Observation, Policy, Reading,
    ScalingRules, Target, TargetTracking,
};

fn rps(v: f64) -> MetricSample {
    MetricSample::new("rps", Target::AverageValue(10.0), Reading::Total(v))
}

fn held(config: BurstHoldConfig) -> BurstHold<TargetTracking> {
    let behavior = Behavior {
        scale_down: ScalingRules::default_down().with_window(Duration::ZERO),
        ..Behavior::default()
    };
    let hpa = TargetTracking::new(
        HpaConfig::default()
            .with_bounds(1, 20)
            .with_behavior(behavior),
    )
    .unwrap();
    BurstHold::new(hpa, config).unwrap()
}

/// Drives on-off load: `on` seconds at 100 rps, `off` seconds at 10 rps, for `cycles` cycles,
/// evaluating every 15 s; returns the replica count after each evaluation.
fn run(policy: &mut BurstHold<TargetTracking>, on: u64, off: u64, cycles: u64) -> Vec<u32> {
    let mut current = 10;
    let mut counts = Vec::new();
    let mut t = 0;
    while t < (on + off) * cycles {
        let load = if t % (on + off) < on { 100.0 } else { 10.0 };
        let obs = Observation::new(Duration::from_secs(t), current, current).metric(rps(load));
        current = policy.decide(&obs).desired;
        counts.push(current);
        t += 15;
    }
    counts
}

#[test]
fn short_lulls_lengthen_the_hold_and_long_ones_do_not() {
    // Lulls of 600 s from t=300: the last 10-replica recommendation (t=285) leaves the 300 s
    // minimum hold at t=585, so the fleet drops 10 → 1 then; the re-burst at t=900 records a gap
    // of 315 s, the hold becomes 315 + 600 = 915 s, and later lulls (600 s) never drop the fleet.
    let mut policy = held(BurstHoldConfig::default());
    let counts = run(&mut policy, 300, 600, 6);
    assert_eq!(policy.window(), Duration::from_secs(915));
    let last_cycles = &counts[counts.len() - 3 * 60..];
    assert!(last_cycles.iter().all(|&c| c == 10), "{last_cycles:?}");
    // Lulls of 3000 s: the gap (2700 s) plus the margin exceeds the 1800 s maximum, so holding
    // would cost more than restarting and the hold stays at its 300 s minimum.
    let mut policy = held(BurstHoldConfig::default());
    let counts = run(&mut policy, 300, 3000, 3);
    assert_eq!(policy.window(), Duration::from_secs(300));
    assert!(counts.contains(&1));
}

#[test]
fn the_hold_is_validated() {
    let config = BurstHoldConfig {
        max_window: Duration::from_secs(7200),
        ..BurstHoldConfig::default()
    };
    let hpa = TargetTracking::new(HpaConfig::default()).unwrap();
    assert_eq!(
        BurstHold::new(hpa.clone(), config).unwrap_err().field(),
        "max_window"
    );
    let config = BurstHoldConfig {
        gap_samples: 1 << 40,
        ..BurstHoldConfig::default()
    };
    assert_eq!(
        BurstHold::new(hpa, config).unwrap_err().field(),
        "gap_samples"
    );
}
