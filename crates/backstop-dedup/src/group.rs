use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use dashmap::DashMap;
// Randomly seeded per group; a fraction of SipHash's cost on every call's two lookups.
use dashmap::mapref::entry::Entry as MapEntry;
use foldhash::quality::RandomState;
use futures::future::{BoxFuture, FutureExt};

use backstop_core::{Panicked, RejectKind, Rejected};

use crate::error::DedupError;
use crate::flight::Flight;
use crate::outcome::{DedupOutcome, Source};
use crate::stats::{Counters, GroupStats};

pub(crate) type Output<V, E> = Result<V, DedupError<E>>;

/// One execution in flight for a key.
struct Entry<V, E> {
    /// Tells this execution apart from a later one for the same key (after `forget` or
    /// after it completed), so a late waiter never removes its successor.
    id: u64,
    flight: Arc<Flight<Output<V, E>>>,
    /// Callers currently awaiting `flight`; the entry goes when the last one leaves.
    waiters: usize,
    followers: u64,
}

struct Inner<K, V, E> {
    flights: DashMap<K, Entry<V, E>, RandomState>,
    next_id: AtomicU64,
    /// Separate from `Inner` because the execution futures stored in `flights` need
    /// the counters, and holding `Inner` there would be a reference cycle.
    counters: Arc<Counters>,
}

/// Singleflight: runs one execution per key while it is in flight and hands every
/// concurrent caller with that key a clone of the same result.
///
/// # Semantics
///
/// - **One execution per key.** The first caller (the leader) stores its work in a
///   sharded map ([`dashmap`]); callers arriving while it runs (followers) await the same
///   execution. When it completes the key is released, so the next call runs afresh
///   (use [`DedupWindow`](crate::DedupWindow) to also remember completed results).
/// - **Cancellation: a waiter takes over.** The work is a shared future driven by one
///   waiter at a time; the others sleep until the result is in. Dropping the driver
///   (the leader, or whoever took over) loses nothing for the others: one of them is
///   woken and continues the same execution, from where it was, without restarting it. Nothing is spawned, so the work may borrow no
///   runtime and needs no `JoinHandle`. When *every* waiter has gone, the execution is
///   dropped (cancelled) and the key released; a later call starts a new one. An
///   execution is therefore never polled by two drivers, and never runs concurrently
///   with another execution for the same key (except after an explicit [`forget`]).
/// - **Errors and panics reach everyone.** A work error is cloned to every waiter
///   ([`DedupError::Inner`]); a panic is caught and every waiter gets
///   [`DedupError::Panicked`], and the key is cleared.
/// - **Follower timeout.** [`work_with_timeout`] bounds how long a follower waits (it
///   gets [`DedupError::Rejected`] with [`RejectKind::Timeout`]); the execution continues
///   for the rest.
/// - **Bounded cost per caller.** A follower that leaves gives its waiter slot back in
///   O(1), so a stuck key followed by any number of callers that gave up holds nothing
///   for them.
///
/// `Group` is a handle: clones share the same map, so it can be stored in several
/// services or tasks. `V` and `E` must be `Clone`; wrap them in `Arc` when cloning is
/// expensive or impossible.
///
/// [`forget`]: Group::forget
/// [`work_with_timeout`]: Group::work_with_timeout
///
/// # Example
///
/// ```
/// use backstop_dedup::{Group, Source};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let group: Group<String, u64, String> = Group::new();
/// let ask = || async {
///     // Stands in for an expensive LLM call.
///     tokio::time::sleep(std::time::Duration::from_millis(10)).await;
///     Ok::<_, String>(42)
/// };
/// let (a, b) = tokio::join!(
///     group.work("prompt-1".to_string(), ask),
///     group.work("prompt-1".to_string(), ask),
/// );
/// let (a, b) = (a.unwrap(), b.unwrap());
/// assert_eq!((a.value, b.value), (42, 42));
/// assert_eq!(a.source, Source::Executed);
/// assert_eq!(b.source, Source::Joined);
/// assert_eq!(group.stats().executions, 1);
/// # }
/// ```
pub struct Group<K, V, E> {
    inner: Arc<Inner<K, V, E>>,
}

impl<K, V, E> Clone for Group<K, V, E> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K, V, E> fmt::Debug for Group<K, V, E>
where
    K: Hash + Eq,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("in_flight", &self.inner.flights.len())
            .finish_non_exhaustive()
    }
}

impl<K, V, E> Default for Group<K, V, E>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    E: Clone + Send + Sync + 'static,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V, E> Group<K, V, E>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    E: Clone + Send + Sync + 'static,
{
    /// An empty group.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                flights: DashMap::with_hasher(RandomState::default()),
                next_id: AtomicU64::new(0),
                counters: Arc::new(Counters::default()),
            }),
        }
    }

    /// Runs `work` for `key` unless an execution for `key` is already in flight, in
    /// which case this call waits for that one. Every caller gets a clone of the result.
    ///
    /// `work` is only called by the caller that starts the execution, and only when the
    /// execution is first polled. The returned future may be dropped at any point: see
    /// the type docs for what happens to the others.
    pub async fn work<F, Fut>(&self, key: K, work: F) -> Result<DedupOutcome<V>, DedupError<E>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
    {
        self.run(key, None, |counters| Box::pin(execute(counters, work)))
            .await
    }

    /// Like [`work`](Group::work), but if this call joins an execution already in flight
    /// it waits at most `timeout` and then returns [`DedupError::Rejected`] with
    /// [`RejectKind::Timeout`]. The
    /// execution itself is not cancelled by a follower giving up. The caller that starts
    /// the execution is not bounded: put a timeout inside `work` for that.
    pub async fn work_with_timeout<F, Fut>(
        &self,
        key: K,
        timeout: Duration,
        work: F,
    ) -> Result<DedupOutcome<V>, DedupError<E>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
    {
        self.run(key, Some(timeout), |counters| {
            Box::pin(execute(counters, work))
        })
        .await
    }

    /// Releases `key` so the next call starts a new execution even if one is still in
    /// flight (Go's `Forget`). Callers already waiting keep waiting for, and receive,
    /// the old execution's result. Returns whether an execution was in flight.
    pub fn forget(&self, key: &K) -> bool {
        // Dropped outside the shard lock: if it is the last handle, dropping the
        // execution runs user `Drop` code, which may call back into this group.
        let removed = self.inner.flights.remove(key);
        if removed.is_some() {
            tracing::debug!(target: "backstop_dedup", "singleflight key forgotten while in flight");
        }
        removed.is_some()
    }

    /// Number of keys with an execution in flight.
    pub fn in_flight(&self) -> usize {
        self.inner.flights.len()
    }

    /// Whether an execution for `key` is in flight.
    pub fn is_in_flight(&self, key: &K) -> bool {
        self.inner.flights.contains_key(key)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> GroupStats {
        self.inner.counters.read_into(GroupStats {
            in_flight: self.inner.flights.len() as u64,
            ..GroupStats::default()
        })
    }

    pub(crate) async fn run(
        &self,
        key: K,
        follower_timeout: Option<Duration>,
        make: impl FnOnce(Arc<Counters>) -> BoxFuture<'static, Output<V, E>>,
    ) -> Result<DedupOutcome<V>, DedupError<E>> {
        let (flight, id, leader) = match self.inner.flights.entry(key.clone()) {
            MapEntry::Occupied(mut occupied) => {
                let entry = occupied.get_mut();
                entry.waiters += 1;
                entry.followers += 1;
                (entry.flight.join(), entry.id, false)
            }
            MapEntry::Vacant(vacant) => {
                let id = self.inner.next_id.fetch_add(1, Relaxed);
                let flight = Flight::new(make(Arc::clone(&self.inner.counters)), |p| {
                    Err(DedupError::Panicked(p))
                });
                let joined = flight.join();
                vacant.insert(Entry {
                    id,
                    flight,
                    waiters: 1,
                    followers: 0,
                });
                (joined, id, true)
            }
        };
        if !leader {
            Counters::bump(&self.inner.counters.coalesced);
        }
        let mut waiter = Waiter {
            inner: &self.inner,
            key,
            id,
            done: false,
        };
        // Declared after `waiter` so it is dropped first: if we are the last waiter, the
        // entry's handle is then the only one left and releasing the entry ends the
        // execution.
        let mut flight = flight;
        let result = match (follower_timeout, leader) {
            (Some(after), false) => {
                let after = backstop_core::time::clamp(after);
                match tokio::time::timeout(after, &mut flight).await {
                    Ok(result) => result,
                    Err(_) => {
                        Counters::bump(&self.inner.counters.timeouts);
                        tracing::debug!(target: "backstop_dedup", ?after, "singleflight follower timed out");
                        return Err(DedupError::Rejected(Rejected::new(RejectKind::Timeout)));
                    }
                }
            }
            _ => (&mut flight).await,
        };
        let joined = if flight.first_to_finish() {
            waiter.finish()
        } else {
            // Someone else got the result first, so this execution was shared.
            waiter.done = true;
            true
        };
        result.map(|value| DedupOutcome {
            value,
            shared: !leader || joined,
            source: if leader {
                Source::Executed
            } else {
                Source::Joined
            },
        })
    }
}

/// Wraps the user's work: counts the execution when it really starts and turns a panic
/// (in the closure or in the future) into an error every waiter receives.
pub(crate) async fn execute<V, E, F, Fut>(counters: Arc<Counters>, work: F) -> Output<V, E>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<V, E>>,
{
    Counters::bump(&counters.executions);
    match AssertUnwindSafe(async move { work().await })
        .catch_unwind()
        .await
    {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(DedupError::Inner(error)),
        Err(payload) => {
            Counters::bump(&counters.panics);
            let panicked = Panicked::from_payload("dedup.work", &*payload);
            tracing::warn!(target: "backstop_dedup", %panicked, "singleflight work panicked; every waiter gets an error");
            Err(DedupError::Panicked(panicked))
        }
    }
}

/// One caller's stake in an execution; releases the key when the caller leaves.
struct Waiter<'a, K: Hash + Eq, V, E> {
    inner: &'a Inner<K, V, E>,
    key: K,
    id: u64,
    done: bool,
}

impl<K: Hash + Eq, V, E> Waiter<'_, K, V, E> {
    /// Called with the result in hand: releases the key (whoever gets the result first
    /// does it) and says whether anyone else joined this execution.
    fn finish(&mut self) -> bool {
        self.done = true;
        let mut joined = true;
        let removed = self.inner.flights.remove_if(&self.key, |_, entry| {
            if entry.id == self.id {
                joined = entry.followers > 0;
                true
            } else {
                false
            }
        });
        drop(removed);
        joined
    }
}

impl<K: Hash + Eq, V, E> Drop for Waiter<'_, K, V, E> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let removed = self.inner.flights.remove_if_mut(&self.key, |_, entry| {
            if entry.id != self.id {
                return false;
            }
            entry.waiters -= 1;
            entry.waiters == 0
        });
        if removed.is_some() {
            Counters::bump(&self.inner.counters.abandoned);
            tracing::debug!(target: "backstop_dedup", "every waiter left; in-flight execution dropped");
        }
    }
}
