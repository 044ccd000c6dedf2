//! `DistributedGroup` behind Sentinel (`REDIS_SENTINEL`) and over TLS (`REDIS_TLS_URL` with
//! `REDIS_TLS_CA`), on the fleet `.ci/redis-fleet` starts.
#![cfg(feature = "redis")]

use backstop_dedup::{DistributedConfig, DistributedGroup, RedisFailure, Source};
use backstop_redis::testing as fleet;
use backstop_redis::{RedisConfig, RedisConnection};
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
    assert_eq!((first.value, first.source), (1, Source::Executed), "{name}");
    assert_eq!((second.value, second.source), (1, Source::Remote), "{name}");
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
