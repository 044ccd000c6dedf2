//! Shared in-flight streams (issue 24): late joiners, readers at their own pace, errors
//! and panics mid-stream, the buffer bound, leaving at every point.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::task::{Context, Poll};
use std::time::Duration;

use backstop_core::{Error, Layer, RejectKind, Service, service_fn};
use backstop_dedup::{LagPolicy, SharedStream, StreamDedupLayer, StreamGroup, StreamShareConfig};
use backstop_testkit::Calls;
use backstop_testkit::assert_fields;
use futures::channel::mpsc;
use futures::task::noop_waker;
use futures::{Stream, StreamExt};
use tokio::time::Instant;

#[derive(Debug, PartialEq)]
struct Boom(u32);

type E = Error<Boom>;
type Chunk = Arc<str>;
type Item = Result<Chunk, E>;

fn chunk(i: usize) -> Chunk {
    Arc::from(format!("tok{i}"))
}

fn tokens(n: usize) -> Vec<Chunk> {
    (0..n).map(chunk).collect()
}

/// An upstream the test feeds by hand, which records whether it was dropped.
struct Fed {
    rx: mpsc::UnboundedReceiver<Item>,
    dropped: Arc<AtomicBool>,
}

impl Stream for Fed {
    type Item = Item;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        self.rx.poll_next_unpin(cx)
    }
}

impl Drop for Fed {
    fn drop(&mut self) {
        self.dropped.store(true, SeqCst);
    }
}

struct Feed {
    tx: mpsc::UnboundedSender<Item>,
    opened: Arc<AtomicUsize>,
    dropped: Arc<AtomicBool>,
    upstream: parking_lot::Mutex<Option<Fed>>,
}

impl Feed {
    fn new() -> Arc<Self> {
        let (tx, rx) = mpsc::unbounded();
        let dropped = Arc::new(AtomicBool::new(false));
        Arc::new(Self {
            tx,
            opened: Arc::new(AtomicUsize::new(0)),
            dropped: dropped.clone(),
            upstream: parking_lot::Mutex::new(Some(Fed { rx, dropped })),
        })
    }

    fn send(&self, item: Item) {
        self.tx.unbounded_send(item).unwrap();
    }

    /// Sends the chunks numbered `numbers`, in order.
    fn send_chunks(&self, numbers: std::ops::Range<usize>) {
        for i in numbers {
            self.send(Ok(chunk(i)));
        }
    }

    fn end(&self) {
        self.tx.close_channel();
    }

    /// The `open` closure for `share`: hands out the fed upstream once.
    fn open(
        self: &Arc<Self>,
    ) -> impl FnOnce() -> futures::future::Ready<Result<Fed, E>> + Send + 'static {
        let feed = self.clone();
        move || {
            feed.opened.fetch_add(1, SeqCst);
            let fed = feed.upstream.lock().take().expect("opened twice");
            futures::future::ready(Ok(fed))
        }
    }
}

fn group() -> StreamGroup<&'static str, Chunk, E> {
    StreamGroup::new()
}

fn bytes_group(max: usize, lag: LagPolicy) -> StreamGroup<&'static str, Chunk, E> {
    StreamGroup::builder()
        .config(StreamShareConfig {
            max_buffered_bytes: max,
            lag,
            ..StreamShareConfig::default()
        })
        .weigher(|chunk: &Chunk| chunk.len())
        .build()
        .unwrap()
}

/// A fed upstream and the first two readers sharing it, under key `q`.
fn two_readers(
    group: &StreamGroup<&'static str, Chunk, E>,
) -> (Arc<Feed>, SharedStream<Chunk, E>, SharedStream<Chunk, E>) {
    let feed = Feed::new();
    let first = group.share("q", feed.open());
    let second = group.share("q", feed.open());
    (feed, first, second)
}

/// Polls once without a runtime.
fn poll_once<S: Stream + Unpin>(stream: &mut S) -> Poll<Option<S::Item>> {
    let waker = noop_waker();
    stream.poll_next_unpin(&mut Context::from_waker(&waker))
}

fn ok_chunks(items: Vec<Item>) -> Vec<Chunk> {
    items.into_iter().map(|item| item.unwrap()).collect()
}

#[tokio::test]
async fn late_joiners_at_every_chunk_boundary_receive_exactly_the_full_sequence() {
    const N: usize = 6;
    for k in 0..=N {
        let group = group();
        let feed = Feed::new();
        let mut leader = group.share("q", feed.open());
        for i in 0..k {
            feed.send(Ok(chunk(i)));
            assert_eq!(leader.next().await.unwrap().unwrap(), chunk(i));
        }
        let follower = group.share("q", feed.open());
        feed.send_chunks(k..N);
        feed.end();
        let (rest, all) = tokio::join!(leader.collect::<Vec<_>>(), follower.collect::<Vec<_>>());
        assert_eq!(ok_chunks(rest), tokens(N)[k..].to_vec(), "leader, k={k}");
        assert_eq!(ok_chunks(all), tokens(N), "late joiner, k={k}");
        let stats = group.stats();
        assert_fields!(stats, streams: 1, followers: 1; "k={k}");
        assert_eq!(stats.late_joiners, u64::from(k > 0), "k={k}");
        assert_eq!(feed.opened.load(SeqCst), 1);
        assert_eq!(stats.bytes_buffered, 0, "everything read, nothing kept");
        assert!(!group.is_in_flight(&"q"));
    }
}

/// A provider with 300 ms to the first token and 20 ms per token.
fn provider(n: usize) -> impl Stream<Item = Item> + Send + 'static {
    futures::stream::iter(0..n).then(|i| async move {
        let wait = if i == 0 { 300 } else { 20 };
        tokio::time::sleep(Duration::from_millis(wait)).await;
        Ok(chunk(i))
    })
}

#[tokio::test(start_paused = true)]
async fn a_follower_gets_the_first_token_when_the_leader_does_not_at_the_end() {
    let group = group();
    let started = Instant::now();
    let open = || async { Ok::<_, E>(provider(50)) };
    let leader = group.share("q", open);
    let mut follower = group.share("q", open);
    let leader = tokio::spawn(leader.collect::<Vec<_>>());
    let first = follower.next().await.unwrap().unwrap();
    assert_eq!(first, chunk(0));
    assert_eq!(started.elapsed(), Duration::from_millis(300));
    let rest = follower.collect::<Vec<_>>().await;
    assert_eq!(rest.len(), 49);
    assert_eq!(started.elapsed(), Duration::from_millis(300 + 49 * 20));
    assert_eq!(leader.await.unwrap().len(), 50);
    assert_eq!(group.stats().streams, 1);
}

#[tokio::test(start_paused = true)]
async fn slow_and_fast_readers_each_go_at_their_own_pace() {
    let group = group();
    let open = || async { Ok::<_, E>(provider(20)) };
    let fast = group.share("q", open);
    let mut slow = group.share("q", open);
    let started = Instant::now();
    let fast = tokio::spawn(async move {
        let all = fast.collect::<Vec<_>>().await;
        (all, Instant::now())
    });
    let mut slow_chunks = Vec::new();
    while let Some(item) = slow.next().await {
        slow_chunks.push(item.unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await; // a slow client
    }
    let (fast_chunks, fast_done) = fast.await.unwrap();
    // The fast reader finished at the upstream's pace, not the slow reader's.
    assert_eq!(fast_done - started, Duration::from_millis(300 + 19 * 20));
    assert_eq!(ok_chunks(fast_chunks), tokens(20));
    assert_eq!(slow_chunks, tokens(20));
    assert!(started.elapsed() >= Duration::from_millis(20 * 100));
}

#[tokio::test]
async fn a_reader_dropped_mid_stream_frees_its_buffer_share() {
    let group = bytes_group(1 << 20, LagPolicy::Fail);
    let (feed, mut fast, mut slow) = two_readers(&group);
    feed.send_chunks(0..10);
    feed.end();
    assert_eq!(slow.next().await.unwrap().unwrap(), chunk(0));
    while fast.next().await.is_some() {}
    // The stream ended (no joiners any more): only what `slow` still needs is kept.
    let held = group.stats().bytes_buffered;
    assert_eq!(held, (1..10).map(|i| chunk(i).len() as u64).sum::<u64>());
    drop(slow);
    assert_eq!(group.stats().bytes_buffered, 0);
    assert_eq!(group.stats().readers, 0);
}

#[tokio::test]
async fn the_leader_dropped_mid_stream_leaves_followers_reading_the_same_upstream() {
    let group = group();
    let (feed, mut leader, mut follower) = two_readers(&group);
    feed.send(Ok(chunk(0)));
    feed.send(Ok(chunk(1)));
    assert_eq!(leader.next().await.unwrap().unwrap(), chunk(0));
    assert_eq!(leader.next().await.unwrap().unwrap(), chunk(1));
    // The leader is now the one that polled the upstream last, and goes.
    assert!(poll_once(&mut leader).is_pending());
    drop(leader);
    assert!(
        !feed.dropped.load(SeqCst),
        "the upstream lives on for the follower"
    );
    feed.send_chunks(2..5);
    feed.end();
    let all = follower.by_ref().collect::<Vec<_>>().await;
    assert_eq!(ok_chunks(all), tokens(5));
    assert_eq!(feed.opened.load(SeqCst), 1, "never restarted");
    assert!(feed.dropped.load(SeqCst));
}

#[tokio::test]
async fn a_stalled_poller_does_not_stall_the_others() {
    let group = group();
    let (feed, mut stalled, mut reader) = two_readers(&group);
    // `stalled` polls the upstream (it is pending) and is then never polled again, as
    // in a `select!` that went another way, but not dropped.
    assert!(poll_once(&mut stalled).is_pending());
    let reading = tokio::spawn(async move { reader.next().await });
    tokio::task::yield_now().await;
    feed.send(Ok(chunk(0)));
    let first = tokio::time::timeout(Duration::from_secs(5), reading)
        .await
        .expect("the reader was woken by the upstream, not by the stalled poller");
    assert_eq!(first.unwrap().unwrap().unwrap(), chunk(0));
    drop(stalled);
}

#[tokio::test]
async fn an_upstream_error_after_k_chunks_reaches_every_reader_after_its_k_chunks() {
    for k in 0..4 {
        let group = group();
        let (feed, mut first, second) = two_readers(&group);
        feed.send_chunks(0..k);
        if k > 0 {
            first.next().await.unwrap().unwrap();
        }
        let late = group.share("q", feed.open());
        feed.send(Err(Error::Inner(Boom(k as u32))));
        let (a, b, c) = tokio::join!(
            first.collect::<Vec<_>>(),
            second.collect::<Vec<_>>(),
            late.collect::<Vec<_>>()
        );
        let skipped = usize::from(k > 0);
        for (items, expect_chunks) in [(a, k - skipped), (b, k), (c, k)] {
            assert_eq!(items.len(), expect_chunks + 1, "k={k}");
            for item in &items[..expect_chunks] {
                assert!(item.is_ok());
            }
            let error = items.last().unwrap().as_ref().unwrap_err();
            assert_eq!(error.inner(), Some(&Boom(k as u32)), "k={k}");
        }
        assert_eq!(group.stats().failed, 1);
        assert!(!group.is_in_flight(&"q"), "a failed stream is not joined");
    }
}

#[tokio::test]
async fn a_lone_reader_gets_the_upstream_error_itself() {
    let group = group();
    let feed = Feed::new();
    let mut only = group.share("q", feed.open());
    feed.send(Err(Error::Inner(Boom(7))));
    match only.next().await {
        Some(Err(Error::Inner(Boom(7)))) => {}
        other => panic!("expected the unshared error, got {other:?}"),
    }
    assert!(only.next().await.is_none());
}

#[tokio::test]
async fn a_panicking_upstream_reaches_every_reader_as_a_contained_panic() {
    let group = group();
    let open = || async {
        Ok::<_, E>(
            futures::stream::iter([Ok(chunk(0))]).chain(futures::stream::poll_fn(
                |_| -> Poll<Option<Item>> { panic!("provider blew up") },
            )),
        )
    };
    let a = group.share("q", open);
    let b = group.share("q", open);
    let (a, b) = tokio::join!(a.collect::<Vec<_>>(), b.collect::<Vec<_>>());
    for items in [a, b] {
        assert_eq!(items.len(), 2);
        let panicked = items[1].as_ref().unwrap_err().panic().expect("a panic");
        assert_eq!(panicked.message(), "provider blew up");
    }
    assert_eq!(group.stats().panicked, 1);
    assert!(!group.is_in_flight(&"q"));
}

#[tokio::test]
async fn a_panicking_weigher_fails_the_stream_for_its_readers() {
    let group: StreamGroup<&str, Chunk, E> = StreamGroup::builder()
        .weigher(|_: &Chunk| -> usize { panic!("bad weight") })
        .build()
        .unwrap();
    let open = || async { Ok::<_, E>(futures::stream::iter([Ok(chunk(0))])) };
    let items = group.share("q", open).collect::<Vec<_>>().await;
    assert_eq!(items.len(), 1);
    assert_eq!(
        items[0].as_ref().unwrap_err().panic().unwrap().message(),
        "bad weight"
    );
}

#[tokio::test]
async fn a_failure_to_open_is_every_sharers_first_item() {
    let group = group();
    let opened = Arc::new(AtomicUsize::new(0));
    let open = {
        let opened = opened.clone();
        move || async move {
            opened.fetch_add(1, SeqCst);
            Err::<futures::stream::Empty<Item>, _>(Error::Inner(Boom(503)))
        }
    };
    let a = group.share("q", open.clone());
    let b = group.share("q", open);
    let (a, b) = tokio::join!(a.collect::<Vec<_>>(), b.collect::<Vec<_>>());
    for items in [a, b] {
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].as_ref().unwrap_err().inner(), Some(&Boom(503)));
    }
    assert_eq!(opened.load(SeqCst), 1);
}

#[tokio::test]
async fn lag_fail_cuts_only_the_reader_behind_the_bound_and_closes_the_stream_to_joiners() {
    // Each chunk is 4 bytes ("tokN"); the bound holds 3 of them.
    let group = bytes_group(12, LagPolicy::Fail);
    let (feed, mut fast, mut slow) = two_readers(&group);
    for i in 0..3 {
        feed.send(Ok(chunk(i)));
        fast.next().await.unwrap().unwrap();
    }
    assert!(group.is_in_flight(&"q"), "still within the bound: joinable");
    feed.send(Ok(chunk(3)));
    fast.next().await.unwrap().unwrap();
    let stats = group.stats();
    assert_eq!(stats.overflowed, 1);
    assert!(stats.bytes_buffered <= 12);
    assert!(!group.is_in_flight(&"q"), "past the bound: no more joiners");
    // A new caller cannot replay from the start any more: it opens its own upstream.
    let other = Feed::new();
    let _newcomer = group.share("q", other.open());
    assert_eq!(group.stats().streams, 2);

    let cut = slow.next().await.unwrap().unwrap_err();
    assert_eq!(cut.rejection().unwrap().kind, RejectKind::QueueFull);
    assert!(slow.next().await.is_none());
    assert_eq!(group.stats().lagged, 1);

    feed.send_chunks(4..8);
    feed.end();
    let rest = fast.collect::<Vec<_>>().await;
    assert_eq!(
        ok_chunks(rest),
        tokens(8)[4..].to_vec(),
        "the fast reader is untouched"
    );
}

#[tokio::test]
async fn lag_wait_holds_the_upstream_for_the_slowest_reader_and_cuts_nobody() {
    let group = bytes_group(8, LagPolicy::Wait);
    let (feed, mut fast, mut slow) = two_readers(&group);
    feed.send_chunks(0..6);
    feed.end();
    let mut got = Vec::new();
    // The fast reader runs until the buffer is full (past 8 bytes), then waits.
    while let Poll::Ready(Some(item)) = poll_once(&mut fast) {
        got.push(item.unwrap());
    }
    assert_eq!(
        got.len(),
        3,
        "two chunks fill the bound, the third passes it"
    );
    assert!(group.stats().bytes_buffered <= 12);
    // The slow reader frees room: the fast one goes on.
    assert_eq!(slow.next().await.unwrap().unwrap(), chunk(0));
    assert_eq!(fast.next().await.unwrap().unwrap(), chunk(3));
    let (rest_fast, rest_slow) = tokio::join!(fast.collect::<Vec<_>>(), slow.collect::<Vec<_>>());
    assert_eq!(ok_chunks(rest_fast), tokens(6)[4..].to_vec());
    assert_eq!(ok_chunks(rest_slow), tokens(6)[1..].to_vec());
    assert_eq!(group.stats().lagged, 0);
}

/// 1,000 followers on one 10 MB stream (1,000 chunks of 10 KB), bound 1 MB.
async fn thousand_followers(lag: LagPolicy) -> (u64, Vec<Result<usize, RejectKind>>) {
    const READERS: usize = 1_000;
    const CHUNKS: usize = 1_000;
    const CHUNK: usize = 10 * 1024;
    const BOUND: usize = 1 << 20;
    let group: StreamGroup<&str, Arc<[u8]>, E> = StreamGroup::builder()
        .config(StreamShareConfig {
            max_buffered_bytes: BOUND,
            lag,
            ..StreamShareConfig::default()
        })
        .weigher(|chunk: &Arc<[u8]>| chunk.len())
        .build()
        .unwrap();
    let payload: Arc<[u8]> = Arc::from(vec![7u8; CHUNK]);
    let open = move || {
        let payload = payload.clone();
        async move {
            Ok::<_, E>(futures::stream::iter(0..CHUNKS).then(move |_| {
                let payload = payload.clone();
                async move {
                    tokio::task::yield_now().await;
                    Ok(payload)
                }
            }))
        }
    };
    let peak = Arc::new(AtomicUsize::new(0));
    let readers = (0..READERS).map(|_| {
        let mut stream = group.share("big", open.clone());
        let group = group.clone();
        let peak = peak.clone();
        tokio::spawn(async move {
            let mut bytes = 0;
            while let Some(item) = stream.next().await {
                match item {
                    Ok(chunk) => bytes += chunk.len(),
                    Err(error) => return Err(error.rejection().unwrap().kind),
                }
                peak.fetch_max(group.stats().bytes_buffered as usize, SeqCst);
                if bytes % (64 * CHUNK) == 0 {
                    tokio::task::yield_now().await;
                }
            }
            Ok(bytes)
        })
    });
    let results = futures::future::join_all(readers)
        .await
        .into_iter()
        .map(|joined| joined.unwrap())
        .collect::<Vec<_>>();
    assert_eq!(group.stats().streams, 1);
    assert_eq!(group.stats().bytes_buffered, 0);
    (peak.load(SeqCst) as u64, results)
}

#[tokio::test]
async fn a_thousand_followers_on_a_10mb_stream_stay_within_the_buffer_bound() {
    let (peak, results) = thousand_followers(LagPolicy::Wait).await;
    assert!(peak <= (1 << 20) + 10 * 1024, "peak {peak} bytes buffered");
    assert!(
        results.iter().all(|r| *r == Ok(10 * 1024 * 1000)),
        "all read everything"
    );

    let (peak, results) = thousand_followers(LagPolicy::Fail).await;
    assert!(peak <= (1 << 20) + 10 * 1024, "peak {peak} bytes buffered");
    for result in results {
        assert!(
            matches!(result, Ok(10_240_000) | Err(RejectKind::QueueFull)),
            "{result:?}"
        );
    }
}

#[tokio::test]
async fn leaving_at_every_point_never_stops_the_others_and_the_last_leaving_drops_the_upstream() {
    const N: usize = 5;
    for leave_after in 0..=N + 1 {
        let group = group();
        let (feed, mut leaving, staying) = two_readers(&group);
        feed.send_chunks(0..N);
        feed.end();
        for _ in 0..leave_after {
            let _ = poll_once(&mut leaving);
        }
        drop(leaving);
        let all = staying.collect::<Vec<_>>().await;
        assert_eq!(ok_chunks(all), tokens(N), "leave_after={leave_after}");
        assert_eq!(group.stats().readers, 0);
    }

    // Everyone leaves before the end: the upstream is dropped and the key released.
    for polls in 0..3 {
        let group = group();
        let (feed, mut a, mut b) = two_readers(&group);
        feed.send(Ok(chunk(0)));
        for _ in 0..polls {
            let _ = poll_once(&mut a);
            let _ = poll_once(&mut b);
        }
        drop(a);
        assert!(!feed.dropped.load(SeqCst));
        drop(b);
        assert_eq!(
            feed.dropped.load(SeqCst),
            polls > 0,
            "an upstream never opened was never made"
        );
        assert!(!group.is_in_flight(&"q"));
        assert_fields!(group.stats(), abandoned: 1, bytes_buffered: 0, readers: 0);
    }
}

#[tokio::test]
async fn past_max_streams_a_call_reads_its_own_upstream() {
    let group: StreamGroup<u32, Chunk, E> = StreamGroup::with_config(StreamShareConfig {
        max_streams: 1,
        ..StreamShareConfig::default()
    })
    .unwrap();
    let feed = Feed::new();
    let _first = group.share(1, feed.open());
    let open = || async { Ok::<_, E>(futures::stream::iter([Ok(chunk(9))])) };
    let other = group.share(2, open);
    assert!(!group.is_in_flight(&2));
    assert_eq!(ok_chunks(other.collect().await), vec![chunk(9)]);
    assert_eq!(group.stats().unshared, 1);
    assert_eq!(
        group.stats().bytes_buffered,
        0,
        "an unshared stream buffers nothing"
    );
}

#[tokio::test]
async fn the_layer_shares_one_inner_call_and_keeps_the_inner_error_type() {
    let calls = Calls::new();
    let model = service_fn(calls.counting(|prompt: String| async move {
        if prompt.is_empty() {
            return Err(Error::Inner(Boom(400)));
        }
        let words = prompt
            .split(' ')
            .map(|w| Ok::<_, E>(Arc::from(w)))
            .collect::<Vec<Item>>();
        Ok(futures::stream::iter(words))
    }));
    let group: StreamGroup<String, Chunk, E> = StreamGroup::new();
    let service = StreamDedupLayer::new(group.clone())
        .key(|prompt: &String| prompt.to_lowercase())
        .layer(model);
    let a: SharedStream<Chunk, E> = service.call("Hello World".into()).await.unwrap();
    let b = service.call("hello world".into()).await.unwrap();
    let (a, b) = tokio::join!(a.collect::<Vec<_>>(), b.collect::<Vec<_>>());
    assert_eq!(ok_chunks(a), vec![Arc::from("Hello"), Arc::from("World")]);
    assert_eq!(b.len(), 2);
    assert_eq!(calls.count(), 1);

    let failed = service
        .call(String::new())
        .await
        .unwrap()
        .collect::<Vec<_>>()
        .await;
    assert_eq!(failed[0].as_ref().unwrap_err().inner(), Some(&Boom(400)));
    assert!(service.readiness().is_ok());
}

#[tokio::test]
async fn a_forgotten_key_opens_anew_and_its_old_stream_stops_keeping_chunks_for_joiners() {
    let group = bytes_group(1 << 20, LagPolicy::Fail);
    let feed = Feed::new();
    let mut old = group.share("q", feed.open());
    for i in 0..3 {
        feed.send(Ok(chunk(i)));
        old.next().await.unwrap().unwrap();
    }
    assert_eq!(group.stats().bytes_buffered, 12, "kept for joiners");
    assert!(group.forget(&"q"));
    assert_eq!(
        group.stats().bytes_buffered,
        0,
        "nobody can join: nothing kept"
    );
    let other = Feed::new();
    let _new = group.share("q", other.open());
    assert_eq!(group.stats().streams, 2);
    feed.send(Ok(chunk(3)));
    feed.end();
    assert_eq!(ok_chunks(old.collect().await), vec![chunk(3)]);
    assert!(!group.forget(&"missing"));
}
