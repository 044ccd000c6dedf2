//! What singleflight costs, against `async_singleflight`.
//!
//! `cargo bench -p backstop --bench dedup`
//!
//! Every contender runs the same work on a current-thread tokio runtime; the work
//! returns its key, after one `yield_now` in the concurrent groups so that the other
//! callers arrive while it is in flight.
//!
//! - group `dedup_uncontended`: one caller, a new key every call (the price of asking).
//!   Contenders `backstop` (`Group::work`), `async_singleflight` (`Group::work`) and
//!   `baseline` (the bare future).
//! - group `dedup_coalesced`: 64 concurrent callers on one key, one execution shared.
//!   Contenders `backstop`, `async_singleflight`.
//! - group `dedup_distinct`: 64 concurrent callers on 64 distinct keys, nothing shared.
//!   Contenders `backstop`, `async_singleflight`, `baseline`.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use backstop::dedup::Group;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use futures::future::join_all;
use tokio::runtime::Runtime;

const CALLERS: u64 = 64;

type Peer = async_singleflight::Group<u64, u64, ()>;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime")
}

async fn yielding(key: u64) -> Result<u64, ()> {
    tokio::task::yield_now().await;
    Ok(key)
}

fn uncontended(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("dedup_uncontended");
    group.throughput(Throughput::Elements(1));
    let next = AtomicU64::new(0);

    let ours: Group<u64, u64, ()> = Group::new();
    group.bench_function("backstop", |b| {
        b.to_async(&rt).iter(|| async {
            let key = next.fetch_add(1, Relaxed);
            black_box(ours.work(key, move || async move { Ok(key) }).await.ok())
        })
    });

    let peer = Peer::new();
    group.bench_function("async_singleflight", |b| {
        b.to_async(&rt).iter(|| async {
            let key = next.fetch_add(1, Relaxed);
            black_box(peer.work(&key, async move { Ok(key) }).await.ok())
        })
    });

    group.bench_function("baseline", |b| {
        b.to_async(&rt).iter(|| async {
            let key = next.fetch_add(1, Relaxed);
            black_box(async move { Ok::<_, ()>(key) }.await.ok())
        })
    });
    group.finish();
}

fn coalesced(c: &mut Criterion) {
    let (rt, next) = (runtime(), AtomicU64::new(0));
    let one_key = |next: &AtomicU64| vec![next.fetch_add(1, Relaxed); CALLERS as usize];
    contenders(c, "dedup_coalesced", &rt, &next, one_key).finish();
}

fn distinct(c: &mut Criterion) {
    let (rt, next) = (runtime(), AtomicU64::new(0));
    let key_each = |next: &AtomicU64| {
        let base = next.fetch_add(CALLERS, Relaxed);
        (base..base + CALLERS).collect()
    };
    let mut group = contenders(c, "dedup_distinct", &rt, &next, key_each);

    group.bench_function("baseline", |b| {
        b.to_async(&rt).iter(|| async {
            let base = next.fetch_add(CALLERS, Relaxed);
            black_box(join_all((base..base + CALLERS).map(yielding)).await)
        })
    });
    group.finish();
}

/// The group `name`, counted in callers, with `backstop` and `async_singleflight` run
/// with one concurrent caller per key `keys` draws from `next` each iteration (collected
/// first: `async_singleflight` borrows its key). The caller may add contenders.
fn contenders<'c>(
    c: &'c mut Criterion,
    name: &str,
    rt: &Runtime,
    next: &AtomicU64,
    keys: impl Fn(&AtomicU64) -> Vec<u64>,
) -> BenchmarkGroup<'c, WallTime> {
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(CALLERS));
    let ours: Group<u64, u64, ()> = Group::new();
    group.bench_function("backstop", |b| {
        b.to_async(rt).iter(|| async {
            let calls = keys(next)
                .into_iter()
                .map(|key| ours.work(key, move || yielding(key)));
            black_box(join_all(calls).await)
        })
    });

    let peer = Peer::new();
    group.bench_function("async_singleflight", |b| {
        b.to_async(rt).iter(|| async {
            let keys = keys(next);
            let calls = keys.iter().map(|key| peer.work(key, yielding(*key)));
            black_box(join_all(calls).await)
        })
    });
    group
}

criterion_group!(benches, uncontended, coalesced, distinct);
criterion_main!(benches);
