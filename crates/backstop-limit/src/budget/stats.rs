//! Budget counters and the spend view per id and level.

use super::money::{BudgetMeter, Charges};
use super::plan::BudgetQuota;
use backstop_core::StripedCounters;
use serde::Serialize;

/// The counters behind [`BudgetStats`], striped per thread like the limiters' (a plain load
/// and store on a line only the calling thread writes): a reserve → settle round counts
/// twice, and a shared atomic add each time cost as much as a ledger update.
#[derive(Debug, Default)]
pub(crate) struct BudgetCounters(StripedCounters<5>);

impl BudgetCounters {
    pub(crate) const RESERVED: usize = 0;
    pub(crate) const REFUSED: usize = 1;
    pub(crate) const SETTLED: usize = 2;
    pub(crate) const DROPPED: usize = 3;
    pub(crate) const DROP_FAILED: usize = 4;

    /// Counts one of the events above.
    #[inline(always)]
    pub(crate) fn add(&self, counter: usize) {
        self.0.add(counter);
    }

    pub(crate) fn snapshot(&self, levels: Vec<LevelStats>) -> BudgetStats {
        BudgetStats {
            reserved: self.0.get(Self::RESERVED),
            refused: self.0.get(Self::REFUSED),
            settled: self.0.get(Self::SETTLED),
            dropped: self.0.get(Self::DROPPED),
            drop_failed: self.0.get(Self::DROP_FAILED),
            levels,
        }
    }
}

/// A snapshot of a [`Budgets`](crate::Budgets): counters since creation, and per level the
/// spend of every tracked id in its quotas' current periods.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct BudgetStats {
    /// Reservations made.
    pub reserved: u64,
    /// Reservations refused (no room, too large, unknown model, too many ids).
    pub refused: u64,
    /// Reservations settled by their caller.
    pub settled: u64,
    /// Reservations dropped without settling, settled by the drop rule.
    pub dropped: u64,
    /// Drop-rule settlements that failed (a bug, contained; nothing is applied twice).
    pub drop_failed: u64,
    /// Per level, narrowest first.
    pub levels: Vec<LevelStats>,
}

impl BudgetStats {
    /// The level named `name`.
    pub fn level(&self, name: &str) -> Option<&LevelStats> {
        self.levels.iter().find(|l| l.name == name)
    }
}

/// One level's ids and their spend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct LevelStats {
    /// The level's name.
    pub name: String,
    /// Ids tracked now.
    pub keys: usize,
    /// Ids dropped by sweeps since creation.
    pub evicted: u64,
    /// Every tracked id's spend.
    pub spend: Vec<EntrySpend>,
}

impl LevelStats {
    /// The spend of `id`.
    pub fn id(&self, id: &str) -> Option<&EntrySpend> {
        self.spend.iter().find(|s| s.id == id)
    }
}

/// What one id has used: per quota in its current period, and in total.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct EntrySpend {
    /// The id (an API key, a team, an organisation).
    pub id: String,
    /// Each quota's use in its current period.
    pub quotas: Vec<QuotaUse>,
    /// Charged since the id was first tracked: settled calls at their actual usage, open
    /// reservations at their estimate.
    pub totals: Charges,
}

impl EntrySpend {
    pub(crate) fn new<'a>(
        id: &str,
        quotas: impl Iterator<Item = (&'a BudgetQuota, u64)>,
        totals: Charges,
    ) -> Self {
        Self {
            id: id.to_string(),
            quotas: quotas
                .map(|(q, used)| QuotaUse {
                    name: q.name().to_string(),
                    meter: q.meter(),
                    used,
                    limit: q.limit(),
                })
                .collect(),
            totals,
        }
    }

    /// The use of the quota named `name`.
    pub fn quota(&self, name: &str) -> Option<&QuotaUse> {
        self.quotas.iter().find(|q| q.name == name)
    }
}

/// One quota's use in its current period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct QuotaUse {
    /// The quota's name within its level.
    pub name: String,
    /// What it counts.
    pub meter: BudgetMeter,
    /// Used in the current period (above `limit` when in debt).
    pub used: u64,
    /// The quota's limit.
    pub limit: u64,
}
