//! A per-user budget of requests per minute and tokens per minute in front of a model
//! service, with a premium tenant on a larger token quota.
//!
//! `cargo run --example rate_limit`

use backstop::core::{Service, ServiceExt, Stack, service_fn};
use backstop::limit::{KeyedMultiRateLimiter, Quota, RateLimitLayer};
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
}
