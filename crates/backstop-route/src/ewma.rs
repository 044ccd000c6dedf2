//! Peak-EWMA latency estimates (Finagle, Linkerd, `tower::load::PeakEwma`): quick to rise
//! on a slow response, slow to fall, and decaying while a target is idle so that it is
//! tried again.
//!
//! An idle estimate decays toward the default latency (what "unknown" costs), not toward
//! zero: an estimate decayed to nothing would make an idle target the cheapest of all, and
//! every request arriving before its first answer would pile onto it (Finagle and Envoy
//! add a penalty for that case; a floor at the default needs none).

use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The estimate never falls below a microsecond, so a cost is never zero.
const FLOOR_NANOS: f64 = 1_000.0;

/// One target's latency estimate, in nanoseconds.
///
/// Reads are lock-free (two relaxed loads; the pair may be torn by a racing update, which
/// only mixes two recent estimates); updates take a short lock so no observation is lost.
#[derive(Debug)]
pub(crate) struct PeakEwma {
    estimate: AtomicU64,
    stamp: AtomicU64,
    update: Mutex<()>,
    decay_nanos: f64,
    /// Where an estimate above it decays to while no answer arrives.
    rest: f64,
}

impl PeakEwma {
    /// An estimate starting at, and decaying toward, `default_nanos`.
    pub(crate) fn new(default_nanos: u64, decay_nanos: u64, now: u64) -> Self {
        let rest = (default_nanos as f64).max(FLOOR_NANOS);
        Self {
            estimate: AtomicU64::new(rest.to_bits()),
            stamp: AtomicU64::new(now),
            update: Mutex::new(()),
            decay_nanos: (decay_nanos as f64).max(1.0),
            rest,
        }
    }

    fn weight(&self, stamp: u64, now: u64) -> f64 {
        (-(now.saturating_sub(stamp) as f64) / self.decay_nanos).exp()
    }

    /// The estimate at `now`: the last one, an excess over the default decayed for the
    /// time since it was made; an estimate at or below the default stays (no evidence the
    /// target got slower).
    #[inline]
    pub(crate) fn get(&self, now: u64) -> f64 {
        let estimate = f64::from_bits(self.estimate.load(Ordering::Relaxed));
        if estimate <= self.rest {
            return estimate;
        }
        let stamp = self.stamp.load(Ordering::Relaxed);
        self.rest + (estimate - self.rest) * self.weight(stamp, now)
    }

    /// Records a latency: a peak replaces the estimate at once, a lower one is blended in
    /// by the time elapsed since the last update.
    pub(crate) fn observe(&self, latency_nanos: u64, now: u64) {
        let _guard = self.update.lock();
        let estimate = f64::from_bits(self.estimate.load(Ordering::Relaxed));
        let stamp = self.stamp.load(Ordering::Relaxed);
        let rtt = latency_nanos as f64;
        let next = if rtt > estimate {
            rtt
        } else {
            let w = self.weight(stamp, now);
            estimate * w + rtt * (1.0 - w)
        };
        self.estimate
            .store(next.max(FLOOR_NANOS).to_bits(), Ordering::Relaxed);
        self.stamp.store(now.max(stamp), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn peaks_at_once_and_falls_slowly() {
        let ewma = PeakEwma::new(100 * MS, 10_000 * MS, 0);
        ewma.observe(20 * MS, 10 * MS);
        assert!(
            ewma.get(10 * MS) > 99.0 * MS as f64,
            "one fast call barely moves it"
        );
        ewma.observe(500 * MS, 20 * MS);
        assert_eq!(ewma.get(20 * MS), 500.0 * MS as f64, "a peak replaces it");
        // Twenty seconds (two decay times) of 20 ms answers: still well above 20 ms, the
        // peak is forgotten cautiously; after sixty seconds it is forgotten.
        let at = |i: u64| 30 * MS + i * 20 * MS;
        for i in 0..1_000 {
            ewma.observe(20 * MS, at(i));
        }
        assert!(ewma.get(at(1_000)) > 60.0 * MS as f64);
        for i in 1_000..3_000 {
            ewma.observe(20 * MS, at(i));
        }
        let settled = ewma.get(at(3_000));
        assert!(
            settled < 25.0 * MS as f64,
            "settles near 20ms, got {settled}"
        );
    }

    #[test]
    fn an_idle_peak_decays_toward_the_default_and_a_low_estimate_stays() {
        let ewma = PeakEwma::new(100 * MS, 10_000 * MS, 0);
        ewma.observe(1_100 * MS, 0);
        let excess = ewma.get(30_000 * MS) - 100.0 * MS as f64;
        assert!(
            excess > 0.0 && excess < 1_000.0 * MS as f64 * 0.06,
            "e^-3 of the excess, got {excess}"
        );
        assert_eq!(ewma.get(u64::MAX), 100.0 * MS as f64);

        let fast = PeakEwma::new(100 * MS, 10_000 * MS, 0);
        for i in 1..=1_000 {
            fast.observe(5 * MS, i * 100 * MS);
        }
        let settled = fast.get(100_000 * MS);
        assert!(settled < 6.0 * MS as f64);
        assert_eq!(
            fast.get(u64::MAX),
            settled,
            "idle, a fast target stays fast"
        );
    }
}
