//! What a budget enforces: levels (key, team, organisation…), each with its quotas, and the
//! cost table; validated once, shared by the local and the Redis budgets.

use super::money::{BudgetMeter, CostTable};
use super::period::BudgetPeriod;
use backstop_core::config::{ConfigError, ensure, ensure_at_most};
use dashmap::DashMap;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// One quota of one level: at most `limit` units of a meter per period.
///
/// ```
/// use backstop_limit::{BudgetMeter, BudgetPeriod, BudgetQuota};
///
/// let daily = BudgetQuota::spend(5_000_000, BudgetPeriod::Day).unwrap(); // $5 a day
/// assert_eq!((daily.name(), daily.meter(), daily.limit()), ("spend", BudgetMeter::Spend, 5_000_000));
/// let tpm = BudgetQuota::new("tpm", BudgetMeter::Tokens, 100_000, BudgetPeriod::minute()).unwrap();
/// assert_eq!(tpm.period(), BudgetPeriod::minute());
/// assert_eq!(BudgetQuota::tokens(0, BudgetPeriod::Day).unwrap_err().field(), "limit");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetQuota {
    name: Arc<str>,
    meter: BudgetMeter,
    limit: u64,
    period: BudgetPeriod,
    /// `period.micros()`, kept so that a decision compares a ledger slot's period with one
    /// load.
    window: u64,
    /// `level-name`, the quota's name in `QuotaState`s and headers; set by its level.
    label: Arc<str>,
}

impl BudgetQuota {
    /// The largest limit (and the largest amount a reservation may ask): 2⁵⁰, above any
    /// budget (a billion dollars in micro-units) and exact in the doubles of Redis's Lua.
    pub const MAX_LIMIT: u64 = 1 << 50;

    /// A quota named `name` (ASCII letters, digits, `-`, `_`: it becomes a header name) of
    /// at most `limit` (1 to [`MAX_LIMIT`](Self::MAX_LIMIT)) on `meter` per `period`.
    pub fn new(
        name: &str,
        meter: BudgetMeter,
        limit: u64,
        period: BudgetPeriod,
    ) -> Result<Self, ConfigError> {
        ensure(
            valid_name(name),
            "name",
            "must be non-empty and made of ASCII letters, digits, `-` and `_`",
        )?;
        ensure(limit > 0, "limit", "must be at least 1")?;
        ensure_at_most("limit", limit, Self::MAX_LIMIT)?;
        period.validate()?;
        Ok(Self {
            name: name.into(),
            meter,
            limit,
            period,
            window: period.micros(),
            label: name.into(),
        })
    }

    /// `limit` calls per `period`, named `requests`.
    pub fn requests(limit: u64, period: BudgetPeriod) -> Result<Self, ConfigError> {
        Self::new("requests", BudgetMeter::Requests, limit, period)
    }

    /// `limit` tokens per `period`, named `tokens`.
    pub fn tokens(limit: u64, period: BudgetPeriod) -> Result<Self, ConfigError> {
        Self::new("tokens", BudgetMeter::Tokens, limit, period)
    }

    /// `limit` micro-units of money per `period`, named `spend`.
    pub fn spend(limit: u64, period: BudgetPeriod) -> Result<Self, ConfigError> {
        Self::new("spend", BudgetMeter::Spend, limit, period)
    }

    /// The quota's name within its level.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What it counts.
    pub fn meter(&self) -> BudgetMeter {
        self.meter
    }

    /// Units per period.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The period it counts over.
    pub fn period(&self) -> BudgetPeriod {
        self.period
    }

    /// The period's length in microseconds (0 for the calendar month), as
    /// [`BudgetPeriod::micros`] gives it.
    #[inline]
    pub(crate) fn window(&self) -> u64 {
        self.window
    }

    /// `level-name`, as reported in quota states.
    pub(crate) fn label(&self) -> &Arc<str> {
        &self.label
    }

    fn labelled(mut self, level: &str) -> Self {
        self.label = format!("{level}-{}", self.name).into();
        self
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The quotas of one level, labelled with the level's name.
pub(crate) type LevelQuotas = Arc<[BudgetQuota]>;

/// Checks and labels one level's quotas.
pub(crate) fn level_quotas(
    level: &str,
    quotas: Vec<BudgetQuota>,
) -> Result<LevelQuotas, ConfigError> {
    ensure_at_most(
        "quotas",
        quotas.len() as u64,
        BudgetPlan::MAX_QUOTAS_PER_LEVEL as u64,
    )?;
    for (i, quota) in quotas.iter().enumerate() {
        ensure(
            quotas[..i].iter().all(|q| q.name != quota.name),
            "quotas",
            format!("name `{}` more than once", quota.name),
        )?;
    }
    Ok(quotas.into_iter().map(|q| q.labelled(level)).collect())
}

/// A level's per-id quotas as they stand at runtime (the plan's overrides, then those set
/// and removed since), read on every decision of the local and the Redis budgets alike: a
/// flag skips the map while the level has none.
#[derive(Debug)]
pub(crate) struct Overrides {
    map: DashMap<String, LevelQuotas>,
    any: AtomicBool,
}

impl Overrides {
    /// The overrides `level` starts with.
    pub(crate) fn of(level: &PlanLevel) -> Self {
        Self {
            any: AtomicBool::new(!level.overrides.is_empty()),
            map: level
                .overrides
                .iter()
                .map(|(id, quotas)| (id.clone(), quotas.clone()))
                .collect(),
        }
    }

    /// Holds `id` to `quotas` from now on.
    pub(crate) fn set(&self, id: &str, quotas: LevelQuotas) {
        self.map.insert(id.to_string(), quotas);
        self.any.store(true, Ordering::Release);
    }

    /// Returns `id` to the level's quotas.
    pub(crate) fn remove(&self, id: &str) {
        self.map.remove(id);
        if self.map.is_empty() {
            self.any.store(false, Ordering::Release);
        }
    }

    /// Holds `id` at the level named `level` of `plan` to `quotas`, in `all` (every level's
    /// overrides, in the plan's order): what local and Redis budgets' `set_override` do.
    pub(crate) fn set_in(
        all: &[Self],
        plan: &BudgetPlan,
        level: &str,
        id: &str,
        quotas: Vec<BudgetQuota>,
    ) -> Result<(), ConfigError> {
        let index = plan.level_of(level)?;
        all[index].set(id, level_quotas(level, quotas)?);
        Ok(())
    }

    /// Returns `id` at the level named `level` of `plan` to the level's quotas, in `all`.
    pub(crate) fn remove_in(
        all: &[Self],
        plan: &BudgetPlan,
        level: &str,
        id: &str,
    ) -> Result<(), ConfigError> {
        all[plan.level_of(level)?].remove(id);
        Ok(())
    }

    /// The quotas of `id`, if it has its own.
    #[inline]
    pub(crate) fn get(&self, id: &str) -> Option<LevelQuotas> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        self.map.get(id).map(|quotas| quotas.clone())
    }
}

/// One level of a hierarchy: its name (`key`, `team`, `org`), its quotas and per-id
/// overrides.
#[derive(Debug, Clone)]
pub(crate) struct PlanLevel {
    pub(crate) name: Arc<str>,
    pub(crate) quotas: LevelQuotas,
    pub(crate) overrides: HashMap<String, LevelQuotas>,
}

/// Everything a budget enforces, validated: levels from the narrowest (the API key) to the
/// widest (the organisation), each with its own quotas, periods and per-id overrides, the
/// cost table, and what a reservation dropped without settling does.
///
/// A call names one id per level (its path, `["key-1", "team-ml", "acme"]`) and is charged
/// at every level, all or none. Build it with [`BudgetPlan::builder`] or from a
/// [`BudgetConfig`](crate::BudgetConfig); then make a local [`Budgets`](crate::Budgets) or
/// (feature `redis`) a `RedisBudgets` from it. Cheap to clone.
///
/// ```
/// use backstop_limit::{BudgetPeriod, BudgetPlan, BudgetQuota, CostTable, DropRule, ModelPrice};
///
/// let plan = BudgetPlan::builder()
///     .level("key", [BudgetQuota::requests(60, BudgetPeriod::minute())?])
///     .level("team", [BudgetQuota::spend(50_000_000, BudgetPeriod::Day)?])
///     .level("org", [BudgetQuota::spend(1_000_000_000, BudgetPeriod::Month)?])
///     .override_quotas("team", "research", [BudgetQuota::spend(200_000_000, BudgetPeriod::Day)?])
///     .costs(CostTable::new().with("gpt-4o", ModelPrice::per_million(2_500_000, 10_000_000))?)
///     .on_drop(DropRule::RefundAll)
///     .build()?;
/// assert_eq!(plan.level_names().collect::<Vec<_>>(), ["key", "team", "org"]);
/// # Ok::<_, backstop_core::config::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct BudgetPlan {
    pub(crate) levels: Arc<[PlanLevel]>,
    pub(crate) costs: Arc<CostTable>,
    pub(crate) on_drop: DropRule,
    /// Whether any quota at any level (or override) counts money.
    pub(crate) prices_needed: bool,
}

/// What happens to a reservation dropped without being settled: a cancelled request, a
/// panic, an early return.
///
/// It is applied exactly once, by the reservation's `Drop` (contained: a failure there is
/// counted, never a panic in `Drop`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DropRule {
    /// Keep the estimate charged: the provider may have done (and billed) the work before
    /// the caller went away, so a budget never undercounts. The default.
    #[default]
    ChargeEstimate,
    /// Return the whole reservation (requests included), as if the call never happened.
    RefundAll,
}

impl BudgetPlan {
    /// The most levels a path may have.
    pub const MAX_LEVELS: usize = 8;
    /// The most quotas one level holds.
    pub const MAX_QUOTAS_PER_LEVEL: usize = 16;
    /// The most per-id overrides a plan holds (all levels together).
    pub const MAX_OVERRIDES: usize = 65_536;

    /// A plan built level by level.
    pub fn builder() -> BudgetPlanBuilder {
        BudgetPlanBuilder::default()
    }

    /// The levels' names, narrowest first.
    pub fn level_names(&self) -> impl Iterator<Item = &str> {
        self.levels.iter().map(|l| &*l.name)
    }

    /// The number of levels (the length of every path).
    pub fn depth(&self) -> usize {
        self.levels.len()
    }

    /// The cost table.
    pub fn costs(&self) -> &CostTable {
        &self.costs
    }

    /// The rule for reservations dropped without settling.
    pub fn on_drop(&self) -> DropRule {
        self.on_drop
    }

    /// The index of the level named `name`.
    pub(crate) fn level_index(&self, name: &str) -> Option<usize> {
        self.levels.iter().position(|l| &*l.name == name)
    }

    /// The index of the level named `name`, or an error naming the field `level`.
    pub(crate) fn level_of(&self, name: &str) -> Result<usize, ConfigError> {
        self.level_index(name).ok_or_else(|| {
            ConfigError::new("level", format!("`{name}` is not a level of the plan"))
        })
    }
}

/// Builds a [`BudgetPlan`]; errors are reported by [`build`](Self::build), naming the field.
#[derive(Debug, Default)]
pub struct BudgetPlanBuilder {
    levels: Vec<(String, Vec<BudgetQuota>)>,
    overrides: Vec<(String, String, Vec<BudgetQuota>)>,
    costs: CostTable,
    on_drop: DropRule,
}

impl BudgetPlanBuilder {
    /// Adds the next wider level (the first is the narrowest, usually the API key).
    pub fn level(mut self, name: &str, quotas: impl IntoIterator<Item = BudgetQuota>) -> Self {
        self.levels
            .push((name.to_string(), quotas.into_iter().collect()));
        self
    }

    /// Gives `id` at level `level` its own quotas instead of the level's (a premium team).
    pub fn override_quotas(
        mut self,
        level: &str,
        id: &str,
        quotas: impl IntoIterator<Item = BudgetQuota>,
    ) -> Self {
        self.overrides.push((
            level.to_string(),
            id.to_string(),
            quotas.into_iter().collect(),
        ));
        self
    }

    backstop_core::config_setters! {
        self;
        /// The prices of spend quotas.
        costs: CostTable,
        /// What a reservation dropped without settling does (default
        /// [`DropRule::ChargeEstimate`]).
        on_drop: DropRule,
    }

    /// Validates: 1 to [`MAX_LEVELS`](BudgetPlan::MAX_LEVELS) levels with distinct names,
    /// at most [`MAX_QUOTAS_PER_LEVEL`](BudgetPlan::MAX_QUOTAS_PER_LEVEL) quotas each, and
    /// overrides of existing levels.
    pub fn build(self) -> Result<BudgetPlan, ConfigError> {
        ensure(
            !self.levels.is_empty(),
            "levels",
            "must hold at least one level",
        )?;
        ensure_at_most(
            "levels",
            self.levels.len() as u64,
            BudgetPlan::MAX_LEVELS as u64,
        )?;
        ensure_at_most(
            "overrides",
            self.overrides.len() as u64,
            BudgetPlan::MAX_OVERRIDES as u64,
        )?;
        let mut levels = Vec::with_capacity(self.levels.len());
        for (i, (name, quotas)) in self.levels.into_iter().enumerate() {
            let field = format!("levels.{i}");
            ensure(
                valid_name(&name),
                "name",
                "must be non-empty and made of ASCII letters, digits, `-` and `_`",
            )
            .map_err(|e| e.within(&field))?;
            ensure(
                levels.iter().all(|l: &PlanLevel| *l.name != *name),
                "name",
                format!("`{name}` names two levels"),
            )
            .map_err(|e| e.within(&field))?;
            let quotas = level_quotas(&name, quotas).map_err(|e| e.within(&field))?;
            levels.push(PlanLevel {
                name: name.into(),
                quotas,
                overrides: HashMap::new(),
            });
        }
        for (level, id, quotas) in self.overrides {
            let Some(index) = levels.iter().position(|l| *l.name == *level) else {
                return Err(ConfigError::new(
                    "overrides",
                    format!("name level `{level}`, which the plan does not have"),
                ));
            };
            let quotas = level_quotas(&level, quotas)
                .map_err(|e| e.within(&format!("overrides.{level}.{id}")))?;
            levels[index].overrides.insert(id, quotas);
        }
        let prices_needed = levels.iter().any(|l| {
            l.quotas
                .iter()
                .chain(l.overrides.values().flat_map(|q| q.iter()))
                .any(|q| q.meter == BudgetMeter::Spend)
        });
        Ok(BudgetPlan {
            levels: levels.into(),
            costs: Arc::new(self.costs),
            on_drop: self.on_drop,
            prices_needed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q() -> BudgetQuota {
        BudgetQuota::requests(1, BudgetPeriod::Day).unwrap()
    }

    #[test]
    fn plans_are_bounded_and_errors_name_the_field() {
        assert_eq!(BudgetPlan::builder().build().unwrap_err().field(), "levels");
        let deep = (0..9).fold(BudgetPlan::builder(), |b, i| {
            b.level(&format!("l{i}"), [q()])
        });
        assert_eq!(deep.build().unwrap_err().field(), "levels");
        let twice = BudgetPlan::builder()
            .level("key", [q()])
            .level("key", [q()]);
        assert_eq!(twice.build().unwrap_err().field(), "levels.1.name");
        let same_name = BudgetPlan::builder().level("key", [q(), q()]);
        assert_eq!(same_name.build().unwrap_err().field(), "levels.0.quotas");
        let many = BudgetPlan::builder().level(
            "key",
            (0..17).map(|i| {
                BudgetQuota::new(&format!("q{i}"), BudgetMeter::Tokens, 1, BudgetPeriod::Day)
                    .unwrap()
            }),
        );
        assert_eq!(many.build().unwrap_err().field(), "levels.0.quotas");
        let stray = BudgetPlan::builder()
            .level("key", [q()])
            .override_quotas("team", "x", [q()]);
        assert_eq!(stray.build().unwrap_err().field(), "overrides");
        assert_eq!(
            BudgetQuota::new("a b", BudgetMeter::Tokens, 1, BudgetPeriod::Day)
                .unwrap_err()
                .field(),
            "name"
        );
        assert_eq!(
            BudgetQuota::tokens(BudgetQuota::MAX_LIMIT + 1, BudgetPeriod::Day)
                .unwrap_err()
                .field(),
            "limit"
        );
    }

    #[test]
    fn quotas_are_labelled_with_their_level() {
        let plan = BudgetPlan::builder()
            .level("team", [q()])
            .override_quotas("team", "vip", [q()])
            .build()
            .unwrap();
        assert_eq!(&**plan.levels[0].quotas[0].label(), "team-requests");
        assert_eq!(
            &**plan.levels[0].overrides["vip"][0].label(),
            "team-requests"
        );
        assert!(!plan.prices_needed);
    }
}
