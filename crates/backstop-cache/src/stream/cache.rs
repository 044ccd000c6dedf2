//! `StreamCache`: streamed answers cached as chunk sequences, replayed on a hit, shared
//! while in flight on a miss.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use backstop_core::config::{ConfigError, Validate};
use backstop_core::{Clock, StackError, SystemClock};
use backstop_dedup::{SharedStream, StreamGroup};
use futures::future::Either;
use futures::{Stream, StreamExt};

use super::config::StreamCacheConfig;
use super::record::{ReplayPacing, ReplayStream, StreamRecord};
use super::recorder::Recorder;
use super::stats::{StreamCacheCounters, StreamCacheStats};
use crate::TieredCache;

/// What every recording of a stream cache shares.
pub(crate) struct StreamShared<T> {
    pub(crate) config: StreamCacheConfig,
    pub(crate) weigher: Arc<dyn Fn(&T) -> usize + Send + Sync>,
    pub(crate) counters: StreamCacheCounters,
}

/// Caches streamed answers (LLM tokens, server-sent events) in a [`TieredCache`], and
/// shares each stream while it is in flight through a [`StreamGroup`].
///
/// [`get_or_load_stream`](Self::get_or_load_stream) combines both:
///
/// - **Hit**: the stored [`StreamRecord`] is replayed as a stream, at once or paced like
///   the original ([`ReplayPacing`]); the first chunk comes without waiting for anything.
/// - **Miss**: the caller joins the stream in flight for the key (a late joiner first
///   replays what it missed) or opens it. The stream is recorded on its way through and,
///   once it completed cleanly, written to every tier (memory, Redis, disk) *before* its
///   readers see the end. A stream that fails, is cut (every reader left) or outgrows
///   the bounds of [`StreamCacheConfig`] is never stored, not even in part.
///
/// Every tier stores the record like any value (MessagePack in Redis, so another process
/// sharing the Redis tier replays it). Cloning is cheap and clones share everything.
///
/// ```
/// use backstop_cache::{StreamCache, StreamCacheConfig, TieredCache};
/// use backstop_core::Error;
/// use backstop_dedup::StreamGroup;
/// use futures::StreamExt;
///
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # rt.block_on(async {
/// let streams: StreamCache<String, String, Error<std::io::Error>> = StreamCache::builder(
///     TieredCache::in_memory(1_000)?,
///     StreamGroup::new(),
/// )
/// .weigher(|chunk: &String| chunk.len())
/// .build()?;
/// let open = || async {
///     let tokens = ["Par", "is"].map(|t| Ok(t.to_string()));
///     Ok(futures::stream::iter(tokens)) // the provider's streamed answer
/// };
/// let key = "capital of France?".to_string();
/// let live = streams.get_or_load_stream(&key, open).await;
/// assert!(!live.is_replay());
/// assert_eq!(live.map(Result::unwrap).collect::<Vec<_>>().await, ["Par", "is"]);
/// let hit = streams.get_or_load_stream(&key, open).await;
/// assert!(hit.is_replay());
/// assert_eq!(hit.map(Result::unwrap).collect::<Vec<_>>().await, ["Par", "is"]);
/// assert_eq!((streams.stats().loads, streams.stats().replays), (1, 1));
/// # Ok::<(), backstop_core::config::ConfigError>(())
/// # }).unwrap();
/// ```
pub struct StreamCache<K, T, E, C = SystemClock> {
    cache: TieredCache<K, StreamRecord<T>, C>,
    group: StreamGroup<String, T, E>,
    shared: Arc<StreamShared<T>>,
}

impl<K, T, E, C> Clone for StreamCache<K, T, E, C> {
    fn clone(&self) -> Self {
        Self {
            cache: self.cache.clone(),
            group: self.group.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K, T, E, C> fmt::Debug for StreamCache<K, T, E, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamCache")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

/// Builds a [`StreamCache`].
pub struct StreamCacheBuilder<K, T, E, C = SystemClock> {
    cache: TieredCache<K, StreamRecord<T>, C>,
    group: StreamGroup<String, T, E>,
    config: StreamCacheConfig,
    weigher: Arc<dyn Fn(&T) -> usize + Send + Sync>,
}

impl<K, T, E, C> fmt::Debug for StreamCacheBuilder<K, T, E, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamCacheBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<K, T: 'static, E, C> StreamCacheBuilder<K, T, E, C> {
    /// Replaces the settings.
    pub fn config(mut self, config: StreamCacheConfig) -> Self {
        self.config = config;
        self
    }

    /// How many bytes a chunk counts for against the recording bounds (its payload's
    /// length, typically). The default counts `size_of::<T>()`, right only for chunks
    /// that own no heap memory. A panicking weigher stops that recording (contained).
    pub fn weigher(mut self, weigher: impl Fn(&T) -> usize + Send + Sync + 'static) -> Self {
        self.weigher = Arc::new(weigher);
        self
    }

    /// The stream cache, once the settings are valid.
    pub fn build(self) -> Result<StreamCache<K, T, E, C>, ConfigError> {
        self.config.validate()?;
        Ok(StreamCache {
            cache: self.cache,
            group: self.group,
            shared: Arc::new(StreamShared {
                config: self.config,
                weigher: self.weigher,
                counters: StreamCacheCounters::default(),
            }),
        })
    }
}

impl<K, T: 'static, E, C> StreamCache<K, T, E, C> {
    /// A builder storing records in `cache` and sharing in-flight streams through
    /// `group`, with the default settings.
    pub fn builder(
        cache: TieredCache<K, StreamRecord<T>, C>,
        group: StreamGroup<String, T, E>,
    ) -> StreamCacheBuilder<K, T, E, C> {
        StreamCacheBuilder {
            cache,
            group,
            config: StreamCacheConfig::default(),
            weigher: Arc::new(|_| std::mem::size_of::<T>()),
        }
    }
}

impl<K, T, E, C> StreamCache<K, T, E, C>
where
    K: AsRef<str>,
    T: Clone + Send + Sync + 'static,
    E: StackError,
    C: Clock,
{
    /// The stored stream for `key`, replayed with the configured pacing; or the stream in
    /// flight for `key`, joined; or a new one opened with `open` (called when the returned
    /// stream is first polled), shared, and stored once it completed cleanly.
    ///
    /// Errors are items of the stream: a failure to open is its first item, a failure
    /// mid-stream comes after the chunks produced before it, to every reader.
    pub async fn get_or_load_stream<F, Fut, St>(&self, key: &K, open: F) -> CachedStream<T, E>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<St, E>> + Send + 'static,
        St: Stream<Item = Result<T, E>> + Send + 'static,
    {
        if let Some(replay) = self.replay(key, self.shared.config.pacing).await {
            return replay;
        }
        let name = key.as_ref().to_string();
        let inner = Arc::clone(&self.cache.inner);
        let shared = Arc::clone(&self.shared);
        let load = self.group.share(name.clone(), move || async move {
            // A caller that missed just before the previous stream was stored can open
            // the next one after that one ended: look again first.
            let now = inner.wall.unix_millis();
            if let Some(entry) = inner.lookup(&name).await
                && entry.is_fresh(now)
                && let Some(record) = entry.value
            {
                StreamCacheCounters::bump(&shared.counters.replays);
                return Ok(Either::Left(ReplayStream::new(
                    record,
                    ReplayPacing::Instant,
                )));
            }
            StreamCacheCounters::bump(&shared.counters.loads);
            let upstream = open().await?;
            Ok(Either::Right(Recorder::new(upstream, inner, name, shared)))
        });
        CachedStream {
            kind: Kind::Shared(load),
        }
    }

    /// The stored stream for `key`, replayed with `pacing`, or `None` on a miss.
    pub async fn replay(&self, key: &K, pacing: ReplayPacing) -> Option<CachedStream<T, E>> {
        let record = self.cache.get(key).await?;
        StreamCacheCounters::bump(&self.shared.counters.replays);
        Some(CachedStream {
            kind: Kind::Replay(ReplayStream::new(record, pacing)),
        })
    }

    /// The tiered cache holding the records.
    pub fn cache(&self) -> &TieredCache<K, StreamRecord<T>, C> {
        &self.cache
    }

    /// The group sharing in-flight streams.
    pub fn group(&self) -> &StreamGroup<String, T, E> {
        &self.group
    }

    /// The settings.
    pub fn config(&self) -> &StreamCacheConfig {
        &self.shared.config
    }

    /// A snapshot of the counters, with the group's.
    pub fn stats(&self) -> StreamCacheStats {
        self.shared.counters.snapshot(self.group.stats())
    }
}

type Boxed<T, E> = Pin<Box<dyn Stream<Item = Result<T, E>> + Send>>;

enum Kind<T, E> {
    Replay(ReplayStream<T, E>),
    Shared(SharedStream<T, E>),
    Direct(Boxed<T, E>),
}

/// The stream a [`StreamCache`] (or its layer) answers with: a replay of a stored stream,
/// a shared live one, or (for a request the layer does not cache) the inner service's own.
pub struct CachedStream<T, E> {
    kind: Kind<T, E>,
}

impl<T, E> CachedStream<T, E> {
    /// A stream passed through uncached.
    pub fn direct(stream: impl Stream<Item = Result<T, E>> + Send + 'static) -> Self {
        Self {
            kind: Kind::Direct(Box::pin(stream)),
        }
    }

    /// Whether this replays a stored stream (a cache hit), for a transport's
    /// `X-Cache: HIT` header. A caller that missed but found the stream stored on its
    /// second look reads a replay through the shared stream, and this says `false`.
    pub fn is_replay(&self) -> bool {
        matches!(self.kind, Kind::Replay(_))
    }
}

impl<T, E> fmt::Debug for CachedStream<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Replay(_) => "replay",
            Kind::Shared(_) => "shared",
            Kind::Direct(_) => "direct",
        };
        f.debug_struct("CachedStream").field("kind", &kind).finish()
    }
}

impl<T, E> Stream for CachedStream<T, E>
where
    T: Clone + Send + Sync + 'static,
    E: StackError,
{
    type Item = Result<T, E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match &mut self.get_mut().kind {
            Kind::Replay(replay) => replay.poll_next_unpin(cx),
            Kind::Shared(shared) => shared.poll_next_unpin(cx),
            Kind::Direct(direct) => direct.poll_next_unpin(cx),
        }
    }
}
