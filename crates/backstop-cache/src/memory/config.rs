//! Plain, serde-friendly configuration of a [`MemoryCache`](crate::MemoryCache).

use std::time::Duration;

use backstop_core::config::{ConfigError, Validate, ensure, ensure_at_most, ensure_duration};
use serde::Deserialize;

/// Tuning of the S3-FIFO policy. The defaults are the ones our hit-ratio traces agree
/// on; change them only with a trace that says so.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Share of capacity given to the probationary queue that new keys enter (0 < r < 1).
    /// With `adaptive` it is only the starting point (kept within 0.001 to 0.5).
    pub small_ratio: f64,
    /// Tune `small_ratio` online from ghost hits, as ARC sizes its sides (default
    /// `true`): a key asked for again soon after it left probation grows the share, one
    /// asked for again soon after it left the main queue shrinks it, and the ghost queue
    /// grows with the share. One share per cache, whatever the shard count. `false`
    /// keeps it fixed.
    pub adaptive: bool,
    /// Ghost queue length as a multiple of the number of entries held (0 to 4).
    pub ghost_ratio: f64,
    /// Seed of the key hash; `None` (the default) draws a random one per cache. A fixed
    /// seed makes placement, and with it every eviction decision, repeat exactly from one
    /// process to the next (for benchmarks and reproducible tests). Keys chosen by an
    /// adversary can collide under a known seed, so keep it random in production.
    pub hash_seed: Option<u64>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            small_ratio: 0.002,
            adaptive: true,
            ghost_ratio: 0.5,
            hash_seed: None,
        }
    }
}

impl Validate for PolicyConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        ensure(
            self.small_ratio > 0.0 && self.small_ratio < 1.0,
            "small_ratio",
            "must be between 0 and 1 (exclusive)",
        )?;
        ensure(
            (0.0..=4.0).contains(&self.ghost_ratio),
            "ghost_ratio",
            "must be between 0 and 4",
        )
    }
}

/// Configuration of a [`MemoryCache`](crate::MemoryCache).
///
/// ```
/// use backstop_cache::CacheConfig;
///
/// let cfg: CacheConfig = serde_json::from_str(r#"{ "max_capacity": 10000, "ttl": "5m", "tti": "1m" }"#).unwrap();
/// assert_eq!(cfg.ttl, Some(std::time::Duration::from_secs(300)));
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Maximum number of entries, or maximum total weight when a weigher is set (at most
    /// [`MAX_CACHE_CAPACITY`]).
    pub max_capacity: u64,
    /// Most shards; `None` picks a count from the cores. Either way each shard keeps at
    /// least 512 units of capacity and a cache with a weigher has at most 8 shards, so
    /// that the hit ratio does not depend on the count and an entry of up to an eighth
    /// of the whole capacity is always admitted.
    pub shards: Option<usize>,
    /// Time to live of every entry unless an `Expiry` hook or `insert_with_ttl` says
    /// otherwise (at most a year, like every duration).
    #[serde(with = "backstop_core::duration::human_option")]
    pub ttl: Option<Duration>,
    /// Time to idle: an entry not read or written for this long expires.
    #[serde(with = "backstop_core::duration::human_option")]
    pub tti: Option<Duration>,
    /// Policy tuning.
    pub policy: PolicyConfig,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_capacity: 10_000,
            shards: None,
            ttl: None,
            tti: None,
            policy: PolicyConfig::default(),
        }
    }
}

/// Hard upper bound on shards: beyond this, per-shard overhead outweighs contention gains.
pub(crate) const MAX_SHARDS: usize = 1024;

/// Capacity every shard keeps at least (fewer shards are used when the capacity is
/// smaller). Each shard runs the policy on its own share; below about 500 entries a
/// shard's queues are too short to tell a loop or a hot set from noise, and hit ratios
/// moved by up to 5 points between 8 and 64 shards on the hit-ratio bench.
pub(crate) const MIN_SHARD_CAPACITY: u64 = 512;

/// The most shards a cache with a weigher uses, so that every shard holds at least an
/// eighth of the capacity and an entry of up to `max_capacity / 8` is admitted whatever
/// the configured count.
pub(crate) const MAX_WEIGHTED_SHARDS: usize = 8;

/// The largest `max_capacity`: 2^48 entries or units of weight (256 TiB of bytes). Nothing
/// is allocated in proportion to capacity; the bound keeps per-shard arithmetic far from
/// overflow.
pub const MAX_CACHE_CAPACITY: u64 = 1 << 48;

impl Validate for CacheConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        ensure(self.max_capacity > 0, "max_capacity", "must be at least 1")?;
        ensure_at_most("max_capacity", self.max_capacity, MAX_CACHE_CAPACITY)?;
        if let Some(s) = self.shards {
            ensure(s > 0, "shards", "must be at least 1")?;
            ensure(s <= MAX_SHARDS, "shards", "must be at most 1024")?;
            ensure(
                s as u64 <= self.max_capacity,
                "shards",
                "must not exceed max_capacity",
            )?;
        }
        if let Some(ttl) = self.ttl {
            ensure(!ttl.is_zero(), "ttl", "must be greater than zero")?;
            ensure_duration("ttl", ttl)?;
        }
        if let Some(tti) = self.tti {
            ensure(!tti.is_zero(), "tti", "must be greater than zero")?;
            ensure_duration("tti", tti)?;
            if let Some(ttl) = self.ttl {
                ensure(tti <= ttl, "tti", "must not be longer than ttl")?;
            }
        }
        self.policy.validate().map_err(|e| e.within("policy"))
    }
}

impl CacheConfig {
    /// The shard count to use: the configured one, or a power of two near four per core,
    /// lowered so that each shard keeps [`MIN_SHARD_CAPACITY`] (and to
    /// [`MAX_WEIGHTED_SHARDS`] when `weighted`).
    pub(crate) fn shard_count(&self, weighted: bool) -> usize {
        let wanted = self.shards.unwrap_or_else(|| {
            let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
            (cores * 4).next_power_of_two()
        });
        let by_capacity =
            usize::try_from(self.max_capacity / MIN_SHARD_CAPACITY).unwrap_or(MAX_SHARDS);
        let mut n = wanted.min(by_capacity).clamp(1, MAX_SHARDS);
        if weighted {
            n = n.min(MAX_WEIGHTED_SHARDS);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(c: CacheConfig) -> String {
        c.validate().unwrap_err().to_string()
    }

    #[test]
    fn default_is_valid() {
        CacheConfig::default().validate().unwrap();
    }

    #[test]
    fn rejects_bad_values_with_field_names() {
        let base = CacheConfig::default;
        assert!(
            err(CacheConfig {
                max_capacity: 0,
                ..base()
            })
            .contains("`max_capacity`")
        );
        assert!(
            err(CacheConfig {
                shards: Some(0),
                ..base()
            })
            .contains("`shards`")
        );
        assert!(
            err(CacheConfig {
                ttl: Some(Duration::ZERO),
                ..base()
            })
            .contains("`ttl`")
        );
        let e = err(CacheConfig {
            ttl: Some(Duration::from_secs(1)),
            tti: Some(Duration::from_secs(2)),
            ..base()
        });
        assert!(e.contains("`tti` must not be longer than ttl"), "{e}");
        let e = err(CacheConfig {
            policy: PolicyConfig {
                small_ratio: 1.5,
                ghost_ratio: 1.0,
                ..PolicyConfig::default()
            },
            ..base()
        });
        assert!(e.contains("policy.small_ratio"), "{e}");
    }

    #[test]
    fn sizes_and_durations_are_bounded() {
        let base = CacheConfig::default;
        assert!(
            err(CacheConfig {
                max_capacity: u64::MAX,
                ..base()
            })
            .contains("`max_capacity` must be at most")
        );
        assert!(
            err(CacheConfig {
                ttl: Some(Duration::MAX),
                ..base()
            })
            .contains("`ttl` must be at most")
        );
        assert!(
            err(CacheConfig {
                tti: Some(Duration::from_secs(400 * 86_400)),
                ..base()
            })
            .contains("`tti` must be at most")
        );
        CacheConfig {
            max_capacity: MAX_CACHE_CAPACITY,
            ttl: Some(backstop_core::config::MAX_DURATION),
            ..base()
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn deserializes_human_durations_and_rejects_unknown_fields() {
        let c: CacheConfig = serde_json::from_str(
            r#"{"max_capacity": 5, "ttl": "5m", "policy": {"small_ratio": 0.2}}"#,
        )
        .unwrap();
        assert_eq!(c.ttl, Some(Duration::from_secs(300)));
        assert_eq!(c.policy.small_ratio, 0.2);
        assert!(serde_json::from_str::<CacheConfig>(r#"{"capacity": 5}"#).is_err());
    }

    #[test]
    fn shard_count_keeps_shards_reasonably_large() {
        let c = CacheConfig {
            max_capacity: 100,
            ..CacheConfig::default()
        };
        assert_eq!(c.shard_count(false), 1);
        let c = CacheConfig {
            max_capacity: 1 << 30,
            ..CacheConfig::default()
        };
        assert!(c.shard_count(false) >= 4);
    }

    #[test]
    fn shards_keep_a_minimum_capacity_and_weighted_caches_few_shards() {
        let c = CacheConfig {
            max_capacity: 10_000,
            shards: Some(64),
            ..CacheConfig::default()
        };
        assert_eq!(c.shard_count(false), 19);
        assert_eq!(c.shard_count(true), MAX_WEIGHTED_SHARDS);
        let c = CacheConfig {
            max_capacity: 1 << 40,
            shards: Some(64),
            ..CacheConfig::default()
        };
        assert_eq!(c.shard_count(false), 64);
        let c = CacheConfig {
            max_capacity: 1000,
            shards: Some(1000),
            ..CacheConfig::default()
        };
        assert_eq!(c.shard_count(false), 1);
    }
}
