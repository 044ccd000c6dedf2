//! What a layer's span costs when nobody listens (issue 27: "cheap when disabled").
//!
//! `cargo bench -p backstop --bench layer_spans --features full -- --warm-up-time 1 --measurement-time 3`
//!
//! Every layer opens one `debug` span per call. Without a subscriber, or with one that
//! leaves `debug` off, the span is disabled after a level check and the call takes the
//! plain path; these groups show that this path costs what the primitive costs.
//!
//! - group `layer_span_breaker`: a successful call through a closed breaker.
//! - group `layer_span_limit`: an admitted rate-limit check (the `limit_check` bench's
//!   quota of 10^9 a second on the quanta clock, so every check is admitted).
//!
//! Contenders, each polling one future that is ready at once with a no-op waker:
//! - `unspanned`: the layer's work without its span, a bench-local service doing what the
//!   layer does through the primitive's public API (`Breaker::call_with`, or
//!   `RateLimitHandle::charge` under `contain`) around the same inner service;
//! - `layer`: the same call through `BreakerLayer` / `RateLimitLayer`, no subscriber;
//! - `layer_level_off`: the layer under a subscriber whose level is `info` (spans off);
//! - `layer_traced` (for information): the layer under a subscriber that records every
//!   span (`tracing_subscriber`'s registry), what a traced call costs.

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use backstop::breaker::{Breaker, BreakerLayer, IgnoreRejections};
use backstop::core::{Error, Layer, QuantaClock, Service, ServiceExt, contain, service_fn};
use backstop::limit::{Quota, RateLimitHandle, RateLimitLayer, RateLimiter};
use criterion::{Criterion, criterion_group, criterion_main};
use tracing::level_filters::LevelFilter;

/// Polls a future that is expected to be ready on its first poll.
fn ready<F: Future>(future: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut cx) {
        Poll::Ready(output) => output,
        Poll::Pending => unreachable!("the benchmarked futures never wait"),
    }
}

/// The service under every layer: answers its request at once.
fn inner() -> impl Service<u64, Response = u64, Error = Error<Infallible>> + Clone {
    service_fn(|n: u64| async move { Ok::<_, Infallible>(black_box(n)) }).lift()
}

/// The breaker layer's work without its span: what `BreakerLayer` would cost if it
/// opened none, written with the breaker's public API.
struct UnspannedBreaker<S> {
    breaker: Breaker,
    inner: S,
}

impl<S> Service<u64> for UnspannedBreaker<S>
where
    S: Service<u64, Response = u64, Error = Error<Infallible>>,
{
    type Response = u64;
    type Error = Error<Infallible>;

    async fn call(&self, req: u64) -> Result<u64, Error<Infallible>> {
        self.breaker
            .call_with(&IgnoreRejections, || self.inner.call(req))
            .await
            .map_err(|error| match error {
                Error::Inner(inner) => inner,
                Error::Rejected(refused) => Error::Rejected(refused),
                _ => unreachable!("the inner service never fails"),
            })
    }
}

/// The rate-limit layer's work without its span, as `RateLimitLayer` does it: key and
/// cost under `contain`, the charge through the shared handle, then the inner call.
struct UnspannedLimit<S> {
    limiter: Arc<RateLimiter<QuantaClock>>,
    inner: S,
}

impl<S> Service<u64> for UnspannedLimit<S>
where
    S: Service<u64, Response = u64, Error = Error<Infallible>>,
{
    type Response = u64;
    type Error = Error<Infallible>;

    async fn call(&self, req: u64) -> Result<u64, Error<Infallible>> {
        match contain("rate limit key or cost", || self.limiter.charge(&(), 1)) {
            Ok(Ok(())) => self.inner.call(req).await,
            Ok(Err(refused)) => Err(Error::Rejected(refused.rejection())),
            Err(panicked) => Err(Error::Panicked(panicked)),
        }
    }
}

// Each contender's call sits in one out-of-line function (as in benches/breaker.rs), so
// code layout does not move one contender's figure.
#[inline(never)]
fn through<S>(service: &S) -> Result<u64, Error<Infallible>>
where
    S: Service<u64, Response = u64, Error = Error<Infallible>>,
{
    ready(service.call(black_box(1)))
}

/// Benchmarks `service` as `layer`, `layer_level_off` and `layer_traced`.
fn layered<S>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    service: &S,
) where
    S: Service<u64, Response = u64, Error = Error<Infallible>>,
{
    group.bench_function("layer", |b| b.iter(|| black_box(through(service).is_ok())));
    let level_off = tracing_subscriber::fmt()
        .with_max_level(LevelFilter::INFO)
        .with_writer(std::io::sink)
        .finish();
    tracing::subscriber::with_default(level_off, || {
        group.bench_function("layer_level_off", |b| {
            b.iter(|| black_box(through(service).is_ok()))
        });
    });
    tracing::subscriber::with_default(tracing_subscriber::registry(), || {
        group.bench_function("layer_traced", |b| {
            b.iter(|| black_box(through(service).is_ok()))
        });
    });
    // A scoped subscriber raises tracing's global level and leaves it raised when its
    // scope ends; recompute it, or the next group's `layer` row runs with `debug` on and
    // no subscriber, which no application does.
    tracing::callsite::rebuild_interest_cache();
}

fn layer_span_breaker(c: &mut Criterion) {
    let mut group = c.benchmark_group("layer_span_breaker");
    let breaker = Breaker::builder()
        .name("bench")
        .build()
        .expect("default config is valid");
    let inner = inner();
    let unspanned = UnspannedBreaker {
        breaker: breaker.clone(),
        inner: inner.clone(),
    };
    group.bench_function("unspanned", |b| {
        b.iter(|| black_box(through(&unspanned).is_ok()))
    });
    layered(&mut group, &BreakerLayer::new(breaker.clone()).layer(inner));
    group.finish();
}

fn layer_span_limit(c: &mut Criterion) {
    let mut group = c.benchmark_group("layer_span_limit");
    let quota = Quota::per_second(1_000_000_000).expect("valid quota");
    let limiter = RateLimiter::with_clock(quota, QuantaClock::new());
    let inner = inner();
    let unspanned = UnspannedLimit {
        limiter: Arc::new(limiter),
        inner: inner.clone(),
    };
    group.bench_function("unspanned", |b| {
        b.iter(|| black_box(through(&unspanned).is_ok()))
    });
    let layered_limiter = RateLimiter::with_clock(quota, QuantaClock::new());
    layered(
        &mut group,
        &RateLimitLayer::new(layered_limiter).layer(inner),
    );
    group.finish();
}

criterion_group!(benches, layer_span_breaker, layer_span_limit);
criterion_main!(benches);
