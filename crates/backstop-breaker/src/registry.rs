//! Named breakers (one per provider or model) sharing a default configuration.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use backstop_core::config::{ConfigError, Validate};
use backstop_core::{Clock, DefaultClock};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::{Breaker, BreakerConfig, BreakerStats};

/// Configuration of a [`BreakerRegistry`]: a default and whole-config overrides by name.
///
/// ```
/// use backstop_breaker::RegistryConfig;
///
/// let config: RegistryConfig = serde_json::from_str(r#"{
///     "default": { "wait_in_open": "30s" },
///     "overrides": { "gpt-slow": { "slow_call_duration": "20s" } }
/// }"#).unwrap();
/// assert_eq!(config.config_for("gpt-slow").slow_call_duration.unwrap().as_secs(), 20);
/// assert_eq!(config.config_for("other").wait_in_open.as_secs(), 30);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// The configuration of every breaker without an override.
    pub default: BreakerConfig,
    /// Per-name configurations, replacing the default for that name. Ordered by name, so
    /// the config prints the same every time and validation reports the same first error.
    pub overrides: BTreeMap<String, BreakerConfig>,
}

impl RegistryConfig {
    /// The configuration the breaker named `name` gets.
    pub fn config_for(&self, name: &str) -> &BreakerConfig {
        self.overrides.get(name).unwrap_or(&self.default)
    }
}

impl Validate for RegistryConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.default.validate().map_err(|e| e.within("default"))?;
        for (name, config) in &self.overrides {
            config
                .validate()
                .map_err(|e| e.within(&format!("overrides.{name}")))?;
        }
        Ok(())
    }
}

/// Breakers by name, created on first use; every config is validated up front so
/// [`get`](Self::get) cannot fail.
///
/// ```
/// use backstop_breaker::{BreakerRegistry, RegistryConfig};
///
/// let registry = BreakerRegistry::new(RegistryConfig::default()).unwrap();
/// let a = registry.get("openai");
/// let b = registry.clone().get("openai"); // clones share the breakers
/// a.force_open();
/// assert_eq!(b.state(), backstop_breaker::State::ForcedOpen);
/// assert_eq!(registry.names(), vec!["openai".to_string()]);
/// ```
///
/// The registry is a cheap-clone handle: clones share one set of breakers.
#[derive(Debug)]
pub struct BreakerRegistry<C: Clock + Clone = DefaultClock> {
    inner: Arc<RegistryInner<C>>,
}

#[derive(Debug)]
struct RegistryInner<C: Clock + Clone> {
    config: RegistryConfig,
    clock: C,
    breakers: RwLock<HashMap<String, Breaker<C>>>,
}

impl<C: Clock + Clone> Clone for BreakerRegistry<C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl BreakerRegistry<DefaultClock> {
    /// A registry on the [`DefaultClock`].
    pub fn new(config: RegistryConfig) -> Result<Self, ConfigError> {
        Self::with_clock(config, DefaultClock::default())
    }
}

impl<C: Clock + Clone> BreakerRegistry<C> {
    /// A registry whose breakers read `clock`.
    pub fn with_clock(config: RegistryConfig, clock: C) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            inner: Arc::new(RegistryInner {
                config,
                clock,
                breakers: RwLock::new(HashMap::new()),
            }),
        })
    }

    /// The breaker named `name`, created with its configuration on first use.
    pub fn get(&self, name: &str) -> Breaker<C> {
        let inner = &*self.inner;
        if let Some(breaker) = inner.breakers.read().get(name) {
            return breaker.clone();
        }
        inner
            .breakers
            .write()
            .entry(name.to_string())
            .or_insert_with(|| {
                let config = inner.config.config_for(name).clone();
                Breaker::from_parts(Arc::from(name), config, inner.clock.clone())
            })
            .clone()
    }

    /// Names of the breakers created so far, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.inner.breakers.read().keys().cloned().collect();
        names.sort();
        names
    }

    /// Stats of every breaker created so far, sorted by name.
    pub fn stats(&self) -> Vec<BreakerStats> {
        let breakers: Vec<Breaker<C>> = self.inner.breakers.read().values().cloned().collect();
        let mut stats: Vec<BreakerStats> = breakers.iter().map(Breaker::stats).collect();
        stats.sort_by(|a, b| a.name.cmp(&b.name));
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `config_parse` fuzz target: with a hashed map the overrides printed in
    /// a different order each time, so a printed config did not print back the same.
    #[test]
    fn overrides_print_in_name_order_every_time() {
        let names = ["zeta", "alpha", "mid", "beta", "omega", "gamma"];
        let mut config = RegistryConfig::default();
        for name in names {
            config
                .overrides
                .insert(name.to_string(), BreakerConfig::default());
        }
        let printed = serde_json::to_string(&config).unwrap();
        let reloaded: RegistryConfig = serde_json::from_str(&printed).unwrap();
        assert_eq!(serde_json::to_string(&reloaded).unwrap(), printed);
        let mut printed_order = names.map(|name| (printed.find(&format!("\"{name}\"")), name));
        printed_order.sort_unstable();
        let order = printed_order.map(|(_, name)| name);
        let mut sorted = names;
        sorted.sort_unstable();
        assert_eq!(order, sorted);
    }
}
