//! `get_or_load`: one loader run per key across all callers, stale-while-revalidate,
//! refresh-ahead and negative caching.

use backstop_core::Clock;
use backstop_dedup::DedupError;
use std::error::Error as StdError;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::cache::Inner;
use crate::TieredCache;

/// Why `get_or_load` produced no value. Every caller that shared one load receives the
/// same error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadError {
    /// The loader returned an error (downcast it to the loader's own type).
    #[error("cache loader failed: {0}")]
    Loader(Arc<dyn StdError + Send + Sync>),
    /// The loader ran longer than the configured `loader_timeout`.
    #[error("cache loader did not finish within {0:?}")]
    Timeout(Duration),
    /// The loader panicked; the panic was contained and the key released.
    #[error("cache loader panicked: {0}")]
    Panicked(Arc<str>),
}

/// Whether a load may be answered by a value another load wrote meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reload {
    /// A miss: a fresh value found on a second look is as good as a loaded one.
    IfMissing,
    /// A background refresh: the value is there and must be replaced.
    Always,
}

pub(crate) type Loads<V> = backstop_dedup::Group<String, Option<V>, LoadError>;

impl<K, V, C> TieredCache<K, V, C>
where
    K: AsRef<str>,
    V: Clone + Send + Sync + 'static,
    C: Clock,
{
    /// The cached value for `key`, or the loader's answer, which is then written to
    /// every tier. `Ok(None)` means the loader found nothing (remembered for
    /// `negative_ttl` when configured).
    ///
    /// Concurrent callers for one key share a single loader run (through a
    /// `backstop_dedup::Group`), bounded by `loader_timeout`. A stale value within
    /// `stale_grace` is returned at once while one background refresh runs, and a fresh
    /// value within `refresh_ahead` of going stale is refreshed in the background too.
    /// Dropping the returned future never cancels a load other callers wait on.
    pub async fn get_or_load<F, Fut, E>(&self, key: &K, loader: F) -> Result<Option<V>, LoadError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
        E: StdError + Send + Sync + 'static,
    {
        let key = key.as_ref();
        let inner = &self.inner;
        let now = inner.wall.unix_millis();
        if let Some(entry) = inner.lookup(key).await {
            if entry.is_fresh(now) {
                let left = Duration::from_millis(entry.fresh_until - now);
                if entry.value.is_some()
                    && inner
                        .config
                        .refresh_ahead
                        .is_some_and(|ahead| left <= ahead)
                {
                    self.refresh_in_background(key, loader);
                }
                if entry.value.is_none() {
                    inner.counters.negative_hits.fetch_add(1, Ordering::Relaxed);
                }
                return Ok(entry.value);
            }
            let stale_until = inner.config.stale_grace.map(|grace| {
                entry
                    .fresh_until
                    .saturating_add(u64::try_from(grace.as_millis()).unwrap_or(u64::MAX))
            });
            if let (Some(value), Some(stale_until)) = (entry.value, stale_until)
                && now < stale_until
            {
                inner.counters.stale_served.fetch_add(1, Ordering::Relaxed);
                self.refresh_in_background(key, loader);
                return Ok(Some(value));
            }
        }
        inner.counters.misses.fetch_add(1, Ordering::Relaxed);
        Inner::load(inner.clone(), key.to_string(), loader, Reload::IfMissing).await
    }

    fn refresh_in_background<F, Fut, E>(&self, key: &str, loader: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
        E: StdError + Send + Sync + 'static,
    {
        if self.inner.loads.is_in_flight(&key.to_string()) {
            return;
        }
        self.inner
            .counters
            .refreshes
            .fetch_add(1, Ordering::Relaxed);
        let inner = self.inner.clone();
        let key = key.to_string();
        tokio::spawn(async move {
            if let Err(error) = Inner::load(inner, key, loader, Reload::Always).await {
                tracing::warn!(%error, "background cache refresh failed; the stale value stays until its grace ends");
            }
        });
    }
}

impl<V, C> Inner<V, C>
where
    V: Clone + Send + Sync + 'static,
    C: Clock,
{
    async fn load<F, Fut, E>(
        self: Arc<Self>,
        key: String,
        loader: F,
        reload: Reload,
    ) -> Result<Option<V>, LoadError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
        E: StdError + Send + Sync + 'static,
    {
        let inner = self.clone();
        let write_key = key.clone();
        let result = self
            .loads
            .work(key, move || async move {
                // A caller that missed just before the previous load wrote its value can
                // start a new execution after that one finished: look again first.
                if reload == Reload::IfMissing
                    && let Some(entry) = inner.lookup(&write_key).await
                    && entry.is_fresh(inner.wall.unix_millis())
                {
                    return Ok(entry.value);
                }
                inner.counters.loads.fetch_add(1, Ordering::Relaxed);
                let started = inner.clock().now();
                let loaded = match inner.config.loader_timeout {
                    Some(limit) => tokio::time::timeout(limit, loader())
                        .await
                        .map_err(|_| LoadError::Timeout(limit))?,
                    None => loader().await,
                };
                inner
                    .load_time
                    .record(inner.clock().now().saturating_duration_since(started));
                let value = loaded.map_err(|error| LoadError::Loader(Arc::new(error)))?;
                if value.is_some() || inner.config.negative_ttl.is_some() {
                    // A failed write leaves the tiers as they were; the caller still
                    // gets the value, and the failure is logged and counted by the tier.
                    let _ = inner.write(&write_key, value.clone()).await;
                }
                Ok(value)
            })
            .await;
        result.map(|outcome| outcome.value).map_err(|error| {
            self.counters.load_failures.fetch_add(1, Ordering::Relaxed);
            match error {
                DedupError::Inner(error) => error,
                DedupError::Panicked { message } => LoadError::Panicked(message),
                DedupError::Timeout { after } => LoadError::Timeout(after),
                // Only a Redis-backed `DistributedGroup` reports its store unavailable.
                DedupError::Unavailable { reason } => {
                    LoadError::Loader(Arc::new(std::io::Error::other(reason.to_string())))
                }
            }
        })
    }
}
