//! An embedded, on-disk tier on `redb` (feature `persistent`), for caches that should
//! survive a restart: expensive LLM answers and embeddings.

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, TableDefinition};
use serde::{Serialize, de::DeserializeOwned};
use std::marker::PhantomData;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::tier::{TierCounters, ensure_prefix};
use crate::{Tier, TierError, TierStats, ValueCodec};

/// key → (expires at, in Unix milliseconds, 0 for never; encoded value)
const ENTRIES: TableDefinition<&str, (u64, &[u8])> = TableDefinition::new("entries");
/// (expires at, key) → (): lets reclamation read only what has expired, not every entry.
const EXPIRIES: TableDefinition<(u64, &str), ()> = TableDefinition::new("expiries");

const NEVER: u64 = 0;

/// A cache tier in a `redb` file.
///
/// Expired entries are never returned (the deadline is checked on read) and are removed
/// by [`reclaim_expired`](Self::reclaim_expired), which walks an expiry index from the
/// oldest deadline and stops at the first one still in the future, so its cost follows the
/// number of expired entries, not the size of the store.
/// [`spawn_reclaimer`](Self::spawn_reclaimer) runs it periodically. Deadlines are wall-clock (Unix time), as
/// they must survive a restart. Store operations run on tokio's blocking pool.
pub struct PersistentTier<V> {
    store: Arc<Store>,
    _values: PhantomData<fn() -> V>,
}

struct Store {
    database: Database,
    codec: ValueCodec,
    counters: TierCounters,
}

fn storage(error: impl std::fmt::Display) -> TierError {
    TierError::Backend(error.to_string())
}

fn unix_millis_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(backstop_core::time::millis)
        .unwrap_or(0)
}

impl<V> PersistentTier<V> {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: impl AsRef<Path>, codec: ValueCodec) -> Result<Self, TierError> {
        let database = Database::create(path).map_err(storage)?;
        let transaction = database.begin_write().map_err(storage)?;
        transaction.open_table(ENTRIES).map_err(storage)?;
        transaction.open_table(EXPIRIES).map_err(storage)?;
        transaction.commit().map_err(storage)?;
        Ok(Self {
            store: Arc::new(Store {
                database,
                codec,
                counters: TierCounters::default(),
            }),
            _values: PhantomData,
        })
    }

    /// Removes every expired entry; returns how many.
    pub async fn reclaim_expired(&self) -> Result<u64, TierError> {
        let store = self.store.clone();
        blocking(move || store.reclaim_expired(unix_millis_now())).await
    }

    /// Runs [`reclaim_expired`](Self::reclaim_expired) every `period` until the tier is
    /// dropped. Failures are logged with `tracing` and retried next period.
    pub fn spawn_reclaimer(&self, period: Duration) -> tokio::task::JoinHandle<()>
    where
        V: 'static,
    {
        let store = Arc::downgrade(&self.store);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(store) = store.upgrade() else {
                    return;
                };
                match blocking(move || store.reclaim_expired(unix_millis_now())).await {
                    Ok(0) => {}
                    Ok(count) => tracing::debug!(count, "reclaimed expired persistent entries"),
                    Err(error) => tracing::warn!(%error, "reclaiming expired entries failed"),
                }
            }
        })
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, TierError> + Send + 'static,
) -> Result<T, TierError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| TierError::Backend(format!("store task failed: {error}")))?
}

impl Store {
    fn get(&self, key: &str, now: u64) -> Result<Option<Vec<u8>>, TierError> {
        let transaction = self.database.begin_read().map_err(storage)?;
        let entries = transaction.open_table(ENTRIES).map_err(storage)?;
        let Some(entry) = entries.get(key).map_err(storage)? else {
            return Ok(None);
        };
        let (expires_at, bytes) = entry.value();
        if expires_at != NEVER && expires_at <= now {
            return Ok(None);
        }
        Ok(Some(bytes.to_vec()))
    }

    fn set(&self, key: &str, bytes: &[u8], expires_at: u64) -> Result<(), TierError> {
        let transaction = self.database.begin_write().map_err(storage)?;
        {
            let mut entries = transaction.open_table(ENTRIES).map_err(storage)?;
            let mut expiries = transaction.open_table(EXPIRIES).map_err(storage)?;
            let previous = entries
                .insert(key, (expires_at, bytes))
                .map_err(storage)?
                .map(|old| old.value().0);
            if let Some(old_expiry) = previous.filter(|expiry| *expiry != NEVER) {
                expiries.remove((old_expiry, key)).map_err(storage)?;
            }
            if expires_at != NEVER {
                expiries.insert((expires_at, key), ()).map_err(storage)?;
            }
        }
        transaction.commit().map_err(storage)
    }

    fn delete_keys(&self, keys: &[String]) -> Result<u64, TierError> {
        let transaction = self.database.begin_write().map_err(storage)?;
        let mut removed = 0;
        {
            let mut entries = transaction.open_table(ENTRIES).map_err(storage)?;
            let mut expiries = transaction.open_table(EXPIRIES).map_err(storage)?;
            for key in keys {
                let expiry = entries
                    .remove(key.as_str())
                    .map_err(storage)?
                    .map(|old| old.value().0);
                if let Some(expiry) = expiry {
                    removed += 1;
                    if expiry != NEVER {
                        expiries.remove((expiry, key.as_str())).map_err(storage)?;
                    }
                }
            }
        }
        transaction.commit().map_err(storage)?;
        Ok(removed)
    }

    fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, TierError> {
        let transaction = self.database.begin_read().map_err(storage)?;
        let entries = transaction.open_table(ENTRIES).map_err(storage)?;
        let mut keys = Vec::new();
        for entry in entries.range(prefix..).map_err(storage)? {
            let (key, _) = entry.map_err(storage)?;
            let key = key.value();
            if !key.starts_with(prefix) {
                break;
            }
            keys.push(key.to_string());
        }
        Ok(keys)
    }

    fn reclaim_expired(&self, now: u64) -> Result<u64, TierError> {
        let expired: Vec<String> = {
            let transaction = self.database.begin_read().map_err(storage)?;
            let expiries = transaction.open_table(EXPIRIES).map_err(storage)?;
            let mut keys = Vec::new();
            for entry in expiries
                .range((1, "")..=(now, "\u{10FFFF}"))
                .map_err(storage)?
            {
                let (deadline_and_key, _) = entry.map_err(storage)?;
                let (deadline, key) = deadline_and_key.value();
                if deadline > now {
                    break;
                }
                keys.push(key.to_string());
            }
            keys
        };
        let removed = self.delete_keys(&expired)?;
        self.counters.invalidated(removed);
        Ok(removed)
    }
}

#[async_trait]
impl<V> Tier<V> for PersistentTier<V>
where
    V: Serialize + DeserializeOwned + Send + Sync,
{
    fn name(&self) -> &str {
        "redb"
    }

    async fn get(&self, key: &str) -> Result<Option<V>, TierError> {
        let store = self.store.clone();
        let owned_key = key.to_string();
        let bytes = self
            .store
            .counters
            .track(blocking(move || store.get(&owned_key, unix_millis_now())).await)?;
        let value = self.store.counters.decode_read(&self.store.codec, bytes);
        self.store.counters.track(value)
    }

    async fn set(&self, key: &str, value: &V, ttl: Option<Duration>) -> Result<(), TierError> {
        let bytes = self.store.counters.track(self.store.codec.encode(value))?;
        let expires_at = match ttl {
            Some(ttl) => unix_millis_now().saturating_add(backstop_core::time::millis(ttl).max(1)),
            None => NEVER,
        };
        let store = self.store.clone();
        let owned_key = key.to_string();
        self.store
            .counters
            .track(blocking(move || store.set(&owned_key, &bytes, expires_at)).await)?;
        self.store.counters.set();
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), TierError> {
        let store = self.store.clone();
        let keys = vec![key.to_string()];
        self.store
            .counters
            .track(blocking(move || store.delete_keys(&keys)).await)?;
        self.store.counters.delete();
        Ok(())
    }

    async fn invalidate_prefix(&self, prefix: &str) -> Result<u64, TierError> {
        ensure_prefix(prefix)?;
        self.remove_prefixed(prefix).await
    }

    async fn invalidate_all(&self) -> Result<u64, TierError> {
        // The file holds this tier's entries only, so every key is its own.
        self.remove_prefixed("").await
    }

    fn stats(&self) -> TierStats {
        self.store.counters.snapshot()
    }
}

impl<V> PersistentTier<V> {
    async fn remove_prefixed(&self, prefix: &str) -> Result<u64, TierError> {
        let store = self.store.clone();
        let prefix = prefix.to_string();
        let removed = self.store.counters.track(
            blocking(move || {
                let keys = store.keys_with_prefix(&prefix)?;
                store.delete_keys(&keys)
            })
            .await,
        )?;
        self.store.counters.invalidated(removed);
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tier on a fresh file, and the directory that holds it (removed when dropped).
    fn tier() -> (tempfile::TempDir, PersistentTier<String>) {
        let dir = tempfile::tempdir().unwrap();
        let tier = PersistentTier::open(dir.path().join("cache.redb"), ValueCodec::new()).unwrap();
        (dir, tier)
    }

    #[test]
    fn deadlines_are_honoured_on_read_and_reclaimed_from_the_index() {
        let (_dir, tier) = tier();
        let store = &tier.store;
        store.set("short", b"a", 1_000).unwrap();
        store.set("long", b"b", 5_000).unwrap();
        store.set("forever", b"c", NEVER).unwrap();

        assert_eq!(store.get("short", 999).unwrap(), Some(b"a".to_vec()));
        assert_eq!(store.get("short", 1_000).unwrap(), None, "due is expired");
        assert_eq!(store.reclaim_expired(1_000).unwrap(), 1);
        assert_eq!(
            store.reclaim_expired(1_000).unwrap(),
            0,
            "index entry went too"
        );
        assert_eq!(store.get("long", 1_000).unwrap(), Some(b"b".to_vec()));
        assert_eq!(store.reclaim_expired(u64::MAX - 1).unwrap(), 1);
        assert_eq!(
            store.get("forever", u64::MAX - 1).unwrap(),
            Some(b"c".to_vec())
        );
    }

    #[test]
    fn overwriting_moves_the_deadline() {
        let (_dir, tier) = tier();
        let store = &tier.store;
        store.set("k", b"old", 1_000).unwrap();
        store.set("k", b"new", 9_000).unwrap();
        assert_eq!(store.reclaim_expired(5_000).unwrap(), 0);
        assert_eq!(store.get("k", 5_000).unwrap(), Some(b"new".to_vec()));
        store.set("k", b"kept", NEVER).unwrap();
        assert_eq!(store.reclaim_expired(u64::MAX - 1).unwrap(), 0);
    }
}
