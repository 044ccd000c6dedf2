//! One id's balances at one level: per quota, the period it counts and what it used in it;
//! and the totals charged since the id was first tracked.
//!
//! The rules every store follows (the Redis scripts implement the same):
//! - reserve: admitted only if, for every quota, `used + estimate <= limit` in the current
//!   period; then every quota is charged its estimate (all or none);
//! - settle: while the reservation's period is still current, `used` moves by
//!   `actual - estimate` (a refund, or an overrun charged even past the limit: debt, which
//!   refuses the id's next calls until the period ends); once that period has ended, a
//!   refund is dropped (the period's balance is gone) and an overrun is charged to the
//!   current period;
//! - totals move by exactly what was reserved, then by `actual - estimate`, so they always
//!   equal the sum of actual usage of settled calls plus the estimates still held.

use super::money::Charges;
use super::plan::{BudgetPlan, BudgetQuota};
use backstop_core::QuotaState;
use std::time::Duration;

/// The period a quota last counted in (`NONE`: never) and what was used in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    pub(crate) period: u64,
    pub(crate) used: u64,
}

impl Slot {
    const NONE: Self = Self {
        period: u64::MAX,
        used: 0,
    };

    /// What was used in period `id` (nothing if the slot counts another period).
    #[inline]
    fn used_in(&self, id: u64) -> u64 {
        if self.period == id { self.used } else { 0 }
    }

    #[inline]
    fn add(&mut self, id: u64, amount: u64) {
        if self.period != id {
            *self = Self {
                period: id,
                used: 0,
            };
        }
        self.used = self.used.saturating_add(amount);
    }
}

/// A quota with no room: its index and the wait until its period ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NoRoom {
    pub(crate) quota: usize,
    pub(crate) retry_after: Duration,
}

/// One id's balances.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    slots: Vec<Slot>,
    pub(crate) totals: Charges,
}

impl Ledger {
    fn slot_mut(&mut self, i: usize) -> &mut Slot {
        if self.slots.len() <= i {
            self.slots.resize(i + 1, Slot::NONE);
        }
        &mut self.slots[i]
    }

    fn slot(&self, i: usize) -> Slot {
        self.slots.get(i).copied().unwrap_or(Slot::NONE)
    }

    /// Charges `cost` to every quota at `now`, or to none.
    #[inline]
    pub(crate) fn reserve(
        &mut self,
        quotas: &[BudgetQuota],
        now: u64,
        cost: &Charges,
    ) -> Result<(), NoRoom> {
        // Each quota's period number once (a division, or a calendar computation).
        let mut ids = [0u64; BudgetPlan::MAX_QUOTAS_PER_LEVEL];
        for (i, quota) in quotas.iter().enumerate() {
            let id = quota.period().id(now);
            ids[i] = id;
            let used = self.slot(i).used_in(id);
            if used.saturating_add(cost.get(quota.meter())) > quota.limit() {
                let end = quota.period().bounds(id).1;
                return Err(NoRoom {
                    quota: i,
                    retry_after: Duration::from_micros(end.saturating_sub(now)),
                });
            }
        }
        for (i, quota) in quotas.iter().enumerate() {
            self.slot_mut(i).add(ids[i], cost.get(quota.meter()));
        }
        self.totals = self.totals.saturating_add(cost);
        Ok(())
    }

    /// Settles a reservation of `reserved` made at `reserved_at` with `actual`, at `now`.
    pub(crate) fn settle(
        &mut self,
        quotas: &[BudgetQuota],
        reserved_at: u64,
        now: u64,
        reserved: &Charges,
        actual: &Charges,
    ) {
        for (i, quota) in quotas.iter().enumerate() {
            let (held, used) = (reserved.get(quota.meter()), actual.get(quota.meter()));
            let then = quota.period().id(reserved_at);
            let current = quota.period().id(now);
            let slot = self.slot_mut(i);
            if then == current && slot.period == then {
                slot.used = slot.used.saturating_sub(held).saturating_add(used);
            } else if used > held {
                slot.add(current, used - held);
            }
        }
        self.totals = self.totals.saturating_sub(reserved).saturating_add(actual);
    }

    /// Where each quota stands at `now`, for rate-limit headers.
    pub(crate) fn states(&self, quotas: &[BudgetQuota], now: u64, out: &mut Vec<QuotaState>) {
        for (i, quota) in quotas.iter().enumerate() {
            out.push(fresh_or(quota, Some(self.slot(i)), now));
        }
    }

    /// What quota `i` has used in its current period.
    pub(crate) fn used(&self, quota: &BudgetQuota, i: usize, now: u64) -> u64 {
        self.slot(i).used_in(quota.period().id(now))
    }

    /// Whether every quota's period has ended, so dropping the ledger changes no decision.
    pub(crate) fn is_idle(&self, quotas: &[BudgetQuota], now: u64) -> bool {
        quotas
            .iter()
            .enumerate()
            .all(|(i, q)| self.slot(i).used_in(q.period().id(now)) == 0)
    }
}

/// A quota's state at `now` given its slot (`None`: never charged).
pub(crate) fn fresh_or(quota: &BudgetQuota, slot: Option<Slot>, now: u64) -> QuotaState {
    let id = quota.period().id(now);
    let used = slot.map_or(0, |s| s.used_in(id));
    let (start, end) = quota.period().bounds(id);
    QuotaState::new(
        quota.label().clone(),
        quota.limit(),
        quota.limit().saturating_sub(used),
        Duration::from_micros(end.saturating_sub(now)),
        Duration::from_micros(end.saturating_sub(start)),
    )
}
