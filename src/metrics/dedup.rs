//! Dedup: `backstop_dedup_coalesced_total` counts every caller served by an execution it
//! did not start, whatever the path (joined in flight, answered from a window, read from
//! another process, joined a shared stream), so "callers saved" is one series.

use super::{Labels, PublishMetrics, values};
use backstop_dedup::{GroupStats, StreamGroupStats, WindowStats};

impl PublishMetrics for GroupStats {
    fn publish(&self, name: &str) {
        publish_group(self, self.executions, self.coalesced, name);
    }
}

/// A window's coalesced callers are the group's followers plus its window hits
/// (`backstop_dedup_window_hits_total` is that part on its own).
impl PublishMetrics for WindowStats {
    fn publish(&self, name: &str) {
        let coalesced = self.group.coalesced + self.window_hits;
        publish_group(&self.group, self.group.executions, coalesced, name);
        let labels = Labels::named(name);
        labels.publish_fields("backstop_dedup", self);
        labels.publish(values! {
            "backstop_dedup_window_evicted_total" => self.evicted,
        });
    }
}

/// Executions are the runs of the work in this process (leased or, in an outage,
/// unleased); callers that read another process's result count as coalesced.
#[cfg(feature = "redis")]
impl PublishMetrics for backstop_dedup::DistributedStats {
    fn publish(&self, name: &str) {
        let executions = self.leased_executions + self.local_fallbacks;
        let coalesced = self.local.coalesced + self.remote_results;
        publish_group(&self.local, executions, coalesced, name);
        Labels::named(name).publish_fields("backstop_dedup", self);
    }
}

/// A shared stream's followers are its coalesced callers; an upstream opened is an
/// execution.
impl PublishMetrics for StreamGroupStats {
    fn publish(&self, name: &str) {
        let labels = Labels::named(name);
        labels.publish_fields("backstop_dedup_stream", self);
        labels.publish(values! {
            "backstop_dedup_executions_total" => self.streams + self.unshared,
            "backstop_dedup_coalesced_total" => self.followers,
            "backstop_dedup_panics_total" => self.panicked,
            "backstop_dedup_abandoned_total" => self.abandoned,
            "backstop_dedup_in_flight" => self.in_flight,
            "backstop_dedup_stream_buffered_bytes" => self.bytes_buffered,
        });
    }
}

fn publish_group(group: &GroupStats, executions: u64, coalesced: u64, name: &str) {
    let labels = Labels::named(name);
    labels.publish_fields_except("backstop_dedup", group, &["executions", "coalesced"]);
    labels.publish(values! {
        "backstop_dedup_executions_total" => executions,
        "backstop_dedup_coalesced_total" => coalesced,
    });
}
