//! Dedup: `backstop_dedup_coalesced_total` counts every caller served by an execution it
//! did not start, whatever the path (joined in flight, answered from a window, read from
//! another process, joined a shared stream), so "callers saved" is one series.

use super::{PublishMetrics, counter, gauge, named};
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
        let labels = named(name);
        counter(
            "backstop_dedup_window_hits_total",
            &labels,
            self.window_hits,
        );
        gauge("backstop_dedup_remembered", &labels, self.remembered as f64);
        counter("backstop_dedup_window_evicted_total", &labels, self.evicted);
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
        let labels = named(name);
        counter("backstop_dedup_takeovers_total", &labels, self.takeovers);
        counter(
            "backstop_dedup_remote_results_total",
            &labels,
            self.remote_results,
        );
        counter("backstop_dedup_polls_total", &labels, self.polls);
        counter(
            "backstop_dedup_redis_errors_total",
            &labels,
            self.redis_errors,
        );
        counter(
            "backstop_dedup_local_fallbacks_total",
            &labels,
            self.local_fallbacks,
        );
        counter(
            "backstop_dedup_misconfigured_total",
            &labels,
            self.misconfigured,
        );
    }
}

/// A shared stream's followers are its coalesced callers; an upstream opened is an
/// execution.
impl PublishMetrics for StreamGroupStats {
    fn publish(&self, name: &str) {
        let labels = named(name);
        counter(
            "backstop_dedup_executions_total",
            &labels,
            self.streams + self.unshared,
        );
        counter("backstop_dedup_coalesced_total", &labels, self.followers);
        counter(
            "backstop_dedup_stream_late_joiners_total",
            &labels,
            self.late_joiners,
        );
        counter(
            "backstop_dedup_stream_unshared_total",
            &labels,
            self.unshared,
        );
        counter("backstop_dedup_stream_chunks_total", &labels, self.chunks);
        counter("backstop_dedup_stream_lagged_total", &labels, self.lagged);
        counter(
            "backstop_dedup_stream_overflowed_total",
            &labels,
            self.overflowed,
        );
        counter("backstop_dedup_stream_failed_total", &labels, self.failed);
        counter("backstop_dedup_panics_total", &labels, self.panicked);
        counter("backstop_dedup_abandoned_total", &labels, self.abandoned);
        gauge("backstop_dedup_in_flight", &labels, self.in_flight as f64);
        gauge(
            "backstop_dedup_stream_readers",
            &labels,
            self.readers as f64,
        );
        gauge(
            "backstop_dedup_stream_buffered_bytes",
            &labels,
            self.bytes_buffered as f64,
        );
    }
}

fn publish_group(group: &GroupStats, executions: u64, coalesced: u64, name: &str) {
    let labels = named(name);
    counter("backstop_dedup_executions_total", &labels, executions);
    counter("backstop_dedup_coalesced_total", &labels, coalesced);
    counter("backstop_dedup_panics_total", &labels, group.panics);
    counter("backstop_dedup_timeouts_total", &labels, group.timeouts);
    counter("backstop_dedup_abandoned_total", &labels, group.abandoned);
    gauge("backstop_dedup_in_flight", &labels, group.in_flight as f64);
}
