//! Semantic lookup: answer a prompt from the cached answer of a *similar* prompt, judged by
//! caller-provided embeddings. No model is bound here; callers bring the vectors.
//!
//! Semantic caches return wrong answers when the threshold is loose (GPTCache's own
//! example shows 6–9 % of hits wrong at 0.8–0.95, and a question and its negation can
//! match), so here the threshold has no default, semantic hits are counted apart from
//! exact hits, and a verifier hook can veto any match.

use parking_lot::RwLock;
use serde::Serialize;
use std::sync::Arc;

use backstop_core::{Clock, contain};

use crate::TieredCache;

/// Why an embedding was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EmbeddingError {
    /// The vector's length differs from the index's.
    #[error("embedding has {got} dimensions; the index holds {expected}")]
    WrongDimensions {
        /// The index's dimension.
        expected: usize,
        /// The refused vector's dimension.
        got: usize,
    },
    /// The vector is empty, all zeros, or holds NaN or infinity, so it has no direction.
    #[error("embedding has no direction (empty, all zeros, NaN or infinite)")]
    Degenerate,
    /// The similarity threshold is outside (0, 1].
    #[error("similarity threshold {0} must be in (0, 1]")]
    BadThreshold(f32),
}

/// Finds the stored key whose embedding is closest to a query embedding.
pub trait SimilarityIndex: Send + Sync {
    /// Stores (or replaces) the embedding of `key`.
    fn insert(&self, key: &str, embedding: &[f32]) -> Result<(), EmbeddingError>;
    /// The most similar stored key and its cosine similarity, if any key is stored.
    fn nearest(&self, embedding: &[f32]) -> Result<Option<(String, f32)>, EmbeddingError>;
    /// Forgets `key`.
    fn remove(&self, key: &str);
    /// How many keys are stored.
    fn len(&self) -> usize;
    /// Whether no key is stored.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An exact (brute-force) cosine index in memory: right for up to tens of thousands of
/// entries; plug an ANN index in through [`SimilarityIndex`] beyond that.
pub struct ExactCosineIndex {
    dimensions: usize,
    entries: RwLock<Vec<(String, Vec<f32>)>>,
}

impl ExactCosineIndex {
    /// An empty index of `dimensions`-long vectors.
    pub fn new(dimensions: usize) -> Self {
        Self {
            dimensions,
            entries: RwLock::new(Vec::new()),
        }
    }

    fn normalized(&self, embedding: &[f32]) -> Result<Vec<f32>, EmbeddingError> {
        if embedding.len() != self.dimensions {
            return Err(EmbeddingError::WrongDimensions {
                expected: self.dimensions,
                got: embedding.len(),
            });
        }
        let norm = embedding.iter().map(|x| x * x).sum::<f32>().sqrt();
        if !norm.is_finite() || norm == 0.0 {
            return Err(EmbeddingError::Degenerate);
        }
        Ok(embedding.iter().map(|x| x / norm).collect())
    }
}

impl SimilarityIndex for ExactCosineIndex {
    fn insert(&self, key: &str, embedding: &[f32]) -> Result<(), EmbeddingError> {
        let vector = self.normalized(embedding)?;
        let mut entries = self.entries.write();
        match entries.iter_mut().find(|(stored, _)| stored == key) {
            Some(slot) => slot.1 = vector,
            None => entries.push((key.to_string(), vector)),
        }
        Ok(())
    }

    fn nearest(&self, embedding: &[f32]) -> Result<Option<(String, f32)>, EmbeddingError> {
        let query = self.normalized(embedding)?;
        let entries = self.entries.read();
        let best = entries
            .iter()
            .map(|(key, vector)| {
                let similarity: f32 = vector.iter().zip(&query).map(|(a, b)| a * b).sum();
                (key, similarity)
            })
            .max_by(|a, b| a.1.total_cmp(&b.1));
        Ok(best.map(|(key, similarity)| (key.clone(), similarity)))
    }

    fn remove(&self, key: &str) {
        self.entries.write().retain(|(stored, _)| stored != key);
    }

    fn len(&self) -> usize {
        self.entries.read().len()
    }
}

/// How a [`SemanticCache`] answered.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SemanticHit<V> {
    /// The very key was cached.
    Exact(V),
    /// A different key was close enough.
    Similar {
        /// The cached answer.
        value: V,
        /// The key it was cached under.
        matched_key: String,
        /// Cosine similarity between the two embeddings.
        similarity: f32,
    },
}

/// Counters of a [`SemanticCache`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SemanticStats {
    /// Answers found under the exact key.
    pub exact_hits: u64,
    /// Answers found under a similar key.
    pub semantic_hits: u64,
    /// Similar keys above the threshold that the verifier refused.
    pub vetoed: u64,
    /// Lookups with no answer.
    pub misses: u64,
    /// Verifier panics, each contained and counted as a veto.
    pub panicked: u64,
}

/// Decides whether the answer cached for `matched_key` may serve `query_key`.
pub type Verifier = dyn Fn(&str, &str, f32) -> bool + Send + Sync;

/// A [`TieredCache`] that can also answer from a similar prompt's entry.
///
/// Embeddings come from the caller (whatever model it already runs); the threshold has no
/// default, and a verifier may veto a match.
///
/// ```
/// use backstop_cache::{ExactCosineIndex, SemanticCache, SemanticHit, TieredCache};
/// use std::sync::Arc;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let tiers: TieredCache<String, String> =
///     TieredCache::in_memory(1_000)?;
/// let cache = SemanticCache::new(tiers, Arc::new(ExactCosineIndex::new(3)), 0.95)?
///     // Never serve a prompt's answer to its negation, however close the vectors.
///     .with_verifier(|query, matched, _| query.contains(" not ") == matched.contains(" not "));
///
/// cache.insert("capital of France?", &[0.9, 0.1, 0.0], "Paris".to_string()).await?;
/// match cache.get("France's capital?", &[0.89, 0.12, 0.0]).await? {
///     Some(SemanticHit::Similar { value, matched_key, .. }) => {
///         assert_eq!((value.as_str(), matched_key.as_str()), ("Paris", "capital of France?"));
///     }
///     other => panic!("expected a similar hit, got {other:?}"),
/// }
/// assert!(cache.get("is Paris not the capital?", &[0.9, 0.1, 0.0]).await?.is_none());
/// assert!(cache.get("weather in Oslo?", &[0.0, 0.2, 0.9]).await?.is_none());
/// let stats = cache.stats();
/// assert_eq!((stats.semantic_hits, stats.vetoed, stats.misses), (1, 1, 2));
/// # Ok(())
/// # }
/// ```
pub struct SemanticCache<V, C> {
    cache: TieredCache<String, V, C>,
    index: Arc<dyn SimilarityIndex>,
    threshold: f32,
    verifier: Option<Box<Verifier>>,
    counters: SemanticCounters,
}

backstop_core::counter_set!(
    /// The counters behind [`SemanticStats`].
    struct SemanticCounters => SemanticStats {
        exact_hits,
        semantic_hits,
        vetoed,
        misses,
        panicked,
    }
);

impl<V, C> SemanticCache<V, C>
where
    V: Clone + Send + Sync + 'static,
    C: Clock,
{
    /// Answers from `cache`, matching prompts whose cosine similarity is at least
    /// `threshold` (in (0, 1]; there is deliberately no default).
    pub fn new(
        cache: TieredCache<String, V, C>,
        index: Arc<dyn SimilarityIndex>,
        threshold: f32,
    ) -> Result<Self, EmbeddingError> {
        if !(threshold > 0.0 && threshold <= 1.0) {
            return Err(EmbeddingError::BadThreshold(threshold));
        }
        Ok(Self {
            cache,
            index,
            threshold,
            verifier: None,
            counters: SemanticCounters::default(),
        })
    }

    /// Lets `verifier(query_key, matched_key, similarity)` veto a similar match, for
    /// example to refuse a match whose prompts differ in a negation.
    pub fn with_verifier(
        mut self,
        verifier: impl Fn(&str, &str, f32) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.verifier = Some(Box::new(verifier));
        self
    }

    /// Caches `value` under `key` and indexes its embedding.
    pub async fn insert(
        &self,
        key: &str,
        embedding: &[f32],
        value: V,
    ) -> Result<(), EmbeddingError> {
        self.index.insert(key, embedding)?;
        if let Err(error) = self.cache.insert(&key.to_string(), value).await {
            tracing::warn!(%error, "semantic cache write did not reach every tier");
        }
        Ok(())
    }

    /// The answer for `key`, exact or from a similar enough prompt.
    pub async fn get(
        &self,
        key: &str,
        embedding: &[f32],
    ) -> Result<Option<SemanticHit<V>>, EmbeddingError> {
        if let Some(value) = self.cache.get(&key.to_string()).await {
            SemanticCounters::bump(&self.counters.exact_hits);
            return Ok(Some(SemanticHit::Exact(value)));
        }
        let candidate = self.index.nearest(embedding)?;
        let Some((matched_key, similarity)) =
            candidate.filter(|(_, similarity)| *similarity >= self.threshold)
        else {
            SemanticCounters::bump(&self.counters.misses);
            return Ok(None);
        };
        if let Some(verifier) = &self.verifier
            && !self.verified(verifier, key, &matched_key, similarity)
        {
            SemanticCounters::bump(&self.counters.vetoed);
            SemanticCounters::bump(&self.counters.misses);
            return Ok(None);
        }
        match self.cache.get(&matched_key).await {
            Some(value) => {
                SemanticCounters::bump(&self.counters.semantic_hits);
                Ok(Some(SemanticHit::Similar {
                    value,
                    matched_key,
                    similarity,
                }))
            }
            None => {
                // The answer expired or was invalidated: its embedding is stale too.
                self.index.remove(&matched_key);
                SemanticCounters::bump(&self.counters.misses);
                Ok(None)
            }
        }
    }

    /// The verifier's answer; a panicking verifier is contained, counted and read as a
    /// veto, since a wrong answer is worse than a miss.
    fn verified(&self, verifier: &Verifier, key: &str, matched_key: &str, similarity: f32) -> bool {
        contain("semantic cache verifier", || {
            verifier(key, matched_key, similarity)
        })
        .unwrap_or_else(|panicked| {
            SemanticCounters::bump(&self.counters.panicked);
            tracing::error!(%panicked, "semantic cache verifier panicked; the match is vetoed");
            false
        })
    }

    /// Counters, with semantic hits apart from exact ones.
    pub fn stats(&self) -> SemanticStats {
        self.counters.read_into(SemanticStats::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_is_by_cosine_not_length() {
        let index = ExactCosineIndex::new(2);
        index.insert("east", &[10.0, 0.0]).unwrap();
        index.insert("north", &[0.0, 1.0]).unwrap();
        let (key, similarity) = index.nearest(&[1.0, 0.1]).unwrap().unwrap();
        assert_eq!(key, "east");
        assert!(similarity > 0.99);
        index.insert("east", &[0.0, -1.0]).unwrap();
        assert_eq!(index.len(), 2, "re-inserting replaces");
        assert_eq!(index.nearest(&[1.0, 0.1]).unwrap().unwrap().0, "north");
    }

    #[test]
    fn bad_vectors_are_typed_errors() {
        let index = ExactCosineIndex::new(3);
        assert_eq!(
            index.insert("k", &[1.0, 2.0]),
            Err(EmbeddingError::WrongDimensions {
                expected: 3,
                got: 2
            })
        );
        assert_eq!(
            index.insert("k", &[0.0; 3]),
            Err(EmbeddingError::Degenerate)
        );
        assert_eq!(
            index.nearest(&[f32::NAN, 1.0, 1.0]),
            Err(EmbeddingError::Degenerate)
        );
        assert_eq!(index.nearest(&[1.0, 0.0, 0.0]), Ok(None));
    }
}
