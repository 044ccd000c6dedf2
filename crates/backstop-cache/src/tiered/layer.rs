//! `TieredCacheLayer`: put a tiered cache in front of any [`Service`].

use backstop_core::{Clock, Layer, Service};
use std::error::Error as StdError;
use std::sync::Arc;

use crate::{LoadError, TieredCache};

/// Wraps a service so that requests with a cache key are answered from a
/// [`TieredCache`], calling the service (once per key across concurrent callers) only on
/// a miss. Requests for which `key_of` returns `None` pass straight through.
///
/// The wrapped service's errors arrive as [`LoadError::Loader`]; downcast to read them.
///
/// ```
/// use backstop_cache::{MemoryTier, TieredCache, TieredCacheLayer};
/// use backstop_core::{Layer, Service, service_fn};
///
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # rt.block_on(async {
/// let cache: TieredCache<String, String> = TieredCache::builder()
///     .memory(MemoryTier::with_capacity(10_000).unwrap(), None)
///     .build()
///     .unwrap();
/// let llm = service_fn(|prompt: String| async move {
///     Ok::<_, std::io::Error>(format!("answer to {prompt}"))
/// });
/// let cached =
///     TieredCacheLayer::new(cache.clone(), |prompt: &String| Some(prompt.clone())).layer(llm);
/// assert_eq!(cached.call("hi".to_string()).await.unwrap(), "answer to hi");
/// assert_eq!(cache.get(&"hi".to_string()).await.as_deref(), Some("answer to hi"));
/// # });
/// ```
pub struct TieredCacheLayer<K, V, C, F> {
    cache: TieredCache<K, V, C>,
    key_of: Arc<F>,
}

impl<K, V, C, F> TieredCacheLayer<K, V, C, F> {
    /// Caches responses in `cache` under the key `key_of` extracts from each request.
    pub fn new(cache: TieredCache<K, V, C>, key_of: F) -> Self {
        Self {
            cache,
            key_of: Arc::new(key_of),
        }
    }
}

impl<K, V, C, F> Clone for TieredCacheLayer<K, V, C, F> {
    fn clone(&self) -> Self {
        Self {
            cache: self.cache.clone(),
            key_of: self.key_of.clone(),
        }
    }
}

impl<S, K, V, C, F> Layer<S> for TieredCacheLayer<K, V, C, F> {
    type Service = TieredCacheService<S, K, V, C, F>;

    fn layer(&self, inner: S) -> Self::Service {
        TieredCacheService {
            inner: Arc::new(inner),
            cache: self.cache.clone(),
            key_of: self.key_of.clone(),
        }
    }
}

/// The service a [`TieredCacheLayer`] produces.
pub struct TieredCacheService<S, K, V, C, F> {
    inner: Arc<S>,
    cache: TieredCache<K, V, C>,
    key_of: Arc<F>,
}

impl<S, K, V, C, F, Req> Service<Req> for TieredCacheService<S, K, V, C, F>
where
    S: Service<Req, Response = V> + 'static,
    S::Error: StdError + Send + Sync + 'static,
    K: AsRef<str> + Send + Sync,
    V: Clone + Send + Sync + 'static,
    C: Clock,
    F: Fn(&Req) -> Option<K> + Send + Sync,
    Req: Send + 'static,
{
    type Response = V;
    type Error = LoadError;

    async fn call(&self, req: Req) -> Result<V, LoadError> {
        let Some(key) = (self.key_of)(&req) else {
            return self
                .inner
                .call(req)
                .await
                .map_err(|error| LoadError::Loader(Arc::new(error)));
        };
        let inner = self.inner.clone();
        let loaded = self
            .cache
            .get_or_load(&key, move || async move { inner.call(req).await.map(Some) })
            .await?;
        // The loader always answers `Some`; `None` can only be a remembered "not found"
        // written by another user of the same cache under this key.
        loaded.ok_or_else(|| LoadError::Loader(Arc::new(NotFound)))
    }
}

/// The cache held a "not found" for a key the layer looked up.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the cache remembers this key as not found")]
pub struct NotFound;
