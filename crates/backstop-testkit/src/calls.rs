//! Counting the calls a test double receives.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

/// A call counter shared by a test and the doubles it builds: clones count into the same
/// total, so a test keeps one and hands [`counting`](Calls::counting) closures to services.
#[derive(Debug, Clone, Default)]
pub struct Calls(Arc<AtomicUsize>);

impl Calls {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many calls were counted so far.
    pub fn count(&self) -> usize {
        self.0.load(SeqCst)
    }

    /// `f`, counting each call here before it runs (so a call counts as soon as it is made,
    /// whether or not its future is then polled): for `service_fn(calls.counting(|req| async
    /// move { … }))`.
    pub fn counting<A, R, F>(&self, f: F) -> impl Fn(A) -> R + use<A, R, F>
    where
        F: Fn(A) -> R,
    {
        let calls = self.clone();
        move |arg| {
            calls.0.fetch_add(1, SeqCst);
            f(arg)
        }
    }
}
