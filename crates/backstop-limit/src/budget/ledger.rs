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
use super::plan::BudgetQuota;
use backstop_core::QuotaState;
use std::time::Duration;

/// The period a quota last counted in and what was used in it: its bounds (microseconds
/// since the Unix epoch) and the period's kind ([`BudgetQuota::window`], so an override
/// with another period starts afresh). A decision inside the bounds reads the slot with two
/// comparisons instead of computing the period number, a 64-bit division (or a calendar
/// computation for months) per quota, twice per settlement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    kind: u64,
    start: u64,
    end: u64,
    pub(crate) used: u64,
}

impl Slot {
    /// Never charged: holds no instant.
    const NONE: Self = Self {
        kind: u64::MAX,
        start: u64::MAX,
        end: 0,
        used: 0,
    };

    /// Whether `at` falls in the period this slot counts, under `quota`'s period.
    #[inline]
    fn holds(&self, quota: &BudgetQuota, at: u64) -> bool {
        self.start <= at && at < self.end && self.kind == quota.window()
    }

    /// What was used in the period of `now` (nothing if the slot counts another period).
    #[inline]
    fn used_at(&self, quota: &BudgetQuota, now: u64) -> u64 {
        if self.holds(quota, now) { self.used } else { 0 }
    }

    /// The bounds of the period holding `now`: the slot's own when it counts it.
    #[inline]
    fn bounds_at(&self, quota: &BudgetQuota, now: u64) -> (u64, u64) {
        if self.holds(quota, now) {
            (self.start, self.end)
        } else {
            quota.period().bounds_at(now)
        }
    }

    /// Adds `amount` to the period of `now`, starting that period afresh if the slot
    /// counted another.
    #[inline]
    fn add(&mut self, quota: &BudgetQuota, now: u64, amount: u64) {
        if !self.holds(quota, now) {
            let (start, end) = quota.period().bounds_at(now);
            *self = Self {
                kind: quota.window(),
                start,
                end,
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
    #[inline]
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
        for (i, quota) in quotas.iter().enumerate() {
            let slot = self.slot(i);
            let used = slot.used_at(quota, now);
            if used.saturating_add(cost.get(quota.meter())) > quota.limit() {
                let end = slot.bounds_at(quota, now).1;
                return Err(NoRoom {
                    quota: i,
                    retry_after: Duration::from_micros(end.saturating_sub(now)),
                });
            }
        }
        for (i, quota) in quotas.iter().enumerate() {
            self.slot_mut(i).add(quota, now, cost.get(quota.meter()));
        }
        self.totals = self.totals.saturating_add(cost);
        Ok(())
    }

    /// Settles a reservation of `reserved` made at `reserved_at` with `actual`, at `now`
    /// (`reserved_at` itself when nothing overran: a refund to a period that has ended is
    /// never read, so it need not be told from one to the current period).
    #[inline]
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
            let slot = self.slot_mut(i);
            // Both instants in the slot's period: the reservation's balance is current.
            if slot.holds(quota, reserved_at) && slot.holds(quota, now) {
                slot.used = slot.used.saturating_sub(held).saturating_add(used);
            } else if used > held {
                slot.add(quota, now, used - held);
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
        self.slot(i).used_at(quota, now)
    }

    /// Whether every quota's period has ended, so dropping the ledger changes no decision.
    pub(crate) fn is_idle(&self, quotas: &[BudgetQuota], now: u64) -> bool {
        quotas
            .iter()
            .enumerate()
            .all(|(i, q)| self.slot(i).used_at(q, now) == 0)
    }
}

/// A quota's state at `now` given its slot (`None`: never charged).
pub(crate) fn fresh_or(quota: &BudgetQuota, slot: Option<Slot>, now: u64) -> QuotaState {
    let slot = slot.unwrap_or(Slot::NONE);
    let used = slot.used_at(quota, now);
    let (start, end) = slot.bounds_at(quota, now);
    QuotaState::new(
        quota.label().clone(),
        quota.limit(),
        quota.limit().saturating_sub(used),
        Duration::from_micros(end.saturating_sub(now)),
        Duration::from_micros(end.saturating_sub(start)),
    )
}
