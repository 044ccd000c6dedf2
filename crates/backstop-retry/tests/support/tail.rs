//! The heavy-tailed backend that `tests/hedge.rs` and `benches/retry_quality.rs` both
//! measure hedging on, and the hedging policy they measure.

use backstop_retry::{HedgeConfig, RetryConfig};
use std::sync::Mutex;
use std::time::Duration;

/// Log-normal latencies (median 100 ms, sigma 0.25) with 2 % stragglers at 20×, from a
/// seeded generator.
pub(crate) struct SeededLatency(Mutex<fastrand::Rng>);

impl SeededLatency {
    /// The same `seed` gives the same latencies in the same order.
    pub(crate) fn new(seed: u64) -> Self {
        Self(Mutex::new(fastrand::Rng::with_seed(seed)))
    }

    /// The next latency.
    pub(crate) fn next(&self) -> Duration {
        let mut rng = self.0.lock().expect("not poisoned");
        let (u1, u2) = (rng.f64().max(f64::MIN_POSITIVE), rng.f64());
        let normal = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        let straggler = if rng.f64() < 0.02 { 20.0 } else { 1.0 };
        Duration::from_secs_f64(0.100 * (0.25 * normal).exp() * straggler)
    }
}

/// One attempt, hedged after the observed 97th percentile of 1 000-call windows, with
/// hedges capped at 5 % of calls.
pub(crate) fn hedging() -> RetryConfig {
    RetryConfig {
        max_attempts: 1,
        hedge: Some(HedgeConfig {
            percentile: 0.97,
            window: 1_000,
            max_ratio: 0.05,
            min_delay: Duration::from_millis(1),
        }),
        ..RetryConfig::default()
    }
}
