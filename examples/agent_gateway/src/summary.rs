//! The end-of-run summary and the SLO verdicts: backstop-load's report of the run (per
//! stage: throughput, latency from each ask's scheduled send, outcome classes, SLO checks)
//! and what only the gateway knows (statuses, priority classes, cache tiers, the adaptive
//! limit, time to first token, spend).

use backstop::cache::TieredStats;
use backstop::core::LatencySummary;
use backstop::load::{LatencyFigures, LoadReport};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::billing::{ORG, dollars};
use crate::fleet::Priority;
use crate::outcome::{OUTCOMES, Outcome, Tally};
use crate::pattern::Pattern;
use crate::provider::{DOLLARS_PER_1K_TOKENS, Provider};
use crate::settings::Slo;
use crate::stack::Gateway;
use crate::streaming::Role;

/// One priority class of the adaptive limit, as its agents saw it.
#[derive(Debug, Clone)]
pub(crate) struct ClassSummary {
    pub(crate) name: &'static str,
    pub(crate) requests: u64,
    pub(crate) ok: u64,
    pub(crate) p99: Duration,
    /// Calls the limit refused or timed out in the class's queue.
    pub(crate) refused: u64,
}

impl ClassSummary {
    pub(crate) fn success_rate(&self) -> f64 {
        self.ok as f64 / self.requests.max(1) as f64
    }
}

/// What the adaptive limit did over the run.
#[derive(Debug, Clone, Default)]
pub(crate) struct LimitSummary {
    /// `(second, limit)`, once a second.
    pub(crate) trajectory: Vec<(u64, u64)>,
    pub(crate) limit: u64,
    pub(crate) baseline: Option<Duration>,
    pub(crate) windows: u64,
}

/// How streamed answers were served.
#[derive(Debug, Clone, Default)]
pub(crate) struct StreamSummary {
    /// Time to first token by how the stream was served: hit, follower, leader.
    pub(crate) first_token: Vec<(Role, LatencySummary)>,
    pub(crate) opened: u64,
    pub(crate) followers: u64,
    pub(crate) late_joiners: u64,
    pub(crate) replays: u64,
    pub(crate) stored: u64,
}

/// Everything the run measured, read once from backstop-load's report, the tally and the
/// primitives' `stats()`.
#[derive(Debug, Clone)]
pub(crate) struct Summary {
    pub(crate) took: Duration,
    /// backstop-load's report of the run.
    pub(crate) report: LoadReport,
    /// Asks answered (each with its retries), by status.
    pub(crate) requests: u64,
    pub(crate) outcomes: Vec<(Outcome, u64)>,
    pub(crate) errors: u64,
    pub(crate) retries: u64,
    pub(crate) plans: u64,
    /// Latency of successful asks per stage, from their scheduled send.
    pub(crate) latency: Vec<(String, LatencySummary)>,
    /// Hit rate of each cache tier over all lookups, L1 first.
    pub(crate) tiers: Vec<(String, f64)>,
    pub(crate) cache_hit_rate: f64,
    /// Other processes' writes that dropped an L1 copy (shared Redis only).
    pub(crate) l1_invalidations: u64,
    /// Of the admitted requests, the fraction answered without a provider call.
    pub(crate) served_without_provider: f64,
    pub(crate) coalesced: u64,
    pub(crate) window_hits: u64,
    pub(crate) shed: u64,
    pub(crate) breaker_state: &'static str,
    pub(crate) gateway_retries: u64,
    pub(crate) retry_budget_refusals: u64,
    pub(crate) batches: u64,
    pub(crate) mean_batch_size: f64,
    pub(crate) batch_wait_p95: Duration,
    pub(crate) connections_opened: u64,
    pub(crate) pool_wait_p95: Duration,
    pub(crate) provider_calls: u64,
    /// Batch calls each route target answered, by target name.
    pub(crate) routed: Vec<(String, u64)>,
    /// Calls the router moved on from a failing or cooling target.
    pub(crate) fallbacks: u64,
    pub(crate) provider_429s: u64,
    pub(crate) prompts_answered: u64,
    pub(crate) tokens_used: u64,
    pub(crate) tokens_without_backstop: u64,
    pub(crate) decisions: Vec<String>,
    pub(crate) classes: Vec<ClassSummary>,
    pub(crate) limit: LimitSummary,
    pub(crate) streams: StreamSummary,
    /// Charged per team (and the org) this period: `(id, charges)`, settled calls at
    /// their actual usage.
    pub(crate) spend: Vec<(String, backstop::limit::Charges)>,
}

impl Summary {
    pub(crate) fn collect(
        gateway: &Gateway,
        tally: &Tally,
        report: LoadReport,
        plans: u64,
        decisions: Vec<String>,
        took: Duration,
    ) -> Self {
        let cache = gateway.cache.stats();
        let dedup = gateway.dedup.stats();
        let batches = gateway.batcher.stats();
        let limiter = gateway.admission.limiter.stats();
        let streams = gateway.streams.stats();
        let shared = gateway.stream_group.stats();
        let classes = Priority::ALL
            .iter()
            .map(|priority| {
                let class = &tally.classes[priority.index()];
                let refused = limiter
                    .classes
                    .get(gateway.admission.class(*priority).index())
                    .map_or(0, |c| c.rejected + c.shed + c.timed_out);
                ClassSummary {
                    name: priority.name(),
                    requests: class.requests.load(Ordering::Relaxed),
                    ok: class.ok.load(Ordering::Relaxed),
                    p99: class.latency.snapshot().summary().p99,
                    refused,
                }
            })
            .collect();
        let (tiers, cache_hit_rate) = hit_rates(&cache);
        let total = |counter: fn(&Provider) -> &AtomicU64| -> u64 {
            gateway
                .providers
                .iter()
                .map(|p| counter(p).load(Ordering::Relaxed))
                .sum()
        };
        let routed = gateway.router.stats();
        let latency = report
            .stages
            .iter()
            .map(|stage| {
                let ok = stage.outcomes.iter().find(|o| o.class == "ok");
                (
                    stage.name.clone(),
                    ok.map_or_else(LatencySummary::default, |o| summary_of(&o.latency)),
                )
            })
            .collect();
        Self {
            took,
            requests: tally.total(),
            outcomes: OUTCOMES.iter().map(|o| (*o, tally.count(*o))).collect(),
            errors: tally.errors(),
            retries: tally.retries.load(Ordering::Relaxed),
            plans,
            latency,
            report,
            tiers,
            cache_hit_rate,
            l1_invalidations: gateway.l1_invalidations(),
            served_without_provider: answered_without_provider(tally, gateway),
            coalesced: dedup.group.coalesced,
            window_hits: dedup.window_hits,
            shed: gateway.breaker.stats().rejected_calls,
            breaker_state: gateway.breaker.state().as_str(),
            gateway_retries: gateway.retry.stats().retries,
            retry_budget_refusals: gateway.retry.stats().budget_refusals,
            batches: batches.batches,
            mean_batch_size: batches.batch_size.mean,
            batch_wait_p95: batches.queue_wait.p95,
            connections_opened: gateway.connections_opened(),
            pool_wait_p95: gateway.pool.stats().wait.p95,
            provider_calls: total(|p| &p.calls),
            provider_429s: total(|p| &p.refused),
            prompts_answered: total(|p| &p.items),
            tokens_used: total(|p| &p.tokens),
            routed: routed
                .targets
                .iter()
                .map(|t| (t.name.clone(), t.succeeded))
                .collect(),
            fallbacks: routed.fallbacks,
            tokens_without_backstop: tally.tokens_without_backstop.load(Ordering::Relaxed),
            decisions,
            classes,
            limit: LimitSummary {
                trajectory: gateway.admission.trajectory(),
                limit: limiter.limit,
                baseline: limiter.baseline,
                windows: limiter.windows,
            },
            spend: {
                let mut spend = gateway.billing.spend("team");
                spend.extend(gateway.billing.spend("org"));
                spend
            },
            streams: StreamSummary {
                first_token: Role::ALL
                    .iter()
                    .map(|role| (*role, tally.first_token[role.index()].snapshot().summary()))
                    .collect(),
                opened: shared.streams,
                followers: shared.followers + streams.group.followers,
                late_joiners: shared.late_joiners + streams.group.late_joiners,
                replays: streams.replays,
                stored: streams.stored,
            },
        }
    }

    pub(crate) fn error_rate(&self) -> f64 {
        self.errors as f64 / self.requests.max(1) as f64
    }

    pub(crate) fn tokens_saved(&self) -> u64 {
        self.tokens_without_backstop
            .saturating_sub(self.tokens_used)
    }

    /// The p95 latency of successful asks in the first stage (the pattern's base rate).
    pub(crate) fn p95(&self) -> Duration {
        self.latency
            .first()
            .map_or(Duration::ZERO, |(_, latency)| latency.p95)
    }

    /// The stress pattern's finding: the rate of the last step that met its SLO and the
    /// first that broke it (`None` where there is none).
    pub(crate) fn capacity(&self) -> (Option<f64>, Option<f64>) {
        let held = self.report.stages.iter().take_while(|stage| stage.passed);
        let broke = self.report.stages.iter().find(|stage| !stage.passed);
        (
            held.last().and_then(|stage| stage.target_rate),
            broke.and_then(|stage| stage.target_rate),
        )
    }

    pub(crate) fn print(&self) {
        println!("\n=== summary after {:.1} s ===", self.took.as_secs_f64());
        println!("{}\n", self.report);
        println!(
            "requests            {} answered from {} finished plans ({} retries of failed calls)",
            self.requests, self.plans, self.retries
        );
        for (outcome, count) in &self.outcomes {
            println!("  {:<46} {count}", outcome.label());
        }
        for (stage, latency) in &self.latency {
            println!(
                "latency (200s)      {stage}: p50 {}  p95 {}  p99 {}  max {} (from the scheduled send)",
                ms(latency.p50),
                ms(latency.p95),
                ms(latency.p99),
                ms(latency.max)
            );
        }
        let tiers: Vec<String> = self
            .tiers
            .iter()
            .enumerate()
            .map(|(i, (name, rate))| format!("L{} {name} {}", i + 1, percent(*rate)))
            .collect();
        println!(
            "cache hit rate      {} (total {}); {} L1 copies dropped for other processes' writes",
            tiers.join(", "),
            percent(self.cache_hit_rate),
            self.l1_invalidations
        );
        println!(
            "served from cache   {} of admitted requests needed no provider call (tiers, dedup window, shared calls)",
            percent(self.served_without_provider)
        );
        println!(
            "coalesced           {} callers shared an in-flight call, {} answered from the dedup window",
            self.coalesced, self.window_hits
        );
        println!(
            "circuit breaker     {} calls shed while open; state now {}",
            self.shed, self.breaker_state
        );
        println!(
            "gateway retries     {} transient provider failures and 429s retried, {} retries refused by the budget",
            self.gateway_retries, self.retry_budget_refusals
        );
        println!(
            "batches             {} batches, mean size {:.1}, p95 queue wait {}",
            self.batches,
            self.mean_batch_size,
            ms(self.batch_wait_p95)
        );
        println!(
            "pool                {} connections opened, p95 wait {}",
            self.connections_opened,
            ms(self.pool_wait_p95)
        );
        let routed: Vec<String> = self
            .routed
            .iter()
            .map(|(name, calls)| format!("{name} {calls}"))
            .collect();
        println!(
            "routing             batch calls answered: {}; {} fallbacks from a failing or cooling target",
            routed.join(", "),
            self.fallbacks
        );
        println!(
            "provider            {} calls for {} requests ({} refused with its own 429), {} prompts answered",
            self.provider_calls, self.requests, self.provider_429s, self.prompts_answered
        );
        let saved = self.tokens_saved();
        println!(
            "tokens              {} used vs ~{} without Backstop: {} saved (~${:.2} at ${}/1k)",
            self.tokens_used,
            self.tokens_without_backstop,
            percent(saved as f64 / self.tokens_without_backstop.max(1) as f64),
            saved as f64 / 1000.0 * DOLLARS_PER_1K_TOKENS,
            DOLLARS_PER_1K_TOKENS
        );
        for class in &self.classes {
            println!(
                "{:<19} {} of {} succeeded ({}), p99 {}, {} refused by the adaptive limit",
                format!("{} agents", class.name),
                class.ok,
                class.requests,
                percent(class.success_rate()),
                ms(class.p99),
                class.refused
            );
        }
        let trajectory: Vec<String> = self
            .limit
            .trajectory
            .iter()
            .map(|(_, limit)| limit.to_string())
            .collect();
        println!(
            "adaptive limit      now {} after {} windows, baseline {}; per second: {}",
            self.limit.limit,
            self.limit.windows,
            self.limit.baseline.map_or_else(|| "-".to_string(), ms),
            trajectory.join(" → ")
        );
        let first_token: Vec<String> = self
            .streams
            .first_token
            .iter()
            .map(|(role, latency)| {
                format!(
                    "{} p50 {} p95 {} ({})",
                    role.name(),
                    ms(latency.p50),
                    ms(latency.p95),
                    latency.count
                )
            })
            .collect();
        println!("first token         {}", first_token.join("; "));
        println!(
            "streams             {} opened upstream, {} readers joined one in flight ({} late), {} replays from the cache, {} stored",
            self.streams.opened,
            self.streams.followers,
            self.streams.late_joiners,
            self.streams.replays,
            self.streams.stored
        );
        let spend: Vec<String> = self
            .spend
            .iter()
            .map(|(id, charges)| {
                let who = if id == ORG {
                    format!("org {id}")
                } else {
                    id.clone()
                };
                format!(
                    "{who} {} ({} calls, {} tokens)",
                    dollars(charges.spend),
                    charges.requests,
                    charges.tokens
                )
            })
            .collect();
        println!(
            "spend per team      {} (reserved before each provider call, settled with its usage)",
            spend.join("; ")
        );
        println!("scale decisions     {}", self.decisions.len());
        for decision in &self.decisions {
            println!("  {decision}");
        }
    }

    /// Machine-readable results, one `<metric> workload=<w> contender=<c> value=<v>` line
    /// each; contender `none` is the same fleet sending every request to the provider
    /// (its tokens estimated from each request's expected completion).
    pub(crate) fn quality_lines(&self, workload: &str) -> Vec<String> {
        let line = |metric: &str, contender: &str, value: String| {
            format!("{metric} workload={workload} contender={contender} value={value}")
        };
        vec![
            line(
                "provider_calls",
                "backstop",
                self.provider_calls.to_string(),
            ),
            line("provider_calls", "none", self.requests.to_string()),
            line("provider_tokens", "backstop", self.tokens_used.to_string()),
            line(
                "provider_tokens",
                "none",
                self.tokens_without_backstop.to_string(),
            ),
            line(
                "p95_latency_ms",
                "backstop",
                format!("{:.1}", self.p95().as_secs_f64() * 1e3),
            ),
            line(
                "error_rate",
                "backstop",
                format!("{:.4}", self.error_rate()),
            ),
            line(
                "served_without_provider",
                "backstop",
                format!("{:.4}", self.served_without_provider),
            ),
        ]
    }

    /// backstop-load's verdicts on every stage (p95 latency and failure rate, 429s
    /// excluded: refusing is the limiter's job), then the gateway's own: the fraction
    /// served without the provider. Under the stress pattern only the first step (the base
    /// rate) binds; the later steps search for the capacity and are expected to break.
    pub(crate) fn slo_checks(&self, slo: &Slo, pattern: Pattern) -> Vec<SloCheck> {
        let mut checks: Vec<SloCheck> = self
            .report
            .stages
            .iter()
            .enumerate()
            .flat_map(|(index, stage)| {
                let binding = pattern != Pattern::Stress || index == 0;
                stage.slo.iter().map(move |check| SloCheck {
                    name: format!("{} {}", stage.name, check.objective),
                    target: format!("<= {:.3}", check.target),
                    actual: format!("{:.3}", check.actual),
                    pass: check.passed,
                    binding,
                })
            })
            .collect();
        let hit_rate = self.served_without_provider;
        checks.push(SloCheck {
            name: "served from cache".to_string(),
            target: format!(">= {}", percent(slo.min_cache_hit_rate)),
            actual: percent(hit_rate),
            pass: hit_rate >= slo.min_cache_hit_rate,
            binding: true,
        });
        checks
    }
}

/// One SLO verdict.
#[derive(Debug, Clone)]
pub(crate) struct SloCheck {
    pub(crate) name: String,
    pub(crate) target: String,
    pub(crate) actual: String,
    pub(crate) pass: bool,
    /// Whether a failure fails the run (`--check-slo`); a stress step past the capacity
    /// does not.
    pub(crate) binding: bool,
}

/// Prints the verdicts; true when every binding SLO passed.
pub(crate) fn print_slos(checks: &[SloCheck]) -> bool {
    println!("\nSLOs");
    for check in checks {
        let verdict = match (check.pass, check.binding) {
            (true, true) => "PASS",
            (false, true) => "FAIL",
            (true, false) => "held",
            (false, false) => "broke (past the capacity)",
        };
        println!(
            "  {:<42} {:<10} target {:<10} {verdict}",
            check.name, check.actual, check.target,
        );
    }
    checks.iter().all(|check| check.pass || !check.binding)
}

/// backstop-load's figures (µs) as the gateway prints them.
fn summary_of(figures: &LatencyFigures) -> LatencySummary {
    let us = Duration::from_micros;
    LatencySummary {
        count: figures.count,
        mean: us(figures.mean_us),
        p50: us(figures.p50_us),
        p95: us(figures.p95_us),
        p99: us(figures.p99_us),
        max: us(figures.max_us),
    }
}

/// Fraction of cache lookups answered by each tier, and by any.
pub(crate) fn hit_rates(stats: &TieredStats) -> (Vec<(String, f64)>, f64) {
    let hits: u64 = stats.hits_by_tier.iter().sum();
    let lookups = (hits + stats.misses).max(1) as f64;
    let per_tier = stats
        .tiers
        .iter()
        .zip(&stats.hits_by_tier)
        .map(|((name, _), tier_hits)| (name.clone(), *tier_hits as f64 / lookups))
        .collect();
    (per_tier, hits as f64 / lookups)
}

/// Of the requests the limiter admitted, the fraction answered without a provider call:
/// from a cache tier, the dedup window, or by sharing another caller's in-flight call,
/// streamed or not.
pub(crate) fn answered_without_provider(tally: &Tally, gateway: &Gateway) -> f64 {
    let (cache, dedup) = (gateway.cache.stats(), gateway.dedup.stats());
    let (streams, shared) = (gateway.streams.stats(), gateway.stream_group.stats());
    let tier_hits: u64 = cache.hits_by_tier.iter().sum();
    let saved = tier_hits
        + dedup.window_hits
        + dedup.group.coalesced
        + streams.replays
        + streams.group.followers
        + shared.followers;
    let admitted = tally.total() - tally.count(Outcome::RateLimited);
    saved as f64 / admitted.max(1) as f64
}

/// Milliseconds, with a decimal below 10 ms so cache hits do not all read "0 ms".
pub(crate) fn ms(duration: Duration) -> String {
    let millis = duration.as_secs_f64() * 1e3;
    if millis < 10.0 {
        format!("{millis:.1} ms")
    } else {
        format!("{millis:.0} ms")
    }
}

pub(crate) fn percent(fraction: f64) -> String {
    format!("{:.1} %", fraction * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report as backstop-load writes it: one stage per `(name, rate, p95 ms, failure
    /// rate)`, judged against `slo()`.
    fn report(stages: &[(&str, f64, u64, f64)]) -> LoadReport {
        let slo = slo();
        let stages: Vec<serde_json::Value> = stages
            .iter()
            .map(|(name, rate, p95_ms, failure_rate)| {
                let p95_us = p95_ms * 1000;
                let figures = serde_json::json!({
                    "count": 90, "mean_us": p95_us / 2, "p50_us": p95_us / 3, "p90_us": p95_us,
                    "p95_us": p95_us, "p99_us": p95_us, "p999_us": p95_us, "max_us": p95_us,
                });
                let target_ms = slo.p95_latency.as_secs_f64() * 1e3;
                let checks = [
                    ("p95 latency (ms)", *p95_ms as f64, target_ms),
                    (
                        "failure rate (429s expected)",
                        *failure_rate,
                        slo.max_error_rate,
                    ),
                ]
                .map(|(objective, actual, target)| {
                    serde_json::json!({
                        "objective": objective, "target": target, "actual": actual,
                        "margin": (target - actual) / target, "passed": actual <= target,
                    })
                });
                let passed = checks.iter().all(|c| c["passed"] == true);
                serde_json::json!({
                    "name": name, "duration_secs": 2.0, "target_rate": rate, "sent": 100,
                    "dropped": 0, "unfinished": 0, "completed": 100, "ok": 90, "rejected": 0,
                    "errors": 10, "timeouts": 0, "error_rate": 0.1, "failure_rate": failure_rate,
                    "send_rate": 50.0, "throughput": 45.0, "latency": figures,
                    "outcomes": [{ "class": "ok", "count": 90, "latency": figures }],
                    "slo": checks, "passed": passed, "samples_us": [],
                })
            })
            .collect();
        let json = serde_json::json!({
            "mode": "open-loop, poisson arrivals", "stages": stages, "timeline": [], "signals": [],
        });
        LoadReport::from_json(&json.to_string()).unwrap()
    }

    fn summary(p95_ms: u64, failure_rate: f64, served: f64) -> Summary {
        let report = report(&[("constant", 40.0, p95_ms, failure_rate)]);
        summary_of_report(report, served)
    }

    fn summary_of_report(report: LoadReport, served: f64) -> Summary {
        let latency = report
            .stages
            .iter()
            .map(|stage| (stage.name.clone(), summary_of(&stage.outcomes[0].latency)))
            .collect();
        Summary {
            took: Duration::from_secs(2),
            report,
            requests: 100,
            outcomes: Vec::new(),
            errors: 10,
            retries: 0,
            plans: 0,
            latency,
            tiers: Vec::new(),
            cache_hit_rate: served,
            l1_invalidations: 0,
            served_without_provider: served,
            coalesced: 0,
            window_hits: 0,
            shed: 0,
            breaker_state: "closed",
            gateway_retries: 0,
            retry_budget_refusals: 0,
            batches: 0,
            mean_batch_size: 0.0,
            batch_wait_p95: Duration::ZERO,
            connections_opened: 0,
            pool_wait_p95: Duration::ZERO,
            provider_calls: 0,
            routed: Vec::new(),
            fallbacks: 0,
            provider_429s: 0,
            prompts_answered: 0,
            tokens_used: 10,
            tokens_without_backstop: 5,
            decisions: Vec::new(),
            classes: Vec::new(),
            limit: LimitSummary::default(),
            streams: StreamSummary::default(),
            spend: Vec::new(),
        }
    }

    fn slo() -> Slo {
        Slo {
            p95_latency: Duration::from_millis(500),
            max_error_rate: 0.1,
            min_cache_hit_rate: 0.5,
        }
    }

    #[test]
    fn slos_pass_at_their_thresholds_and_fail_past_them() {
        let passing = summary(500, 0.1, 0.5).slo_checks(&slo(), Pattern::Constant);
        assert!(passing.iter().all(|c| c.pass && c.binding));
        assert!(print_slos(&passing));

        let failing = summary(501, 0.11, 0.49).slo_checks(&slo(), Pattern::Constant);
        assert_eq!(
            failing
                .iter()
                .map(|c| (c.name.as_str(), c.pass))
                .collect::<Vec<_>>(),
            [
                ("constant p95 latency (ms)", false),
                ("constant failure rate (429s expected)", false),
                ("served from cache", false)
            ]
        );
        assert!(!print_slos(&failing));
    }

    #[test]
    fn stress_binds_only_its_first_step_and_finds_the_capacity() {
        let stress = summary_of_report(
            report(&[
                ("40/s", 40.0, 200, 0.0),
                ("80/s", 80.0, 400, 0.05),
                ("120/s", 120.0, 900, 0.3),
                ("160/s", 160.0, 2000, 0.6),
            ]),
            0.6,
        );
        assert_eq!(stress.capacity(), (Some(80.0), Some(120.0)));
        assert_eq!(stress.p95(), Duration::from_millis(200), "the base rate's");
        let checks = stress.slo_checks(&slo(), Pattern::Stress);
        assert_eq!(checks.iter().filter(|c| c.binding).count(), 3);
        assert!(
            print_slos(&checks),
            "steps past the capacity do not fail the run"
        );
        let broken_base = summary_of_report(report(&[("40/s", 40.0, 600, 0.0)]), 0.6);
        assert!(!print_slos(
            &broken_base.slo_checks(&slo(), Pattern::Stress)
        ));
        assert_eq!(broken_base.capacity(), (None, Some(40.0)));
    }

    #[test]
    fn savings_never_underflow_and_durations_read_well() {
        assert_eq!(summary(1, 0.0, 0.0).tokens_saved(), 0);
        assert_eq!(ms(Duration::from_micros(300)), "0.3 ms");
        assert_eq!(ms(Duration::from_millis(123)), "123 ms");
        assert_eq!(percent(0.125), "12.5 %");
    }

    #[test]
    fn quality_lines_follow_the_bench_format() {
        let lines = summary(120, 0.05, 0.6).quality_lines("agent_gateway/spike");
        assert!(lines.contains(
            &"provider_calls workload=agent_gateway/spike contender=none value=100".to_string()
        ));
        assert!(
            lines.contains(
                &"p95_latency_ms workload=agent_gateway/spike contender=backstop value=120.0"
                    .to_string()
            )
        );
        for line in &lines {
            let fields: Vec<&str> = line.split(' ').collect();
            assert_eq!(fields.len(), 4, "{line}");
            assert!(fields[1].starts_with("workload=") && fields[3].starts_with("value="));
        }
    }
}
