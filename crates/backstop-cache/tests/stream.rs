//! Stream caching (issue 24): completed streams stored and replayed (at once or paced),
//! failed and cut streams never stored, in-flight streams shared, bounded recording.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use async_trait::async_trait;
use backstop_cache::{
    CachedStream, Entry, MemoryTier, ReplayPacing, StreamCache, StreamCacheConfig,
    StreamCacheLayer, StreamRecord, Tier, TierError, TierStats, TieredCache,
};
use backstop_core::{Error, Layer, Service, service_fn};
use backstop_dedup::StreamGroup;
use backstop_testkit::Calls;
use backstop_testkit::assert_fields;
use futures::{Stream, StreamExt};
use tokio::time::Instant;

#[derive(Debug, PartialEq)]
struct Boom(u32);

type E = Error<Boom>;
type Item = Result<String, E>;
type Streams = StreamCache<String, String, E>;

fn tokens(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("tok{i} ")).collect()
}

fn streams_with(
    tier: impl Tier<Entry<StreamRecord<String>>> + 'static,
    config: StreamCacheConfig,
) -> Streams {
    StreamCache::builder(
        TieredCache::builder().tier(tier, None).build().unwrap(),
        StreamGroup::new(),
    )
    .config(config)
    .weigher(|chunk: &String| chunk.len())
    .build()
    .unwrap()
}

fn streams() -> Streams {
    streams_with(
        MemoryTier::with_capacity(1_000).unwrap(),
        StreamCacheConfig::default(),
    )
}

/// A provider: `gaps_ms[i]` before token `i`, then an error instead of token `fail_at`.
fn provider(
    gaps_ms: Vec<u64>,
    fail_at: Option<usize>,
) -> impl Stream<Item = Item> + Send + 'static {
    futures::stream::iter(gaps_ms.into_iter().enumerate()).then(move |(i, gap)| async move {
        tokio::time::sleep(Duration::from_millis(gap)).await;
        if Some(i) == fail_at {
            Err(Error::Inner(Boom(i as u32)))
        } else {
            Ok(format!("tok{i} "))
        }
    })
}

type Upstream = futures::stream::BoxStream<'static, Item>;

/// An `open` closure counting how often the upstream is really opened.
fn opener(
    opened: &Arc<AtomicUsize>,
    gaps_ms: Vec<u64>,
    fail_at: Option<usize>,
) -> impl FnOnce() -> futures::future::Ready<Result<Upstream, E>> + Send + 'static {
    let opened = opened.clone();
    move || {
        opened.fetch_add(1, SeqCst);
        futures::future::ready(Ok(provider(gaps_ms, fail_at).boxed()))
    }
}

async fn collect(stream: CachedStream<String, E>) -> Vec<Item> {
    stream.collect().await
}

/// A call for `key` whose upstream (when it is opened) answers after `gaps_ms`, counted
/// in `opened`.
async fn load_stream(
    streams: &Streams,
    key: &String,
    opened: &Arc<AtomicUsize>,
    gaps_ms: Vec<u64>,
) -> CachedStream<String, E> {
    streams
        .get_or_load_stream(key, opener(opened, gaps_ms, None))
        .await
}

/// Every item of a call for `key`, whose upstream (when it is opened) answers after
/// `gaps_ms`, counted in `opened`.
async fn load_whole(
    streams: &Streams,
    key: &String,
    opened: &Arc<AtomicUsize>,
    gaps_ms: Vec<u64>,
) -> Vec<Item> {
    collect(load_stream(streams, key, opened, gaps_ms).await).await
}

fn ok(items: Vec<Item>) -> Vec<String> {
    items.into_iter().map(Result::unwrap).collect()
}

#[tokio::test(start_paused = true)]
async fn a_completed_stream_is_stored_and_replayed_as_the_same_sequence_at_once() {
    let streams = streams();
    let opened = Arc::new(AtomicUsize::new(0));
    let key = "q".to_string();
    let live = load_stream(&streams, &key, &opened, vec![300, 20, 20, 20]).await;
    assert!(!live.is_replay());
    let original = ok(collect(live).await);
    assert_eq!(original, tokens(4));

    let started = Instant::now();
    let mut hit = load_stream(&streams, &key, &opened, vec![300, 20, 20, 20]).await;
    assert!(hit.is_replay());
    let first = hit.next().await.unwrap().unwrap();
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "a hit's first token waits for nothing"
    );
    let mut replayed = vec![first];
    replayed.extend(ok(hit.collect().await));
    assert_eq!(replayed, original);
    assert_eq!(opened.load(SeqCst), 1);
    let stats = streams.stats();
    assert_fields!(stats, loads: 1, stored: 1, replays: 1);
    assert_eq!(stats.bytes_recording, 0);
    let record = streams.cache().get(&key).await.unwrap();
    assert_eq!(record.gaps_us.len(), 4);
    assert_eq!(record.gaps_us[0], 300_000, "time to first token recorded");
}

#[tokio::test(start_paused = true)]
async fn paced_replay_keeps_the_original_inter_chunk_delays() {
    let streams = streams_with(
        MemoryTier::with_capacity(100).unwrap(),
        StreamCacheConfig {
            pacing: ReplayPacing::Original,
            ..StreamCacheConfig::default()
        },
    );
    let opened = Arc::new(AtomicUsize::new(0));
    let key = "q".to_string();
    let gaps = vec![300, 20, 35, 5, 120, 20];
    ok(load_whole(&streams, &key, &opened, gaps.clone()).await);

    let mut hit = load_stream(&streams, &key, &opened, gaps.clone()).await;
    assert!(hit.is_replay());
    let started = Instant::now();
    let mut last = started;
    let mut index = 0;
    while let Some(item) = hit.next().await {
        item.unwrap();
        let gap = last.elapsed();
        let expected = if index == 0 {
            Duration::ZERO
        } else {
            Duration::from_millis(gaps[index])
        };
        let off = gap.abs_diff(expected);
        assert!(
            off <= Duration::from_millis(1),
            "chunk {index}: {gap:?} vs {expected:?}"
        );
        last = Instant::now();
        index += 1;
    }
    assert_eq!(index, gaps.len());
    assert_eq!(opened.load(SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_stream_failing_after_k_chunks_reaches_every_reader_and_is_never_stored() {
    for k in 0..4 {
        let streams = streams();
        let opened = Arc::new(AtomicUsize::new(0));
        let key = "q".to_string();
        let gaps = vec![10; 6];
        let a = streams
            .get_or_load_stream(&key, opener(&opened, gaps.clone(), Some(k)))
            .await;
        let b = streams
            .get_or_load_stream(&key, opener(&opened, gaps.clone(), Some(k)))
            .await;
        let (a, b) = tokio::join!(collect(a), collect(b));
        for items in [a, b] {
            assert_eq!(items.len(), k + 1, "k={k}");
            let chunks = items[..k].iter().map(|item| item.as_ref().unwrap().clone());
            assert_eq!(chunks.collect::<Vec<_>>(), tokens(k));
            assert_eq!(
                items[k].as_ref().unwrap_err().inner(),
                Some(&Boom(k as u32))
            );
        }
        assert_eq!(opened.load(SeqCst), 1);
        assert!(
            streams.cache().get(&key).await.is_none(),
            "nothing stored, k={k}"
        );
        assert_fields!(streams.stats(), stored: 0, not_stored_failed: 1, bytes_recording: 0);
        // The next call opens the upstream again.
        let again = load_whole(&streams, &key, &opened, vec![1]).await;
        assert_eq!(ok(again), tokens(1));
        assert_eq!(opened.load(SeqCst), 2);
    }
}

#[tokio::test(start_paused = true)]
async fn a_stream_cut_by_its_last_reader_is_not_stored() {
    let streams = streams();
    let opened = Arc::new(AtomicUsize::new(0));
    let key = "q".to_string();
    let mut reader = load_stream(&streams, &key, &opened, vec![10; 5]).await;
    reader.next().await.unwrap().unwrap();
    reader.next().await.unwrap().unwrap();
    drop(reader);
    assert!(streams.cache().get(&key).await.is_none());
    let stats = streams.stats();
    assert_fields!(stats, not_stored_cut: 1, stored: 0, bytes_recording: 0);
    assert_eq!(stats.group.abandoned, 1);
}

#[tokio::test(start_paused = true)]
async fn the_end_is_seen_only_once_the_record_is_stored_even_by_a_slow_tier() {
    let tier = SlowTier::new(Duration::from_millis(50));
    let streams = streams_with(tier.clone(), StreamCacheConfig::default());
    let opened = Arc::new(AtomicUsize::new(0));
    let key = "q".to_string();
    let started = Instant::now();
    let items = load_whole(&streams, &key, &opened, vec![10; 3]).await;
    assert_eq!(ok(items), tokens(3));
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(30 + 50),
        "the write came before the end"
    );
    assert_eq!(tier.stored(), 1);

    // Dropped while the record is being written: cancelled, counted as cut.
    let other = "other".to_string();
    let mut reader = streams
        .get_or_load_stream(&other, opener(&opened, vec![10; 3], None))
        .await;
    for _ in 0..3 {
        reader.next().await.unwrap().unwrap();
    }
    let polled = tokio::time::timeout(Duration::from_millis(10), reader.next()).await;
    assert!(polled.is_err(), "still writing");
    drop(reader);
    assert_eq!(tier.stored(), 1, "the cancelled write stored nothing");
    assert_fields!(streams.stats(), stored: 1, not_stored_cut: 1, bytes_recording: 0);
}

#[tokio::test(start_paused = true)]
async fn concurrent_misses_share_one_upstream_and_a_late_joiner_gets_the_whole_stream() {
    let streams = streams();
    let opened = Arc::new(AtomicUsize::new(0));
    let key = "q".to_string();
    let first = load_stream(&streams, &key, &opened, vec![300, 20, 20, 20, 20]).await;
    let first = tokio::spawn(collect(first));
    tokio::time::sleep(Duration::from_millis(330)).await; // two chunks in
    let late = load_stream(&streams, &key, &opened, vec![1]).await;
    assert!(!late.is_replay());
    let late = collect(late).await;
    assert_eq!(ok(late), tokens(5));
    assert_eq!(ok(first.await.unwrap()), tokens(5));
    assert_eq!(opened.load(SeqCst), 1);
    let stats = streams.stats();
    assert_fields!(stats, loads: 1, stored: 1);
    assert_eq!((stats.group.followers, stats.group.late_joiners), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn streams_past_the_record_bounds_pass_through_unstored() {
    // Five tokens of 5 bytes: 25 bytes; the bound is 12.
    let streams = streams_with(
        MemoryTier::with_capacity(100).unwrap(),
        StreamCacheConfig {
            max_record_bytes: 12,
            ..StreamCacheConfig::default()
        },
    );
    let opened = Arc::new(AtomicUsize::new(0));
    let key = "q".to_string();
    let items = load_whole(&streams, &key, &opened, vec![1; 5]).await;
    assert_eq!(ok(items), tokens(5), "passed through whole");
    assert!(streams.cache().get(&key).await.is_none());
    let stats = streams.stats();
    assert_fields!(stats, not_stored_too_large: 1, bytes_recording: 0);

    // The total budget of recordings in flight bounds them together.
    let streams = streams_with(
        MemoryTier::with_capacity(100).unwrap(),
        StreamCacheConfig {
            max_recording_bytes: 12,
            ..StreamCacheConfig::default()
        },
    );
    let a = streams
        .get_or_load_stream(&"a".to_string(), opener(&opened, vec![1; 2], None))
        .await;
    let b = streams
        .get_or_load_stream(&"b".to_string(), opener(&opened, vec![1; 2], None))
        .await;
    let (a, b) = tokio::join!(collect(a), collect(b));
    assert_eq!((a.len(), b.len()), (2, 2));
    let stats = streams.stats();
    assert_fields!(stats, stored: 1, not_stored_too_large: 1; "20 bytes do not fit in 12");
    assert_eq!(stats.bytes_recording, 0);
}

#[tokio::test(start_paused = true)]
async fn the_layer_caches_streams_keeps_the_inner_error_and_passes_keyless_requests() {
    let calls = Calls::new();
    let model = service_fn(calls.counting(|prompt: String| async move {
        if prompt == "bad" {
            return Err(Error::Inner(Boom(400)));
        }
        Ok(provider(vec![5; 3], None))
    }));
    let streams = streams();
    let service = StreamCacheLayer::new(streams.clone())
        .key(|prompt: &String| (prompt != "nocache").then(|| prompt.clone()))
        .layer(model);
    let a = service.call("hi".into()).await.unwrap();
    assert_eq!(ok(collect(a).await), tokens(3));
    let b = service.call("hi".into()).await.unwrap();
    assert!(b.is_replay());
    assert_eq!(ok(collect(b).await), tokens(3));
    assert_eq!(calls.count(), 1);

    let failed = collect(service.call("bad".into()).await.unwrap()).await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].as_ref().unwrap_err().inner(), Some(&Boom(400)));
    assert!(streams.cache().get(&"bad".to_string()).await.is_none());

    for _ in 0..2 {
        let direct = service.call("nocache".into()).await.unwrap();
        assert!(!direct.is_replay());
        assert_eq!(ok(collect(direct).await), tokens(3));
    }
    assert_eq!(calls.count(), 4);
    assert!(service.readiness().is_ok());
}

#[tokio::test(start_paused = true)]
async fn dropping_a_reader_at_every_await_leaves_the_others_whole() {
    for stop_after in 0..=5 {
        let streams = streams();
        let opened = Arc::new(AtomicUsize::new(0));
        let key = "q".to_string();
        let mut leaving = load_stream(&streams, &key, &opened, vec![10; 4]).await;
        let staying = load_stream(&streams, &key, &opened, vec![10; 4]).await;
        let staying = tokio::spawn(collect(staying));
        for _ in 0..stop_after {
            if leaving.next().await.is_none() {
                break;
            }
        }
        drop(leaving);
        assert_eq!(
            ok(staying.await.unwrap()),
            tokens(4),
            "stop_after={stop_after}"
        );
        assert_eq!(streams.stats().stored, 1);
        assert_eq!(opened.load(SeqCst), 1);
    }
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn a_stream_cached_by_one_instance_replays_on_another_through_redis() {
    use backstop_cache::{RedisTier, RedisTierConfig};
    use backstop_testkit::RedisTestContext;

    let Some(redis) = RedisTestContext::from_env("stream_cache_redis_l2").await else {
        return;
    };
    let instance = || async {
        let l2 = RedisTier::connect(
            redis.url(),
            RedisTierConfig {
                namespace: redis.prefix().to_string(),
                ..RedisTierConfig::default()
            },
        )
        .await
        .unwrap();
        let cache = TieredCache::builder()
            .memory(MemoryTier::with_capacity(100).unwrap(), None)
            .tier(l2, None)
            .build()
            .unwrap();
        StreamCache::<String, String, E>::builder(cache, StreamGroup::new())
            .build()
            .unwrap()
    };
    let (a, b) = (instance().await, instance().await);
    let opened = Arc::new(AtomicUsize::new(0));
    let key = "prompt:stream".to_string();
    let original = ok(load_whole(&a, &key, &opened, vec![3, 1, 2]).await);
    let replayed = b
        .get_or_load_stream(&key, opener(&opened, vec![3, 1, 2], None))
        .await;
    assert!(replayed.is_replay(), "read from the shared Redis tier");
    assert_eq!(ok(collect(replayed).await), original);
    assert_eq!(opened.load(SeqCst), 1);
    redis.cleanup().await;
}

/// A tier whose writes take a while, to catch a reader between the last chunk and the end.
#[derive(Clone)]
struct SlowTier {
    delay: Duration,
    inner: MemoryTier<Entry<StreamRecord<String>>>,
    stored: Arc<AtomicUsize>,
}

impl SlowTier {
    fn new(delay: Duration) -> Self {
        Self {
            delay,
            inner: MemoryTier::with_capacity(100).unwrap(),
            stored: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn stored(&self) -> usize {
        self.stored.load(SeqCst)
    }
}

#[async_trait]
impl Tier<Entry<StreamRecord<String>>> for SlowTier {
    fn name(&self) -> &str {
        "slow"
    }

    async fn get(&self, key: &str) -> Result<Option<Entry<StreamRecord<String>>>, TierError> {
        self.inner.get(key).await
    }

    async fn set(
        &self,
        key: &str,
        value: &Entry<StreamRecord<String>>,
        ttl: Option<Duration>,
    ) -> Result<(), TierError> {
        tokio::time::sleep(self.delay).await;
        self.stored.fetch_add(1, SeqCst);
        self.inner.set(key, value, ttl).await
    }

    async fn delete(&self, key: &str) -> Result<(), TierError> {
        self.inner.delete(key).await
    }

    async fn invalidate_prefix(&self, prefix: &str) -> Result<u64, TierError> {
        self.inner.invalidate_prefix(prefix).await
    }

    async fn invalidate_all(&self) -> Result<u64, TierError> {
        self.inner.invalidate_all().await
    }

    fn stats(&self) -> TierStats {
        self.inner.stats()
    }
}

#[tokio::test(start_paused = true)]
async fn a_miss_that_finds_the_stream_stored_when_it_opens_replays_it_instead() {
    let streams = streams();
    let opened = Arc::new(AtomicUsize::new(0));
    let key = "q".to_string();
    let missed = load_stream(&streams, &key, &opened, vec![10; 3]).await;
    // Another caller's stream completes and is stored between this miss and its first poll.
    let record = StreamRecord::new(tokens(2));
    streams.cache().insert(&key, record).await.unwrap();
    assert_eq!(ok(collect(missed).await), tokens(2));
    assert_eq!(opened.load(SeqCst), 0, "the upstream was never opened");
    assert_fields!(streams.stats(), loads: 0, replays: 1);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_weigher_stops_the_recording_not_the_stream() {
    let streams: Streams =
        StreamCache::builder(TieredCache::in_memory(100).unwrap(), StreamGroup::new())
            .weigher(|_: &String| -> usize { panic!("bad weight") })
            .build()
            .unwrap();
    let opened = Arc::new(AtomicUsize::new(0));
    let key = "q".to_string();
    let items = load_whole(&streams, &key, &opened, vec![1; 3]).await;
    assert_eq!(ok(items), tokens(3));
    assert!(streams.cache().get(&key).await.is_none());
    assert_eq!(streams.stats().not_stored_too_large, 1);
}
