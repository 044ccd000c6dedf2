//! Adaptive sizing: grow `max_size` when callers wait too long, shrink it when peak
//! concurrency leaves much of it unused. A pure [`decide`] makes the policy testable.

use std::time::Duration;

use tokio::time::Instant;

use crate::config::AdaptivePoolConfig;
use crate::stats::{WaitSnapshot, WaitTimes};

/// One housekeeping sample.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub(crate) max_size: usize,
    pub(crate) in_use: usize,
    pub(crate) waiters: usize,
}

/// What one evaluation window saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Observed {
    pub(crate) max_size: usize,
    pub(crate) peak_in_use: usize,
    pub(crate) saw_waiters: bool,
    pub(crate) p95_wait: Duration,
    pub(crate) checkouts: u64,
}

/// The policy: a new size and the reason, or `None` to keep the current one.
pub(crate) fn decide(config: &AdaptivePoolConfig, seen: Observed) -> Option<(usize, String)> {
    let current = seen.max_size;
    if seen.checkouts > 0 && seen.p95_wait > config.target_wait && current < config.max_size {
        let size = (current + config.step).min(config.max_size);
        return Some((
            size,
            format!(
                "p95 wait {:?} above target {:?} (peak in use {})",
                seen.p95_wait, config.target_wait, seen.peak_in_use
            ),
        ));
    }
    let quiet = !seen.saw_waiters && seen.p95_wait <= config.target_wait;
    let unused = (seen.peak_in_use as f64) < current as f64 * config.shrink_below;
    if quiet && unused && current > config.min_size {
        // Keep one step of headroom above the observed peak.
        let size = (seen.peak_in_use + config.step).clamp(config.min_size, current - 1);
        return Some((
            size,
            format!(
                "peak in use {} below {:.0}% of max_size {}",
                seen.peak_in_use,
                config.shrink_below * 100.0,
                current
            ),
        ));
    }
    None
}

/// Collects samples over a window and applies [`decide`] when it ends.
#[derive(Debug)]
pub(crate) struct Adaptive {
    config: AdaptivePoolConfig,
    window_end: Option<Instant>,
    peak_in_use: usize,
    saw_waiters: bool,
    baseline: WaitSnapshot,
}

impl Adaptive {
    pub(crate) fn new(config: AdaptivePoolConfig, wait: &WaitTimes) -> Self {
        Self {
            config,
            window_end: None,
            peak_in_use: 0,
            saw_waiters: false,
            baseline: wait.snapshot(),
        }
    }

    pub(crate) fn observe(
        &mut self,
        now: Instant,
        sample: Window,
        wait: &WaitTimes,
    ) -> Option<(usize, String)> {
        self.peak_in_use = self.peak_in_use.max(sample.in_use);
        self.saw_waiters |= sample.waiters > 0;
        let end = *self
            .window_end
            .get_or_insert(now + self.config.evaluate_every);
        if now < end {
            return None;
        }
        let snapshot = wait.snapshot();
        let window = snapshot.since(&self.baseline);
        let seen = Observed {
            max_size: sample.max_size,
            peak_in_use: self.peak_in_use,
            saw_waiters: self.saw_waiters,
            p95_wait: window.quantile(0.95),
            checkouts: window.count(),
        };
        self.baseline = snapshot;
        self.window_end = Some(now + self.config.evaluate_every);
        self.peak_in_use = sample.in_use;
        self.saw_waiters = false;
        decide(&self.config, seen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seen(max_size: usize, peak: usize, waiters: bool, p95_ms: u64) -> Observed {
        Observed {
            max_size,
            peak_in_use: peak,
            saw_waiters: waiters,
            p95_wait: Duration::from_millis(p95_ms),
            checkouts: 100,
        }
    }

    #[test]
    fn grows_on_slow_waits_and_shrinks_when_idle() {
        let config = AdaptivePoolConfig {
            min_size: 2,
            max_size: 10,
            step: 2,
            ..Default::default()
        };
        let (size, reason) = decide(&config, seen(4, 4, true, 100)).unwrap();
        assert_eq!(size, 6);
        assert!(reason.contains("p95 wait"), "{reason}");
        let (size, reason) = decide(&config, seen(10, 1, false, 0)).unwrap();
        assert_eq!(size, 3);
        assert!(reason.contains("peak in use 1"), "{reason}");
        assert_eq!(decide(&config, seen(4, 3, false, 1)), None);
        assert_eq!(
            decide(&config, seen(10, 10, true, 100)),
            None,
            "already at the bound"
        );
    }

    proptest! {
        #[test]
        fn decisions_stay_within_bounds(
            min in 1usize..20, extra in 0usize..20, current_off in 0usize..40,
            peak in 0usize..60, waiters: bool, p95 in 0u64..200, step in 1usize..5,
        ) {
            let config = AdaptivePoolConfig { min_size: min, max_size: min + extra, step, ..Default::default() };
            let current = min + current_off.min(extra);
            if let Some((size, _)) = decide(&config, seen(current, peak.min(current), waiters, p95)) {
                prop_assert!((config.min_size..=config.max_size).contains(&size));
                prop_assert_ne!(size, current);
            }
        }
    }
}
