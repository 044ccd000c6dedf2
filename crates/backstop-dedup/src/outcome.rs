use serde::Serialize;

/// Where a caller's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// This caller started the execution that produced the value.
    Executed,
    /// This caller joined an execution already in flight for the same key.
    Joined,
    /// The value was remembered by a [`DedupWindow`](crate::DedupWindow) from an earlier
    /// completed execution.
    Window,
    /// Another process ran the work; the value was read from Redis (a
    /// `DistributedGroup`).
    Remote,
}

/// A successful deduplicated call: the value plus how it was obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedupOutcome<V> {
    /// The value the work produced.
    pub value: V,
    /// Whether the value went to more than one caller (Go's `shared` flag): true for
    /// every follower and window hit, and for a leader whose execution was joined.
    pub shared: bool,
    /// Where the value came from.
    pub source: Source,
}

impl<V> DedupOutcome<V> {
    /// The value, dropping the bookkeeping.
    pub fn into_value(self) -> V {
        self.value
    }
}
