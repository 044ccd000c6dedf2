//! What batching buys and what the batcher costs.
//!
//! `cargo bench -p backstop --bench batch`
//!
//! - group `batch_throughput`: 10,000 items from 64 concurrent submitters, batch size 64,
//!   through a handler whose only cost is a fixed per-call overhead (2 µs of spinning, a
//!   stand-in for a syscall or RPC frame). Contenders: `backstop` (the `Batcher`),
//!   `tower_batch_control` (Zebra's tower-batch-control 1.x `Batch`, same size and delay,
//!   over an inner service that answers each item's future when the batch flushes) and
//!   `unbatched` (one handler call per item).
//!
//! The simulated-backend figures (`20 ms + 1 ms·n` per call under Poisson arrivals) are
//! printed by `cargo run -p backstop-batch --release --example batching`.

use backstop::batch::Batcher;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tower_batch_control::{Batch, BatchControl, RequestWeight};
use tower04::{Service as _, ServiceExt as _};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

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

/// An item for tower-batch-control, which needs a `RequestWeight` impl on its request type.
struct Item(u64);

impl RequestWeight for Item {}

/// The inner service tower-batch-control expects: it gathers `Item`s and, on `Flush`,
/// runs the handler once and answers every item's future through a per-batch channel
/// (the pattern of Zebra's own batch verifiers).
struct Collector {
    items: Vec<u64>,
    results: watch::Sender<Option<Arc<Vec<u64>>>>,
}

impl Default for Collector {
    fn default() -> Self {
        Self {
            items: Vec::with_capacity(BATCH),
            results: watch::channel(None).0,
        }
    }
}

type ItemFuture = Pin<Box<dyn Future<Output = Result<u64, BoxError>> + Send>>;

impl tower04::Service<BatchControl<Item>> for Collector {
    type Response = u64;
    type Error = BoxError;
    type Future = ItemFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: BatchControl<Item>) -> ItemFuture {
        match request {
            BatchControl::Item(Item(n)) => {
                let index = self.items.len();
                self.items.push(n);
                let mut results = self.results.subscribe();
                Box::pin(async move {
                    let batch = results.wait_for(Option::is_some).await?;
                    let answers = batch.as_ref().ok_or("batch dropped")?;
                    answers
                        .get(index)
                        .copied()
                        .ok_or_else(|| "short batch".into())
                })
            }
            BatchControl::Flush => {
                let items = std::mem::take(&mut self.items);
                let results = std::mem::replace(&mut self.results, watch::channel(None).0);
                results.send_replace(Some(Arc::new(handle(items))));
                Box::pin(async { Ok(0) })
            }
        }
    }
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

    let tower_batch = runtime.block_on(async {
        Batch::new(Collector::default(), BATCH, None, Duration::from_millis(1))
    });
    group.bench_function("tower_batch_control", |b| {
        b.to_async(&runtime).iter(|| {
            let tower_batch = tower_batch.clone();
            drive(move |n| {
                let mut tower_batch = tower_batch.clone();
                async move {
                    let ready = tower_batch.ready().await.expect("worker alive");
                    ready.call(Item(n)).await.expect("batched")
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
