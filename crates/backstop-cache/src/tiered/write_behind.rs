//! Write-behind for slow tiers: writes return at once and reach the tier in batches.

use async_trait::async_trait;
use backstop_core::config::{ConfigError, ensure_count};
use backstop_core::contain_future;
use dashmap::DashMap;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

use crate::{Tier, TierError, TierStats};

/// A write waiting to reach the slow tier.
struct Pending<V> {
    value: V,
    ttl: Option<Duration>,
    /// Distinguishes this write from a later one to the same key.
    sequence: u64,
}

struct Shared<V> {
    tier: Arc<dyn Tier<V>>,
    pending: DashMap<String, Pending<V>>,
    next_sequence: AtomicU64,
    counters: WriteBehindCounters,
    /// Held while a batch is applied and while a delete or invalidation runs, so a
    /// flush can never write back a value that a delete has just removed.
    applying: tokio::sync::Mutex<()>,
}

/// Wraps a slow tier so that `set` returns at once: writes wait in a bounded queue and a
/// background task applies them in batches of up to `batch_size`.
///
/// Reads see queued writes immediately (they are answered from the queue first), deletes
/// and invalidations go straight to the tier and cancel queued writes they cover, and a
/// later write to a key replaces an earlier queued one. When the queue is full, `set`
/// fails with [`TierError::Backend`] so the caller (the tiered cache) reports it rather
/// than blocking a request on the slow tier. The background task ends when the wrapper
/// is dropped, after applying what is queued.
pub struct WriteBehind<V> {
    shared: Arc<Shared<V>>,
    queue: mpsc::Sender<(String, u64)>,
    name: String,
}

/// The largest write-behind queue: writes waiting beyond it are better refused.
pub const MAX_WRITE_BEHIND_QUEUE: usize = 1 << 20;

/// The largest write-behind batch (writes applied concurrently in one flush).
pub const MAX_WRITE_BEHIND_BATCH: usize = 1 << 16;

impl<V: Clone + Send + Sync + 'static> WriteBehind<V> {
    /// Wraps `tier` with a queue of `capacity` writes (1 to [`MAX_WRITE_BEHIND_QUEUE`]),
    /// flushed `batch_size` at a time (1 to [`MAX_WRITE_BEHIND_BATCH`]); other sizes are
    /// refused with an error naming them. Must be called inside a tokio runtime.
    pub fn new(
        tier: impl Tier<V> + 'static,
        capacity: usize,
        batch_size: usize,
    ) -> Result<Self, ConfigError> {
        ensure_count("capacity", capacity, 1, MAX_WRITE_BEHIND_QUEUE)?;
        ensure_count("batch_size", batch_size, 1, MAX_WRITE_BEHIND_BATCH)?;
        let (queue, receiver) = mpsc::channel(capacity);
        let name = format!("{}+write_behind", tier.name());
        let shared = Arc::new(Shared {
            tier: Arc::new(tier),
            pending: DashMap::new(),
            next_sequence: AtomicU64::new(0),
            counters: WriteBehindCounters::default(),
            applying: tokio::sync::Mutex::new(()),
        });
        tokio::spawn(flush_loop(shared.clone(), receiver, batch_size));
        Ok(Self {
            shared,
            queue,
            name,
        })
    }

    /// Writes queued and not yet applied.
    pub fn queued(&self) -> usize {
        self.shared.pending.len()
    }

    /// Writes refused because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.shared.counters.dropped.load(Ordering::Relaxed)
    }

    /// The queue's counters.
    pub fn queue_stats(&self) -> WriteBehindStats {
        let shared = &self.shared;
        shared.counters.read_into(WriteBehindStats {
            queued: shared.pending.len(),
            ..WriteBehindStats::default()
        })
    }
}

/// What a [`WriteBehind`] queue has done since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct WriteBehindStats {
    /// Writes queued and not yet applied.
    pub queued: usize,
    /// Writes refused because the queue was full.
    pub dropped: u64,
    /// Writes applied to the slow tier.
    pub flushed: u64,
    /// Writes the slow tier refused.
    pub failed: u64,
    /// Batches whose write to the slow tier panicked: the panic was contained, the
    /// batch's writes counted as failed, and the flusher went on with the next batch.
    pub panicked: u64,
}

backstop_core::counter_set!(
    /// The counters behind [`WriteBehindStats`].
    struct WriteBehindCounters => WriteBehindStats {
        dropped,
        flushed,
        failed,
        panicked,
    }
);

async fn flush_loop<V: Clone + Send + Sync + 'static>(
    shared: Arc<Shared<V>>,
    mut receiver: mpsc::Receiver<(String, u64)>,
    batch_size: usize,
) {
    let mut batch = Vec::with_capacity(batch_size);
    while receiver.recv_many(&mut batch, batch_size).await > 0 {
        let _applying = shared.applying.lock().await;
        let writes = batch.drain(..).filter_map(|(key, sequence)| {
            let pending = shared.pending.get(&key)?;
            // A newer write or a delete replaced this one; the newer one flushes itself.
            (pending.sequence == sequence)
                .then(|| (key.clone(), pending.value.clone(), pending.ttl, sequence))
        });
        let writes: Vec<_> = writes.collect();
        let flush = futures::future::join_all(
            writes
                .iter()
                .map(|(key, value, ttl, _)| shared.tier.set(key, value, *ttl)),
        );
        // A tier that panics fails this batch only: the flusher must outlive it, or every
        // later write would wait in the queue for ever.
        let results = match contain_future("write-behind flush", flush).await {
            Ok(results) => results,
            Err(panicked) => {
                shared.counters.panicked.fetch_add(1, Ordering::Relaxed);
                tracing::error!(tier = shared.tier.name(), %panicked, "write-behind flush panicked; batch dropped");
                writes
                    .iter()
                    .map(|_| Err(TierError::Backend(panicked.to_string())))
                    .collect()
            }
        };
        for ((key, _, _, sequence), result) in writes.iter().zip(results) {
            shared
                .pending
                .remove_if(key, |_, pending| pending.sequence == *sequence);
            match result {
                Ok(()) => shared.counters.flushed.fetch_add(1, Ordering::Relaxed),
                Err(error) => {
                    tracing::warn!(tier = shared.tier.name(), %error, "write-behind flush failed");
                    shared.counters.failed.fetch_add(1, Ordering::Relaxed)
                }
            };
        }
    }
}

#[async_trait]
impl<V: Clone + Send + Sync + 'static> Tier<V> for WriteBehind<V> {
    fn name(&self) -> &str {
        &self.name
    }

    async fn get(&self, key: &str) -> Result<Option<V>, TierError> {
        if let Some(pending) = self.shared.pending.get(key) {
            return Ok(Some(pending.value.clone()));
        }
        self.shared.tier.get(key).await
    }

    async fn set(&self, key: &str, value: &V, ttl: Option<Duration>) -> Result<(), TierError> {
        let sequence = self.shared.next_sequence.fetch_add(1, Ordering::Relaxed);
        let permit = self.queue.try_reserve().map_err(|_| {
            self.shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
            TierError::Backend(format!("{} queue is full", self.name))
        })?;
        let pending = Pending {
            value: value.clone(),
            ttl,
            sequence,
        };
        // Concurrent writes to one key may arrive out of sequence order: the newest wins.
        match self.shared.pending.entry(key.to_string()) {
            dashmap::Entry::Occupied(mut queued) if queued.get().sequence < sequence => {
                queued.insert(pending);
            }
            dashmap::Entry::Occupied(_) => {}
            dashmap::Entry::Vacant(slot) => {
                slot.insert(pending);
            }
        }
        permit.send((key.to_string(), sequence));
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), TierError> {
        let _applying = self.shared.applying.lock().await;
        self.shared.pending.remove(key);
        self.shared.tier.delete(key).await
    }

    async fn invalidate_prefix(&self, prefix: &str) -> Result<u64, TierError> {
        super::tier::ensure_prefix(prefix)?;
        let _applying = self.shared.applying.lock().await;
        self.shared
            .pending
            .retain(|key, _| !key.starts_with(prefix));
        self.shared.tier.invalidate_prefix(prefix).await
    }

    async fn invalidate_all(&self) -> Result<u64, TierError> {
        let _applying = self.shared.applying.lock().await;
        self.shared.pending.clear();
        self.shared.tier.invalidate_all().await
    }

    fn stats(&self) -> TierStats {
        let mut stats = self.shared.tier.stats();
        stats.errors += self.shared.counters.dropped.load(Ordering::Relaxed)
            + self.shared.counters.failed.load(Ordering::Relaxed);
        stats
    }
}
