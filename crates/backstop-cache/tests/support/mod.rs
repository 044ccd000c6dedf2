//! A map-backed tier shared by the tiered-cache tests.
#![allow(dead_code)] // each test binary uses a different part of it

use async_trait::async_trait;
use backstop_cache::{Entry, Tier, TierError, TierStats, TieredCache};
use backstop_core::Clock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a [`MapTier`] holds: each entry with the TTL it was written with.
pub(crate) type Stored = HashMap<String, (Entry<String>, Option<Duration>)>;

/// A map-backed tier that records TTLs and can be switched to failing.
#[derive(Clone, Default)]
pub(crate) struct MapTier {
    name: &'static str,
    pub entries: Arc<Mutex<Stored>>,
    pub down: Arc<AtomicBool>,
    /// While set, `set` panics (a tier with a bug).
    pub panics: Arc<AtomicBool>,
}

impl MapTier {
    pub(crate) fn named(name: &'static str) -> Self {
        Self {
            name,
            ..Self::default()
        }
    }
    /// The live value under `key` and the TTL it was written with.
    pub(crate) fn holds(&self, key: &str) -> Option<(String, Option<Duration>)> {
        let entries = self.entries.lock().unwrap();
        let (entry, ttl) = entries.get(key)?;
        Some((entry.value.clone()?, *ttl))
    }
    /// Stores a value that never goes stale.
    pub(crate) fn put(&self, key: &str, value: &str) {
        let entry = Entry {
            value: Some(value.to_string()),
            fresh_until: u64::MAX,
        };
        self.entries
            .lock()
            .unwrap()
            .insert(key.to_string(), (entry, None));
    }
    fn check(&self) -> Result<(), TierError> {
        if self.down.load(Ordering::SeqCst) {
            Err(TierError::Backend(format!("{} is down", self.name)))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Tier<Entry<String>> for MapTier {
    fn name(&self) -> &str {
        self.name
    }
    async fn get(&self, key: &str) -> Result<Option<Entry<String>>, TierError> {
        self.check()?;
        Ok(self
            .entries
            .lock()
            .unwrap()
            .get(key)
            .map(|(entry, _)| entry.clone()))
    }
    async fn set(
        &self,
        key: &str,
        value: &Entry<String>,
        ttl: Option<Duration>,
    ) -> Result<(), TierError> {
        assert!(!self.panics.load(Ordering::SeqCst), "tier exploded");
        self.check()?;
        self.entries
            .lock()
            .unwrap()
            .insert(key.to_string(), (value.clone(), ttl));
        Ok(())
    }
    async fn delete(&self, key: &str) -> Result<(), TierError> {
        self.check()?;
        self.entries.lock().unwrap().remove(key);
        Ok(())
    }
    async fn invalidate_all(&self) -> Result<u64, TierError> {
        self.check()?;
        let mut entries = self.entries.lock().unwrap();
        let before = entries.len();
        entries.clear();
        Ok(before as u64)
    }
    async fn invalidate_prefix(&self, prefix: &str) -> Result<u64, TierError> {
        self.check()?;
        if prefix.is_empty() {
            return Err(TierError::EmptyPrefix);
        }
        let mut entries = self.entries.lock().unwrap();
        let before = entries.len();
        entries.retain(|key, _| !key.starts_with(prefix));
        Ok((before - entries.len()) as u64)
    }
    fn stats(&self) -> TierStats {
        TierStats::default()
    }
}

/// Writes `value` at `key` through every tier; a partial write fails the test.
pub(crate) async fn put<C: Clock>(cache: &TieredCache<String, String, C>, key: &str, value: &str) {
    cache
        .insert(&key.to_string(), value.to_string())
        .await
        .unwrap();
}
