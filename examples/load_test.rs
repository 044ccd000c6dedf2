//! A stress test of a small Backstop stack: step the rate up until the p99 SLO breaks,
//! print the report, then compare a repeat run with the first as a baseline.
//!
//! The service simulates a backend with 4 workers taking 10 ms each: a capacity of about
//! 400 requests per second, beyond which requests queue and the p99 climbs.
//!
//! Run with `cargo run --example load_test`.

use std::sync::Arc;
use std::time::Duration;

use backstop_core::{LoadSignal, LoadSnapshot, ServiceExt, service_fn};
use backstop_load::{
    Arrivals, LoadPlan, LoadStage, LoadTest, RegressionConfig, Slo, StressPlan, StressTest, compare,
};
use tokio::sync::Semaphore;

const WORKERS: usize = 4;

/// The backend's worker pool as a load signal, sampled during the run.
struct Workers(Arc<Semaphore>);

impl LoadSignal for Workers {
    fn load(&self) -> LoadSnapshot {
        LoadSnapshot {
            in_flight: (WORKERS - self.0.available_permits()) as u64,
            capacity: Some(WORKERS as u64),
            ..Default::default()
        }
    }
}

#[derive(Debug)]
struct BackendDown;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let workers = Arc::new(Semaphore::new(WORKERS));
    let pool = workers.clone();
    // The bottom service lifts its error once; any Backstop layers would stack on top.
    let backend = service_fn(move |prompt: String| {
        let pool = pool.clone();
        async move {
            let _worker = pool.acquire().await.map_err(|_| BackendDown)?;
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok::<_, BackendDown>(prompt.len())
        }
    })
    .lift();

    let slo = Slo::new()
        .latency(0.99, Duration::from_millis(50))
        .error_rate_below(0.01);
    let stress = StressPlan::new(100.0, 100.0, 800.0, Duration::from_secs(1), slo.clone());
    let found = StressTest::new(stress)?
        .run(&backend, |i| format!("request {i}"))
        .await?;
    println!("{found}\n");

    // A steady run at 80 % of the capacity found, saved as a baseline, then repeated.
    let rate = found.capacity.unwrap_or(100.0) * 0.8;
    let steady = || {
        LoadPlan::open_loop(Arrivals::Poisson)
            .stage(LoadStage::constant("steady", rate, Duration::from_secs(2)).slo(slo.clone()))
    };
    let baseline = LoadTest::new(steady())?
        .signal("workers", Workers(workers.clone()))
        .on_progress(|progress| eprintln!("{progress}"))
        .run(&backend, |i| format!("request {i}"))
        .await?;
    let saved = baseline.to_json();
    let again = LoadTest::new(steady().seed(2))?
        .run(&backend, |i| format!("request {i}"))
        .await?;
    println!("{again}\n");
    println!("{}", again.to_csv());
    let verdict = compare(
        &backstop_load::LoadReport::from_json(&saved)?,
        &again,
        &RegressionConfig::default(),
    );
    println!("{verdict}");
    Ok(())
}
