//! `get_or_load`: one loader run per key across all callers, stale-while-revalidate,
//! refresh-ahead and negative caching.

use backstop_core::{Clock, RejectKind, Rejected, contain_future};
use backstop_dedup::DedupError;
use std::any::TypeId;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::cache::Inner;
use super::load_error::{Failure, FlightKey, loader_failure, typed};
use crate::{LoadError, TieredCache};

/// Whether a load may be answered by a value another load wrote meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reload {
    /// A miss: a fresh value found on a second look is as good as a loaded one.
    IfMissing,
    /// A background refresh: the value is there and must be replaced.
    Always,
}

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
    ///
    /// The loader's error stays typed: every caller that shared the load gets it as
    /// [`LoadError::Loader`]`(Arc<E>)`. Loads coalesce among callers with the same error
    /// type `E`.
    pub async fn get_or_load<F, Fut, E>(
        &self,
        key: &K,
        loader: F,
    ) -> Result<Option<V>, LoadError<E>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
        E: Send + Sync + 'static,
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
                    .saturating_add(backstop_core::time::millis(grace))
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
        Inner::load(inner.clone(), key.to_string(), loader, Reload::IfMissing)
            .await
            .map_err(typed)
    }

    fn refresh_in_background<F, Fut, E>(&self, key: &str, loader: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
        E: Send + Sync + 'static,
    {
        if self
            .inner
            .loads
            .is_in_flight(&(TypeId::of::<E>(), key.to_string()))
        {
            return;
        }
        self.inner
            .counters
            .refreshes
            .fetch_add(1, Ordering::Relaxed);
        let inner = self.inner.clone();
        let key = key.to_string();
        // Everything the refresh runs (loader, tiers) runs inside the coalescing group,
        // which contains panics: a panicking refresh is a counted failure, never a dead
        // task holding the key.
        tokio::spawn(async move {
            if let Err(failure) = Inner::load(inner, key, loader, Reload::Always).await {
                tracing::warn!(error = %failure, "background cache refresh failed; the stale value stays until its grace ends");
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
    ) -> Result<Option<V>, Failure>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
        E: Send + Sync + 'static,
    {
        let inner = self.clone();
        let write_key = key.clone();
        let flight: FlightKey = (TypeId::of::<E>(), key);
        let counters = self.clone();
        let result = self
            .loads
            .work(flight, move || {
                let load = async move {
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
                    let load = contain_future("cache loader", async move { loader().await });
                    let contained = match inner.config.loader_timeout {
                        Some(limit) => {
                            tokio::time::timeout(backstop_core::time::clamp(limit), load)
                                .await
                                .map_err(|_| {
                                    Failure::Rejected(Rejected::new(RejectKind::Timeout))
                                })?
                        }
                        None => load.await,
                    };
                    inner
                        .load_time
                        .record(inner.clock().now().saturating_duration_since(started));
                    let loaded = contained.map_err(|panicked| {
                        inner.counters.panicked.fetch_add(1, Ordering::Relaxed);
                        Failure::Panicked(panicked)
                    })?;
                    let value = loaded.map_err(loader_failure)?;
                    if value.is_some() || inner.config.negative_ttl.is_some() {
                        // A failed write leaves the tiers as they were; the caller still
                        // gets the value, and the failure is logged and counted by the tier.
                        let _ = inner.write(&write_key, value.clone()).await;
                    }
                    Ok(value)
                };
                // A tier that panics mid-load fails this load, counted, like the loader.
                async move {
                    contain_future("cache load", load)
                        .await
                        .unwrap_or_else(|panicked| {
                            counters.counters.panicked.fetch_add(1, Ordering::Relaxed);
                            Err(Failure::Panicked(panicked))
                        })
                }
            })
            .await;
        result.map(|outcome| outcome.value).map_err(|error| {
            self.counters.load_failures.fetch_add(1, Ordering::Relaxed);
            match error {
                DedupError::Inner(failure) => failure,
                // The whole load runs contained (above), so the group sees no panic and,
                // having no store or follower timeout, refuses nothing; should it still
                // report something, the caller gets it as a contained failure.
                other => Failure::Panicked(backstop_core::Panicked::from_payload(
                    "cache load",
                    &other.to_string(),
                )),
            }
        })
    }
}
