//! Stream caching: completed streams stored as their chunk sequence in every tier and
//! replayed as streams; in-flight streams shared through `backstop_dedup::StreamGroup`.

pub(crate) mod cache;
pub(crate) mod config;
pub(crate) mod layer;
pub(crate) mod record;
pub(crate) mod recorder;
pub(crate) mod stats;
