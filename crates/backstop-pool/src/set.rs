//! [`PoolSet`]: named pools ("llm_primary", "vector_db", ...) built from one config map.

use std::collections::BTreeMap;
use std::fmt;

use crate::conn::PoolManager;
use backstop_core::Validate;
use serde::{Deserialize, Serialize};

use crate::config::PoolConfig;
use crate::error::PoolBuildError;
use crate::pool::Pool;
use crate::stats::PoolStats;

/// Per-service pool configs, keyed by pool name (deserializes from a plain map).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PoolSetConfig {
    /// Config of each named pool.
    pub pools: BTreeMap<String, PoolConfig>,
}

impl Validate for PoolSetConfig {
    fn validate(&self) -> Result<(), backstop_core::ConfigError> {
        for (name, config) in &self.pools {
            config
                .validate()
                .map_err(|e| e.within(&format!("pools.{name}")))?;
        }
        Ok(())
    }
}

/// A set of named pools, each with its own config and manager.
///
/// ```
/// use backstop_pool::{Manager, Metrics, PoolSet, PoolSetConfig, RecycleResult};
///
/// /// Connections to one named backend.
/// struct Backend(String);
/// impl Manager for Backend {
///     type Type = String;
///     type Error = std::io::Error;
///     async fn create(&self) -> Result<String, std::io::Error> { Ok(format!("conn to {}", self.0)) }
///     async fn recycle(&self, _: &mut String, _: &Metrics) -> RecycleResult<std::io::Error> { Ok(()) }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // One section of the application's config file: a pool per backend.
/// let config: PoolSetConfig = serde_json::from_str(
///     r#"{ "llm_primary": { "max_size": 8 }, "vector_db": { "max_size": 2, "min_idle": 1 } }"#,
/// )?;
/// let pools = PoolSet::new(config, |name| Backend(name.to_string()))?;
/// assert_eq!(pools.names().collect::<Vec<_>>(), ["llm_primary", "vector_db"]);
///
/// let conn = pools.get("vector_db").expect("configured").get().await?;
/// assert_eq!(conn.as_str(), "conn to vector_db");
/// assert_eq!(pools.stats()["vector_db"].in_use, 1);
/// # Ok(())
/// # }
/// ```
pub struct PoolSet<M: PoolManager> {
    pools: BTreeMap<String, Pool<M>>,
}

impl<M: PoolManager> fmt::Debug for PoolSet<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.pools.iter()).finish()
    }
}

impl<M> PoolSet<M>
where
    M: PoolManager,
{
    /// Builds every pool in `config`, asking `manager_for` for each pool's manager.
    /// Config errors name the pool (`pools.vector_db.min_idle ...`).
    pub fn new(
        config: PoolSetConfig,
        mut manager_for: impl FnMut(&str) -> M,
    ) -> Result<Self, PoolBuildError> {
        config.validate()?;
        let mut pools = BTreeMap::new();
        for (name, pool_config) in config.pools {
            let pool = Pool::new(manager_for(&name), pool_config)?;
            pools.insert(name, pool);
        }
        Ok(Self { pools })
    }

    /// The pool called `name`.
    pub fn get(&self, name: &str) -> Option<&Pool<M>> {
        self.pools.get(name)
    }

    /// Names of all pools, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.pools.keys().map(String::as_str)
    }

    /// Stats of every pool, by name.
    pub fn stats(&self) -> BTreeMap<String, PoolStats> {
        self.pools
            .iter()
            .map(|(name, pool)| (name.clone(), pool.stats()))
            .collect()
    }
}
