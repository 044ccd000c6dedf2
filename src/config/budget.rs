//! `[budget]`: token and money budgets that settle, per key, team and organisation.

/// `[budget]`: the levels (narrowest first, each with its quotas, periods and per-id
/// overrides), the cost table and the drop rule of
/// [`Budgets`](backstop_limit::Budgets) — the crate's own
/// [`BudgetConfig`](backstop_limit::BudgetConfig), so the file accepts exactly what
/// [`BudgetPlan::builder`](backstop_limit::BudgetPlan::builder) does. Money is in
/// micro-units (`5000000` is five dollars), prices in micro-units per million tokens;
/// periods are `"1m"`-style windows aligned to the epoch, or `"day"` / `"month"` (calendar,
/// UTC).
///
/// ```
/// use backstop::config::BackstopConfig;
///
/// let config = BackstopConfig::from_toml_str(r#"
/// [budget]
/// on_drop = "refund_all"
///
/// [[budget.levels]]
/// name = "key"
/// quotas = [{ meter = "requests", limit = 60, period = "1m" }, { meter = "tokens", limit = 100000, period = "1m" }]
///
/// [[budget.levels]]
/// name = "team"
/// quotas = [{ meter = "spend", limit = 50000000, period = "day" }]
/// overrides = { research = [{ meter = "spend", limit = 200000000, period = "day" }] }
///
/// [[budget.levels]]
/// name = "org"
/// quotas = [{ name = "monthly", meter = "spend", limit = 1000000000, period = "month" }]
///
/// [budget.models.gpt-4o]
/// input_per_million = 2500000
/// output_per_million = 10000000
/// "#)?;
/// let budgets = config.budget.as_ref().unwrap().budgets()?;
/// assert_eq!(budgets.plan().level_names().collect::<Vec<_>>(), ["key", "team", "org"]);
///
/// let error = BackstopConfig::from_toml_str(
///     "[[budget.levels]]\nname = \"key\"\nquotas = [{ meter = \"tokens\", limit = 0, period = \"1m\" }]\n",
/// )
/// .unwrap_err();
/// assert_eq!(error.field(), Some("budget.levels.0.quotas.0.limit"));
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// ```
pub type BudgetSection = backstop_limit::BudgetConfig;
