//! A per-user budget of requests per minute and tokens per minute in front of a model
//! service, with a premium tenant on a larger token quota.
//!
//! `cargo run --example rate_limit`

use backstop::core::{Service, Stack, service_fn};
use backstop::limit::{KeyedRateLimiter, Quota, RateLimitLayer};
use std::convert::Infallible;
use std::sync::Arc;

struct Completion {
    user: &'static str,
    tokens: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let rpm = Arc::new(KeyedRateLimiter::new(Quota::per_minute(3).expect("quota")));
    let tpm = Arc::new(KeyedRateLimiter::new(
        Quota::per_minute(2_000).expect("quota"),
    ));
    tpm.set_quota("acme-premium", Quota::per_minute(50_000).expect("quota"));

    let model = service_fn(|c: Completion| async move { Ok::<_, Infallible>(c.tokens) });
    // One layer checks both budgets so a refusal surfaces as one typed error with
    // `retry_after`. The token budget is checked first: it refuses more often, and a
    // refusal there then costs the user no request slot.
    let (r, t) = (rpm.clone(), tpm.clone());
    let budget = RateLimitLayer::from_fn(move |c: &Completion| {
        t.check_key_n(&c.user, c.tokens)?;
        r.check_key(&c.user)
    });
    let service = Stack::new().layer(budget).service(model);

    let calls = [
        ("ann", 900),
        ("ann", 900),
        ("ann", 900),
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
    println!("requests: {:?}", rpm.stats());
    println!("tokens:   {:?}", tpm.stats());
}
