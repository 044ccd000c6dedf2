use super::{Labels, PublishMetrics, values};
use backstop_cache::{CacheStats, TieredStats};
use backstop_core::HistogramSnapshot;

/// Tiers are labelled by position (`l1`, `l2`, …) — what dashboards compare — and by
/// backend (`memory`, `redis`, …) — what an operator debugs.
impl PublishMetrics for TieredStats {
    fn publish(&self, name: &str) {
        let labels = Labels::named(name);
        for (index, (backend, tier)) in self.tiers.iter().enumerate() {
            let hits = self.hits_by_tier.get(index).copied().unwrap_or(tier.hits);
            let tier_labels = labels
                .with("tier", format!("l{}", index + 1))
                .with("backend", backend.clone());
            tier_labels.publish_fields("backstop_cache_tier", tier);
            tier_labels.publish(values! {
                "backstop_cache_hits_total" => hits,
                "backstop_cache_tier_writes_total" => tier.sets,
            });
        }
        labels.publish_fields("backstop_cache", self);
    }

    fn histograms(&self) -> Vec<(&'static str, &HistogramSnapshot)> {
        vec![("backstop_cache_load_seconds", &self.load_time_histogram)]
    }
}

/// A standalone memory cache is one tier, labelled `tier="memory"`.
impl PublishMetrics for CacheStats {
    fn publish(&self, name: &str) {
        let labels = Labels::named(name);
        labels.with("tier", "memory").publish(values! {
            "backstop_cache_hits_total" => self.hits,
            "backstop_cache_tier_misses_total" => self.misses,
        });
        labels.publish_fields_except("backstop_cache", self, &["hits", "misses"]);
        let removals = &self.removals;
        labels.publish_by(
            "backstop_cache_evictions_total",
            "cause",
            values! {
                "size" => removals.size,
                "expired" => removals.expired,
                "explicit" => removals.explicit,
                "replaced" => removals.replaced,
            },
        );
    }
}

/// A stream cache: its own counters, then its group's under the same name.
#[cfg(feature = "dedup")]
impl PublishMetrics for backstop_cache::StreamCacheStats {
    fn publish(&self, name: &str) {
        let labels = Labels::named(name);
        labels.publish_fields("backstop_cache_stream", self);
        labels.publish(values! {
            "backstop_cache_stream_recording_bytes" => self.bytes_recording,
        });
        labels.publish_by(
            "backstop_cache_stream_not_stored_total",
            "reason",
            values! {
                "failed" => self.not_stored_failed,
                "cut" => self.not_stored_cut,
                "too_large" => self.not_stored_too_large,
            },
        );
        self.group.publish(name);
    }
}
