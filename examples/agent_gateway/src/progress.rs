//! The live progress line: once a second (backstop-load's sample interval), plain text
//! that reads well in a CI log.

use backstop::core::HistogramSnapshot;
use backstop::load::LoadProgress;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::autoscale::Deployment;
use crate::outcome::Tally;
use crate::stack::Gateway;
use crate::summary::{answered_without_provider, ms, percent};

/// What the previous line counted from.
struct Last {
    sent: u64,
    latency: HistogramSnapshot,
}

/// The progress callback for backstop-load: elapsed time, the stage, asks sent that
/// second, p95 latency of that second's successes, the share served without the
/// provider, breaker state, the adaptive limit (sampled for the summary's trajectory),
/// asks in flight and recommended replicas.
pub(crate) fn reporter(
    gateway: Arc<Gateway>,
    tally: Arc<Tally>,
    deployment: Arc<Deployment>,
) -> impl Fn(&LoadProgress<'_>) + Send + Sync + 'static {
    let last = Mutex::new(Last {
        sent: 0,
        latency: HistogramSnapshot::empty(),
    });
    move |progress| {
        let mut last = last.lock().unwrap_or_else(PoisonError::into_inner);
        let (snapshot, p95) = p95_since(&tally, &last.latency);
        let second = progress.elapsed.as_secs();
        gateway.admission.sample(second);
        println!(
            "[{:>3}s] {:<9} {:>4} asks/s  p95 {:>8}  from cache {:>6}  breaker {:<9}  limit {:>3}  in flight {:>4}  replicas {}",
            second,
            progress.stage,
            progress.sent - last.sent,
            p95.map_or_else(|| "-".to_string(), ms),
            percent(answered_without_provider(&tally, &gateway)),
            gateway.breaker.state().as_str(),
            gateway.admission.limiter.limit(),
            tally.in_flight.load(Ordering::Relaxed),
            deployment.replicas()
        );
        *last = Last {
            sent: progress.sent,
            latency: snapshot,
        };
    }
}

/// Latency of successful requests completed since `previous`; `None` when there were none.
fn p95_since(tally: &Tally, previous: &HistogramSnapshot) -> (HistogramSnapshot, Option<Duration>) {
    let now = tally.latency.snapshot();
    let interval = now.since(previous);
    let p95 = (interval.count() > 0).then(|| interval.quantile(0.95));
    (now, p95)
}
