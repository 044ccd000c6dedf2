//! Convergence of each algorithm on a simulated backend (paused time): 50 ms per call up to
//! a knee of C concurrent calls, queueing beyond it (`adaptive_sim`).
//!
//! Bounds, stated in 100 ms windows: from an initial limit of 10 and of 500, every
//! algorithm is within ±20 % of C = 100 after at most 60 windows (AIMD, which climbs a
//! constant 2 per window: 80) and stays there for the rest of the phase; after C halves
//! (to 50) or doubles (to 200) mid-run it is within ±20 % of the new C after at most 60
//! windows (AIMD 80) and stays there. Arrivals are three times the backend's capacity.

mod adaptive_sim;

use adaptive_sim::{Backend, Contender, Phase, run};
use backstop_core::TokioClock;
use backstop_limit::{
    AdaptiveLimitConfig, AdaptiveLimiter, AimdConfig, Gradient2Config, LimitAlgorithm, VegasConfig,
};
use std::time::Duration;

const SERVICE: Duration = Duration::from_millis(50);
const WINDOW: Duration = Duration::from_millis(100);
/// Windows after which the limit must be within ±20 % of the knee: AIMD climbs by a
/// constant 2 per window, so it gets longer for the climb from 50 to 200.
fn settle_windows(name: &str) -> usize {
    if name.starts_with("aimd") { 80 } else { 60 }
}

fn algorithms() -> [(&'static str, LimitAlgorithm); 3] {
    [
        ("aimd", LimitAlgorithm::Aimd(AimdConfig::default())),
        ("vegas", LimitAlgorithm::Vegas(VegasConfig::default())),
        (
            "gradient2",
            LimitAlgorithm::Gradient2(Gradient2Config::default()),
        ),
    ]
}

fn limiter(algorithm: LimitAlgorithm, initial: u64) -> AdaptiveLimiter<TokioClock> {
    AdaptiveLimiter::with_clock(
        AdaptiveLimitConfig {
            algorithm,
            initial_limit: initial,
            max_limit: 1_000,
            window: WINDOW,
            ..Default::default()
        },
        TokioClock,
    )
    .unwrap()
}

/// Asserts that from window `SETTLE_WINDOWS` on every sampled limit is within ±20 % of
/// `knee`, printing the trace either way.
fn assert_settles(name: &str, limits: &[u64], knee: u64) {
    let low = knee as f64 * 0.8;
    let high = knee as f64 * 1.2;
    let first_inside = limits
        .iter()
        .position(|l| (low..=high).contains(&(*l as f64)))
        .unwrap_or(limits.len());
    println!("{name}: knee {knee}, first within ±20 % at window {first_inside}, trace {limits:?}");
    for (window, limit) in limits.iter().enumerate().skip(settle_windows(name)) {
        assert!(
            (low..=high).contains(&(*limit as f64)),
            "{name}: limit {limit} at window {window} outside ±20 % of {knee}: {limits:?}"
        );
    }
}

async fn converges_from(initial: u64) {
    for (name, algorithm) in algorithms() {
        let backend = Backend::new(100, SERVICE, 0.0);
        let limiter = limiter(algorithm, initial);
        let class = limiter.default_class();
        // Three times the backend's capacity (100 slots / 50 ms = 2,000 calls/s).
        let report = run(
            backend,
            Contender::Adaptive(limiter),
            1,
            vec![Phase {
                duration: Duration::from_secs(12),
                rates: vec![(class, 6_000.0)],
                resize: None,
            }],
            WINDOW,
        )
        .await;
        assert_settles(&format!("{name} from {initial}"), &report.limits[0], 100);
    }
}

#[tokio::test(start_paused = true)]
async fn every_algorithm_settles_within_60_windows_aimd_80_from_an_initial_limit_of_10() {
    converges_from(10).await;
}

#[tokio::test(start_paused = true)]
async fn every_algorithm_settles_within_60_windows_aimd_80_from_an_initial_limit_of_500() {
    converges_from(500).await;
}

#[tokio::test(start_paused = true)]
async fn every_algorithm_follows_the_knee_when_it_halves_and_doubles_within_60_windows_aimd_80() {
    for (name, algorithm) in algorithms() {
        let backend = Backend::new(100, SERVICE, 0.0);
        let limiter = limiter(algorithm, 20);
        let class = limiter.default_class();
        let phase = |resize| Phase {
            duration: Duration::from_secs(12),
            rates: vec![(class, 6_000.0)],
            resize,
        };
        let report = run(
            backend,
            Contender::Adaptive(limiter),
            1,
            vec![phase(None), phase(Some((100, 50))), phase(Some((50, 200)))],
            WINDOW,
        )
        .await;
        assert_settles(&format!("{name} at 100"), &report.limits[0], 100);
        assert_settles(&format!("{name} halved"), &report.limits[1], 50);
        assert_settles(&format!("{name} doubled"), &report.limits[2], 200);
    }
}
