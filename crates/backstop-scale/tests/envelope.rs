//! The burst-envelope headroom and the start-up-aware scale-up cap, with their arithmetic.

use std::time::Duration;

mod support;

use support::{raw, secs};

use backstop_scale::{
    BurstEnvelope, BurstEnvelopeConfig, Decision, HeadroomScale, HpaConfig, MetricSample,
    Observation, Policy, Reading, Reason, Target, TargetTracking,
};

/// No stabilization and no rate limit, so the wrapper's own rules show.
fn raw_hpa() -> TargetTracking {
    raw(HpaConfig::default().with_bounds(1, 100))
}

/// 7 rps per replica, backlog metric `queue`, 180 s start-up, drained over 90 s, headroom
/// in rps (the arithmetic below reads plainer in demand units; the proportional default
/// has its own test).
fn config() -> BurstEnvelopeConfig {
    BurstEnvelopeConfig::default()
        .with_metric("rps", 7.0)
        .with_backlog_metric(Some("queue".to_owned()))
        .with_max_replicas(100)
        .with_scale(HeadroomScale::Absolute)
}

fn obs(at: u64, current: u32, ready: u32, rps: f64, queue: f64) -> Observation {
    Observation::new(secs(at), current, ready)
        .metric(MetricSample::new(
            "rps",
            Target::AverageValue(7.0),
            Reading::Total(rps),
        ))
        .metric(MetricSample::new(
            "queue",
            Target::AverageValue(7.0),
            Reading::Total(queue),
        ))
}

#[test]
fn the_headroom_is_the_quantile_of_recent_rises_over_one_start_up() {
    let mut policy = BurstEnvelope::new(raw_hpa(), config()).unwrap();
    // 7 rps for 10 minutes, then 35 rps: the rise over the 180 s before is 35 - 7 = 28 for
    // the 12 evaluations the jump stays within one start-up, 0 otherwise. The quantile is
    // taken once per start-up; the last, at 720 s over 49 samples, is at index
    // round(48 × 0.99) = 48, the largest: a rise of 28.
    for step in 0..=58u64 {
        let rps = if step < 40 { 7.0 } else { 35.0 };
        let replicas = if step < 40 { 1 } else { 9 };
        policy.decide(&obs(step * 15, replicas, replicas, rps, 0.0));
    }
    assert_eq!(policy.headroom(), 28.0);
    // At 7 rps again, 9 replicas (ceil((35 + 28) / 7)) stay while 35 rps is within the last
    // start-up (the floor comes down only with the last start-up's highest demand) ...
    let d = policy.recommend(&obs(59 * 15, 9, 9, 7.0, 0.0));
    assert_eq!((d.desired, d.reason), (9, Reason::BurstHeadroom));
    // ... and ceil((7 + 28) / 7) = 5 once it is not (the HPA alone would say 1).
    let mut later = policy.clone();
    for step in 59..=72u64 {
        later.decide(&obs(step * 15, 9, 9, 7.0, 0.0));
    }
    let d = later.recommend(&obs(73 * 15, 9, 9, 7.0, 0.0));
    assert_eq!((d.desired, d.reason), (5, Reason::BurstHeadroom));
}

#[test]
fn a_proportional_headroom_is_a_share_of_the_demand_now() {
    let config = config().with_scale(HeadroomScale::Proportional);
    assert_eq!(
        BurstEnvelopeConfig::default().scale,
        HeadroomScale::Proportional
    );
    let mut policy = BurstEnvelope::new(raw_hpa(), config.clone()).unwrap();
    // 7 rps, then 14: a rise of 7 from 7, kept as a share of 1.0; the largest share (the
    // quantile's index is the last, as in the test above).
    for step in 0..=58u64 {
        let rps = if step < 40 { 7.0 } else { 14.0 };
        policy.decide(&obs(step * 15, 2, 2, rps, 0.0));
    }
    assert_eq!(policy.headroom(), 1.0);
    // At 70 rps the headroom is 70: ceil((70 + 70) / 7) = 20 (in rps units it would be
    // ceil((70 + 7) / 7) = 11).
    let d = policy.recommend(&obs(59 * 15, 10, 10, 70.0, 0.0));
    assert_eq!((d.desired, d.reason), (20, Reason::BurstHeadroom));

    // A rise from nothing is measured from a tenth of one replica's load (0.7 rps): 0 → 7
    // is a share of 10, not an infinite one.
    let mut policy = BurstEnvelope::new(raw_hpa(), config).unwrap();
    for step in 0..=58u64 {
        let rps = if step < 40 { 0.0 } else { 7.0 };
        policy.decide(&obs(step * 15, 1, 1, rps, 0.0));
    }
    assert!(
        (policy.headroom() - 10.0).abs() < 1e-9,
        "{}",
        policy.headroom()
    );
    // At 7 rps: ceil((7 + 70) / 7) = 11 replicas, well below the 100 cap.
    let d = policy.recommend(&obs(59 * 15, 1, 1, 7.0, 0.0));
    assert_eq!(d.desired, 11);
}

/// The HPA's answer, from a policy that says it trusts its forecast.
struct Trusted(TargetTracking);

impl Policy for Trusted {
    fn recommend(&self, obs: &Observation) -> Decision {
        self.0.recommend(obs)
    }

    fn commit(&mut self, obs: &Observation, decision: &Decision) {
        self.0.commit(obs, decision);
    }

    fn apply_failed(&mut self, obs: &Observation, decision: &Decision) {
        self.0.apply_failed(obs, decision);
    }

    fn forecast_trusted(&self) -> bool {
        true
    }
}

#[test]
fn no_headroom_is_held_while_the_forecast_is_trusted() {
    // The burst of the first test, under a policy trusting its forecast: the headroom is
    // still learnt (for when the forecast stops being trusted), but not held.
    let mut policy = BurstEnvelope::new(Trusted(raw_hpa()), config()).unwrap();
    for step in 0..=58u64 {
        let rps = if step < 40 { 7.0 } else { 35.0 };
        let replicas = if step < 40 { 1 } else { 9 };
        policy.decide(&obs(step * 15, replicas, replicas, rps, 0.0));
    }
    assert_eq!(policy.headroom(), 28.0);
    assert!(policy.forecast_trusted());
    // ceil(7 / 7) = 1: the inner answer, where the untrusting envelope held 9.
    let d = policy.recommend(&obs(59 * 15, 9, 9, 7.0, 0.0));
    assert_eq!(d.desired, 1);
    assert_ne!(d.reason, Reason::BurstHeadroom);
}

#[test]
fn a_quiet_past_has_no_headroom() {
    let mut policy = BurstEnvelope::new(raw_hpa(), config()).unwrap();
    for step in 0..100u64 {
        policy.decide(&obs(step * 15, 1, 1, 3.0, 0.0));
    }
    assert_eq!(policy.headroom(), 0.0);
    // ceil(3 / 7) = 1: the HPA's answer, untouched.
    assert_eq!(policy.recommend(&obs(1500, 1, 1, 3.0, 0.0)).desired, 1);
}

#[test]
fn a_backlog_driven_scale_up_is_trimmed_to_what_the_new_replicas_will_need() {
    let policy = BurstEnvelope::new(raw_hpa(), config()).unwrap();
    // 1 ready replica, 14 rps, 700 queued. The HPA: queue ceil(700 / 7) = 100, rps 2 → 100.
    // The new replicas serve in 180 s; until then the ready replica takes 7 of the 14 rps, so
    // the backlog grows to 700 + 7 × 180 = 1960, drained over 90 s: 21.8 rps more. Needed:
    // ceil((14 + 0 headroom + 1960 / 90) / 7) = ceil(5.11) = 6.
    let d = policy.recommend(&obs(0, 1, 1, 14.0, 700.0));
    assert_eq!((d.desired, d.reason), (6, Reason::StartupCapped));
    // Without a backlog metric nothing is trimmed.
    let uncapped = BurstEnvelope::new(raw_hpa(), config().with_backlog_metric(None)).unwrap();
    assert_eq!(uncapped.recommend(&obs(0, 1, 1, 14.0, 700.0)).desired, 100);
    // A trim never turns a scale-up into a scale-down: 8 running, the HPA asks 100, 6 are
    // needed, 8 stay.
    assert_eq!(policy.recommend(&obs(0, 8, 1, 14.0, 700.0)).desired, 8);
}

/// Always forecasts 50 replicas.
struct Forecast;

impl Policy for Forecast {
    fn recommend(&self, obs: &Observation) -> Decision {
        Decision {
            at: obs.at,
            current: obs.current_replicas,
            desired: 50,
            recommendation: Some(50),
            reason: Reason::Predicted,
            proposals: Vec::new(),
        }
    }

    fn commit(&mut self, _: &Observation, _: &Decision) {}

    fn apply_failed(&mut self, _: &Observation, _: &Decision) {}
}

#[test]
fn a_forecast_scale_up_is_not_trimmed() {
    // The same backlog as above would trim to 6, but a forecast is already sized for the time
    // its replicas serve.
    let policy = BurstEnvelope::new(Forecast, config()).unwrap();
    let d = policy.recommend(&obs(0, 1, 1, 14.0, 700.0));
    assert_eq!((d.desired, d.reason), (50, Reason::Predicted));
}

#[test]
fn recommend_changes_nothing_and_a_failed_apply_still_learns_the_demand() {
    let mut policy = BurstEnvelope::new(raw_hpa(), config()).unwrap();
    policy.decide(&obs(0, 1, 1, 7.0, 0.0));
    let jump = obs(15, 1, 1, 70.0, 0.0);
    let first = policy.recommend(&jump);
    assert_eq!(policy.recommend(&jump), first);
    assert_eq!(policy.headroom(), 0.0);
    // The apply failed, but the demand was seen: 200 s later (a new quantile) the rise of 63
    // counts.
    policy.apply_failed(&jump, &first);
    policy.decide(&obs(200, 1, 1, 7.0, 0.0));
    assert_eq!(policy.headroom(), 63.0);
}

#[test]
fn the_envelope_is_validated() {
    let hpa = raw_hpa();
    let field = |config: BurstEnvelopeConfig| {
        BurstEnvelope::new(hpa.clone(), config)
            .unwrap_err()
            .field()
            .to_owned()
    };
    let quantile = BurstEnvelopeConfig {
        quantile: 1.5,
        ..config()
    };
    assert_eq!(field(quantile), "quantile");
    let drain = BurstEnvelopeConfig {
        drain_time: Duration::ZERO,
        ..config()
    };
    assert_eq!(field(drain), "drain_time");
    let lookback = BurstEnvelopeConfig {
        lookback: secs(30 * 86_400),
        ..config()
    };
    assert_eq!(field(lookback), "lookback");
    assert_eq!(
        field(config().with_metric("rps", 0.0)),
        "target_per_replica"
    );
    assert_eq!(
        field(config().with_backlog_metric(Some(String::new()))),
        "backlog_metric"
    );
}
