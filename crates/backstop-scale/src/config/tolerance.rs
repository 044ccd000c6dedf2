//! The tolerance band: when a metric's ratio is close enough to 1 that nothing changes.

use serde::{Deserialize, Serialize};

/// How a ratio is tested against the tolerance.
///
/// The two rules differ only at the band's edge: at a ratio of exactly `1 + tolerance` (1.10
/// with the default 0.1) the current rule holds while the 1.28 rule scales, because
/// `|1 − 1.1|` is `0.10000000000000009` in floating point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ToleranceRule {
    /// Current Kubernetes (`horizontal.go`): within tolerance when
    /// `1 − down ≤ ratio ≤ 1 + up`, with a tolerance per direction.
    #[default]
    Current,
    /// Kubernetes 1.28 and older: within tolerance when `|1 − ratio| ≤ tolerance`, where the
    /// tolerance is the one of the direction the ratio points to.
    Kubernetes128,
}

/// The resolved band a policy tests each ratio against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Tolerance {
    pub(crate) up: f64,
    pub(crate) down: f64,
    pub(crate) rule: ToleranceRule,
}

impl Tolerance {
    /// One tolerance for both directions under the current rule.
    pub(crate) fn symmetric(tolerance: f64) -> Self {
        Self {
            up: tolerance,
            down: tolerance,
            rule: ToleranceRule::Current,
        }
    }

    /// Whether `ratio` is close enough to 1 that nothing changes.
    pub(crate) fn within(&self, ratio: f64) -> bool {
        match self.rule {
            ToleranceRule::Current => 1.0 - self.down <= ratio && ratio <= 1.0 + self.up,
            ToleranceRule::Kubernetes128 => {
                let band = if ratio > 1.0 { self.up } else { self.down };
                (1.0 - ratio).abs() <= band
            }
        }
    }

    /// The band widened in both directions to at least `floor`.
    pub(crate) fn widened(self, floor: f64) -> Self {
        Self {
            up: self.up.max(floor),
            down: self.down.max(floor),
            rule: self.rule,
        }
    }

    /// Whether `other` is wider than `self` in some direction.
    pub(crate) fn is_wider(&self, other: &Self) -> bool {
        other.up > self.up || other.down > self.down
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_differ_exactly_at_the_edge() {
        let current = Tolerance::symmetric(0.1);
        let old = Tolerance {
            rule: ToleranceRule::Kubernetes128,
            ..current
        };
        // 1 + 0.1 = 1.1 ≤ 1.1 holds; |1 − 1.1| = 0.10000000000000009 > 0.1 does not.
        assert!(current.within(1.1));
        assert!(!old.within(1.1));
        assert!(current.within(0.9) && old.within(0.95));
        assert!(!current.within(1.11) && !old.within(1.11));
    }
}
