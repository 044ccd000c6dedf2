//! Scheduled windows raise any policy's answer while open, and only then.

use std::time::Duration;

use backstop_scale::{
    FixedPolicy, HpaConfig, MetricSample, Observation, Policy, Reading, Reason, ScheduleConfig,
    Scheduled, Target, TargetTracking,
};

const HOUR: Duration = Duration::from_secs(3600);

#[test]
fn a_window_sets_a_floor_and_wraps_past_midnight() {
    // 22:00 for 4 hours (to 02:00) at least 5; the driver's origin is 21:00.
    let schedule = ScheduleConfig {
        origin: 21 * HOUR,
        ..ScheduleConfig::default()
    }
    .with_window(22 * HOUR, 4 * HOUR, 5);
    let mut policy = Scheduled::new(FixedPolicy { replicas: 1 }, schedule).unwrap();
    let at = |h: u32| Observation::new(h * HOUR, 1, 1);
    // at = 0 h is 21:00 (closed), 1 h is 22:00 (open), 4 h is 01:00 (open), 5 h is 02:00
    // (closed: the window is [22:00, 02:00)), 25 h is 22:00 the next day (open).
    let got: Vec<u32> = [0, 1, 4, 5, 25]
        .iter()
        .map(|&h| policy.decide(&at(h)).desired)
        .collect();
    assert_eq!(got, vec![1, 5, 5, 1, 5]);
    assert_eq!(policy.decide(&at(1)).reason, Reason::Scheduled);
}

#[test]
fn a_window_never_lowers_the_inner_answer_and_the_inner_history_stays_true() {
    let schedule = ScheduleConfig::default().with_window(Duration::ZERO, HOUR, 3);
    let hpa = TargetTracking::new(HpaConfig::default().with_bounds(1, 20)).unwrap();
    let mut policy = Scheduled::new(hpa, schedule).unwrap();
    let rps = |v: f64| MetricSample::new("rps", Target::AverageValue(10.0), Reading::Average(v));
    // 4 replicas at 20 against 10: the HPA wants 8, above the floor of 3.
    let d = policy.decide(&Observation::new(Duration::ZERO, 4, 4).metric(rps(20.0)));
    assert_eq!(d.desired, 8);
    assert_eq!(policy.inner().state().events[0].change, 4);
}

#[test]
fn schedules_are_validated() {
    let bad = ScheduleConfig::default().with_window(25 * HOUR, HOUR, 2);
    assert_eq!(
        Scheduled::new(FixedPolicy { replicas: 1 }, bad)
            .unwrap_err()
            .field(),
        "windows[0].start"
    );
    let bad = ScheduleConfig {
        period: Duration::ZERO,
        ..ScheduleConfig::default()
    };
    assert_eq!(
        Scheduled::new(FixedPolicy { replicas: 1 }, bad)
            .unwrap_err()
            .field(),
        "period"
    );
}
