//! What the breaker reports as it works: events for subscribers, mirrored to `tracing`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::State;
use backstop_core::contain;
use parking_lot::RwLock;

/// Something a breaker did that an operator may want to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BreakerEvent {
    /// The circuit changed state.
    StateTransition {
        /// Name of the breaker.
        name: Arc<str>,
        /// The state left.
        from: State,
        /// The state entered.
        to: State,
    },
    /// A call was refused.
    Rejected {
        /// Name of the breaker.
        name: Arc<str>,
        /// The state that refused it.
        state: State,
    },
    /// A call took at least `slow_call_duration`.
    SlowCall {
        /// Name of the breaker.
        name: Arc<str>,
        /// How long it took.
        duration: Duration,
    },
}

type Listener = Arc<dyn Fn(&BreakerEvent) + Send + Sync>;

/// Subscribers, behind a flag so that publishing costs one relaxed load when nobody
/// listens.
#[derive(Default)]
pub(crate) struct Listeners {
    any: AtomicBool,
    list: RwLock<Vec<Listener>>,
    /// Listener calls that panicked (caught, logged and counted).
    panicked: AtomicU64,
}

impl Listeners {
    pub(crate) fn add(&self, listener: Listener) {
        self.list.write().push(listener);
        self.any.store(true, Ordering::Release);
    }

    #[inline]
    pub(crate) fn active(&self) -> bool {
        self.any.load(Ordering::Relaxed)
    }

    #[inline]
    pub(crate) fn publish(&self, event: impl FnOnce() -> BreakerEvent) {
        if self.active() {
            self.deliver(event());
        }
    }

    /// How many listener calls have panicked.
    pub(crate) fn panicked(&self) -> u64 {
        self.panicked.load(Ordering::Relaxed)
    }

    #[inline(never)]
    fn deliver(&self, event: BreakerEvent) {
        // Listeners run outside the lock so one may subscribe another without deadlock.
        let listeners = self.list.read().clone();
        for listener in &listeners {
            // Events are published from the call that caused them, including a permit's
            // `Drop` during an unwind: a listener's panic must reach neither that caller
            // nor the other listeners, and must never unwind out of a `Drop`.
            if let Err(panicked) = contain("breaker.listener", || listener(&event)) {
                self.panicked.fetch_add(1, Ordering::Relaxed);
                tracing::error!(%panicked, ?event, "breaker listener panicked; event dropped for it");
            }
        }
    }
}
