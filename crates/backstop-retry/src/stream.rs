//! Streamed responses: a time-to-first-chunk timeout, an idle timeout between chunks,
//! retries before the first chunk and a typed error for a stream cut after it began.

use crate::Retry;
use crate::classify::ClassifyRetry;
use crate::stats::STREAMS_CUT;
use backstop_core::{RejectKind, Rejected, StackError};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// Timeouts of a streamed response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamTimeouts {
    /// From opening the stream to its first chunk (time to first token). Default 30 s.
    #[serde(with = "backstop_core::duration::human")]
    pub first_chunk: Duration,
    /// Longest silence between two chunks once the stream began. Default 30 s.
    #[serde(with = "backstop_core::duration::human")]
    pub idle: Duration,
}

impl Default for StreamTimeouts {
    fn default() -> Self {
        Self {
            first_chunk: Duration::from_secs(30),
            idle: Duration::from_secs(30),
        }
    }
}

impl Retry {
    /// Opens a stream with `open` and waits for its first chunk within
    /// `timeouts.first_chunk`, retrying (with this handle's policy, budget and deadline) a
    /// stream that fails or stays silent before its first chunk. The stream returned
    /// replays that chunk, then yields the rest with an idle timeout: a stream silent for
    /// longer than `timeouts.idle` ends with a [`RejectKind::Timeout`] refusal as its last
    /// item, never with a clean end.
    ///
    /// ```
    /// use backstop_core::{Error, RejectKind};
    /// use backstop_retry::{Retry, StandardClassify, StreamTimeouts};
    /// use futures::StreamExt;
    /// use std::time::Duration;
    ///
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    /// # rt.block_on(async {
    /// let retry = Retry::default();
    /// let timeouts = StreamTimeouts { first_chunk: Duration::from_secs(5), idle: Duration::from_secs(1) };
    /// // Two tokens, then the provider goes silent.
    /// let open = || async {
    ///     let tokens = futures::stream::iter([Ok::<_, Error<()>>("hel"), Ok("lo")])
    ///         .chain(futures::stream::pending());
    ///     Ok(Box::pin(tokens))
    /// };
    /// let mut stream = retry.stream(&StandardClassify, timeouts, open).await.unwrap();
    /// assert_eq!(stream.next().await.unwrap().unwrap(), "hel");
    /// assert_eq!(stream.next().await.unwrap().unwrap(), "lo");
    /// let cut = stream.next().await.unwrap().unwrap_err();
    /// assert_eq!(cut.rejection().unwrap().kind, RejectKind::Timeout);
    /// assert!(stream.next().await.is_none());
    /// # });
    /// ```
    pub async fn stream<St, T, E, C, F, Fut>(
        &self,
        classify: &C,
        timeouts: StreamTimeouts,
        open: F,
    ) -> Result<TimedStream<St>, E>
    where
        St: Stream<Item = Result<T, E>>,
        E: StackError,
        C: ClassifyRetry<E> + ?Sized,
        F: Fn() -> Fut + Sync,
        Fut: Future<Output = Result<St, E>>,
    {
        let first_chunk = backstop_core::time::clamp(timeouts.first_chunk);
        let idle = backstop_core::time::clamp(timeouts.idle);
        self.run(classify, || async {
            let first = async {
                let mut stream = Box::pin(open().await?);
                let first = stream.next().await;
                Ok::<_, E>((stream, first))
            };
            match tokio::time::timeout(first_chunk, first).await {
                Err(_) => Err(E::rejected(Rejected::new(RejectKind::Timeout))),
                Ok(Err(error)) => Err(error),
                Ok(Ok((_, Some(Err(error))))) => Err(error),
                Ok(Ok((stream, first))) => Ok(TimedStream {
                    finished: first.is_none(),
                    stream,
                    first,
                    idle,
                    silence: Box::pin(tokio::time::sleep(idle)),
                    retry: self.clone(),
                }),
            }
        })
        .await
    }
}

/// A stream with an idle timeout between chunks, made by [`Retry::stream`].
///
/// Dropping it drops (cancels) the inner stream.
pub struct TimedStream<St: Stream> {
    stream: Pin<Box<St>>,
    first: Option<St::Item>,
    idle: Duration,
    silence: Pin<Box<Sleep>>,
    finished: bool,
    retry: Retry,
}

// Every pinned field is boxed, so moving the wrapper never moves them.
impl<St: Stream> Unpin for TimedStream<St> {}

impl<St: Stream> std::fmt::Debug for TimedStream<St> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimedStream")
            .field("idle", &self.idle)
            .field("finished", &self.finished)
            .finish()
    }
}

impl<St, T, E> Stream for TimedStream<St>
where
    St: Stream<Item = Result<T, E>>,
    E: StackError,
{
    type Item = Result<T, E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(first) = this.first.take() {
            this.silence.as_mut().reset(Instant::now() + this.idle);
            return Poll::Ready(Some(first));
        }
        if this.finished {
            return Poll::Ready(None);
        }
        match this.stream.as_mut().poll_next(cx) {
            Poll::Ready(Some(item)) => {
                this.silence.as_mut().reset(Instant::now() + this.idle);
                Poll::Ready(Some(item))
            }
            Poll::Ready(None) => {
                this.finished = true;
                Poll::Ready(None)
            }
            Poll::Pending => match this.silence.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.finished = true;
                    this.retry.count(STREAMS_CUT);
                    tracing::debug!(idle = ?this.idle, "retry: stream cut by idle timeout");
                    Poll::Ready(Some(Err(E::rejected(Rejected::new(RejectKind::Timeout)))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}
