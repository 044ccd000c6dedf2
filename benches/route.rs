//! What choosing a target costs, against `tower::balance::p2c`.
//!
//! `cargo bench --bench route`
//!
//! - group `route_pick`: one request routed to one of 8 ready no-op services on a
//!   current-thread runtime. `backstop` is [`Router::run`] (priority group, cooldown and
//!   circuit check, weighted P2C over Peak-EWMA, breaker permit, latency and counters);
//!   `tower_p2c` is `tower::balance::p2c::Balance` over the same services, each wrapped in
//!   `tower::load::PeakEwma` (readiness, P2C, the call and its load tracking).

use std::convert::Infallible;
use std::hint::black_box;
use std::time::Duration;

use backstop::core::Error;
use backstop::route::{RouteConfig, RouteHints, Router, StandardRouteClassify, TargetConfig};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tower::ServiceExt as _;

const TARGETS: usize = 8;

fn router() -> Router {
    RouteConfig {
        targets: (0..TARGETS)
            .map(|i| TargetConfig::named(format!("t{i}")))
            .collect(),
        ..RouteConfig::default()
    }
    .build()
    .expect("valid config")
}

type TowerTarget = tower::load::PeakEwma<
    tower::util::ServiceFn<fn(u64) -> std::future::Ready<Result<usize, Infallible>>>,
>;

fn tower_balance()
-> tower::balance::p2c::Balance<tower::discover::ServiceList<Vec<TowerTarget>>, u64> {
    let respond: fn(u64) -> std::future::Ready<Result<usize, Infallible>> =
        |n| std::future::ready(Ok(n as usize % TARGETS));
    let services = (0..TARGETS)
        .map(|_| {
            tower::load::PeakEwma::new(
                tower::service_fn(respond),
                Duration::from_millis(100),
                10e9,
                tower::load::CompleteOnResponse::default(),
            )
        })
        .collect();
    tower::balance::p2c::Balance::new(tower::discover::ServiceList::new(services))
}

fn pick(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime");
    let mut group = c.benchmark_group("route_pick");
    group.throughput(Throughput::Elements(1));

    let ours = router();
    let hints = RouteHints::new();
    group.bench_function("backstop", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(
                ours.run(&hints, &StandardRouteClassify, |target| {
                    std::future::ready(Ok::<_, Error<Infallible>>(target.index()))
                })
                .await
                .ok(),
            )
        })
    });

    group.bench_function("tower_p2c", |b| {
        b.to_async(&rt).iter_custom(|iters| async move {
            // `Balance` is `&mut self`: one owner, as in a current-thread loop. It discovers
            // its services on the first call, made before the clock starts.
            let mut peer = tower_balance();
            let ready = peer.ready().await.expect("always ready");
            let _ = tower::Service::call(ready, 0).await;
            let started = std::time::Instant::now();
            for _ in 0..iters {
                let ready = peer.ready().await.expect("always ready");
                black_box(tower::Service::call(ready, black_box(7)).await.ok());
            }
            started.elapsed()
        })
    });
    group.finish();
}

criterion_group!(benches, pick);
criterion_main!(benches);
