//! The latency baseline every algorithm compares a window against, guarded against the
//! anchors' traps.
//!
//! - **No probe.** Envoy measures its minimum RTT by pinning concurrency to a few calls,
//!   which refused traffic (envoy #8337). Here the baseline comes from ordinary windows.
//! - **No upward drift under load.** A minimum measured while the backend queues is higher
//!   than the true one, and an algorithm that trusts it admits more, which queues more
//!   (envoy PR #11579, Uber's "ever-drifting target latency"). The baseline falls at once
//!   to a lower smoothed window mean, but rises only from windows where the limiter was not
//!   the bottleneck (under half the limit in use, so no self-inflicted queue), or after
//!   `recalibrate_after` windows at the floor (the backend itself became slower, Envoy's
//!   own later fix, PR #10647), and then only part of the way per window.
//! - **No noise chasing.** It follows window means (not single samples: a ±30 % jitter
//!   would put a per-sample minimum 30 % low), smoothed over windows.

/// Weight of the newest window in the smoothed mean.
const SMOOTHING: f64 = 0.2;
/// Fraction of the gap to a higher smoothed mean the baseline closes per qualifying window.
const RISE: f64 = 0.1;

#[derive(Debug, Default)]
pub(crate) struct Baseline {
    smoothed: Option<f64>,
    value: Option<f64>,
    windows_at_floor: u32,
}

impl Baseline {
    /// The baseline in nanoseconds, once one window has been measured.
    pub(crate) fn get(&self) -> Option<f64> {
        self.value
    }

    /// Takes one window's mean latency in. `unqueued` says the window was app-limited;
    /// `at_floor` that the limit sat at its minimum.
    pub(crate) fn observe(
        &mut self,
        mean_rtt: f64,
        unqueued: bool,
        at_floor: bool,
        recalibrate_after: u32,
    ) {
        if !(mean_rtt.is_finite() && mean_rtt > 0.0) {
            return;
        }
        let smoothed = match self.smoothed {
            Some(previous) => previous + SMOOTHING * (mean_rtt - previous),
            None => mean_rtt,
        };
        self.smoothed = Some(smoothed);
        self.windows_at_floor = if at_floor {
            self.windows_at_floor.saturating_add(1)
        } else {
            0
        };
        self.value = Some(match self.value {
            None => smoothed,
            Some(value) if smoothed <= value => smoothed,
            Some(value) if unqueued || self.windows_at_floor >= recalibrate_after => {
                value + RISE * (smoothed - value)
            }
            Some(value) => value,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn falls_at_once_and_never_rises_under_load() {
        let mut b = Baseline::default();
        b.observe(100.0, false, false, 5);
        assert_eq!(b.get(), Some(100.0));
        for _ in 0..1_000 {
            b.observe(150.0, false, false, 5);
        }
        assert_eq!(b.get(), Some(100.0), "sustained queueing does not move it");
        for _ in 0..5 {
            b.observe(20.0, false, false, 5);
        }
        let fallen = b.get().unwrap();
        assert!(fallen < 65.0, "the smoothed mean fell below it: {fallen}");
    }

    #[test]
    fn rises_slowly_when_unqueued_or_stuck_at_the_floor() {
        let mut b = Baseline::default();
        b.observe(100.0, false, false, 5);
        b.observe(200.0, true, false, 5);
        let once = b.get().unwrap();
        assert!(once > 100.0 && once < 120.0, "{once}");
        let mut c = Baseline::default();
        c.observe(100.0, false, true, 3);
        c.observe(200.0, false, true, 3);
        assert_eq!(c.get(), Some(100.0), "not yet at the floor long enough");
        for _ in 0..100 {
            c.observe(200.0, false, true, 3);
        }
        assert!(c.get().unwrap() > 190.0);
    }

    #[test]
    fn ignores_empty_windows() {
        let mut b = Baseline::default();
        b.observe(0.0, true, false, 5);
        b.observe(f64::NAN, true, false, 5);
        assert_eq!(b.get(), None);
    }
}
