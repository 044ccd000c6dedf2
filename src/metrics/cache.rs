use super::{PublishMetrics, counter, gauge};
use backstop_cache::{CacheStats, TieredStats};
use backstop_core::HistogramSnapshot;

/// Tiers are labelled by position (`l1`, `l2`, …) — what dashboards compare — and by
/// backend (`memory`, `redis`, …) — what an operator debugs.
impl PublishMetrics for TieredStats {
    fn publish(&self, name: &str) {
        for (index, (backend, tier)) in self.tiers.iter().enumerate() {
            let labels = [
                ("name", name.to_owned()),
                ("tier", format!("l{}", index + 1)),
                ("backend", backend.clone()),
            ];
            let hits = self.hits_by_tier.get(index).copied().unwrap_or(tier.hits);
            counter("backstop_cache_hits_total", &labels, hits);
            counter("backstop_cache_tier_misses_total", &labels, tier.misses);
            counter("backstop_cache_tier_writes_total", &labels, tier.sets);
            counter("backstop_cache_tier_errors_total", &labels, tier.errors);
        }
        let labels = [("name", name.to_owned())];
        counter("backstop_cache_misses_total", &labels, self.misses);
        counter(
            "backstop_cache_stale_served_total",
            &labels,
            self.stale_served,
        );
        counter(
            "backstop_cache_negative_hits_total",
            &labels,
            self.negative_hits,
        );
        counter("backstop_cache_loads_total", &labels, self.loads);
        counter(
            "backstop_cache_load_failures_total",
            &labels,
            self.load_failures,
        );
        counter("backstop_cache_refreshes_total", &labels, self.refreshes);
        counter("backstop_cache_promotions_total", &labels, self.promotions);
        counter("backstop_cache_panicked_total", &labels, self.panicked);
    }

    fn histograms(&self) -> Vec<(&'static str, &HistogramSnapshot)> {
        vec![("backstop_cache_load_seconds", &self.load_time_histogram)]
    }
}

/// A standalone memory cache is one tier, labelled `tier="memory"`.
impl PublishMetrics for CacheStats {
    fn publish(&self, name: &str) {
        let tier = [("name", name.to_owned()), ("tier", "memory".to_owned())];
        counter("backstop_cache_hits_total", &tier, self.hits);
        counter("backstop_cache_tier_misses_total", &tier, self.misses);
        let labels = [("name", name.to_owned())];
        counter("backstop_cache_insertions_total", &labels, self.insertions);
        counter("backstop_cache_panicked_total", &labels, self.panicked);
        counter(
            "backstop_cache_rejected_oversize_total",
            &labels,
            self.rejected_oversize,
        );
        for (cause, count) in [
            ("size", self.removals.size),
            ("expired", self.removals.expired),
            ("explicit", self.removals.explicit),
            ("replaced", self.removals.replaced),
        ] {
            counter(
                "backstop_cache_evictions_total",
                &[("name", name.to_owned()), ("cause", cause.to_owned())],
                count,
            );
        }
        gauge("backstop_cache_entries", &labels, self.entries as f64);
        gauge(
            "backstop_cache_weighted_size",
            &labels,
            self.weighted_size as f64,
        );
        gauge(
            "backstop_cache_max_capacity",
            &labels,
            self.max_capacity as f64,
        );
    }
}

/// A stream cache: its own counters, then its group's under the same name.
#[cfg(feature = "dedup")]
impl PublishMetrics for backstop_cache::StreamCacheStats {
    fn publish(&self, name: &str) {
        let labels = [("name", name.to_owned())];
        counter("backstop_cache_stream_replays_total", &labels, self.replays);
        counter("backstop_cache_stream_loads_total", &labels, self.loads);
        counter("backstop_cache_stream_stored_total", &labels, self.stored);
        for (reason, count) in [
            ("failed", self.not_stored_failed),
            ("cut", self.not_stored_cut),
            ("too_large", self.not_stored_too_large),
        ] {
            counter(
                "backstop_cache_stream_not_stored_total",
                &[("name", name.to_owned()), ("reason", reason.to_owned())],
                count,
            );
        }
        counter(
            "backstop_cache_stream_store_failures_total",
            &labels,
            self.store_failures,
        );
        gauge(
            "backstop_cache_stream_recording_bytes",
            &labels,
            self.bytes_recording as f64,
        );
        self.group.publish(name);
    }
}
