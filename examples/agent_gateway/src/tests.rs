//! The gateway as a whole: the shipped config drives it, and a two-second run checks that
//! the numbers the summary prints add up.

use backstop::config::{BackstopConfig, CacheSection, PolicyKind};
use std::time::Duration;

use crate::outcome::Outcome;
use crate::{args, autoscale, run, settings, summary};

#[test]
fn usage_names_every_flag() {
    for flag in [
        "--agents",
        "--duration",
        "--pattern",
        "--config",
        "--check-slo",
        "--help",
    ] {
        assert!(args::USAGE.contains(flag), "{flag}");
    }
}

#[test]
fn the_shipped_config_drives_the_autoscaler_on_a_metric_the_gateway_publishes() {
    let config = settings::Settings::from_file(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../backstop.toml"
    )))
    .unwrap()
    .backstop;
    let scale = config.scale.as_ref().unwrap();
    assert_eq!(scale.policy, PolicyKind::Queue);
    assert_eq!(
        scale.queue.as_ref().unwrap().metric,
        autoscale::QUEUE_METRIC
    );
    assert!(autoscale::policy(Some(scale)).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_second_run_adds_up() {
    let args = args::Args {
        agents: 8,
        duration: Duration::from_secs(2),
        ..args::Args::default()
    };
    // A memory L1 over a file tier in a scratch directory, whatever REDIS_URL says, so
    // the test leaves nothing behind.
    let mut cache = CacheSection::default();
    cache.memory.max_capacity = 256;
    let mut config = BackstopConfig::default();
    config.cache = Some(cache);
    let scratch = tempfile::tempdir().unwrap();
    let slo = crate::settings::Slo::default();
    let summary = run::run(&args, &config, &slo, scratch.path())
        .await
        .unwrap();
    summary.print();
    let checks = summary.slo_checks(&slo, args.pattern);
    assert_eq!(
        checks.len(),
        3,
        "p95 and failure rate per stage, and the cache"
    );
    summary::print_slos(&checks);
    assert_eq!(summary.quality_lines("agent_gateway/constant").len(), 7);

    assert!(summary.took >= Duration::from_secs(2));
    assert!(summary.requests > 30, "{summary:?}");
    // backstop-load sent them on schedule (8 agents at 5 asks/s, Poisson) and every one
    // was answered and counted by the gateway too.
    let stage = &summary.report.stages[0];
    assert!((50..110).contains(&stage.sent), "{stage:?}");
    assert_eq!((stage.dropped, stage.unfinished), (0, 0), "{stage:?}");
    assert_eq!(stage.sent, summary.requests);
    let by_outcome: u64 = summary.outcomes.iter().map(|(_, n)| n).sum();
    assert_eq!(by_outcome, summary.requests);
    let ok = summary
        .outcomes
        .iter()
        .find(|(o, _)| *o == Outcome::Ok)
        .map_or(0, |(_, n)| *n);
    assert_eq!(stage.ok, ok, "one classification, the stack's error");
    let timed: u64 = summary.latency.iter().map(|(_, l)| l.count).sum();
    assert_eq!(timed, ok, "only successes are timed");
    assert!(ok > summary.requests / 2, "{summary:?}");

    // Backstop's point: fewer provider calls and tokens than requests would cost alone.
    assert_eq!(summary.tiers.len(), 2, "{:?}", summary.tiers);
    assert!(summary.served_without_provider > 0.0);
    assert!(summary.prompts_answered < summary.requests);
    assert!(
        summary.provider_calls
            <= summary.prompts_answered + summary.provider_429s + summary.errors + summary.retries
    );
    assert!(summary.batches > 0 && summary.mean_batch_size >= 1.0);
    assert!(summary.tokens_used < summary.tokens_without_backstop);
    assert!(summary.connections_opened >= 1);

    // Both priority classes of the adaptive limit served their agents, and the limit was
    // sampled once a second.
    assert_eq!(summary.classes.len(), 2);
    for class in &summary.classes {
        assert!(class.requests > 0 && class.ok > 0, "{class:?}");
    }
    let by_class: u64 = summary.classes.iter().map(|c| c.requests).sum();
    assert_eq!(by_class, summary.requests);
    assert!(!summary.limit.trajectory.is_empty() && summary.limit.limit >= 1);

    // Critical agents stream: some streams were opened at the provider, and every
    // streamed answer that produced a token was counted under one way of serving it.
    let streams = &summary.streams;
    assert!(streams.opened > 0, "{streams:?}");
    let leaders = streams
        .first_token
        .iter()
        .find(|(role, _)| *role == crate::streaming::Role::Leader)
        .map_or(0, |(_, latency)| latency.count);
    assert!(leaders > 0, "{streams:?}");

    // Every provider call was charged to its key, team and org: the org's settled tokens
    // are the teams' together, and every team spent something.
    let (org, teams): (Vec<_>, Vec<_>) = summary
        .spend
        .iter()
        .partition(|(id, _)| id == crate::billing::ORG);
    assert_eq!(
        teams.len(),
        crate::billing::TEAMS.len(),
        "{:?}",
        summary.spend
    );
    assert!(teams.iter().all(|(_, charges)| charges.spend > 0));
    let team_tokens: u64 = teams.iter().map(|(_, c)| c.tokens).sum();
    assert_eq!(org[0].1.tokens, team_tokens);
}
