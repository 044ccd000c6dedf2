//! What batching buys and what the batcher costs.
//!
//! `cargo bench -p backstop --bench batch`
//!
//! - group `batch_throughput`: 10,000 items from 64 concurrent submitters, batch size 64,
//!   through a handler whose only cost is a fixed per-call overhead (2 µs of spinning, a
//!   stand-in for a syscall or RPC frame). Contenders: `backstop` (the `Batcher`),
//!   `tower_style` (a minimal tower-batch-control-style batch: one worker task fed by an
//!   mpsc channel, answering through oneshots) and `unbatched` (one handler call per item).
//!
//! The simulated-backend figures (`20 ms + 1 ms·n` per call under Poisson arrivals) are
//! printed by `cargo run -p backstop-batch --release --example batching`.

use backstop::batch::Batcher;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

const ITEMS: u64 = 10_000;
const SUBMITTERS: u64 = 64;
const BATCH: usize = 64;
const PER_CALL: Duration = Duration::from_micros(2);

/// The trivial handler: a fixed per-call overhead, then a cheap transform per item.
fn handle(batch: Vec<u64>) -> Vec<u64> {
    let start = Instant::now();
    while start.elapsed() < PER_CALL {
        std::hint::spin_loop();
    }
    batch.into_iter().map(|n| n + 1).collect()
}

/// Runs `submit` for every item, spread over `SUBMITTERS` concurrent tasks.
async fn drive<F, Fut>(submit: F)
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = u64> + Send,
{
    let tasks: Vec<_> = (0..SUBMITTERS)
        .map(|submitter| {
            let submit = submit.clone();
            tokio::spawn(async move {
                let mut n = submitter;
                while n < ITEMS {
                    assert_eq!(submit(n).await, n + 1);
                    n += SUBMITTERS;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("submitter finished");
    }
}

/// A minimal tower-batch-control-style batch: one worker owns the batch, callers send
/// through a bounded mpsc and wait on a oneshot.
type TowerStyle = mpsc::Sender<(u64, oneshot::Sender<u64>)>;

fn tower_style(max_delay: Duration) -> TowerStyle {
    let (tx, mut rx) = mpsc::channel::<(u64, oneshot::Sender<u64>)>(1024);
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut items = vec![first];
            let deadline = tokio::time::sleep(max_delay);
            tokio::pin!(deadline);
            while items.len() < BATCH {
                tokio::select! {
                    biased;
                    item = rx.recv() => match item {
                        Some(item) => items.push(item),
                        None => break,
                    },
                    () = &mut deadline => break,
                }
            }
            let (requests, replies): (Vec<_>, Vec<_>) = items.into_iter().unzip();
            for (reply, response) in replies.into_iter().zip(handle(requests)) {
                let _ = reply.send(response);
            }
        }
    });
    tx
}

fn batch_throughput(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("a runtime builds");
    let mut group = c.benchmark_group("batch_throughput");
    group.throughput(Throughput::Elements(ITEMS));
    group.sample_size(10);

    let batcher =
        Batcher::builder(|batch: Vec<u64>| async move { Ok::<_, std::io::Error>(handle(batch)) })
            .max_batch_size(BATCH)
            .max_delay(Duration::from_millis(1))
            .max_concurrent_batches(1)
            .queue_capacity(1024)
            .build()
            .expect("valid config");
    group.bench_function("backstop", |b| {
        b.to_async(&runtime).iter(|| {
            let batcher = batcher.clone();
            drive(move |n| {
                let batcher = batcher.clone();
                async move { batcher.submit(n).await.expect("batched") }
            })
        })
    });

    let sender = runtime.block_on(async { tower_style(Duration::from_millis(1)) });
    group.bench_function("tower_style", |b| {
        b.to_async(&runtime).iter(|| {
            let sender = sender.clone();
            drive(move |n| {
                let sender = sender.clone();
                async move {
                    let (reply, response) = oneshot::channel();
                    sender.send((n, reply)).await.expect("worker alive");
                    response.await.expect("worker replied")
                }
            })
        })
    });

    group.bench_function("unbatched", |b| {
        b.to_async(&runtime)
            .iter(|| drive(|n| async move { handle(vec![n])[0] }))
    });
    group.finish();
}

criterion_group!(benches, batch_throughput);

criterion_main!(benches);
