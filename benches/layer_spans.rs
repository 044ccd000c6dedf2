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
//!   `RateLimitHandle::admit` under `contain`) around the same inner service;
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
use backstop::limit::{Admission, Quota, RateLimitHandle, RateLimitLayer, RateLimiter};
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
        match contain("rate limit key or cost", || self.limiter.admit(&(), 1)) {
            Ok(Admission::Now(Ok(()))) => self.inner.call(req).await,
            Ok(Admission::Now(Err(refused))) => Err(Error::Rejected(refused)),
            Ok(Admission::Later(never)) => match never {},
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

/// One contender's row in `group`: its call, polled to completion, again and again.
fn row<S>(c: &mut Criterion, group: &str, contender: &str, service: &S)
where
    S: Service<u64, Response = u64, Error = Error<Infallible>>,
{
    c.benchmark_group(group).bench_function(contender, |b| {
        b.iter(|| black_box(through(service).is_ok()))
    });
}

/// Every row, no-subscriber rows first. A subscriber, once installed, leaves tracing's
/// global level raised after its scope ends (tracing keeps the highest level it has seen;
/// rebuilding the interest cache does not lower it), so a no-subscriber row measured after
/// one would run with `debug` on, which no application without a subscriber does.
fn layer_spans(c: &mut Criterion) {
    let breaker = Breaker::builder()
        .name("bench")
        .build()
        .expect("default config is valid");
    let unspanned_breaker = UnspannedBreaker {
        breaker: breaker.clone(),
        inner: inner(),
    };
    let breaker_layer = BreakerLayer::new(breaker).layer(inner());

    let quota = Quota::per_second(1_000_000_000).expect("valid quota");
    let unspanned_limit = UnspannedLimit {
        limiter: Arc::new(RateLimiter::with_clock(quota, QuantaClock::new())),
        inner: inner(),
    };
    let limit_layer =
        RateLimitLayer::new(RateLimiter::with_clock(quota, QuantaClock::new())).layer(inner());

    const BREAKER: &str = "layer_span_breaker";
    const LIMIT: &str = "layer_span_limit";
    row(c, BREAKER, "unspanned", &unspanned_breaker);
    row(c, BREAKER, "layer", &breaker_layer);
    row(c, LIMIT, "unspanned", &unspanned_limit);
    row(c, LIMIT, "layer", &limit_layer);
    let level_off = tracing_subscriber::fmt()
        .with_max_level(LevelFilter::INFO)
        .with_writer(std::io::sink)
        .finish();
    tracing::subscriber::with_default(level_off, || {
        row(c, BREAKER, "layer_level_off", &breaker_layer);
        row(c, LIMIT, "layer_level_off", &limit_layer);
    });
    tracing::subscriber::with_default(tracing_subscriber::registry(), || {
        row(c, BREAKER, "layer_traced", &breaker_layer);
        row(c, LIMIT, "layer_traced", &limit_layer);
    });
}

criterion_group!(benches, layer_spans);
criterion_main!(benches);
