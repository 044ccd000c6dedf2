//! Token and money budgets that settle: every provider call reserves its estimate (the
//! prompt's tokens plus `max_tokens`, priced as the primary's model) on its user's key,
//! its team and the organisation, all or none, and is settled with what it actually used,
//! priced as the model that answered.

use backstop::core::{Error, StackError};
use backstop::limit::{
    BudgetConfig, BudgetPeriod, BudgetPlan, BudgetQuota, BudgetReservation, Budgets, Charges,
    CostTable, ModelPrice, TokenUsage,
};

use crate::fleet::Ask;
use crate::provider::{self, ProviderError};

/// The teams users belong to, in turn.
pub(crate) const TEAMS: [&str; 3] = ["search", "support", "research"];
/// The one organisation.
pub(crate) const ORG: &str = "acme";

/// The gateway's budgets: levels `key`, `team`, `org` (a configured plan may have fewer).
#[derive(Clone)]
pub(crate) struct Billing {
    pub(crate) budgets: Budgets,
}

impl Billing {
    /// The configured `[budget]`, else generous per-key, per-team and per-org budgets over
    /// the two providers' models.
    pub(crate) fn new(config: Option<&BudgetConfig>) -> Result<Self, String> {
        let budgets = match config {
            Some(config) => config
                .budgets()
                .map_err(|error| error.within("budget").to_string())?,
            None => Budgets::new(default_plan().map_err(|error| error.to_string())?),
        };
        let depth = budgets.plan().depth();
        if depth > 3 {
            return Err(format!(
                "budget: the gateway charges a key, a team and an org, not {depth} levels"
            ));
        }
        Ok(Self { budgets })
    }

    /// The user's team: users take the teams in turn.
    pub(crate) fn team_of(user: &str) -> &'static str {
        let number: usize = user
            .rsplit('-')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        TEAMS[number % TEAMS.len()]
    }

    /// Reserves one call's estimate on the user's key, team and org; a refusal is a 429.
    pub(crate) fn reserve(&self, ask: &Ask) -> Result<BudgetReservation, Error<ProviderError>> {
        let path = [ask.user.as_str(), Self::team_of(&ask.user), ORG];
        let depth = self.budgets.plan().depth();
        self.budgets
            .reserve(
                &path[..depth],
                provider::PRIMARY_MODEL,
                TokenUsage::new(ask.prompt_tokens, ask.max_tokens),
            )
            .map_err(|error| Error::rejected(error.rejection()))
    }

    /// Settles with the usage of the model that answered; a failed call is one request
    /// and no tokens.
    pub(crate) fn settle(&self, reservation: BudgetReservation, used: Option<(&str, TokenUsage)>) {
        let charges = match used {
            Some((model, usage)) => match self.budgets.plan().costs().price(model) {
                Some(price) => price.charges(usage),
                None => Charges::new(1, usage.total(), 0),
            },
            None => Charges::new(1, 0, 0),
        };
        reservation.settle(charges);
    }

    /// Spend this period per id of `level`, largest first.
    pub(crate) fn spend(&self, level: &str) -> Vec<(String, Charges)> {
        let stats = self.budgets.stats();
        let mut spend: Vec<(String, Charges)> = stats
            .level(level)
            .map(|level| {
                level
                    .spend
                    .iter()
                    .map(|entry| (entry.id.clone(), entry.totals))
                    .collect()
            })
            .unwrap_or_default();
        spend.sort_by(|a, b| b.1.spend.cmp(&a.1.spend).then(a.0.cmp(&b.0)));
        spend
    }
}

/// Per key 600 calls and 200,000 tokens a minute; per team $50 a day; the org $1,000 a
/// month; the two models at list prices (micro-dollars per million tokens).
fn default_plan() -> Result<BudgetPlan, backstop::core::config::ConfigError> {
    BudgetPlan::builder()
        .level(
            "key",
            [
                BudgetQuota::requests(600, BudgetPeriod::minute())?,
                BudgetQuota::tokens(200_000, BudgetPeriod::minute())?,
            ],
        )
        .level("team", [BudgetQuota::spend(50_000_000, BudgetPeriod::Day)?])
        .level(
            "org",
            [BudgetQuota::spend(1_000_000_000, BudgetPeriod::Month)?],
        )
        .costs(
            CostTable::new()
                .with(
                    provider::PRIMARY_MODEL,
                    ModelPrice::per_million(2_500_000, 10_000_000),
                )?
                .with(
                    provider::FALLBACK_MODEL,
                    ModelPrice::per_million(150_000, 600_000),
                )?,
        )
        .build()
}

/// Micro-units as dollars.
pub(crate) fn dollars(micros: u64) -> String {
    format!("${:.4}", micros as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::Priority;

    fn ask(user: &str) -> Ask {
        Ask {
            id: 0,
            user: user.into(),
            prompt: "p".into(),
            prompt_tokens: 1_000,
            max_tokens: 1_000,
            priority: Priority::Background,
        }
    }

    #[test]
    fn a_call_reserves_its_estimate_and_settles_what_the_answering_model_used() {
        let billing = Billing::new(None).unwrap();
        assert_eq!(Billing::team_of("user-4"), "support");
        let reservation = billing.reserve(&ask("user-4")).unwrap();
        // 1,000 + 1,000 tokens at $2.50 / $10 per million.
        assert_eq!(reservation.reserved(), Charges::new(1, 2_000, 12_500));
        billing.settle(
            reservation,
            Some((provider::FALLBACK_MODEL, TokenUsage::new(1_000, 500))),
        );
        // The fallback answered: 1,000 × $0.15 + 500 × $0.60 per million = 450 µ$.
        let teams = billing.spend("team");
        assert_eq!(
            teams,
            [("support".to_string(), Charges::new(1, 1_500, 450))]
        );
        assert_eq!(billing.spend("org")[0].1.spend, 450);

        let failed = billing.reserve(&ask("user-5")).unwrap();
        billing.settle(failed, None);
        assert_eq!(
            billing.spend("key")[1],
            ("user-5".to_string(), Charges::new(1, 0, 0))
        );
    }

    #[test]
    fn an_exhausted_budget_refuses_with_a_429_and_charges_nothing() {
        let config: BudgetConfig = serde_json::from_str(
            r#"{ "levels": [
                { "name": "key", "quotas": [{ "meter": "tokens", "limit": 3000, "period": "1m" }] },
                { "name": "team", "quotas": [{ "meter": "requests", "limit": 100, "period": "1m" }] }
            ], "default_price": { "input_per_million": 1000000, "output_per_million": 1000000 } }"#,
        )
        .unwrap();
        let billing = Billing::new(Some(&config)).unwrap();
        let held = billing.reserve(&ask("user-1")).unwrap();
        let refused = billing.reserve(&ask("user-1")).err().unwrap();
        assert!(matches!(
            refused.rejection().unwrap().kind,
            backstop::core::RejectKind::RateLimited { .. }
        ));
        drop(held); // unsettled: the estimate stays charged (the default drop rule)
        assert_eq!(billing.spend("team")[0].1.requests, 1);
    }
}
