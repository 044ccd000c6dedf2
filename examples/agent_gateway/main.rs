//! The flagship: an LLM gateway built from Backstop, in front of a simulated provider,
//! serving a simulated fleet of agents.
//!
//! ```sh
//! cargo run --release --example agent_gateway                      # ~12 s, constant load
//! cargo run --release --example agent_gateway -- --pattern spike --duration 20s
//! cargo run --release --example agent_gateway -- --config examples/backstop.toml --check-slo
//! ```
//!
//! Every request passes, outer to inner:
//! 1. a per-user request quota and token budget (keyed GCRA, weighted by tokens) → 429;
//! 2. a dedup window: identical in-flight prompts share one execution, repeats within
//!    the window get the first answer;
//! 3. a tiered response cache: memory L1, then Redis when `REDIS_URL` is set, else a file
//!    in a temporary directory;
//! 4. a circuit breaker that sheds calls while the provider is failing → 503;
//! 5. a batcher that gathers single prompts into batch completions;
//! 6. a connection pool to the provider;
//! 7. the provider: log-normal latency plus per-token time, 1 % transient errors, an outage
//!    from 45 % to 60 % of the run, and its own rate limit.
//!
//! Meanwhile an autoscaler watches the gateway's queue and recommends replicas. A progress
//! line prints every second; at the end, a summary and the SLO checks from `[slo]`.

mod args;
mod fleet;
mod provider;
mod report;
mod stack;

use backstop::config::{BackstopConfig, SloSection};
use backstop::core::LoadSignal;
use backstop::scale::{MetricSample, Observation, Reading, Target};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fleet::{PromptMix, THINK_TIME};
use report::{Outcome, Tally, classify, hit_rates, ms, percent};

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
        Some(path) => match BackstopConfig::from_file(path) {
            Ok(config) => config,
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::from(2);
            }
        },
        None => BackstopConfig::default(),
    };
    let scratch = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(error) => {
            eprintln!("error: no temporary directory for the file tier: {error}");
            return ExitCode::FAILURE;
        }
    };
    let gateway = match stack::build(&config, &args, scratch.path()).await {
        Ok(gateway) => gateway,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let slo = config.slo.clone().unwrap_or_else(stack::default_slo);
    println!(
        "{} agents ({} users), {:?} pattern for {}; cache tiers: {}; provider outage {}–{}",
        args.agents,
        users(args.agents),
        args.pattern,
        backstop::core::duration::format(args.duration),
        gateway.tier_names().join(" → "),
        backstop::core::duration::format(round(gateway.provider.outage_window().0)),
        backstop::core::duration::format(round(gateway.provider.outage_window().1)),
    );

    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let agents = run_fleet(&gateway, &tally, &args, started);
    let decisions = watch(&gateway, &tally, &args, started).await;
    for agent in agents {
        let _ = agent.await;
    }
    let passed = summarise(&gateway, &tally, &slo, &decisions, started.elapsed());
    if args.check_slo && !passed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn users(agents: usize) -> usize {
    agents.div_ceil(2)
}

fn round(duration: Duration) -> Duration {
    Duration::from_millis(duration.as_millis() as u64 / 100 * 100)
}

/// Spawns the agents: each belongs to a user, works through a plan of steps, thinks
/// between calls (less as the pattern's intensity rises) and retries a failed call once.
fn run_fleet(
    gateway: &Arc<stack::Gateway>,
    tally: &Arc<Tally>,
    args: &args::Args,
    started: Instant,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mix = Arc::new(PromptMix::new());
    (0..args.agents)
        .map(|agent| {
            let (gateway, tally, mix) = (gateway.clone(), tally.clone(), mix.clone());
            let (run, pattern) = (args.duration, args.pattern);
            let user = format!("user-{}", agent % users(args.agents));
            tokio::spawn(async move {
                let mut rng = fastrand::Rng::with_seed(agent as u64);
                let mut step = 0;
                while started.elapsed() < run {
                    step += 1;
                    let ask = mix.next(&mut rng, &user, agent, step);
                    let mut outcome = send(&gateway, &tally, &ask).await;
                    if matches!(outcome, Outcome::ProviderFailed | Outcome::Shed) {
                        tally.retries.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        outcome = send(&gateway, &tally, &ask).await;
                    }
                    let progress = started.elapsed().as_secs_f64() / run.as_secs_f64();
                    let think = THINK_TIME.div_f64(pattern.intensity(progress));
                    let pause = if outcome == Outcome::RateLimited {
                        think * 2
                    } else {
                        think
                    };
                    tokio::time::sleep(pause.mul_f64(0.5 + rng.f64())).await;
                }
            })
        })
        .collect()
}

async fn send(gateway: &stack::Gateway, tally: &Tally, ask: &fleet::Ask) -> Outcome {
    let expected_tokens = ask.prompt_tokens + ask.max_tokens * 3 / 4;
    tally
        .tokens_without_backstop
        .fetch_add(expected_tokens, Ordering::Relaxed);
    tally.in_flight.fetch_add(1, Ordering::Relaxed);
    let began = Instant::now();
    let outcome = classify(&gateway.call(ask.clone()).await);
    tally.in_flight.fetch_sub(1, Ordering::Relaxed);
    tally.record(outcome, began.elapsed());
    outcome
}

/// Once a second until the run ends: print a progress line and let the autoscaler decide.
async fn watch(
    gateway: &stack::Gateway,
    tally: &Tally,
    args: &args::Args,
    started: Instant,
) -> Vec<String> {
    let mut policy = gateway.scale_policy();
    let mut replicas = 1;
    let mut decisions = Vec::new();
    let mut last_total = 0;
    let mut last_latency = tally.latency.snapshot();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    while started.elapsed() < args.duration {
        tick.tick().await;
        let elapsed = started.elapsed();
        let total = tally.total();
        let (snapshot, p95) = report::p95_since(tally, &last_latency);
        last_latency = snapshot;
        let load = gateway.batcher.load();
        let waiting = load.queued + load.in_flight + tally.in_flight.load(Ordering::Relaxed);
        let observation = Observation::new(elapsed, replicas, replicas).metric(MetricSample::new(
            stack::QUEUE_METRIC,
            Target::AverageValue(stack::QUEUE_PER_REPLICA),
            Reading::Total(waiting as f64),
        ));
        let decision = policy.decide(&observation);
        if decision.desired != replicas {
            decisions.push(format!(
                "{:>3}s  {} → {} replicas ({:?}, {} waiting)",
                elapsed.as_secs(),
                replicas,
                decision.desired,
                decision.reason,
                waiting
            ));
            replicas = decision.desired;
        }
        let served = report::answered_without_provider(
            tally,
            &gateway.cache.stats(),
            &gateway.dedup.stats(),
        );
        println!(
            "[{:>3}s] {:>4} req/s  p95 {:>7}  from cache {:>6}  breaker {:<9}  waiting {:>3}  replicas {}",
            elapsed.as_secs(),
            total - last_total,
            report::ms_or_dash(p95),
            percent(served),
            gateway.breaker.state().as_str(),
            waiting,
            replicas
        );
        last_total = total;
    }
    decisions
}

/// Prints the summary and the SLO verdicts; true when every SLO passed.
fn summarise(
    gateway: &stack::Gateway,
    tally: &Tally,
    slo: &SloSection,
    decisions: &[String],
    took: Duration,
) -> bool {
    let total = tally.total();
    let latency = tally.latency.snapshot().summary();
    let cache = gateway.cache.stats();
    let (per_tier, hit_rate) = hit_rates(&cache);
    let dedup = gateway.dedup.stats();
    let batches = gateway.batcher.stats();
    let provider = &gateway.provider;
    let provider_calls = provider.calls.load(Ordering::Relaxed);
    let tokens_used = provider.tokens.load(Ordering::Relaxed);
    let tokens_without = tally.tokens_without_backstop.load(Ordering::Relaxed);
    let saved = tokens_without.saturating_sub(tokens_used);

    println!("\n=== summary after {:.1} s ===", took.as_secs_f64());
    println!(
        "requests            {total} ({} retries of failed calls)",
        tally.retries.load(Ordering::Relaxed)
    );
    for outcome in report::OUTCOMES {
        println!("  {:<46} {}", outcome.label(), tally.count(outcome));
    }
    println!(
        "latency (200s)      p50 {}  p95 {}  p99 {}  max {}",
        ms(latency.p50),
        ms(latency.p95),
        ms(latency.p99),
        ms(latency.max)
    );
    let tiers: Vec<String> = per_tier
        .iter()
        .enumerate()
        .map(|(i, (name, rate))| format!("L{} {name} {}", i + 1, percent(*rate)))
        .collect();
    println!(
        "cache hit rate      {} (total {})",
        tiers.join(", "),
        percent(hit_rate)
    );
    let served = report::answered_without_provider(tally, &cache, &dedup);
    println!(
        "served from cache   {} of admitted requests needed no provider call (tiers, dedup window, shared calls)",
        percent(served)
    );
    println!(
        "coalesced           {} callers shared an in-flight call, {} answered from the dedup window",
        dedup.group.coalesced, dedup.window_hits
    );
    println!(
        "circuit breaker     {} calls shed while open; state now {}",
        gateway.breaker.stats().rejected_calls,
        gateway.breaker.state().as_str()
    );
    println!(
        "batches             {} batches, mean size {:.1}, p95 queue wait {}",
        batches.batches,
        batches.batch_size.mean,
        ms(batches.queue_wait.p95)
    );
    println!(
        "pool                {} connections opened, p95 wait {}",
        gateway.connections_opened(),
        ms(gateway.pool.stats().wait.p95)
    );
    println!(
        "provider            {provider_calls} calls for {total} requests ({} refused with its own 429), {} prompts answered",
        provider.refused.load(Ordering::Relaxed),
        provider.items.load(Ordering::Relaxed)
    );
    println!(
        "tokens              {tokens_used} used vs ~{tokens_without} without Backstop: {} saved (~${:.2} at ${}/1k)",
        percent(saved as f64 / tokens_without.max(1) as f64),
        saved as f64 / 1000.0 * provider::DOLLARS_PER_1K_TOKENS,
        provider::DOLLARS_PER_1K_TOKENS
    );
    println!("scale decisions     {}", decisions.len());
    for decision in decisions {
        println!("  {decision}");
    }

    println!("\nSLOs");
    let checks = report::check_slos(slo, tally, served);
    for check in &checks {
        println!(
            "  {:<17} {:<10} target {:<10} {}",
            check.name,
            check.actual,
            check.target,
            if check.pass { "PASS" } else { "FAIL" }
        );
    }
    checks.iter().all(|check| check.pass)
}
