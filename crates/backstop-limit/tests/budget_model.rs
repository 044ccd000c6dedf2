//! Model test of local budgets: random reserve / settle / drop / time sequences over three
//! levels against a reference that keeps every balance per period in plain maps.
//!
//! Checked after every step: the same decisions (and the same refusing level and quota),
//! the same balances and totals, refunds exact, debt refusing until its period ends, and
//! the bound on overshoot: a quota's use in a period is at most its limit plus the overruns
//! charged in that period (reservations are admitted only within the limit, so usage past
//! it comes only from overruns — at most one call's overrun per call in flight).

use backstop_core::ManualClock;
use backstop_limit::{
    BudgetError, BudgetMeter, BudgetPeriod, BudgetPlan, BudgetQuota, BudgetReservation, Budgets,
    Charges, CostTable, DropRule, ModelPrice, TokenUsage,
};
use proptest::prelude::*;
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod budget_plan;

const START_SECS: u64 = 1_700_000_000;

/// The levels' names, in path order.
const LEVELS: [&str; 3] = ["key", "team", "org"];

/// (meter, limit, window in seconds) per quota, per level.
fn shape() -> Vec<Vec<(BudgetMeter, u64, u64)>> {
    vec![
        vec![
            (BudgetMeter::Requests, 4, 10),
            (BudgetMeter::Tokens, 50, 10),
        ],
        vec![(BudgetMeter::Tokens, 80, 30)],
        vec![(BudgetMeter::Spend, 150, 60)],
    ]
}

fn plan(on_drop: DropRule) -> BudgetPlan {
    let mut builder = BudgetPlan::builder()
        .costs(
            CostTable::new()
                .with("m", ModelPrice::per_million(1_000_000, 2_000_000))
                .unwrap(),
        )
        .on_drop(on_drop);
    for (level, quotas) in shape().into_iter().enumerate() {
        builder = builder.level(
            LEVELS[level],
            quotas
                .into_iter()
                .enumerate()
                .map(|(i, (meter, limit, secs))| {
                    let period = BudgetPeriod::Every(Duration::from_secs(secs));
                    BudgetQuota::new(&format!("q{i}"), meter, limit, period).unwrap()
                }),
        );
    }
    builder.build().unwrap()
}

fn charges(usage: TokenUsage) -> Charges {
    Charges::new(
        1,
        usage.total(),
        usage.input_tokens + 2 * usage.output_tokens,
    )
}

fn path(key: usize) -> [String; 3] {
    [format!("k{key}"), format!("t{}", key % 2), "o".to_string()]
}

#[derive(Default)]
struct Reference {
    /// (level, id, quota) → period → used.
    used: HashMap<(usize, String, usize), HashMap<u64, u64>>,
    /// (level, id, quota) → period → overruns charged in it.
    overruns: HashMap<(usize, String, usize), HashMap<u64, u64>>,
    /// (level, id) → totals.
    totals: HashMap<(usize, String), Charges>,
}

impl Reference {
    fn quotas(level: usize) -> Vec<(BudgetMeter, u64, u64)> {
        shape()[level].clone()
    }

    fn period(now_micros: u64, secs: u64) -> u64 {
        now_micros / (secs * 1_000_000)
    }

    fn used(&self, level: usize, id: &str, quota: usize, period: u64) -> u64 {
        self.used
            .get(&(level, id.to_string(), quota))
            .and_then(|p| p.get(&period))
            .copied()
            .unwrap_or(0)
    }

    /// `Ok` (and charged) or the first refusing (level, quota).
    fn reserve(
        &mut self,
        path: &[String; 3],
        cost: Charges,
        now: u64,
    ) -> Result<(), (usize, usize)> {
        for (level, id) in path.iter().enumerate() {
            for (q, (meter, limit, secs)) in Self::quotas(level).into_iter().enumerate() {
                let used = self.used(level, id, q, Self::period(now, secs));
                if used + cost.get(meter) > limit {
                    return Err((level, q));
                }
            }
        }
        for (level, id) in path.iter().enumerate() {
            for (q, (meter, _, secs)) in Self::quotas(level).into_iter().enumerate() {
                *self
                    .used
                    .entry((level, id.clone(), q))
                    .or_default()
                    .entry(Self::period(now, secs))
                    .or_default() += cost.get(meter);
            }
            let total = self.totals.entry((level, id.clone())).or_default();
            *total = total.saturating_add(&cost);
        }
        Ok(())
    }

    fn settle(&mut self, path: &[String; 3], held: Charges, at: u64, actual: Charges, now: u64) {
        for (level, id) in path.iter().enumerate() {
            for (q, (meter, _, secs)) in Self::quotas(level).into_iter().enumerate() {
                let (then, current) = (Self::period(at, secs), Self::period(now, secs));
                let (held, actual) = (held.get(meter), actual.get(meter));
                let key = (level, id.clone(), q);
                let balance = self.used.entry(key.clone()).or_default();
                if then == current {
                    let used = balance.entry(then).or_default();
                    assert!(*used >= held, "the estimate is still in its balance");
                    *used = *used - held + actual;
                } else if actual > held {
                    *balance.entry(current).or_default() += actual - held;
                }
                if actual > held {
                    *self
                        .overruns
                        .entry(key)
                        .or_default()
                        .entry(current)
                        .or_default() += actual - held;
                }
            }
            let total = self.totals.entry((level, id.clone())).or_default();
            *total = total.saturating_sub(&held).saturating_add(&actual);
        }
    }
}

#[derive(Debug, Clone)]
enum Step {
    Reserve {
        key: usize,
        input: u64,
        output: u64,
    },
    Settle {
        pick: usize,
        input: u64,
        output: u64,
    },
    Drop {
        pick: usize,
    },
    Advance {
        millis: u64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0usize..4, 0u64..15, 0u64..15).prop_map(|(key, input, output)| Step::Reserve { key, input, output }),
        3 => (any::<usize>(), 0u64..25, 0u64..25).prop_map(|(pick, input, output)| Step::Settle { pick, input, output }),
        1 => any::<usize>().prop_map(|pick| Step::Drop { pick }),
        2 => (0u64..8_000).prop_map(|millis| Step::Advance { millis }),
    ]
}

struct Open {
    reservation: BudgetReservation<ManualClock>,
    key: usize,
    held: Charges,
    at: u64,
}

fn run(steps: Vec<Step>, on_drop: DropRule) -> Result<(), TestCaseError> {
    let clock = ManualClock::new();
    let budgets = Budgets::with_clock(
        plan(on_drop),
        clock.clone(),
        UNIX_EPOCH + Duration::from_secs(START_SECS),
    );
    let now = |clock: &ManualClock| {
        START_SECS * 1_000_000 + u64::try_from(clock.elapsed().as_micros()).unwrap()
    };
    let mut reference = Reference::default();
    let mut open: Vec<Open> = Vec::new();
    for step in steps {
        let t = now(&clock);
        match step {
            Step::Reserve { key, input, output } => {
                let ids = path(key);
                let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
                let usage = TokenUsage::new(input, output);
                let cost = charges(usage);
                // Debt anywhere on the path refuses whatever the cost.
                let in_debt = ids.iter().enumerate().any(|(level, id)| {
                    Reference::quotas(level)
                        .into_iter()
                        .enumerate()
                        .any(|(q, (_, limit, secs))| {
                            reference.used(level, id, q, Reference::period(t, secs)) > limit
                        })
                });
                let expected = reference.reserve(&ids, cost, t);
                match budgets.reserve(&refs, "m", usage) {
                    Ok(reservation) => {
                        prop_assert!(
                            expected.is_ok(),
                            "admitted; the reference refused at {:?}",
                            expected
                        );
                        prop_assert!(!in_debt, "admitted while in debt");
                        prop_assert_eq!(reservation.reserved(), cost);
                        open.push(Open {
                            reservation,
                            key,
                            held: cost,
                            at: t,
                        });
                    }
                    Err(BudgetError::Refused {
                        level,
                        quota,
                        rejected,
                    }) => {
                        prop_assert_eq!(expected, Err((level, quota)));
                        let (_, _, secs) = Reference::quotas(level)[quota];
                        let end = (Reference::period(t, secs) + 1) * secs * 1_000_000;
                        prop_assert_eq!(rejected.retry_after, Some(Duration::from_micros(end - t)));
                    }
                    Err(BudgetError::TooLarge { level, quota, .. }) => {
                        let (meter, limit, _) = Reference::quotas(level)[quota];
                        prop_assert!(cost.get(meter) > limit);
                        prop_assert!(expected.is_err());
                    }
                    Err(other) => prop_assert!(false, "unexpected {:?}", other),
                }
            }
            // A reservation ends, settled or dropped: the reference then charges what it cost.
            step @ (Step::Settle { pick, .. } | Step::Drop { pick }) if !open.is_empty() => {
                let Open {
                    reservation,
                    key,
                    held,
                    at,
                } = open.swap_remove(pick % open.len());
                let actual = if let Step::Settle { input, output, .. } = step {
                    let actual = charges(TokenUsage::new(input, output));
                    let settled = reservation.settle_usage(TokenUsage::new(input, output));
                    prop_assert_eq!(settled.charged, actual);
                    prop_assert_eq!(settled.refunded, held.saturating_sub(&actual));
                    prop_assert_eq!(settled.overrun, actual.saturating_sub(&held));
                    actual
                } else {
                    drop(reservation);
                    match on_drop {
                        DropRule::RefundAll => Charges::ZERO,
                        _ => held,
                    }
                };
                reference.settle(&path(key), held, at, actual, t);
            }
            Step::Advance { millis } => clock.advance(Duration::from_millis(millis)),
            _ => {}
        }
        // Balances, totals and the bound, at every level for every id seen.
        let t = now(&clock);
        for key in 0..4 {
            let ids = path(key);
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            let states = budgets.quota_states(&refs).unwrap();
            let mut index = 0;
            for (level, id) in ids.iter().enumerate() {
                for (q, (_, limit, secs)) in Reference::quotas(level).into_iter().enumerate() {
                    let period = Reference::period(t, secs);
                    let used = reference.used(level, id, q, period);
                    prop_assert_eq!(
                        states[index].remaining,
                        limit.saturating_sub(used),
                        "{} {} q{}",
                        level,
                        id,
                        q
                    );
                    let overruns = reference
                        .overruns
                        .get(&(level, id.clone(), q))
                        .and_then(|p| p.get(&period))
                        .copied()
                        .unwrap_or(0);
                    prop_assert!(
                        used <= limit + overruns,
                        "{} over {} + overruns {}",
                        used,
                        limit,
                        overruns
                    );
                    index += 1;
                }
                let name = LEVELS[level];
                let totals = budgets.spend(name, id).map_or(Charges::ZERO, |s| s.totals);
                let expected = reference
                    .totals
                    .get(&(level, id.clone()))
                    .copied()
                    .unwrap_or_default();
                prop_assert_eq!(totals, expected, "totals of {} {}", name, id);
            }
        }
    }
    // Settling everything still open leaves totals equal to the sum of what was charged.
    for Open {
        reservation,
        key,
        held,
        at,
    } in open
    {
        let actual = charges(TokenUsage::new(3, 4));
        reservation.settle(actual);
        reference.settle(&path(key), held, at, actual, now(&clock));
    }
    for ((level, id), expected) in &reference.totals {
        let name = LEVELS[*level];
        prop_assert_eq!(budgets.spend(name, id).unwrap().totals, *expected);
    }
    let stats = budgets.stats();
    prop_assert_eq!(stats.drop_failed, 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn budgets_match_the_reference_when_drops_refund(steps in prop::collection::vec(step(), 1..120)) {
        run(steps, DropRule::RefundAll)?;
    }

    #[test]
    fn budgets_match_the_reference_when_drops_charge_the_estimate(steps in prop::collection::vec(step(), 1..120)) {
        run(steps, DropRule::ChargeEstimate)?;
    }
}

/// Threads racing reserve/settle on shared ids: totals are exact and no quota ever holds
/// more than its limit plus the overruns of calls in flight at once.
#[test]
fn racing_threads_charge_exactly_what_they_used() {
    let plan = budget_plan::token_levels([
        ("key", 2_000, BudgetPeriod::hour()),
        ("team", 3_000, BudgetPeriod::hour()),
    ])
    .build()
    .unwrap();
    let clock = ManualClock::new();
    let budgets = Budgets::with_clock(plan, clock.clone(), SystemTime::now());
    const THREADS: u64 = 4;
    const MAX_OVERRUN: u64 = 20;
    let used_by_thread: Vec<u64> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (budgets, clock) = (budgets.clone(), clock.clone());
                s.spawn(move || {
                    let mut rng = fastrand::Rng::with_seed(t);
                    let mut used = 0;
                    for i in 0..20_000 {
                        // A new hour now and then, so budgets fill, go into debt and reset.
                        if t == 0 && i % 2_000 == 0 {
                            clock.advance(Duration::from_secs(3_600));
                        }
                        let key = format!("k{}", rng.u64(0..3));
                        let estimate = rng.u64(1..40);
                        let Ok(held) =
                            budgets.reserve_charges(&[&key, "team"], Charges::new(1, estimate, 0))
                        else {
                            continue;
                        };
                        let actual = rng.u64(0..estimate + MAX_OVERRUN);
                        held.settle(Charges::new(1, actual, 0));
                        used += actual;
                        let team = budgets
                            .spend("team", "team")
                            .unwrap()
                            .quota("tokens")
                            .unwrap()
                            .used;
                        // Over the limit only by overruns of calls in flight since the
                        // last admission: at most one per thread.
                        assert!(team <= 3_000 + THREADS * MAX_OVERRUN, "team at {team}");
                    }
                    used
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let total: u64 = used_by_thread.iter().sum();
    assert_eq!(budgets.spend("team", "team").unwrap().totals.tokens, total);
    let keys: u64 = (0..3)
        .map(|k| {
            budgets
                .spend("key", &format!("k{k}"))
                .map_or(0, |s| s.totals.tokens)
        })
        .sum();
    assert_eq!(keys, total);
}
