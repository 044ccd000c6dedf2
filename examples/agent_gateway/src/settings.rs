//! The gateway's file: its own `[slo]` table beside Backstop's sections, which live under
//! `[backstop]` (`[backstop.limit]`, `[backstop.cache.redis]`, …). One serde struct with
//! `BackstopConfig` embedded, read by Backstop's `ConfigLoader`: unknown keys inside
//! Backstop's sections are refused and every error names its line, whichever table it is in.

use backstop::config::{BackstopConfig, ConfigFileError, ConfigLoader};
use backstop::core::config::{ConfigError, Validate, ensure};
use serde::Deserialize;
use std::time::Duration;

/// The prefix of environment overrides: `AGENT_GATEWAY__SLO__P95_LATENCY=2s`,
/// `AGENT_GATEWAY__BACKSTOP__LIMIT__MAX_KEYS=5000`.
pub(crate) const ENV_PREFIX: &str = "AGENT_GATEWAY";

/// `[slo]`: the service levels a load run is judged against. The first two are checked
/// by backstop-load on every stage of the run; the third is the gateway's own.
///
/// ```toml
/// [slo]
/// p95_latency = "800ms"
/// max_error_rate = 0.02
/// min_cache_hit_rate = 0.3
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "SloFields")]
pub(crate) struct Slo {
    /// The 95th-percentile latency (from each request's scheduled send) must not exceed this.
    pub(crate) p95_latency: Duration,
    /// At most this fraction of requests may fail (rate-limited requests are not failures).
    pub(crate) max_error_rate: f64,
    /// At least this fraction of admitted requests must be answered without the provider.
    pub(crate) min_cache_hit_rate: f64,
}

/// `[slo]` as written, before its rules are checked.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct SloFields {
    #[serde(with = "backstop::core::duration::human")]
    p95_latency: Duration,
    max_error_rate: f64,
    min_cache_hit_rate: f64,
}

impl Default for SloFields {
    fn default() -> Self {
        let slo = Slo::default();
        Self {
            p95_latency: slo.p95_latency,
            max_error_rate: slo.max_error_rate,
            min_cache_hit_rate: slo.min_cache_hit_rate,
        }
    }
}

impl TryFrom<SloFields> for Slo {
    type Error = ConfigError;

    /// A broken rule is refused while the file is read, so it is reported with its table.
    fn try_from(fields: SloFields) -> Result<Self, ConfigError> {
        let slo = Self {
            p95_latency: fields.p95_latency,
            max_error_rate: fields.max_error_rate,
            min_cache_hit_rate: fields.min_cache_hit_rate,
        };
        slo.validate().map_err(|error| error.within("slo"))?;
        Ok(slo)
    }
}

impl Default for Slo {
    /// What the gateway is held to when the file sets no `[slo]`.
    fn default() -> Self {
        Self {
            p95_latency: Duration::from_millis(500),
            max_error_rate: 0.15,
            min_cache_hit_rate: 0.50,
        }
    }
}

impl Validate for Slo {
    fn validate(&self) -> Result<(), ConfigError> {
        ensure(
            !self.p95_latency.is_zero(),
            "p95_latency",
            "must be greater than zero",
        )?;
        ensure(
            (0.0..=1.0).contains(&self.max_error_rate),
            "max_error_rate",
            "must be between 0 and 1",
        )?;
        ensure(
            (0.0..=1.0).contains(&self.min_cache_hit_rate),
            "min_cache_hit_rate",
            "must be between 0 and 1",
        )
    }
}

impl Slo {
    /// The objectives backstop-load checks on each stage: the p95 latency and the failure
    /// rate, where a 429 (a user over its quota) is the gateway doing its job.
    pub(crate) fn per_stage(&self) -> backstop::load::Slo {
        backstop::load::Slo::new()
            .latency(0.95, self.p95_latency)
            .failure_rate_below(self.max_error_rate)
    }
}

/// Everything the file configures: the gateway's `[slo]` and Backstop's `[backstop]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Settings {
    pub(crate) slo: Slo,
    pub(crate) backstop: BackstopConfig,
}

impl Settings {
    /// Reads `path`, with `AGENT_GATEWAY__…` environment overrides.
    pub(crate) fn from_file(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
        Self::load(ConfigLoader::new().env_prefix(ENV_PREFIX).env(), &text)
            .map_err(|error| format!("{}: {error}", path.display()))
    }

    /// Reads the gateway's file from `text` with `loader`'s overrides.
    pub(crate) fn load(loader: ConfigLoader, text: &str) -> Result<Self, ConfigFileError> {
        loader.deserialize_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Settings, ConfigFileError> {
        Settings::load(ConfigLoader::new(), text)
    }

    #[test]
    fn the_gateway_reads_its_slo_beside_backstops_sections() {
        let text = "[backstop.dedup]\nttl = \"5s\"\n\n[slo]\np95_latency = \"800ms\"\nmax_error_rate = 0.02\n\n[backstop.pool]\nmax_size = 8\n";
        let settings = load(text).unwrap();
        assert_eq!(settings.slo.p95_latency, Duration::from_millis(800));
        assert_eq!(
            settings.slo.min_cache_hit_rate,
            Slo::default().min_cache_hit_rate
        );
        assert!(settings.backstop.dedup.is_some() && settings.backstop.pool.is_some());

        let error = load("[slo]\nmax_error_rate = 1.5\n").unwrap_err();
        assert!(error.to_string().contains("slo.max_error_rate"), "{error}");
        let error = load("[slo]\np95 = \"1s\"\n").unwrap_err();
        assert!(error.to_string().contains("p95"), "{error}");
        // Backstop's strictness and positions hold inside the embedded sections.
        let error = load("[slo]\n\n[backstop.pool]\nmax_size = 0\n").unwrap_err();
        assert_eq!(error.field(), Some("backstop.pool.max_size"));
        assert_eq!(error.position(), Some((4, 1)), "{error}");
        let error = load("[backstop.pool]\nmax_sise = 4\n").unwrap_err();
        assert!(error.to_string().contains("max_sise"), "{error}");
        assert_eq!(error.position().map(|(line, _)| line), Some(2), "{error}");
        // A table that is neither the gateway's nor Backstop's is a typo.
        let error = load("[pool]\nmax_size = 4\n").unwrap_err();
        assert!(
            error.to_string().contains("unknown field `pool`"),
            "{error}"
        );
    }

    #[test]
    fn environment_overrides_reach_both_tables() {
        let loader = ConfigLoader::new().env_prefix(ENV_PREFIX).vars([
            ("AGENT_GATEWAY__SLO__P95_LATENCY", "2s"),
            ("AGENT_GATEWAY__BACKSTOP__POOL__MAX_SIZE", "3"),
        ]);
        let settings = Settings::load(loader, "[slo]\n").unwrap();
        assert_eq!(settings.slo.p95_latency, Duration::from_secs(2));
        assert_eq!(settings.backstop.pool.unwrap().max_size, 3);
    }

    #[test]
    fn the_shipped_file_holds_both() {
        let settings = Settings::from_file(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../backstop.toml"
        )))
        .unwrap();
        assert_eq!(settings.slo.p95_latency, Duration::from_secs(1));
        assert!(settings.backstop.limit.is_some() && settings.backstop.budget.is_some());
        assert_eq!(
            settings.slo.per_stage().objectives().len(),
            2,
            "p95 latency and failure rate"
        );
    }
}
