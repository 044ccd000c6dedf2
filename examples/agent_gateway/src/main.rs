//! The flagship: an LLM gateway built from Backstop, in front of a simulated provider,
//! serving a simulated fleet of agents.
//!
//! ```sh
//! cargo run --release -p agent-gateway                      # ~12 s, constant load
//! cargo run --release -p agent-gateway -- --pattern spike --duration 20s
//! cargo run --release -p agent-gateway -- --config examples/backstop.toml --check-slo
//! ```
//!
//! A background agent's request passes, outer to inner:
//! 1. a per-user request quota and token budget (keyed GCRA, weighted by tokens) → 429;
//! 2. a dedup window: identical in-flight prompts share one execution, repeats within
//!    the window get the first answer;
//! 3. a tiered response cache: memory L1, then Redis when `REDIS_URL` is set, else a file
//!    in a temporary directory;
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
//! Agents work through multi-step plans on tasks of Zipf-like popularity, so their prompts
//! repeat and overlap; they retry failed calls with backoff. Meanwhile backstop-scale's
//! autoscaler reads queue depth and queue wait from the batcher's and the pool's
//! `LoadSignal`s and recommends replicas. A progress line prints every second; at the end,
//! a summary (per-class success, the adaptive limit's trajectory, time to first token for
//! cache hits, followers and leaders) and the SLO checks from `[slo]` (exit status 1 on a
//! failed SLO with `--check-slo`).

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
    let summary = match run::run(&args, &config.backstop, scratch.path()).await {
        Ok(summary) => summary,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    summary.print();
    let passed = summary::print_slos(&summary.slo_checks(&config.slo));
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
