//! What the breaker reports as it works: events for subscribers, mirrored to `tracing`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::State;
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

    #[inline(never)]
    fn deliver(&self, event: BreakerEvent) {
        // Listeners run outside the lock so one may subscribe another without deadlock.
        let listeners = self.list.read().clone();
        for listener in &listeners {
            listener(&event);
        }
    }
}
