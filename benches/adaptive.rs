//! What an adaptive-limit permit costs next to a fixed bulkhead's.
//!
//! `cargo bench -p backstop --bench adaptive`
//!
//! - group `adaptive_acquire`: one uncontended `acquire().await` and release on a
//!   current-thread runtime. `adaptive` is `AdaptiveLimiter` (one class, Gradient2, default
//!   clock; the release records the latency sample and ends a window every 100 ms),
//!   `bulkhead` is `Bulkhead` (tokio semaphore). Target: `adaptive` at most 1.2×
//!   `bulkhead`.

use std::hint::black_box;

use backstop::limit::{AdaptiveLimitConfig, AdaptiveLimiter, Bulkhead, BulkheadConfig};
use criterion::{Criterion, criterion_group, criterion_main};

fn adaptive_acquire(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let adaptive = AdaptiveLimiter::new(AdaptiveLimitConfig::default()).expect("valid config");
    let bulkhead = Bulkhead::new(BulkheadConfig::default()).expect("valid config");
    let mut group = c.benchmark_group("adaptive_acquire");
    group.bench_function("adaptive", |b| {
        b.to_async(&rt).iter(|| async {
            let permit = adaptive.acquire().await.expect("uncontended");
            black_box(&permit);
            permit.success();
        })
    });
    group.bench_function("bulkhead", |b| {
        b.to_async(&rt).iter(|| async {
            let permit = bulkhead.acquire().await.expect("uncontended");
            black_box(&permit);
            drop(permit);
        })
    });
    group.finish();
}

criterion_group!(benches, adaptive_acquire);
criterion_main!(benches);
