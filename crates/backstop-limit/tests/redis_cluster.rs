//! The Redis limiter on the fleet's Redis Cluster (`REDIS_CLUSTER_NODES`, started by
//! `.ci/redis-fleet`): every key enforced whichever primary owns its slot, hostile keys,
//! and misconfiguration reported rather than hidden by the failure policy.
#![cfg(feature = "redis")]

use backstop_limit::{FailurePolicy, Quota, RedisRateLimiter};
use backstop_redis::{Misconfiguration, RedisConfig, RedisConnection};
use backstop_testkit::assert_fields;
use backstop_testkit::fleet;
use futures::StreamExt;
use std::collections::HashSet;
use std::time::Duration;

mod common;

const KEYS: usize = 1_000;
const BURST: u64 = 5;
const TRIES_PER_PROCESS: usize = 4;
const CHILD: &str = "BACKSTOP_LIMIT_FLEET_CHILD";

fn quota() -> Quota {
    Quota::per_hour(BURST).unwrap()
}

/// Three OS processes (this test binary, run again) hammer 1,000 keys spread over all
/// slots: each key admits exactly the GCRA bound (the burst) in total.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_admit_exactly_the_burst_per_key_over_every_slot() {
    let Some(_) = fleet::cluster() else { return };
    let prefix = fleet::unique("limit-procs");
    let slots: HashSet<u16> = (0..KEYS)
        .map(|i| backstop_redis::key::slot(format!("{prefix}:{{user-{i}}}:0").as_bytes()))
        .collect();
    assert!(slots.len() > 900, "the keys cover {} slots", slots.len());
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..3)
        .map(|_| {
            std::process::Command::new(&exe)
                .args([
                    "fleet_child_hammers_the_shared_budget",
                    "--exact",
                    "--nocapture",
                ])
                .env(CHILD, &prefix)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("the test binary runs again")
        })
        .collect();
    let mut admitted = vec![0u64; KEYS];
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "a child process failed");
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("admitted "))
            .expect("the child reports its admissions");
        for (i, n) in line.split(',').enumerate() {
            admitted[i] += n.parse::<u64>().unwrap();
        }
    }
    let wrong: Vec<(usize, u64)> = admitted
        .iter()
        .enumerate()
        .filter(|(_, n)| **n != BURST)
        .map(|(i, n)| (i, *n))
        .collect();
    assert!(wrong.is_empty(), "keys not at the bound {BURST}: {wrong:?}");
    println!(
        "cluster limiter: {KEYS} keys over {} slots, 3 processes x {TRIES_PER_PROCESS} tries, every key admitted exactly {BURST}",
        slots.len()
    );
}

/// The child side of the test above; does nothing unless run by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_child_hammers_the_shared_budget() {
    let Ok(prefix) = std::env::var(CHILD) else {
        return;
    };
    let config = fleet::cluster().expect("the parent had the cluster");
    let limiter =
        RedisRateLimiter::new(RedisConnection::new(&config).unwrap(), &prefix, &[quota()])
            .unwrap()
            .with_timeout(Duration::from_secs(5))
            .with_failure_policy(FailurePolicy::FailClosed);
    let tries = (0..KEYS).flat_map(|i| std::iter::repeat_n(i, TRIES_PER_PROCESS));
    let outcomes: Vec<(usize, bool)> = futures::stream::iter(tries)
        .map(|i| {
            let limiter = limiter.clone();
            async move {
                let decision = limiter.check_key(&format!("user-{i}")).await.unwrap();
                assert!(decision.from_redis);
                (i, decision.admitted)
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let mut admitted = vec![0u64; KEYS];
    for (i, allowed) in outcomes {
        admitted[i] += u64::from(allowed);
    }
    let line: Vec<String> = admitted.iter().map(u64::to_string).collect();
    println!("admitted {}", line.join(","));
}

#[tokio::test]
async fn braces_empty_and_binary_keys_each_get_their_own_exact_budget() {
    let Some(config) = fleet::cluster() else {
        return;
    };
    let limiter = RedisRateLimiter::new(
        RedisConnection::new(&config).unwrap(),
        &fleet::unique("limit-hostile"),
        &[quota(), Quota::per_minute(100).unwrap()],
    )
    .unwrap()
    .with_timeout(Duration::from_secs(2))
    .with_failure_policy(FailurePolicy::FailClosed);
    // "%" and "" escape differently, "a}b" and "a%7Db" too: no two share a budget.
    for key in [
        "",
        "%",
        "}",
        "{",
        "a}b",
        "a%7Db",
        "{user}",
        "\u{0}\u{7f}é",
        " ",
    ] {
        let mut admitted = 0;
        for _ in 0..BURST + 3 {
            let decision = limiter
                .check_key(key)
                .await
                .unwrap_or_else(|e| panic!("{key:?}: {e}"));
            assert!(decision.from_redis, "{key:?}");
            admitted += u64::from(decision.admitted);
        }
        assert_eq!(admitted, BURST, "{key:?}");
    }
}

#[tokio::test]
async fn a_standalone_url_at_a_cluster_node_is_an_error_even_when_failing_open() {
    let Some(seeds) = fleet::cluster_seeds() else {
        return;
    };
    let redis = RedisConnection::new(&RedisConfig::url(format!("redis://{}", seeds[0]))).unwrap();
    let limiter = RedisRateLimiter::new(redis, &fleet::unique("limit-mistake"), &[quota()])
        .unwrap()
        .with_failure_policy(FailurePolicy::FailOpen)
        .with_timeout(Duration::from_secs(2));
    for _ in 0..3 {
        let mistake = common::misconfiguration(&limiter).await;
        assert!(
            matches!(mistake, Misconfiguration::ClusterNode { .. }),
            "{mistake:?}"
        );
    }
    assert_fields!(limiter.stats(), admitted: 0, misconfigured: 3, redis_errors: 0);
}

#[tokio::test]
async fn cluster_seeds_at_a_standalone_server_are_an_error_even_with_a_local_fallback() {
    let Some(url) = fleet::env("REDIS_URL") else {
        return;
    };
    let seed = url.trim_start_matches("redis://").trim_end_matches('/');
    let redis = RedisConnection::new(&RedisConfig::cluster([seed])).unwrap();
    let quotas = [quota()];
    let limiter = RedisRateLimiter::new(redis, &fleet::unique("limit-mistake"), &quotas)
        .unwrap()
        .with_failure_policy(FailurePolicy::local(&quotas).unwrap())
        .with_timeout(Duration::from_secs(2));
    let mistake = common::misconfiguration(&limiter).await;
    assert!(
        matches!(mistake, Misconfiguration::NotACluster { .. }),
        "{mistake:?}"
    );
}
