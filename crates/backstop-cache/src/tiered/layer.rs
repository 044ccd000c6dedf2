//! `CacheLayer`: put a tiered cache in front of any [`Service`].

use backstop_core::{
    Clock, Layer, RejectKind, Rejected, Service, StackError, SystemClock, in_span, record_key_hash,
};
use std::sync::Arc;

use crate::TieredCache;

/// Which cache key a request is stored under; `None` lets the request pass through
/// uncached. Implemented by closures `Fn(&Req) -> Option<K>` (set with
/// [`CacheLayer::key`]) and by [`RequestAsKey`].
pub trait CacheKey<Req>: Send + Sync {
    /// The cache key type.
    type Key: AsRef<str> + Send + Sync;
    /// The key of `request`, or `None` to call the inner service without caching.
    fn cache_key(&self, request: &Req) -> Option<Self::Key>;
}

/// The default key of a [`CacheLayer`]: the request itself, for string-like requests.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestAsKey;

impl<Req: AsRef<str> + Clone + Send + Sync> CacheKey<Req> for RequestAsKey {
    type Key = Req;

    fn cache_key(&self, request: &Req) -> Option<Req> {
        Some(request.clone())
    }
}

impl<Req, K, F> CacheKey<Req> for F
where
    F: Fn(&Req) -> Option<K> + Send + Sync,
    K: AsRef<str> + Send + Sync,
{
    type Key = K;

    fn cache_key(&self, request: &Req) -> Option<K> {
        self(request)
    }
}

/// Wraps a service so that requests with a cache key are answered from a
/// [`TieredCache`], calling the service (once per key across concurrent callers) only on
/// a miss. Requests whose [`key`](Self::key) is `None` pass straight through.
///
/// The service it makes, [`CacheService`], has the inner service's own error type
/// (`S::Error: StackError`, no `Clone` needed): a failed load shared by several callers
/// reaches each of them through [`StackError::shared`], a loader timeout as a
/// [`Rejected`] with `RejectKind::Timeout`, a panic as [`StackError::panicked`].
///
/// ```
/// use backstop_cache::{CacheLayer, TieredCache};
/// use backstop_core::{Layer, Service, ServiceExt, service_fn};
///
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # rt.block_on(async {
/// let cache: TieredCache<String, String> = TieredCache::in_memory(10_000)
///     .unwrap();
/// let llm = service_fn(|prompt: String| async move {
///     Ok::<_, std::io::Error>(format!("answer to {prompt}"))
/// })
/// .lift(); // Error = backstop_core::Error<std::io::Error>
/// let cached = CacheLayer::new(cache.clone())
///     .key(|prompt: &String| Some(prompt.to_lowercase()))
///     .layer(llm);
/// assert_eq!(cached.call("hi".to_string()).await.unwrap(), "answer to hi");
/// assert_eq!(cache.get(&"hi".to_string()).await.as_deref(), Some("answer to hi"));
/// # });
/// ```
pub struct CacheLayer<K, V, C = SystemClock, F = RequestAsKey> {
    cache: TieredCache<K, V, C>,
    key: Arc<F>,
}

impl<K, V, C> CacheLayer<K, V, C> {
    /// Caches responses in `cache`, keyed by the request itself until
    /// [`key`](Self::key) says otherwise.
    pub fn new(cache: TieredCache<K, V, C>) -> Self {
        Self {
            cache,
            key: Arc::new(RequestAsKey),
        }
    }
}

impl<K, V, C, F> CacheLayer<K, V, C, F> {
    /// Caches requests under the key `key` extracts (`None`: do not cache this one).
    pub fn key<Req, F2>(self, key: F2) -> CacheLayer<K, V, C, F2>
    where
        F2: Fn(&Req) -> Option<K> + Send + Sync,
    {
        CacheLayer {
            cache: self.cache,
            key: Arc::new(key),
        }
    }

    /// The cache this layer answers from.
    pub fn cache(&self) -> &TieredCache<K, V, C> {
        &self.cache
    }
}

impl<K, V, C, F> Clone for CacheLayer<K, V, C, F> {
    fn clone(&self) -> Self {
        Self {
            cache: self.cache.clone(),
            key: self.key.clone(),
        }
    }
}

impl<S, K, V, C, F> Layer<S> for CacheLayer<K, V, C, F> {
    type Service = CacheService<S, K, V, C, F>;

    fn layer(&self, inner: S) -> Self::Service {
        CacheService {
            inner: Arc::new(inner),
            cache: self.cache.clone(),
            key: self.key.clone(),
        }
    }
}

/// The service a [`CacheLayer`] produces; its error is the inner service's.
pub struct CacheService<S, K, V, C = SystemClock, F = RequestAsKey> {
    inner: Arc<S>,
    cache: TieredCache<K, V, C>,
    key: Arc<F>,
}

impl<S, K, V, C, F> Clone for CacheService<S, K, V, C, F> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            cache: self.cache.clone(),
            key: self.key.clone(),
        }
    }
}

impl<S, V, C, F, Req> Service<Req> for CacheService<S, F::Key, V, C, F>
where
    S: Service<Req, Response = V> + 'static,
    S::Error: StackError,
    V: Clone + Send + Sync + 'static,
    C: Clock,
    F: CacheKey<Req>,
    Req: Send + 'static,
{
    type Response = V;
    type Error = S::Error;

    async fn call(&self, req: Req) -> Result<V, S::Error> {
        // One span per call (issue 27); disabled without a subscriber.
        let span = backstop_core::layer_span!("backstop.cache", key_hash);
        in_span(&span, || async {
            let Some(key) = self.key.cache_key(&req) else {
                return self.inner.call(req).await;
            };
            record_key_hash(&span, key.as_ref());
            let inner = self.inner.clone();
            let loaded = self
                .cache
                .get_or_load(&key, move || async move { inner.call(req).await.map(Some) })
                .await
                .map_err(|error| error.into_stack_error())?;
            // The loader always answers `Some`; `None` can only be a remembered "not found"
            // written by another user of the same cache under this key: the cache cannot
            // answer, and this layer does not call around it.
            loaded.ok_or_else(|| S::Error::rejected(Rejected::new(RejectKind::Unavailable)))
        })
        .await
    }

    /// The cache refuses nothing itself; a miss needs the inner service, so its
    /// readiness is the inner service's.
    fn readiness(&self) -> Result<(), Rejected> {
        self.inner.readiness()
    }
}
