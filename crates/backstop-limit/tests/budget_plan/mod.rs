//! The plan the local and the Redis budget tests share: a key (requests and tokens per
//! `key_period`), its team (1,500 tokens a day) and its organisation (spend per calendar
//! month), with one priced model, `m`; and plans of one token quota per level.
#![allow(dead_code)] // each test binary uses a different part of it

use backstop_core::{QuotaState, Rejected};
use backstop_limit::{
    BudgetError, BudgetPeriod, BudgetPlan, BudgetPlanBuilder, BudgetQuota, CostTable, DropRule,
    ModelPrice,
};

/// Key: `requests` calls and 1,000 tokens per `key_period`; team: 1,500 tokens a day;
/// org: `org_spend` micro-units a month; `m` costs $10 / $20 per million tokens.
pub(crate) fn three_levels(
    key_period: BudgetPeriod,
    requests: u64,
    org_spend: u64,
    on_drop: DropRule,
) -> BudgetPlan {
    BudgetPlan::builder()
        .level(
            "key",
            [
                BudgetQuota::requests(requests, key_period).unwrap(),
                BudgetQuota::tokens(1_000, key_period).unwrap(),
            ],
        )
        .level(
            "team",
            [BudgetQuota::tokens(1_500, BudgetPeriod::Day).unwrap()],
        )
        .level(
            "org",
            [BudgetQuota::spend(org_spend, BudgetPeriod::Month).unwrap()],
        )
        .costs(
            CostTable::new()
                .with("m", ModelPrice::per_million(10_000_000, 20_000_000))
                .unwrap(),
        )
        .on_drop(on_drop)
        .build()
        .unwrap()
}

/// A plan whose levels, narrowest first, each hold one token quota: `(name, tokens,
/// period)` per level.
pub(crate) fn token_levels<'a>(
    levels: impl IntoIterator<Item = (&'a str, u64, BudgetPeriod)>,
) -> BudgetPlanBuilder {
    levels
        .into_iter()
        .fold(BudgetPlan::builder(), |plan, (name, tokens, period)| {
            plan.level(name, [BudgetQuota::tokens(tokens, period).unwrap()])
        })
}

/// A reservation under [`three_levels`] reports each of its four quotas by name, in level
/// order, with `remaining` left on each.
pub(crate) fn assert_quota_states(states: &[QuotaState], remaining: [u64; 4]) {
    let names: Vec<&str> = states.iter().map(|s| &*s.name).collect();
    assert_eq!(
        names,
        ["key-requests", "key-tokens", "team-tokens", "org-spend"]
    );
    let left: Vec<u64> = states.iter().map(|s| s.remaining).collect();
    assert_eq!(left, remaining);
}

/// The refusal, refusing level and quota index of `error`, which must be a refusal.
pub(crate) fn refusal(error: BudgetError) -> (Rejected, usize, usize) {
    let BudgetError::Refused {
        rejected,
        level,
        quota,
    } = error
    else {
        panic!("not a refusal: {error:?}")
    };
    (rejected, level, quota)
}
