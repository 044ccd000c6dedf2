//! What the router needs to know of a request: its token cost and its sticky key.

use std::hash::{Hash, Hasher};

/// A request's routing hints: its token cost (charged to the chosen target's token budget
/// and compared with each target's context window) and an optional sticky key.
///
/// ```
/// use backstop_route::RouteHints;
///
/// let hints = RouteHints::new().tokens(1_200).sticky("conversation-42");
/// assert_eq!(hints.token_cost(), 1_200);
/// assert_eq!(hints.sticky_key(), RouteHints::new().sticky("conversation-42").sticky_key());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteHints {
    tokens: u64,
    sticky: Option<u64>,
}

impl RouteHints {
    /// No cost, no sticky key.
    pub const fn new() -> Self {
        Self {
            tokens: 0,
            sticky: None,
        }
    }

    /// The request's token cost (an estimate: prompt plus expected completion).
    pub const fn tokens(mut self, tokens: u64) -> Self {
        self.tokens = tokens;
        self
    }

    /// Routes every request with the same `key` (a conversation id, a prompt prefix) to the
    /// same target while it can take them, so the provider's prompt cache stays warm.
    pub fn sticky(self, key: impl Hash) -> Self {
        self.sticky_hash(sticky_hash(&key))
    }

    /// As [`sticky`](Self::sticky), with the key already hashed by [`sticky_hash`].
    pub const fn sticky_hash(mut self, hash: u64) -> Self {
        self.sticky = Some(hash);
        self
    }

    /// The token cost.
    pub const fn token_cost(&self) -> u64 {
        self.tokens
    }

    /// The hashed sticky key, if any.
    pub const fn sticky_key(&self) -> Option<u64> {
        self.sticky
    }
}

/// A stable hash of a sticky key (FNV-1a over what `Hash` writes): the same key maps to the
/// same target in every process running the same build, so replicas agree.
pub fn sticky_hash<K: Hash + ?Sized>(key: &K) -> u64 {
    let mut hasher = Fnv(0xcbf2_9ce4_8422_2325);
    key.hash(&mut hasher);
    hasher.finish()
}

/// A 64-bit mix (splitmix64's finalizer): spreads a key and a target's name hash over the
/// whole word for rendezvous hashing.
#[inline]
pub(crate) fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}
