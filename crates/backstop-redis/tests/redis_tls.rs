//! Against the TLS server `.ci/redis-fleet` starts (`REDIS_TLS_URL`, `REDIS_TLS_CA`).

use backstop_testkit::fleet as support;

use backstop_redis::{Misconfiguration, RedisConfig, RedisConnection, TlsConfig};

#[tokio::test]
async fn rediss_with_the_fleet_ca_works() {
    let Some(config) = support::tls() else { return };
    let redis = RedisConnection::connect(&config).await.unwrap();
    let pong: String = redis
        .run(|mut c| async move { redis::cmd("PING").query_async(&mut c).await })
        .await
        .unwrap();
    assert_eq!(pong, "PONG");
}

#[tokio::test]
async fn a_wrong_ca_is_a_clear_tls_error() {
    let Some(url) = support::env("REDIS_TLS_URL") else {
        return;
    };
    let Some(other) = support::env("REDIS_TLS_OTHER_CA") else {
        return;
    };
    let config = RedisConfig::url(url).with_tls(TlsConfig {
        ca: Some(other.into()),
        ..TlsConfig::default()
    });
    let mistake = support::connect_mistake(&config).await;
    assert!(matches!(mistake, Misconfiguration::Tls(_)), "{mistake:?}");
}

#[test]
fn a_missing_ca_file_names_the_field() {
    let config = RedisConfig::url("rediss://127.0.0.1:6380").with_tls(TlsConfig {
        ca: Some("/nonexistent/ca.crt".into()),
        ..TlsConfig::default()
    });
    let error = RedisConnection::new(&config).unwrap_err();
    assert!(
        matches!(&error, Misconfiguration::Tls(detail) if detail.contains("tls.ca")),
        "{error:?}"
    );
}
