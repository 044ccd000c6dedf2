//! One load run: build the stack, start the autoscaler, let the fleet loose, watch, and
//! collect the summary.

use backstop::config::BackstopConfig;
use std::path::Path;
use std::sync::Arc;
use tokio::time::Instant;

use crate::args::Args;
use crate::outcome::Tally;
use crate::summary::Summary;
use crate::{autoscale, fleet, progress, stack};

/// Runs the gateway under the fleet for `args.duration`; `Err` is a configuration or
/// startup problem, reported before any load is offered.
pub(crate) async fn run(
    args: &Args,
    config: &BackstopConfig,
    scratch: &Path,
) -> Result<Summary, String> {
    let policy = autoscale::policy(config.scale.as_ref())?;
    let gateway = stack::build(config, args, scratch)
        .await
        .map_err(|error| error.to_string())?;
    let (from, to) = gateway.providers[0].outage_window().unwrap_or_default();
    println!(
        "{} agents ({} users), {} pattern for {}; cache tiers: {}; primary provider down {:.1}–{:.1} s (routed to the fallback)",
        args.agents,
        fleet::users(args.agents),
        args.pattern,
        backstop::core::duration::format(args.duration),
        gateway.tier_names().join(" → "),
        from.as_secs_f64(),
        to.as_secs_f64(),
    );

    let tally = Arc::new(Tally::default());
    let (deployment, autoscaler) = autoscale::start(policy, gateway.path_load());
    let started = Instant::now();
    let agents = fleet::spawn(&gateway, &tally, args, started);
    progress::report(&gateway, &tally, &deployment, started, args.duration).await;
    for agent in agents {
        // An agent finishes its current call after the run ends; none panics, but a
        // panic would already have been printed by the runtime.
        let _ = agent.await;
    }
    autoscaler.abort();
    Ok(Summary::collect(
        &gateway,
        &tally,
        deployment.decisions(),
        started.elapsed(),
    ))
}
