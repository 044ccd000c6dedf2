//! The wakers of one execution's waiters, keyed by waiter.
//!
//! Most executions have a single waiter (nobody else asked for the key meanwhile), so its
//! waker is kept inline and such an execution allocates nothing for its wakers. Further
//! waiters go to a map, which keeps every operation O(1) however many come and go, and
//! gives its memory back when a crowd has left.

use std::collections::HashMap;
use std::task::Waker;

use foldhash::fast::RandomState;

/// Waiter ids and the wakers to call when their execution's result is in.
#[derive(Default)]
pub(crate) struct Wakers {
    first: Option<(u64, Waker)>,
    rest: HashMap<u64, Waker, RandomState>,
}

impl Wakers {
    /// Stores `waker` for waiter `id` (`Waker::clone_from` keeps the stored one when it
    /// already wakes the same task).
    pub(crate) fn register(&mut self, id: u64, waker: &Waker) {
        if let Some((first, stored)) = &mut self.first
            && *first == id
        {
            stored.clone_from(waker);
        } else if let Some(stored) = self.rest.get_mut(&id) {
            stored.clone_from(waker);
        } else if self.first.is_none() {
            self.first = Some((id, waker.clone()));
        } else {
            self.rest.insert(id, waker.clone());
        }
    }

    /// Forgets waiter `id`'s waker (it left).
    pub(crate) fn remove(&mut self, id: u64) {
        if matches!(&self.first, Some((first, _)) if *first == id) {
            self.first = None;
        } else if self.rest.remove(&id).is_some() {
            self.shrink();
        }
    }

    /// Takes some waiter's waker, to hand the work to that waiter.
    pub(crate) fn take_any(&mut self) -> Option<Waker> {
        if let Some((_, waker)) = self.first.take() {
            return Some(waker);
        }
        let id = self.rest.keys().next().copied()?;
        let waker = self.rest.remove(&id);
        self.shrink();
        waker
    }

    /// Takes every waker but `keep`'s.
    pub(crate) fn take_others(&mut self, keep: u64) -> Vec<Waker> {
        let mut others = Vec::new();
        match self.first.take() {
            Some((id, waker)) if id == keep => self.first = Some((id, waker)),
            Some((_, waker)) => others.push(waker),
            None => {}
        }
        if self.rest.is_empty() {
            return others;
        }
        let own = self.rest.remove(&keep);
        others.extend(self.rest.drain().map(|(_, waker)| waker));
        if let Some(waker) = own {
            // `first` was someone else's and is in `others` now.
            self.first = Some((keep, waker));
        }
        self.shrink();
        others
    }

    /// Gives memory back after a crowd of waiters left, so the map stays proportional to
    /// the waiters present (and finding one in it stays cheap).
    fn shrink(&mut self) {
        if self.rest.capacity() > 4 * self.rest.len() + 64 {
            self.rest.shrink_to(2 * self.rest.len());
        }
    }

    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.rest.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        (count.clone(), Waker::from(count))
    }

    #[test]
    fn every_waiter_but_the_kept_one_is_taken_once() {
        let mut wakers = Wakers::default();
        let counts: Vec<_> = (0..5u64)
            .map(|id| {
                let (count, waker) = counting();
                wakers.register(id, &waker);
                count
            })
            .collect();
        for waker in wakers.take_others(3) {
            waker.wake();
        }
        let woken: Vec<usize> = counts.iter().map(|c| c.0.load(Ordering::SeqCst)).collect();
        assert_eq!(woken, [1, 1, 1, 0, 1]);
        // The kept one is still there, and nothing else.
        assert!(wakers.take_any().is_some());
        assert!(wakers.take_any().is_none());
    }

    #[test]
    fn a_removed_waiter_is_never_taken_and_a_new_waker_replaces_the_old() {
        let mut wakers = Wakers::default();
        let (old, old_waker) = counting();
        let (new, new_waker) = counting();
        let (gone, gone_waker) = counting();
        wakers.register(0, &gone_waker);
        wakers.register(1, &old_waker);
        wakers.register(1, &new_waker);
        wakers.remove(0);
        for waker in wakers.take_others(7) {
            waker.wake();
        }
        let woken = [&old, &new, &gone].map(|c| c.0.load(Ordering::SeqCst));
        assert_eq!(woken, [0, 1, 0]);
    }

    #[test]
    fn one_waiter_allocates_no_map() {
        let mut wakers = Wakers::default();
        let (_, waker) = counting();
        wakers.register(0, &waker);
        wakers.register(0, &waker);
        assert_eq!(wakers.capacity(), 0);
        assert!(wakers.take_others(0).is_empty());
        assert_eq!(wakers.capacity(), 0);
    }
}
