//! Gradient2: multiply the limit by `tolerance × baseline / latency`, clamped to 0.5–1 so an
//! outlier window can at most halve it, add a little headroom, and smooth the result.
//!
//! Netflix's `Gradient2Limit` compares the short-term latency with a long exponential
//! average that follows load, so under sustained queueing its target drifts up with it.
//! Here the long-term latency is the guarded baseline, which does not drift; the rest
//! (gradient clamp, headroom, smoothing, no growth while app-limited) is Netflix's.

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
    if gradient >= 1.0 && w.app_limited(limit) && w.drops == 0 {
        return limit;
    }
    // A drop is the backend saying it is overloaded: treat the window as the worst gradient.
    let gradient = if w.drops > 0 {
        0.5f64.max(gradient * 0.9)
    } else {
        gradient
    };
    let headroom = config.queue_size.unwrap_or_else(|| limit.sqrt());
    let target = limit * gradient + headroom;
    limit * (1.0 - config.smoothing) + target * config.smoothing
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(mean_rtt: f64, drops: u64, max_in_flight: u64) -> WindowSummary {
        WindowSummary {
            mean_rtt,
            drops,
            max_in_flight,
        }
    }

    #[test]
    fn grows_by_headroom_without_queueing() {
        let c = Gradient2Config::default();
        assert_eq!(next_limit(&c, 100.0, &window(100.0, 0, 100), 100.0), 105.0);
        let fixed = Gradient2Config {
            queue_size: Some(4.0),
            smoothing: 1.0,
            ..c
        };
        assert_eq!(
            next_limit(&fixed, 100.0, &window(90.0, 0, 100), 100.0),
            104.0
        );
    }

    #[test]
    fn shrinks_with_latency_but_at_most_by_half() {
        let c = Gradient2Config {
            smoothing: 1.0,
            queue_size: Some(0.0),
            ..Default::default()
        };
        assert_eq!(next_limit(&c, 100.0, &window(125.0, 0, 100), 100.0), 80.0);
        assert_eq!(next_limit(&c, 100.0, &window(1_000.0, 0, 100), 100.0), 50.0);
    }

    #[test]
    fn holds_when_app_limited_and_shrinks_on_drops() {
        let c = Gradient2Config {
            smoothing: 1.0,
            queue_size: Some(0.0),
            ..Default::default()
        };
        assert_eq!(next_limit(&c, 100.0, &window(100.0, 0, 10), 100.0), 100.0);
        assert_eq!(next_limit(&c, 100.0, &window(100.0, 2, 10), 100.0), 90.0);
    }
}
