//! What a retry layer costs on the success path, against tower's `Retry`.
//!
//! `cargo bench -p backstop --bench retry`
//!
//! - group `retry_success_path`: one call that succeeds the first time, on a current-thread
//!   runtime. Contenders `backstop` (`RetryLayer` with the default policy and budget),
//!   `tower_retry` (`tower::retry::Retry` with a trivial policy that never retries, as the
//!   issue asks), `tower_retry_budget` (the like-for-like peer: tower's `Retry` whose policy
//!   deposits each call into a `TpsBudget` with the same 20 % share, as Backstop's default
//!   budget does) and `bare` (the service alone).

use std::hint::black_box;

use backstop_core::{Error, Layer, Service as _, service_fn};
use backstop_retry::{RetryConfig, RetryLayer};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tower::ServiceExt as _;

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

/// A tower retry policy that never retries: the price of the wrapper alone.
#[derive(Clone)]
struct NoRetry;

impl tower::retry::Policy<u64, u64, Never> for NoRetry {
    type Future = std::future::Ready<()>;

    fn retry(&mut self, _: &mut u64, _: &mut Result<u64, Never>) -> Option<Self::Future> {
        None
    }

    fn clone_request(&mut self, req: &u64) -> Option<u64> {
        Some(*req)
    }
}

/// A tower retry policy with a budget: every call deposits into tower's `TpsBudget` (20 %
/// of the request rate, as Backstop's default), and a failure would withdraw from it.
#[derive(Clone)]
struct Budgeted(std::sync::Arc<tower::retry::budget::TpsBudget>);

impl tower::retry::Policy<u64, u64, Never> for Budgeted {
    type Future = std::future::Ready<()>;

    fn retry(&mut self, _: &mut u64, result: &mut Result<u64, Never>) -> Option<Self::Future> {
        use tower::retry::budget::Budget as _;
        match result {
            Ok(_) => {
                self.0.deposit();
                None
            }
            Err(_) => self.0.withdraw().then(|| std::future::ready(())),
        }
    }

    fn clone_request(&mut self, req: &u64) -> Option<u64> {
        Some(*req)
    }
}

fn success_path(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime");
    let mut group = c.benchmark_group("retry_success_path");
    group.throughput(Throughput::Elements(1));

    let ours = RetryLayer::new(RetryConfig::default().build().expect("valid config"))
        .layer(service_fn(|n: u64| async move { Ok::<_, Error<Never>>(n) }));
    group.bench_function("backstop", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(ours.call(black_box(7)).await.ok()) })
    });

    let peer = tower::retry::Retry::new(
        NoRetry,
        tower::service_fn(|n: u64| async move { Ok::<_, Never>(n) }),
    );
    group.bench_function("tower_retry", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(peer.clone().oneshot(black_box(7)).await.ok()) })
    });

    let peer = tower::retry::Retry::new(
        Budgeted(std::sync::Arc::new(tower::retry::budget::TpsBudget::new(
            std::time::Duration::from_secs(10),
            1,
            0.2,
        ))),
        tower::service_fn(|n: u64| async move { Ok::<_, Never>(n) }),
    );
    group.bench_function("tower_retry_budget", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(peer.clone().oneshot(black_box(7)).await.ok()) })
    });

    let bare = service_fn(|n: u64| async move { Ok::<_, Error<Never>>(n) });
    group.bench_function("bare", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(bare.call(black_box(7)).await.ok()) })
    });
    group.finish();
}

criterion_group!(benches, success_path);
criterion_main!(benches);
