//! Records a live stream on its way through, and stores it once it completed cleanly.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};

use backstop_core::{Clock, contain, contain_future};
use futures::future::BoxFuture;
use futures::{FutureExt, Stream};
use tokio::time::Instant;

use super::cache::StreamShared;
use super::record::StreamRecord;
use super::stats::StreamCacheCounters;
use crate::tiered::cache::Inner;

/// Bytes taken from the recording budget; given back when dropped (stored, abandoned or
/// cancelled alike).
struct Reservation<T> {
    bytes: usize,
    shared: Arc<StreamShared<T>>,
}

impl<T> Reservation<T> {
    /// Takes `bytes` more from the budget, unless that passes the per-stream or the total
    /// bound.
    fn grow(&mut self, bytes: usize) -> bool {
        let config = &self.shared.config;
        let total = &self.shared.counters.bytes_recording;
        let mine = self.bytes.saturating_add(bytes);
        if mine > config.max_record_bytes {
            return false;
        }
        let before = total.fetch_add(bytes as u64, Relaxed);
        if before.saturating_add(bytes as u64) > config.max_recording_bytes as u64 {
            total.fetch_sub(bytes as u64, Relaxed);
            return false;
        }
        self.bytes = mine;
        true
    }
}

impl<T> Drop for Reservation<T> {
    fn drop(&mut self) {
        self.shared
            .counters
            .bytes_recording
            .fetch_sub(self.bytes as u64, Relaxed);
    }
}

struct Recording<T> {
    chunks: Vec<T>,
    gaps_us: Vec<u32>,
    last: Instant,
    reserved: Reservation<T>,
}

/// The upstream of a cached stream: passes every item through, records the chunks (and
/// the time before each), and on a clean end writes the record to every tier *before*
/// yielding the end, so once any reader has seen the end, the next call replays. A stream
/// that fails, is cut (dropped unfinished) or grows past the bounds is never stored.
pub(crate) struct Recorder<St, T, C> {
    upstream: Pin<Box<St>>,
    recording: Option<Recording<T>>,
    writing: Option<BoxFuture<'static, ()>>,
    finished: bool,
    inner: Arc<Inner<StreamRecord<T>, C>>,
    key: String,
    shared: Arc<StreamShared<T>>,
}

impl<St, T, C> Recorder<St, T, C> {
    pub(crate) fn new(
        upstream: St,
        inner: Arc<Inner<StreamRecord<T>, C>>,
        key: String,
        shared: Arc<StreamShared<T>>,
    ) -> Self {
        let reserved = Reservation {
            bytes: 0,
            shared: Arc::clone(&shared),
        };
        Self {
            upstream: Box::pin(upstream),
            recording: Some(Recording {
                chunks: Vec::new(),
                gaps_us: Vec::new(),
                last: Instant::now(),
                reserved,
            }),
            writing: None,
            finished: false,
            inner,
            key,
            shared,
        }
    }

    /// Stops recording; the stream goes on unrecorded.
    fn abandon(&mut self, counter: fn(&StreamCacheCounters) -> &std::sync::atomic::AtomicU64) {
        if self.recording.take().is_some() {
            StreamCacheCounters::bump(counter(&self.shared.counters));
        }
    }
}

impl<St, T, C> Unpin for Recorder<St, T, C> {}

impl<St, T, E, C> Stream for Recorder<St, T, C>
where
    St: Stream<Item = Result<T, E>>,
    T: Clone + Send + Sync + 'static,
    C: Clock,
{
    type Item = Result<T, E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(write) = &mut this.writing {
                if write.poll_unpin(cx).is_pending() {
                    return Poll::Pending;
                }
                this.writing = None;
                this.finished = true;
            }
            if this.finished {
                return Poll::Ready(None);
            }
            match this.upstream.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    this.record(&chunk);
                    return Poll::Ready(Some(Ok(chunk)));
                }
                Poll::Ready(Some(Err(error))) => {
                    this.abandon(|c| &c.not_stored_failed);
                    return Poll::Ready(Some(Err(error)));
                }
                Poll::Ready(None) => match this.recording.take() {
                    Some(recording) => this.writing = Some(this.store(recording)),
                    None => this.finished = true,
                },
            }
        }
    }
}

impl<St, T, C> Recorder<St, T, C>
where
    T: Clone + Send + Sync + 'static,
    C: Clock,
{
    fn record(&mut self, chunk: &T) {
        let Some(recording) = &mut self.recording else {
            return;
        };
        let weigher = &self.shared.weigher;
        let fits = contain("cache.stream.weigher", || weigher(chunk))
            .is_ok_and(|weight| recording.reserved.grow(weight));
        if !fits {
            self.abandon(|c| &c.not_stored_too_large);
            tracing::debug!(key = %self.key, "stream too large to cache; passed through unrecorded");
            return;
        }
        recording.chunks.push(chunk.clone());
        if self.shared.config.record_timing {
            let now = Instant::now();
            let gap = now.saturating_duration_since(recording.last).as_micros();
            recording
                .gaps_us
                .push(u32::try_from(gap).unwrap_or(u32::MAX));
            recording.last = now;
        }
    }

    fn store(&self, recording: Recording<T>) -> BoxFuture<'static, ()> {
        let inner = Arc::clone(&self.inner);
        let key = self.key.clone();
        let shared = Arc::clone(&self.shared);
        let record = StreamRecord {
            chunks: recording.chunks.into(),
            gaps_us: recording.gaps_us.into(),
        };
        let reserved = recording.reserved;
        async move {
            let written = contain_future("cache.stream.store", async {
                inner.write(&key, Some(record)).await
            })
            .await;
            let counters = &shared.counters;
            match written {
                Ok(Ok(())) => StreamCacheCounters::bump(&counters.stored),
                Ok(Err(partial)) => {
                    StreamCacheCounters::bump(&counters.store_failures);
                    tracing::warn!(%key, error = %partial, "completed stream not stored in every tier");
                }
                Err(panicked) => {
                    StreamCacheCounters::bump(&counters.store_failures);
                    tracing::warn!(%key, %panicked, "storing a completed stream panicked");
                }
            }
            drop(reserved);
        }
        .boxed()
    }
}

impl<St, T, C> Drop for Recorder<St, T, C> {
    fn drop(&mut self) {
        if !self.finished && (self.recording.is_some() || self.writing.is_some()) {
            StreamCacheCounters::bump(&self.shared.counters.not_stored_cut);
        }
    }
}
