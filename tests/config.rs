//! `BackstopConfig`: the shipped file builds a stack; every kind of bad file is a typed
//! error naming the field; no input makes it panic.

#![cfg(all(feature = "config", feature = "full"))]

use backstop::cache::TieredCache;
use backstop::config::{BackstopConfig, BuildError, ConfigFileError, PolicyKind};
use backstop::core::config::ConfigError;
use backstop::limit::Quota;
use backstop::scale::{MetricSample, Observation, Reading, Target};
use backstop_testkit::assert_fields;
use proptest::prelude::*;
use std::time::Duration;

/// The agent gateway's file: its own `[slo]` table and Backstop's sections under `[backstop]`.
const SHIPPED: &str = include_str!("../examples/backstop.toml");

/// Backstop's part of the shipped file.
fn shipped() -> Result<BackstopConfig, ConfigFileError> {
    BackstopConfig::from_toml_table(SHIPPED, "backstop")
}

/// Parses `text` (which must be valid) and builds its cache section.
async fn build_cache(text: &str) -> Result<TieredCache<String, String>, BuildError> {
    let config = BackstopConfig::from_toml_str(text).unwrap();
    let cache = config.cache.as_ref().expect("a [cache] section");
    cache.build::<String>().await
}

/// Parses `text` (which must be valid) and returns why its cache section fails to build.
async fn cache_build_error(text: &str) -> BuildError {
    build_cache(text).await.err().expect("the build fails")
}

fn error_of(text: &str) -> ConfigFileError {
    match BackstopConfig::from_toml_str(text) {
        Ok(config) => panic!("expected an error for {text:?}, got {config:?}"),
        Err(error) => error,
    }
}

/// `error` is a key or table Backstop does not know, and names it.
fn assert_unknown(error: &ConfigFileError, field: &str) {
    assert_eq!(error.field(), Some(field));
    assert!(
        matches!(error, ConfigFileError::UnknownField { .. }),
        "{error:?}"
    );
}

#[test]
fn shipped_file_configures_every_section() {
    let config = shipped().expect("the shipped file is valid");
    assert!(config.cache.is_some());
    assert!(config.batch.is_some());
    assert!(config.pool.is_some());
    assert!(config.breaker.is_some());
    assert!(config.limit.is_some());
    assert!(config.dedup.is_some());
    assert!(config.scale.is_some());
    // The file is the gateway's: its `[slo]` beside one table, `[backstop]`, of Backstop's
    // sections; read whole as Backstop's, that table is not one of them.
    assert_unknown(
        &BackstopConfig::from_toml_str(SHIPPED).unwrap_err(),
        "backstop",
    );
    let pool = config.pool.as_ref().unwrap();
    assert_fields!(pool, max_size: 32, min_idle: 4);
    assert_eq!(
        config.cache.as_ref().unwrap().tiered.stale_grace,
        Some(Duration::from_secs(3600))
    );
}

#[test]
fn limits_apply_defaults_and_per_user_overrides() {
    let config = shipped().unwrap();
    let limit = config.limit.as_ref().unwrap();
    let requests = limit
        .requests_limiter()
        .unwrap()
        .expect("requests configured");
    let default = Quota::per_minute(600).unwrap().with_burst(20).unwrap();
    let premium = Quota::per_minute(6000).unwrap().with_burst(100).unwrap();
    assert_eq!(requests.quota_for(&"someone".to_string()), default);
    assert_eq!(requests.quota_for(&"premium".to_string()), premium);
    for _ in 0..20 {
        assert!(requests.check_key(&"someone".to_string()).is_ok());
    }
    assert!(
        requests.check_key(&"someone".to_string()).is_err(),
        "burst of 20"
    );

    let tokens = limit.tokens_limiter().unwrap().expect("tokens configured");
    assert!(tokens.check_key_n(&"someone".to_string(), 150_000).is_ok());
    assert!(tokens.check_key_n(&"someone".to_string(), 150_000).is_err());

    let bulkhead = limit.bulkhead().unwrap().expect("bulkhead configured");
    assert_eq!(bulkhead.stats().in_flight, 0);
}

#[test]
fn the_budget_limiter_charges_requests_and_tokens_together() {
    let config = shipped().unwrap();
    let limit = config.limit.as_ref().unwrap();
    let unused = Quota::per_second(1).unwrap();
    let budget = limit.budget_limiter(unused, unused).unwrap();
    let someone = "someone".to_string();
    // Tokens: 200,000 per minute from the shipped file.
    assert!(budget.check_key_costs(&someone, &[1, 150_000]).is_ok());
    assert!(budget.check_key_costs(&someone, &[1, 150_000]).is_err());
    // Requests: a burst of 20, one already spent; the refusal above spent none.
    for _ in 0..19 {
        assert!(budget.check_key_costs(&someone, &[1, 0]).is_ok());
    }
    assert!(budget.check_key_costs(&someone, &[1, 0]).is_err());
    // The premium override raises requests and keeps the default tokens.
    let premium = "premium".to_string();
    for _ in 0..100 {
        assert!(budget.check_key_costs(&premium, &[1, 0]).is_ok());
    }
    assert!(budget.check_key_costs(&premium, &[1, 0]).is_err());
    assert!(
        budget
            .check_key_costs(&"premium".to_string(), &[0, 200_001])
            .is_err()
    );
    assert_eq!(budget.stats().overrides, 1);
}

#[test]
fn breaker_registry_uses_overrides_by_name() {
    let config = shipped().unwrap();
    let registry = config.breakers().unwrap().expect("breakers configured");
    let breakers = config.breaker.as_ref().unwrap();
    assert_eq!(breakers.config_for("primary").minimum_calls, 20);
    assert_eq!(breakers.config_for("fallback-provider").minimum_calls, 10);
    assert_eq!(registry.get("primary").name(), "primary");
}

#[test]
fn scale_policy_is_chosen_by_name_and_decides() {
    let config = shipped().unwrap();
    let scale = config.scale.as_ref().unwrap();
    assert_eq!(scale.policy, PolicyKind::Queue);
    let mut policy = scale.policy().unwrap();
    let observation = Observation::new(Duration::from_secs(60), 1, 1).metric(MetricSample::new(
        "queue_depth",
        Target::AverageValue(20.0),
        Reading::Total(200.0),
    ));
    let decision = policy.decide(&observation);
    assert_eq!(
        decision.recommendation,
        Some(10),
        "200 queued at 20 per replica"
    );
    assert!(
        decision.desired > 1,
        "scales up, within its rate policy: {decision:?}"
    );

    let hpa = BackstopConfig::from_toml_str("[scale]\npolicy = \"hpa\"\n").unwrap();
    assert!(
        hpa.scale.unwrap().policy().is_ok(),
        "a policy without its table uses defaults"
    );
}

#[test]
fn missing_sections_are_none_and_an_empty_file_is_valid() {
    let config = BackstopConfig::from_toml_str("").unwrap();
    assert_eq!(config, BackstopConfig::default());
    assert!(config.breakers().unwrap().is_none());
}

#[test]
fn a_broken_rule_names_the_nested_field() {
    let error = error_of("[cache.memory]\nmax_capacity = 0\n");
    assert_eq!(error.field(), Some("cache.memory.max_capacity"));
    assert!(matches!(error, ConfigFileError::Invalid { .. }));

    let error = error_of("[pool]\nmax_size = 4\nmin_idle = 8\n");
    assert_eq!(
        error.to_string(),
        "invalid configuration: `pool.min_idle` must not exceed max_size (line 3, column 1)"
    );

    let error = error_of("[breaker.overrides.openai]\nfailure_rate_threshold = 0.0\n");
    assert_eq!(
        error.field(),
        Some("breaker.overrides.openai.failure_rate_threshold")
    );

    let error = error_of("[limit.overrides.vip.tokens]\nrate = 5\nperiod = \"1s\"\n");
    assert_eq!(error.field(), Some("limit.overrides.vip.tokens"));
    assert!(
        error.to_string().contains("needs a default `limit.tokens`"),
        "{error}"
    );

    let error = error_of(
        "[scale]\npolicy = \"queue\"\n[scale.queue]\nmin_replicas = 9\nmax_replicas = 2\n",
    );
    assert!(
        error.field().unwrap().starts_with("scale.queue."),
        "{error}"
    );

    // Service levels are the application's (the agent gateway reads its own `[slo]`).
    assert_unknown(&error_of("[slo]\nmax_error_rate = 1.5\n"), "slo");
}

#[test]
fn a_wrong_type_names_the_field_and_its_position() {
    let error = error_of("[breaker.default]\nminimum_calls = \"ten\"\n");
    assert_eq!(error.field(), Some("breaker.default.minimum_calls"));
    let ConfigFileError::Parse { line, message, .. } = &error else {
        panic!("a type error is a parse error: {error:?}");
    };
    assert_eq!(*line, Some(2));
    assert!(message.contains("expected u32"), "{message}");

    let error = error_of("[limit.requests]\nrate = 10\nperiod = \"1 fortnight\"\n");
    assert_eq!(error.field(), Some("limit.requests.period"));
    assert!(error.to_string().contains("unknown unit"), "{error}");

    let error = error_of("[scale]\npolicy = \"hpx\"\n");
    assert_eq!(error.field(), Some("scale.policy"));
}

#[test]
fn unknown_keys_are_errors_not_silent_defaults() {
    let error = error_of("[cache.memory]\nmax_capcity = 5\n");
    assert_eq!(error.field(), Some("cache.memory.max_capcity"));
    assert_eq!(error_of("[cach]\n").field(), Some("cach"));
    assert_unknown(
        &error_of("[scale.hpa]\nmin_replica = 3\n"),
        "scale.hpa.min_replica",
    );
}

#[test]
fn malformed_toml_reports_where() {
    let error = error_of("[limit]\n[batch\nmax_batch_size = 1\n");
    let ConfigFileError::Parse { field, line, .. } = &error else {
        panic!("{error:?}");
    };
    assert!(field.is_empty());
    assert_eq!(*line, Some(2));
    assert_eq!(error.field(), None);
    assert!(
        error
            .to_string()
            .starts_with("configuration is not valid TOML (line 2"),
        "{error}"
    );
}

#[test]
fn a_missing_file_is_a_read_error() {
    let error = BackstopConfig::from_file("/nonexistent/backstop.toml").unwrap_err();
    assert!(matches!(error, ConfigFileError::Read { .. }), "{error:?}");
    assert!(error.to_string().contains("/nonexistent/backstop.toml"));
}

#[test]
fn validation_errors_keep_the_core_error_type() {
    let ConfigFileError::Invalid { error, .. } = error_of("[dedup]\nmax_entries = 0\n") else {
        panic!("expected a rule violation");
    };
    let _: ConfigError = error.clone();
    assert_eq!(error.field(), "dedup.max_entries");
}

#[tokio::test]
async fn cache_section_builds_memory_and_persistent_tiers() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[cache.memory]\nmax_capacity = 100\n[cache.persistent]\npath = {:?}\n",
        dir.path().join("responses.redb")
    );
    let cache = build_cache(&text).await.unwrap();
    cache
        .insert(&"k".to_string(), "v".to_string())
        .await
        .unwrap();
    assert_eq!(cache.get(&"k".to_string()).await.as_deref(), Some("v"));
    assert_eq!(cache.stats().tiers.len(), 2, "memory and the file");
}

#[tokio::test]
async fn an_unset_optional_redis_url_leaves_the_tier_out_and_a_required_one_fails() {
    let text = "[cache.redis]\nurl_env = \"BACKSTOP_TEST_NO_SUCH_VARIABLE\"\n";
    let cache = build_cache(text).await.unwrap();
    assert_eq!(cache.stats().tiers.len(), 1);

    let error = cache_build_error(&format!("{text}required = true\n")).await;
    assert!(error.to_string().contains("cache.redis.url"), "{error}");
}

#[tokio::test]
async fn an_unreachable_redis_is_a_build_error_not_a_hang() {
    let text = "[cache.redis]\nurl = \"redis://127.0.0.1:1/\"\noperation_timeout = \"100ms\"\n";
    let error = cache_build_error(text).await;
    assert!(error.to_string().starts_with("`cache.redis`"), "{error}");
}

#[tokio::test]
async fn cache_section_builds_a_redis_tier_against_a_real_server() {
    let Some(redis) = backstop_testkit::RedisTestContext::from_env("config_redis_tier").await
    else {
        return;
    };
    let text = format!(
        "[cache.redis]\nurl = {:?}\nnamespace = {:?}\n",
        std::env::var("REDIS_URL").unwrap(),
        redis.prefix()
    );
    let cache = build_cache(&text).await.unwrap();
    cache
        .insert(&"k".to_string(), "v".to_string())
        .await
        .unwrap();
    assert!(redis.count_keys().await >= 1, "the value reached Redis");
    redis.cleanup().await;
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = BackstopConfig::from_toml_str(&text);
    }

    #[test]
    fn any_value_in_the_shipped_file_never_panics(
        line in 0usize..150,
        value in prop_oneof![
            Just("0".to_string()), Just("-1".to_string()), Just("1e400".to_string()),
            Just("nan".to_string()), Just("\"\"".to_string()), Just("\"0s\"".to_string()),
            Just("\"99999999999d\"".to_string()), Just("[]".to_string()), Just("{}".to_string()),
            Just("18446744073709551615".to_string()), "\\PC{0,12}".prop_map(|s| format!("{s:?}")),
        ],
    ) {
        let mutated: String = SHIPPED
            .lines()
            .enumerate()
            .map(|(i, l)| match l.split_once(" = ") {
                Some((key, _)) if i == line => format!("{key} = {value}\n"),
                _ => format!("{l}\n"),
            })
            .collect();
        if let Err(error) = BackstopConfig::from_toml_table(&mutated, "backstop") {
            prop_assert!(!error.to_string().is_empty());
        }
    }
}
