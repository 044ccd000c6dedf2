//! The flagship: an LLM gateway built from Backstop, in front of a simulated provider,
//! serving a simulated fleet of agents.
//!
//! ```sh
//! cargo run --release -p agent-gateway                      # ~12 s, constant load
//! cargo run --release -p agent-gateway -- --pattern spike --duration 20s
//! cargo run --release -p agent-gateway -- --config examples/backstop.toml --check-slo
//! REDIS_CLUSTER_NODES=127.0.0.1:7000,127.0.0.1:7001 cargo run --release -p agent-gateway
//! ```
//!
//! The file (`--config`) is the gateway's own: its `[slo]` table, and Backstop's sections
//! under `[backstop]`, read as one struct with `BackstopConfig` embedded
//! (`AGENT_GATEWAY__…` environment variables override either).
//!
//! A background agent's request passes, outer to inner:
//! 1. a per-user request quota and token budget (keyed GCRA, weighted by tokens) → 429;
//! 2. a dedup window: identical in-flight prompts share one execution, repeats within
//!    the window get the first answer;
//! 3. a tiered response cache: memory L1, then Redis on the shared `[backstop.redis]`
//!    connection (made from `REDIS_CLUSTER_NODES` or `REDIS_URL` when the file has none),
//!    with other processes' writes dropping L1 copies; without Redis, a file in a
//!    temporary directory;
//! 4. an adaptive concurrency limit (Gradient2 by default, `[limit.adaptive]`) in place of
//!    a fixed bulkhead: critical agents hold half of it, background agents are refused
//!    first when it shrinks → 503;
//! 5. gateway retries within a budget, and a circuit breaker that sheds calls while the
//!    provider is failing → 503;
//! 6. a batcher that gathers single prompts into batch completions, routed to the primary
//!    provider or the fallback, over a connection pool;
//! 7. the provider: log-normal latency plus per-token time that grows past its capacity,
//!    1 % transient errors, an outage from 45 % to 60 % of the run, and its own rate
//!    limit (429).
//!
//! A critical agent (one in four) reads its answer as a stream instead: the same quota,
//! then a stream deduplicator (identical asks in flight share one provider stream, late
//! joiners replay what they missed), a stream cache (finished streams replay at once),
//! the adaptive limit held until the stream ends, the breaker and the router.
//!
//! backstop-load sends the load: open-loop Poisson arrivals (5 asks per second per agent
//! at the base rate) shaped by `--pattern`, latency counted from each ask's scheduled send
//! so a stalled gateway cannot hide its queueing. Each arrival is the next ask of one
//! agent, working through multi-step plans on tasks of Zipf-like popularity, so prompts
//! repeat and overlap; a failed call is retried with backoff. Meanwhile backstop-scale's
//! autoscaler reads queue depth and queue wait from the batcher's and the pool's
//! `LoadSignal`s and recommends replicas. A progress line prints every second; at the end,
//! backstop-load's report (per stage: rates, outcome classes, latency, SLO checks), a
//! summary (per-class success, the adaptive limit's trajectory, time to first token for
//! cache hits, followers and leaders, spend per team) and the SLO verdicts from `[slo]`
//! (exit status 1 on a failed SLO with `--check-slo`; under `--pattern stress`, the steps
//! past the capacity it finds do not count).

mod adaptive;
mod args;
mod autoscale;
mod billing;
mod fleet;
mod outcome;
mod pattern;
mod progress;
mod provider;
mod run;
mod settings;
mod stack;
mod streaming;
mod summary;
#[cfg(test)]
mod tests;

use settings::Settings;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let args = match args::parse(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("error: {message}\n\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    let config = match &args.config {
        Some(path) => match Settings::from_file(path) {
            Ok(settings) => settings,
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::from(2);
            }
        },
        None => Settings::default(),
    };
    let scratch = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(error) => {
            eprintln!("error: no temporary directory for the file tier: {error}");
            return ExitCode::FAILURE;
        }
    };
    let summary = match run::run(&args, &config.backstop, &config.slo, scratch.path()).await {
        Ok(summary) => summary,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    summary.print();
    if args.pattern == pattern::Pattern::Stress {
        let rate =
            |rate: Option<f64>| rate.map_or_else(|| "-".to_string(), |r| format!("{r:.0} asks/s"));
        let (held, broke) = summary.capacity();
        println!(
            "capacity            {} (the last step that met the SLO); broke at {}",
            rate(held),
            rate(broke)
        );
    }
    let passed = summary::print_slos(&summary.slo_checks(&config.slo, args.pattern));
    println!();
    for line in summary.quality_lines(&format!("agent_gateway/{}", args.pattern)) {
        println!("{line}");
    }
    if args.check_slo && !passed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
