//! Gradient2: multiply the limit by `tolerance × baseline / latency`, clamped to 0.5–1 so an
//! outlier window can at most halve it, add a little headroom, and smooth the result.
//!
//! Netflix's `Gradient2Limit` compares the short-term latency with a long exponential
//! average that follows load, so under sustained queueing its target drifts up with it.
//! Here the long-term latency is the guarded baseline, which does not drift; the gradient
//! clamp, the smoothing and no growth while app-limited are Netflix's. Netflix updates on
//! every sample; once per window, growth without queueing probes by `√limit` (as Envoy), and
//! under queueing the gradient is applied to the calls actually in flight, so with priority
//! classes (whose idle shares keep in-flight below the limit) it still removes the queue.

use super::config::Gradient2Config;
use super::window::WindowSummary;

/// The limit after window `w`, given the current `limit` and the `baseline` (nanoseconds).
pub(crate) fn next_limit(
    config: &Gradient2Config,
    limit: f64,
    w: &WindowSummary,
    baseline: f64,
) -> f64 {
    let gradient = (config.tolerance * baseline / w.mean_rtt).clamp(0.5, 1.0);
    let target = if w.drops > 0 {
        // A drop is the backend saying it is overloaded.
        limit * 0.5f64.max(gradient * 0.9)
    } else if gradient >= 1.0 {
        // No queueing: probe upward by √limit (Envoy's headroom), unless the window did not
        // use the limit it has.
        if w.app_limited(limit) {
            return limit;
        }
        limit + limit.sqrt()
    } else {
        // Queueing: take the excess off the calls actually in flight (with priority classes
        // they can be fewer than the limit), keep `queue_size` of headroom.
        let in_flight = (w.max_in_flight as f64).min(limit);
        limit - in_flight * (1.0 - gradient) + config.queue_size
    };
    limit * (1.0 - config.smoothing) + target * config.smoothing
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adaptive::window::window;

    #[test]
    fn probes_by_root_limit_without_queueing_unless_app_limited() {
        let c = Gradient2Config {
            smoothing: 1.0,
            ..Default::default()
        };
        assert_eq!(next_limit(&c, 100.0, &window(100.0, 0, 100), 100.0), 110.0);
        assert_eq!(next_limit(&c, 100.0, &window(90.0, 0, 100), 100.0), 110.0);
        assert_eq!(next_limit(&c, 100.0, &window(100.0, 0, 10), 100.0), 100.0);
        let half = Gradient2Config::default();
        assert_eq!(
            next_limit(&half, 100.0, &window(100.0, 0, 100), 100.0),
            105.0
        );
    }

    #[test]
    fn removes_the_queue_of_the_calls_in_flight_but_at_most_half() {
        let c = Gradient2Config {
            smoothing: 1.0,
            queue_size: 0.0,
            tolerance: 1.0,
        };
        assert_eq!(next_limit(&c, 100.0, &window(125.0, 0, 100), 100.0), 80.0);
        assert_eq!(next_limit(&c, 100.0, &window(1_000.0, 0, 100), 100.0), 50.0);
        // Only 60 in flight (classes hold the rest): only their queue is removed.
        assert_eq!(next_limit(&c, 100.0, &window(125.0, 0, 60), 100.0), 88.0);
        let headroom = Gradient2Config {
            smoothing: 1.0,
            tolerance: 1.0,
            ..Default::default()
        };
        assert_eq!(
            next_limit(&headroom, 100.0, &window(125.0, 0, 100), 100.0),
            82.0
        );
    }

    #[test]
    fn drops_back_off_even_when_app_limited() {
        let c = Gradient2Config {
            smoothing: 1.0,
            ..Default::default()
        };
        assert_eq!(next_limit(&c, 100.0, &window(100.0, 2, 10), 100.0), 90.0);
    }
}
