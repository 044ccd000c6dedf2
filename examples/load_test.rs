//! A stress test of a small Backstop stack: step the rate up until an SLO breaks, print
//! the report, then compare a repeat run with the first as a baseline.
//!
//! The stack is a bulkhead (4 calls at once, 16 queued for at most 40 ms) in front of a
//! backend taking 10 ms per call: a capacity of at most 400 requests per second (less,
//! with timer slack), beyond which the queue fills, the bulkhead refuses
//! (`rejected:concurrency_limited` with a full queue, `rejected:timeout` after 40 ms
//! queued) and the error-rate SLO breaks. The bulkhead's load and stats are sampled during the steady runs.
//!
//! Run with `cargo run --example load_test`.

use std::time::Duration;

use backstop_core::{ServiceExt, Stack, service_fn};
use backstop_limit::{Bulkhead, BulkheadConfig, BulkheadLayer};
use backstop_load::{
    Arrivals, LoadPlan, LoadReport, LoadStage, LoadTest, RegressionConfig, Slo, StressPlan,
    StressTest, compare,
};

#[derive(Debug)]
struct BackendDown;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bulkhead = Bulkhead::new(BulkheadConfig {
        max_concurrent: 4,
        max_queued: 16,
        max_wait: Some(Duration::from_millis(40)),
    })?;
    // The bottom service lifts its error once; every layer above keeps that one type.
    let backend = service_fn(|prompt: String| async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok::<_, BackendDown>(prompt.len())
    })
    .lift();
    let stack = Stack::new()
        .layer(BulkheadLayer::new(bulkhead.clone()))
        .service(backend);

    let slo = Slo::new()
        .latency(0.99, Duration::from_millis(60))
        .error_rate_below(0.01);
    let stress = StressPlan::new(100.0, 100.0, 800.0, Duration::from_secs(1), slo.clone());
    let found = StressTest::new(stress)?
        .run(&stack, |i| format!("request {i}"))
        .await?;
    println!("{found}\n");

    // A steady run at 80 % of the capacity found, saved as a baseline, then repeated.
    let rate = found.capacity.unwrap_or(100.0) * 0.8;
    let steady = || {
        LoadPlan::open_loop(Arrivals::Poisson)
            .sample_interval(Duration::from_millis(500))
            .stage(LoadStage::constant("steady", rate, Duration::from_secs(2)).slo(slo.clone()))
    };
    let stats = bulkhead.clone();
    let baseline = LoadTest::new(steady())?
        .signal("bulkhead", bulkhead.clone())
        .stats("bulkhead", move || stats.stats())
        .on_progress(|progress| eprintln!("{progress}"))
        .run(&stack, |i| format!("request {i}"))
        .await?;
    let saved = baseline.to_json();
    let again = LoadTest::new(steady().seed(2))?
        .signal("bulkhead", bulkhead.clone())
        .run(&stack, |i| format!("request {i}"))
        .await?;
    println!("{again}\n");
    println!("{}", again.to_csv());
    let verdict = compare(
        &LoadReport::from_json(&saved)?,
        &again,
        &RegressionConfig::default(),
    );
    println!("{verdict}");
    Ok(())
}
