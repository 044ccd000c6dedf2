//! `DistributedGroup` behind Sentinel (`REDIS_SENTINEL`) and over TLS (`REDIS_TLS_URL` with
//! `REDIS_TLS_CA`), on the fleet `.ci/redis-fleet` starts.
#![cfg(feature = "redis")]

use backstop_dedup::{DistributedConfig, DistributedGroup, RedisFailure, Source};
use backstop_redis::{Misconfiguration, RedisConfig, RedisConnection};
use backstop_testkit::assert_fields;
use backstop_testkit::fleet;
use std::time::Duration;

type Process = DistributedGroup<String, u64, String>;

async fn two_processes_share_one_execution(config: &RedisConfig, name: &str) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let settings = DistributedConfig {
        prefix: format!("fleet-test:{name}:{nanos}"),
        poll_interval: Duration::from_millis(1),
        max_poll_interval: Duration::from_millis(10),
        redis_timeout: Duration::from_secs(2),
        on_redis_error: RedisFailure::Fail,
        ..DistributedConfig::default()
    };
    let a: Process =
        DistributedGroup::new(RedisConnection::new(config).unwrap(), settings.clone()).unwrap();
    let b: Process =
        DistributedGroup::new(RedisConnection::new(config).unwrap(), settings).unwrap();
    let (first, second) = tokio::join!(
        a.work("job".to_string(), || async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(1)
        }),
        async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            b.work("job".to_string(), || async { Ok(2) }).await
        }
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_fields!(first, value: 1, source: Source::Executed; "{name}");
    assert_fields!(second, value: 1, source: Source::Remote; "{name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_coordinates_behind_sentinel() {
    let Some(config) = fleet::sentinel() else {
        return;
    };
    two_processes_share_one_execution(&config, "dedup-sentinel").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_coordinates_over_tls() {
    let Some(config) = fleet::tls() else { return };
    two_processes_share_one_execution(&config, "dedup-tls").await;
}

/// A URL at a replica is a typed mistake under the local-execution policy too: the work
/// never runs unleased.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_at_a_replica_is_a_typed_error_not_a_local_run() {
    let Some(replica) = fleet::sentinel_replica_url() else {
        return;
    };
    let redis = RedisConnection::new(&RedisConfig::url(replica)).unwrap();
    let group: Process = DistributedGroup::new(
        redis,
        DistributedConfig {
            on_redis_error: RedisFailure::ExecuteLocally,
            redis_timeout: Duration::from_secs(2),
            ..DistributedConfig::default()
        },
    )
    .unwrap();
    let error = group
        .work("job".to_string(), || async { Ok(1) })
        .await
        .unwrap_err();
    assert!(
        matches!(
            error.misconfiguration(),
            Some(Misconfiguration::Replica { .. })
        ),
        "{error:?}"
    );
    assert_eq!(group.stats().local_fallbacks, 0);
}

/// Two groups with one prefix on connections of different namespaces elect separately.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_namespace_separates_groups_on_one_redis() {
    let Some(base) = fleet::standalone() else {
        return;
    };
    let settings = DistributedConfig {
        prefix: format!(
            "fleet-test:dedup-ns:{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ),
        redis_timeout: Duration::from_secs(2),
        on_redis_error: RedisFailure::Fail,
        ..DistributedConfig::default()
    };
    let group = |namespace: &str| -> Process {
        let redis = RedisConnection::new(&base.clone().with_namespace(namespace)).unwrap();
        DistributedGroup::new(redis, settings.clone()).unwrap()
    };
    let (a, b) = (group("tenant-a:"), group("tenant-b:"));
    let first = a.work("job".to_string(), || async { Ok(1) }).await.unwrap();
    let second = b.work("job".to_string(), || async { Ok(2) }).await.unwrap();
    assert_fields!(first, value: 1, source: Source::Executed);
    assert_fields!(
        second,
        value: 2, source: Source::Executed; "b does not see a's published result"
    );
    let again = a.work("job".to_string(), || async { Ok(3) }).await.unwrap();
    assert_fields!(again, value: 1, source: Source::Remote);
}
