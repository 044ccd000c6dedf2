//! `DistributedGroup` on the fleet's Redis Cluster (`REDIS_CLUSTER_NODES`, started by
//! `.ci/redis-fleet`): the claim and publish scripts touch one slot per key, so three OS
//! processes run each key once; misconfiguration is refused, never run unleased.
#![cfg(feature = "redis")]

use backstop_dedup::{DedupError, DistributedConfig, DistributedGroup, RedisFailure, Source};
use backstop_redis::{Misconfiguration, RedisConfig, RedisConnection};
use backstop_testkit::assert_fields;
use backstop_testkit::fleet;
use futures::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

type Process = DistributedGroup<String, u64, String>;

const KEYS: usize = 200;
const CHILD: &str = "BACKSTOP_DEDUP_FLEET_CHILD";

fn config(prefix: &str) -> DistributedConfig {
    DistributedConfig {
        prefix: prefix.to_string(),
        poll_interval: Duration::from_millis(2),
        max_poll_interval: Duration::from_millis(20),
        result_ttl: Duration::from_secs(60),
        // Generous: this file checks exactly-once, not latency, and a loaded CI machine
        // (three processes on two cores beside the rest of the suite) can stall a command
        // for seconds; under `Fail` a timeout would fail the key, not run it twice.
        redis_timeout: Duration::from_secs(10),
        // An outage would run work twice; the test would see it. A mistake fails anyway.
        on_redis_error: RedisFailure::Fail,
        ..DistributedConfig::default()
    }
}

/// Three OS processes (this test binary, run again) ask for the same 200 keys, spread over
/// the cluster's slots, at the same time: every key is executed exactly once in total.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_run_each_key_once_across_the_cluster() {
    let Some(_) = fleet::cluster() else { return };
    let prefix = fleet::unique("dedup-procs");
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..3)
        .map(|_| {
            std::process::Command::new(&exe)
                .args(["fleet_child_runs_the_shared_keys", "--exact", "--nocapture"])
                .env(CHILD, &prefix)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("the test binary runs again")
        })
        .collect();
    let mut executed = vec![0u32; KEYS];
    let mut remote = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a child process failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("executed "))
            .expect("the child reports its executions");
        for (i, n) in line.split(',').enumerate() {
            executed[i] += n.parse::<u32>().unwrap();
        }
        remote += text
            .lines()
            .find_map(|l| l.strip_prefix("remote "))
            .unwrap()
            .parse::<usize>()
            .unwrap();
    }
    let wrong: Vec<(usize, u32)> = executed
        .iter()
        .enumerate()
        .filter(|(_, n)| **n != 1)
        .map(|(i, n)| (i, *n))
        .collect();
    assert!(
        wrong.is_empty(),
        "keys not executed exactly once: {wrong:?}"
    );
    assert_eq!(
        remote,
        2 * KEYS,
        "the other two processes got each result from Redis"
    );
}

/// The child side of the test above; does nothing unless run by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_child_runs_the_shared_keys() {
    let Ok(prefix) = std::env::var(CHILD) else {
        return;
    };
    let redis = RedisConnection::new(&fleet::cluster().expect("the parent had it")).unwrap();
    let group: Process = DistributedGroup::new(redis, config(&prefix)).unwrap();
    let outcomes: Vec<(usize, Source)> = futures::stream::iter(0..KEYS)
        .map(|i| {
            let group = group.clone();
            async move {
                let outcome = group
                    .work(format!("job-{i}"), move || async move {
                        tokio::time::sleep(Duration::from_millis(30)).await;
                        Ok(i as u64)
                    })
                    .await
                    .unwrap_or_else(|error| panic!("job-{i}: {error}"));
                assert_eq!(outcome.value, i as u64);
                (i, outcome.source)
            }
        })
        .buffer_unordered(KEYS)
        .collect()
        .await;
    let mut executed = vec![0u32; KEYS];
    let mut remote = 0;
    for (i, source) in outcomes {
        match source {
            Source::Executed => executed[i] += 1,
            Source::Remote => remote += 1,
            other => panic!("unexpected source {other:?}"),
        }
    }
    let line: Vec<String> = executed.iter().map(u32::to_string).collect();
    println!("executed {}", line.join(","));
    println!("remote {remote}");
}

#[tokio::test]
async fn keys_with_braces_empty_and_binary_coordinate_in_one_slot() {
    let Some(config_cluster) = fleet::cluster() else {
        return;
    };
    let prefix = fleet::unique("dedup-hostile");
    let a: Process = DistributedGroup::new(
        RedisConnection::new(&config_cluster).unwrap(),
        config(&prefix),
    )
    .unwrap();
    let b: Process = DistributedGroup::new(
        RedisConnection::new(&config_cluster).unwrap(),
        config(&prefix),
    )
    .unwrap();
    for key in ["", "}", "{", "a}b{c", "{job}", "\u{0}\u{ff}", "%"] {
        let first = a.work(key.to_string(), || async { Ok(7) }).await.unwrap();
        assert_eq!(first.source, Source::Executed, "{key:?}");
        let second = b.work(key.to_string(), || async { Ok(8) }).await.unwrap();
        assert_fields!(second, value: 7, source: Source::Remote; "{key:?}");
    }
    assert_eq!(a.stats().redis_errors + b.stats().redis_errors, 0);
}

#[tokio::test]
async fn a_standalone_url_at_a_cluster_node_is_refused_not_run_locally() {
    let Some(seeds) = fleet::cluster_seeds() else {
        return;
    };
    let redis = RedisConnection::new(&RedisConfig::url(format!("redis://{}", seeds[0]))).unwrap();
    let group: Process = DistributedGroup::new(
        redis,
        DistributedConfig {
            on_redis_error: RedisFailure::ExecuteLocally,
            ..config(&fleet::unique("dedup-mistake"))
        },
    )
    .unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&runs);
    let error = group
        .work("k".to_string(), move || async move {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok(1)
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            &error,
            DedupError::Misconfigured(Misconfiguration::ClusterNode { .. })
        ),
        "a typed mistake, not a refusal a policy could hide: {error:?}"
    );
    assert!(error.misconfiguration().is_some());
    assert_eq!(
        runs.load(Ordering::SeqCst),
        0,
        "a mistake is not an outage: no local run"
    );
    assert_fields!(group.stats(), misconfigured: 1, local_fallbacks: 0);
    assert!(matches!(
        group.misconfiguration(),
        Some(Misconfiguration::ClusterNode { .. })
    ));
}

#[test]
fn a_prefix_with_braces_is_refused() {
    let config = DistributedConfig {
        prefix: "app{x}".to_string(),
        ..DistributedConfig::default()
    };
    let error = backstop_core::Validate::validate(&config).unwrap_err();
    assert_eq!(error.field(), "prefix");
}
