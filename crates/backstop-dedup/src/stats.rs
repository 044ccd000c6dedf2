use serde::Serialize;

/// A point-in-time snapshot of a [`Group`](crate::Group)'s counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct GroupStats {
    /// Executions actually started (the work future was polled for the first time).
    pub executions: u64,
    /// Callers that joined an execution already in flight instead of starting one.
    pub coalesced: u64,
    /// Executions that ended in a panic.
    pub panics: u64,
    /// Followers that gave up after their timeout.
    pub timeouts: u64,
    /// Executions dropped unfinished because every caller waiting on them went away.
    pub abandoned: u64,
    /// Keys with an execution in flight right now.
    pub in_flight: u64,
}

/// A point-in-time snapshot of a [`DedupWindow`](crate::DedupWindow)'s counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WindowStats {
    /// Calls answered from the remembered results without running or joining anything.
    pub window_hits: u64,
    /// Results currently remembered (expired ones may still count until evicted).
    pub remembered: u64,
    /// Remembered results dropped because the window was full.
    pub evicted: u64,
    /// Counters of the group that coalesces in-flight duplicates.
    pub group: GroupStats,
}

backstop_core::counter_set!(
    /// A [`Group`](crate::Group)'s event counters (`in_flight` is its map's length).
    pub(crate) struct Counters => GroupStats {
        executions,
        coalesced,
        panics,
        timeouts,
        abandoned,
    }
);
