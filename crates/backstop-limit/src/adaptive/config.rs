//! Settings of an [`AdaptiveLimiter`](super::AdaptiveLimiter): plain serde data, validated
//! once into a [`ConfigError`] naming the field.

use backstop_core::config::{
    ConfigError, Validate, ensure, ensure_at_most, ensure_duration, ensure_duration_at_most,
    ensure_positive_duration,
};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The largest limit (and initial or minimum limit) an adaptive limiter accepts: 2^20.
pub const MAX_ADAPTIVE_LIMIT: u64 = 1 << 20;

/// The most priority classes one limiter accepts (admission walks the classes above the
/// caller's, so their number stays small).
pub const MAX_PRIORITY_CLASSES: usize = 16;

/// The longest sample window: one minute (a limit that moves less often than that is not
/// adaptive).
pub const MAX_WINDOW: Duration = Duration::from_secs(60);

/// The most samples a window may be told to wait for.
pub const MAX_WINDOW_SAMPLES: u64 = 1 << 20;

/// Settings of an adaptive concurrency limiter.
///
/// Bounds: `initial_limit`, `min_limit` and `max_limit` from 1 to [`MAX_ADAPTIVE_LIMIT`]
/// with `min_limit ≤ initial_limit ≤ max_limit`; `window` from 1 ms to [`MAX_WINDOW`];
/// `min_window_samples` at most [`MAX_WINDOW_SAMPLES`]; at most [`MAX_PRIORITY_CLASSES`]
/// classes with distinct names and shares summing to at most 1.
///
/// ```
/// use backstop_limit::{AdaptiveLimitConfig, LimitAlgorithm, PriorityClassConfig};
///
/// let config: AdaptiveLimitConfig = serde_json::from_str(r#"{
///     "algorithm": { "kind": "gradient2" },
///     "initial_limit": 20,
///     "classes": [
///         { "name": "critical", "share": 0.5, "max_queued": 32, "queue_timeout": "250ms" },
///         { "name": "sheddable" }
///     ]
/// }"#).unwrap();
/// assert!(matches!(config.algorithm, LimitAlgorithm::Gradient2(_)));
/// let limiter = config.build().unwrap();
/// assert!(limiter.class("critical").is_some());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaptiveLimitConfig {
    /// How the limit follows measured latency and drops.
    pub algorithm: LimitAlgorithm,
    /// The limit before any window has been measured.
    pub initial_limit: u64,
    /// The limit never goes below this.
    pub min_limit: u64,
    /// The limit never goes above this.
    pub max_limit: u64,
    /// How often the limit is recomputed from the samples of the window just ended.
    #[serde(with = "backstop_core::duration::human")]
    pub window: Duration,
    /// A window ends only once it holds this many samples (a handful of calls is noise).
    pub min_window_samples: u64,
    /// After this many consecutive windows with the limit at `min_limit`, the latency
    /// baseline may rise again (the backend itself became slower). Without it a baseline
    /// measured before a lasting slowdown would pin the limit to the floor; unlike
    /// Envoy's minRTT probe, nothing is forced down to measure it.
    pub recalibrate_after: u32,
    /// A `tracing` event (target `backstop_limit`) is emitted when the limit has moved by
    /// more than this fraction since the last event.
    pub trace_step: f64,
    /// Priority classes, highest first. Empty means one class, `"default"`, with the
    /// whole limit.
    pub classes: Vec<PriorityClassConfig>,
}

impl Default for AdaptiveLimitConfig {
    fn default() -> Self {
        Self {
            algorithm: LimitAlgorithm::default(),
            initial_limit: 20,
            min_limit: 2,
            max_limit: 1_000,
            window: Duration::from_millis(100),
            min_window_samples: 10,
            recalibrate_after: 5,
            trace_step: 0.1,
            classes: Vec::new(),
        }
    }
}

/// One priority class: a name, a share of the limit held for it and an optional queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PriorityClassConfig {
    /// The class's name, as [`AdaptiveLimiter::class`](super::AdaptiveLimiter::class)
    /// finds it.
    pub name: String,
    /// Fraction of the current limit (0 to 1) held for this class against every
    /// lower-priority class: they cannot take it even while it is idle, so this class
    /// always finds that many permits. Higher-priority classes may borrow it while it is
    /// idle, which is why, when the limit shrinks, the lowest class is refused first.
    pub share: f64,
    /// Callers of this class allowed to wait for a permit; 0 refuses at once.
    pub max_queued: usize,
    /// How long a queued caller waits before it is refused with
    /// [`RejectKind::Timeout`](backstop_core::RejectKind::Timeout); `None` waits until a
    /// permit frees or the request's deadline (`backstop_core::deadline`) passes.
    #[serde(with = "backstop_core::duration::human_option")]
    pub queue_timeout: Option<Duration>,
}

impl Default for PriorityClassConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            share: 0.0,
            max_queued: 0,
            queue_timeout: None,
        }
    }
}

impl PriorityClassConfig {
    /// The most callers one class may queue: 2^20.
    pub const MAX_QUEUED: usize = 1 << 20;

    /// A class named `name` holding `share` of the limit, without a queue.
    pub fn new(name: impl Into<String>, share: f64) -> Self {
        Self {
            name: name.into(),
            share,
            ..Self::default()
        }
    }

    /// The same class with a queue of `max_queued` callers waiting at most `timeout`.
    pub fn with_queue(mut self, max_queued: usize, timeout: Duration) -> Self {
        self.max_queued = max_queued;
        self.queue_timeout = Some(timeout);
        self
    }
}

/// Which algorithm moves the limit, with its parameters.
///
/// Every algorithm runs once per window on the window's mean latency, its drops and its
/// peak in-flight count, against a guarded latency baseline (see the module docs): it
/// falls at once to a lower smoothed window mean, and rises only from windows where the
/// limiter was not the bottleneck or after `recalibrate_after` windows at the floor, so
/// sustained load cannot drag it up.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum LimitAlgorithm {
    /// Additive increase, multiplicative decrease on drops or latency above a tolerance.
    Aimd(AimdConfig),
    /// TCP Vegas: grow while the estimated queue `limit × (1 − baseline / latency)` is
    /// short, shrink when it is long.
    Vegas(VegasConfig),
    /// Netflix's Gradient2: scale the limit by `baseline × tolerance / latency` (clamped to
    /// 0.5–1), plus a little headroom, smoothed. The default, as in Netflix's library.
    Gradient2(Gradient2Config),
}

impl Default for LimitAlgorithm {
    fn default() -> Self {
        Self::Gradient2(Gradient2Config::default())
    }
}

/// AIMD parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AimdConfig {
    /// Added to the limit after a window without drops or excess latency, when the
    /// window used at least half of the limit (0 < increase ≤ 1,000).
    pub increase: f64,
    /// The limit is multiplied by this after a window with drops or excess latency
    /// (0.5 ≤ backoff_ratio < 1).
    pub backoff_ratio: f64,
    /// A window whose mean latency exceeds `tolerance × baseline` counts as overload
    /// (1 < tolerance ≤ 10).
    pub tolerance: f64,
    /// A window whose mean latency exceeds this counts as overload, whatever the baseline.
    #[serde(with = "backstop_core::duration::human_option")]
    pub timeout: Option<Duration>,
}

impl Default for AimdConfig {
    fn default() -> Self {
        Self {
            increase: 2.0,
            backoff_ratio: 0.9,
            tolerance: 1.1,
            timeout: None,
        }
    }
}

/// Vegas parameters. Thresholds scale with `log10(limit)`, as in Netflix's `VegasLimit`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VegasConfig {
    /// Below `alpha × log10(limit)` queued calls the limit grows (0 < alpha < beta).
    pub alpha: f64,
    /// Above `beta × log10(limit)` queued calls the limit shrinks (beta ≤ 100).
    pub beta: f64,
    /// Weight of the new limit against the old one (0 < smoothing ≤ 1).
    pub smoothing: f64,
}

impl Default for VegasConfig {
    fn default() -> Self {
        Self {
            alpha: 2.0,
            beta: 4.0,
            smoothing: 1.0,
        }
    }
}

/// Gradient2 parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Gradient2Config {
    /// Latency up to `tolerance × baseline` counts as no queueing (1 ≤ tolerance ≤ 10).
    pub tolerance: f64,
    /// Weight of the new limit against the old one (0 < smoothing ≤ 1).
    pub smoothing: f64,
    /// Calls of headroom kept above the knee while latency shows queueing (0 ≤ queue_size ≤
    /// 1,000); without queueing the limit probes upward by `√limit` instead.
    pub queue_size: f64,
}

impl Default for Gradient2Config {
    fn default() -> Self {
        Self {
            tolerance: 1.05,
            smoothing: 0.5,
            queue_size: 2.0,
        }
    }
}

fn ensure_range(
    field: &str,
    value: f64,
    low: f64,
    high: f64,
    rule: &'static str,
) -> Result<(), ConfigError> {
    ensure(
        value.is_finite() && value >= low && value <= high,
        field,
        rule,
    )
}

impl Validate for AimdConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        ensure(
            self.increase.is_finite() && self.increase > 0.0 && self.increase <= 1_000.0,
            "increase",
            "must be greater than 0 and at most 1000",
        )?;
        ensure(
            self.backoff_ratio.is_finite() && (0.5..1.0).contains(&self.backoff_ratio),
            "backoff_ratio",
            "must be at least 0.5 and less than 1",
        )?;
        ensure(
            self.tolerance.is_finite() && self.tolerance > 1.0 && self.tolerance <= 10.0,
            "tolerance",
            "must be greater than 1 and at most 10",
        )?;
        if let Some(timeout) = self.timeout {
            ensure_positive_duration("timeout", timeout)?;
        }
        Ok(())
    }
}

impl Validate for VegasConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        ensure(
            self.alpha.is_finite() && self.alpha > 0.0,
            "alpha",
            "must be greater than 0",
        )?;
        ensure(
            self.beta.is_finite() && self.beta > self.alpha && self.beta <= 100.0,
            "beta",
            "must be greater than alpha and at most 100",
        )?;
        ensure(
            self.smoothing.is_finite() && self.smoothing > 0.0 && self.smoothing <= 1.0,
            "smoothing",
            "must be greater than 0 and at most 1",
        )
    }
}

impl Validate for Gradient2Config {
    fn validate(&self) -> Result<(), ConfigError> {
        ensure_range(
            "tolerance",
            self.tolerance,
            1.0,
            10.0,
            "must be from 1 to 10",
        )?;
        ensure(
            self.smoothing.is_finite() && self.smoothing > 0.0 && self.smoothing <= 1.0,
            "smoothing",
            "must be greater than 0 and at most 1",
        )?;
        ensure_range(
            "queue_size",
            self.queue_size,
            0.0,
            1_000.0,
            "must be from 0 to 1000",
        )
    }
}

impl Validate for LimitAlgorithm {
    fn validate(&self) -> Result<(), ConfigError> {
        match self {
            Self::Aimd(c) => c.validate().map_err(|e| e.within("aimd")),
            Self::Vegas(c) => c.validate().map_err(|e| e.within("vegas")),
            Self::Gradient2(c) => c.validate().map_err(|e| e.within("gradient2")),
        }
    }
}

impl Validate for PriorityClassConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        ensure(!self.name.is_empty(), "name", "must not be empty")?;
        ensure_at_most("name", self.name.len() as u64, 128)?;
        ensure_range("share", self.share, 0.0, 1.0, "must be from 0 to 1")?;
        ensure_at_most(
            "max_queued",
            self.max_queued as u64,
            Self::MAX_QUEUED as u64,
        )?;
        if let Some(timeout) = self.queue_timeout {
            ensure_duration("queue_timeout", timeout)?;
            ensure(
                !timeout.is_zero(),
                "queue_timeout",
                "must be greater than zero when set (use max_queued = 0 to never wait)",
            )?;
        }
        Ok(())
    }
}

impl Validate for AdaptiveLimitConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.algorithm
            .validate()
            .map_err(|e| e.within("algorithm"))?;
        for (field, value) in [
            ("min_limit", self.min_limit),
            ("initial_limit", self.initial_limit),
            ("max_limit", self.max_limit),
        ] {
            ensure(value >= 1, field, "must be at least 1")?;
            ensure_at_most(field, value, MAX_ADAPTIVE_LIMIT)?;
        }
        ensure(
            self.min_limit <= self.max_limit,
            "min_limit",
            "must be at most max_limit",
        )?;
        ensure(
            (self.min_limit..=self.max_limit).contains(&self.initial_limit),
            "initial_limit",
            "must be from min_limit to max_limit",
        )?;
        ensure(
            self.window >= Duration::from_millis(1),
            "window",
            "must be at least 1ms",
        )?;
        ensure_duration_at_most("window", self.window, MAX_WINDOW)?;
        ensure(
            self.min_window_samples >= 1,
            "min_window_samples",
            "must be at least 1",
        )?;
        ensure_at_most(
            "min_window_samples",
            self.min_window_samples,
            MAX_WINDOW_SAMPLES,
        )?;
        ensure(
            self.recalibrate_after >= 1,
            "recalibrate_after",
            "must be at least 1",
        )?;
        ensure_range(
            "trace_step",
            self.trace_step,
            0.0,
            1.0,
            "must be from 0 to 1",
        )?;
        ensure_at_most(
            "classes",
            self.classes.len() as u64,
            MAX_PRIORITY_CLASSES as u64,
        )?;
        let mut total_share = 0.0;
        for (index, class) in self.classes.iter().enumerate() {
            class
                .validate()
                .map_err(|e| e.within(&format!("classes[{index}]")))?;
            ensure(
                !self.classes[..index].iter().any(|c| c.name == class.name),
                &format!("classes[{index}].name"),
                "must be unique",
            )?;
            total_share += class.share;
        }
        // A little slack for decimal shares such as 0.7 + 0.2 + 0.1.
        ensure(
            total_share <= 1.0 + 1e-9,
            "classes",
            "shares must sum to at most 1",
        )
    }
}

impl AdaptiveLimitConfig {
    /// The classes in effect: the configured ones, or one `"default"` class.
    pub(crate) fn effective_classes(&self) -> Vec<PriorityClassConfig> {
        if self.classes.is_empty() {
            vec![PriorityClassConfig::new("default", 1.0)]
        } else {
            self.classes.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        AdaptiveLimitConfig::default().validate().unwrap();
        for algorithm in [
            LimitAlgorithm::Aimd(AimdConfig::default()),
            LimitAlgorithm::Vegas(VegasConfig::default()),
            LimitAlgorithm::Gradient2(Gradient2Config::default()),
        ] {
            algorithm.validate().unwrap();
        }
    }

    #[test]
    fn bad_settings_name_their_field() {
        // Each case breaks one setting of the default config; validation names it.
        type Breaks = fn(&mut AdaptiveLimitConfig);
        let cases: [(&str, Breaks); 12] = [
            ("min_limit", |c| c.min_limit = 0),
            ("max_limit", |c| c.max_limit = u64::MAX),
            ("initial_limit", |c| c.initial_limit = 5_000),
            ("window", |c| c.window = Duration::ZERO),
            ("window", |c| c.window = Duration::from_secs(3600)),
            ("trace_step", |c| c.trace_step = f64::NAN),
            ("algorithm.aimd.backoff_ratio", |c| {
                c.algorithm = LimitAlgorithm::Aimd(AimdConfig {
                    backoff_ratio: 1.5,
                    ..Default::default()
                })
            }),
            ("algorithm.vegas.beta", |c| {
                c.algorithm = LimitAlgorithm::Vegas(VegasConfig {
                    beta: 1.0,
                    ..Default::default()
                })
            }),
            ("classes", |c| {
                c.classes = vec![
                    PriorityClassConfig::new("a", 0.7),
                    PriorityClassConfig::new("b", 0.7),
                ]
            }),
            ("classes[1].name", |c| {
                c.classes = vec![
                    PriorityClassConfig::new("a", 0.1),
                    PriorityClassConfig::new("a", 0.1),
                ]
            }),
            ("classes", |c| {
                c.classes = vec![PriorityClassConfig::new("a", 0.1); MAX_PRIORITY_CLASSES + 1]
            }),
            ("classes[0].max_queued", |c| {
                c.classes = vec![PriorityClassConfig {
                    max_queued: usize::MAX,
                    ..PriorityClassConfig::new("a", 0.1)
                }]
            }),
        ];
        for (field, breaks) in cases {
            let mut config = AdaptiveLimitConfig::default();
            breaks(&mut config);
            assert_eq!(config.validate().unwrap_err().field(), field);
        }
    }

    #[test]
    fn decimal_shares_summing_to_one_are_accepted() {
        let config = AdaptiveLimitConfig {
            classes: vec![
                PriorityClassConfig::new("a", 0.7),
                PriorityClassConfig::new("b", 0.2),
                PriorityClassConfig::new("c", 0.1),
            ],
            ..Default::default()
        };
        config.validate().unwrap();
    }

    #[test]
    fn algorithms_deserialize_by_kind_with_defaults_and_reject_unknown_fields() {
        let aimd: LimitAlgorithm =
            serde_json::from_str(r#"{"kind":"aimd","backoff_ratio":0.8}"#).unwrap();
        assert_eq!(
            aimd,
            LimitAlgorithm::Aimd(AimdConfig {
                backoff_ratio: 0.8,
                ..Default::default()
            })
        );
        let vegas: LimitAlgorithm = serde_json::from_str(r#"{"kind":"vegas"}"#).unwrap();
        assert_eq!(vegas, LimitAlgorithm::Vegas(VegasConfig::default()));
        assert!(serde_json::from_str::<LimitAlgorithm>(r#"{"kind":"vegas","gamma":1}"#).is_err());
        assert!(serde_json::from_str::<AdaptiveLimitConfig>(r#"{"limit":1}"#).is_err());
    }
}
