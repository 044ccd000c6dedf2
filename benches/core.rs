//! Cost of the core primitives every hot path touches.
//!
//! `cargo bench --bench core` — group `clock_now` compares reading Backstop's clocks with
//! `std::time::Instant::now()` and `quanta` (governor's and moka's clock); group
//! `stack_call` measures what layering adds to a call.

use backstop_core::{
    Clock, Layer, ManualClock, QuantaClock, Service, Stack, SystemClock, service_fn,
};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

fn clock_now(c: &mut Criterion) {
    let mut group = c.benchmark_group("clock_now");
    let system = SystemClock;
    group.bench_function("backstop_system", |b| b.iter(|| black_box(system.now())));
    let manual = ManualClock::new();
    group.bench_function("backstop_manual", |b| b.iter(|| black_box(manual.now())));
    let shared: std::sync::Arc<dyn Clock> = std::sync::Arc::new(SystemClock);
    group.bench_function("backstop_dyn_system", |b| {
        b.iter(|| black_box(shared.now()))
    });
    let counter = QuantaClock::new();
    group.bench_function("backstop_quanta", |b| b.iter(|| black_box(counter.now())));
    group.bench_function("std_instant", |b| {
        b.iter(|| black_box(std::time::Instant::now()))
    });
    let quanta = quanta::Clock::new();
    group.bench_function("quanta", |b| b.iter(|| black_box(quanta.now())));
    group.finish();
}

/// A layer that passes calls straight through, to measure the cost of stacking alone.
#[derive(Clone, Copy)]
struct PassThrough;
struct PassThroughService<S>(S);

impl<S> Layer<S> for PassThrough {
    type Service = PassThroughService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        PassThroughService(inner)
    }
}

impl<S: Service<u64>> Service<u64> for PassThroughService<S> {
    type Response = S::Response;
    type Error = S::Error;
    async fn call(&self, req: u64) -> Result<S::Response, S::Error> {
        self.0.call(req).await
    }
}

fn stack_call(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime builds");
    let mut group = c.benchmark_group("stack_call");
    let inner = || service_fn(|n: u64| async move { Ok::<_, ()>(n + 1) });
    let direct = inner();
    group.bench_function("direct", |b| {
        b.to_async(&runtime).iter(|| direct.call(black_box(1)))
    });
    let stacked = Stack::new()
        .layer(PassThrough)
        .layer(PassThrough)
        .service(inner());
    group.bench_function("two_layers", |b| {
        b.to_async(&runtime).iter(|| stacked.call(black_box(1)))
    });
    group.finish();
}

criterion_group!(benches, clock_now, stack_call);
criterion_main!(benches);
