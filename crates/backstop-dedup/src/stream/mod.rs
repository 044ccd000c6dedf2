//! Shared in-flight streams: identical concurrent streamed requests (LLM answers, token by
//! token) read one upstream stream, each reader at its own pace, late joiners first
//! replaying what was already produced.

pub(crate) mod config;
pub(crate) mod group;
pub(crate) mod layer;
pub(crate) mod shared;
pub(crate) mod stats;
