//! The end-of-run summary and the SLO verdicts.

use backstop::cache::TieredStats;
use backstop::core::LatencySummary;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::billing::{ORG, dollars};
use crate::fleet::Priority;
use crate::outcome::{OUTCOMES, Outcome, Tally};
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

/// Everything the run measured, read once from the tally and the primitives' `stats()`.
#[derive(Debug, Clone)]
pub(crate) struct Summary {
    pub(crate) took: Duration,
    pub(crate) requests: u64,
    pub(crate) outcomes: Vec<(Outcome, u64)>,
    pub(crate) errors: u64,
    pub(crate) retries: u64,
    pub(crate) plans: u64,
    pub(crate) latency: LatencySummary,
    /// Hit rate of each cache tier over all lookups, L1 first.
    pub(crate) tiers: Vec<(String, f64)>,
    pub(crate) cache_hit_rate: f64,
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
        Self {
            took,
            requests: tally.total(),
            outcomes: OUTCOMES.iter().map(|o| (*o, tally.count(*o))).collect(),
            errors: tally.errors(),
            retries: tally.retries.load(Ordering::Relaxed),
            plans: tally.plans.load(Ordering::Relaxed),
            latency: tally.latency.snapshot().summary(),
            tiers,
            cache_hit_rate,
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

    pub(crate) fn print(&self) {
        println!("\n=== summary after {:.1} s ===", self.took.as_secs_f64());
        println!(
            "requests            {} from {} finished plans ({} retries of failed calls)",
            self.requests, self.plans, self.retries
        );
        for (outcome, count) in &self.outcomes {
            println!("  {:<46} {count}", outcome.label());
        }
        println!(
            "latency (200s)      p50 {}  p95 {}  p99 {}  max {}",
            ms(self.latency.p50),
            ms(self.latency.p95),
            ms(self.latency.p99),
            ms(self.latency.max)
        );
        let tiers: Vec<String> = self
            .tiers
            .iter()
            .enumerate()
            .map(|(i, (name, rate))| format!("L{} {name} {}", i + 1, percent(*rate)))
            .collect();
        println!(
            "cache hit rate      {} (total {})",
            tiers.join(", "),
            percent(self.cache_hit_rate)
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
                format!("{:.1}", self.latency.p95.as_secs_f64() * 1e3),
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

    /// p95 latency, error rate (429s excluded: refusing is the limiter's job) and the
    /// fraction served without the provider, against the configured thresholds.
    pub(crate) fn slo_checks(&self, slo: &Slo) -> Vec<SloCheck> {
        let error_rate = self.error_rate();
        let hit_rate = self.served_without_provider;
        vec![
            SloCheck {
                name: "p95 latency",
                target: format!("<= {}", ms(slo.p95_latency)),
                actual: ms(self.latency.p95),
                pass: self.latency.p95 <= slo.p95_latency,
            },
            SloCheck {
                name: "error rate",
                target: format!("<= {}", percent(slo.max_error_rate)),
                actual: percent(error_rate),
                pass: error_rate <= slo.max_error_rate,
            },
            SloCheck {
                name: "served from cache",
                target: format!(">= {}", percent(slo.min_cache_hit_rate)),
                actual: percent(hit_rate),
                pass: hit_rate >= slo.min_cache_hit_rate,
            },
        ]
    }
}

/// One SLO verdict.
#[derive(Debug, Clone)]
pub(crate) struct SloCheck {
    pub(crate) name: &'static str,
    pub(crate) target: String,
    pub(crate) actual: String,
    pub(crate) pass: bool,
}

/// Prints the verdicts; true when every SLO passed.
pub(crate) fn print_slos(checks: &[SloCheck]) -> bool {
    println!("\nSLOs");
    for check in checks {
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

    fn summary(p95_ms: u64, errors: u64, served: f64) -> Summary {
        Summary {
            took: Duration::from_secs(2),
            requests: 100,
            outcomes: Vec::new(),
            errors,
            retries: 0,
            plans: 0,
            latency: LatencySummary {
                count: 100,
                mean: Duration::from_millis(p95_ms / 2),
                p50: Duration::from_millis(p95_ms / 3),
                p95: Duration::from_millis(p95_ms),
                p99: Duration::from_millis(p95_ms),
                max: Duration::from_millis(p95_ms),
            },
            tiers: Vec::new(),
            cache_hit_rate: served,
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
        let passing = summary(500, 10, 0.5).slo_checks(&slo());
        assert!(passing.iter().all(|c| c.pass));
        assert!(print_slos(&passing));

        let failing = summary(501, 11, 0.49).slo_checks(&slo());
        assert_eq!(
            failing.iter().map(|c| (c.name, c.pass)).collect::<Vec<_>>(),
            [
                ("p95 latency", false),
                ("error rate", false),
                ("served from cache", false)
            ]
        );
        assert!(!print_slos(&failing));
    }

    #[test]
    fn savings_never_underflow_and_durations_read_well() {
        assert_eq!(summary(1, 0, 0.0).tokens_saved(), 0);
        assert_eq!(ms(Duration::from_micros(300)), "0.3 ms");
        assert_eq!(ms(Duration::from_millis(123)), "123 ms");
        assert_eq!(percent(0.125), "12.5 %");
    }

    #[test]
    fn quality_lines_follow_the_bench_format() {
        let lines = summary(120, 5, 0.6).quality_lines("agent_gateway/spike");
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
