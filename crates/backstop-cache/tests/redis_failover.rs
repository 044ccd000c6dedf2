//! The Redis tier across a Redis Cluster primary failover (`REDIS_CLUSTER_NODES`, from
//! `.ci/redis-fleet`, node timeout 1 s): the primary owning a key's slot is killed by pid
//! while the tier reads and writes it.
#![cfg(feature = "redis")]

use backstop_cache::{RedisTier, RedisTierConfig, Tier, TierError};
use backstop_redis::RedisConnection;
use backstop_testkit::fleet;
use std::time::{Duration, Instant};

/// Stated bound: reads and writes succeed again within node timeout + failover + a few
/// seconds (15 s asserted), and no call outlasts the operation timeout (plus scheduling
/// slack): a failover costs misses and failed writes for that long, never a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_cluster_primary_costs_misses_for_seconds_then_the_tier_recovers() {
    let Some((config, seeds)) = fleet::whole_cluster() else {
        return;
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let namespace = format!("fleet-test:cache-failover:{nanos}:");
    let timeout = Duration::from_millis(300);
    let tier: RedisTier<String> = RedisTier::with_connection(
        RedisConnection::new(&config).unwrap(),
        RedisTierConfig {
            namespace: namespace.clone(),
            operation_timeout: timeout,
            ..RedisTierConfig::default()
        },
    )
    .unwrap();
    let ttl = Some(Duration::from_secs(60));
    tier.set("k", &"before".to_string(), ttl).await.unwrap();
    let slot = backstop_redis::key::slot(format!("{namespace}k").as_bytes());
    let primary = fleet::cluster_primary_of(&seeds[0], slot).unwrap();
    let other_seed = seeds.iter().find(|s| **s != primary).unwrap().clone();

    let killed = fleet::kill(&primary);
    let started = Instant::now();
    let (mut failed, mut slowest) = (0u32, Duration::ZERO);
    let recovered = loop {
        let call = Instant::now();
        let outcome = tier.set("k", &"after".to_string(), ttl).await;
        slowest = slowest.max(call.elapsed());
        match outcome {
            Ok(()) => break started.elapsed(),
            Err(TierError::Backend(_) | TierError::Timeout(_)) => failed += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "not back within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(tier.get("k").await.unwrap().as_deref(), Some("after"));
    println!(
        "cluster failover: redis tier writes back after {recovered:?} ({failed} failed calls, slowest {slowest:?})"
    );
    drop(killed);
    assert!(failed > 0, "the kill was noticed");
    assert!(
        slowest <= timeout + Duration::from_millis(200),
        "a call took {slowest:?}"
    );
    assert!(
        fleet::wait_until(Duration::from_secs(30), || fleet::cluster_whole(
            &other_seed
        )),
        "the killed node rejoins as a replica"
    );
}
