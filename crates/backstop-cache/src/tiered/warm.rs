//! Cache warming: load a known set of keys before traffic arrives.

use backstop_core::Clock;
use futures::StreamExt;
use serde::Serialize;
use std::future::Future;

use crate::TieredCache;

/// Where a warming run stands; passed to the progress callback after each key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct WarmProgress {
    /// Keys handled so far.
    pub done: usize,
    /// Keys to handle.
    pub total: usize,
    /// Keys now cached (already present, or loaded).
    pub cached: usize,
    /// Keys whose loader failed, timed out or found nothing.
    pub failed: usize,
}

impl<K, V, C> TieredCache<K, V, C>
where
    K: AsRef<str> + Send + Sync,
    V: Clone + Send + Sync + 'static,
    C: Clock,
{
    /// Up to `limit` keys resident in the memory L1, for a restarted process to warm from
    /// (store them anywhere, then pass them to [`warm_with`](Self::warm_with)).
    ///
    /// The L1's S3-FIFO policy keeps only keys that were read again after their first
    /// insert (one-hit wonders are evicted from its probation queue), so its residents
    /// are the hot set. Empty when the cache has no memory tier.
    pub fn hot_keys(&self, limit: usize) -> Vec<String> {
        self.inner.memory_keys(limit)
    }

    /// Loads every key in `keys` that is not cached yet, at most `concurrency` at a time,
    /// through `get_or_load` (so warming coalesces with live traffic for the same keys),
    /// calling `on_progress` after each key. Returns the final tally.
    pub async fn warm_with<L, Fut, E>(
        &self,
        keys: Vec<K>,
        concurrency: usize,
        loader: L,
        on_progress: impl Fn(WarmProgress),
    ) -> WarmProgress
    where
        L: Fn(&K) -> Fut,
        Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
        E: Send + Sync + 'static,
    {
        let mut progress = WarmProgress {
            total: keys.len(),
            ..WarmProgress::default()
        };
        let mut results = futures::stream::iter(keys.iter().map(|key| {
            let load = loader(key);
            async move { self.get_or_load(key, move || load).await }
        }))
        .buffer_unordered(concurrency.max(1));
        while let Some(result) = results.next().await {
            progress.done += 1;
            match result {
                Ok(Some(_)) => progress.cached += 1,
                Ok(None) | Err(_) => progress.failed += 1,
            }
            on_progress(progress);
        }
        progress
    }
}
