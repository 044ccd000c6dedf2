//! Streamed answers: what a streamed request carries, how each reader was served, and the
//! stream that holds an adaptive-limit permit and a budget reservation until the
//! provider's answer ends.

use backstop::limit::{AdaptivePermit, BudgetReservation, TokenUsage};
use futures::{Stream, StreamExt};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, ready};

use crate::adaptive;
use crate::billing::Billing;
use crate::fleet::Ask;
use crate::outcome::GatewayError;
use crate::provider::{Chunk, ChunkStream};

/// How a streamed answer reached its reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Replayed from the stream cache.
    Hit,
    /// Joined a stream another caller had opened (dedup).
    Follower,
    /// Opened the stream: the provider's own time to first token.
    Leader,
}

impl Role {
    pub(crate) const ALL: [Role; 3] = [Role::Hit, Role::Follower, Role::Leader];

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Role::Hit => "hit",
            Role::Follower => "follower",
            Role::Leader => "leader",
        }
    }
}

/// A streamed request, and a note the layers under the deduplicator leave on it: a caller
/// whose request never gets past the deduplicator (it joined another's stream) stays a
/// follower.
#[derive(Debug, Clone)]
pub(crate) struct StreamAsk {
    pub(crate) ask: Ask,
    role: Arc<AtomicU8>,
}

impl StreamAsk {
    pub(crate) fn new(ask: Ask) -> Self {
        Self {
            ask,
            role: Arc::new(AtomicU8::new(Role::Follower as u8)),
        }
    }

    pub(crate) fn mark(&self, role: Role) {
        self.role.store(role as u8, Ordering::Relaxed);
    }

    /// A handle that reads the role after the request has moved into the stack.
    pub(crate) fn role_handle(&self) -> RoleHandle {
        RoleHandle(self.role.clone())
    }
}

/// Reads how a [`StreamAsk`] was served.
pub(crate) struct RoleHandle(Arc<AtomicU8>);

impl RoleHandle {
    pub(crate) fn get(&self) -> Role {
        match self.0.load(Ordering::Relaxed) {
            0 => Role::Hit,
            1 => Role::Follower,
            _ => Role::Leader,
        }
    }
}

/// A provider stream holding its adaptive-limit permit and its budget reservation: the
/// call counts as in flight until the answer's last chunk, its latency and outcome are the
/// whole stream's, and it is settled with the tokens streamed (a stream cut midway was
/// still generated up to there). A stream dropped before its end (every reader left)
/// counts as dropped and its reservation follows the budget's drop rule.
pub(crate) struct Metered {
    inner: ChunkStream,
    open: Option<(AdaptivePermit, Option<Bill>)>,
    completion_tokens: u64,
}

/// What a streamed call will be charged against, and how.
pub(crate) struct Bill {
    pub(crate) billing: Billing,
    pub(crate) reservation: BudgetReservation,
    pub(crate) model: &'static str,
    pub(crate) prompt_tokens: u64,
}

impl Metered {
    pub(crate) fn new(inner: ChunkStream, permit: AdaptivePermit, bill: Option<Bill>) -> Self {
        Self {
            inner,
            open: Some((permit, bill)),
            completion_tokens: 0,
        }
    }
}

impl Stream for Metered {
    type Item = Result<Chunk, GatewayError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let item = ready!(this.inner.poll_next_unpin(cx));
        let ended = match &item {
            Some(Ok(chunk)) => {
                this.completion_tokens += chunk.tokens;
                None
            }
            Some(Err(error)) => Some(adaptive::error_outcome(error)),
            None => Some(backstop::limit::AdaptiveOutcome::Success),
        };
        if let Some(outcome) = ended
            && let Some((permit, bill)) = this.open.take()
        {
            permit.complete(outcome);
            if let Some(bill) = bill {
                let usage = TokenUsage::new(bill.prompt_tokens, this.completion_tokens);
                bill.billing
                    .settle(bill.reservation, Some((bill.model, usage)));
            }
        }
        Poll::Ready(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adaptive::Admission;
    use crate::fleet::Priority;
    use crate::provider::ProviderError;
    use backstop::core::Error;

    fn ask() -> Ask {
        Ask {
            id: 0,
            user: "u".into(),
            prompt: "p".into(),
            prompt_tokens: 1,
            max_tokens: 1,
            priority: Priority::Critical,
        }
    }

    #[test]
    fn a_request_is_a_follower_until_a_layer_says_otherwise() {
        let request = StreamAsk::new(ask());
        let role = request.role_handle();
        assert_eq!(role.get(), Role::Follower);
        request.clone().mark(Role::Hit);
        assert_eq!(role.get(), Role::Hit);
        request.mark(Role::Leader);
        assert_eq!(role.get(), Role::Leader);
    }

    #[tokio::test]
    async fn the_permit_is_held_until_the_stream_ends_and_freed_if_it_is_dropped() {
        let admission = Admission::new(None).unwrap();
        let chunk = |tokens| {
            Ok(Chunk {
                text: String::new(),
                tokens,
            })
        };
        let stream: ChunkStream = futures::stream::iter([chunk(1), chunk(2)]).boxed();
        let mut metered = Metered::new(
            stream,
            admission.acquire(Priority::Critical).await.unwrap(),
            None,
        );
        assert_eq!(admission.limiter.stats().in_flight, 1);
        assert!(metered.next().await.is_some());
        assert_eq!(admission.limiter.stats().in_flight, 1, "still streaming");
        assert!(metered.next().await.is_some());
        assert!(metered.next().await.is_none());
        assert_eq!(admission.limiter.stats().in_flight, 0);

        let failing: ChunkStream =
            futures::stream::iter([Err(Error::Inner(ProviderError::Outage))]).boxed();
        let mut metered = Metered::new(
            failing,
            admission.acquire(Priority::Critical).await.unwrap(),
            None,
        );
        assert!(metered.next().await.unwrap().is_err());
        assert_eq!(admission.limiter.stats().in_flight, 0);

        let pending: ChunkStream = futures::stream::pending().boxed();
        let metered = Metered::new(
            pending,
            admission.acquire(Priority::Critical).await.unwrap(),
            None,
        );
        drop(metered);
        let stats = admission.limiter.stats();
        // The outage, then the cancelled stream.
        assert_eq!(
            (stats.in_flight, stats.dropped),
            (0, 2),
            "cancelled counts as dropped"
        );
    }

    #[tokio::test]
    async fn a_finished_stream_is_settled_with_the_tokens_it_streamed() {
        let admission = Admission::new(None).unwrap();
        let billing = Billing::new(None).unwrap();
        let mut request = ask();
        (request.prompt_tokens, request.max_tokens) = (100, 1_000);
        let bill = Bill {
            billing: billing.clone(),
            reservation: billing.reserve(&request).unwrap(),
            model: crate::provider::PRIMARY_MODEL,
            prompt_tokens: 100,
        };
        let chunk = |tokens| {
            Ok(Chunk {
                text: String::new(),
                tokens,
            })
        };
        let stream: ChunkStream = futures::stream::iter([chunk(30), chunk(20)]).boxed();
        let metered = Metered::new(
            stream,
            admission.acquire(Priority::Critical).await.unwrap(),
            Some(bill),
        );
        assert_eq!(metered.collect::<Vec<_>>().await.len(), 2);
        let key = billing.spend("key");
        assert_eq!(
            key[0].1.tokens, 150,
            "100 prompt + 50 streamed, not the estimate"
        );
    }
}
