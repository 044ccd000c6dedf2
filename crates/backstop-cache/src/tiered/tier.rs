//! The contract every cache tier fulfils, so tiers can be stacked as `Box<dyn Tier<V>>`.

#[cfg(any(feature = "redis", feature = "persistent"))]
use crate::ValueCodec;
use async_trait::async_trait;
use backstop_core::{ConfigError, Rejected};
use serde::Serialize;
#[cfg(any(feature = "redis", feature = "persistent"))]
use serde::de::DeserializeOwned;
#[cfg(any(feature = "redis", feature = "persistent"))]
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Why a tier operation failed. A failing lower tier is reported, never a panic: the
/// tiered cache treats it as a miss for reads and counts it in its stats.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TierError {
    /// The backend (Redis, the embedded store) refused or could not be reached.
    #[error("cache tier backend failed: {0}")]
    Backend(String),
    /// The backend did not answer within the tier's operation timeout.
    #[error("cache tier did not answer within {0:?}")]
    Timeout(Duration),
    /// The tier was not asked: its circuit breaker is open after repeated failures
    /// ([`RejectKind::CircuitOpen`](backstop_core::RejectKind::CircuitOpen), with the
    /// wait until the breaker lets a probe through when known).
    #[error("cache tier skipped: {0}")]
    Rejected(Rejected),
    /// A stored value could not be encoded or decoded.
    #[error("cache value could not be encoded or decoded: {0}")]
    Codec(String),
    /// `invalidate_prefix("")` was asked for. An empty prefix would match every key the
    /// tier can see; removing everything is the separate, explicit
    /// [`Tier::invalidate_all`].
    #[error("an empty prefix is refused; use invalidate_all to remove every entry")]
    EmptyPrefix,
    /// The tier's settings are invalid (the error names the field).
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// One level of a tiered cache: memory, Redis, an embedded store…
///
/// Keys are strings so every tier, local or remote, addresses an entry the same way and
/// prefix invalidation means the same thing everywhere. The trait is object-safe.
#[async_trait]
pub trait Tier<V: Send + Sync>: Send + Sync {
    /// A short name for stats and logs (`"l1"`, `"redis"`, `"redb"`).
    fn name(&self) -> &str;

    /// The value under `key`, if present and not expired.
    async fn get(&self, key: &str) -> Result<Option<V>, TierError>;

    /// Several values at once, in the order of `keys`; tiers with a round trip per call
    /// override this to pipeline.
    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<V>>, TierError> {
        let mut values = Vec::with_capacity(keys.len());
        for key in keys {
            values.push(self.get(key).await?);
        }
        Ok(values)
    }

    /// Stores `value` under `key`, expiring after `ttl` (never when `None`).
    async fn set(&self, key: &str, value: &V, ttl: Option<Duration>) -> Result<(), TierError>;

    /// Removes `key`; removing an absent key is not an error.
    async fn delete(&self, key: &str) -> Result<(), TierError>;

    /// Removes every key that starts with `prefix` and returns how many were removed.
    /// An empty prefix is refused with [`TierError::EmptyPrefix`]: on a shared store it
    /// would read as "everything", so that is the separate [`invalidate_all`](Self::invalidate_all).
    async fn invalidate_prefix(&self, prefix: &str) -> Result<u64, TierError>;

    /// Removes every entry of this tier and returns how many were removed. A tier in a
    /// shared store removes only what is its own (a Redis tier: the keys in its namespace).
    async fn invalidate_all(&self) -> Result<u64, TierError>;

    /// Counters since the tier was created.
    fn stats(&self) -> TierStats;
}

/// Refuses the empty prefix every tier must refuse (see [`Tier::invalidate_prefix`]).
pub(crate) fn ensure_prefix(prefix: &str) -> Result<(), TierError> {
    if prefix.is_empty() {
        Err(TierError::EmptyPrefix)
    } else {
        Ok(())
    }
}

/// A tier's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TierStats {
    /// Reads that found a value.
    pub hits: u64,
    /// Reads that found nothing (or only an expired value).
    pub misses: u64,
    /// Values written.
    pub sets: u64,
    /// Keys deleted one by one.
    pub deletes: u64,
    /// Keys removed by prefix invalidation or expiry reclamation.
    pub invalidated: u64,
    /// Operations that failed.
    pub errors: u64,
}

impl TierStats {
    /// Hits over reads; zero before the first read.
    pub fn hit_ratio(&self) -> f64 {
        let reads = self.hits + self.misses;
        if reads == 0 {
            0.0
        } else {
            self.hits as f64 / reads as f64
        }
    }
}

#[cfg(any(feature = "redis", feature = "persistent"))]
backstop_core::counter_set!(
    /// Lock-free counters behind [`TierStats`], for the byte-oriented tier implementations.
    pub(crate) struct TierCounters => TierStats {
        hits,
        misses,
        sets,
        deletes,
        invalidated,
        errors,
    }
);

#[cfg(any(feature = "redis", feature = "persistent"))]
impl TierCounters {
    /// Counts a read as a hit or a miss by what it found, and decodes what it found.
    pub(crate) fn decode_read<V: DeserializeOwned>(
        &self,
        codec: &ValueCodec,
        found: Option<Vec<u8>>,
    ) -> Result<Option<V>, TierError> {
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        Self::bump(counter);
        found.map(|bytes| codec.decode(&bytes)).transpose()
    }

    pub(crate) fn set(&self) {
        Self::bump(&self.sets);
    }

    pub(crate) fn delete(&self) {
        Self::bump(&self.deletes);
    }

    pub(crate) fn invalidated(&self, count: u64) {
        self.invalidated.fetch_add(count, Ordering::Relaxed);
    }

    /// Counts a failed operation and passes its result through.
    pub(crate) fn track<T>(&self, result: Result<T, TierError>) -> Result<T, TierError> {
        if result.is_err() {
            Self::bump(&self.errors);
        }
        result
    }

    pub(crate) fn snapshot(&self) -> TierStats {
        self.read_into(TierStats::default())
    }
}
