//! The in-memory cache: the standalone [`MemoryCache`] and the L1 tier of the tiered cache.

pub(crate) mod adapt;
pub(crate) mod cache;
pub(crate) mod config;
pub(crate) mod expiry;
pub(crate) mod ghost;
pub(crate) mod layer;
pub(crate) mod listener;
pub(crate) mod lock;
pub(crate) mod policy;
pub(crate) mod shard;
pub(crate) mod sketch;
pub(crate) mod stats;
