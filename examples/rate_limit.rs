//! A per-user budget of requests per minute and tokens per minute in front of a model
//! service, with a premium tenant on a larger token quota; then token and money budgets
//! that settle: each call reserves its estimate on its key and its team, and is charged
//! what it actually used.
//!
//! `cargo run --example rate_limit`

use backstop::core::{Service, ServiceExt, Stack, service_fn};
use backstop::limit::{
    BudgetError, BudgetPeriod, BudgetPlan, BudgetQuota, Budgets, CostTable, KeyedMultiRateLimiter,
    ModelPrice, Quota, RateLimitLayer, TokenUsage,
};
use std::convert::Infallible;
use std::sync::Arc;

struct Completion {
    user: &'static str,
    tokens: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // Per user: 3 requests per minute AND 2,000 tokens per minute, charged together.
    let quotas = |requests, tokens| -> Vec<Quota> {
        vec![
            Quota::per_minute(requests).expect("quota"),
            Quota::per_minute(tokens).expect("quota"),
        ]
    };
    let budgets = Arc::new(KeyedMultiRateLimiter::new(quotas(3, 2_000)).expect("quotas"));
    budgets
        .set_quotas("acme-premium", quotas(3, 50_000))
        .expect("same shape as the default");

    let model = service_fn(|c: Completion| async move { Ok::<_, Infallible>(c.tokens) }).lift();
    // One check charges the request slot and the tokens, or neither: a call refused for
    // its tokens keeps the user's request slot, and the refusal is one typed error with
    // `retry_after`.
    let budget = RateLimitLayer::new(budgets.clone())
        .key(|c: &Completion| c.user)
        .cost(|c: &Completion| [1, c.tokens]);
    let service = Stack::new().layer(budget).service(model);

    let calls = [
        ("ann", 900),
        ("ann", 900),
        ("ann", 900), // over her tokens: refused, her third request slot kept
        ("ann", 100), // so this one still fits both budgets
        ("acme-premium", 20_000),
        ("bob", 100),
        ("bob", 100),
        ("bob", 100),
        ("bob", 100),
    ];
    for (user, tokens) in calls {
        match service.call(Completion { user, tokens }).await {
            Ok(spent) => println!("{user:>12}: admitted, {spent} tokens"),
            Err(refused) => match refused.retry_after() {
                Some(wait) => println!("{user:>12}: 429, Retry-After {:.1}s", wait.as_secs_f64()),
                None => println!("{user:>12}: refused for good: {refused}"),
            },
        }
    }
    println!("{:?}", budgets.stats());
    team_budget();
}

/// Reserve → settle: a call holds the prompt's tokens plus `max_tokens` (priced) on its
/// key and its team until it ends, then is charged what the provider reported.
fn team_budget() {
    let plan = BudgetPlan::builder()
        .level(
            "key",
            [BudgetQuota::tokens(20_000, BudgetPeriod::minute()).expect("quota")],
        )
        // Fifteen cents a day per team, reset at midnight UTC.
        .level(
            "team",
            [BudgetQuota::spend(150_000, BudgetPeriod::Day).expect("quota")],
        )
        .costs(
            CostTable::new()
                .with("gpt-4o", ModelPrice::per_million(2_500_000, 10_000_000))
                .expect("price"),
        )
        .build()
        .expect("plan");
    let budgets = Budgets::new(plan);

    // (user, prompt tokens, max_tokens, tokens the provider actually returned)
    let calls = [
        ("ann", 1_000, 8_000, 700),
        ("bob", 1_000, 8_000, 8_000),
        ("cat", 1_000, 8_000, 300),
        ("ann", 2_000, 4_000, 1_200),
    ];
    for (user, prompt, max_tokens, output) in calls {
        let path = [user, "ml-team"];
        match budgets.reserve(&path, "gpt-4o", TokenUsage::new(prompt, max_tokens)) {
            Ok(held) => {
                let spent = held.settle_usage(TokenUsage::new(prompt, output));
                println!(
                    "{user:>12}: charged {} tokens, ${:.4}; refunded ${:.4}",
                    spent.charged.tokens,
                    spent.charged.spend as f64 / 1e6,
                    spent.refunded.spend as f64 / 1e6,
                );
            }
            Err(BudgetError::Refused {
                level, rejected, ..
            }) => {
                let wait = rejected.retry_after.unwrap_or_default().as_secs();
                let level = budgets.plan().level_names().nth(level).unwrap_or("?");
                println!("{user:>12}: 429, the {level} budget is spent; Retry-After {wait}s");
            }
            Err(other) => println!("{user:>12}: refused: {other}"),
        }
    }
    if let Some(team) = budgets.spend("team", "ml-team") {
        println!(
            "ml-team spent ${:.4} today over {} calls",
            team.totals.spend as f64 / 1e6,
            team.totals.requests
        );
    }
}
