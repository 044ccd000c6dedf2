//! What a call costs: requests, tokens and money, and the cost table that prices tokens.

use backstop_core::config::{ConfigError, ensure, ensure_at_most};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// What a budget quota counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BudgetMeter {
    /// Calls: every reservation counts one.
    Requests,
    /// Tokens: input plus output.
    Tokens,
    /// Money in micro-units of the currency (10⁻⁶ dollars for a dollar budget), priced
    /// by the [`CostTable`].
    Spend,
}

impl BudgetMeter {
    /// Index into [`Charges`]' fields.
    #[inline]
    pub(crate) fn index(self) -> usize {
        match self {
            Self::Requests => 0,
            Self::Tokens => 1,
            Self::Spend => 2,
        }
    }

    /// The name used in quota names and stats.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requests => "requests",
            Self::Tokens => "tokens",
            Self::Spend => "spend",
        }
    }
}

/// The tokens of one LLM call, as estimated before it and as reported after it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens (before the call: `max_tokens`).
    pub output_tokens: u64,
}

impl TokenUsage {
    /// `input` prompt tokens and `output` completion tokens.
    pub const fn new(input: u64, output: u64) -> Self {
        Self {
            input_tokens: input,
            output_tokens: output,
        }
    }

    /// Input plus output, saturating.
    pub const fn total(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

/// What a call charges each meter: one request, its tokens, its price.
///
/// Amounts are exact integers (money in micro-units), so a refund returns exactly what a
/// reservation took and totals add up to the last unit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Charges {
    /// Calls.
    pub requests: u64,
    /// Tokens.
    pub tokens: u64,
    /// Money in micro-units.
    pub spend: u64,
}

impl Charges {
    /// Nothing.
    pub const ZERO: Self = Self {
        requests: 0,
        tokens: 0,
        spend: 0,
    };

    /// `requests` calls, `tokens` tokens and `spend` micro-units.
    pub const fn new(requests: u64, tokens: u64, spend: u64) -> Self {
        Self {
            requests,
            tokens,
            spend,
        }
    }

    /// The amount on `meter`.
    #[inline]
    pub fn get(&self, meter: BudgetMeter) -> u64 {
        self.as_array()[meter.index()]
    }

    #[inline]
    pub(crate) fn as_array(&self) -> [u64; 3] {
        [self.requests, self.tokens, self.spend]
    }

    /// Meter by meter `self - other`, floored at zero.
    pub fn saturating_sub(&self, other: &Self) -> Self {
        Self::new(
            self.requests.saturating_sub(other.requests),
            self.tokens.saturating_sub(other.tokens),
            self.spend.saturating_sub(other.spend),
        )
    }

    /// Whether no meter of `self` is above `other`'s.
    #[inline]
    pub(crate) fn within(&self, other: &Self) -> bool {
        self.requests <= other.requests && self.tokens <= other.tokens && self.spend <= other.spend
    }

    /// Meter by meter `self + other`, saturating.
    pub fn saturating_add(&self, other: &Self) -> Self {
        Self::new(
            self.requests.saturating_add(other.requests),
            self.tokens.saturating_add(other.tokens),
            self.spend.saturating_add(other.spend),
        )
    }
}

/// A model's token prices in micro-units per million tokens, as providers list them:
/// `$2.50 / 1M input tokens` is `2_500_000`.
///
/// A call costs `⌈(input × input_price + output × output_price) / 10⁶⌉` micro-units:
/// integer arithmetic (in 128 bits) rounded up once per call, so the same usage always
/// costs the same amount and a settlement refunds or charges the exact difference.
///
/// ```
/// use backstop_limit::{ModelPrice, TokenUsage};
///
/// // gpt-4o-mini: $0.15 input, $0.60 output per million tokens.
/// let mini = ModelPrice::per_million(150_000, 600_000);
/// assert_eq!(mini.cost(TokenUsage::new(1_000_000, 0)), 150_000); // $0.15
/// assert_eq!(mini.cost(TokenUsage::new(10, 10)), 8); // 7.5 micro-dollars, rounded up
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    /// Micro-units per million input tokens.
    pub input_per_million: u64,
    /// Micro-units per million output tokens.
    pub output_per_million: u64,
}

impl ModelPrice {
    /// The highest price accepted: 10¹² micro-units (a million currency units) per million
    /// tokens, far above any model and far from overflow.
    pub const MAX_PRICE: u64 = 1_000_000_000_000;

    /// `input` and `output` micro-units per million tokens.
    pub const fn per_million(input: u64, output: u64) -> Self {
        Self {
            input_per_million: input,
            output_per_million: output,
        }
    }

    /// What `usage` costs, in micro-units (saturating at `u64::MAX`).
    pub fn cost(&self, usage: TokenUsage) -> u64 {
        let total = u128::from(usage.input_tokens) * u128::from(self.input_per_million)
            + u128::from(usage.output_tokens) * u128::from(self.output_per_million);
        u64::try_from(total.div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }

    /// Both prices within [`MAX_PRICE`](Self::MAX_PRICE).
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        ensure_at_most("input_per_million", self.input_per_million, Self::MAX_PRICE)?;
        ensure_at_most(
            "output_per_million",
            self.output_per_million,
            Self::MAX_PRICE,
        )
    }

    /// `usage` as charges: one request, its tokens and its price.
    pub fn charges(&self, usage: TokenUsage) -> Charges {
        Charges::new(1, usage.total(), self.cost(usage))
    }
}

/// Prices per model, turning token usage into money charged against spend quotas.
///
/// A model missing from the table takes the `default` price when there is one; otherwise
/// a reservation for it is refused with [`BudgetError::UnknownModel`](crate::BudgetError)
/// when any level has a spend quota (a budget must not be bypassed by a typo).
///
/// ```
/// use backstop_limit::{CostTable, ModelPrice};
///
/// let table = CostTable::new()
///     .with("gpt-4o", ModelPrice::per_million(2_500_000, 10_000_000))
///     .unwrap()
///     .with_default(ModelPrice::per_million(1_000_000, 1_000_000))
///     .unwrap();
/// assert_eq!(table.price("gpt-4o").unwrap().output_per_million, 10_000_000);
/// assert_eq!(table.price("local-llama").unwrap().input_per_million, 1_000_000);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CostTable {
    models: HashMap<String, ModelPrice>,
    default: Option<ModelPrice>,
}

impl CostTable {
    /// The most models one table prices.
    pub const MAX_MODELS: usize = 4_096;

    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Prices `model` (replacing an earlier price for it).
    pub fn with(
        mut self,
        model: impl Into<String>,
        price: ModelPrice,
    ) -> Result<Self, ConfigError> {
        let model = model.into();
        ensure(
            !model.is_empty(),
            "models",
            "a model name must not be empty",
        )?;
        price
            .validate()
            .map_err(|e| e.within(&format!("models.{model}")))?;
        self.models.insert(model, price);
        ensure_at_most("models", self.models.len() as u64, Self::MAX_MODELS as u64)?;
        Ok(self)
    }

    /// The price of every model the table does not name.
    pub fn with_default(mut self, price: ModelPrice) -> Result<Self, ConfigError> {
        price.validate().map_err(|e| e.within("default"))?;
        self.default = Some(price);
        Ok(self)
    }

    /// The price of `model`: its own, or the default.
    pub fn price(&self, model: &str) -> Option<ModelPrice> {
        self.models.get(model).copied().or(self.default)
    }

    /// Models priced by name.
    pub fn len(&self) -> usize {
        self.models.len()
    }

    /// Whether no model is priced by name.
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_are_exact_integers_rounded_up_once_per_call() {
        let gpt4o = ModelPrice::per_million(2_500_000, 10_000_000);
        assert_eq!(gpt4o.cost(TokenUsage::new(1_000, 500)), 7_500);
        assert_eq!(gpt4o.cost(TokenUsage::new(1, 0)), 3);
        assert_eq!(gpt4o.cost(TokenUsage::default()), 0);
        let huge = ModelPrice::per_million(ModelPrice::MAX_PRICE, ModelPrice::MAX_PRICE);
        assert_eq!(huge.cost(TokenUsage::new(u64::MAX, u64::MAX)), u64::MAX);
        assert_eq!(
            gpt4o.charges(TokenUsage::new(10, 20)),
            Charges::new(1, 30, 225)
        );
    }

    #[test]
    fn bad_prices_name_their_model_and_field() {
        let error = CostTable::new()
            .with("m", ModelPrice::per_million(ModelPrice::MAX_PRICE + 1, 0))
            .unwrap_err();
        assert_eq!(error.field(), "models.m.input_per_million");
        assert_eq!(
            CostTable::new()
                .with("", ModelPrice::default())
                .unwrap_err()
                .field(),
            "models"
        );
        assert!(CostTable::new().price("x").is_none());
    }
}
