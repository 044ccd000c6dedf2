//! The live progress line: once a second, plain text that reads well in a CI log.

use backstop::core::HistogramSnapshot;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;

use crate::autoscale::Deployment;
use crate::outcome::Tally;
use crate::stack::Gateway;
use crate::summary::{answered_without_provider, ms, percent};

/// Prints a line every second until `run` has elapsed since `started`: elapsed time,
/// requests per second, p95 latency of that second's successes, the share served
/// without the provider, breaker state, the adaptive limit (sampled for the summary's
/// trajectory), waiting requests and recommended replicas.
pub(crate) async fn report(
    gateway: &Gateway,
    tally: &Tally,
    deployment: &Deployment,
    started: Instant,
    run: Duration,
) {
    let mut last_total = 0;
    let mut last_latency = tally.latency.snapshot();
    let mut tick =
        tokio::time::interval_at(started + Duration::from_secs(1), Duration::from_secs(1));
    while started.elapsed() < run {
        tick.tick().await;
        let total = tally.total();
        let (snapshot, p95) = p95_since(tally, &last_latency);
        last_latency = snapshot;
        let served = answered_without_provider(tally, gateway);
        let second = started.elapsed().as_secs();
        gateway.admission.sample(second);
        println!(
            "[{:>3}s] {:>4} req/s  p95 {:>8}  from cache {:>6}  breaker {:<9}  limit {:>3}  in gateway {:>3}  replicas {}",
            second,
            total - last_total,
            p95.map_or_else(|| "-".to_string(), ms),
            percent(served),
            gateway.breaker.state().as_str(),
            gateway.admission.limiter.limit(),
            tally.in_flight.load(Ordering::Relaxed),
            deployment.replicas()
        );
        last_total = total;
    }
}

/// Latency of successful requests completed since `previous`; `None` when there were none.
fn p95_since(tally: &Tally, previous: &HistogramSnapshot) -> (HistogramSnapshot, Option<Duration>) {
    let now = tally.latency.snapshot();
    let interval = now.since(previous);
    let p95 = (interval.count() > 0).then(|| interval.quantile(0.95));
    (now, p95)
}
