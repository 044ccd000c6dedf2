//! One load run: build the stack, start the autoscaler, let backstop-load send the
//! fleet's asks on the pattern's schedule, and collect the summary.

use backstop::config::BackstopConfig;
use backstop::load::LoadTest;
use std::path::Path;
use std::sync::Arc;
use tokio::time::Instant;

use crate::args::Args;
use crate::fleet::{ASKS_PER_AGENT, Fleet};
use crate::outcome::Tally;
use crate::settings::Slo;
use crate::summary::Summary;
use crate::{autoscale, fleet, progress, stack};

/// Runs the gateway under the fleet for `args.duration`, each stage checked against
/// `slo`; `Err` is a configuration or startup problem, reported before any load is offered.
pub(crate) async fn run(
    args: &Args,
    config: &BackstopConfig,
    slo: &Slo,
    scratch: &Path,
) -> Result<Summary, String> {
    let policy = autoscale::policy(config.scale.as_ref())?;
    let gateway = stack::build(config, args, scratch)
        .await
        .map_err(|error| error.to_string())?;
    let rate = args.agents as f64 * ASKS_PER_AGENT;
    let plan = args.pattern.plan(rate, args.duration, &slo.per_stage());
    let (from, to) = gateway.providers[0].outage_window().unwrap_or_default();
    println!(
        "{} agents ({} users), {} pattern around {rate:.0} asks/s for {} ({}); cache tiers: {} (redis: {}); primary provider down {:.1}–{:.1} s (routed to the fallback)",
        args.agents,
        fleet::users(args.agents),
        args.pattern,
        backstop::core::duration::format(args.duration),
        plan.mode.label(),
        gateway.tier_names().join(" → "),
        gateway.redis,
        from.as_secs_f64(),
        to.as_secs_f64(),
    );

    let tally = Arc::new(Tally::default());
    let (deployment, autoscaler) = autoscale::start(policy, gateway.path_load());
    let started = Instant::now();
    let test = LoadTest::new(plan)
        .map_err(|error| format!("load plan: {error}"))?
        .signal("batcher", gateway.batcher.clone())
        .signal("pool", gateway.pool.clone())
        .on_progress(progress::reporter(
            gateway.clone(),
            tally.clone(),
            deployment.clone(),
        ));
    let mut fleet = Fleet::new(args.agents);
    let report = test
        .run(&fleet::agent_service(gateway.clone(), tally.clone()), |i| {
            fleet.ask(i)
        })
        .await
        .map_err(|error| format!("load test: {error}"))?;
    autoscaler.abort();
    Ok(Summary::collect(
        &gateway,
        &tally,
        report,
        fleet.plans,
        deployment.decisions(),
        started.elapsed(),
    ))
}
