//! Stabilization windows and rate policies (the HPA's `behavior`).

use std::time::Duration;

use backstop_core::config::{ConfigError, Validate, ensure, ensure_duration};
use serde::{Deserialize, Serialize};

/// How a rate policy limits change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateKind {
    /// At most `value` replicas per period.
    Pods,
    /// At most `value` percent of the replicas at the start of the period.
    Percent,
}

/// One HPA scaling policy: at most `value` pods or percent per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RatePolicy {
    /// Pods or percent.
    pub kind: RateKind,
    /// The allowed change.
    pub value: u32,
    /// The period the change is measured over.
    #[serde(with = "backstop_core::duration::human")]
    pub period: Duration,
}

impl RatePolicy {
    /// At most `value` replicas per `period`.
    pub fn pods(value: u32, period: Duration) -> Self {
        Self {
            kind: RateKind::Pods,
            value,
            period,
        }
    }

    /// At most `value` percent per `period`.
    pub fn percent(value: u32, period: Duration) -> Self {
        Self {
            kind: RateKind::Percent,
            value,
            period,
        }
    }
}

/// Which policy wins when several apply (the HPA's `selectPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Select {
    /// The policy allowing the largest change (HPA default).
    #[default]
    Max,
    /// The policy allowing the smallest change.
    Min,
    /// No scaling in this direction.
    Disabled,
}

/// Stabilization window and rate policies for one direction (the HPA's `HPAScalingRules`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScalingRules {
    /// Recommendations within this window are considered (lowest for up, highest for down).
    #[serde(with = "backstop_core::duration::human")]
    pub stabilization_window: Duration,
    /// Rate policies; an empty list means no rate limit.
    pub policies: Vec<RatePolicy>,
    /// How the policies combine.
    pub select: Select,
}

impl ScalingRules {
    /// The HPA default for scale-up: no stabilization, the larger of +100 % or +4 pods per 15 s.
    pub fn default_up() -> Self {
        Self {
            stabilization_window: Duration::ZERO,
            policies: vec![
                RatePolicy::percent(100, Duration::from_secs(15)),
                RatePolicy::pods(4, Duration::from_secs(15)),
            ],
            select: Select::Max,
        }
    }

    /// The HPA default for scale-down: 300 s stabilization, −100 % per 15 s.
    pub fn default_down() -> Self {
        Self {
            stabilization_window: Duration::from_secs(300),
            policies: vec![RatePolicy::percent(100, Duration::from_secs(15))],
            select: Select::Max,
        }
    }

    backstop_core::config_setters! {

        self;
        /// Replaces the stabilization window.
        with_window(window: Duration) { stabilization_window = window }
        /// Replaces the rate policies.
        with_policies(policies: Vec<RatePolicy>) { policies = policies }
        /// Replaces the select rule.
        with_select(select: Select) { select = select }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for (i, p) in self.policies.iter().enumerate() {
            let field = format!("policies[{i}]");
            ensure(p.value > 0, &field, "value must be at least 1")?;
            ensure(
                !p.period.is_zero() && p.period <= Duration::from_secs(1800),
                &field,
                "period must be between 1s and 30m (as the HPA requires)",
            )?;
        }
        ensure(
            self.stabilization_window <= Duration::from_secs(3600),
            "stabilization_window",
            "must be at most 1h (as the HPA requires)",
        )
    }
}

impl Default for ScalingRules {
    fn default() -> Self {
        Self::default_up()
    }
}

/// Scale-up and scale-down behaviour plus an optional cooldown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Behavior {
    /// Rules when scaling up.
    pub scale_up: ScalingRules,
    /// Rules when scaling down.
    pub scale_down: ScalingRules,
    /// No change of any kind within this long after the last one (zero: none, the HPA default).
    #[serde(with = "backstop_core::duration::human")]
    pub cooldown: Duration,
}

impl Default for Behavior {
    fn default() -> Self {
        Self {
            scale_up: ScalingRules::default_up(),
            scale_down: ScalingRules::default_down(),
            cooldown: Duration::ZERO,
        }
    }
}

impl Validate for Behavior {
    fn validate(&self) -> Result<(), ConfigError> {
        ensure_duration("cooldown", self.cooldown)?;
        self.scale_up.validate().map_err(|e| e.within("scale_up"))?;
        self.scale_down
            .validate()
            .map_err(|e| e.within("scale_down"))
    }
}
