//! An inspectable snapshot of a policy's history: what the stabilization windows and rate
//! limits will read, and the conditions the HPA reports on its status.

use std::time::Duration;

use serde::Serialize;

use crate::decision::{Decision, Reason};

/// A replica count at a time: one recommendation in the stabilization window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StampedReplicas {
    /// When it was recorded.
    #[serde(with = "backstop_core::duration::human")]
    pub at: Duration,
    /// The replica count.
    pub replicas: u32,
}

/// A committed scale change, as the rate policies count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ScaleEvent {
    /// When it was committed.
    #[serde(with = "backstop_core::duration::human")]
    pub at: Duration,
    /// Replicas added (positive) or removed (negative).
    pub change: i64,
}

/// The HPA's status conditions, derived from the last committed decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[non_exhaustive]
pub struct ScaleConditions {
    /// `AbleToScale`: false while a cooldown holds every change.
    pub able_to_scale: bool,
    /// `ScalingActive`: false when no metric could be read or scaling from zero is disabled.
    pub scaling_active: bool,
    /// `ScalingLimited`: the recommendation was cut by the bounds or a rate policy.
    pub scaling_limited: bool,
}

impl ScaleConditions {
    pub(crate) fn of(last: Option<&Decision>) -> Self {
        let Some(d) = last else {
            return Self {
                able_to_scale: true,
                scaling_active: false,
                scaling_limited: false,
            };
        };
        Self {
            able_to_scale: d.reason != Reason::Cooldown,
            scaling_active: !matches!(d.reason, Reason::NoMetrics | Reason::ScalingDisabled),
            scaling_limited: matches!(
                d.reason,
                Reason::AboveMax
                    | Reason::BelowMin
                    | Reason::TooManyReplicas
                    | Reason::TooFewReplicas
                    | Reason::ScaleUpLimit
                    | Reason::ScaleDownLimit
            ),
        }
    }
}

/// What a policy remembers, as a `Serialize` snapshot: the stabilization window's
/// recommendations, the scale events the rate policies count, the last committed change, the
/// conditions, and the last decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ScaleState {
    /// Recommendations held for the stabilization windows, oldest first.
    pub recommendations: Vec<StampedReplicas>,
    /// Committed scale events within the longest rate-policy period, oldest first.
    pub events: Vec<ScaleEvent>,
    /// When the last committed change happened.
    #[serde(with = "backstop_core::duration::human_option")]
    pub last_change: Option<Duration>,
    /// The HPA-style conditions.
    pub conditions: ScaleConditions,
    /// Consecutive metric failures (queue policy; 0 for others).
    pub metric_failures: u32,
    /// The last committed decision.
    pub last: Option<Decision>,
}
