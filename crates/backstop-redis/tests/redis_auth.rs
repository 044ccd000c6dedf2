//! Credentials from the configuration (`username`, `password`) on every topology, and the
//! namespace a connection hands its primitives.

use backstop_redis::{Misconfiguration, RedisConfig, RedisConnection, RedisFault};
use backstop_testkit::fleet as support;

/// An ACL user on `address` that may run every command on keys under `auth-test:`.
fn acl_user(address: &str, user: &str, password: &str) {
    support::cli(
        address,
        &[
            "acl",
            "setuser",
            user,
            "on",
            &format!(">{password}"),
            "~auth-test:*",
            "+@all",
            "&*",
        ],
    );
}

async fn incr(redis: &RedisConnection, key: &str) -> Result<i64, RedisFault> {
    let key = key.to_string();
    redis
        .run(|mut c| async move { redis::cmd("INCR").arg(key).query_async(&mut c).await })
        .await
}

#[tokio::test]
async fn configured_credentials_reach_a_standalone_server_and_a_wrong_password_is_a_mistake() {
    let Some(url) = support::env("REDIS_URL") else {
        return;
    };
    let address = url.trim_start_matches("redis://").trim_end_matches('/');
    acl_user(address, "backstop-auth", "right-pw");
    let good = RedisConfig::url(&url).with_credentials(Some("backstop-auth"), "right-pw");
    let redis = RedisConnection::connect(&good).await.unwrap();
    assert!(incr(&redis, "auth-test:standalone").await.unwrap() >= 1);
    let whoami: String = redis
        .run(|mut c| async move { redis::cmd("ACL").arg("WHOAMI").query_async(&mut c).await })
        .await
        .unwrap();
    assert_eq!(
        whoami, "backstop-auth",
        "the configured user replaced the URL's default"
    );
    // The ACL allows only `auth-test:*` keys: the user really is in force.
    assert!(incr(&redis, "elsewhere").await.is_err());

    let wrong = RedisConfig::url(&url).with_credentials(Some("backstop-auth"), "wrong-pw");
    let mistake = support::connect_mistake(&wrong).await;
    assert!(matches!(mistake, Misconfiguration::Auth(_)), "{mistake:?}");
}

#[tokio::test]
async fn configured_credentials_reach_every_cluster_node() {
    let Some(seeds) = support::cluster_seeds() else {
        return;
    };
    for seed in &seeds {
        acl_user(seed, "backstop-auth", "cluster-pw");
    }
    let config = RedisConfig::cluster(seeds.iter().cloned())
        .with_credentials(Some("backstop-auth"), "cluster-pw");
    let redis = RedisConnection::connect(&config).await.unwrap();
    // Keys over all three primaries, each written as the configured user.
    for i in 0..30 {
        assert!(incr(&redis, &format!("auth-test:{i}")).await.unwrap() >= 1);
    }
}

#[test]
fn the_namespace_prefixes_what_primitives_write() {
    let config = RedisConfig::cluster(["127.0.0.1:7000"]).with_namespace("tenant-a:");
    let redis = RedisConnection::new(&config).unwrap();
    assert_eq!(redis.namespace(), "tenant-a:");
    assert_eq!(redis.namespaced("limit"), "tenant-a:limit");
    let plain = RedisConnection::new(&RedisConfig::cluster(["127.0.0.1:7000"])).unwrap();
    assert_eq!(plain.namespaced("limit"), "limit");
}
