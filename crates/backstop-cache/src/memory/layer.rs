//! The cache as a [`Layer`] over a [`Service`]: answers repeated requests from memory.

use std::hash::Hash;

use backstop_core::{Layer, Rejected, Service};

use super::cache::MemoryCache;

/// Wraps services so that a request already answered is served from a [`MemoryCache`]
/// keyed by the request itself. Errors are not cached. Clones share one cache.
///
/// ```
/// use backstop_cache::{MemoryCacheLayer, MemoryCache};
/// use backstop_core::{Layer, Service, service_fn};
///
/// let cache: MemoryCache<u32, u32> = MemoryCache::builder().max_capacity(1000).build().unwrap();
/// let svc = MemoryCacheLayer::new(cache.clone())
///     .layer(service_fn(|n: u32| async move { Ok::<_, std::convert::Infallible>(n * 2) }));
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # rt.block_on(async {
/// assert_eq!(svc.call(21).await, Ok(42));
/// assert_eq!(svc.call(21).await, Ok(42));
/// # });
/// assert_eq!(cache.stats().hits, 1);
/// ```
#[derive(Debug, Clone)]
pub struct MemoryCacheLayer<K, V> {
    cache: MemoryCache<K, V>,
}

impl<K, V> MemoryCacheLayer<K, V> {
    /// A layer answering from `cache`.
    pub fn new(cache: MemoryCache<K, V>) -> Self {
        Self { cache }
    }
}

impl<S, K, V> Layer<S> for MemoryCacheLayer<K, V> {
    type Service = MemoryCacheService<S, K, V>;

    fn layer(&self, inner: S) -> Self::Service {
        MemoryCacheService {
            inner,
            cache: self.cache.clone(),
        }
    }
}

/// The service produced by [`MemoryCacheLayer`].
#[derive(Debug, Clone)]
pub struct MemoryCacheService<S, K, V> {
    inner: S,
    cache: MemoryCache<K, V>,
}

impl<S, K, V> MemoryCacheService<S, K, V> {
    /// The cache this service answers from.
    pub fn cache(&self) -> &MemoryCache<K, V> {
        &self.cache
    }
}

impl<S, K, V> Service<K> for MemoryCacheService<S, K, V>
where
    S: Service<K, Response = V>,
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    type Response = V;
    type Error = S::Error;

    async fn call(&self, req: K) -> Result<V, S::Error> {
        if let Some(v) = self.cache.get(&req) {
            return Ok(v);
        }
        let v = self.inner.call(req.clone()).await?;
        self.cache.insert(req, v.clone());
        Ok(v)
    }

    /// The cache refuses nothing itself; a miss needs the inner service, so its
    /// readiness is the inner service's.
    fn readiness(&self) -> Result<(), Rejected> {
        self.inner.readiness()
    }
}
