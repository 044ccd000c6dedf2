//! Issue 27: Backstop's configuration inside the application's own file — one section of
//! the application's serde struct or one named table — strict inside Backstop's sections,
//! every error at its line and column (rule violations included), `BACKSTOP__…`
//! environment overrides, "needs the feature" for a section compiled out, and the
//! effective configuration printed back out.

// The shipped file configures every section, so this needs the whole umbrella.
#![cfg(feature = "full")]

use backstop::config::{BackstopConfig, ConfigFileError, ConfigLoader};
use serde::Deserialize;
use std::time::Duration;

/// The agent gateway's file: its own `[slo]` table, Backstop's sections under `[backstop]`.
const SHIPPED: &str = include_str!("../examples/backstop.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Server {
    port: u16,
}

#[derive(Debug, Deserialize)]
struct App {
    server: Server,
    backstop: BackstopConfig,
}

const APP: &str = r#"# the application's own file
[server]
port = 8080

[backstop.limit]
max_keys = 1000

[backstop.limit.requests]
rate = 60
period = "1m"

[backstop.dedup]
ttl = "5s"
"#;

/// Old code: `BackstopConfig`'s derived `Deserialize` checked no rule, so an embedded
/// section accepted a zero capacity; this fails on it.
#[test]
fn an_embedded_section_checks_rules_and_unknown_keys() {
    let app: App = toml::from_str(APP).unwrap();
    assert_eq!(app.server.port, 8080);
    assert_eq!(app.backstop.limit.as_ref().unwrap().max_keys, Some(1000));
    assert_eq!(
        app.backstop.dedup.as_ref().unwrap().ttl,
        Duration::from_secs(5)
    );

    let zero = APP.replace("max_keys = 1000", "max_keys = 0");
    let error = toml::from_str::<App>(&zero).unwrap_err();
    assert!(
        error
            .message()
            .contains("`limit.max_keys` must be at least 1"),
        "{error}"
    );

    let typo = APP.replace("max_keys = 1000", "max_key = 1000");
    let error = toml::from_str::<App>(&typo).unwrap_err();
    assert!(error.message().contains("unknown field"), "{error}");
    assert!(error.message().contains("max_key"), "{error}");
    // The sub-crates' own strictness holds too, with toml's position.
    let typo = APP.replace("ttl = \"5s\"", "tll = \"5s\"");
    let error = toml::from_str::<App>(&typo).unwrap_err();
    assert!(error.message().contains("tll"), "{error}");
    assert!(error.span().is_some());
}

/// Old code: no loader placed a rule violation; `ConfigFileError::Invalid` had no line.
#[test]
fn the_loader_places_every_error_of_the_applications_file() {
    let loader = ConfigLoader::new();
    let app: App = loader.deserialize_str(APP).unwrap();
    assert_eq!(app.server.port, 8080);

    let zero = APP.replace("max_keys = 1000", "max_keys = 0");
    let error = loader.deserialize_str::<App>(&zero).unwrap_err();
    assert!(
        matches!(error, ConfigFileError::Invalid { .. }),
        "{error:?}"
    );
    assert_eq!(error.field(), Some("backstop.limit.max_keys"));
    assert_eq!(error.position(), Some((6, 1)));
    assert_eq!(
        error.to_string(),
        "invalid configuration: `backstop.limit.max_keys` must be at least 1 (line 6, column 1)"
    );

    let typo = APP.replace("ttl = \"5s\"", "tll = \"5s\"");
    let error = loader.deserialize_str::<App>(&typo).unwrap_err();
    assert_eq!(error.position().map(|p| p.0), Some(13), "{error}");

    let wrong = APP.replace("port = 8080", "port = \"eighty\"");
    let error = loader.deserialize_str::<App>(&wrong).unwrap_err();
    assert_eq!(error.field(), Some("server.port"));
    assert_eq!(error.position().map(|p| p.0), Some(3), "{error}");
}

/// Old code: a rule violation named the field but no line.
#[test]
fn rule_violations_carry_line_and_column() {
    let error =
        BackstopConfig::from_toml_str("[dedup]\nttl = \"5s\"\nmax_entries = 0\n").unwrap_err();
    assert_eq!(error.position(), Some((3, 1)), "{error}");

    // A defaulted field that breaks a rule against another points at its table.
    let error =
        BackstopConfig::from_toml_str("\n[pool]\nmax_size = 4\nmin_idle = 8\n").unwrap_err();
    assert_eq!(error.field(), Some("pool.min_idle"));
    assert_eq!(error.position(), Some((4, 1)), "{error}");

    // Inside a named override table.
    let error =
        BackstopConfig::from_toml_str("[breaker.overrides.openai]\nfailure_rate_threshold = 0.0\n")
            .unwrap_err();
    assert_eq!(error.position(), Some((2, 1)), "{error}");

    // Every line of the shipped file: a zero where a rule forbids it is placed on that line.
    for (index, line) in SHIPPED.lines().enumerate() {
        let Some((key, _)) = line.split_once(" = ") else {
            continue;
        };
        let mutated: String = SHIPPED
            .lines()
            .enumerate()
            .map(|(i, l)| {
                if i == index {
                    format!("{key} = 0\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        if let Err(error @ ConfigFileError::Invalid { .. }) =
            BackstopConfig::from_toml_table(&mutated, "backstop")
        {
            let (at, _) = error.position().expect("a rule violation has a position");
            assert!(at <= index + 1, "{error} for line {}", index + 1);
        }
    }
}

/// Old code: there was no way to read one table of a larger file; the application's own
/// tables were "unknown fields".
#[test]
fn a_named_table_of_a_larger_file_loads_strictly_with_positions_in_the_whole_file() {
    let config = BackstopConfig::from_toml_table(APP, "backstop").unwrap();
    assert_eq!(config.limit.as_ref().unwrap().max_keys, Some(1000));
    assert!(
        BackstopConfig::from_toml_str(APP).is_err(),
        "[server] is not Backstop's"
    );

    let typo = APP.replace("max_keys = 1000", "max_key = 1000");
    let error = BackstopConfig::from_toml_table(&typo, "backstop").unwrap_err();
    assert!(error.to_string().contains("unknown field"), "{error:?}");
    assert_eq!(error.field(), Some("backstop.limit.max_key"));
    assert_eq!(error.position(), Some((6, 1)));
    // A section whose own type is lenient is made strict by `BackstopConfig`.
    let typo = "[backstop.scale.hpa]\nmin_replica = 3\n";
    let error = BackstopConfig::from_toml_table(typo, "backstop").unwrap_err();
    assert!(
        matches!(error, ConfigFileError::UnknownField { .. }),
        "{error:?}"
    );
    assert_eq!(error.field(), Some("backstop.scale.hpa.min_replica"));
    assert_eq!(error.position(), Some((2, 1)));

    let nested = format!(
        "[app.other]\nx = 1\n{}",
        APP.replace("[backstop", "[app.backstop")
    );
    let config = BackstopConfig::from_toml_table(&nested, "app.backstop").unwrap();
    assert!(config.dedup.is_some());

    let empty = BackstopConfig::from_toml_table("[server]\nport = 1\n", "backstop").unwrap();
    assert_eq!(empty, BackstopConfig::default());
    let error = BackstopConfig::from_toml_table("backstop = 3\n", "backstop").unwrap_err();
    assert!(!error.to_string().is_empty());
}

/// Old code: no environment override existed.
#[test]
fn environment_overrides_apply_before_validation_and_errors_name_the_variable() {
    let loader = ConfigLoader::new().table("backstop").vars([
        ("BACKSTOP__LIMIT__MAX_KEYS", "5000"),
        ("BACKSTOP__DEDUP__TTL", "250ms"),
        ("BACKSTOP__POOL__MAX_SIZE", "8"),
        ("OTHER__LIMIT__MAX_KEYS", "1"),
    ]);
    let config = loader.load_str(APP).unwrap();
    assert_eq!(config.limit.as_ref().unwrap().max_keys, Some(5000));
    assert_eq!(
        config.dedup.as_ref().unwrap().ttl,
        Duration::from_millis(250)
    );
    assert_eq!(config.pool.as_ref().unwrap().max_size, 8, "a new section");
    assert_eq!(
        config
            .limit
            .as_ref()
            .unwrap()
            .requests
            .as_ref()
            .unwrap()
            .rate,
        60,
        "the rest of the file stays"
    );

    let check = |vars: &[(&str, &str)], field: &str| {
        let error = ConfigLoader::new()
            .table("backstop")
            .vars(vars.iter().copied())
            .load_str(APP)
            .unwrap_err();
        let ConfigFileError::Env { variable, .. } = &error else {
            panic!("{vars:?}: {error:?}");
        };
        assert_eq!(variable, vars[0].0);
        assert_eq!(error.field(), Some(field), "{error}");
        assert!(error.to_string().contains(vars[0].0), "{error}");
        error
    };
    // A rule broken by the override, a wrong type, an unknown key, a key under a value.
    let error = check(
        &[("BACKSTOP__LIMIT__MAX_KEYS", "0")],
        "backstop.limit.max_keys",
    );
    assert!(error.to_string().ends_with("must be at least 1"), "{error}");
    check(
        &[("BACKSTOP__LIMIT__MAX_KEYS", "many")],
        "backstop.limit.max_keys",
    );
    check(
        &[("BACKSTOP__LIMIT__MAX_KEYZ", "1")],
        "backstop.limit.max_keyz",
    );
    check(
        &[("BACKSTOP__LIMIT__MAX_KEYS__X", "1")],
        "backstop.limit.max_keys.x",
    );
    let error = ConfigLoader::new()
        .vars([("BACKSTOP__LIMIT____X", "1")])
        .load_str("")
        .unwrap_err();
    assert!(
        error.to_string().contains("BACKSTOP__LIMIT____X"),
        "{error}"
    );

    // Without a table the variables start at the top; the process environment works too.
    let config = ConfigLoader::new()
        .vars([("BACKSTOP__DEDUP__MAX_ENTRIES", "7")])
        .load_str("")
        .unwrap();
    assert_eq!(config.dedup.unwrap().max_entries, 7);
    let config = ConfigLoader::new().env().load_str("").unwrap();
    assert!(config.validate_is_ok());
}

trait ValidateIsOk {
    fn validate_is_ok(&self) -> bool;
}

impl ValidateIsOk for BackstopConfig {
    fn validate_is_ok(&self) -> bool {
        backstop::core::config::Validate::validate(self).is_ok()
    }
}

/// Old code: config types were not `Serialize`; nothing printed the effective config.
#[test]
fn the_effective_config_prints_and_reads_back_equal() {
    let config = BackstopConfig::from_toml_table(SHIPPED, "backstop").unwrap();
    let text = config.to_toml_string().unwrap();
    let again =
        BackstopConfig::from_toml_str(&text).unwrap_or_else(|error| panic!("{error}\n{text}"));
    assert_eq!(again, config);
    // Defaults are written out, durations in the human form they are read in.
    assert!(text.contains("follower_timeout = \"10s\""), "{text}");
    assert!(text.contains("[pool]"), "{text}");
    assert!(text.contains("queue_capacity = 1024"), "{text}");

    let empty = BackstopConfig::default().to_toml_string().unwrap();
    assert_eq!(
        BackstopConfig::from_toml_str(&empty).unwrap(),
        BackstopConfig::default()
    );
}
