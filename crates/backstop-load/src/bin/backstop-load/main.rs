//! `backstop-load run plan.toml`: an open-loop load test of an HTTP endpoint.
//!
//! The plan file (TOML):
//!
//! ```toml
//! [target]
//! url = "http://127.0.0.1:8080/chat"      # http only
//! method = "POST"                          # default GET
//! headers = { content-type = "application/json" }
//! body = '{"prompt":"hello"}'
//!
//! [run]                                    # every key optional
//! mode = "open"                            # or "closed" (virtual users, labelled so)
//! arrivals = "poisson"                     # or "constant" (open loop)
//! users = 10                               # closed loop
//! think = "100ms"                          # closed loop
//! timeout = "2s"                           # from the scheduled send
//! drain_timeout = "30s"
//! sample_interval = "1s"
//! max_in_flight = 100000
//! samples_per_stage = 10000
//! seed = 1
//!
//! [[stage]]                                # one or more, run in order
//! name = "warm-up"
//! duration = "10s"
//! ramp = [10, 200]                         # or rate = 200, or spike = { base = 50,
//!                                          # peak = 400, at = "2s", length = "1s" }, or
//!                                          # trace = { file = "t.csv", speedup = 300 }
//! slo = { p99 = "250ms", error_rate = 0.01, throughput = 150 }
//!                                          # failure_rate: as error_rate, 429s expected
//!
//! [report]                                 # optional
//! json = "run.json"                        # save the run (a later baseline)
//! csv = "run.csv"
//! baseline = "last.json"                   # compare with a saved run
//! ```
//!
//! Flags after the plan override `[report]`: `--json FILE`, `--csv FILE`,
//! `--baseline FILE`, and `--quiet` (no live progress line). The text report goes to
//! standard output. Exit status: 0 when every SLO held and no stage regressed, 1 when
//! one broke or regressed, 2 when the plan or the arguments are wrong.
#![forbid(unsafe_code)]

mod plan_file;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use backstop_load::{LoadReport, LoadTest, RegressionConfig, compare};

const USAGE: &str = "usage: backstop-load run PLAN.toml [--json FILE] [--csv FILE] \
                     [--baseline FILE] [--quiet]";

struct Args {
    plan: PathBuf,
    json: Option<PathBuf>,
    csv: Option<PathBuf>,
    baseline: Option<PathBuf>,
    quiet: bool,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    if args.next().as_deref() != Some("run") {
        return Err(USAGE.to_owned());
    }
    let plan = args.next().ok_or_else(|| USAGE.to_owned())?;
    let mut parsed = Args {
        plan: plan.into(),
        json: None,
        csv: None,
        baseline: None,
        quiet: false,
    };
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .map(PathBuf::from)
                .ok_or_else(|| format!("{flag} needs a file\n{USAGE}"))
        };
        match flag.as_str() {
            "--json" => parsed.json = Some(value()?),
            "--csv" => parsed.csv = Some(value()?),
            "--baseline" => parsed.baseline = Some(value()?),
            "--quiet" => parsed.quiet = true,
            _ => return Err(format!("unknown argument {flag}\n{USAGE}")),
        }
    }
    Ok(parsed)
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(message) => {
            eprintln!("backstop-load: {message}");
            ExitCode::from(2)
        }
    }
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))
}

/// Runs the plan; `Ok(passed)`.
fn run() -> Result<bool, String> {
    let args = parse_args(std::env::args().skip(1))?;
    let text = std::fs::read_to_string(&args.plan)
        .map_err(|e| format!("read {}: {e}", args.plan.display()))?;
    let file: plan_file::PlanFile =
        toml::from_str(&text).map_err(|e| format!("{}: {e}", args.plan.display()))?;
    let dir = args.plan.parent().unwrap_or(Path::new("."));
    let (target, plan) = file.build(dir)?;
    let json = args.json.or(file.report.json.clone());
    let csv = args.csv.or(file.report.csv.clone());
    let baseline = match args.baseline.or(file.report.baseline.clone()) {
        Some(path) => {
            let saved = std::fs::read_to_string(&path)
                .map_err(|e| format!("read {}: {e}", path.display()))?;
            Some(LoadReport::from_json(&saved).map_err(|e| format!("{}: {e}", path.display()))?)
        }
        None => None,
    };
    let mut test = LoadTest::new(plan).map_err(|e| format!("plan: {e}"))?;
    if !args.quiet {
        test = test.on_progress(|progress| {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r{progress}   ");
            let _ = stderr.flush();
        });
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let report = runtime
        .block_on(test.run(&target, |i| i))
        .map_err(|e| e.to_string())?;
    if !args.quiet {
        eprintln!();
    }
    println!("{report}");
    if let Some(path) = &json {
        write(path, &report.to_json())?;
    }
    if let Some(path) = &csv {
        write(path, &report.to_csv())?;
    }
    let mut passed = report.passed();
    if let Some(baseline) = &baseline {
        let verdict = compare(baseline, &report, &RegressionConfig::default());
        println!("{verdict}");
        passed &= !verdict.regressed();
    }
    Ok(passed)
}
