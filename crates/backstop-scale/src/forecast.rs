//! Forecasters: seasonal-naive, additive Holt-Winters, and a linear trend.

use std::collections::VecDeque;

use crate::config::ForecastModel;
use crate::recent::push_recent;

/// A one-dimensional forecaster fed one sample per interval.
pub trait Forecaster: Send {
    /// Feeds the next sample.
    fn observe(&mut self, value: f64);
    /// The forecast `steps` samples after the last one (`steps >= 1`), once enough history exists.
    fn forecast(&self, steps: usize) -> Option<f64>;

    /// The largest finite forecast over `from..=to` steps ahead.
    fn forecast_peak(&self, from: usize, to: usize) -> Option<f64> {
        (from..=to)
            .filter_map(|h| self.forecast(h))
            .filter(|v| v.is_finite())
            .reduce(f64::max)
    }
}

/// Builds the forecaster a [`ForecastModel`] names.
pub fn build(model: ForecastModel, season: usize) -> Box<dyn Forecaster> {
    match model {
        ForecastModel::SeasonalNaive => Box::new(SeasonalNaive::new(season)),
        ForecastModel::HoltWinters { alpha, beta, gamma } => {
            Box::new(HoltWinters::new(season, alpha, beta, gamma))
        }
        ForecastModel::LinearTrend { window } => Box::new(LinearTrend::new(window)),
    }
}

/// The value one season ago (the last full season repeats).
#[derive(Debug, Clone)]
pub struct SeasonalNaive {
    season: usize,
    history: VecDeque<f64>,
}

impl SeasonalNaive {
    /// A forecaster for a season of `season` samples (at least 1).
    pub fn new(season: usize) -> Self {
        let season = season.max(1);
        Self {
            season,
            history: VecDeque::with_capacity(season),
        }
    }
}

impl Forecaster for SeasonalNaive {
    fn observe(&mut self, value: f64) {
        push_recent(&mut self.history, self.season, value);
    }

    fn forecast(&self, steps: usize) -> Option<f64> {
        if self.history.len() < self.season || steps == 0 {
            return None;
        }
        // history[0] is the sample one season before the next one.
        self.history.get((steps - 1) % self.season).copied()
    }
}

/// Additive Holt-Winters (triple exponential smoothing).
///
/// The first season initializes level (its mean) and the seasonal offsets; trend starts at zero.
#[derive(Debug, Clone)]
pub struct HoltWinters {
    season: usize,
    alpha: f64,
    beta: f64,
    gamma: f64,
    warmup: Vec<f64>,
    level: f64,
    trend: f64,
    seasonal: Vec<f64>,
    /// Index into `seasonal` of the next sample's slot.
    next: usize,
    ready: bool,
}

impl HoltWinters {
    /// A forecaster for a season of `season` samples with the given smoothing factors.
    pub fn new(season: usize, alpha: f64, beta: f64, gamma: f64) -> Self {
        let season = season.max(1);
        Self {
            season,
            alpha,
            beta,
            gamma,
            warmup: Vec::with_capacity(season),
            level: 0.0,
            trend: 0.0,
            seasonal: vec![0.0; season],
            next: 0,
            ready: false,
        }
    }
}

impl Forecaster for HoltWinters {
    fn observe(&mut self, value: f64) {
        if !self.ready {
            self.warmup.push(value);
            if self.warmup.len() == self.season {
                self.level = self.warmup.iter().sum::<f64>() / self.season as f64;
                for (s, x) in self.seasonal.iter_mut().zip(&self.warmup) {
                    *s = x - self.level;
                }
                self.warmup = Vec::new();
                self.ready = true;
            }
            return;
        }
        let s_old = self.seasonal[self.next];
        let level_old = self.level;
        self.level = self.alpha * (value - s_old) + (1.0 - self.alpha) * (level_old + self.trend);
        self.trend = self.beta * (self.level - level_old) + (1.0 - self.beta) * self.trend;
        self.seasonal[self.next] = self.gamma * (value - self.level) + (1.0 - self.gamma) * s_old;
        self.next = (self.next + 1) % self.season;
    }

    fn forecast(&self, steps: usize) -> Option<f64> {
        if !self.ready || steps == 0 {
            return None;
        }
        let slot = (self.next + steps - 1) % self.season;
        Some(self.level + steps as f64 * self.trend + self.seasonal[slot])
    }
}

/// The largest `linear_trend` window (samples): a day of 1-second samples is 86,400.
pub const MAX_TREND_WINDOW: usize = 1 << 17;

/// A least-squares line over the last `window` samples, extrapolated.
#[derive(Debug, Clone)]
pub struct LinearTrend {
    window: usize,
    history: VecDeque<f64>,
}

impl LinearTrend {
    /// A forecaster fitting the last `window` samples (2 to [`MAX_TREND_WINDOW`], clamped).
    pub fn new(window: usize) -> Self {
        // Clamped even if the config's bound was bypassed, and grown as samples arrive, so
        // the window setting alone never allocates.
        let window = window.clamp(2, MAX_TREND_WINDOW);
        Self {
            window,
            history: VecDeque::new(),
        }
    }
}

impl Forecaster for LinearTrend {
    fn observe(&mut self, value: f64) {
        push_recent(&mut self.history, self.window, value);
    }

    fn forecast(&self, steps: usize) -> Option<f64> {
        let n = self.history.len();
        if n < 2 || steps == 0 {
            return None;
        }
        let nf = n as f64;
        let mean_x = (nf - 1.0) / 2.0;
        let mean_y = self.history.iter().sum::<f64>() / nf;
        let (mut sxy, mut sxx) = (0.0, 0.0);
        for (i, y) in self.history.iter().enumerate() {
            let dx = i as f64 - mean_x;
            sxy += dx * (y - mean_y);
            sxx += dx * dx;
        }
        let slope = sxy / sxx;
        Some(mean_y + slope * (nf - 1.0 + steps as f64 - mean_x))
    }

    fn forecast_peak(&self, from: usize, to: usize) -> Option<f64> {
        // A line peaks at one end of the range: two fits instead of one per step.
        let ends = [self.forecast(from), self.forecast(to)];
        ends.into_iter()
            .flatten()
            .filter(|v| v.is_finite())
            .reduce(f64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal(t: usize, season: usize) -> f64 {
        let phase = t as f64 / season as f64 * std::f64::consts::TAU;
        100.0 + 40.0 * phase.sin() + 15.0 * (3.0 * phase).cos()
    }

    fn max_relative_error(f: &mut dyn Forecaster, season: usize, lead: usize) -> f64 {
        for t in 0..season * 3 {
            f.observe(signal(t, season));
        }
        (1..=lead)
            .map(|h| {
                let actual = signal(season * 3 + h - 1, season);
                (f.forecast(h).unwrap() - actual).abs() / actual
            })
            .fold(0.0, f64::max)
    }

    #[test]
    fn seasonal_naive_repeats_the_season_exactly() {
        let mut f = SeasonalNaive::new(96);
        assert!(f.forecast(1).is_none());
        assert!(max_relative_error(&mut f, 96, 96) < 1e-12);
    }

    #[test]
    fn holt_winters_recovers_a_seasonal_signal_within_one_percent() {
        let mut f = HoltWinters::new(96, 0.2, 0.01, 0.3);
        assert!(max_relative_error(&mut f, 96, 48) < 0.01);
    }

    #[test]
    fn holt_winters_follows_a_trending_season_within_five_percent() {
        let season = 48;
        let mut f = HoltWinters::new(season, 0.3, 0.1, 0.3);
        let value = |t: usize| signal(t, season) + 0.2 * t as f64;
        for t in 0..season * 12 {
            f.observe(value(t));
        }
        for h in 1..=12 {
            let actual = value(season * 12 + h - 1);
            let err = (f.forecast(h).unwrap() - actual).abs() / actual;
            assert!(err < 0.05, "h={h} err={err}");
        }
    }

    #[test]
    fn linear_trend_extrapolates_a_ramp_exactly() {
        let mut f = LinearTrend::new(10);
        for t in 0..30 {
            f.observe(5.0 + 2.0 * t as f64);
        }
        assert!((f.forecast(1).unwrap() - 65.0).abs() < 1e-9);
        assert!((f.forecast(10).unwrap() - 83.0).abs() < 1e-9);
    }
}
