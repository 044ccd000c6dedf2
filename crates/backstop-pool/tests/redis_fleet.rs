//! The Redis manager on the fleet `.ci/redis-fleet` starts: every slot of the cluster
//! (`REDIS_CLUSTER_NODES`), TLS (`REDIS_TLS_URL`), Sentinel (`REDIS_SENTINEL`), and a
//! standalone URL at a cluster node reported as the mistake it is.
#![cfg(feature = "redis")]

use backstop_pool::{Pool, PoolConfig, PoolError, RedisManager};
use backstop_redis::{Misconfiguration, RedisConfig, RedisFault};
use backstop_testkit::fleet;
use std::time::Duration;

fn pool(config: &RedisConfig) -> Pool<RedisManager> {
    let settings = PoolConfig::builder()
        .max_size(4)
        .health_check_bypass(Duration::ZERO)
        .build()
        .unwrap();
    Pool::new(RedisManager::from_config(config).unwrap(), settings).unwrap()
}

async fn round_trips(pool: &Pool<RedisManager>, prefix: &str, keys: usize) {
    for i in 0..keys {
        let key = format!("{prefix}:{i}");
        let mut conn = pool.get().await.unwrap();
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg(i)
            .arg("PX")
            .arg(60_000)
            .query_async(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("SET {key}: {e}"));
        let got: usize = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut *conn)
            .await
            .unwrap();
        assert_eq!(got, i);
    }
    assert_eq!(pool.stats().closed.health_check, 0);
}

#[tokio::test]
async fn pooled_cluster_connections_reach_every_slot() {
    let Some(config) = fleet::cluster() else {
        return;
    };
    // Before: two thirds of these got MOVED from the one node a standalone URL reached.
    round_trips(&pool(&config), &fleet::unique("pool-cluster"), 300).await;
}

#[tokio::test]
async fn pooled_connections_work_over_tls_and_behind_sentinel() {
    if let Some(config) = fleet::tls() {
        round_trips(&pool(&config), &fleet::unique("pool-tls"), 20).await;
    }
    if let Some(config) = fleet::sentinel() {
        round_trips(&pool(&config), &fleet::unique("pool-sentinel"), 20).await;
    }
}

#[tokio::test]
async fn a_standalone_url_at_a_cluster_node_is_a_named_creation_error() {
    let Some(seeds) = fleet::cluster_seeds() else {
        return;
    };
    let pool = pool(&RedisConfig::url(format!("redis://{}", seeds[0])));
    let error = pool.get().await.unwrap_err();
    assert!(
        matches!(
            error,
            PoolError::Create(RedisFault::Misconfigured(
                Misconfiguration::ClusterNode { .. }
            ))
        ),
        "{error:?}"
    );
}
