//! `[budget]` in the one configuration file: levels, overrides and the cost table build a
//! working budget, and every broken rule names its field by its dotted path.
#![cfg(all(feature = "config", feature = "limit"))]

use backstop::config::BackstopConfig;
use backstop::limit::{BudgetError, DropRule, TokenUsage};

mod support;
use support::refused_field;

const FILE: &str = r#"
[budget]
on_drop = "refund_all"
max_keys = 1000

[[budget.levels]]
name = "key"
quotas = [{ meter = "tokens", limit = 10000, period = "1m" }]

[[budget.levels]]
name = "team"
quotas = [{ meter = "spend", limit = 100000, period = "day" }]
overrides = { research = [{ meter = "spend", limit = 1000000, period = "day" }] }

[budget.models.gpt-4o]
input_per_million = 2500000
output_per_million = 10000000
"#;

#[test]
fn a_budget_section_builds_levels_overrides_and_prices() {
    let config = BackstopConfig::from_toml_str(FILE).unwrap();
    let section = config.budget.as_ref().unwrap();
    assert_eq!(section.on_drop, DropRule::RefundAll);
    let budgets = section.budgets().unwrap();
    // 1,000 + 8,000 tokens of gpt-4o: 82,500 micro-dollars, within the team's 100,000.
    let held = budgets
        .reserve(&["ann", "ml"], "gpt-4o", TokenUsage::new(1_000, 8_000))
        .unwrap();
    let refused = budgets
        .reserve(&["bob", "ml"], "gpt-4o", TokenUsage::new(1_000, 8_000))
        .unwrap_err();
    assert!(matches!(refused, BudgetError::Refused { level: 1, .. }));
    // The research team's override is ten times larger.
    budgets
        .reserve(
            &["cat", "research"],
            "gpt-4o",
            TokenUsage::new(1_000, 8_000),
        )
        .unwrap()
        .settle_usage(TokenUsage::new(1_000, 100));
    assert_eq!(
        held.settle_usage(TokenUsage::new(1_000, 100)).charged.spend,
        3_500
    );
    assert!(matches!(
        budgets.reserve(&["ann", "ml"], "unpriced", TokenUsage::default()),
        Err(BudgetError::UnknownModel(_))
    ));
}

#[test]
fn broken_budget_rules_name_their_field() {
    let level = |quota: &str| format!("[[budget.levels]]\nname = \"key\"\nquotas = [{quota}]\n");
    let deep: String = (0..9)
        .map(|i| format!("[[budget.levels]]\nname = \"l{i}\"\n"))
        .collect();
    for (text, field) in [
        (
            level(r#"{ meter = "tokens", limit = 0, period = "1m" }"#),
            "budget.levels.0.quotas.0.limit",
        ),
        (
            level(r#"{ meter = "tokens", limit = 1125899906842625, period = "1m" }"#),
            "budget.levels.0.quotas.0.limit",
        ),
        (
            level(r#"{ meter = "tokens", limit = 1, period = "400d" }"#),
            "budget.levels.0.quotas.0.period",
        ),
        // A value of the wrong shape is a parse error, located by serde's path.
        (
            level(r#"{ meter = "coins", limit = 1, period = "1m" }"#),
            "budget.levels.0.quotas.0.meter",
        ),
        (
            level(r#"{ meter = "tokens", limit = 1, period = "weekly" }"#),
            "budget.levels.0.quotas.0.period",
        ),
        (
            "[budget]\non_drop = \"charge_estimate\"\n".to_string(),
            "budget.levels",
        ),
        (deep, "budget.levels"),
        (format!("{}max_keys = 0\n", "[budget]\n"), "budget.max_keys"),
        (
            format!(
                "{}[budget.models.m]\ninput_per_million = 1000000000001\noutput_per_million = 0\n",
                level(r#"{ meter = "tokens", limit = 1, period = "1m" }"#)
            ),
            "budget.models.m.input_per_million",
        ),
        (
            "[budget]\nlevels = []\nsurprise = 1\n".to_string(),
            "budget.surprise",
        ),
    ] {
        assert_eq!(refused_field(&text).as_deref(), Some(field), "{text}");
    }
}
