//! What sharing one streamed answer costs, against a `tokio::sync::broadcast` channel fed
//! by hand (what a gateway would write without Backstop).
//!
//! `cargo bench -p backstop --bench stream`
//!
//! - group `stream_fanout`: one upstream stream of 1,000 chunks read in full by 64
//!   readers on a current-thread runtime. Contenders `backstop` (`StreamGroup::share`: 64
//!   calls with one key, one upstream, late joiners impossible to miss) and `broadcast`
//!   (a producer task sends every chunk into a `broadcast` channel with room for all of
//!   them, 64 receivers subscribed before the first send). Both upstreams yield once per
//!   chunk, as a network stream would. The bar: `backstop` at most 1.5×
//!   `broadcast`.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use backstop::core::Error;
use backstop::dedup::StreamGroup;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use futures::future::join_all;

const READERS: usize = 64;
const CHUNKS: usize = 1_000;

type Chunk = Arc<str>;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime")
}

fn fanout(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("stream_fanout");
    group.throughput(Throughput::Elements((READERS * CHUNKS) as u64));
    let chunk: Chunk = Arc::from("data: {\"delta\":\"token\"}\n\n");

    let streams: StreamGroup<u64, Chunk, Error<()>> = StreamGroup::new();
    let next = AtomicU64::new(0);
    group.bench_function("backstop", |b| {
        b.to_async(&rt).iter(|| async {
            let key = next.fetch_add(1, Relaxed);
            let readers = (0..READERS).map(|_| {
                let chunk = chunk.clone();
                let stream = streams.share(key, move || async move {
                    Ok(futures::stream::iter(0..CHUNKS).then(move |_| {
                        let chunk = chunk.clone();
                        async move {
                            tokio::task::yield_now().await;
                            Ok(chunk)
                        }
                    }))
                });
                stream.fold(
                    0usize,
                    |n, item| async move { n + usize::from(item.is_ok()) },
                )
            });
            black_box(join_all(readers).await)
        })
    });

    group.bench_function("broadcast", |b| {
        b.to_async(&rt).iter(|| async {
            let (tx, _) = tokio::sync::broadcast::channel::<Chunk>(CHUNKS);
            let receivers = (0..READERS).map(|_| tx.subscribe()).collect::<Vec<_>>();
            let readers = receivers.into_iter().map(|mut rx| async move {
                let mut n = 0usize;
                while rx.recv().await.is_ok() {
                    n += 1;
                }
                n
            });
            let chunk = chunk.clone();
            let producer = async move {
                for _ in 0..CHUNKS {
                    let _ = tx.send(chunk.clone());
                    tokio::task::yield_now().await;
                }
            };
            let (counts, ()) = futures::join!(join_all(readers), producer);
            black_box(counts)
        })
    });
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
