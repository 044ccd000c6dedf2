//! Issue 27: a file written for a fuller build, read by a build without some primitive's
//! feature, says which feature the section needs (it said "unknown field `batch`").
//! Runs in reduced-feature builds, e.g.
//! `cargo test -p backstop --no-default-features --features config,limit --test config_features`.

#![cfg(feature = "config")]

use backstop::config::{BackstopConfig, ConfigFileError};

const SECTIONS: &[(&str, bool)] = &[
    ("cache", cfg!(feature = "cache")),
    ("batch", cfg!(feature = "batch")),
    ("pool", cfg!(feature = "pool")),
    ("breaker", cfg!(feature = "breaker")),
    ("limit", cfg!(feature = "limit")),
    ("dedup", cfg!(feature = "dedup")),
    ("retry", cfg!(feature = "retry")),
    ("route", cfg!(feature = "route")),
    ("scale", cfg!(feature = "scale")),
];

#[test]
fn every_section_compiled_out_names_its_feature() {
    for (section, enabled) in SECTIONS {
        let text = format!("# a comment\n[{section}]\nunlikely_key = 1\n");
        let result = BackstopConfig::from_toml_str(&text);
        if *enabled {
            continue;
        }
        let error = result.unwrap_err();
        assert!(
            matches!(error, ConfigFileError::FeatureDisabled { .. }),
            "{section}: {error:?}"
        );
        assert_eq!(
            error.to_string(),
            format!(
                "configuration: `{section}` needs backstop's `{section}` feature (line 2, column 2)"
            )
        );
    }
}

#[test]
fn a_typo_is_still_an_unknown_field() {
    let error = BackstopConfig::from_toml_str("[cach]\n").unwrap_err();
    assert!(
        matches!(error, ConfigFileError::UnknownField { .. }),
        "{error:?}"
    );
}
