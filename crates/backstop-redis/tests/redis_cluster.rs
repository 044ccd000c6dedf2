//! Against the 3-primary / 3-replica cluster `.ci/redis-fleet` starts (`REDIS_CLUSTER_NODES`).

use backstop_testkit::fleet as support;

use backstop_redis::key::{slot, tagged};
use backstop_redis::{Misconfiguration, RedisConfig, RedisConnection, RedisFault, Topology};
use std::collections::HashSet;

#[tokio::test]
async fn every_key_is_served_whatever_node_owns_its_slot() {
    let Some(config) = support::cluster() else {
        return;
    };
    let redis = RedisConnection::connect(&config).await.unwrap();
    assert_eq!(redis.topology(), Topology::Cluster);
    let run = format!("fleet-test:{}", fastrand_u64());
    let mut slots = HashSet::new();
    for i in 0..300 {
        let key = format!("{run}:{i}");
        slots.insert(slot(key.as_bytes()));
        set_for_a_minute(&redis, key.clone(), i).await;
        let got: i64 = redis
            .run(|mut c| async move { redis::cmd("GET").arg(&key).query_async(&mut c).await })
            .await
            .unwrap();
        assert_eq!(got, i);
    }
    assert!(slots.len() > 250, "the keys spread over many slots");
}

#[tokio::test]
async fn a_script_over_one_user_keys_runs_in_one_slot_even_for_hostile_keys() {
    let Some(config) = support::cluster() else {
        return;
    };
    let redis = RedisConnection::connect(&config).await.unwrap();
    let script = redis::Script::new(
        "redis.call('SET', KEYS[1], ARGV[1], 'PX', 60000); redis.call('SET', KEYS[2], ARGV[1], 'PX', 60000); return redis.call('GET', KEYS[2])",
    );
    for key in ["", "}", "{", "a}b{c", "{user}", "\u{0}bin\u{ff}", "plain"] {
        let (k1, k2) = (
            tagged("fleet-test:script", key, "a"),
            tagged("fleet-test:script", key, "b"),
        );
        let script = script.clone();
        let got: String = redis
            .run(
                |mut c| async move { script.key(&k1).key(&k2).arg("v").invoke_async(&mut c).await },
            )
            .await
            .unwrap_or_else(|e| panic!("{key:?}: {e}"));
        assert_eq!(got, "v");
    }
}

#[tokio::test]
async fn keys_of_two_slots_in_one_script_are_a_typed_mistake() {
    let Some(config) = support::cluster() else {
        return;
    };
    let redis = RedisConnection::connect(&config).await.unwrap();
    // Two keys without a shared tag, in different slots.
    let (a, b) = ("fleet-test:crossslot:a", "fleet-test:crossslot:b");
    assert_ne!(slot(a.as_bytes()), slot(b.as_bytes()));
    let script = redis::Script::new("return redis.call('EXISTS', KEYS[1], KEYS[2])");
    let fault = redis
        .run(|mut c| async move { script.key(a).key(b).invoke_async::<i64>(&mut c).await })
        .await
        .unwrap_err();
    assert!(
        matches!(
            fault,
            RedisFault::Misconfigured(Misconfiguration::CrossSlot(_))
        ),
        "{fault:?}"
    );
    assert!(!fault.is_outage());
}

#[tokio::test]
async fn a_standalone_url_at_a_cluster_node_is_a_typed_mistake() {
    let Some(seeds) = support::cluster_seeds() else {
        return;
    };
    let config = RedisConfig::url(format!("redis://{}", seeds[0]));
    let fault = RedisConnection::connect(&config).await.unwrap_err();
    assert!(
        matches!(
            fault,
            RedisFault::Misconfigured(Misconfiguration::ClusterNode { .. })
        ),
        "{fault:?}"
    );
    // Every later call reports it too, never as an outage.
    let redis = RedisConnection::new(&config).unwrap();
    for _ in 0..2 {
        let fault = redis
            .run(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
            .await
            .unwrap_err();
        assert!(fault.misconfiguration().is_some(), "{fault:?}");
    }
}

#[tokio::test]
async fn cluster_nodes_at_a_standalone_server_are_a_typed_mistake() {
    let Some(url) = support::env("REDIS_URL") else {
        return;
    };
    let seed = url.trim_start_matches("redis://").trim_end_matches('/');
    let mistake = support::connect_mistake(&RedisConfig::cluster([seed])).await;
    assert!(
        matches!(mistake, Misconfiguration::NotACluster { .. }),
        "{mistake:?}"
    );
}

#[tokio::test]
async fn a_scan_visits_every_primary() {
    let Some(config) = support::cluster() else {
        return;
    };
    let redis = RedisConnection::connect(&config).await.unwrap();
    let nodes = redis.scan_nodes().await.unwrap();
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    let run = format!("fleet-test:scan:{}", fastrand_u64());
    for i in 0..60 {
        let key = format!("{run}:{i}");
        set_for_a_minute(&redis, key, 1).await;
    }
    let mut found = HashSet::new();
    let mut per_node = Vec::new();
    for node in &nodes {
        let mut cursor = 0;
        let mut here = 0;
        loop {
            let (next, keys) = redis
                .scan_page(node, cursor, &format!("{run}:*"), 100)
                .await
                .unwrap();
            here += keys.len();
            found.extend(keys);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        per_node.push(here);
    }
    assert_eq!(found.len(), 60);
    assert!(
        per_node.iter().all(|&n| n > 0),
        "every primary holds some: {per_node:?}"
    );
}

/// `SET key value PX 60000`: test keys expire by themselves.
async fn set_for_a_minute(redis: &RedisConnection, key: String, value: i64) {
    let () = redis
        .run(|mut c| async move {
            redis::cmd("SET")
                .arg(&key)
                .arg(value)
                .arg("PX")
                .arg(60_000)
                .query_async(&mut c)
                .await
        })
        .await
        .unwrap();
}

fn fastrand_u64() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}
