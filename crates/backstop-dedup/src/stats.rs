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

// Every counter set is one `AtomicU64` per event, read field by field into the stats
// snapshot field of the same name: one list of names writes both halves, so a counter
// cannot be added without reaching the snapshot.
macro_rules! counter_set {
    ($(#[$attr:meta])* $name:ident => $stats:ident { $($field:ident),+ $(,)? }) => {
        $(#[$attr])*
        #[derive(Debug, Default)]
        pub(crate) struct $name {
            $(pub(crate) $field: std::sync::atomic::AtomicU64,)+
        }

        impl $name {
            pub(crate) fn bump(counter: &std::sync::atomic::AtomicU64) {
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }

            /// `stats` with each counter's current value in the field of its name.
            pub(crate) fn read_into(&self, mut stats: $stats) -> $stats {
                $(stats.$field = self.$field.load(std::sync::atomic::Ordering::Relaxed);)+
                stats
            }
        }
    };
}
pub(crate) use counter_set;

counter_set!(
    /// A [`Group`](crate::Group)'s event counters (`in_flight` is its map's length).
    Counters => GroupStats {
        executions,
        coalesced,
        panics,
        timeouts,
        abandoned,
    }
);
