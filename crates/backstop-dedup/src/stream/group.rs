//! `StreamGroup`: identical concurrent requests share one upstream stream.

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};

use backstop_core::config::{ConfigError, Validate};
use dashmap::DashMap;
use dashmap::mapref::entry::Entry as MapEntry;
use foldhash::quality::RandomState;
use futures::{Stream, StreamExt, TryStreamExt};

use super::config::StreamShareConfig;
use super::shared::{GroupShared, Release, SharedFlight, SharedStream, Upstream, Weigher};
use super::stats::{StreamCounters, StreamGroupStats};
use backstop_core::StackError;

struct Entry<T, E> {
    /// Tells this stream apart from a later one for the same key, so a stream that stops
    /// taking joiners never removes its successor.
    id: u64,
    flight: Arc<SharedFlight<T, E>>,
}

struct Inner<K, T, E> {
    streams: DashMap<K, Entry<T, E>, RandomState>,
    next_id: AtomicU64,
    shared: Arc<GroupShared<T>>,
}

/// Shares one upstream stream among identical concurrent requests (a singleflight for
/// streams).
///
/// `group.share(key, open)` returns a [`SharedStream`]: the first caller for `key` opens
/// the upstream (lazily, when its stream is first polled); callers arriving while it is
/// open to joiners read the *same* upstream. Each reader gets every chunk from the first:
///
/// - **Late joiners replay.** A caller that joins after chunks were produced first reads
///   the buffered chunks, then the live tail, so it sees exactly the full sequence.
/// - **Each reader at its own pace.** Chunks are buffered once for all readers; a fast
///   reader is never held back by a slow one. The buffer is bounded
///   ([`StreamShareConfig::max_buffered_bytes`]): past it the stream takes no more
///   joiners and keeps only what its readers still need; a reader still too far behind
///   gets a typed lag error or holds the others back, as [`LagPolicy`](crate::LagPolicy)
///   says.
/// - **Leaving is free.** There is no leader: whichever reader needs the next chunk polls
///   the upstream, with a waker that wakes every reader waiting for it. The first caller
///   dropping its stream cancels nothing while others read (the takeover guarantee of
///   [`Group`](crate::Group)); the last reader leaving drops the upstream and frees its
///   buffer. Nothing is spawned.
/// - **Errors reach everyone, in order.** An upstream error after `k` chunks reaches every
///   reader after its `k` chunks, through [`StackError::shared`]; a panic while polling
///   the upstream is contained and reaches every reader as [`StackError::panicked`]. An
///   error before the first chunk (opening failed) is the first item.
///
/// Once the upstream ends (or fails), the key is released: the next call opens a new
/// upstream (put a stream cache in front to replay finished streams).
///
/// `StreamGroup` is a cheap-clone handle; clones share streams and stats.
///
/// ```
/// use backstop_core::Error;
/// use backstop_dedup::StreamGroup;
/// use futures::StreamExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let group: StreamGroup<&str, String, Error<std::io::Error>> = StreamGroup::new();
/// let open = || async {
///     let tokens = ["Par", "is"].map(|t| Ok::<_, Error<std::io::Error>>(t.to_string()));
///     Ok(futures::stream::iter(tokens))
/// };
/// let first = group.share("capital of France?", open);
/// let second = group.share("capital of France?", open); // joins, opens nothing
/// let (a, b) = tokio::join!(first.collect::<Vec<_>>(), second.collect::<Vec<_>>());
/// assert_eq!(a.len(), 2);
/// assert_eq!(b[1].as_deref().unwrap(), "is");
/// assert_eq!(group.stats().streams, 1);
/// assert_eq!(group.stats().followers, 1);
/// # }
/// ```
pub struct StreamGroup<K, T, E> {
    inner: Arc<Inner<K, T, E>>,
}

impl<K, T, E> Clone for StreamGroup<K, T, E> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K: Hash + Eq, T, E> fmt::Debug for StreamGroup<K, T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamGroup")
            .field("in_flight", &self.inner.streams.len())
            .field("config", &self.inner.shared.config)
            .finish_non_exhaustive()
    }
}

impl<K, T, E> Default for StreamGroup<K, T, E>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    T: Clone + Send + Sync + 'static,
    E: StackError,
{
    fn default() -> Self {
        Self::new()
    }
}

/// Builds a [`StreamGroup`] with a configuration and a chunk weigher.
pub struct StreamGroupBuilder<T> {
    config: StreamShareConfig,
    weigher: Weigher<T>,
}

impl<T> fmt::Debug for StreamGroupBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamGroupBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<T: 'static> StreamGroupBuilder<T> {
    /// Replaces the settings.
    pub fn config(mut self, config: StreamShareConfig) -> Self {
        self.config = config;
        self
    }

    /// How many bytes a chunk counts for against `max_buffered_bytes` (its payload's
    /// length, typically). The default counts `size_of::<T>()`, right only for chunks
    /// that own no heap memory. A panicking weigher fails the stream for its readers
    /// (contained, as [`StackError::panicked`]).
    pub fn weigher(mut self, weigher: impl Fn(&T) -> usize + Send + Sync + 'static) -> Self {
        self.weigher = Arc::new(weigher);
        self
    }

    /// The group, once the settings are valid.
    pub fn build<K, E>(self) -> Result<StreamGroup<K, T, E>, ConfigError>
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
        T: Clone + Send + Sync,
        E: StackError,
    {
        self.config.validate()?;
        Ok(self.assemble())
    }

    /// The group with these settings, checked or known to be valid.
    fn assemble<K: Hash + Eq, E>(self) -> StreamGroup<K, T, E> {
        StreamGroup {
            inner: Arc::new(Inner {
                streams: DashMap::with_hasher(RandomState::default()),
                next_id: AtomicU64::new(0),
                shared: Arc::new(GroupShared {
                    config: self.config,
                    weigher: self.weigher,
                    counters: StreamCounters::default(),
                }),
            }),
        }
    }
}

impl<T: 'static> StreamGroup<(), T, ()> {
    /// A builder with the default settings and weigher.
    pub fn builder() -> StreamGroupBuilder<T> {
        StreamGroupBuilder {
            config: StreamShareConfig::default(),
            weigher: Arc::new(|_| std::mem::size_of::<T>()),
        }
    }
}

impl<K, T, E> StreamGroup<K, T, E>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    T: Clone + Send + Sync + 'static,
    E: StackError,
{
    /// A group with the default settings ([`StreamShareConfig::default`]) and weigher.
    pub fn new() -> Self {
        // The defaults are valid (the config's unit test checks them).
        StreamGroup::builder().assemble()
    }

    /// A group with `config`, or the first rule it breaks.
    pub fn with_config(config: StreamShareConfig) -> Result<Self, ConfigError> {
        StreamGroup::builder().config(config).build()
    }

    /// The stream for `key`: joins the upstream in flight for `key` if there is one that
    /// still takes joiners, otherwise opens one with `open` (called when the returned
    /// stream is first polled, at most once).
    pub fn share<F, Fut, St>(&self, key: K, open: F) -> SharedStream<T, E>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<St, E>> + Send + 'static,
        St: Stream<Item = Result<T, E>> + Send + 'static,
    {
        let inner = &self.inner;
        let counters = &inner.shared.counters;
        match inner.streams.entry(key.clone()) {
            MapEntry::Occupied(mut occupied) => {
                if let Some((reader, late)) = occupied.get().flight.join() {
                    StreamCounters::bump(&counters.followers);
                    if late {
                        StreamCounters::bump(&counters.late_joiners);
                    }
                    return reader;
                }
                // The stream there takes no joiners (its buffer overflowed, or it just
                // ended): this call opens the next one for the key.
                let (entry, reader) = self.open_shared(key, upstream(open));
                occupied.insert(entry);
                reader
            }
            MapEntry::Vacant(vacant) => {
                if counters.in_flight.load(Relaxed) >= inner.shared.config.max_streams as u64 {
                    drop(vacant);
                    StreamCounters::bump(&counters.unshared);
                    return SharedFlight::start(upstream(open), Arc::clone(&inner.shared), None);
                }
                let (entry, reader) = self.open_shared(key, upstream(open));
                vacant.insert(entry);
                reader
            }
        }
    }

    /// A new shared stream for `key` and its map entry.
    fn open_shared(&self, key: K, upstream: Upstream<T, E>) -> (Entry<T, E>, SharedStream<T, E>) {
        let inner = &self.inner;
        let counters = &inner.shared.counters;
        let id = inner.next_id.fetch_add(1, Relaxed);
        let release = Self::release(Arc::downgrade(inner), key, id);
        StreamCounters::bump(&counters.streams);
        counters.in_flight.fetch_add(1, Relaxed);
        let reader = SharedFlight::start(upstream, Arc::clone(&inner.shared), Some(release));
        let entry = Entry {
            id,
            flight: reader.flight(),
        };
        (entry, reader)
    }

    /// Releases `key`: the next call opens a new upstream even if one is in flight.
    /// Readers of the old stream keep reading it. Returns whether a stream was in flight.
    pub fn forget(&self, key: &K) -> bool {
        // Outside the shard lock: closing runs the release, which takes that lock.
        let removed = self.inner.streams.remove(key);
        if let Some((_, entry)) = &removed {
            // Nobody can join it any more, so it stops keeping chunks for joiners.
            entry.flight.close();
        }
        removed.is_some()
    }

    /// Whether a stream for `key` is in flight and open to joiners.
    pub fn is_in_flight(&self, key: &K) -> bool {
        self.inner.streams.contains_key(key)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> StreamGroupStats {
        let counters = &self.inner.shared.counters;
        let mut stats = counters.read_into(StreamGroupStats::default());
        stats.in_flight = self.inner.streams.len() as u64;
        stats
    }

    /// The settings.
    pub fn config(&self) -> &StreamShareConfig {
        &self.inner.shared.config
    }

    /// Removes `key`'s entry when the stream `id` stops taking joiners, unless a newer
    /// stream replaced it.
    fn release(inner: Weak<Inner<K, T, E>>, key: K, id: u64) -> Release {
        Box::new(move || {
            let Some(inner) = inner.upgrade() else {
                return;
            };
            // Dropped outside the shard lock: it may be the last handle of the stream.
            let removed = inner.streams.remove_if(&key, |_, entry| entry.id == id);
            inner.shared.counters.in_flight.fetch_sub(1, Relaxed);
            drop(removed);
        })
    }
}

/// The upstream of a shared stream: `open` runs when it is first polled.
fn upstream<T, E, F, Fut, St>(open: F) -> Upstream<T, E>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<St, E>> + Send + 'static,
    St: Stream<Item = Result<T, E>> + Send + 'static,
    T: 'static,
    E: 'static,
{
    futures::stream::once(async move { open().await })
        .try_flatten()
        .boxed()
}
