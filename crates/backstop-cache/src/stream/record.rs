//! A finished stream as the cache stores it, and its replay.

use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{FutureExt, Stream};
use serde::{Deserialize, Serialize};
use tokio::time::Sleep;

/// A stream that completed cleanly, as stored in every tier: its chunks in order and,
/// when recorded, the time before each chunk.
///
/// Cloning is cheap (the chunks are shared), so an L1 hit costs no copy of the answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamRecord<T> {
    /// The chunks, in the order the upstream produced them.
    pub chunks: Arc<[T]>,
    /// Microseconds before each chunk: from opening the stream for the first (its time to
    /// first token), from the previous chunk for the others; saturates at `u32::MAX`
    /// (71 minutes). Empty when timing was not recorded.
    pub gaps_us: Arc<[u32]>,
}

impl<T> StreamRecord<T> {
    /// A record of `chunks` without timing.
    pub fn new(chunks: impl Into<Arc<[T]>>) -> Self {
        Self {
            chunks: chunks.into(),
            gaps_us: Arc::from([]),
        }
    }

    /// The wait before chunk `index` when replaying paced (none before the first: a cache
    /// hit is served at once, which is what the cache is for).
    pub fn gap_before(&self, index: usize) -> Duration {
        match index {
            0 => Duration::ZERO,
            i => self
                .gaps_us
                .get(i)
                .map_or(Duration::ZERO, |us| Duration::from_micros(u64::from(*us))),
        }
    }
}

/// How a cached stream is replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReplayPacing {
    /// Every chunk at once.
    #[default]
    Instant,
    /// The first chunk at once, then each chunk after the delay that preceded it in the
    /// original stream (for clients that render tokens as they arrive).
    Original,
}

/// A cached stream replayed chunk by chunk, made by
/// [`StreamCache`](crate::StreamCache). It never fails; `E` is the error type of the
/// live streams it stands in for.
pub struct ReplayStream<T, E> {
    record: StreamRecord<T>,
    next: usize,
    pacing: ReplayPacing,
    wait: Option<Pin<Box<Sleep>>>,
    _error: PhantomData<fn() -> E>,
}

impl<T, E> ReplayStream<T, E> {
    /// Replays `record` with `pacing`.
    pub fn new(record: StreamRecord<T>, pacing: ReplayPacing) -> Self {
        Self {
            record,
            next: 0,
            pacing,
            wait: None,
            _error: PhantomData,
        }
    }
}

impl<T, E> fmt::Debug for ReplayStream<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayStream")
            .field("next", &self.next)
            .field("chunks", &self.record.chunks.len())
            .field("pacing", &self.pacing)
            .finish()
    }
}

impl<T, E> Unpin for ReplayStream<T, E> {}

impl<T: Clone, E> Stream for ReplayStream<T, E> {
    type Item = Result<T, E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let Some(chunk) = this.record.chunks.get(this.next) else {
            return Poll::Ready(None);
        };
        if this.pacing == ReplayPacing::Original {
            let gap = this.record.gap_before(this.next);
            if !gap.is_zero() {
                let wait = this.wait.get_or_insert_with(|| {
                    Box::pin(tokio::time::sleep(backstop_core::time::clamp(gap)))
                });
                if wait.poll_unpin(cx).is_pending() {
                    return Poll::Pending;
                }
                this.wait = None;
            }
        }
        let chunk = chunk.clone();
        this.next += 1;
        Poll::Ready(Some(Ok(chunk)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.record.chunks.len() - self.next;
        (left, Some(left))
    }
}
