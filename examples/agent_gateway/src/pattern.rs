//! How the offered load changes over a run.

use std::fmt;
use std::str::FromStr;

/// The shape of the load the fleet offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pattern {
    /// The same rate throughout.
    Constant,
    /// From a quarter of the rate up to twice it.
    Ramp,
    /// Steady, with four times the rate between 30 % and 50 % of the run.
    Spike,
    /// Three times the rate throughout.
    Stress,
}

impl FromStr for Pattern {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "constant" => Ok(Pattern::Constant),
            "ramp" => Ok(Pattern::Ramp),
            "spike" => Ok(Pattern::Spike),
            "stress" => Ok(Pattern::Stress),
            other => Err(format!(
                "--pattern must be constant, ramp, spike or stress, not `{other}`"
            )),
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Pattern::Constant => "constant",
            Pattern::Ramp => "ramp",
            Pattern::Spike => "spike",
            Pattern::Stress => "stress",
        })
    }
}

impl Pattern {
    /// Load multiplier at `progress` (0 at the start, 1 at the end); agents think this
    /// many times less between calls.
    pub(crate) fn intensity(self, progress: f64) -> f64 {
        let progress = progress.clamp(0.0, 1.0);
        match self {
            Pattern::Constant => 1.0,
            Pattern::Ramp => 0.25 + 1.75 * progress,
            Pattern::Spike if (0.3..0.5).contains(&progress) => 4.0,
            Pattern::Spike => 1.0,
            Pattern::Stress => 3.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for pattern in [
            Pattern::Constant,
            Pattern::Ramp,
            Pattern::Spike,
            Pattern::Stress,
        ] {
            assert_eq!(pattern.to_string().parse::<Pattern>(), Ok(pattern));
        }
        let error = "burst".parse::<Pattern>().unwrap_err();
        assert!(error.contains("`burst`"), "{error}");
    }

    #[test]
    fn shapes() {
        assert_eq!(Pattern::Constant.intensity(0.7), 1.0);
        assert_eq!(Pattern::Ramp.intensity(0.0), 0.25);
        assert_eq!(Pattern::Ramp.intensity(1.0), 2.0);
        assert!(Pattern::Ramp.intensity(0.6) > Pattern::Ramp.intensity(0.4));
        assert_eq!(Pattern::Spike.intensity(0.2), 1.0);
        assert_eq!(Pattern::Spike.intensity(0.4), 4.0);
        assert_eq!(Pattern::Spike.intensity(0.5), 1.0);
        assert_eq!(Pattern::Stress.intensity(0.1), 3.0);
        assert_eq!(
            Pattern::Ramp.intensity(5.0),
            2.0,
            "progress past the end is clamped"
        );
    }
}
