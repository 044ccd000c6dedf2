//! A per-metric estimate of short-term measurement noise, used to widen the tolerance band.

use std::collections::HashMap;

use crate::config::Tolerance;

/// Weight of the newest squared change in the running mean (about a 10-sample memory).
const ALPHA: f64 = 0.1;

/// The widened band never reaches 1: a ratio of 2 (or 0) must always act.
pub(crate) const MAX_TOLERANCE: f64 = 0.9;

/// Tracks, per metric, the mean squared relative change of the demand (`ratio × replicas`)
/// between consecutive observations.
///
/// For independent noise of relative standard deviation σ around a level, consecutive
/// differences have variance 2σ², so `σ ≈ sqrt(msd / 2)`. Successive differences, unlike the
/// plain variance, ignore a slow trend (a diurnal ramp barely moves them) while white noise
/// moves them fully, which is exactly the component a tolerance band should absorb.
#[derive(Debug, Clone, Default)]
pub(crate) struct NoiseBand {
    metrics: HashMap<String, Estimate>,
}

#[derive(Debug, Clone, Copy)]
struct Estimate {
    last_demand: f64,
    msd: f64,
}

impl NoiseBand {
    /// Feeds one metric's demand and returns its current relative noise σ.
    pub(crate) fn observe(&mut self, metric: &str, demand: f64) -> f64 {
        if !(demand.is_finite() && demand > 0.0) {
            return self.sigma(metric);
        }
        match self.metrics.get_mut(metric) {
            Some(e) => {
                let change = (demand - e.last_demand) / e.last_demand;
                e.msd += ALPHA * (change * change - e.msd);
                e.last_demand = demand;
                (e.msd / 2.0).sqrt()
            }
            None => {
                self.metrics.insert(
                    metric.to_owned(),
                    Estimate {
                        last_demand: demand,
                        msd: 0.0,
                    },
                );
                0.0
            }
        }
    }

    /// The σ that [`NoiseBand::observe`] would return for this demand, without recording it.
    pub(crate) fn peek(&self, metric: &str, demand: f64) -> f64 {
        if !(demand.is_finite() && demand > 0.0) {
            return self.sigma(metric);
        }
        match self.metrics.get(metric) {
            Some(e) => {
                let change = (demand - e.last_demand) / e.last_demand;
                let msd = e.msd + ALPHA * (change * change - e.msd);
                (msd / 2.0).sqrt()
            }
            None => 0.0,
        }
    }

    fn sigma(&self, metric: &str) -> f64 {
        self.metrics
            .get(metric)
            .map_or(0.0, |e| (e.msd / 2.0).sqrt())
    }

    /// The band for a metric whose demand `ratio × replicas` is about to be observed: `base`
    /// widened to `k × σ`, when that is wider than `base` in some direction (and so may change
    /// the metric's proposal), from the σ [`NoiseBand::peek`] reports.
    pub(crate) fn widened(
        &self,
        metric: &str,
        ratio: f64,
        replicas: u32,
        base: Tolerance,
        k: f64,
    ) -> Option<Tolerance> {
        let sigma = self.peek(metric, ratio * f64::from(replicas));
        let widened = base.widened(Self::tolerance(0.0, k, sigma));
        base.is_wider(&widened).then_some(widened)
    }

    /// The tolerance for a metric: the configured one, widened to `k × σ` (capped).
    pub(crate) fn tolerance(base: f64, k: f64, sigma: f64) -> f64 {
        base.max((k * sigma).min(MAX_TOLERANCE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn white_noise_is_estimated_and_a_trend_is_not() {
        let mut band = NoiseBand::default();
        let mut rng = fastrand::Rng::with_seed(7);
        let mut sigma = 0.0;
        // Uniform ±20 % has σ = 0.2 / √3 ≈ 0.115 relative to the level.
        for _ in 0..2_000 {
            sigma = band.observe("noisy", 100.0 * (0.8 + 0.4 * rng.f64()));
        }
        assert!((0.08..0.16).contains(&sigma), "sigma {sigma}");
        let mut trend = 0.0;
        for i in 0..2_000 {
            trend = band.observe("ramp", 100.0 + f64::from(i) * 0.5);
        }
        assert!(trend < 0.01, "trend sigma {trend}");
        assert_eq!(band.observe("ramp", f64::NAN), trend);
        let peeked = band.peek("noisy", 150.0);
        assert_eq!(band.observe("noisy", 150.0), peeked);
    }

    #[test]
    fn tolerance_is_never_below_base_nor_at_one() {
        assert_eq!(NoiseBand::tolerance(0.1, 0.0, 5.0), 0.1);
        assert_eq!(NoiseBand::tolerance(0.1, 2.0, 0.2), 0.4);
        assert_eq!(NoiseBand::tolerance(0.1, 10.0, 5.0), MAX_TOLERANCE);
    }
}
