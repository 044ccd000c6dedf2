//! Load traces for the simulator: built-in shapes generated deterministically, or CSV.

use std::time::Duration;

use serde::Serialize;

use crate::error::TraceError;

/// Arrival rate (requests per second) over time, one value per `step`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trace {
    /// The trace's name, echoed in reports.
    pub name: String,
    /// Time each rate holds for.
    #[serde(with = "backstop_core::duration::human")]
    pub step: Duration,
    /// Arrival rates, requests per second.
    pub rates: Vec<f64>,
}

const DAY: u64 = 86_400;
const STEP: Duration = Duration::from_secs(60);

/// Business-hours demand for minute `m` of a day: a quiet night, a steep morning ramp,
/// a lunch dip, and an evening decline. Peak 1.0, night about 0.1.
fn business_day(minute: u64) -> f64 {
    let h = (minute % 1440) as f64 / 60.0;
    let smooth = |x: f64| {
        let x = x.clamp(0.0, 1.0);
        x * x * (3.0 - 2.0 * x)
    };
    let morning = smooth((h - 8.5) / 0.5);
    let evening = 1.0 - smooth((h - 17.0) / 3.0);
    let lunch = 1.0 - 0.25 * (-((h - 12.5) / 0.5).powi(2)).exp();
    0.1 + 0.9 * morning * evening * lunch
}

impl Trace {
    /// A trace from explicit rates.
    pub fn new(name: impl Into<String>, step: Duration, rates: Vec<f64>) -> Self {
        Self {
            name: name.into(),
            step,
            rates,
        }
    }

    /// How long the trace lasts.
    pub fn duration(&self) -> Duration {
        self.step * u32::try_from(self.rates.len()).unwrap_or(u32::MAX)
    }

    /// The highest rate.
    pub fn peak(&self) -> f64 {
        self.rates.iter().copied().fold(0.0, f64::max)
    }

    /// The rate at `at` (held constant through each step; zero past the end).
    pub fn rate_at(&self, at: Duration) -> f64 {
        if self.step.is_zero() {
            return 0.0;
        }
        let i = (at.as_nanos() / self.step.as_nanos()) as usize;
        self.rates.get(i).copied().unwrap_or(0.0)
    }

    fn minutes(days: u32) -> u64 {
        u64::from(days) * DAY / 60
    }

    /// `days` business days peaking at `peak` requests per second, with ±3 % deterministic noise.
    pub fn diurnal(days: u32, peak: f64, seed: u64) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let rates = (0..Self::minutes(days))
            .map(|m| peak * business_day(m) * (0.97 + 0.06 * rng.f64()))
            .collect();
        Self::new("diurnal", STEP, rates)
    }

    /// [`Trace::diurnal`] plus a daily scheduled burst (a 20-minute batch of agent jobs at
    /// 14:00 that adds 80 % of peak), the recurring kind a forecaster can learn.
    pub fn diurnal_spike(days: u32, peak: f64, seed: u64) -> Self {
        let mut trace = Self::diurnal(days, peak, seed);
        for (m, r) in trace.rates.iter_mut().enumerate() {
            let minute_of_day = m % 1440;
            if (14 * 60..14 * 60 + 20).contains(&minute_of_day) {
                *r += 0.8 * peak;
            }
        }
        trace.name = "diurnal_spike".to_owned();
        trace
    }

    /// A flat base of 20 % of peak with unannounced bursts to full peak at random times.
    pub fn spike(days: u32, peak: f64, seed: u64) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let total = Self::minutes(days);
        let mut rates = vec![0.2 * peak; total as usize];
        let bursts = u64::from(days) * 6;
        for _ in 0..bursts {
            let start = rng.u64(0..total.saturating_sub(30).max(1)) as usize;
            for r in rates.iter_mut().skip(start).take(15) {
                *r = peak;
            }
        }
        Self::new("spike", STEP, rates)
    }

    /// A linear ramp from 10 % to 100 % of peak over the whole trace.
    pub fn ramp(days: u32, peak: f64) -> Self {
        let total = Self::minutes(days).max(1);
        let rates = (0..total)
            .map(|m| peak * (0.1 + 0.9 * m as f64 / total as f64))
            .collect();
        Self::new("ramp", STEP, rates)
    }

    /// 25 % of peak, stepping to 100 % for the middle third of every day.
    pub fn step_change(days: u32, peak: f64) -> Self {
        let rates = (0..Self::minutes(days))
            .map(|m| {
                let minute = m % 1440;
                if (480..960).contains(&minute) {
                    peak
                } else {
                    0.25 * peak
                }
            })
            .collect();
        Self::new("step", STEP, rates)
    }

    /// 60 % of peak with heavy deterministic noise (uniform ±40 %).
    pub fn noisy(days: u32, peak: f64, seed: u64) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let rates = (0..Self::minutes(days))
            .map(|_| peak * 0.6 * (0.6 + 0.8 * rng.f64()))
            .collect();
        Self::new("noisy", STEP, rates)
    }

    /// Every built-in trace: diurnal, diurnal_spike, spike, ramp, step, noisy.
    pub fn builtins(days: u32, peak: f64, seed: u64) -> Vec<Self> {
        vec![
            Self::diurnal(days, peak, seed),
            Self::diurnal_spike(days, peak, seed),
            Self::spike(days, peak, seed),
            Self::ramp(days, peak),
            Self::step_change(days, peak),
            Self::noisy(days, peak, seed),
        ]
    }

    /// Parses `time,rate` lines (seconds from start, requests per second). A header line and
    /// blank lines are skipped; times must increase by a constant step.
    pub fn from_csv(name: impl Into<String>, text: &str) -> Result<Self, TraceError> {
        let mut points = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || (i == 0 && line.chars().any(char::is_alphabetic)) {
                continue;
            }
            let line_no = i + 1;
            let (t, r) = line
                .split_once(',')
                .ok_or(TraceError::Malformed { line: line_no })?;
            let t: f64 = t
                .trim()
                .parse()
                .map_err(|_| TraceError::Malformed { line: line_no })?;
            let r: f64 = r
                .trim()
                .parse()
                .map_err(|_| TraceError::Malformed { line: line_no })?;
            if !(t.is_finite() && t >= 0.0 && r.is_finite() && r >= 0.0) {
                return Err(TraceError::Negative { line: line_no });
            }
            points.push((line_no, t, r));
        }
        if points.len() < 2 {
            return Err(TraceError::TooShort);
        }
        let step = points[1].1 - points[0].1;
        if step <= 0.0 {
            return Err(TraceError::UnevenStep { line: points[1].0 });
        }
        for w in points.windows(2) {
            if ((w[1].1 - w[0].1) - step).abs() > 1e-6 * step.max(1.0) {
                return Err(TraceError::UnevenStep { line: w[1].0 });
            }
        }
        Ok(Self::new(
            name,
            Duration::from_secs_f64(step),
            points.into_iter().map(|p| p.2).collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_deterministic_and_bounded() {
        let a = Trace::builtins(2, 100.0, 7);
        let b = Trace::builtins(2, 100.0, 7);
        assert_eq!(a, b);
        for t in &a {
            assert_eq!(t.rates.len(), 2 * 1440, "{}", t.name);
            assert!(
                t.rates.iter().all(|r| *r >= 0.0 && *r <= 185.0),
                "{}",
                t.name
            );
            assert!(t.peak() > 80.0, "{}", t.name);
        }
    }

    #[test]
    fn csv_round_trip_and_errors() {
        let t = Trace::from_csv("x", "time,rate\n0,1.5\n60,2\n120,3\n").unwrap();
        assert_eq!(t.step, Duration::from_secs(60));
        assert_eq!(t.rates, vec![1.5, 2.0, 3.0]);
        assert_eq!(t.rate_at(Duration::from_secs(61)), 2.0);
        for (csv, error) in [
            ("0,1\n60,x\n", TraceError::Malformed { line: 2 }),
            ("0,1\n60,2\n180,3\n", TraceError::UnevenStep { line: 3 }),
            ("0,-1\n60,2", TraceError::Negative { line: 1 }),
            ("0,1\n", TraceError::TooShort),
        ] {
            assert_eq!(Trace::from_csv("x", csv), Err(error), "{csv:?}");
        }
    }
}
