//! The reservation guard: settled once with actual usage, or by the plan's drop rule.

use super::local::Held;
use super::money::{Charges, ModelPrice, TokenUsage};
use super::plan::DropRule;
use super::stats::BudgetCounters;
use backstop_core::{Clock, DefaultClock, QuotaState, contain};
use serde::Serialize;

/// What a settlement charged: the actual usage, and how it differed from the estimate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Settlement {
    /// What the call is finally charged (its actual usage).
    pub charged: Charges,
    /// The unused part of the estimate, given back.
    pub refunded: Charges,
    /// Usage beyond the estimate, charged even past a limit (debt).
    pub overrun: Charges,
}

impl Settlement {
    pub(crate) fn of(reserved: &Charges, actual: &Charges) -> Self {
        Self {
            charged: *actual,
            refunded: reserved.saturating_sub(actual),
            overrun: actual.saturating_sub(reserved),
        }
    }
}

/// An estimate held on every quota of every level of a path, until settled.
///
/// Settle it with [`settle_usage`](Self::settle_usage) (tokens, priced as reserved) or
/// [`settle`](Self::settle) (any charges). Dropped without settling — the request was
/// cancelled, the caller panicked or returned early — it applies the plan's [`DropRule`]
/// exactly once, from `Drop`, contained so that nothing panics in `Drop`.
#[derive(Debug)]
#[must_use = "a reservation holds budget until it is settled; dropping it applies the drop rule"]
pub struct BudgetReservation<C: Clock = DefaultClock> {
    held: Held<C>,
    reserved: Charges,
    reserved_at: u64,
    price: Option<ModelPrice>,
    open: bool,
}

impl<C: Clock> BudgetReservation<C> {
    #[inline]
    pub(crate) fn new(
        held: Held<C>,
        reserved: Charges,
        reserved_at: u64,
        price: Option<ModelPrice>,
    ) -> Self {
        Self {
            held,
            reserved,
            reserved_at,
            price,
            open: true,
        }
    }

    /// The entries held, for the reservation to grow level by level as it is made.
    pub(crate) fn held_mut(&mut self) -> &mut Held<C> {
        &mut self.held
    }

    /// Takes back what is held, for a reservation that a later level refused: nothing is
    /// counted and no drop rule applies.
    pub(crate) fn withdraw(mut self) {
        self.open = false;
        self.held.release(self.reserved_at, &self.reserved);
    }

    /// What is held: one request, the estimated tokens and their price.
    pub fn reserved(&self) -> Charges {
        self.reserved
    }

    /// Where every quota of the path stands now (the reservation included), levels in
    /// order, for rate-limit headers on the admitted response.
    pub fn quota_states(&self) -> Vec<QuotaState> {
        self.held.quota_states()
    }

    /// Settles with the tokens the call actually used, priced as at reservation (one
    /// request).
    pub fn settle_usage(self, usage: TokenUsage) -> Settlement {
        let actual = match self.price {
            Some(price) => price.charges(usage),
            None => Charges::new(1, usage.total(), 0),
        };
        self.settle(actual)
    }

    /// Settles with `actual`: the unused part of the estimate is returned exactly, an
    /// overrun is charged even past the limits (the path is in debt until the period
    /// ends).
    #[inline]
    pub fn settle(mut self, actual: Charges) -> Settlement {
        self.apply(&actual);
        self.held.rules().counters.add(BudgetCounters::SETTLED);
        Settlement::of(&self.reserved, &actual)
    }

    /// Applies `actual` to every level, once: the first call closes the reservation.
    fn apply(&mut self, actual: &Charges) {
        if !std::mem::replace(&mut self.open, false) {
            return;
        }
        self.held.settle(self.reserved_at, &self.reserved, actual);
    }
}

impl<C: Clock> Drop for BudgetReservation<C> {
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        let rule = self.held.rules().plan.on_drop;
        let actual = match rule {
            DropRule::RefundAll => Charges::ZERO,
            DropRule::ChargeEstimate => self.reserved,
        };
        // Our own arithmetic under a lock; contained all the same, since a panic here
        // while the caller is already unwinding would abort the process.
        let applied = contain("budget.drop", || {
            self.apply(&actual);
        });
        let counters = &self.held.rules().counters;
        match applied {
            Ok(()) => counters.add(BudgetCounters::DROPPED),
            Err(_) => counters.add(BudgetCounters::DROP_FAILED),
        };
    }
}
