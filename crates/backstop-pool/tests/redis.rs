//! The Redis manager against `REDIS_URL` (skipped with a notice when it is unset).
#![cfg(feature = "redis")]

use std::time::Duration;

use backstop_pool::{Pool, PoolConfig, RedisManager};
use backstop_testkit::RedisTestContext;

#[tokio::test]
async fn redis_connections_are_pooled_and_health_checked() {
    let Some(ctx) = RedisTestContext::from_env("pool_redis").await else {
        return;
    };
    let config = PoolConfig::builder()
        .max_size(4)
        .min_idle(1)
        .health_check_bypass(Duration::ZERO)
        .build()
        .unwrap();
    let pool = Pool::new(RedisManager::from_client(ctx.client().clone()), config).unwrap();
    let key = ctx.key("greeting");
    {
        let mut conn = pool.get().await.unwrap();
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg("hello")
            .query_async(&mut *conn)
            .await
            .unwrap();
    }
    for _ in 0..3 {
        let mut conn = pool.get().await.unwrap();
        let value: String = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut *conn)
            .await
            .unwrap();
        assert_eq!(value, "hello");
    }
    let stats = pool.stats();
    assert_eq!(stats.checkouts, 4);
    assert_eq!(
        stats.closed.health_check, 0,
        "PING health checks pass: {stats:?}"
    );
    assert!(stats.created <= 2, "connections are reused: {stats:?}");
    ctx.cleanup().await;
}

#[tokio::test]
async fn an_unreachable_redis_is_a_creation_error() {
    let manager = RedisManager::new("redis://127.0.0.1:1/").unwrap();
    let config = PoolConfig::builder()
        .max_size(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .build()
        .unwrap();
    let pool = Pool::new(manager, config).unwrap();
    assert!(matches!(
        pool.get().await,
        Err(backstop_pool::PoolError::Create(_))
    ));
    assert_eq!(pool.stats().create_failures, 1);
}
