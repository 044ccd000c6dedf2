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
//! - `… --trace PATH --envelope-sweep` instead replays `hpa_envelope` over a grid of the
//!   envelope's quantile and lookback and prints, per setting, its SLO-violation minutes and
//!   replica-hours as multiples of HPA's (`envelope_sweep workload=… quantile=… lookback_h=…
//!   violation_x=… replica_hours_x=…`): the trade-off the headroom buys on that trace.
//!
//! The line-up is `backstop::scale::contenders`: HPA target tracking (`hpa`), threshold
//! steps, KEDA-style queue scaling, the predictive policy, the HPA and queue policies with
//! the noise-aware band (`*_noise_aware`), the HPA and predictive policies under the
//! burst-aware scale-down hold (`*_burst_hold`) and under the burst-envelope headroom with the
//! start-up-aware cap (`hpa_envelope`, `predictive_envelope`), and a fleet fixed at the peak's
//! size (`fixed_peak`). The line-up needs `backstop-scale`'s `sim` feature (on by default).

use std::path::Path;
use std::process::ExitCode;

use std::time::Duration;

use backstop::scale::{
    BurstEnvelope, BurstEnvelopeConfig, HpaConfig, ReplicaModel, SimReport, TargetTracking, Trace,
    contenders, metrics, simulate,
};

const DAYS: u32 = 4;
const PEAK: f64 = 400.0;
const SEED: u64 = 42;

/// Every contender starts warm, sized for the trace's first sample.
fn model(trace: &Trace) -> ReplicaModel {
    ReplicaModel {
        initial_replicas: ReplicaModel::default().fleet_for(trace.rates[0]),
        ..ReplicaModel::default()
    }
}

fn run(trace: &Trace) -> Vec<SimReport> {
    let model = model(trace);
    contenders(&model, trace)
        .expect("the default model is valid")
        .into_iter()
        .map(|mut c| {
            simulate(trace, &model, c.name, c.policy.as_mut()).expect("the default model is valid")
        })
        .collect()
}

/// `hpa_envelope` as `contenders` builds it, with the headroom's quantile and lookback set.
fn sweep(trace: &Trace) -> Result<(), String> {
    let model = model(trace);
    let hpa = HpaConfig::default().with_bounds(1, model.fleet_for(trace.peak() * 1.5));
    let sim = |name: &str, policy: &mut TargetTracking| {
        simulate(trace, &model, name, policy).map_err(|e| e.to_string())
    };
    let base = sim(
        "hpa",
        &mut TargetTracking::new(hpa.clone()).map_err(|e| e.to_string())?,
    )?;
    for quantile in [0.9, 0.95, 0.99, 0.995, 1.0] {
        for hours in [1, 3, 6, 12, 24, 72] {
            let config = BurstEnvelopeConfig {
                lookback: Duration::from_secs(hours * 3600),
                quantile,
                ..BurstEnvelopeConfig::default()
                    .with_metric(metrics::REQUESTS, model.requests_target())
                    .with_backlog_metric(Some(metrics::QUEUE.to_owned()))
                    .with_startup(model.startup_delay)
                    .with_max_replicas(hpa.max_replicas)
            };
            let inner = TargetTracking::new(hpa.clone()).map_err(|e| e.to_string())?;
            let mut policy = BurstEnvelope::new(inner, config).map_err(|e| e.to_string())?;
            let r =
                simulate(trace, &model, "hpa_envelope", &mut policy).map_err(|e| e.to_string())?;
            println!(
                "envelope_sweep workload={} quantile={quantile} lookback_h={hours} violation_x={:.2} replica_hours_x={:.2}",
                trace.name,
                r.slo_violation_min / base.slo_violation_min.max(f64::MIN_POSITIVE),
                r.replica_hours / base.replica_hours
            );
        }
    }
    Ok(())
}

fn load(path: &str, peak: f64) -> Result<Trace, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let stem = Path::new(path)
        .file_stem()
        .map_or_else(|| path.to_owned(), |s| s.to_string_lossy().into_owned());
    Ok(Trace::from_series_csv(stem, &text)
        .map_err(|e| format!("{path}: {e}"))?
        .scaled_to_peak(peak))
}

fn replay(trace: &Trace) {
    for r in run(trace) {
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
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut trace = None;
    let mut peak = PEAK;
    let mut envelope_sweep = false;
    let mut i = 0;
    while i < args.len() {
        if args[i] == "--envelope-sweep" {
            envelope_sweep = true;
            i += 1;
            continue;
        }
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
                    "usage: autoscale_sim [--trace PATH [--peak-rps N] [--envelope-sweep]] (unexpected {other})"
                );
                return ExitCode::FAILURE;
            }
        }
        i += 2;
    }
    match trace {
        Some(path) => match load(&path, peak).and_then(|trace| {
            if envelope_sweep {
                sweep(&trace)
            } else {
                replay(&trace);
                Ok(())
            }
        }) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        None if envelope_sweep => {
            eprintln!("--envelope-sweep needs --trace PATH");
            ExitCode::FAILURE
        }
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
