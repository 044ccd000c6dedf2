//! Every series Backstop publishes: name, kind, unit and HELP text, in one table that
//! [`describe`] hands to the recorder and a test checks against Prometheus conventions.

use metrics::Unit;

/// What a series is to the recorder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// A total since creation (`_total`).
    Counter,
    /// A value now.
    Gauge,
    /// Observations bucketed by the exporter.
    Histogram,
}

/// One published series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Series {
    /// The metric name.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// The unit (`None` for a ratio from 0 to 1).
    pub unit: Option<Unit>,
    /// The HELP text.
    pub help: &'static str,
}

const fn series(name: &'static str, kind: Kind, unit: Option<Unit>, help: &'static str) -> Series {
    Series {
        name,
        kind,
        unit,
        help,
    }
}

/// Every series any primitive publishes (whichever features are enabled), sorted by name.
pub const SERIES: &[Series] = &[
    series(
        "backstop_adaptive_admitted_total",
        Kind::Counter,
        Some(Unit::Count),
        "Permits the adaptive limiter handed out.",
    ),
    series(
        "backstop_adaptive_baseline_latency_seconds",
        Kind::Gauge,
        Some(Unit::Seconds),
        "The latency baseline the adaptive algorithm compares windows with.",
    ),
    series(
        "backstop_adaptive_class_admitted_total",
        Kind::Counter,
        Some(Unit::Count),
        "Permits handed to one priority class.",
    ),
    series(
        "backstop_adaptive_class_guaranteed",
        Kind::Gauge,
        Some(Unit::Count),
        "Permits currently held for one priority class.",
    ),
    series(
        "backstop_adaptive_class_in_flight",
        Kind::Gauge,
        Some(Unit::Count),
        "One priority class's calls holding a permit.",
    ),
    series(
        "backstop_adaptive_class_queued",
        Kind::Gauge,
        Some(Unit::Count),
        "One priority class's callers waiting.",
    ),
    series(
        "backstop_adaptive_class_rejected_total",
        Kind::Counter,
        Some(Unit::Count),
        "One priority class's refusals by reason.",
    ),
    series(
        "backstop_adaptive_dropped_total",
        Kind::Counter,
        Some(Unit::Count),
        "Calls that ended dropped (backend overload or cancellation).",
    ),
    series(
        "backstop_adaptive_in_flight",
        Kind::Gauge,
        Some(Unit::Count),
        "Calls holding an adaptive permit.",
    ),
    series(
        "backstop_adaptive_limit",
        Kind::Gauge,
        Some(Unit::Count),
        "The adaptive concurrency limit now.",
    ),
    series(
        "backstop_adaptive_panicked_total",
        Kind::Counter,
        Some(Unit::Count),
        "Key or classify closures that panicked (contained).",
    ),
    series(
        "backstop_adaptive_queued",
        Kind::Gauge,
        Some(Unit::Count),
        "Callers waiting for an adaptive permit.",
    ),
    series(
        "backstop_adaptive_rejected_total",
        Kind::Counter,
        Some(Unit::Count),
        "Adaptive limiter refusals by reason (full, shed for higher classes, timeout in queue).",
    ),
    series(
        "backstop_adaptive_window_latency_seconds",
        Kind::Gauge,
        Some(Unit::Seconds),
        "Mean latency of the last measured window.",
    ),
    series(
        "backstop_adaptive_windows_total",
        Kind::Counter,
        Some(Unit::Count),
        "Latency windows the adaptive algorithm measured.",
    ),
    series(
        "backstop_batch_batches_total",
        Kind::Counter,
        Some(Unit::Count),
        "Batches dispatched, by what triggered them.",
    ),
    series(
        "backstop_batch_callback_panics_total",
        Kind::Counter,
        Some(Unit::Count),
        "User callback panics (contained).",
    ),
    series(
        "backstop_batch_cancelled_total",
        Kind::Counter,
        Some(Unit::Count),
        "Items whose caller went away before dispatch.",
    ),
    series(
        "backstop_batch_dispatcher_panics_total",
        Kind::Counter,
        Some(Unit::Count),
        "Dispatcher task panics (contained).",
    ),
    series(
        "backstop_batch_failed_total",
        Kind::Counter,
        Some(Unit::Count),
        "Items answered with an error.",
    ),
    series(
        "backstop_batch_handler_errors_total",
        Kind::Counter,
        Some(Unit::Count),
        "Batch handler calls that failed.",
    ),
    series(
        "backstop_batch_handler_panics_total",
        Kind::Counter,
        Some(Unit::Count),
        "Batch handler calls that panicked (contained).",
    ),
    series(
        "backstop_batch_handler_seconds",
        Kind::Histogram,
        Some(Unit::Seconds),
        "Time the batch handler took per batch.",
    ),
    series(
        "backstop_batch_in_flight",
        Kind::Gauge,
        Some(Unit::Count),
        "Batches being handled now.",
    ),
    series(
        "backstop_batch_max_size",
        Kind::Gauge,
        Some(Unit::Count),
        "The effective maximum batch size now.",
    ),
    series(
        "backstop_batch_queue_wait_seconds",
        Kind::Histogram,
        Some(Unit::Seconds),
        "Time items waited for their batch.",
    ),
    series(
        "backstop_batch_queued",
        Kind::Gauge,
        Some(Unit::Count),
        "Items waiting for a batch.",
    ),
    series(
        "backstop_batch_rejected_total",
        Kind::Counter,
        Some(Unit::Count),
        "Items refused, by reason (full, timeout, closed).",
    ),
    series(
        "backstop_batch_size",
        Kind::Gauge,
        Some(Unit::Count),
        "Batch size quantiles since creation.",
    ),
    series(
        "backstop_batch_size_mean",
        Kind::Gauge,
        Some(Unit::Count),
        "Mean batch size since creation.",
    ),
    series(
        "backstop_batch_submitted_total",
        Kind::Counter,
        Some(Unit::Count),
        "Items submitted to the batcher.",
    ),
    series(
        "backstop_batch_succeeded_total",
        Kind::Counter,
        Some(Unit::Count),
        "Items answered with a success.",
    ),
    series(
        "backstop_breaker_buffered_calls",
        Kind::Gauge,
        Some(Unit::Count),
        "Calls in the breaker's window.",
    ),
    series(
        "backstop_breaker_classifier_panics_total",
        Kind::Counter,
        Some(Unit::Count),
        "Classifier panics (contained).",
    ),
    series(
        "backstop_breaker_failed_calls",
        Kind::Gauge,
        Some(Unit::Count),
        "Failed calls in the breaker's window.",
    ),
    series(
        "backstop_breaker_failure_ratio",
        Kind::Gauge,
        None,
        "Failed calls over buffered calls (0 to 1), once the window holds enough calls.",
    ),
    series(
        "backstop_breaker_listener_panics_total",
        Kind::Counter,
        Some(Unit::Count),
        "Event listener panics (contained).",
    ),
    series(
        "backstop_breaker_rejected_calls_total",
        Kind::Counter,
        Some(Unit::Count),
        "Calls the breaker refused.",
    ),
    series(
        "backstop_breaker_slow_call_ratio",
        Kind::Gauge,
        None,
        "Slow calls over buffered calls (0 to 1), once the window holds enough calls.",
    ),
    series(
        "backstop_breaker_slow_calls",
        Kind::Gauge,
        Some(Unit::Count),
        "Slow calls in the breaker's window.",
    ),
    series(
        "backstop_breaker_state",
        Kind::Gauge,
        Some(Unit::Count),
        "1 for the breaker's current state, 0 for the others.",
    ),
    series(
        "backstop_budget_drop_failed_total",
        Kind::Counter,
        Some(Unit::Count),
        "Drop-rule settlements that failed (contained).",
    ),
    series(
        "backstop_budget_dropped_total",
        Kind::Counter,
        Some(Unit::Count),
        "Budget reservations dropped unsettled and settled by the drop rule.",
    ),
    series(
        "backstop_budget_evicted_keys_total",
        Kind::Counter,
        Some(Unit::Count),
        "Ids one budget level dropped in sweeps.",
    ),
    series(
        "backstop_budget_keys",
        Kind::Gauge,
        Some(Unit::Count),
        "Ids tracked by one budget level.",
    ),
    series(
        "backstop_budget_refused_total",
        Kind::Counter,
        Some(Unit::Count),
        "Budget reservations refused.",
    ),
    series(
        "backstop_budget_reserved_total",
        Kind::Counter,
        Some(Unit::Count),
        "Budget reservations made.",
    ),
    series(
        "backstop_budget_settled_total",
        Kind::Counter,
        Some(Unit::Count),
        "Budget reservations settled by their caller.",
    ),
    series(
        "backstop_bulkhead_admitted_total",
        Kind::Counter,
        Some(Unit::Count),
        "Calls the bulkhead admitted.",
    ),
    series(
        "backstop_bulkhead_in_flight",
        Kind::Gauge,
        Some(Unit::Count),
        "Calls holding a bulkhead permit.",
    ),
    series(
        "backstop_bulkhead_queued",
        Kind::Gauge,
        Some(Unit::Count),
        "Calls waiting for a bulkhead permit.",
    ),
    series(
        "backstop_bulkhead_rejected_total",
        Kind::Counter,
        Some(Unit::Count),
        "Calls the bulkhead refused, by reason (full, timeout).",
    ),
    series(
        "backstop_cache_entries",
        Kind::Gauge,
        Some(Unit::Count),
        "Entries in the memory cache.",
    ),
    series(
        "backstop_cache_evictions_total",
        Kind::Counter,
        Some(Unit::Count),
        "Entries removed, by cause (size, expired, explicit, replaced).",
    ),
    series(
        "backstop_cache_hits_total",
        Kind::Counter,
        Some(Unit::Count),
        "Cache hits, by tier.",
    ),
    series(
        "backstop_cache_insertions_total",
        Kind::Counter,
        Some(Unit::Count),
        "Values inserted into the memory cache.",
    ),
    series(
        "backstop_cache_load_failures_total",
        Kind::Counter,
        Some(Unit::Count),
        "Loader runs that failed.",
    ),
    series(
        "backstop_cache_load_seconds",
        Kind::Histogram,
        Some(Unit::Seconds),
        "Loader latency.",
    ),
    series(
        "backstop_cache_loads_total",
        Kind::Counter,
        Some(Unit::Count),
        "Loader runs (one per key per miss after coalescing).",
    ),
    series(
        "backstop_cache_max_capacity",
        Kind::Gauge,
        Some(Unit::Count),
        "The memory cache's capacity (in the weigher's unit).",
    ),
    series(
        "backstop_cache_misses_total",
        Kind::Counter,
        Some(Unit::Count),
        "Lookups no tier answered.",
    ),
    series(
        "backstop_cache_negative_hits_total",
        Kind::Counter,
        Some(Unit::Count),
        "Hits on a remembered absence.",
    ),
    series(
        "backstop_cache_panicked_total",
        Kind::Counter,
        Some(Unit::Count),
        "User code panics in the cache (contained).",
    ),
    series(
        "backstop_cache_promotions_total",
        Kind::Counter,
        Some(Unit::Count),
        "Values copied into a faster tier.",
    ),
    series(
        "backstop_cache_refreshes_total",
        Kind::Counter,
        Some(Unit::Count),
        "Background refreshes.",
    ),
    series(
        "backstop_cache_rejected_oversize_total",
        Kind::Counter,
        Some(Unit::Count),
        "Values refused for being larger than the cache allows.",
    ),
    series(
        "backstop_cache_stale_served_total",
        Kind::Counter,
        Some(Unit::Count),
        "Stale values served while refreshing.",
    ),
    series(
        "backstop_cache_stream_loads_total",
        Kind::Counter,
        Some(Unit::Count),
        "Upstreams opened by the stream cache after a miss.",
    ),
    series(
        "backstop_cache_stream_not_stored_total",
        Kind::Counter,
        Some(Unit::Count),
        "Streams not stored, by reason (failed, cut, too_large).",
    ),
    series(
        "backstop_cache_stream_recording_bytes",
        Kind::Gauge,
        Some(Unit::Bytes),
        "Bytes held by recordings in flight.",
    ),
    series(
        "backstop_cache_stream_replays_total",
        Kind::Counter,
        Some(Unit::Count),
        "Calls answered by replaying a stored stream.",
    ),
    series(
        "backstop_cache_stream_store_failures_total",
        Kind::Counter,
        Some(Unit::Count),
        "Completed streams whose write failed in some tier.",
    ),
    series(
        "backstop_cache_stream_stored_total",
        Kind::Counter,
        Some(Unit::Count),
        "Streams completed and stored.",
    ),
    series(
        "backstop_cache_tier_errors_total",
        Kind::Counter,
        Some(Unit::Count),
        "Errors of one tier.",
    ),
    series(
        "backstop_cache_tier_misses_total",
        Kind::Counter,
        Some(Unit::Count),
        "Lookups one tier did not answer.",
    ),
    series(
        "backstop_cache_tier_writes_total",
        Kind::Counter,
        Some(Unit::Count),
        "Writes to one tier.",
    ),
    series(
        "backstop_cache_weighted_size",
        Kind::Gauge,
        Some(Unit::Count),
        "Total weight of the memory cache's entries (in the weigher's unit).",
    ),
    series(
        "backstop_call_seconds",
        Kind::Histogram,
        Some(Unit::Seconds),
        "Duration of calls the application times with a backstop_core::Histogram.",
    ),
    series(
        "backstop_dedup_abandoned_total",
        Kind::Counter,
        Some(Unit::Count),
        "Executions dropped unfinished because every caller left.",
    ),
    series(
        "backstop_dedup_coalesced_total",
        Kind::Counter,
        Some(Unit::Count),
        "Callers served by an execution they did not start: joined in flight, from the window, from another process, or a shared stream.",
    ),
    series(
        "backstop_dedup_executions_total",
        Kind::Counter,
        Some(Unit::Count),
        "Executions (or upstream streams) started in this process.",
    ),
    series(
        "backstop_dedup_in_flight",
        Kind::Gauge,
        Some(Unit::Count),
        "Keys with an execution in flight.",
    ),
    series(
        "backstop_dedup_local_fallbacks_total",
        Kind::Counter,
        Some(Unit::Count),
        "Executions run without a lease because Redis failed.",
    ),
    series(
        "backstop_dedup_misconfigured_total",
        Kind::Counter,
        Some(Unit::Count),
        "Calls refused because the Redis deployment is misconfigured.",
    ),
    series(
        "backstop_dedup_panics_total",
        Kind::Counter,
        Some(Unit::Count),
        "Executions that panicked (contained).",
    ),
    series(
        "backstop_dedup_polls_total",
        Kind::Counter,
        Some(Unit::Count),
        "Polls for another process's result.",
    ),
    series(
        "backstop_dedup_redis_errors_total",
        Kind::Counter,
        Some(Unit::Count),
        "Redis calls of distributed dedup that failed or timed out.",
    ),
    series(
        "backstop_dedup_remembered",
        Kind::Gauge,
        Some(Unit::Count),
        "Results the dedup window remembers.",
    ),
    series(
        "backstop_dedup_remote_results_total",
        Kind::Counter,
        Some(Unit::Count),
        "Results read from another process (part of coalesced).",
    ),
    series(
        "backstop_dedup_stream_buffered_bytes",
        Kind::Gauge,
        Some(Unit::Bytes),
        "Bytes of chunks buffered for shared streams.",
    ),
    series(
        "backstop_dedup_stream_chunks_total",
        Kind::Counter,
        Some(Unit::Count),
        "Chunks read from shared upstreams.",
    ),
    series(
        "backstop_dedup_stream_failed_total",
        Kind::Counter,
        Some(Unit::Count),
        "Shared upstreams that ended with an error.",
    ),
    series(
        "backstop_dedup_stream_lagged_total",
        Kind::Counter,
        Some(Unit::Count),
        "Readers cut because they fell behind the buffer bound.",
    ),
    series(
        "backstop_dedup_stream_late_joiners_total",
        Kind::Counter,
        Some(Unit::Count),
        "Stream followers that joined after the first chunk and replayed.",
    ),
    series(
        "backstop_dedup_stream_overflowed_total",
        Kind::Counter,
        Some(Unit::Count),
        "Streams closed to joiners because their buffer reached the bound.",
    ),
    series(
        "backstop_dedup_stream_readers",
        Kind::Gauge,
        Some(Unit::Count),
        "Readers of shared streams.",
    ),
    series(
        "backstop_dedup_stream_unshared_total",
        Kind::Counter,
        Some(Unit::Count),
        "Streams served unshared because the group was at max_streams.",
    ),
    series(
        "backstop_dedup_takeovers_total",
        Kind::Counter,
        Some(Unit::Count),
        "Leases won after waiting on another process's.",
    ),
    series(
        "backstop_dedup_timeouts_total",
        Kind::Counter,
        Some(Unit::Count),
        "Followers that gave up after their timeout.",
    ),
    series(
        "backstop_dedup_window_evicted_total",
        Kind::Counter,
        Some(Unit::Count),
        "Remembered results dropped because the window was full.",
    ),
    series(
        "backstop_dedup_window_hits_total",
        Kind::Counter,
        Some(Unit::Count),
        "Calls answered from the dedup window (part of coalesced).",
    ),
    series(
        "backstop_limit_admitted_total",
        Kind::Counter,
        Some(Unit::Count),
        "Requests the rate limiter admitted.",
    ),
    series(
        "backstop_limit_evicted_keys_total",
        Kind::Counter,
        Some(Unit::Count),
        "Keys the keyed limiter dropped.",
    ),
    series(
        "backstop_limit_keys",
        Kind::Gauge,
        Some(Unit::Count),
        "Keys the keyed limiter tracks.",
    ),
    series(
        "backstop_limit_misconfigured_total",
        Kind::Counter,
        Some(Unit::Count),
        "Redis limiter calls refused because the deployment is misconfigured.",
    ),
    series(
        "backstop_limit_overrides",
        Kind::Gauge,
        Some(Unit::Count),
        "Per-key quota overrides set.",
    ),
    series(
        "backstop_limit_redis_errors_total",
        Kind::Counter,
        Some(Unit::Count),
        "Redis limiter calls decided by the failure policy because Redis failed.",
    ),
    series(
        "backstop_limit_rejected_total",
        Kind::Counter,
        Some(Unit::Count),
        "Requests the rate limiter refused.",
    ),
    series(
        "backstop_limit_remaining",
        Kind::Gauge,
        Some(Unit::Count),
        "Requests the limiter would admit now.",
    ),
    series(
        "backstop_load_capacity",
        Kind::Gauge,
        Some(Unit::Count),
        "The primitive's capacity.",
    ),
    series(
        "backstop_load_in_flight",
        Kind::Gauge,
        Some(Unit::Count),
        "Work in progress, as the primitive's load signal reports it.",
    ),
    series(
        "backstop_load_mean_wait_seconds",
        Kind::Gauge,
        Some(Unit::Seconds),
        "Mean wait over the load signal's recent window.",
    ),
    series(
        "backstop_load_p95_wait_seconds",
        Kind::Gauge,
        Some(Unit::Seconds),
        "95th-percentile wait over the load signal's recent window.",
    ),
    series(
        "backstop_load_queued",
        Kind::Gauge,
        Some(Unit::Count),
        "Work waiting, as the primitive's load signal reports it.",
    ),
    series(
        "backstop_pool_checkouts_total",
        Kind::Counter,
        Some(Unit::Count),
        "Connections handed out.",
    ),
    series(
        "backstop_pool_closed_total",
        Kind::Counter,
        Some(Unit::Count),
        "Connections closed, by reason.",
    ),
    series(
        "backstop_pool_connections",
        Kind::Gauge,
        Some(Unit::Count),
        "Connections, by state (in_use, idle).",
    ),
    series(
        "backstop_pool_create_failures_total",
        Kind::Counter,
        Some(Unit::Count),
        "Connection creations that failed.",
    ),
    series(
        "backstop_pool_created_total",
        Kind::Counter,
        Some(Unit::Count),
        "Connections created.",
    ),
    series(
        "backstop_pool_leaks_suspected_total",
        Kind::Counter,
        Some(Unit::Count),
        "Connections held longer than the leak threshold.",
    ),
    series(
        "backstop_pool_max_size",
        Kind::Gauge,
        Some(Unit::Count),
        "The pool's maximum size.",
    ),
    series(
        "backstop_pool_panicked_total",
        Kind::Counter,
        Some(Unit::Count),
        "Manager panics (contained).",
    ),
    series(
        "backstop_pool_resizes_total",
        Kind::Counter,
        Some(Unit::Count),
        "Pool resizes.",
    ),
    series(
        "backstop_pool_timeouts_total",
        Kind::Counter,
        Some(Unit::Count),
        "Checkouts that timed out.",
    ),
    series(
        "backstop_pool_usage_seconds",
        Kind::Histogram,
        Some(Unit::Seconds),
        "Time connections were held.",
    ),
    series(
        "backstop_pool_wait_seconds",
        Kind::Histogram,
        Some(Unit::Seconds),
        "Time callers waited for a connection (zero for a checkout that found one idle).",
    ),
    series(
        "backstop_pool_waiters",
        Kind::Gauge,
        Some(Unit::Count),
        "Callers waiting for a connection.",
    ),
    series(
        "backstop_retry_attempts_total",
        Kind::Counter,
        Some(Unit::Count),
        "Attempts started (first attempts and retries).",
    ),
    series(
        "backstop_retry_budget_refusals_total",
        Kind::Counter,
        Some(Unit::Count),
        "Retries the retry budget refused.",
    ),
    series(
        "backstop_retry_calls_total",
        Kind::Counter,
        Some(Unit::Count),
        "Calls made through the retry handle.",
    ),
    series(
        "backstop_retry_classifier_panics_total",
        Kind::Counter,
        Some(Unit::Count),
        "Retry classifier panics (contained).",
    ),
    series(
        "backstop_retry_deadline_exhaustions_total",
        Kind::Counter,
        Some(Unit::Count),
        "Calls stopped because too little time was left.",
    ),
    series(
        "backstop_retry_hedge_delay_seconds",
        Kind::Gauge,
        Some(Unit::Seconds),
        "The current hedge delay.",
    ),
    series(
        "backstop_retry_hedges_total",
        Kind::Counter,
        Some(Unit::Count),
        "Hedged attempts started.",
    ),
    series(
        "backstop_retry_hedges_won_total",
        Kind::Counter,
        Some(Unit::Count),
        "Hedged attempts that finished first with a success.",
    ),
    series(
        "backstop_retry_retries_total",
        Kind::Counter,
        Some(Unit::Count),
        "Retries started.",
    ),
    series(
        "backstop_retry_streams_cut_total",
        Kind::Counter,
        Some(Unit::Count),
        "Streams cut by an idle timeout.",
    ),
    series(
        "backstop_route_all_cooling_refusals_total",
        Kind::Counter,
        Some(Unit::Count),
        "Requests refused because no target could take them.",
    ),
    series(
        "backstop_route_calls_total",
        Kind::Counter,
        Some(Unit::Count),
        "Requests routed.",
    ),
    series(
        "backstop_route_deadline_exhaustions_total",
        Kind::Counter,
        Some(Unit::Count),
        "Requests stopped because too little time was left.",
    ),
    series(
        "backstop_route_exhausted_total",
        Kind::Counter,
        Some(Unit::Count),
        "Requests that failed on every usable target.",
    ),
    series(
        "backstop_route_fallbacks_total",
        Kind::Counter,
        Some(Unit::Count),
        "Attempts after a request's first.",
    ),
    series(
        "backstop_route_panics_total",
        Kind::Counter,
        Some(Unit::Count),
        "Router closure panics (contained).",
    ),
    series(
        "backstop_route_probes_total",
        Kind::Counter,
        Some(Unit::Count),
        "Probes while every target was cooling down.",
    ),
    series(
        "backstop_route_succeeded_total",
        Kind::Counter,
        Some(Unit::Count),
        "Routed requests that succeeded.",
    ),
    series(
        "backstop_route_target_chosen_total",
        Kind::Counter,
        Some(Unit::Count),
        "Attempts sent to one target.",
    ),
    series(
        "backstop_route_target_cooldown_seconds",
        Kind::Gauge,
        Some(Unit::Seconds),
        "The rest of one target's cooldown (0 when not cooling down).",
    ),
    series(
        "backstop_route_target_cooldowns_total",
        Kind::Counter,
        Some(Unit::Count),
        "Cooldowns one target started.",
    ),
    series(
        "backstop_route_target_ewma_latency_seconds",
        Kind::Gauge,
        Some(Unit::Seconds),
        "One target's Peak-EWMA latency estimate.",
    ),
    series(
        "backstop_route_target_failed_total",
        Kind::Counter,
        Some(Unit::Count),
        "One target's failed attempts, by error class.",
    ),
    series(
        "backstop_route_target_in_flight",
        Kind::Gauge,
        Some(Unit::Count),
        "One target's attempts in flight.",
    ),
    series(
        "backstop_route_target_skipped_total",
        Kind::Counter,
        Some(Unit::Count),
        "Times one target was passed over, by reason.",
    ),
    series(
        "backstop_route_target_succeeded_total",
        Kind::Counter,
        Some(Unit::Count),
        "One target's attempts that succeeded.",
    ),
    series(
        "backstop_route_waited_retry_after_total",
        Kind::Counter,
        Some(Unit::Count),
        "429s waited out on the same target.",
    ),
    series(
        "backstop_scale_current_replicas",
        Kind::Gauge,
        Some(Unit::Count),
        "Replicas the autoscaler observed.",
    ),
    series(
        "backstop_scale_desired_replicas",
        Kind::Gauge,
        Some(Unit::Count),
        "Replicas the autoscaler wants now.",
    ),
    series(
        "backstop_scale_recommended_replicas",
        Kind::Gauge,
        Some(Unit::Count),
        "Replicas the policy recommended before stabilization.",
    ),
];

/// Describes every series in [`SERIES`] (HELP text and unit) to the installed recorder.
///
/// [`MetricsReporter::publish`](super::MetricsReporter::publish) calls it each time, so a
/// recorder installed late still gets the descriptions.
pub fn describe() {
    for series in SERIES {
        let (name, help) = (series.name, series.help);
        match (series.kind, series.unit) {
            (Kind::Counter, Some(unit)) => metrics::describe_counter!(name, unit, help),
            (Kind::Counter, None) => metrics::describe_counter!(name, help),
            (Kind::Gauge, Some(unit)) => metrics::describe_gauge!(name, unit, help),
            (Kind::Gauge, None) => metrics::describe_gauge!(name, help),
            (Kind::Histogram, Some(unit)) => metrics::describe_histogram!(name, unit, help),
            (Kind::Histogram, None) => metrics::describe_histogram!(name, help),
        }
    }
}

/// The kind of the series `name`, if [`SERIES`] lists it: what the publishers write it as.
pub(crate) fn kind(name: &str) -> Option<Kind> {
    find(name).map(|series| series.kind)
}

/// The series a stats field is published as by name, if [`SERIES`] lists it: the field
/// `field` of a snapshot under `prefix` is `{prefix}_{field}_total` if it is a counter,
/// `{prefix}_{field}` if it is a gauge.
pub(crate) fn named_after(prefix: &str, field: &str) -> Option<&'static str> {
    let gauge = format!("{prefix}_{field}");
    let series = find(&format!("{gauge}_total")).or_else(|| find(&gauge))?;
    Some(series.name)
}

fn find(name: &str) -> Option<&'static Series> {
    let index = SERIES
        .binary_search_by(|series| series.name.cmp(name))
        .ok()?;
    Some(&SERIES[index])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_sorted_by_name_for_kind_to_search() {
        for pair in SERIES.windows(2) {
            assert!(
                pair[0].name < pair[1].name,
                "{} before {}",
                pair[0].name,
                pair[1].name
            );
        }
    }
}
