//! Serde configuration of a router: targets, groups, balancing and cooldowns, validated
//! once into a [`Router`].

use crate::Router;
use backstop_breaker::BreakerConfig;
use backstop_core::config::{
    ConfigError, Validate, ensure, ensure_at_most, ensure_count, ensure_duration,
    ensure_positive_duration,
};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The most targets one router holds (a request's tried set is one 64-bit word).
pub const MAX_TARGETS: usize = 64;
/// The largest weight a target may have.
pub const MAX_WEIGHT: u32 = 10_000;
/// The longest target name (and provider, model, key and region labels), in bytes.
pub const MAX_LABEL_LEN: usize = 256;

/// A router: the upstream targets, in priority groups, and how requests move between them.
///
/// ```
/// use backstop_route::RouteConfig;
///
/// let config: RouteConfig = serde_json::from_str(r#"{
///     "targets": [
///         { "name": "openai-key-a", "provider": "openai", "model": "gpt-4o", "key": "a",
///           "weight": 2, "tokens_per_minute": 200000, "context_window": 128000 },
///         { "name": "openai-key-b", "provider": "openai", "model": "gpt-4o", "key": "b",
///           "tokens_per_minute": 50000, "context_window": 128000 },
///         { "name": "anthropic", "provider": "anthropic", "model": "claude", "group": 1,
///           "context_window": 200000 }
///     ],
///     "timeout": "30s",
///     "cooldown": { "server_error": "10s", "max": "5m" },
///     "when_all_cooling": "probe_least_recently_failed"
/// }"#).unwrap();
/// let router = config.build().unwrap();
/// assert_eq!(router.stats().targets.len(), 3);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouteConfig {
    /// The upstream targets, at least one and at most [`MAX_TARGETS`], names unique.
    pub targets: Vec<TargetConfig>,
    /// How long a failed target is left alone, by error class.
    pub cooldown: CooldownConfig,
    /// Balancing within a group.
    pub balance: BalanceConfig,
    /// What a request does when every target it could use is cooling down.
    pub when_all_cooling: AllCooling,
    /// Calls per request, over every target and group, from 1 to [`MAX_TARGETS`].
    /// Default 4.
    pub max_attempts: u32,
    /// One deadline for the whole request, every attempt and fallback included (LiteLLM
    /// #7303: a 20 s timeout reached its fallback after more than a minute). Default `None`
    /// (the caller's enclosing `backstop_core::deadline`, if any, still applies).
    #[serde(with = "backstop_core::duration::human_option")]
    pub timeout: Option<Duration>,
    /// A timeout for each attempt, shortened to what remains of the deadline; an attempt
    /// that outlives it is a [`Timeout`](crate::ErrorClass::Timeout) and the chain moves
    /// on. Default `None`.
    #[serde(with = "backstop_core::duration::human_option")]
    pub attempt_timeout: Option<Duration>,
    /// No attempt starts with less than this left before the deadline. Default 1 ms.
    #[serde(with = "backstop_core::duration::human")]
    pub min_attempt_time: Duration,
}

impl Default for RouteConfig {
    fn default() -> Self {
        Self {
            targets: Vec::new(),
            cooldown: CooldownConfig::default(),
            balance: BalanceConfig::default(),
            when_all_cooling: AllCooling::default(),
            max_attempts: 4,
            timeout: None,
            attempt_timeout: None,
            min_attempt_time: Duration::from_millis(1),
        }
    }
}

/// One upstream target: a provider × model × key × region, with its own breaker and,
/// optionally, its own request and token budgets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TargetConfig {
    /// A unique, non-empty name (logs, stats, the breaker's name).
    pub name: String,
    /// The provider label, for the caller's dispatch (`"openai"`). Default empty.
    pub provider: String,
    /// The model label. Default empty.
    pub model: String,
    /// Which API key this target uses: a reference the caller resolves, never the secret.
    /// Default empty.
    pub key: String,
    /// The region label. Default empty.
    pub region: String,
    /// The priority group: lower groups are tried first; a group is used only when no
    /// target of the groups before it can take the request. Default 0.
    pub group: u32,
    /// Share of its group's traffic among equally good targets, from 1 to
    /// [`MAX_WEIGHT`]. Default 1.
    pub weight: u32,
    /// The model's context window in tokens: a request whose token cost exceeds it skips
    /// the target without a call, and a context-length error moves on only to targets with
    /// a larger window. Default `None` (unknown: never skipped for size).
    pub context_window: Option<u64>,
    /// This key's request budget per minute, charged before each call; a target without
    /// room is skipped without a call. Default `None`.
    pub requests_per_minute: Option<u64>,
    /// This key's token budget per minute, charged with the request's token cost. Default
    /// `None`.
    pub tokens_per_minute: Option<u64>,
    /// The target's circuit breaker. Default: `BreakerConfig::default()` with
    /// `minimum_calls` 20 and a 30 s open period.
    pub breaker: BreakerConfig,
}

impl Default for TargetConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            provider: String::new(),
            model: String::new(),
            key: String::new(),
            region: String::new(),
            group: 0,
            weight: 1,
            context_window: None,
            requests_per_minute: None,
            tokens_per_minute: None,
            breaker: BreakerConfig {
                minimum_calls: 20,
                wait_in_open: Duration::from_secs(30),
                ..BreakerConfig::default()
            },
        }
    }
}

impl TargetConfig {
    /// A target named `name` with every other setting at its default.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }
}

/// Per error class, how long a failed target is left alone.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CooldownConfig {
    /// Server errors and timeouts in a row before a target cools down (one stray 5xx
    /// should not take a key out of rotation; the breaker sees every failure). From 1 to
    /// 1000. Default 3.
    pub consecutive_failures: u32,
    /// Cooldown after `consecutive_failures` server errors. Default 5 s.
    #[serde(with = "backstop_core::duration::human")]
    pub server_error: Duration,
    /// Cooldown after `consecutive_failures` timeouts (or a mix). Default 10 s.
    #[serde(with = "backstop_core::duration::human")]
    pub timeout: Duration,
    /// Cooldown after a 429 without `Retry-After`. Default 30 s.
    #[serde(with = "backstop_core::duration::human")]
    pub rate_limited: Duration,
    /// Cooldown after an open circuit that gave no wait. Default 30 s.
    #[serde(with = "backstop_core::duration::human")]
    pub circuit_open: Duration,
    /// Cooldown after a capacity refusal that gave no wait. Default 1 s.
    #[serde(with = "backstop_core::duration::human")]
    pub unavailable: Duration,
    /// The longest cooldown, whatever a `Retry-After` says. Default 10 min.
    #[serde(with = "backstop_core::duration::human")]
    pub max: Duration,
    /// A 429 whose `Retry-After` is at most this is waited out on the same target (once per
    /// request, within the deadline) instead of falling back. Default 0: always fall back.
    #[serde(with = "backstop_core::duration::human")]
    pub wait_for_retry_after: Duration,
}

impl Default for CooldownConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 3,
            server_error: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            rate_limited: Duration::from_secs(30),
            circuit_open: Duration::from_secs(30),
            unavailable: Duration::from_secs(1),
            max: Duration::from_secs(600),
            wait_for_retry_after: Duration::ZERO,
        }
    }
}

/// Balancing within a group: power of two choices over a Peak-EWMA latency estimate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BalanceConfig {
    /// The latency estimate of a target never measured. Default 100 ms.
    #[serde(with = "backstop_core::duration::human")]
    pub default_latency: Duration,
    /// How fast an estimate forgets: a past peak weighs `e^(-t / decay)` after `t`, so an
    /// idle slow target's estimate falls back toward `default_latency` and it is tried
    /// again. From 1 ms. Default 10 s (as Finagle and Envoy).
    #[serde(with = "backstop_core::duration::human")]
    pub decay: Duration,
}

impl Default for BalanceConfig {
    fn default() -> Self {
        Self {
            default_latency: Duration::from_millis(100),
            decay: Duration::from_secs(10),
        }
    }
}

/// What a request does when every target it could use is cooling down (or its circuit
/// is open).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AllCooling {
    /// Refuse at once with `RejectKind::Unavailable` and the soonest `retry_after` of
    /// any target: no upstream is called.
    #[default]
    FailFast,
    /// Call the target whose last failure is the oldest (its circuit and budget
    /// permitting), once per request: a probe rather than a refusal (Portkey bypasses its
    /// breakers when every target is open).
    ProbeLeastRecentlyFailed,
}

fn ensure_label(field: &str, value: &str) -> Result<(), ConfigError> {
    ensure_at_most(field, value.len() as u64, MAX_LABEL_LEN as u64)
}

impl Validate for TargetConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        ensure(!self.name.is_empty(), "name", "must not be empty")?;
        ensure_label("name", &self.name)?;
        ensure_label("provider", &self.provider)?;
        ensure_label("model", &self.model)?;
        ensure_label("key", &self.key)?;
        ensure_label("region", &self.region)?;
        ensure(self.weight >= 1, "weight", "must be at least 1")?;
        ensure_at_most("weight", self.weight.into(), MAX_WEIGHT.into())?;
        if let Some(window) = self.context_window {
            ensure(window >= 1, "context_window", "must be at least 1")?;
        }
        if let Some(rpm) = self.requests_per_minute {
            backstop_limit::Quota::per_minute(rpm)
                .map_err(|e| ConfigError::new("requests_per_minute", e.rule().to_string()))?;
        }
        if let Some(tpm) = self.tokens_per_minute {
            backstop_limit::Quota::per_minute(tpm)
                .map_err(|e| ConfigError::new("tokens_per_minute", e.rule().to_string()))?;
        }
        self.breaker.validate().map_err(|e| e.within("breaker"))
    }
}

impl Validate for RouteConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        ensure_count("targets", self.targets.len(), 1, MAX_TARGETS)?;
        for (i, target) in self.targets.iter().enumerate() {
            target
                .validate()
                .map_err(|e| e.within(&format!("targets[{i}]")))?;
            ensure(
                !self.targets[..i].iter().any(|t| t.name == target.name),
                &format!("targets[{i}].name"),
                "must be unique",
            )?;
        }
        let c = &self.cooldown;
        ensure(
            c.consecutive_failures >= 1,
            "cooldown.consecutive_failures",
            "must be at least 1",
        )?;
        ensure_at_most(
            "cooldown.consecutive_failures",
            c.consecutive_failures.into(),
            1_000,
        )?;
        for (field, value) in [
            ("cooldown.server_error", c.server_error),
            ("cooldown.timeout", c.timeout),
            ("cooldown.rate_limited", c.rate_limited),
            ("cooldown.circuit_open", c.circuit_open),
            ("cooldown.unavailable", c.unavailable),
            ("cooldown.max", c.max),
            ("cooldown.wait_for_retry_after", c.wait_for_retry_after),
            ("balance.decay", self.balance.decay),
            ("min_attempt_time", self.min_attempt_time),
        ] {
            ensure_duration(field, value)?;
        }
        ensure(
            self.balance.decay >= Duration::from_millis(1),
            "balance.decay",
            "must be at least 1ms",
        )?;
        ensure_positive_duration("balance.default_latency", self.balance.default_latency)?;
        ensure(self.max_attempts >= 1, "max_attempts", "must be at least 1")?;
        ensure_at_most("max_attempts", self.max_attempts.into(), MAX_TARGETS as u64)?;
        if let Some(t) = self.timeout {
            ensure_duration("timeout", t)?;
        }
        if let Some(t) = self.attempt_timeout {
            ensure_positive_duration("attempt_timeout", t)?;
        }
        Ok(())
    }
}

impl RouteConfig {
    /// Validates the config and builds the shared [`Router`] handle.
    pub fn build(self) -> Result<Router, ConfigError> {
        self.validate()?;
        Ok(Router::from_valid(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backstop_core::config::MAX_DURATION;

    fn two() -> RouteConfig {
        RouteConfig {
            targets: vec![TargetConfig::named("a"), TargetConfig::named("b")],
            ..RouteConfig::default()
        }
    }

    #[test]
    fn every_bound_names_its_field() {
        type Breaks = fn(&mut RouteConfig);
        let cases: [(Breaks, &str); 11] = [
            (|c| c.targets.clear(), "targets"),
            (
                |c| {
                    c.targets = (0..65)
                        .map(|i| TargetConfig::named(format!("t{i}")))
                        .collect()
                },
                "targets",
            ),
            (|c| c.targets[1].name = "a".into(), "targets[1].name"),
            (|c| c.targets[0].name.clear(), "targets[0].name"),
            (|c| c.targets[0].weight = 0, "targets[0].weight"),
            (
                |c| c.targets[1].weight = MAX_WEIGHT + 1,
                "targets[1].weight",
            ),
            (
                |c| c.targets[0].tokens_per_minute = Some(0),
                "targets[0].tokens_per_minute",
            ),
            (
                |c| c.targets[0].breaker.minimum_calls = 0,
                "targets[0].breaker.minimum_calls",
            ),
            (|c| c.cooldown.max = MAX_DURATION * 2, "cooldown.max"),
            (|c| c.max_attempts = 0, "max_attempts"),
            (|c| c.balance.decay = Duration::ZERO, "balance.decay"),
        ];
        for (breaks, field) in cases {
            let mut config = two();
            breaks(&mut config);
            assert_eq!(config.build().unwrap_err().field(), field);
        }
    }

    #[test]
    fn a_config_round_trips_through_serde() {
        let mut config = two();
        config.targets[1].tokens_per_minute = Some(90_000);
        config.timeout = Some(Duration::from_secs(20));
        config.when_all_cooling = AllCooling::ProbeLeastRecentlyFailed;
        let text = serde_json::to_string(&config).unwrap();
        assert_eq!(serde_json::from_str::<RouteConfig>(&text).unwrap(), config);
    }

    #[test]
    fn unknown_fields_are_refused_and_defaults_fill_the_rest() {
        assert!(serde_json::from_str::<RouteConfig>(r#"{"target": []}"#).is_err());
        assert!(
            serde_json::from_str::<RouteConfig>(r#"{"targets": [{"name": "x", "wieght": 2}]}"#)
                .is_err()
        );
        let parsed: RouteConfig = serde_json::from_str(
            r#"{"targets": [{"name": "x"}], "when_all_cooling": "probe_least_recently_failed"}"#,
        )
        .unwrap();
        assert_eq!(
            parsed.when_all_cooling,
            AllCooling::ProbeLeastRecentlyFailed
        );
        assert_eq!(parsed.targets[0].weight, 1);
        assert_eq!(parsed.max_attempts, 4);
    }
}
