use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use backstop_core::config::{ConfigError, Validate};
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::config::DedupWindowConfig;
use crate::error::DedupError;
use crate::group::{Group, Output, execute};
use crate::outcome::{DedupOutcome, Source};
use crate::stats::WindowStats;

/// A duplicate-detection window: completed results remembered by idempotency key.
///
/// Like a message broker's duplicate-detection history, a retry of a request that
/// completed less than [`ttl`](DedupWindowConfig::ttl) ago gets the first result instead of
/// running again, and duplicates that arrive while the first is still running join it
/// (through a [`Group`], with the same cancellation and panic guarantees). At most
/// [`max_entries`](DedupWindowConfig::max_entries) results are remembered; the oldest is
/// forgotten first. Errors are remembered only with
/// [`cache_errors`](DedupWindowConfig::cache_errors); panics never are.
///
/// The result is recorded *before* the in-flight key is released, so there is no gap
/// in which a retry finds neither the running execution nor its result. Expiry uses
/// tokio's clock, so tests can drive it with `tokio::time::pause`.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use backstop_dedup::{DedupWindow, Source, DedupWindowConfig};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let config = DedupWindowConfig::builder().ttl(Duration::from_secs(60)).max_entries(1_000).build().unwrap();
/// let window: DedupWindow<String, String, String> = DedupWindow::new(config).unwrap();
///
/// let charge = || async { Ok::<_, String>("charged card, receipt 17".to_string()) };
/// let first = window.work("idempotency-key-abc".to_string(), charge).await.unwrap();
/// let retry = window.work("idempotency-key-abc".to_string(), charge).await.unwrap();
/// assert_eq!(first.value, retry.value);
/// assert_eq!(retry.source, Source::Window);
/// assert_eq!(window.stats().group.executions, 1);
/// # }
/// ```
pub struct DedupWindow<K, V, E> {
    group: Group<K, V, E>,
    history: Arc<History<K, V, E>>,
}

impl<K, V, E> Clone for DedupWindow<K, V, E> {
    fn clone(&self) -> Self {
        Self {
            group: self.group.clone(),
            history: Arc::clone(&self.history),
        }
    }
}

impl<K, V, E> fmt::Debug for DedupWindow<K, V, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DedupWindow")
            .field("config", &self.history.config)
            .finish_non_exhaustive()
    }
}

struct Remembered<V, E> {
    result: Result<V, E>,
    expires: Instant,
    /// Matches the queue slot that owns this entry, so stale slots left by a
    /// re-remembered key are skipped on eviction.
    seq: u64,
}

struct Entries<K, V, E> {
    map: HashMap<K, Remembered<V, E>>,
    /// Insertion order, oldest first: the eviction and expiry order.
    order: VecDeque<(K, u64)>,
    next_seq: u64,
}

struct History<K, V, E> {
    config: DedupWindowConfig,
    entries: Mutex<Entries<K, V, E>>,
    hits: AtomicU64,
    evicted: AtomicU64,
}

impl<K, V, E> History<K, V, E>
where
    K: Hash + Eq + Clone,
    V: Clone,
    E: Clone,
{
    fn lookup(&self, key: &K) -> Option<Result<V, E>> {
        let mut entries = self.entries.lock();
        let remembered = entries.map.get(key)?;
        if remembered.expires <= Instant::now() {
            entries.map.remove(key);
            return None;
        }
        let result = remembered.result.clone();
        drop(entries);
        self.hits.fetch_add(1, Relaxed);
        Some(result)
    }

    fn remember(&self, key: &K, result: &Output<V, E>) {
        let result = match result {
            Ok(value) => Ok(value.clone()),
            Err(DedupError::Inner(error)) if self.config.cache_errors => Err(error.clone()),
            Err(_) => return,
        };
        let now = Instant::now();
        let mut guard = self.entries.lock();
        let entries = &mut *guard;
        let seq = entries.next_seq;
        entries.next_seq += 1;
        entries.map.insert(
            key.clone(),
            Remembered {
                result,
                expires: now + backstop_core::time::clamp(self.config.ttl),
                seq,
            },
        );
        entries.order.push_back((key.clone(), seq));
        let mut evicted = 0;
        while let Some((oldest, oldest_seq)) = entries.order.front() {
            let current = entries.map.get(oldest).map(|r| (r.seq, r.expires));
            match current {
                // A stale slot: the key was forgotten, expired or re-remembered since.
                None => {}
                Some((seq, _)) if seq != *oldest_seq => {}
                Some((_, expires)) if expires <= now => {
                    entries.map.remove(oldest);
                }
                Some(_) if entries.map.len() > self.config.max_entries => {
                    entries.map.remove(oldest);
                    evicted += 1;
                }
                Some(_) => break,
            }
            entries.order.pop_front();
        }
        // Slots go stale when a key is forgotten or expires out of order; keep the queue
        // proportional to the map however keys churn.
        if entries.order.len() > 2 * entries.map.len() + 64 {
            let map = &entries.map;
            entries
                .order
                .retain(|(key, seq)| map.get(key).is_some_and(|r| r.seq == *seq));
        }
        drop(guard);
        if evicted > 0 {
            self.evicted.fetch_add(evicted, Relaxed);
            tracing::trace!(target: "backstop_dedup", evicted, "duplicate-detection window full; oldest results forgotten");
        }
    }
}

impl<K, V, E> DedupWindow<K, V, E>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    E: Clone + Send + Sync + 'static,
{
    /// A window with the given configuration, validated here.
    pub fn new(config: DedupWindowConfig) -> Result<Self, ConfigError> {
        config.validate().map_err(|e| e.within("window"))?;
        Ok(Self {
            group: Group::new(),
            history: Arc::new(History {
                config,
                entries: Mutex::new(Entries {
                    map: HashMap::new(),
                    order: VecDeque::new(),
                    next_seq: 0,
                }),
                hits: AtomicU64::new(0),
                evicted: AtomicU64::new(0),
            }),
        })
    }

    /// Returns the remembered result for `key` if it completed within the window,
    /// joins the execution in flight for `key` if there is one, and otherwise runs
    /// `work` and remembers its result.
    pub async fn work<F, Fut>(&self, key: K, work: F) -> Result<DedupOutcome<V>, DedupError<E>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
    {
        if let Some(result) = self.history.lookup(&key) {
            return match result {
                Ok(value) => Ok(DedupOutcome {
                    value,
                    shared: true,
                    source: Source::Window,
                }),
                Err(error) => Err(DedupError::Inner(error)),
            };
        }
        let history = Arc::clone(&self.history);
        let remembered_key = key.clone();
        let timeout = self.history.config.follower_timeout;
        self.group
            .run(key, timeout, move |counters| {
                Box::pin(async move {
                    // The previous execution may have completed between our lookup and
                    // our becoming leader; its result wins.
                    if let Some(result) = history.lookup(&remembered_key) {
                        return result.map_err(DedupError::Inner);
                    }
                    let result = execute(counters, work).await;
                    history.remember(&remembered_key, &result);
                    result
                })
            })
            .await
    }

    /// Forgets the remembered result for `key` and releases an in-flight execution for
    /// it, so the next call runs again. Returns whether there was anything to forget.
    pub fn forget(&self, key: &K) -> bool {
        let remembered = self.history.entries.lock().map.remove(key).is_some();
        let in_flight = self.group.forget(key);
        remembered || in_flight
    }

    /// Number of results remembered (expired ones count until they are evicted).
    pub fn len(&self) -> usize {
        self.history.entries.lock().map.len()
    }

    /// Whether no result is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The group coalescing in-flight duplicates.
    pub fn group(&self) -> &Group<K, V, E> {
        &self.group
    }

    /// The configuration this window was built with.
    pub fn config(&self) -> &DedupWindowConfig {
        &self.history.config
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> WindowStats {
        WindowStats {
            window_hits: self.history.hits.load(Relaxed),
            remembered: self.len() as u64,
            evicted: self.history.evicted.load(Relaxed),
            group: self.group.stats(),
        }
    }
}
