//! Reserve → settle budgets in one process: levels all or none, exact refunds, debt,
//! overrides, calendar resets, the drop rule, and what a decision reports.

use backstop_core::{ManualClock, RejectKind};
use backstop_limit::{
    BudgetError, BudgetMeter, BudgetPeriod, BudgetPlan, BudgetQuota, Budgets, Charges, DropRule,
    TokenUsage,
};
use backstop_testkit::assert_fields;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod budget_plan;

/// 2026-01-31 23:59:00 UTC: a minute before a new day and a new month.
fn new_years_eve_minus_a_month() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_769_903_940)
}

/// Ann's key, in the ml team, in the acme org: a path through the plan's three levels.
const ANN: [&str; 3] = ["ann", "ml", "acme"];
/// Bob's key, in Ann's team.
const BOB: [&str; 3] = ["bob", "ml", "acme"];

fn plan(on_drop: DropRule) -> BudgetPlan {
    budget_plan::three_levels(BudgetPeriod::minute(), 10, 100_000, on_drop)
}

fn budgets(on_drop: DropRule) -> (Budgets<ManualClock>, ManualClock) {
    let clock = ManualClock::new();
    let budgets = Budgets::with_clock(plan(on_drop), clock.clone(), new_years_eve_minus_a_month());
    (budgets, clock)
}

#[test]
fn a_refusal_at_any_level_charges_no_level() {
    let (b, _) = budgets(DropRule::ChargeEstimate);
    let first = b.reserve(&ANN, "m", TokenUsage::new(400, 400)).unwrap();
    // Bob's key has room, the team does not (800 + 800 > 1,500): refused at level 1.
    let refused = b.reserve(&BOB, "m", TokenUsage::new(400, 400)).unwrap_err();
    let (rejected, level, quota) = budget_plan::refusal(refused);
    assert_eq!((level, quota), (1, 0));
    // Its index points into the path's quota states: key-requests, key-tokens, team-tokens.
    assert_eq!(rejected.kind, RejectKind::RateLimited { quota: 2 });
    let states = b.quota_states(&BOB).unwrap();
    assert_eq!(&*states[2].name, "team-tokens");
    assert_eq!(states[2].remaining, 700);
    // The day ends in a minute: that is when the team has room again.
    assert_eq!(rejected.retry_after, Some(Duration::from_secs(60)));
    // Bob's key was not charged by the refused call.
    assert_eq!(states[0].remaining, 10);
    assert_eq!(states[1].remaining, 1_000);
    assert_eq!(b.spend("key", "bob").map(|s| s.totals), Some(Charges::ZERO));
    first.settle_usage(TokenUsage::new(400, 100));
    assert!(b.reserve(&BOB, "m", TokenUsage::new(400, 400)).is_ok());
}

/// Eight levels (the most a plan takes): a reservation holds the first three inline and the
/// rest apart, and every level is charged, refunded and released exactly.
#[test]
fn the_deepest_path_is_charged_settled_and_released_at_every_level() {
    let names = ["l0", "l1", "l2", "l3", "l4", "l5", "l6", "l7"];
    let plan = budget_plan::token_levels(names.iter().enumerate().map(|(depth, name)| {
        // Level 6 is the tightest: room for one 60-token call, not two.
        let limit = if depth == 6 { 100 } else { 1_000 };
        (*name, limit, BudgetPeriod::minute())
    }));
    let b = Budgets::with_clock(
        plan.build().unwrap(),
        ManualClock::new(),
        new_years_eve_minus_a_month(),
    );
    let path = ["k", "a", "b", "c", "d", "e", "f", "g"];
    let remaining = |b: &Budgets<ManualClock>| -> Vec<u64> {
        b.quota_states(&path)
            .unwrap()
            .iter()
            .map(|s| s.remaining)
            .collect()
    };
    let held = b.reserve_charges(&path, Charges::new(1, 60, 0)).unwrap();
    assert_eq!(remaining(&b), [940, 940, 940, 940, 940, 940, 40, 940]);
    // Refused at level 6 after levels 0 to 5 (three of them held apart) reserved.
    let refused = b
        .reserve_charges(&path, Charges::new(1, 60, 0))
        .unwrap_err();
    assert!(
        matches!(refused, BudgetError::Refused { level: 6, .. }),
        "{refused:?}"
    );
    assert_eq!(remaining(&b), [940, 940, 940, 940, 940, 940, 40, 940]);
    held.settle(Charges::new(1, 25, 0));
    assert_eq!(remaining(&b), [975, 975, 975, 975, 975, 975, 75, 975]);
}

#[test]
fn settling_refunds_exactly_and_an_overrun_is_debt_until_the_period_ends() {
    let (b, clock) = budgets(DropRule::ChargeEstimate);
    let r = b.reserve(&ANN, "m", TokenUsage::new(100, 500)).unwrap();
    assert_eq!(r.reserved(), Charges::new(1, 600, 11_000));
    let s = r.settle_usage(TokenUsage::new(100, 50));
    assert_eq!(s.charged, Charges::new(1, 150, 2_000));
    assert_eq!(s.refunded, Charges::new(0, 450, 9_000));
    let ann = b.spend("key", "ann").unwrap();
    assert_eq!(ann.quota("tokens").unwrap().used, 150);
    assert_eq!(
        b.spend("org", "acme").unwrap().quota("spend").unwrap().used,
        2_000
    );

    // An overrun: estimated 100 tokens, used 1,200 — charged past the key's 1,000.
    let r = b.reserve(&ANN, "m", TokenUsage::new(50, 50)).unwrap();
    let s = r.settle_usage(TokenUsage::new(200, 1_000));
    assert_eq!(s.overrun.tokens, 1_100);
    let ann = b.spend("key", "ann").unwrap();
    assert_eq!(ann.quota("tokens").unwrap().used, 1_350, "in debt");
    assert_eq!(ann.totals.tokens, 150 + 1_200);
    // In debt, even a call of no tokens waits for the minute to end.
    let refused = b.reserve_charges(&ANN, Charges::new(0, 0, 0)).unwrap_err();
    assert_eq!(refused.retry_after(), Some(Duration::from_secs(60)));
    clock.advance(Duration::from_secs(60));
    // A new minute (and day, and month): every balance starts again, totals remain.
    let r = b.reserve(&ANN, "m", TokenUsage::new(10, 10)).unwrap();
    drop(r);
    let ann = b.spend("key", "ann").unwrap();
    assert_eq!(ann.quota("tokens").unwrap().used, 20);
    assert_eq!(ann.totals.tokens, 150 + 1_200 + 20);
    assert_fields!(b.stats(), reserved: 3, settled: 2, dropped: 1, refused: 1);
}

#[test]
fn a_settlement_after_its_period_drops_the_refund_and_charges_the_overrun_now() {
    let (b, clock) = budgets(DropRule::ChargeEstimate);
    let small = b.reserve(&ANN, "m", TokenUsage::new(100, 100)).unwrap();
    let large = b.reserve(&ANN, "m", TokenUsage::new(100, 100)).unwrap();
    clock.advance(Duration::from_secs(61));
    // The minute that held both estimates is gone: nothing to refund into.
    small.settle_usage(TokenUsage::new(10, 0));
    let used =
        |b: &Budgets<ManualClock>| b.spend("key", "ann").unwrap().quota("tokens").unwrap().used;
    assert_eq!(used(&b), 0);
    // The overrun lands in the current minute.
    large.settle_usage(TokenUsage::new(100, 400));
    assert_eq!(used(&b), 300);
    assert_eq!(b.spend("key", "ann").unwrap().totals.tokens, 10 + 500);
}

#[test]
fn the_drop_rule_applies_once_to_an_unsettled_reservation() {
    for (rule, expected) in [(DropRule::RefundAll, 0), (DropRule::ChargeEstimate, 600)] {
        let (b, _) = budgets(rule);
        let r = b.reserve(&ANN, "m", TokenUsage::new(100, 500)).unwrap();
        drop(r);
        let ann = b.spend("key", "ann").unwrap();
        assert_eq!(ann.totals.tokens, expected, "{rule:?}");
        assert_eq!(ann.quota("tokens").unwrap().used, expected);
        assert_eq!(ann.totals.requests, u64::from(expected > 0));
        assert_fields!(b.stats(), dropped: 1, settled: 0, drop_failed: 0);
    }
}

#[test]
fn a_panicking_caller_between_reserve_and_settle_applies_the_rule_once() {
    let (b, _) = budgets(DropRule::RefundAll);
    let handle = b.clone();
    let outcome = std::thread::spawn(move || {
        let _held = handle
            .reserve(&ANN, "m", TokenUsage::new(100, 500))
            .unwrap();
        panic!("the caller fails mid-call");
    })
    .join();
    assert!(outcome.is_err());
    assert_fields!(b.stats(), reserved: 1, dropped: 1, drop_failed: 0);
    assert_eq!(b.spend("team", "ml").unwrap().totals, Charges::ZERO);
}

#[test]
fn overrides_replace_a_levels_quotas_for_one_id() {
    let plan = budget_plan::token_levels([
        ("key", 100, BudgetPeriod::hour()),
        ("team", 1_000, BudgetPeriod::Day),
    ])
    .override_quotas(
        "key",
        "vip",
        [BudgetQuota::tokens(500, BudgetPeriod::hour()).unwrap()],
    )
    .build()
    .unwrap();
    let b = Budgets::with_clock(plan, ManualClock::new(), new_years_eve_minus_a_month());
    let tokens = |n| Charges::new(1, n, 0);
    assert!(matches!(
        b.reserve_charges(&["ann", "t"], tokens(200)),
        Err(BudgetError::TooLarge {
            level: 0,
            cost: 200,
            limit: 100,
            ..
        })
    ));
    b.reserve_charges(&["vip", "t"], tokens(400))
        .unwrap()
        .settle(tokens(400));
    b.set_override(
        "team",
        "t",
        vec![BudgetQuota::tokens(450, BudgetPeriod::Day).unwrap()],
    )
    .unwrap();
    let refused = b.reserve_charges(&["vip", "t"], tokens(100)).unwrap_err();
    assert!(matches!(refused, BudgetError::Refused { level: 1, .. }));
    b.remove_override("team", "t").unwrap();
    b.reserve_charges(&["vip", "t"], tokens(100))
        .unwrap()
        .settle(tokens(100));
    assert!(b.set_override("nope", "x", vec![]).is_err());
}

#[test]
fn bad_calls_are_typed_errors_and_create_no_ids() {
    let (b, _) = budgets(DropRule::ChargeEstimate);
    assert_eq!(
        b.reserve(&["ann"], "m", TokenUsage::default()).unwrap_err(),
        BudgetError::PathMismatch {
            levels: 3,
            given: 1
        }
    );
    assert_eq!(
        b.reserve(&ANN, "unknown", TokenUsage::default())
            .unwrap_err(),
        BudgetError::UnknownModel("unknown".into())
    );
    let too_large = b.reserve(&ANN, "m", TokenUsage::new(2_000, 0)).unwrap_err();
    assert_eq!(
        too_large.rejection().kind,
        RejectKind::TooLarge { quota: 1 }
    );
    assert_eq!(b.stats().levels.iter().map(|l| l.keys).sum::<usize>(), 0);
}

#[test]
fn a_key_cap_sweeps_idle_ids_and_keeps_held_ones() {
    let plan = BudgetPlan::builder()
        .level(
            "key",
            [BudgetQuota::requests(5, BudgetPeriod::minute()).unwrap()],
        )
        .build()
        .unwrap();
    let clock = ManualClock::new();
    let b =
        Budgets::with_clock(plan, clock.clone(), new_years_eve_minus_a_month()).with_max_keys(2);
    let one = Charges::new(1, 0, 0);
    let held = b.reserve_charges(&["a"], one).unwrap();
    b.reserve_charges(&["b"], one).unwrap().settle(one);
    assert!(matches!(
        b.reserve_charges(&["c"], one),
        Err(BudgetError::TooManyKeys {
            level: 0,
            max_keys: 2
        })
    ));
    clock.advance(Duration::from_secs(60));
    // "b" is idle; "a" holds a reservation, so it stays for its settlement.
    b.reserve_charges(&["c"], one).unwrap().settle(one);
    held.settle(one);
    assert_eq!(b.spend("key", "a").unwrap().totals.requests, 1);
    assert!(b.spend("key", "b").is_none());
    assert_eq!(b.stats().levels[0].evicted, 1);
}

#[test]
fn reservation_states_report_requests_tokens_and_money_apart() {
    let (b, _) = budgets(DropRule::ChargeEstimate);
    let r = b.reserve(&ANN, "m", TokenUsage::new(100, 100)).unwrap();
    let states = r.quota_states();
    budget_plan::assert_quota_states(&states, [9, 800, 1_300, 97_000]);
    // The month resets at 2026-02-01 00:00 UTC, a minute away; a 31-day window.
    assert_eq!(states[3].reset, Duration::from_secs(60));
    assert_eq!(states[3].window, Duration::from_secs(31 * 86_400));
    assert_eq!(BudgetMeter::Spend.as_str(), "spend");
    r.settle_usage(TokenUsage::new(100, 100));
}

/// A call holding a reservation across the awaits of a streamed answer, aborted at each of
/// them in turn (Tokio's paused clock): the drop rule, or the settlement once it ran,
/// applies exactly once.
#[tokio::test(start_paused = true)]
async fn a_task_cancelled_at_every_await_applies_the_rule_exactly_once() {
    const CHUNKS: u64 = 3;
    for rule in [DropRule::RefundAll, DropRule::ChargeEstimate] {
        for cancel_at in 0..=CHUNKS + 1 {
            let (b, _) = budgets(rule);
            let task = {
                let b = b.clone();
                tokio::spawn(async move {
                    let held = b.reserve_charges(&ANN, Charges::new(1, 500, 0)).unwrap();
                    for _ in 0..CHUNKS {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    held.settle(Charges::new(1, 120, 0));
                })
            };
            tokio::time::sleep(Duration::from_millis(10 * cancel_at + 5)).await;
            task.abort();
            let finished = task.await.is_ok();
            assert_eq!(finished, cancel_at >= CHUNKS, "{rule:?} at {cancel_at}");
            let expected = match (finished, rule) {
                (true, _) => Charges::new(1, 120, 0),
                (false, DropRule::RefundAll) => Charges::ZERO,
                (false, _) => Charges::new(1, 500, 0),
            };
            for (level, id) in [("key", "ann"), ("team", "ml"), ("org", "acme")] {
                let spend = b.spend(level, id).unwrap();
                assert_eq!(spend.totals, expected, "{rule:?} at {cancel_at}, {level}");
            }
            let stats = b.stats();
            assert_eq!(stats.settled + stats.dropped, 1, "{rule:?} at {cancel_at}");
        }
    }
}
