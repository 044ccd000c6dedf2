//! What a reserve → settle round costs next to the all-or-none check it builds on.
//!
//! `cargo bench -p backstop --bench budget`
//!
//! - group `limit_reserve_settle`: one key, two quotas (requests and tokens), in process.
//!   `check_costs` is `KeyedMultiRateLimiter::check_key_costs(key, &[1, tokens])`, one
//!   all-or-none charge; `reserve_settle` is `Budgets::reserve_charges` on the same shape
//!   followed by `settle` with a smaller actual usage (two decisions: the reservation and
//!   the exact refund). Target: `reserve_settle` at most 2× `check_costs`.
//! - group `limit_redis_reserve_settle` (needs `REDIS_URL`): the same on Redis on
//!   loopback; `check_costs` is `RedisRateLimiter::check_key_costs` (one GCRA script round
//!   trip), `reserve_settle` is `RedisBudgets::reserve_charges` + `settle` (two script
//!   round trips). Target: at most 2.2×. Without `REDIS_URL` the group prints a skip line.
//!
//! Every quota is far above what a run spends, so every call is admitted and the figures
//! are the decisions alone; both sides read the quanta clock.

mod redis_support;

use std::hint::black_box;
use std::time::Duration;

use backstop::core::QuantaClock;
use backstop::limit::{
    BudgetPeriod, BudgetPlan, BudgetQuota, Budgets, Charges, KeyedMultiRateLimiter, Quota,
    RedisBudgets, RedisRateLimiter,
};
use criterion::{Criterion, criterion_group, criterion_main};
use redis_support::redis_client;

/// Cells per second for the GCRA side, as `benches/limit.rs`: every check is admitted.
const RATE: u64 = 1_000_000_000;

fn quotas() -> Vec<Quota> {
    vec![
        Quota::per_second(RATE).expect("valid quota"),
        Quota::per_second(RATE).expect("valid quota"),
    ]
}

fn plan() -> BudgetPlan {
    // Limits far above what a minute of calls spends: every call is admitted.
    let window = BudgetPeriod::minute();
    BudgetPlan::builder()
        .level(
            "key",
            [
                BudgetQuota::requests(BudgetQuota::MAX_LIMIT, window).expect("valid quota"),
                BudgetQuota::tokens(BudgetQuota::MAX_LIMIT, window).expect("valid quota"),
            ],
        )
        .build()
        .expect("valid plan")
}

fn limit_reserve_settle(c: &mut Criterion) {
    let mut group = c.benchmark_group("limit_reserve_settle");
    let limiter = KeyedMultiRateLimiter::with_clock(quotas(), QuantaClock::new()).expect("quotas");
    let key = "user-42".to_string();
    group.bench_function("check_costs", |b| {
        b.iter(|| black_box(limiter.check_key_costs(&key, &[1, 1_000]).is_ok()))
    });
    let budgets = Budgets::with_clock(plan(), QuantaClock::new(), std::time::SystemTime::now());
    let path = ["user-42"];
    group.bench_function("reserve_settle", |b| {
        b.iter(|| {
            let held = budgets
                .reserve_charges(&path, Charges::new(1, 1_000, 0))
                .expect("admitted");
            black_box(held.settle(Charges::new(1, 400, 0)))
        })
    });
    group.finish();
}

fn limit_redis_reserve_settle(c: &mut Criterion) {
    let Some((client, rt)) = redis_client("limit_redis_reserve_settle") else {
        return;
    };
    let prefix = format!("bench:budget:{}", std::process::id());
    let limiter = RedisRateLimiter::new(client.clone(), &prefix, &quotas())
        .expect("valid quotas")
        .with_timeout(Duration::from_secs(1));
    let budgets = RedisBudgets::new(client, &format!("{prefix}:b"), plan())
        .expect("valid plan")
        .with_timeout(Duration::from_secs(1))
        .expect("valid timeout");
    let mut group = c.benchmark_group("limit_redis_reserve_settle");
    group.bench_function("check_costs", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(
                limiter
                    .check_key_costs("user-42", &[1, 1_000])
                    .await
                    .expect("redis answers")
                    .admitted,
            )
        })
    });
    group.bench_function("reserve_settle", |b| {
        b.to_async(&rt).iter(|| async {
            let held = budgets
                .reserve_charges(&["user-42"], Charges::new(1, 1_000, 0))
                .await
                .expect("admitted");
            black_box(held.settle(Charges::new(1, 400, 0)).await.expect("settled"))
        })
    });
    group.finish();
}

criterion_group!(benches, limit_reserve_settle, limit_redis_reserve_settle);
criterion_main!(benches);
