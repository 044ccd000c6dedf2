//! Budgets in Redis against a real server (`REDIS_URL`; skipped without it, a failure under
//! `CI`): exact reserve/settle, levels all or none, debt, settlement applied exactly once
//! through cancellation, panics and retries, and what an outage between reserve and
//! settle loses.
#![cfg(feature = "redis")]

use backstop_core::RejectKind;
use backstop_limit::{
    BudgetError, BudgetPeriod, BudgetPlan, BudgetQuota, Charges, DropRule, RedisBudgets,
    SettleRetry, TimeSource, TokenUsage,
};
use backstop_testkit::RedisTestContext;
use backstop_testkit::assert_fields;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

mod budget_plan;
mod common;

fn plan(on_drop: DropRule) -> BudgetPlan {
    budget_plan::three_levels(BudgetPeriod::hour(), 100, 1_000_000, on_drop)
}

fn budgets(redis: &RedisTestContext, on_drop: DropRule) -> RedisBudgets {
    RedisBudgets::new(redis.client().clone(), redis.prefix(), plan(on_drop))
        .unwrap()
        .with_timeout(Duration::from_secs(2))
        .unwrap()
}

async fn totals(b: &RedisBudgets, level: &str, id: &str) -> Charges {
    b.spend("acme", level, id)
        .await
        .unwrap()
        .map_or(Charges::ZERO, |s| s.totals)
}

async fn used(b: &RedisBudgets, level: &str, id: &str, quota: &str) -> u64 {
    b.spend("acme", level, id)
        .await
        .unwrap()
        .and_then(|s| s.quota(quota).map(|q| q.used))
        .unwrap_or(0)
}

/// A key's tokens in its balance and its totals: the two must move together.
async fn key_tokens_and_totals(b: &RedisBudgets, key: &str) -> (u64, Charges) {
    (
        used(b, "key", key, "tokens").await,
        totals(b, "key", key).await,
    )
}

#[tokio::test]
async fn reserve_and_settle_are_exact_and_all_or_none_across_levels() {
    common::on_redis("budget_exact", async |redis| {
        let b = budgets(redis, DropRule::ChargeEstimate);
        let ann = ["ann", "ml", "acme"];
        let held = b
            .reserve(&ann, "m", TokenUsage::new(400, 400))
            .await
            .unwrap();
        budget_plan::assert_quota_states(held.quota_states(), [99, 200, 700, 988_000]);
        // Bob's key has room; the team does not: refused at level 1, nothing charged.
        let refused = b
            .reserve(&["bob", "ml", "acme"], "m", TokenUsage::new(400, 400))
            .await
            .unwrap_err();
        let (rejected, level, quota) = budget_plan::refusal(refused);
        assert_eq!(
            (level, quota, rejected.kind),
            (1, 0, RejectKind::RateLimited { quota: 2 })
        );
        assert!(rejected.retry_after.unwrap() <= Duration::from_secs(86_400));
        assert_eq!(totals(&b, "key", "bob").await, Charges::ZERO);
        // Settled at 500 tokens: 300 come back to the key and the team, exactly.
        let s = held.settle_usage(TokenUsage::new(400, 100)).await.unwrap();
        assert_eq!(s.charged, Charges::new(1, 500, 6_000));
        assert_eq!(s.refunded, Charges::new(0, 300, 6_000));
        assert_eq!(used(&b, "key", "ann", "tokens").await, 500);
        assert_eq!(used(&b, "team", "ml", "tokens").await, 500);
        assert_eq!(used(&b, "org", "acme", "spend").await, 6_000);
        assert_eq!(totals(&b, "org", "acme").await, Charges::new(1, 500, 6_000));
        // An overrun is charged past the key's limit: debt refuses its next calls.
        let held = b.reserve(&ann, "m", TokenUsage::new(10, 10)).await.unwrap();
        let s = held.settle_usage(TokenUsage::new(10, 690)).await.unwrap();
        assert_eq!(s.overrun.tokens, 680);
        assert_eq!(used(&b, "key", "ann", "tokens").await, 1_200);
        let in_debt = b.reserve_charges(&ann, Charges::ZERO).await.unwrap_err();
        assert!(matches!(
            in_debt,
            BudgetError::Refused {
                level: 0,
                quota: 1,
                ..
            }
        ));
        assert_fields!(b.stats(), reserved: 2, settled: 2, refused: 2);
        // Every entry expires after the path's longest current period (the org's month) plus
        // the reservation TTL (an hour).
        let mut conn = redis.connection().await;
        for (level, id) in ann.iter().enumerate() {
            let ttl: i64 = redis::cmd("PTTL")
                .arg(b.redis_key("acme", level, id))
                .query_async(&mut conn)
                .await
                .unwrap();
            assert!(
                (3_600_000..=(31 * 24 + 1) * 3_600_000).contains(&ttl),
                "{id}: {ttl}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn an_override_holds_one_id_until_it_is_removed() {
    common::on_redis("budget_override", async |redis| {
        let b = budgets(redis, DropRule::ChargeEstimate);
        let ann = ["ann", "ml", "acme"];
        let tokens = |n| Charges::new(1, n, 0);
        b.set_override(
            "team",
            "ml",
            vec![BudgetQuota::tokens(300, BudgetPeriod::Day).unwrap()],
        )
        .unwrap();
        let too_large = b.reserve_charges(&ann, tokens(400)).await.unwrap_err();
        assert!(
            matches!(
                too_large,
                BudgetError::TooLarge {
                    level: 1,
                    cost: 400,
                    limit: 300,
                    ..
                }
            ),
            "{too_large:?}"
        );
        let held = b.reserve_charges(&ann, tokens(200)).await.unwrap();
        held.settle(tokens(200)).await.unwrap();
        let refused = b.reserve_charges(&ann, tokens(200)).await.unwrap_err();
        assert!(
            matches!(refused, BudgetError::Refused { level: 1, .. }),
            "{refused:?}"
        );
        // Back on the level's 1,500 tokens a day, the 200 used carried over.
        b.remove_override("team", "ml").unwrap();
        let held = b.reserve_charges(&ann, tokens(400)).await.unwrap();
        let team = &held.quota_states()[2];
        assert_eq!(
            (&*team.name, team.limit, team.remaining),
            ("team-tokens", 1_500, 900)
        );
        held.settle(tokens(400)).await.unwrap();
        assert_eq!(used(&b, "team", "ml", "tokens").await, 600);
        assert!(b.remove_override("nope", "ml").is_err());
    })
    .await;
}

#[tokio::test]
async fn on_the_clients_clock_settlement_is_as_exact() {
    common::on_redis("budget_client_time", async |redis| {
        let b = budgets(redis, DropRule::ChargeEstimate)
            .with_time_source(TimeSource::Client)
            .unwrap();
        let ann = ["ann", "ml", "acme"];
        let held = b
            .reserve(&ann, "m", TokenUsage::new(400, 400))
            .await
            .unwrap();
        held.settle_usage(TokenUsage::new(400, 100)).await.unwrap();
        assert_eq!(used(&b, "key", "ann", "tokens").await, 500);
        assert_eq!(used(&b, "org", "acme", "spend").await, 6_000);
        assert_eq!(totals(&b, "team", "ml").await, Charges::new(1, 500, 6_000));
    })
    .await;
}

/// Polls a future at most `n` times, then drops it: cancellation at its `n`-th await.
struct PollAtMost<F> {
    inner: Pin<Box<F>>,
    left: usize,
}

impl<F: Future> Future for PollAtMost<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        self.left -= 1;
        match self.inner.as_mut().poll(cx) {
            Poll::Ready(value) => Poll::Ready(Some(value)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Polls `future` at most `polls` times, then drops it.
fn poll_at_most<F>(future: F, polls: usize) -> PollAtMost<F> {
    PollAtMost {
        inner: Box::pin(future),
        left: polls,
    }
}

#[tokio::test]
async fn a_settlement_cancelled_at_every_await_is_applied_exactly_once() {
    common::on_redis("budget_cancel_settle", async |redis| {
        for rule in [DropRule::RefundAll, DropRule::ChargeEstimate] {
            let b = budgets(redis, rule);
            let mut completed_at = None;
            for polls in 0..12usize {
                let key = format!("settle-{rule:?}-{polls}");
                let path = [key.as_str(), "t", "acme"];
                let held = b
                    .reserve_charges(&path, Charges::new(1, 100, 0))
                    .await
                    .unwrap();
                let outcome = poll_at_most(held.settle(Charges::new(1, 30, 0)), polls).await;
                b.flush().await;
                let (tokens, charged) = key_tokens_and_totals(&b, &key).await;
                let rule_amount = match rule {
                    DropRule::RefundAll => Charges::ZERO,
                    _ => Charges::new(1, 100, 0),
                };
                match outcome {
                    Some(result) => {
                        result.unwrap();
                        assert_eq!(
                            charged,
                            Charges::new(1, 30, 0),
                            "{rule:?} after {polls} polls"
                        );
                        completed_at.get_or_insert(polls);
                    }
                    // Cancelled: either the settlement reached Redis first, or the drop rule
                    // applied; never both, never neither.
                    None => assert!(
                        charged == Charges::new(1, 30, 0) || charged == rule_amount,
                        "{rule:?} cancelled after {polls} polls: {charged:?}"
                    ),
                }
                assert_eq!(tokens, charged.tokens, "the balance moved with the totals");
            }
            assert!(
                completed_at.is_some(),
                "some poll budget lets the settlement finish"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn a_reservation_cancelled_at_every_await_leaves_nothing_held() {
    common::on_redis("budget_cancel_reserve", async |redis| {
        let b = budgets(redis, DropRule::RefundAll);
        for polls in 0..12usize {
            let key = format!("reserve-{polls}");
            let path = [key.as_str(), "t", "acme"];
            let outcome =
                poll_at_most(b.reserve_charges(&path, Charges::new(1, 100, 0)), polls).await;
            if let Some(held) = outcome {
                drop(held.unwrap());
            }
            b.flush().await;
            // Whether the script ran or not, RefundAll leaves the key as it was.
            assert_eq!(
                key_tokens_and_totals(&b, &key).await,
                (0, Charges::ZERO),
                "after {polls} polls"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn a_panicking_caller_between_reserve_and_settle_applies_the_rule_once() {
    common::on_redis("budget_panic", async |redis| {
        for (rule, expected) in [(DropRule::RefundAll, 0), (DropRule::ChargeEstimate, 100)] {
            let b = budgets(redis, rule);
            let key = format!("panic-{rule:?}");
            let task = {
                let (b, key) = (b.clone(), key.clone());
                tokio::spawn(async move {
                    let _held = b
                        .reserve_charges(&[&key, "t", "acme"], Charges::new(1, 100, 0))
                        .await
                        .unwrap();
                    panic!("the caller fails mid-call");
                })
            };
            assert!(task.await.unwrap_err().is_panic());
            b.flush().await;
            assert_eq!(totals(&b, "key", &key).await.tokens, expected, "{rule:?}");
            assert_fields!(b.stats(), dropped: 1, settled: 1, already_settled: 0);
        }
    })
    .await;
}

/// A TCP proxy to the test server that can be cut (every connection closed, new ones
/// refused) and restored: Redis going down and coming back, seen from the client.
struct Proxy {
    url: String,
    up: Arc<AtomicBool>,
}

impl Proxy {
    async fn start(target: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis://{}", listener.local_addr().unwrap());
        let up = Arc::new(AtomicBool::new(true));
        let (target, flag) = (target.to_string(), up.clone());
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if !flag.load(Ordering::SeqCst) {
                    continue; // dropped: refused
                }
                let (target, flag) = (target.clone(), flag.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let cut = async {
                        while flag.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    };
                    tokio::select! {
                        () = pump(cr, sw) => {}
                        () = pump(sr, cw) => {}
                        () = cut => {}
                    }
                });
            }
        });
        Self { url, up }
    }

    /// Cuts or restores the link; a cut has closed every open connection on return.
    async fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

/// Copies bytes from `from` to `to` until either side closes (tokio's `io-util` is not a
/// dependency here).
async fn pump(from: OwnedReadHalf, to: OwnedWriteHalf) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if from.readable().await.is_err() {
            return;
        }
        let n = match from.try_read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return,
        };
        let mut sent = 0;
        while sent < n {
            if to.writable().await.is_err() {
                return;
            }
            match to.try_write(&buf[sent..n]) {
                Ok(k) => sent += k,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    }
}

fn host_port(url: &str) -> String {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let rest = rest.rsplit('@').next().unwrap_or(rest);
    rest.split('/').next().unwrap_or(rest).to_string()
}

#[tokio::test]
async fn redis_down_between_reserve_and_settle_retries_then_loses_only_the_difference() {
    common::on_redis("budget_outage", async |redis| {
        if redis.url().starts_with("rediss") || redis.url().contains('@') {
            eprintln!("skipped: the outage proxy speaks plain TCP without credentials");
            return;
        }
        let proxy = Proxy::start(&host_port(redis.url())).await;
        let direct = budgets(redis, DropRule::ChargeEstimate);
        // The same budgets as `direct`, reached through the proxy, retrying a settlement
        // `attempts` times in all.
        let via_proxy = |attempts| {
            RedisBudgets::new(
                redis::Client::open(proxy.url.as_str()).unwrap(),
                redis.prefix(),
                plan(DropRule::ChargeEstimate),
            )
            .unwrap()
            .with_timeout(Duration::from_millis(300))
            .unwrap()
            .with_settle_retry(SettleRetry {
                attempts,
                backoff: Duration::from_millis(20),
            })
            .unwrap()
        };

        // Down for good: three attempts, then the settlement is logged and counted as lost.
        let through = via_proxy(3);
        let held = through
            .reserve_charges(&["lost", "t", "acme"], Charges::new(1, 400, 0))
            .await
            .unwrap();
        proxy.set_up(false).await;
        let error = held.settle(Charges::new(1, 100, 0)).await.unwrap_err();
        assert!(matches!(error, BudgetError::Unavailable(_)), "{error:?}");
        let stats = through.stats();
        assert_fields!(stats, settle_retries: 2, settlements_lost: 1, settled: 0);
        // What is lost: the refund of 300 tokens. The estimate stays charged for the period,
        // and the totals count the estimate, not the 100 tokens used.
        assert_eq!(
            key_tokens_and_totals(&direct, "lost").await,
            (400, Charges::new(1, 400, 0))
        );
        // While down, a reservation fails closed by default.
        let refused = through
            .reserve_charges(&["other", "t", "acme"], Charges::new(1, 1, 0))
            .await
            .unwrap_err();
        assert!(matches!(refused, BudgetError::Unavailable(_)));
        assert_eq!(refused.rejection().kind, RejectKind::Unavailable);

        // Down briefly: a retry reaches Redis once it is back, and the settlement is exact.
        proxy.set_up(true).await;
        let through = via_proxy(50);
        let held = through
            .reserve_charges(&["retried", "t", "acme"], Charges::new(1, 400, 0))
            .await
            .unwrap();
        proxy.set_up(false).await;
        let settle = tokio::spawn(held.settle(Charges::new(1, 100, 0)));
        tokio::time::sleep(Duration::from_millis(200)).await;
        proxy.set_up(true).await;
        settle.await.unwrap().unwrap();
        assert!(through.stats().settle_retries >= 1);
        assert_eq!(
            key_tokens_and_totals(&direct, "retried").await,
            (100, Charges::new(1, 100, 0))
        );
    })
    .await;
}
