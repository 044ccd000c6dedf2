//! Budget awareness: three keys with different token budgets under load. A router that
//! knows each key's budget sends no request a key cannot take (no provider 429 while the
//! total budget remains); round-robin over the same keys gets many.

mod common;

use backstop_core::{Error, TokioClock};
use backstop_limit::{Quota, RateLimiter};
use backstop_route::{RouteConfig, RouteHints, Router, TargetConfig};
use common::*;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

const BUDGETS: [u64; 3] = [60_000, 30_000, 10_000];
const TOKENS: u64 = 1_000;

/// The provider's side: each key's real token budget per minute, which answers 429 when
/// exceeded.
struct Provider {
    keys: Vec<RateLimiter<TokioClock>>,
    too_many: AtomicU64,
    served: AtomicU64,
}

impl Provider {
    fn new() -> Self {
        Self {
            keys: BUDGETS
                .iter()
                .map(|&b| RateLimiter::with_clock(Quota::per_minute(b).unwrap(), TokioClock))
                .collect(),
            too_many: AtomicU64::new(0),
            served: AtomicU64::new(0),
        }
    }

    async fn serve(&self, key: usize) -> Result<(), Error<Status>> {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if self.keys[key].check_n(TOKENS).is_ok() {
            self.served.fetch_add(1, Ordering::Relaxed);
            Ok(())
        } else {
            self.too_many.fetch_add(1, Ordering::Relaxed);
            Err(too_many(Some(Duration::from_secs(10))))
        }
    }
}

/// 80 requests of 1,000 tokens per minute for five minutes: 80 % of the keys' total budget.
async fn load(mut send: impl AsyncFnMut()) {
    let gap = Duration::from_millis(750);
    for _ in 0..400 {
        send().await;
        tokio::time::sleep(gap).await;
    }
}

fn router() -> Router {
    RouteConfig {
        targets: BUDGETS
            .iter()
            .enumerate()
            .map(|(i, &budget)| TargetConfig {
                key: format!("key-{i}"),
                tokens_per_minute: Some(budget),
                ..TargetConfig::named(format!("key-{i}"))
            })
            .collect(),
        ..RouteConfig::default()
    }
    .build()
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn no_429_while_the_total_budget_remains_where_round_robin_gets_many() {
    let provider = Provider::new();
    let router = router();
    let refused = AtomicU64::new(0);
    load(async || {
        let answer = router
            .run(&RouteHints::new().tokens(TOKENS), &classify, |target| {
                provider.serve(target.index())
            })
            .await;
        if answer.is_err() {
            refused.fetch_add(1, Ordering::Relaxed);
        }
    })
    .await;
    assert_eq!(
        provider.too_many.load(Ordering::Relaxed),
        0,
        "no provider 429"
    );
    assert_eq!(refused.load(Ordering::Relaxed), 0, "every request served");
    assert_eq!(provider.served.load(Ordering::Relaxed), 400);
    let stats = router.stats();
    // The small key is used, just less.
    assert!(stats.targets[2].chosen > 0);
    assert!(stats.targets[0].chosen > stats.targets[2].chosen);

    let provider = Provider::new();
    let next = AtomicUsize::new(0);
    load(async || {
        let key = next.fetch_add(1, Ordering::Relaxed) % BUDGETS.len();
        let _ = provider.serve(key).await;
    })
    .await;
    let round_robin_429s = provider.too_many.load(Ordering::Relaxed);
    assert!(
        round_robin_429s > 50,
        "round-robin got {round_robin_429s} 429s"
    );
}

#[tokio::test(start_paused = true)]
async fn a_nearly_spent_key_is_chosen_less() {
    let router = RouteConfig {
        targets: (0..3)
            .map(|i| TargetConfig {
                tokens_per_minute: Some(60_000),
                ..TargetConfig::named(format!("key-{i}"))
            })
            .collect(),
        ..RouteConfig::default()
    }
    .build()
    .unwrap();
    // A sticky key that lands on key-0 spends 90 % of its budget.
    let on_key_0 = (0u32..)
        .map(|k| RouteHints::new().tokens(TOKENS).sticky(k))
        .find(|hints| router.pick(hints).unwrap().index() == 0)
        .unwrap();
    for _ in 0..54 {
        router
            .run(&on_key_0, &classify, |target| {
                assert_eq!(target.index(), 0);
                async { Ok::<_, Error<Status>>(()) }
            })
            .await
            .unwrap();
    }
    let mut picks = [0u32; 3];
    for _ in 0..3_000 {
        picks[router.pick(&RouteHints::new().tokens(1)).unwrap().index()] += 1;
    }
    // Headroom 10 % against 100 %: key-0 is drawn about a twentieth as often.
    assert!(picks[0] * 5 < picks[1].min(picks[2]), "{picks:?}");
    assert!(picks[0] > 0, "nearly spent is not skipped: {picks:?}");
}

#[tokio::test(start_paused = true)]
async fn a_spent_budget_is_a_rate_limit_refusal_with_the_time_until_room() {
    let router = RouteConfig {
        targets: vec![TargetConfig {
            tokens_per_minute: Some(6_000), // 100 tokens a second
            ..TargetConfig::named("small-key")
        }],
        ..RouteConfig::default()
    }
    .build()
    .unwrap();
    let call = async |tokens| {
        let hints = RouteHints::new().tokens(tokens);
        router
            .run(&hints, &classify, |_| async { Ok::<_, Error<Status>>(()) })
            .await
    };
    call(6_000).await.unwrap();
    let refused = call(3_000).await.unwrap_err();
    let refusal = refused.rejection().expect("refused without a call");
    assert_eq!(
        refusal.kind,
        backstop_core::RejectKind::RateLimited { quota: 0 }
    );
    assert_eq!(refusal.retry_after, Some(Duration::from_secs(30)));
    let stats = router.stats();
    assert_eq!(
        (stats.targets[0].chosen, stats.targets[0].skipped_no_budget),
        (1, 1)
    );
    assert_eq!(stats.all_cooling_refusals, 1);
    tokio::time::advance(Duration::from_secs(30)).await;
    call(3_000).await.unwrap();
}

/// What `target`'s provider reported of its quota `name` (a one-minute window): `limit`,
/// `remaining`, resetting in `reset_secs`.
fn report(router: &Router, target: &str, name: &str, limit: u64, remaining: u64, reset_secs: u64) {
    let target = router.target(target).unwrap().clone();
    router.observe_quotas(
        &target,
        &[backstop_core::QuotaState::new(
            name,
            limit,
            remaining,
            Duration::from_secs(reset_secs),
            Duration::from_secs(60),
        )],
    );
}

#[tokio::test(start_paused = true)]
async fn a_provider_report_is_spent_locally_and_holds_until_its_reset() {
    let router = common::router(vec![target("shared", 0), target("backup", 1)]);
    report(
        &router,
        "shared",
        "x-ratelimit-remaining-Tokens",
        90_000,
        2_500,
        12,
    );
    let mut went = Vec::new();
    for _ in 0..3 {
        let name = chosen(&router, &RouteHints::new().tokens(TOKENS))
            .await
            .unwrap();
        went.push(name);
    }
    assert_eq!(
        went,
        ["shared", "shared", "backup"],
        "2,500 reported: room for two"
    );
    tokio::time::advance(Duration::from_secs(12)).await;
    assert_eq!(
        router
            .pick(&RouteHints::new().tokens(TOKENS))
            .unwrap()
            .name(),
        "shared"
    );
}

#[tokio::test(start_paused = true)]
async fn a_report_without_room_is_a_refusal_until_its_reset() {
    let router = common::router(vec![target("only", 0)]);
    report(&router, "only", "requests", 500, 0, 7);
    let refused = router
        .run(&RouteHints::new(), &classify, |_| async {
            Ok::<_, Error<Status>>(())
        })
        .await
        .unwrap_err();
    let refusal = refused.rejection().unwrap();
    assert_eq!(
        refusal.kind,
        backstop_core::RejectKind::RateLimited { quota: 0 }
    );
    assert_eq!(refusal.retry_after, Some(Duration::from_secs(7)));
    assert_eq!(router.stats().targets[0].chosen, 0);
}

#[tokio::test(start_paused = true)]
async fn an_absurd_token_cost_is_a_typed_refusal_not_a_panic() {
    let router = RouteConfig {
        targets: vec![TargetConfig {
            tokens_per_minute: Some(10_000),
            context_window: Some(128_000),
            ..TargetConfig::named("key")
        }],
        ..RouteConfig::default()
    }
    .build()
    .unwrap();
    let hints = RouteHints::new().tokens(u64::MAX);
    let refused = router
        .run(&hints, &classify, |_| async { Ok::<_, Error<Status>>(()) })
        .await
        .unwrap_err();
    let refusal = refused.rejection().unwrap();
    assert_eq!(refusal.kind, backstop_core::RejectKind::Unavailable);
    assert_eq!(refusal.retry_after, None, "no wait would ever help");
    assert!(router.readiness().is_ok(), "smaller requests still pass");
}
