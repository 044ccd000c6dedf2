//! Tiered cache behaviour over in-process tiers, with deterministic time.

use backstop_cache::{Entry, Promotion, Tier, TierError, TieredCache, TieredConfig, WriteBehind};
use backstop_core::ManualClock;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

mod support;

use backstop_testkit::assert_fields;
use support::{MapTier, put};

const L1_TTL: Option<Duration> = Some(Duration::from_secs(60));
const L2_TTL: Option<Duration> = Some(Duration::from_secs(3600));

type Cache = TieredCache<String, String, ManualClock>;

fn two_tiers(promotion: Promotion) -> (Cache, MapTier, MapTier) {
    let (cache, _, l1, l2) = configured(TieredConfig {
        promotion,
        ..TieredConfig::default()
    });
    (cache, l1, l2)
}

fn configured(config: TieredConfig) -> (Cache, ManualClock, MapTier, MapTier) {
    let clock = ManualClock::new();
    let (l1, l2) = (MapTier::named("l1"), MapTier::named("l2"));
    let cache = TieredCache::builder()
        .tier(l1.clone(), L1_TTL)
        .tier(l2.clone(), L2_TTL)
        .config(config)
        .clock(clock.clone())
        .build()
        .unwrap();
    (cache, clock, l1, l2)
}

#[tokio::test]
async fn lower_tier_hits_are_promoted_with_the_upper_tier_ttl() {
    let (cache, l1, l2) = two_tiers(Promotion::Always);
    l2.put("k", "v");
    assert_eq!(cache.get(&"k".to_string()).await, Some("v".to_string()));
    assert_eq!(l1.holds("k"), Some(("v".to_string(), L1_TTL)));
    assert_eq!(cache.get(&"k".to_string()).await, Some("v".to_string()));
    let stats = cache.stats();
    assert_eq!(stats.hits_by_tier, vec![1, 1]);
    assert_eq!(stats.promotions, 1);
    assert_eq!(cache.get(&"absent".to_string()).await, None);
    assert_eq!(cache.stats().misses, 1);
}

#[tokio::test]
async fn promotion_after_n_hits_waits_for_the_nth_read() {
    let (cache, l1, l2) = two_tiers(Promotion::AfterHits(3));
    l2.put("k", "v");
    for _ in 0..2 {
        cache.get(&"k".to_string()).await;
        assert_eq!(l1.holds("k"), None);
    }
    cache.get(&"k".to_string()).await;
    assert!(l1.holds("k").is_some());
}

#[tokio::test]
async fn never_promoting_leaves_upper_tiers_alone() {
    let (cache, l1, l2) = two_tiers(Promotion::Never);
    l2.put("k", "v");
    assert_eq!(cache.get(&"k".to_string()).await, Some("v".to_string()));
    assert_eq!(l1.holds("k"), None);
}

#[tokio::test]
async fn writes_deletes_and_invalidations_reach_every_tier() {
    let (cache, l1, l2) = two_tiers(Promotion::Always);
    put(&cache, "user:1", "a").await;
    put(&cache, "user:2", "b").await;
    put(&cache, "team:1", "c").await;
    assert_eq!(l1.holds("user:1"), Some(("a".to_string(), L1_TTL)));
    // The L2 TTL (1 h) is capped at the freshness (default 5 m): a stale entry is useless
    // without stale grace.
    assert_eq!(
        l2.holds("user:1"),
        Some(("a".to_string(), Some(Duration::from_secs(300))))
    );
    cache.remove(&"team:1".to_string()).await.unwrap();
    assert!(l1.holds("team:1").is_none() && l2.holds("team:1").is_none());
    cache.invalidate_prefix("user:").await.unwrap();
    assert!(l1.entries.lock().unwrap().is_empty());
    assert!(l2.entries.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_failing_tier_is_a_miss_for_reads_and_a_reported_partial_write() {
    let (cache, l1, l2) = two_tiers(Promotion::Always);
    l2.put("k", "v");
    l1.down.store(true, Ordering::SeqCst);
    assert_eq!(cache.get(&"k".to_string()).await, Some("v".to_string()));
    assert_eq!(cache.stats().read_errors, 1);

    let error = cache
        .insert(&"n".to_string(), "w".to_string())
        .await
        .unwrap_err();
    assert_fields!(error, reached: 1, total: 2);
    assert_eq!(error.failed[0].0, "l1");
    assert_eq!(l2.holds("n").map(|(value, _)| value), Some("w".to_string()));
}

#[tokio::test]
async fn values_go_stale_after_fresh_for_and_negative_entries_read_as_missing() {
    let config = TieredConfig {
        fresh_for: Duration::from_secs(10),
        ..TieredConfig::default()
    };
    let (cache, clock, _, l2) = configured(config);
    put(&cache, "k", "v").await;
    clock.advance(Duration::from_millis(9_999));
    assert_eq!(cache.get(&"k".to_string()).await, Some("v".to_string()));
    clock.advance(Duration::from_millis(1));
    assert_eq!(
        cache.get(&"k".to_string()).await,
        None,
        "stale is a miss for get"
    );
    l2.entries.lock().unwrap().insert(
        "gone".to_string(),
        (
            Entry {
                value: None,
                fresh_until: u64::MAX,
            },
            None,
        ),
    );
    assert_eq!(cache.get(&"gone".to_string()).await, None);
    assert_eq!(cache.stats().negative_hits, 1);
}

#[tokio::test]
async fn tiers_without_a_ttl_keep_entries_for_fresh_time_plus_grace() {
    let clock = ManualClock::new();
    let tier = MapTier::named("only");
    let cache: Cache = TieredCache::builder()
        .tier(tier.clone(), None)
        .config(TieredConfig {
            fresh_for: Duration::from_secs(60),
            stale_grace: Some(Duration::from_secs(30)),
            ..TieredConfig::default()
        })
        .clock(clock)
        .build()
        .unwrap();
    put(&cache, "k", "v").await;
    assert_eq!(
        tier.holds("k"),
        Some(("v".to_string(), Some(Duration::from_secs(90))))
    );
}

#[tokio::test]
async fn a_cache_needs_a_tier_and_a_valid_config() {
    let no_tiers = TieredCache::<String, String>::builder().build();
    assert_eq!(no_tiers.err().unwrap().field(), "tiers");
    let bad = TieredCache::<String, String>::builder()
        .tier(MapTier::named("l1"), None)
        .config(TieredConfig {
            fresh_for: Duration::ZERO,
            ..TieredConfig::default()
        })
        .build();
    assert_eq!(bad.err().unwrap().field(), "fresh_for");
}

/// Issue 19: a tier TTL is a duration like any other, bounded at build time.
#[test]
fn a_tier_ttl_over_a_year_is_refused_by_name() {
    let error = TieredCache::<String, String>::builder()
        .tier(MapTier::named("l1"), Some(Duration::from_secs(60)))
        .tier(MapTier::named("l2"), Some(Duration::MAX))
        .build()
        .err()
        .expect("a TTL over a year is refused");
    assert_eq!(error.field(), "tiers[1].ttl");
}

#[tokio::test]
async fn warming_writes_every_entry_through() {
    let (cache, l1, l2) = two_tiers(Promotion::Always);
    let written = cache
        .warm((0..10).map(|i| (format!("warm:{i}"), format!("v{i}"))))
        .await;
    assert_eq!(written, 10);
    assert_eq!(l1.entries.lock().unwrap().len(), 10);
    assert_eq!(l2.entries.lock().unwrap().len(), 10);
}

/// An entry holding `value` that never goes stale.
fn never_stale(value: &str) -> Entry<String> {
    Entry {
        value: Some(value.to_string()),
        fresh_until: u64::MAX,
    }
}

#[tokio::test]
async fn write_behind_answers_reads_from_its_queue_and_flushes_in_the_background() {
    let slow = MapTier::named("slow");
    let behind = WriteBehind::new(slow.clone(), 16, 4).unwrap();
    let entry = never_stale("v");
    for i in 0..8 {
        behind.set(&format!("k{i}"), &entry, None).await.unwrap();
    }
    assert_eq!(behind.get("k3").await.unwrap(), Some(entry.clone()));
    behind.delete("k7").await.unwrap();
    while behind.queued() > 0 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        slow.entries.lock().unwrap().len(),
        7,
        "k7 was deleted before its flush"
    );
    assert!(slow.holds("k7").is_none());
}

/// Issue 19: `usize::MAX` as a queue size panicked in the channel and as a batch size
/// aborted on allocation; both are refused by name now.
#[tokio::test]
async fn write_behind_sizes_are_bounded() {
    let tier = || MapTier::named("slow");
    let field = |result: Result<WriteBehind<Entry<String>>, backstop_core::ConfigError>| {
        result.err().expect("refused").field().to_string()
    };
    assert_eq!(field(WriteBehind::new(tier(), usize::MAX, 1)), "capacity");
    assert_eq!(field(WriteBehind::new(tier(), 0, 1)), "capacity");
    assert_eq!(field(WriteBehind::new(tier(), 1, usize::MAX)), "batch_size");
    assert_eq!(field(WriteBehind::new(tier(), 1, 0)), "batch_size");
}

/// Issue 19: a panic in the slow tier killed the flush task, so every later write waited
/// in the queue for ever. Now the batch fails, is counted, and the flusher goes on.
#[tokio::test]
async fn write_behind_flusher_survives_a_panicking_tier() {
    let slow = MapTier::named("slow");
    let behind = WriteBehind::new(slow.clone(), 16, 4).unwrap();
    let entry = never_stale("v");
    slow.panics.store(true, Ordering::SeqCst);
    behind.set("lost", &entry, None).await.unwrap();
    while behind.queue_stats().panicked == 0 {
        tokio::task::yield_now().await;
    }
    assert_eq!(behind.queued(), 0, "the panicked batch left the queue");
    assert_eq!(behind.queue_stats().failed, 1);

    slow.panics.store(false, Ordering::SeqCst);
    behind.set("kept", &entry, None).await.unwrap();
    while behind.queued() > 0 {
        tokio::task::yield_now().await;
    }
    assert!(slow.holds("kept").is_some(), "the flusher is still alive");
    assert_eq!(behind.queue_stats().flushed, 1);
    assert_eq!(behind.stats().errors, 1);
}

/// Issue 19: `invalidate_prefix("")` meant "everything"; now it is a typed error and
/// emptying the cache is the explicit `invalidate_all`.
#[tokio::test]
async fn an_empty_prefix_is_refused_and_invalidate_all_is_explicit() {
    let (cache, l1, l2) = two_tiers(Promotion::Always);
    put(&cache, "user:1", "a").await;
    let refused = cache.invalidate_prefix("").await.unwrap_err();
    assert_fields!(refused, reached: 0, total: 2);
    assert!(
        refused
            .failed
            .iter()
            .all(|(_, error)| *error == TierError::EmptyPrefix)
    );
    assert!(l1.holds("user:1").is_some() && l2.holds("user:1").is_some());
    assert_eq!(l2.invalidate_prefix("").await, Err(TierError::EmptyPrefix));

    cache.invalidate_all().await.unwrap();
    assert!(l1.holds("user:1").is_none() && l2.holds("user:1").is_none());
}

#[tokio::test]
async fn write_behind_refuses_writes_when_its_queue_is_full() {
    let slow = MapTier::named("slow");
    // current_thread runtime: the flush task cannot run until this test yields.
    let behind = WriteBehind::new(slow, 2, 1).unwrap();
    let entry = never_stale("v");
    behind.set("a", &entry, None).await.unwrap();
    behind.set("b", &entry, None).await.unwrap();
    assert!(matches!(
        behind.set("c", &entry, None).await,
        Err(TierError::Backend(_))
    ));
    assert_eq!(behind.dropped(), 1);
}

mod semantic {
    use super::*;
    use backstop_cache::{EmbeddingError, ExactCosineIndex, SemanticCache, SemanticHit};

    fn cache() -> Cache {
        two_tiers(Promotion::Always).0
    }

    /// A semantic cache of 3-dimensional embeddings matching at `threshold`, that knows
    /// the capital of France.
    async fn knows_paris(threshold: f32) -> SemanticCache<String, ManualClock> {
        let semantic =
            SemanticCache::new(cache(), Arc::new(ExactCosineIndex::new(3)), threshold).unwrap();
        semantic
            .insert("capital of france?", &[1.0, 0.0, 0.1], "Paris".to_string())
            .await
            .unwrap();
        semantic
    }

    /// Issue 19: a panicking verifier reached the caller of `get`; now it is a veto.
    #[tokio::test]
    async fn a_panicking_verifier_vetoes_the_match_and_is_counted() {
        let semantic = knows_paris(0.9)
            .await
            .with_verifier(|_, _, _| panic!("verifier exploded"));
        let similar = semantic
            .get("france capital?", &[1.0, 0.0, 0.12])
            .await
            .unwrap();
        assert_eq!(similar, None);
        assert_eq!(semantic.stats().panicked, 1);
        assert_eq!(semantic.stats().vetoed, 1);
    }

    #[tokio::test]
    async fn similar_prompts_share_an_answer_and_are_counted_apart() {
        let semantic = knows_paris(0.95).await;
        let exact = semantic
            .get("capital of france?", &[1.0, 0.0, 0.1])
            .await
            .unwrap();
        assert_eq!(exact, Some(SemanticHit::Exact("Paris".to_string())));
        let similar = semantic
            .get("france's capital?", &[1.0, 0.02, 0.1])
            .await
            .unwrap();
        assert!(
            matches!(similar, Some(SemanticHit::Similar { ref matched_key, .. }) if matched_key == "capital of france?")
        );
        let far = semantic
            .get("capital of peru?", &[0.0, 1.0, 0.0])
            .await
            .unwrap();
        assert_eq!(far, None);
        assert_fields!(semantic.stats(), exact_hits: 1, semantic_hits: 1, misses: 1);
    }

    #[tokio::test]
    async fn a_verifier_can_veto_a_close_match() {
        let semantic = SemanticCache::new(cache(), Arc::new(ExactCosineIndex::new(2)), 0.9)
            .unwrap()
            .with_verifier(|query, matched, _| query.contains("not") == matched.contains("not"));
        semantic
            .insert("is it safe", &[1.0, 0.0], "yes".to_string())
            .await
            .unwrap();
        assert_eq!(
            semantic.get("is it not safe", &[1.0, 0.01]).await.unwrap(),
            None
        );
        assert_eq!(semantic.stats().vetoed, 1);
    }

    #[tokio::test]
    async fn thresholds_must_be_explicit_and_sane() {
        for threshold in [0.0, -0.5, 1.5, f32::NAN] {
            let result = SemanticCache::new(cache(), Arc::new(ExactCosineIndex::new(2)), threshold);
            assert!(matches!(result, Err(EmbeddingError::BadThreshold(_))));
        }
    }
}

mod memory_l1 {
    use super::*;
    use backstop_cache::{MemoryCache, MemoryTier};

    #[tokio::test]
    async fn a_memory_l1_is_read_first_filled_by_promotion_and_expires_by_its_ttl() {
        let clock = ManualClock::new();
        let memory = MemoryCache::builder()
            .max_capacity(100)
            .clock(clock.clone())
            .build()
            .unwrap();
        let l2 = MapTier::named("l2");
        let cache: Cache = TieredCache::builder()
            .tier(l2.clone(), L2_TTL)
            .memory(
                MemoryTier::new(memory.clone()),
                Some(Duration::from_secs(5)),
            )
            .clock(clock.clone())
            .build()
            .unwrap();
        l2.put("k", "from l2");
        assert_eq!(
            cache.get(&"k".to_string()).await.as_deref(),
            Some("from l2")
        );
        assert!(memory.contains("k"), "promoted into the memory L1");
        assert_eq!(
            cache.get(&"k".to_string()).await.as_deref(),
            Some("from l2")
        );
        assert_eq!(cache.stats().hits_by_tier, vec![1, 1]);
        clock.advance(Duration::from_secs(5));
        assert!(!memory.contains("k"), "the L1 TTL applies");
        assert_eq!(cache.stats().tiers[0].0, "memory");

        put(&cache, "user:1", "a").await;
        cache.invalidate_prefix("user:").await.unwrap();
        assert!(!memory.contains("user:1"));
        assert!(l2.holds("user:1").is_none());
    }
}
