//! Replays load traces against each policy and prints one line per run.
//!
//! - `cargo run --release --example autoscale_sim` replays every built-in trace and prints
//!   `autoscale workload=<w> contender=<policy> slo_violation_min=<x> replica_hours=<y> …`.
//! - `cargo run --release --example autoscale_sim -- --trace PATH [--peak-rps N]` replays a
//!   real series (`timestamp,value` CSV, any fixed interval, gaps held at the last value),
//!   scaled so its peak is N requests per second (default 400), and prints per policy
//!   `slo_violation_minutes workload=<file stem> contender=<policy> value=<v>`,
//!   `replica_hours …`, `flaps …`, `actions …` and `longest_violation_minutes …` (the
//!   longest time to recover from a burst).
//!
//! The line-up is `backstop::scale::contenders`: HPA target tracking (`hpa`), threshold
//! steps, KEDA-style queue scaling, the predictive policy, the HPA and queue policies with
//! the noise-aware band (`*_noise_aware`), the HPA and predictive policies under the
//! burst-aware scale-down hold (`*_burst_hold`) and under the burst-envelope headroom with the
//! start-up-aware cap (`hpa_envelope`, `predictive_envelope`), and a fleet fixed at the peak's
//! size (`fixed_peak`). The line-up needs `backstop-scale`'s `sim` feature (on by default).

use std::path::Path;
use std::process::ExitCode;

use backstop::scale::{ReplicaModel, SimReport, Trace, contenders, simulate};

const DAYS: u32 = 4;
const PEAK: f64 = 400.0;
const SEED: u64 = 42;

fn run(trace: &Trace) -> Vec<SimReport> {
    // Every contender starts warm, sized for the trace's first sample.
    let model = ReplicaModel {
        initial_replicas: ReplicaModel::default().fleet_for(trace.rates[0]),
        ..ReplicaModel::default()
    };
    contenders(&model, trace)
        .expect("the default model is valid")
        .into_iter()
        .map(|mut c| {
            simulate(trace, &model, c.name, c.policy.as_mut()).expect("the default model is valid")
        })
        .collect()
}

fn replay(path: &str, peak: f64) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let stem = Path::new(path)
        .file_stem()
        .map_or_else(|| path.to_owned(), |s| s.to_string_lossy().into_owned());
    let trace = Trace::from_series_csv(stem, &text)
        .map_err(|e| format!("{path}: {e}"))?
        .scaled_to_peak(peak);
    for r in run(&trace) {
        let (w, c) = (&r.workload, &r.contender);
        println!(
            "slo_violation_minutes workload={w} contender={c} value={:.2}",
            r.slo_violation_min
        );
        println!(
            "replica_hours workload={w} contender={c} value={:.2}",
            r.replica_hours
        );
        println!("flaps workload={w} contender={c} value={}", r.flaps);
        println!("actions workload={w} contender={c} value={}", r.actions);
        println!(
            "longest_violation_minutes workload={w} contender={c} value={:.2}",
            r.longest_violation_min
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut trace = None;
    let mut peak = PEAK;
    let mut i = 0;
    while i < args.len() {
        match (args[i].as_str(), args.get(i + 1)) {
            ("--trace", Some(path)) => trace = Some(path.clone()),
            ("--peak-rps", Some(n)) => match n.parse::<f64>() {
                Ok(n) if n.is_finite() && n > 0.0 => peak = n,
                _ => {
                    eprintln!("--peak-rps needs a positive number, got {n}");
                    return ExitCode::FAILURE;
                }
            },
            (other, _) => {
                eprintln!(
                    "usage: autoscale_sim [--trace PATH [--peak-rps N]] (unexpected {other})"
                );
                return ExitCode::FAILURE;
            }
        }
        i += 2;
    }
    match trace {
        Some(path) => match replay(&path, peak) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        None => {
            for trace in Trace::builtins(DAYS, PEAK, SEED) {
                for report in run(&trace) {
                    println!("{}", report.line());
                }
            }
            ExitCode::SUCCESS
        }
    }
}
