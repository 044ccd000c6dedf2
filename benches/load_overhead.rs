//! The generator's own overhead: requests per second `backstop-load` issues against a no-op
//! service on one core, against a bare Tokio loop calling the same service and recording
//! each call's latency. The ratio (bare / generator) says how much of a measurement is the
//! tool itself; the goal is at most 1.3.
//!
//! The two alternate in rounds and each keeps its best round: on a shared machine a
//! neighbour's burst then slows one round of either, not the whole of one side.
//!
//! `cargo bench --bench load_overhead` (`LOAD_OVERHEAD_SECS` sets each round's length,
//! default 1 s; `LOAD_OVERHEAD_ROUNDS` the rounds, default 5).

use std::hint::black_box;
use std::time::{Duration, Instant};

use backstop_core::{Error, HistogramSnapshot, Service, service_fn};
use backstop_load::{Arrivals, LoadPlan, LoadStage, LoadTest, MAX_RATE};

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let window = Duration::from_secs(setting("LOAD_OVERHEAD_SECS", 1));
    let rounds = setting("LOAD_OVERHEAD_ROUNDS", 5).max(1);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let noop = service_fn(|n: u64| async move { Ok::<_, Error<()>>(black_box(n)) });

    let bare_round = || {
        runtime.block_on(async {
            // The least any measuring loop does: time each call and record it.
            let mut latencies = HistogramSnapshot::empty();
            let start = Instant::now();
            let mut calls = 0u64;
            while start.elapsed() < window {
                for _ in 0..1024 {
                    let sent = tokio::time::Instant::now();
                    let _ = black_box(noop.call(calls).await);
                    latencies.record(sent.elapsed());
                    calls += 1;
                }
                tokio::task::yield_now().await;
            }
            black_box(latencies.count());
            calls as f64 / start.elapsed().as_secs_f64()
        })
    };
    // An open-loop plan asking for far more than one core can send: the generator runs
    // flat out, so what it achieves is its own ceiling.
    let generator_round = || {
        runtime.block_on(async {
            let mut plan = LoadPlan::open_loop(Arrivals::Constant)
                .stage(LoadStage::constant("flat-out", MAX_RATE, window));
            plan.drain_timeout = Duration::from_secs(1);
            let start = Instant::now();
            let report = LoadTest::new(plan)
                .expect("valid plan")
                .run(&noop, |i| i)
                .await
                .expect("run");
            report.stages[0].sent as f64 / start.elapsed().as_secs_f64()
        })
    };

    let (mut bare, mut generated) = (0.0f64, 0.0f64);
    for round in 0..rounds {
        let b = bare_round();
        let g = generator_round();
        println!(
            "round {round}: bare {b:>12.0}/s  generator {g:>12.0}/s  ratio {:.2}x",
            b / g
        );
        bare = bare.max(b);
        generated = generated.max(g);
    }
    println!("bare tokio loop:   {bare:>12.0} calls/s (best round)");
    println!("backstop-load:     {generated:>12.0} requests/s (best round)");
    println!(
        "overhead ratio:    {:>12.2}x (bare / generator)",
        bare / generated
    );
}
