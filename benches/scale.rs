//! Cost of one autoscaling decision.
//!
//! `cargo bench --bench scale` — group `scale_decide`: one HPA decision over 3 metrics with a
//! full 300 s scale-down stabilization history (20 recommendations at the 15 s sync period) and
//! rate-policy events, contender `backstop` (no peer crate offers HPA decision logic; the
//! target is under 1 µs). Policy quality (SLO minutes, replica-hours) is printed by
//! `cargo run -p backstop-scale --release --example autoscale_sim`.

use std::hint::black_box;
use std::time::Duration;

use backstop_scale::{
    HpaConfig, MetricSample, Observation, Policy, Reading, Target, TargetTracking,
};
use criterion::{Criterion, criterion_group, criterion_main};

fn observation(at: Duration, step: u64) -> Observation {
    // Load oscillates so recommendations vary and the stabilization window does real work.
    let wave = (step % 8) as f64 * 10.0;
    Observation::new(at, 10, 10)
        .metric(MetricSample::new(
            "cpu",
            Target::Utilization(60.0),
            Reading::Average(40.0 + wave),
        ))
        .metric(MetricSample::new(
            "requests_per_second",
            Target::AverageValue(70.0),
            Reading::Total(500.0 + wave * 10.0),
        ))
        .metric(MetricSample::new(
            "queue_length",
            Target::AverageValue(5.0),
            Reading::Total(30.0 + wave),
        ))
}

fn scale_decide(c: &mut Criterion) {
    let mut group = c.benchmark_group("scale_decide");
    let mut hpa = TargetTracking::new(HpaConfig::default().with_bounds(1, 100))
        .expect("default config is valid");
    let interval = Duration::from_secs(15);
    let mut at = Duration::ZERO;
    let mut step = 0u64;
    // Fill the 300 s window.
    for _ in 0..21 {
        hpa.decide(&observation(at, step));
        at += interval;
        step += 1;
    }
    let mut observations: Vec<Observation> =
        (0..64).map(|i| observation(Duration::ZERO, i)).collect();
    group.bench_function("backstop", |b| {
        b.iter(|| {
            let obs = &mut observations[(step % 64) as usize];
            obs.at = at;
            let decision = hpa.decide(black_box(obs));
            at += interval;
            step += 1;
            black_box(decision)
        })
    });
    assert!(
        hpa.history_len() <= 22,
        "history stays bounded by the window"
    );
    group.finish();
}

criterion_group!(benches, scale_decide);
criterion_main!(benches);
