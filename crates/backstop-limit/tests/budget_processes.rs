//! Four OS processes reserving and settling on one Redis for ~30 s (`BUDGET_SOAK_SECS`),
//! with random actual usage (under, at and over the estimate) and random drops: the total
//! charged per key, team and organisation equals the sum of what the processes used,
//! exactly, and no quota ever held more than its limit plus one call's largest overrun per
//! call in flight at once (the bound: after the last admission, use grows only by the
//! overruns of calls then in flight).
//!
//! The test binary re-runs itself (`std::env::current_exe()`) as the workers, marked by
//! `BUDGET_WORKER`; `REDIS_URL` is required (skipped without it, a failure under `CI`).
#![cfg(feature = "redis")]

use backstop_limit::{BudgetPeriod, BudgetPlan, BudgetQuota, Charges, DropRule, RedisBudgets};
use backstop_testkit::RedisTestContext;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PROCESSES: usize = 4;
const TASKS: usize = 6;
const KEYS: usize = 6;
const MAX_OVERRUN: u64 = 40;
const KEY_LIMIT: u64 = 3_000;
const TEAM_LIMIT: u64 = 6_000;
const ORG_LIMIT: u64 = 9_000;

fn plan() -> BudgetPlan {
    BudgetPlan::builder()
        .level(
            "key",
            [
                BudgetQuota::tokens(KEY_LIMIT, BudgetPeriod::Every(Duration::from_secs(1)))
                    .unwrap(),
            ],
        )
        .level(
            "team",
            [
                BudgetQuota::tokens(TEAM_LIMIT, BudgetPeriod::Every(Duration::from_secs(1)))
                    .unwrap(),
            ],
        )
        .level(
            "org",
            [
                BudgetQuota::tokens(ORG_LIMIT, BudgetPeriod::Every(Duration::from_secs(1)))
                    .unwrap(),
            ],
        )
        .on_drop(DropRule::ChargeEstimate)
        .build()
        .unwrap()
}

/// Key `k` is in team `k % 3`; every team is in organisation `org`.
fn path(key: usize) -> [String; 3] {
    [
        format!("k{key}"),
        format!("t{}", key % 3),
        "org".to_string(),
    ]
}

fn budgets(url: &str, prefix: &str) -> RedisBudgets {
    RedisBudgets::new(redis::Client::open(url).unwrap(), prefix, plan())
        .unwrap()
        .with_timeout(Duration::from_secs(5))
        .unwrap()
}

/// One worker process: `TASKS` concurrent tasks reserving and settling for the soak time;
/// prints what it charged per key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_worker() {
    let (Ok(url), Ok(prefix), Ok(secs)) = (
        std::env::var("REDIS_URL"),
        std::env::var("BUDGET_WORKER"),
        std::env::var("BUDGET_SOAK_SECS"),
    ) else {
        return; // Not a worker run: the parent test below starts the workers.
    };
    let b = budgets(&url, &prefix);
    let until = Instant::now() + Duration::from_secs(secs.parse().unwrap());
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let b = b.clone();
            tokio::spawn(async move {
                let mut rng = fastrand::Rng::new();
                let mut charged = [0u64; KEYS];
                let mut calls = 0u64;
                while Instant::now() < until {
                    let key = rng.usize(0..KEYS);
                    let ids = path(key);
                    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
                    let estimate = rng.u64(1..200);
                    let Ok(held) = b.reserve_charges(&refs, Charges::new(1, estimate, 0)).await
                    else {
                        tokio::time::sleep(Duration::from_millis(rng.u64(1..5))).await;
                        continue;
                    };
                    tokio::time::sleep(Duration::from_micros(rng.u64(0..2_000))).await;
                    if rng.u8(0..20) == 0 {
                        // Abandoned: the drop rule charges the estimate.
                        drop(held);
                        charged[key] += estimate;
                    } else {
                        let actual = rng.u64(0..estimate + MAX_OVERRUN);
                        held.settle(Charges::new(1, actual, 0)).await.unwrap();
                        charged[key] += actual;
                    }
                    calls += 1;
                }
                (charged, calls)
            })
        })
        .collect();
    let mut charged = [0u64; KEYS];
    let mut calls = 0;
    for task in tasks {
        let (mine, n) = task.await.unwrap();
        calls += n;
        for (total, c) in charged.iter_mut().zip(mine) {
            *total += c;
        }
    }
    b.flush().await;
    assert_eq!(b.stats().settlements_lost, 0);
    println!(
        "BUDGET_RESULT {} {}",
        calls,
        charged
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
}

async fn used(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
) -> (Option<u64>, Option<u64>) {
    redis::cmd("HMGET")
        .arg(key)
        .arg("p0")
        .arg("u0")
        .query_async(conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_charge_exactly_what_they_used() {
    let Some(redis) = RedisTestContext::from_env("budget_processes").await else {
        return;
    };
    let secs: u64 = std::env::var("BUDGET_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let prefix = redis.prefix().trim_end_matches(':').to_string();
    let b = budgets(redis.url(), &prefix);
    let workers: Vec<_> = (0..PROCESSES)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "budget_worker",
                    "--exact",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("BUDGET_WORKER", &prefix)
                .env("BUDGET_SOAK_SECS", secs.to_string())
                .env("REDIS_URL", redis.url())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap()
        })
        .collect();
    // While they run, sample every balance: never past limit + one overrun per call in
    // flight (all processes' tasks together).
    let bound = |limit: u64| limit + (PROCESSES * TASKS) as u64 * MAX_OVERRUN;
    let mut conn = redis.connection().await;
    let mut samples = 0;
    let mut peak_over = 0i64;
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        for key in 0..KEYS {
            let ids = path(key);
            for (level, limit) in [(0, KEY_LIMIT), (1, TEAM_LIMIT), (2, ORG_LIMIT)] {
                let (_, use_) = used(&mut conn, &b.redis_key("org", level, &ids[level])).await;
                let use_ = use_.unwrap_or(0);
                assert!(
                    use_ <= bound(limit),
                    "level {level} {} at {use_}, bound {}",
                    ids[level],
                    bound(limit)
                );
                peak_over = peak_over.max(use_ as i64 - limit as i64);
                samples += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut charged = [0u64; KEYS];
    let mut calls = 0u64;
    for worker in workers {
        let output = worker.wait_with_output().unwrap();
        assert!(output.status.success(), "a worker failed");
        let text = String::from_utf8(output.stdout).unwrap();
        let line = text
            .lines()
            .find_map(|l| l.split_once("BUDGET_RESULT ").map(|(_, r)| r))
            .unwrap_or_else(|| panic!("no result from a worker: {text}"));
        let (n, per_key) = line.split_once(' ').unwrap();
        calls += n.parse::<u64>().unwrap();
        for (total, c) in charged.iter_mut().zip(per_key.split(',')) {
            *total += c.parse::<u64>().unwrap();
        }
    }
    assert!(calls >= 50 * secs, "the soak made {calls} calls");
    // Exact totals at every level.
    let mut teams = BTreeMap::new();
    for (key, &c) in charged.iter().enumerate() {
        let ids = path(key);
        let spend = b.spend("org", "key", &ids[0]).await.unwrap().unwrap();
        assert_eq!(spend.totals.tokens, c, "key {}", ids[0]);
        *teams.entry(ids[1].clone()).or_insert(0) += c;
    }
    for (team, c) in &teams {
        assert_eq!(
            b.spend("org", "team", team)
                .await
                .unwrap()
                .unwrap()
                .totals
                .tokens,
            *c,
            "team {team}"
        );
    }
    let all: u64 = charged.iter().sum();
    assert_eq!(
        b.spend("org", "org", "org")
            .await
            .unwrap()
            .unwrap()
            .totals
            .tokens,
        all
    );
    eprintln!(
        "budget soak: {PROCESSES} processes x {TASKS} tasks, {secs}s, {calls} calls, {all} tokens charged exactly; {samples} samples, peak over a limit {peak_over} (bound {})",
        (PROCESSES * TASKS) as u64 * MAX_OVERRUN
    );
    redis.cleanup().await;
}
