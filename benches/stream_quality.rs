//! Time to first token through the stream cache and the stream group, against buffering
//! the whole answer (what a cache or singleflight of whole values forces on a streaming
//! gateway).
//!
//! `cargo bench -p backstop --bench stream_quality`
//!
//! A simulated provider streams 40 tokens: 300 ms to the first, 20 ms each after (real
//! time, current-thread runtime). Printed, one line per result:
//!
//! - `ttft_ms workload=hit contender=<buffered|backstop>`: the answer is cached; time from
//!   the call to the first token (median of 200 calls). `buffered` reads a whole-answer
//!   `TieredCache`, `backstop` replays a `StreamCache` record. Bar: backstop under 1 ms.
//! - `ttft_ms workload=follower contender=<buffered|backstop>`: a second caller arrives
//!   50 ms after the first; time from its arrival to its first token. `buffered` is a
//!   `Group` over the collected answer, `backstop` a `StreamGroup`.
//! - `first_token_lag_ms workload=follower contender=<…>`: the follower's first token
//!   minus the leader's. Bar for backstop: within one chunk interval (20 ms).
//! - `ttft_ms workload=late_follower contender=<…>`: the second caller arrives 500 ms in,
//!   after 11 tokens; backstop replays them at once.

use std::sync::Arc;
use std::time::Duration;

use backstop::cache::{StreamCache, TieredCache};
use backstop::core::Error;
use backstop::dedup::{Group, StreamGroup};
use futures::{Stream, StreamExt};
use tokio::time::Instant;

const TOKENS: usize = 40;
const FIRST: Duration = Duration::from_millis(300);
const EACH: Duration = Duration::from_millis(20);

type E = Error<()>;
type Chunk = Arc<str>;

fn provider() -> impl Stream<Item = Result<Chunk, E>> + Send + 'static {
    futures::stream::iter(0..TOKENS).then(|i| async move {
        tokio::time::sleep(if i == 0 { FIRST } else { EACH }).await;
        Ok(Arc::from(format!("data: token {i}\n\n")))
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn print(metric: &str, workload: &str, contender: &str, value: f64) {
    println!("{metric} workload={workload} contender={contender} value={value:.3}");
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

async fn hit() {
    let whole: TieredCache<String, Arc<Vec<Chunk>>> = TieredCache::in_memory(100).unwrap();
    let answer: Vec<Chunk> = provider().map(Result::unwrap).collect().await;
    let key = "prompt".to_string();
    whole.insert(&key, Arc::new(answer)).await.unwrap();
    let mut samples = Vec::new();
    for _ in 0..200 {
        let started = Instant::now();
        let value = whole.get(&key).await.unwrap();
        std::hint::black_box(&value[0]);
        samples.push(started.elapsed());
    }
    print("ttft_ms", "hit", "buffered", ms(median(samples)));

    let streams: StreamCache<String, Chunk, E> =
        StreamCache::builder(TieredCache::in_memory(100).unwrap(), StreamGroup::new())
            .build()
            .unwrap();
    let stored = streams
        .get_or_load_stream(&key, || async { Ok(provider()) })
        .await;
    assert_eq!(stored.count().await, TOKENS);
    let mut samples = Vec::new();
    for _ in 0..200 {
        let started = Instant::now();
        let mut replay = streams
            .get_or_load_stream(&key, || async { Ok(provider()) })
            .await;
        std::hint::black_box(replay.next().await.unwrap().unwrap());
        samples.push(started.elapsed());
    }
    assert_eq!(streams.stats().loads, 1, "every sample was a replay");
    print("ttft_ms", "hit", "backstop", ms(median(samples)));
}

/// Leader at 0, follower at `join_after`; returns (leader's first token, follower's first
/// token, follower's arrival), all from the start.
async fn follower_buffered(join_after: Duration) -> (Duration, Duration, Duration) {
    let group: Group<&str, Arc<Vec<Chunk>>, ()> = Group::new();
    let started = Instant::now();
    let collect = || async {
        let chunks = provider().map(Result::unwrap).collect::<Vec<_>>().await;
        Ok(Arc::new(chunks))
    };
    let leader = async {
        let answer = group.work("prompt", collect).await.unwrap();
        std::hint::black_box(&answer.value[0]);
        started.elapsed()
    };
    let follower = async {
        tokio::time::sleep(join_after).await;
        let arrived = started.elapsed();
        let answer = group.work("prompt", collect).await.unwrap();
        std::hint::black_box(&answer.value[0]);
        (started.elapsed(), arrived)
    };
    let (lead, (follow, arrived)) = tokio::join!(leader, follower);
    (lead, follow, arrived)
}

async fn follower_backstop(join_after: Duration) -> (Duration, Duration, Duration) {
    let group: StreamGroup<&str, Chunk, E> = StreamGroup::new();
    let started = Instant::now();
    let open = || async { Ok(provider()) };
    let leader = async {
        let mut stream = group.share("prompt", open);
        stream.next().await.unwrap().unwrap();
        let first = started.elapsed();
        while stream.next().await.is_some() {}
        first
    };
    let follower = async {
        tokio::time::sleep(join_after).await;
        let arrived = started.elapsed();
        let mut stream = group.share("prompt", open);
        stream.next().await.unwrap().unwrap();
        let first = started.elapsed();
        while stream.next().await.is_some() {}
        (first, arrived)
    };
    let (lead, (follow, arrived)) = tokio::join!(leader, follower);
    assert_eq!(group.stats().streams, 1);
    (lead, follow, arrived)
}

async fn followers() {
    for (workload, join_after) in [
        ("follower", Duration::from_millis(50)),
        ("late_follower", Duration::from_millis(500)),
    ] {
        for contender in ["buffered", "backstop"] {
            let (lead, follow, arrived) = match contender {
                "buffered" => follower_buffered(join_after).await,
                _ => follower_backstop(join_after).await,
            };
            print(
                "ttft_ms",
                workload,
                contender,
                ms(follow.saturating_sub(arrived)),
            );
            if workload == "follower" {
                let lag = ms(follow) - ms(lead);
                print("first_token_lag_ms", workload, contender, lag);
            }
        }
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        hit().await;
        followers().await;
    });
}
