//! Vegas: estimate the queue at the backend as `limit × (1 − baseline / latency)` and keep
//! it between `alpha` and `beta` (both scaled by `log10(limit)`, as Netflix's `VegasLimit`).
//!
//! Netflix updates Vegas on every sample; here it runs once per window, so a long queue
//! shrinks the limit by half the excess over `beta` at once (at least `log10(limit)`), not
//! one `log10(limit)` step per sample, and a drop backs off by 10 %. Netflix's periodic
//! baseline reset (a probe) is replaced by the guarded baseline.

use super::config::VegasConfig;
use super::window::WindowSummary;

/// The limit after window `w`, given the current `limit` and the `baseline` (nanoseconds).
pub(crate) fn next_limit(
    config: &VegasConfig,
    limit: f64,
    w: &WindowSummary,
    baseline: f64,
) -> f64 {
    let log = limit.log10().max(1.0);
    let target = if w.drops > 0 {
        limit * 0.9
    } else {
        let queue = (limit * (1.0 - baseline / w.mean_rtt)).max(0.0);
        let (alpha, beta) = (config.alpha * log, config.beta * log);
        if queue > beta {
            limit - ((queue - beta) / 2.0).max(log)
        } else if w.app_limited(limit) {
            return limit;
        } else if queue <= log {
            limit + beta
        } else if queue < alpha {
            limit + log
        } else {
            return limit;
        }
    };
    limit * (1.0 - config.smoothing) + target * config.smoothing
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adaptive::window::window;

    #[test]
    fn grows_fast_without_a_queue_and_slowly_with_a_short_one() {
        let c = VegasConfig::default();
        assert_eq!(next_limit(&c, 100.0, &window(100.0, 0, 100), 100.0), 108.0);
        // queue = 100 × (1 − 100/103) ≈ 2.9: between log10 (2) and alpha (4).
        assert_eq!(next_limit(&c, 100.0, &window(103.0, 0, 100), 100.0), 102.0);
        // queue ≈ 5.7: between alpha and beta, hold.
        assert_eq!(next_limit(&c, 100.0, &window(106.0, 0, 100), 100.0), 100.0);
    }

    #[test]
    fn shrinks_in_proportion_to_a_long_queue_and_on_drops() {
        let c = VegasConfig::default();
        // latency doubled: queue 50, beta 8, shrink by 21.
        assert_eq!(next_limit(&c, 100.0, &window(200.0, 0, 100), 100.0), 79.0);
        assert_eq!(next_limit(&c, 100.0, &window(100.0, 3, 100), 100.0), 90.0);
    }

    #[test]
    fn does_not_grow_when_app_limited() {
        let c = VegasConfig::default();
        assert_eq!(next_limit(&c, 100.0, &window(100.0, 0, 10), 100.0), 100.0);
    }
}
