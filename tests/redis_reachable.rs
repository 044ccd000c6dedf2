//! Proves the test environment really reaches Redis: CI sets `REDIS_URL`, and this test
//! fails there (rather than skipping) if the server is missing or unreachable.

use backstop_testkit::RedisTestContext;

#[tokio::test]
async fn redis_round_trip_under_a_private_prefix() {
    let Some(redis) = RedisTestContext::from_env("redis_round_trip_under_a_private_prefix").await
    else {
        return;
    };
    let mut connection = redis.connection().await;
    let key = redis.key("greeting");
    assert!(key.starts_with(redis.prefix()));

    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("hello")
        .arg("PX")
        .arg(60_000)
        .query_async(&mut connection)
        .await
        .unwrap();
    let value: Option<String> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(value.as_deref(), Some("hello"));
    assert_eq!(redis.count_keys().await, 1);

    redis.cleanup().await;
    assert_eq!(redis.count_keys().await, 0);
}

#[tokio::test]
async fn contexts_get_distinct_prefixes() {
    let Some(first) = RedisTestContext::from_env("contexts_get_distinct_prefixes").await else {
        return;
    };
    let second = RedisTestContext::from_env("contexts_get_distinct_prefixes")
        .await
        .expect("REDIS_URL was set a moment ago");
    assert_ne!(first.prefix(), second.prefix());
}
