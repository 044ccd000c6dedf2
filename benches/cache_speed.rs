//! The cache's speed against quick_cache and TinyUFO, alternating between contenders.
//!
//! `cargo bench -p backstop --bench cache_speed`
//! `cargo bench -p backstop --features bench-quick-cache-stats --bench cache_speed`
//!
//! The `cache` bench times each contender with criterion, one after another, and on a
//! shared machine a burst of outside load lands on whichever runs at that moment: its
//! ratios to quick_cache moved between 1.0 and 1.6 from run to run of the same code.
//! This bench runs the same workloads (`cache_get_hit`, `cache_insert`, `cache_mixed`,
//! with 1 and 2 threads) in rounds: each round times Backstop and the contender back to
//! back for about `BACKSTOP_SPEED_SLICE_MS` (50) each, in alternating order, and the
//! ratio is taken within the round. Over `BACKSTOP_SPEED_ROUNDS` (15) rounds it prints,
//! per workload, thread count and contender,
//!
//! `cache_speed workload=<w> threads=<n> contender=<c> backstop_ns=<median>
//! contender_ns=<median> ratio=<median of the rounds' ratios> ratio_p25=<..> ratio_p75=<..>`
//!
//! and for the targets (a hit with 1 and 2 threads, the mix with 1 and 2, at or
//! below quick_cache's time) a `cache_speed_check` line with `at_or_below=true|false`.
//! Backstop counts hits and misses; quick_cache counts nothing unless built with its
//! `stats` feature, which `--features bench-quick-cache-stats` turns on (the contender
//! is then `quick_cache_stats`).
//!
//! `BACKSTOP_SPEED_THREADS=1` runs only the single-threaded half, for running it pinned
//! to one core (`taskset -c 1`): unpinned, each slice's thread starts on either core, and
//! the spread of the rounds' ratios doubled.

mod cache_support;

use std::time::Duration;

use cache_support::{Contender, QUICK_CACHE, Workload, contenders};

/// The contenders Backstop is timed against: the fastest Rust caches.
const RIVALS: [&str; 2] = [QUICK_CACHE, "tinyufo"];

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&v| v > 0)
        .unwrap_or(default)
}

/// Operations per thread that take about `slice` for `cache`, from a short trial.
fn calibrate(
    workload: Workload,
    cache: &dyn Contender,
    threads: usize,
    trace: &[u64],
    slice: Duration,
) -> u64 {
    let trial = 100_000;
    let took = workload.run(cache, threads, trial, trace);
    let per_op = took.as_secs_f64() / trial as f64;
    ((slice.as_secs_f64() / per_op) as u64).max(trial)
}

fn ns_per_op(took: Duration, iters: u64) -> f64 {
    took.as_nanos() as f64 / iters as f64
}

/// The value at quantile `q` of `values` (sorted in place).
fn quantile(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values[((values.len() - 1) as f64 * q).round() as usize]
}

fn main() {
    let rounds = env_or("BACKSTOP_SPEED_ROUNDS", 15) as usize;
    let slice = Duration::from_millis(env_or("BACKSTOP_SPEED_SLICE_MS", 50));
    let thread_counts: Vec<usize> = match env_or("BACKSTOP_SPEED_THREADS", 0) {
        0 => vec![1, 2],
        n => vec![n as usize],
    };
    for workload in Workload::ALL {
        let trace = workload.trace();
        for &threads in &thread_counts {
            for rival in RIVALS {
                let mut caches = contenders(workload.capacity())
                    .into_iter()
                    .filter(|(name, _)| *name == "backstop" || *name == rival);
                let (Some((_, ours)), Some((_, theirs))) = (caches.next(), caches.next()) else {
                    continue;
                };
                let pair = [ours.as_ref(), theirs.as_ref()];
                for cache in pair {
                    workload.prepare(cache, &trace);
                }
                let iters = pair.map(|c| calibrate(workload, c, threads, &trace, slice));
                let (mut ours_ns, mut theirs_ns, mut ratios) = (vec![], vec![], vec![]);
                for round in 0..rounds {
                    let mut ns = [0.0; 2];
                    let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
                    for i in order {
                        let took = workload.run(pair[i], threads, iters[i], &trace);
                        ns[i] = ns_per_op(took, iters[i]);
                    }
                    ours_ns.push(ns[0]);
                    theirs_ns.push(ns[1]);
                    ratios.push(ns[0] / ns[1]);
                }
                let ratio = quantile(&mut ratios, 0.5);
                println!(
                    "cache_speed workload={} threads={threads} contender={rival} \
                     backstop_ns={:.2} contender_ns={:.2} ratio={ratio:.3} \
                     ratio_p25={:.3} ratio_p75={:.3}",
                    workload.name(),
                    quantile(&mut ours_ns, 0.5),
                    quantile(&mut theirs_ns, 0.5),
                    quantile(&mut ratios, 0.25),
                    quantile(&mut ratios, 0.75),
                );
                if rival == QUICK_CACHE && workload != Workload::Insert {
                    println!(
                        "cache_speed_check workload={} threads={threads} contender={rival} \
                         ratio={ratio:.3} at_or_below={}",
                        workload.name(),
                        ratio <= 1.0
                    );
                }
            }
        }
    }
}
