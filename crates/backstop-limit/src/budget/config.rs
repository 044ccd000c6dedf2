//! Budgets as written in configuration.

use super::money::{BudgetMeter, CostTable, ModelPrice};
use super::period::BudgetPeriod;
use super::plan::{BudgetPlan, BudgetQuota, DropRule};
use backstop_core::config::{ConfigError, Validate, ensure_at_most, ensure_count};
use serde::Deserialize;
use std::collections::BTreeMap;

/// A [`BudgetPlan`] as configuration: levels narrowest first, each with its quotas and
/// per-id overrides, the cost table, and the drop rule.
///
/// ```toml
/// on_drop = "charge_estimate"          # or "refund_all"
/// max_keys = 100000                    # ids tracked per level
///
/// [[levels]]
/// name = "key"
/// quotas = [
///   { meter = "requests", limit = 60, period = "1m" },
///   { meter = "tokens", limit = 100000, period = "1m" },
/// ]
///
/// [[levels]]
/// name = "team"
/// quotas = [{ meter = "spend", limit = 50000000, period = "day" }]   # $50 a day
/// overrides = { research = [{ meter = "spend", limit = 200000000, period = "day" }] }
///
/// [[levels]]
/// name = "org"
/// quotas = [{ name = "monthly", meter = "spend", limit = 1000000000, period = "month" }]
///
/// [models.gpt-4o]                      # micro-units per million tokens
/// input_per_million = 2500000
/// output_per_million = 10000000
/// ```
///
/// ```
/// use backstop_limit::BudgetConfig;
///
/// let config: BudgetConfig = serde_json::from_str(r#"{
///     "levels": [{ "name": "key", "quotas": [{ "meter": "tokens", "limit": 1000, "period": "1m" }] }]
/// }"#).unwrap();
/// let plan = config.build().unwrap();
/// assert_eq!(plan.depth(), 1);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetConfig {
    /// The levels, narrowest first (at most [`BudgetPlan::MAX_LEVELS`]).
    pub levels: Vec<BudgetLevelConfig>,
    /// Prices per model.
    pub models: BTreeMap<String, ModelPrice>,
    /// The price of models not listed.
    pub default_price: Option<ModelPrice>,
    /// What a reservation dropped without settling does.
    pub on_drop: DropRule,
    /// Ids tracked per level (at most [`BudgetConfig::MAX_KEYS`]); unbounded when unset.
    pub max_keys: Option<usize>,
}

/// One level of a [`BudgetConfig`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetLevelConfig {
    /// The level's name (`key`, `team`, `org`).
    pub name: String,
    /// Its quotas.
    pub quotas: Vec<BudgetQuotaConfig>,
    /// Per-id replacement quotas.
    pub overrides: BTreeMap<String, Vec<BudgetQuotaConfig>>,
}

/// One quota of a [`BudgetLevelConfig`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetQuotaConfig {
    /// The quota's name; defaults to its meter's (`requests`, `tokens`, `spend`).
    #[serde(default)]
    pub name: Option<String>,
    /// What it counts.
    pub meter: BudgetMeter,
    /// Units per period (micro-units for `spend`).
    pub limit: u64,
    /// `"1m"`, `"1h"`, `"day"`, `"month"`.
    pub period: BudgetPeriod,
}

impl BudgetQuotaConfig {
    /// Validates into a [`BudgetQuota`].
    pub fn build(&self) -> Result<BudgetQuota, ConfigError> {
        let name = self.name.as_deref().unwrap_or(self.meter.as_str());
        BudgetQuota::new(name, self.meter, self.limit, self.period)
    }
}

impl BudgetConfig {
    /// The largest `max_keys` accepted: 2²⁴ ids per level.
    pub const MAX_KEYS: usize = 1 << 24;

    /// Validates into a [`BudgetPlan`]; an error names the field (`levels.1.quotas.0.limit`).
    pub fn build(&self) -> Result<BudgetPlan, ConfigError> {
        let mut builder = BudgetPlan::builder().on_drop(self.on_drop);
        ensure_at_most(
            "levels",
            self.levels.len() as u64,
            BudgetPlan::MAX_LEVELS as u64,
        )?;
        for (i, level) in self.levels.iter().enumerate() {
            let field = format!("levels.{i}");
            let own = quotas(&level.quotas).map_err(|e| e.within(&field))?;
            builder = builder.level(&level.name, own);
            for (id, overridden) in &level.overrides {
                let replaced =
                    quotas(overridden).map_err(|e| e.within(&format!("{field}.overrides.{id}")))?;
                builder = builder.override_quotas(&level.name, id, replaced);
            }
        }
        ensure_at_most(
            "models",
            self.models.len() as u64,
            CostTable::MAX_MODELS as u64,
        )?;
        let mut costs = CostTable::new();
        for (model, price) in &self.models {
            costs = costs.with(model.clone(), *price)?;
        }
        if let Some(price) = self.default_price {
            costs = costs.with_default(price)?;
        }
        if let Some(max_keys) = self.max_keys {
            ensure_count("max_keys", max_keys, 1, Self::MAX_KEYS)?;
        }
        builder.costs(costs).build()
    }

    /// Local budgets enforcing this configuration, with its key cap.
    pub fn budgets(&self) -> Result<crate::Budgets, ConfigError> {
        let budgets = crate::Budgets::new(self.build()?);
        Ok(match self.max_keys {
            Some(max_keys) => budgets.with_max_keys(max_keys),
            None => budgets,
        })
    }
}

fn quotas(configs: &[BudgetQuotaConfig]) -> Result<Vec<BudgetQuota>, ConfigError> {
    ensure_at_most(
        "quotas",
        configs.len() as u64,
        BudgetPlan::MAX_QUOTAS_PER_LEVEL as u64,
    )?;
    configs
        .iter()
        .enumerate()
        .map(|(j, q)| q.build().map_err(|e| e.within(&format!("quotas.{j}"))))
        .collect()
}

impl Validate for BudgetConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.build().map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(json: &str) -> String {
        serde_json::from_str::<BudgetConfig>(json)
            .unwrap()
            .validate()
            .unwrap_err()
            .field()
            .to_string()
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(field("{}"), "levels");
        assert_eq!(
            field(
                r#"{"levels":[{"name":"key","quotas":[{"meter":"tokens","limit":0,"period":"1m"}]}]}"#
            ),
            "levels.0.quotas.0.limit"
        );
        assert_eq!(
            field(
                r#"{"levels":[{"name":"key","quotas":[]},{"name":"team","overrides":{"x":[{"meter":"spend","limit":1125899906842625,"period":"day"}]}}]}"#
            ),
            "levels.1.overrides.x.quotas.0.limit"
        );
        assert_eq!(
            field(
                r#"{"levels":[{"name":"key"}],"models":{"m":{"input_per_million":1000000000001,"output_per_million":0}}}"#
            ),
            "models.m.input_per_million"
        );
        assert_eq!(
            field(r#"{"levels":[{"name":"key"}],"max_keys":0}"#),
            "max_keys"
        );
        assert!(serde_json::from_str::<BudgetConfig>(
            r#"{"levels":[{"name":"k","quotas":[{"meter":"tokens","limit":1,"period":"weekly"}]}]}"#
        )
        .is_err());
    }
}
