//! AIMD: grow by a constant while calls are fast, back off by a ratio when they drop or slow.
//!
//! As Netflix's `AIMDLimit`, with its absolute `timeout` and, in addition, a tolerance
//! relative to the guarded baseline, so overload is seen from latency alone (a queueing
//! backend rarely drops).

use super::config::AimdConfig;
use super::window::WindowSummary;

/// The limit after window `w`, given the current `limit` and the `baseline` (nanoseconds).
pub(crate) fn next_limit(config: &AimdConfig, limit: f64, w: &WindowSummary, baseline: f64) -> f64 {
    let slow = w.mean_rtt > config.tolerance * baseline
        || config
            .timeout
            .is_some_and(|timeout| w.mean_rtt > timeout.as_nanos() as f64);
    if w.drops > 0 || slow {
        limit * config.backoff_ratio
    } else if w.app_limited(limit) {
        limit
    } else {
        limit + config.increase
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adaptive::window::window;
    use std::time::Duration;

    #[test]
    fn grows_when_busy_and_fast_holds_when_app_limited() {
        let c = AimdConfig::default();
        assert_eq!(next_limit(&c, 20.0, &window(100.0, 0, 20), 100.0), 22.0);
        assert_eq!(next_limit(&c, 20.0, &window(100.0, 0, 5), 100.0), 20.0);
    }

    #[test]
    fn backs_off_on_drops_tolerance_and_timeout() {
        let c = AimdConfig {
            timeout: Some(Duration::from_nanos(500)),
            ..Default::default()
        };
        assert_eq!(next_limit(&c, 20.0, &window(100.0, 1, 20), 100.0), 18.0);
        assert_eq!(next_limit(&c, 20.0, &window(120.0, 0, 20), 100.0), 18.0);
        assert_eq!(next_limit(&c, 20.0, &window(600.0, 0, 20), 1_000.0), 18.0);
    }
}
