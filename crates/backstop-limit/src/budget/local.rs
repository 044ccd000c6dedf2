//! The in-process budget: one ledger per id per level, reserved all or none across levels.

use super::error::BudgetError;
use super::ledger::{Ledger, NoRoom};
use super::money::{Charges, ModelPrice, TokenUsage};
use super::period::WallTime;
use super::plan::{BudgetPlan, BudgetQuota, LevelQuotas, Overrides};
use super::reservation::BudgetReservation;
use super::stats::{BudgetCounters, BudgetStats, EntrySpend, LevelStats};
use crate::cap::KeyCap;
use crate::error::limited;
use backstop_core::config::ConfigError;
use backstop_core::{Clock, DefaultClock, QuotaState};
use dashmap::DashMap;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

/// One id at one level: its name, its ledger, and the budget's [`Rules`]. A reservation
/// holds its entries and reaches the clock, the quotas and the counters through them, so
/// reserving clones no handle of the whole budget; the rules hold no entry, so entries and
/// rules make no cycle.
#[derive(Debug)]
pub(crate) struct Entry<C> {
    id: Box<str>,
    ledger: Mutex<Ledger>,
    rules: Arc<Rules<C>>,
}

impl<C> Entry<C> {
    /// The ledger. No code that can panic runs under the lock, so a poisoned lock (which
    /// cannot happen) would still hold consistent balances.
    #[inline]
    pub(crate) fn lock(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn id(&self) -> &str {
        &self.id
    }
}

/// A level's ids and their key cap.
#[derive(Debug)]
struct Level<C> {
    entries: DashMap<String, Arc<Entry<C>>>,
    cap: KeyCap,
    evicted: AtomicU64,
}

/// A level's quotas for one id: the level's own (borrowed) or an override.
pub(crate) enum Quotas<'a> {
    Default(&'a [BudgetQuota]),
    Override(LevelQuotas),
}

impl Deref for Quotas<'_> {
    type Target = [BudgetQuota];

    #[inline]
    fn deref(&self) -> &[BudgetQuota] {
        match self {
            Self::Default(quotas) => quotas,
            Self::Override(quotas) => quotas,
        }
    }
}

/// What every decision reads besides the ledgers: the plan, the overrides set at runtime,
/// the clock and the counters.
#[derive(Debug)]
pub(crate) struct Rules<C> {
    pub(crate) plan: BudgetPlan,
    overrides: Box<[Overrides]>,
    time: WallTime<C>,
    pub(crate) counters: BudgetCounters,
}

impl<C: Clock> Rules<C> {
    /// Now, in microseconds since the Unix epoch.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        self.time.now_micros()
    }
}

impl<C> Rules<C> {
    /// The quotas of `id` at `level`: its override, or the level's own.
    #[inline]
    pub(crate) fn quotas(&self, level: usize, id: &str) -> Quotas<'_> {
        match self.overrides[level].get(id) {
            Some(quotas) => Quotas::Override(quotas),
            None => Quotas::Default(&self.plan.levels[level].quotas),
        }
    }
}

#[derive(Debug)]
struct Shared<C> {
    rules: Arc<Rules<C>>,
    levels: Box<[Level<C>]>,
}

/// Budgets enforced in this process: every call reserves an estimate on every quota of
/// every level of its path (key, team, organisation…) all or none, and settles it with
/// what it actually used. A cheap-clone handle (clones share the balances).
///
/// See the [module docs](crate::budget) for the rules; `RedisBudgets`
/// (feature `redis`) enforces the same plan across processes.
///
/// ```
/// use backstop_core::ManualClock;
/// use backstop_limit::{BudgetPeriod, BudgetPlan, BudgetQuota, Budgets, CostTable, ModelPrice, TokenUsage};
/// use std::time::SystemTime;
///
/// let plan = BudgetPlan::builder()
///     .level("key", [BudgetQuota::tokens(10_000, BudgetPeriod::minute())?])
///     .level("team", [BudgetQuota::spend(1_000_000, BudgetPeriod::Day)?]) // $1 a day
///     .costs(CostTable::new().with("gpt-4o", ModelPrice::per_million(2_500_000, 10_000_000))?)
///     .build()?;
/// let budgets = Budgets::with_clock(plan, ManualClock::new(), SystemTime::now());
///
/// // Before the call: the prompt's tokens plus max_tokens.
/// let reservation = budgets.reserve(&["key-1", "team-a"], "gpt-4o", TokenUsage::new(1_000, 4_000))?;
/// assert_eq!(reservation.reserved().tokens, 5_000);
/// // After it: what the provider reported. The unused part comes back exactly.
/// let settled = reservation.settle_usage(TokenUsage::new(1_000, 250));
/// assert_eq!(settled.charged.tokens, 1_250);
/// assert_eq!(settled.charged.spend, 5_000); // $0.0025 + $0.0025
/// let states = budgets.quota_states(&["key-1", "team-a"])?;
/// assert_eq!((&*states[0].name, states[0].remaining), ("key-tokens", 8_750));
/// assert_eq!((&*states[1].name, states[1].remaining), ("team-spend", 995_000));
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Budgets<C = DefaultClock> {
    shared: Arc<Shared<C>>,
}

impl<C> Clone for Budgets<C> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl Budgets<DefaultClock> {
    /// Budgets enforcing `plan`, on the wall clock.
    pub fn new(plan: BudgetPlan) -> Self {
        Self::with_clock(plan, DefaultClock::default(), SystemTime::now())
    }
}

impl<C: Clock> Budgets<C> {
    /// Budgets enforcing `plan`, reading time from `clock` starting at the wall time
    /// `start` (tests drive calendar boundaries with a `ManualClock` and a chosen start).
    pub fn with_clock(plan: BudgetPlan, clock: C, start: SystemTime) -> Self {
        let levels = plan
            .levels
            .iter()
            .map(|_| Level {
                entries: DashMap::new(),
                cap: KeyCap::unbounded(),
                evicted: AtomicU64::new(0),
            })
            .collect();
        let rules = Rules {
            overrides: plan.levels.iter().map(Overrides::of).collect(),
            plan,
            time: WallTime::new(clock, start),
            counters: BudgetCounters::default(),
        };
        Self {
            shared: Arc::new(Shared {
                rules: Arc::new(rules),
                levels,
            }),
        }
    }

    /// Caps the ids tracked per level; `0` is treated as 1. A full level refuses new ids
    /// with [`BudgetError::TooManyKeys`] after sweeping idle ones (ids with nothing used in
    /// any current period and no reservation held), at most once per `max_keys / 8`
    /// refusals.
    pub fn with_max_keys(self, max_keys: usize) -> Self {
        for level in self.shared.levels.iter() {
            level.cap.set_max_keys(max_keys);
        }
        self
    }

    /// The plan enforced.
    pub fn plan(&self) -> &BudgetPlan {
        &self.shared.rules.plan
    }

    /// Gives `id` at level `level` its own quotas from now on (its usage carries over quota
    /// by quota, by position); reservations made before settle against them too.
    pub fn set_override(
        &self,
        level: &str,
        id: &str,
        quotas: Vec<BudgetQuota>,
    ) -> Result<(), ConfigError> {
        let rules = &self.shared.rules;
        Overrides::set_in(&rules.overrides, &rules.plan, level, id, quotas)
    }

    /// Returns `id` at `level` to the level's quotas.
    pub fn remove_override(&self, level: &str, id: &str) -> Result<(), ConfigError> {
        let rules = &self.shared.rules;
        Overrides::remove_in(&rules.overrides, &rules.plan, level, id)
    }

    /// Reserves the estimate of an LLM call to `model` (the prompt's tokens and
    /// `max_tokens`) on every quota of every level of `path` (one id per level, narrowest
    /// first), all or none: one request, the tokens, and their price from the cost table.
    pub fn reserve(
        &self,
        path: &[&str],
        model: &str,
        estimate: TokenUsage,
    ) -> Result<BudgetReservation<C>, BudgetError> {
        let price = self.plan().price(model)?;
        let charges = price.map_or(Charges::new(1, estimate.total(), 0), |p| {
            p.charges(estimate)
        });
        self.reserve_priced(path, charges, price)
    }

    /// Reserves `estimate` (any requests, tokens and micro-units) on every quota of every
    /// level of `path`, all or none.
    pub fn reserve_charges(
        &self,
        path: &[&str],
        estimate: Charges,
    ) -> Result<BudgetReservation<C>, BudgetError> {
        self.reserve_priced(path, estimate, None)
    }

    /// Reserves on every level of `path`, building the reservation in place and counting
    /// the decision before the result is made: the reservation is returned as built, never
    /// moved from a tuple into a guard into a result, since copying its entries was a
    /// fifth of a reserve and settle (issue 23).
    #[inline]
    fn reserve_priced(
        &self,
        path: &[&str],
        estimate: Charges,
        price: Option<ModelPrice>,
    ) -> Result<BudgetReservation<C>, BudgetError> {
        let counters = &self.shared.rules.counters;
        let depth = self.shared.levels.len();
        let Some((&first, _)) = path.split_first().filter(|_| path.len() == depth) else {
            counters.add(BudgetCounters::REFUSED);
            return Err(BudgetError::PathMismatch {
                levels: depth,
                given: path.len(),
            });
        };
        let now = self.shared.rules.now();
        // One pass: each level's ledger refuses an estimate it has no room for, which
        // covers an estimate above a limit (`cost > limit` leaves no room at any use). The
        // separate check for such an estimate runs only on the cold paths, before a new id
        // is created and after a refusal, so it still creates no id anywhere and still
        // wins over a refusal or a full level, as if it had run first.
        let first = match self.reserve_level(0, first, path, now, &estimate) {
            Ok(entry) => entry,
            Err(error) => {
                counters.add(BudgetCounters::REFUSED);
                return Err(error);
            }
        };
        let mut reservation = BudgetReservation::new(
            Held {
                first,
                near: [None, None],
                far: None,
            },
            estimate,
            now,
            price,
        );
        for (level, id) in path.iter().enumerate().skip(1) {
            match self.reserve_level(level, id, path, now, &estimate) {
                Ok(entry) => reservation.held_mut().push(level, entry),
                Err(error) => {
                    reservation.withdraw();
                    counters.add(BudgetCounters::REFUSED);
                    return Err(error);
                }
            }
        }
        counters.add(BudgetCounters::RESERVED);
        Ok(reservation)
    }

    /// Charges `estimate` to `id` at `level`, or refuses it.
    #[inline]
    fn reserve_level(
        &self,
        level: usize,
        id: &str,
        path: &[&str],
        now: u64,
        estimate: &Charges,
    ) -> Result<Arc<Entry<C>>, BudgetError> {
        let entry = match self.entry(level, id) {
            Some(entry) => entry,
            None => self.create_entry(level, id, now, path, estimate)?,
        };
        let charged = entry.lock().reserve(&self.quotas(level, id), now, estimate);
        match charged {
            Ok(()) => Ok(entry),
            Err(NoRoom { quota, retry_after }) => {
                self.too_large(path, estimate)?;
                Err(BudgetError::Refused {
                    rejected: limited(self.flat_index(path, level, quota), retry_after),
                    level,
                    quota,
                })
            }
        }
    }

    /// Refuses an estimate above a limit of the path, naming the first such quota.
    #[cold]
    fn too_large(&self, path: &[&str], estimate: &Charges) -> Result<(), BudgetError> {
        for (level, id) in path.iter().enumerate() {
            let quotas = self.quotas(level, id);
            for (quota, q) in quotas.iter().enumerate() {
                let cost = estimate.get(q.meter());
                if cost > q.limit() {
                    return Err(BudgetError::TooLarge {
                        level,
                        quota,
                        index: self.flat_index(path, level, quota),
                        cost,
                        limit: q.limit(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The position of quota `quota` of level `level` among the path's quota states.
    fn flat_index(&self, path: &[&str], level: usize, quota: usize) -> usize {
        (0..level)
            .map(|l| self.quotas(l, path[l]).len())
            .sum::<usize>()
            + quota
    }

    /// The quotas of `id` at `level`.
    fn quotas(&self, level: usize, id: &str) -> Quotas<'_> {
        self.shared.rules.quotas(level, id)
    }

    /// The entry of `id` at `level`, if it is tracked.
    #[inline]
    fn entry(&self, level: usize, id: &str) -> Option<Arc<Entry<C>>> {
        let entry = self.shared.levels[level].entries.get(id)?;
        Some(Arc::clone(&entry))
    }

    /// The entry of `id` at `level`, created if `estimate` fits the path's limits and the
    /// level has room.
    #[cold]
    fn create_entry(
        &self,
        level: usize,
        id: &str,
        now: u64,
        path: &[&str],
        estimate: &Charges,
    ) -> Result<Arc<Entry<C>>, BudgetError> {
        // An impossible estimate creates no id anywhere.
        self.too_large(path, estimate)?;
        let state = &self.shared.levels[level];
        if !state.cap.has_room(
            || state.entries.len(),
            || {
                self.sweep_level(level, now);
            },
        ) {
            return Err(BudgetError::TooManyKeys {
                level,
                max_keys: state.cap.max_keys(),
            });
        }
        let entry = state.entries.entry(id.to_string()).or_insert_with(|| {
            Arc::new(Entry {
                id: id.into(),
                ledger: Mutex::new(Ledger::default()),
                rules: Arc::clone(&self.shared.rules),
            })
        });
        Ok(Arc::clone(&entry))
    }

    fn sweep_level(&self, level: usize, now: u64) -> usize {
        let state = &self.shared.levels[level];
        let before = state.entries.len();
        state.entries.retain(|id, entry| {
            // A held reservation keeps its entry: its settlement must find the same ledger.
            Arc::strong_count(entry) > 1 || !entry.lock().is_idle(&self.quotas(level, id), now)
        });
        let dropped = before.saturating_sub(state.entries.len());
        state.evicted.fetch_add(dropped as u64, Ordering::Relaxed);
        dropped
    }

    /// Drops every id with nothing used in any current period and no reservation held
    /// (decisions are unchanged; its totals are forgotten); returns how many.
    pub fn retain_recent(&self) -> usize {
        let now = self.shared.rules.now();
        (0..self.shared.levels.len())
            .map(|level| self.sweep_level(level, now))
            .sum()
    }

    /// Where every quota of every level of `path` stands now, levels in order: remaining
    /// and reset per quota (requests, tokens and money apart), named `level-quota`
    /// (`team-spend`), ready for `backstop_core::http::apply_headers` (feature `http`). A
    /// refusal's quota index points into this list.
    pub fn quota_states(&self, path: &[&str]) -> Result<Vec<QuotaState>, BudgetError> {
        let depth = self.shared.levels.len();
        if path.len() != depth {
            return Err(BudgetError::PathMismatch {
                levels: depth,
                given: path.len(),
            });
        }
        let now = self.shared.rules.now();
        let mut out = Vec::new();
        for (level, id) in path.iter().enumerate() {
            let quotas = self.quotas(level, id);
            match self.shared.levels[level].entries.get(*id) {
                Some(entry) => entry.lock().states(&quotas, now, &mut out),
                None => out.extend(quotas.iter().map(|q| super::ledger::fresh_or(q, None, now))),
            }
        }
        Ok(out)
    }

    /// What `id` at `level` has used in each quota's current period, and its totals since
    /// it was first tracked; `None` if it is not tracked.
    pub fn spend(&self, level: &str, id: &str) -> Option<EntrySpend> {
        let index = self.plan().level_index(level)?;
        let entry = self.shared.levels[index].entries.get(id)?;
        Some(self.entry_spend(index, &entry))
    }

    fn entry_spend(&self, level: usize, entry: &Entry<C>) -> EntrySpend {
        let now = self.shared.rules.now();
        let quotas = self.quotas(level, entry.id());
        let ledger = entry.lock();
        EntrySpend::new(
            entry.id(),
            quotas
                .iter()
                .enumerate()
                .map(|(i, q)| (q, ledger.used(q, i, now))),
            ledger.totals,
        )
    }

    /// Counters, and the spend of every tracked id per level for the current periods.
    pub fn stats(&self) -> BudgetStats {
        let levels = self
            .plan()
            .levels
            .iter()
            .zip(self.shared.levels.iter())
            .enumerate()
            .map(|(index, (plan, state))| LevelStats {
                name: plan.name.to_string(),
                keys: state.entries.len(),
                evicted: state.evicted.load(Ordering::Relaxed),
                spend: state
                    .entries
                    .iter()
                    .map(|entry| self.entry_spend(index, entry.value()))
                    .collect(),
            })
            .collect();
        self.shared.rules.counters.snapshot(levels)
    }
}

/// The entries a reservation holds, one per level. A plan has at least one level, so there
/// is always a first entry, and through it the rules. Levels 1 and 2 are inline and deeper
/// ones in a boxed array, so a path of up to three levels (key, team, organisation) allocates
/// nothing, and the reservation stays small: moving a guard of eight inline slots was a
/// fifth of a reserve and settle (issue 23).
#[derive(Debug)]
pub(crate) struct Held<C> {
    first: Arc<Entry<C>>,
    near: Slots<C, 2>,
    far: Option<Box<Slots<C, { BudgetPlan::MAX_LEVELS - 3 }>>>,
}

/// Entries of consecutive levels, filled in order.
type Slots<C, const N: usize> = [Option<Arc<Entry<C>>>; N];

impl<C: Clock> Held<C> {
    /// The entries, levels in order.
    fn iter(&self) -> impl Iterator<Item = &Arc<Entry<C>>> {
        std::iter::once(&self.first)
            .chain(self.near.iter().map_while(Option::as_ref))
            .chain(
                self.far
                    .iter()
                    .flat_map(|far| far.iter().map_while(Option::as_ref)),
            )
    }

    /// Holds `entry` for `level` (1 or deeper), the levels coming in order.
    #[inline]
    pub(crate) fn push(&mut self, level: usize, entry: Arc<Entry<C>>) {
        let slot = match level {
            1 | 2 => self.near.get_mut(level - 1),
            _ => self
                .far
                .get_or_insert_default()
                .get_mut(level.wrapping_sub(3)),
        };
        // A plan has at most `MAX_LEVELS` levels, so every level has its slot.
        if let Some(slot) = slot {
            *slot = Some(entry);
        }
    }

    /// The rules of the budget the entries belong to.
    #[inline]
    pub(crate) fn rules(&self) -> &Rules<C> {
        &self.first.rules
    }

    /// Settles every held ledger, reserved at `reserved_at`, with `actual`.
    #[inline]
    pub(crate) fn settle(&self, reserved_at: u64, reserved: &Charges, actual: &Charges) {
        // Only an overrun needs the clock (it is charged to the period of now). A refund
        // goes to the reservation's period if the slot still counts it, current or ended:
        // nothing reads the use of a period that has ended, so refunding it changes no
        // decision, and `reserved_at` can stand for now. Most calls use less than their
        // estimate, and a clock read costs as much as a ledger update.
        let now = if actual.within(reserved) {
            reserved_at
        } else {
            self.rules().now()
        };
        self.settle_at(reserved_at, now, reserved, actual);
    }

    /// Takes back a reservation that a later level refused.
    pub(crate) fn release(&self, now: u64, estimate: &Charges) {
        self.settle_at(now, now, estimate, &Charges::ZERO);
    }

    #[inline]
    fn settle_at(&self, reserved_at: u64, now: u64, reserved: &Charges, actual: &Charges) {
        let rules = self.rules();
        for (level, entry) in self.iter().enumerate() {
            let quotas = rules.quotas(level, entry.id());
            entry
                .lock()
                .settle(&quotas, reserved_at, now, reserved, actual);
        }
    }

    /// Where every quota of the held path stands now, levels in order.
    pub(crate) fn quota_states(&self) -> Vec<QuotaState> {
        let rules = self.rules();
        let now = rules.now();
        let mut out = Vec::new();
        for (level, entry) in self.iter().enumerate() {
            let quotas = rules.quotas(level, entry.id());
            entry.lock().states(&quotas, now, &mut out);
        }
        out
    }
}

impl BudgetPlan {
    /// The price of `model`, `None` when no level counts money and the table lacks it.
    pub(crate) fn price(&self, model: &str) -> Result<Option<ModelPrice>, BudgetError> {
        match self.costs.price(model) {
            Some(price) => Ok(Some(price)),
            None if self.prices_needed => Err(BudgetError::UnknownModel(model.to_string())),
            None => Ok(None),
        }
    }
}
