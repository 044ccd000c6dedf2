//! The gateway's own settings, read from the same file as Backstop's sections: `[slo]`,
//! the service levels a load run is judged against, belongs to this program, not to the
//! library, so it is read here and taken out of the text before the rest is handed to
//! `BackstopConfig`.

use backstop::config::BackstopConfig;
use backstop::core::config::{ConfigError, Validate, ensure};
use serde::Deserialize;
use std::time::Duration;

/// The tables of the file that are the gateway's, not Backstop's.
const OWN_TABLES: [&str; 1] = ["slo"];

/// `[slo]`: the service levels a load run is judged against.
///
/// ```toml
/// [slo]
/// p95_latency = "800ms"
/// max_error_rate = 0.02
/// min_cache_hit_rate = 0.3
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Slo {
    /// The 95th-percentile latency must not exceed this.
    #[serde(with = "backstop::core::duration::human")]
    pub(crate) p95_latency: Duration,
    /// At most this fraction of requests may fail (rate-limited requests are not failures).
    pub(crate) max_error_rate: f64,
    /// At least this fraction of admitted requests must be answered without the provider.
    pub(crate) min_cache_hit_rate: f64,
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

/// Everything the file configures: Backstop's sections and the gateway's own.
#[derive(Debug, Clone, Default)]
pub(crate) struct Settings {
    pub(crate) backstop: BackstopConfig,
    pub(crate) slo: Slo,
}

/// Only the gateway's tables; Backstop's are looked at by `BackstopConfig`.
#[derive(Deserialize)]
struct OwnTables {
    slo: Option<Slo>,
}

impl Settings {
    pub(crate) fn from_file(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
        Self::from_toml_str(&text)
    }

    /// Reads the gateway's tables, then Backstop's sections from the rest of the text
    /// (the gateway's tables blanked line for line, so Backstop's errors keep their line
    /// numbers).
    pub(crate) fn from_toml_str(text: &str) -> Result<Self, String> {
        let own: OwnTables = toml::from_str(text).map_err(|error| error.to_string())?;
        let slo = own.slo.unwrap_or_default();
        slo.validate()
            .map_err(|error| error.within("slo").to_string())?;
        let backstop = BackstopConfig::from_toml_str(&without_own_tables(text))
            .map_err(|error| error.to_string())?;
        Ok(Self { backstop, slo })
    }
}

/// `text` with every line of the gateway's top-level tables (`[slo]` and its sub-tables)
/// left empty.
fn without_own_tables(text: &str) -> String {
    let mut own = false;
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            let name = trimmed
                .trim_start_matches('[')
                .split([']', '.'])
                .next()
                .unwrap_or("")
                .trim()
                .trim_matches('"');
            own = OWN_TABLES.contains(&name);
        }
        if !own {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_reads_its_slo_and_backstop_never_sees_it() {
        let text = "[dedup]\nttl = \"5s\"\n\n[slo]\np95_latency = \"800ms\"\nmax_error_rate = 0.02\n\n[pool]\nmax_size = 8\n";
        let settings = Settings::from_toml_str(text).unwrap();
        assert_eq!(settings.slo.p95_latency, Duration::from_millis(800));
        assert_eq!(
            settings.slo.min_cache_hit_rate,
            Slo::default().min_cache_hit_rate
        );
        assert!(settings.backstop.dedup.is_some() && settings.backstop.pool.is_some());
        // Blanking keeps every line where it was, so Backstop's errors point at the file.
        let stripped = without_own_tables(text);
        assert_eq!(stripped.lines().count(), text.lines().count());
        assert!(!stripped.contains("p95_latency") && stripped.contains("max_size = 8"));

        let error = Settings::from_toml_str("[slo]\nmax_error_rate = 1.5\n").unwrap_err();
        assert!(error.contains("slo.max_error_rate"), "{error}");
        let error = Settings::from_toml_str("[slo]\np95 = \"1s\"\n").unwrap_err();
        assert!(error.contains("p95"), "{error}");
        let error = Settings::from_toml_str("[slo]\n\n[pool]\nmax_size = 0\n").unwrap_err();
        assert!(
            error.contains("pool.max_size") && error.contains("line 4"),
            "{error}"
        );
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
    }
}
