//! A tier behind a circuit breaker: when Redis is down, stop waiting on it.

use async_trait::async_trait;
use backstop_breaker::Breaker;
use backstop_core::{Clock, SystemClock};
use std::future::Future;
use std::time::Duration;

use crate::{Tier, TierError, TierStats};

/// Wraps a tier (typically Redis) in a [`Breaker`]: once the tier fails or times out
/// often enough, its calls are refused at once with [`TierError::Rejected`] (circuit open) instead of
/// each waiting for a timeout, and the tiered cache keeps serving from the other tiers.
/// The breaker probes the tier again after its open period, so the tier comes back by
/// itself when the backend recovers. Undecodable values are the data's fault, not the
/// backend's, and do not count against it.
pub struct GuardedTier<T, C: Clock = SystemClock> {
    tier: T,
    breaker: Breaker<C>,
    name: String,
}

impl<T, C: Clock> GuardedTier<T, C> {
    /// Guards `tier` with `breaker`.
    pub fn new<V>(tier: T, breaker: Breaker<C>) -> Self
    where
        T: Tier<V>,
        V: Send + Sync,
    {
        let name = format!("{}+breaker", tier.name());
        Self {
            tier,
            breaker,
            name,
        }
    }

    /// The breaker, to read its state or force it open for maintenance.
    pub fn breaker(&self) -> &Breaker<C> {
        &self.breaker
    }

    async fn guarded<R, Fut>(&self, operation: impl FnOnce() -> Fut) -> Result<R, TierError>
    where
        Fut: Future<Output = Result<R, TierError>>,
    {
        let permit = self.breaker.try_acquire().map_err(TierError::Rejected)?;
        let result = operation().await;
        match &result {
            Ok(_) => permit.success(),
            Err(TierError::Codec(_)) => permit.ignore(),
            Err(_) => permit.failure(),
        }
        result
    }
}

#[async_trait]
impl<T, V, C> Tier<V> for GuardedTier<T, C>
where
    T: Tier<V>,
    V: Send + Sync,
    C: Clock,
{
    fn name(&self) -> &str {
        &self.name
    }

    async fn get(&self, key: &str) -> Result<Option<V>, TierError> {
        self.guarded(|| self.tier.get(key)).await
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<V>>, TierError> {
        self.guarded(|| self.tier.get_many(keys)).await
    }

    async fn set(&self, key: &str, value: &V, ttl: Option<Duration>) -> Result<(), TierError> {
        self.guarded(|| self.tier.set(key, value, ttl)).await
    }

    async fn delete(&self, key: &str) -> Result<(), TierError> {
        self.guarded(|| self.tier.delete(key)).await
    }

    async fn invalidate_prefix(&self, prefix: &str) -> Result<u64, TierError> {
        // Refused before the breaker: a caller's mistake says nothing of the backend.
        super::tier::ensure_prefix(prefix)?;
        self.guarded(|| self.tier.invalidate_prefix(prefix)).await
    }

    async fn invalidate_all(&self) -> Result<u64, TierError> {
        self.guarded(|| self.tier.invalidate_all()).await
    }

    fn stats(&self) -> TierStats {
        self.tier.stats()
    }
}
