//! `StreamCacheLayer`: a [`StreamCache`] in front of any streaming [`Service`].

use std::sync::Arc;

use backstop_core::{
    Clock, Layer, Rejected, Service, StackError, SystemClock, in_span, record_key_hash,
};
use futures::Stream;

use super::cache::{CachedStream, StreamCache};
use crate::{CacheKey, RequestAsKey};
use tracing::Instrument;

/// Wraps a streaming service (its response is a `Stream` of `Result<T, S::Error>`
/// chunks) so requests with a cache key are answered by
/// [`StreamCache::get_or_load_stream`]: replayed on a hit, shared while in flight, stored
/// once complete. Requests whose [`key`](Self::key) is `None` pass straight through.
///
/// The service it makes, [`StreamCacheService`], answers with a [`CachedStream`] and has
/// the inner service's own error type (`S::Error: StackError`). Its `call` returns at
/// once for a cached key: the inner service is called when the stream is first polled,
/// and its failure to open is the stream's first item.
///
/// ```
/// use backstop_cache::{StreamCache, StreamCacheLayer, TieredCache};
/// use backstop_core::{Error, Layer, Service, service_fn};
/// use backstop_dedup::StreamGroup;
/// use futures::StreamExt;
///
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # rt.block_on(async {
/// let model = service_fn(|prompt: String| async move {
///     let tokens = prompt.split(' ').map(|t| Ok(t.to_string())).collect::<Vec<_>>();
///     Ok::<_, Error<std::io::Error>>(futures::stream::iter(tokens))
/// });
/// let streams = StreamCache::builder(
///     TieredCache::in_memory(1_000)?,
///     StreamGroup::new(),
/// )
/// .build()?;
/// let service = StreamCacheLayer::new(streams.clone())
///     .key(|prompt: &String| Some(prompt.to_lowercase()))
///     .layer(model);
/// let first = service.call("Hello World".into()).await.unwrap().collect::<Vec<_>>().await;
/// let again = service.call("hello world".into()).await.unwrap();
/// assert!(again.is_replay());
/// assert_eq!(again.collect::<Vec<_>>().await.len(), first.len());
/// # Ok::<(), backstop_core::config::ConfigError>(())
/// # }).unwrap();
/// ```
pub struct StreamCacheLayer<K, T, E, C = SystemClock, F = RequestAsKey> {
    cache: StreamCache<K, T, E, C>,
    key: Arc<F>,
}

impl<K, T, E, C> StreamCacheLayer<K, T, E, C> {
    /// Caches streams in `cache`, keyed by the request itself until [`key`](Self::key)
    /// says otherwise.
    pub fn new(cache: StreamCache<K, T, E, C>) -> Self {
        Self {
            cache,
            key: Arc::new(RequestAsKey),
        }
    }
}

impl<K, T, E, C, F> StreamCacheLayer<K, T, E, C, F> {
    /// Caches requests under the key `key` extracts (`None`: do not cache this one).
    pub fn key<Req, F2>(self, key: F2) -> StreamCacheLayer<K, T, E, C, F2>
    where
        F2: Fn(&Req) -> Option<K> + Send + Sync,
    {
        StreamCacheLayer {
            cache: self.cache,
            key: Arc::new(key),
        }
    }

    /// The stream cache this layer answers from.
    pub fn cache(&self) -> &StreamCache<K, T, E, C> {
        &self.cache
    }
}

impl<K, T, E, C, F> Clone for StreamCacheLayer<K, T, E, C, F> {
    fn clone(&self) -> Self {
        Self {
            cache: self.cache.clone(),
            key: Arc::clone(&self.key),
        }
    }
}

impl<S, K, T, E, C, F> Layer<S> for StreamCacheLayer<K, T, E, C, F> {
    type Service = StreamCacheService<S, K, T, E, C, F>;

    fn layer(&self, inner: S) -> Self::Service {
        StreamCacheService {
            inner: Arc::new(inner),
            cache: self.cache.clone(),
            key: Arc::clone(&self.key),
        }
    }
}

/// The service a [`StreamCacheLayer`] produces; its error is the inner service's.
pub struct StreamCacheService<S, K, T, E, C = SystemClock, F = RequestAsKey> {
    inner: Arc<S>,
    cache: StreamCache<K, T, E, C>,
    key: Arc<F>,
}

impl<S, K, T, E, C, F> Clone for StreamCacheService<S, K, T, E, C, F> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            cache: self.cache.clone(),
            key: Arc::clone(&self.key),
        }
    }
}

impl<S, St, T, C, F, Req> Service<Req> for StreamCacheService<S, F::Key, T, S::Error, C, F>
where
    S: Service<Req, Response = St> + 'static,
    S::Error: StackError,
    St: Stream<Item = Result<T, S::Error>> + Send + 'static,
    T: Clone + Send + Sync + 'static,
    C: Clock,
    F: CacheKey<Req>,
    Req: Send + 'static,
{
    type Response = CachedStream<T, S::Error>;
    type Error = S::Error;

    async fn call(&self, req: Req) -> Result<CachedStream<T, S::Error>, S::Error> {
        // One span per call (issue 27); disabled without a subscriber. A miss opens the
        // upstream inside it (even when first polled later), so the layers below nest.
        let span = backstop_core::layer_span!("backstop.stream_cache", key_hash);
        in_span(&span, || async {
            let Some(key) = self.key.cache_key(&req) else {
                return Ok(CachedStream::direct(self.inner.call(req).await?));
            };
            let inner = Arc::clone(&self.inner);
            if span.is_disabled() {
                let open = move || async move { inner.call(req).await };
                return Ok(self.cache.get_or_load_stream(&key, open).await);
            }
            record_key_hash(&span, key.as_ref());
            let within = span.clone();
            let open = move || async move { inner.call(req).await }.instrument(within);
            Ok(self.cache.get_or_load_stream(&key, open).await)
        })
        .await
    }

    /// The cache refuses nothing itself; a miss needs the inner service, so its
    /// readiness is the inner service's.
    fn readiness(&self) -> Result<(), Rejected> {
        self.inner.readiness()
    }
}
