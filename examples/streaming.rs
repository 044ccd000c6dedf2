//! Streamed LLM answers through Backstop: three agents ask the same question at once and
//! share one provider stream (the one arriving late first replays what it missed), each
//! seeing its first token when the provider sends it; the finished stream is stored, and
//! the next ask replays it from the cache at once.
//!
//! `cargo run --release --example streaming`

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use backstop::cache::{StreamCache, StreamCacheLayer, TieredCache};
use backstop::core::{Error, Layer, Service, service_fn};
use backstop::dedup::StreamGroup;
use futures::StreamExt;
use tokio::time::Instant;

/// A server-sent event, as a gateway would forward it.
type Event = Arc<str>;

#[derive(Debug, thiserror::Error)]
#[error("the provider is down")]
struct ProviderDown;

/// A pretend provider: 200 ms to the first token, then one token every 15 ms.
fn provider(
    calls: Arc<AtomicU32>,
) -> impl Service<
    String,
    Response = futures::stream::BoxStream<'static, Result<Event, Error<ProviderDown>>>,
    Error = Error<ProviderDown>,
> {
    service_fn(move |prompt: String| {
        calls.fetch_add(1, Ordering::Relaxed);
        async move {
            let words = format!("You asked: {prompt}. The answer is forty-two, as always.")
                .split(' ')
                .map(str::to_string)
                .collect::<Vec<_>>();
            let events = futures::stream::iter(words.into_iter().enumerate()).then(
                move |(i, word)| async move {
                    let wait = if i == 0 { 200 } else { 15 };
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    Ok(Arc::from(format!("data: {{\"delta\":\"{word} \"}}\n\n")))
                },
            );
            let done = futures::stream::once(async { Ok(Arc::from("data: [DONE]\n\n")) });
            Ok(events.chain(done).boxed())
        }
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let streams: StreamCache<String, Event, Error<ProviderDown>> =
        StreamCache::builder(TieredCache::in_memory(10_000)?, StreamGroup::new())
            .weigher(|event: &Event| event.len())
            .build()?;
    let calls = Arc::new(AtomicU32::new(0));
    let gateway = Arc::new(
        StreamCacheLayer::new(streams.clone())
            .key(|prompt: &String| Some(prompt.trim().to_lowercase()))
            .layer(provider(calls.clone())),
    );

    let started = Instant::now();
    let ask = |agent: &'static str, prompt: &'static str, after_ms: u64| {
        let gateway = gateway.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(after_ms)).await;
            let asked = Instant::now();
            let mut stream = gateway.call(prompt.to_string()).await?;
            let replay = stream.is_replay();
            let mut first = None;
            let mut text = String::new();
            while let Some(event) = stream.next().await {
                let event = event?;
                first.get_or_insert_with(|| asked.elapsed());
                text.push_str(&event);
            }
            let first = first.unwrap_or_default();
            println!(
                "{agent:>8} asked at {:>4} ms: first token after {:>6.1} ms, {} events, done at {:>5} ms{}",
                (asked - started).as_millis(),
                first.as_secs_f64() * 1e3,
                text.matches("data:").count(),
                started.elapsed().as_millis(),
                if replay {
                    " (replayed from the cache)"
                } else {
                    ""
                },
            );
            Ok::<_, Error<ProviderDown>>(())
        }
    };

    println!("three agents, one question, arriving at 0, 20 and 260 ms:");
    let (a, b, c) = tokio::join!(
        ask("planner", "What is the answer?", 0),
        ask("critic", "what is the answer?", 20),
        ask("late", "WHAT IS THE ANSWER?", 260),
    );
    a?;
    b?;
    c?;
    println!("\nthe same question again, after the stream was stored:");
    ask("again", "What is the answer?", 0).await?;

    let stats = streams.stats();
    println!(
        "\nprovider calls: {}; streams shared: {}, followers: {} ({} late), stored: {}, replays: {}",
        calls.load(Ordering::Relaxed),
        stats.group.streams,
        stats.group.followers,
        stats.group.late_joiners,
        stats.stored,
        stats.replays,
    );
    Ok(())
}
