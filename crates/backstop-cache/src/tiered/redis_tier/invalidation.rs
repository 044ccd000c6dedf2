//! Keeping every process's L1 in step with the shared Redis tier.
//!
//! Every write through a [`RedisTier`] is followed by a `PUBLISH` on the namespace's
//! invalidation channel naming the key, the prefix or "everything", and the writer's
//! random origin. [`RedisTier::invalidate_l1`] subscribes a process's in-memory L1 to that
//! channel and drops what other processes changed.
//!
//! Why pub/sub and not RESP3 client-side caching (`CLIENT TRACKING … BCAST`): tracking
//! announces every key under a prefix that *any* client writes, including the writer's own
//! keys and keys this process never cached, needs RESP3 on every connection, and on a
//! cluster must be set up per node; pub/sub carries exactly the three operations the cache
//! has (key, prefix, all), prefix invalidation included, with one subscriber connection
//! per process. On a cluster a classic `PUBLISH` reaches subscribers on every node over
//! the cluster bus, so the subscriber connects to any seed; invalidations are rare
//! compared with reads, so the bus broadcast costs little.
//!
//! The guarantee: while subscribed, another process's change reaches this L1 within one
//! publish round trip plus delivery (measured by the fleet tests: about a millisecond on
//! loopback). A read in flight across a change can still put the old value back into L1;
//! that entry lives at most its L1 TTL. When the subscription drops, the whole L1 is
//! emptied at once and again as soon as it is re-established (changes announced in between
//! were missed), and it is retried with a backoff of 50 ms doubling to 1 s. A connection
//! that dies without closing (a partition, a frozen server) is found by a `PING` every
//! [`L1Invalidation::KEEPALIVE`] (1 s) that must be answered within as long, so the drop is
//! noticed within 2 s. While it is
//! down, L1 entries filled from L2 live at most their L1 TTL: keep that TTL as short as the
//! staleness you accept during a Redis outage.

use super::RedisTier;
use crate::MemoryCache;
use backstop_redis::RedisConnection;
use futures::StreamExt;
use futures::future::Either;
use serde::Serialize;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// What a write changed.
pub(super) enum Change<'a> {
    Key(&'a str),
    Prefix(&'a str),
    All,
}

/// A random origin, so a process skips its own announcements.
pub(super) fn origin() -> Arc<str> {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{:016x}", hasher.finish()).into()
}

pub(super) fn channel(namespace: &str) -> String {
    format!("{namespace}invalidations")
}

/// `origin \n kind \n argument`: kind `k` (a key), `p` (a prefix) or `a` (everything).
pub(super) fn encode(origin: &str, change: Change<'_>) -> Vec<u8> {
    let (kind, argument) = match change {
        Change::Key(key) => ("k", key),
        Change::Prefix(prefix) => ("p", prefix),
        Change::All => ("a", ""),
    };
    format!("{origin}\n{kind}\n{argument}").into_bytes()
}

fn decode(payload: &[u8]) -> Option<(&str, Change<'_>)> {
    let text = std::str::from_utf8(payload).ok()?;
    let (origin, rest) = text.split_once('\n')?;
    let (kind, argument) = rest.split_once('\n')?;
    let change = match kind {
        "k" => Change::Key(argument),
        "p" => Change::Prefix(argument),
        "a" => Change::All,
        _ => return None,
    };
    Some((origin, change))
}

/// Counters of an [`L1Invalidation`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct L1InvalidationStats {
    /// Other processes' changes applied to this L1.
    pub applied: u64,
    /// Announcements of this process's own writes, skipped.
    pub own_skipped: u64,
    /// Times the subscription was established (1 plus reconnections).
    pub subscriptions: u64,
    /// Times the whole L1 was emptied because the subscription dropped or came back.
    pub flushes: u64,
    /// Times the subscription was given up because a keepalive `PING` went unanswered
    /// within [`L1Invalidation::KEEPALIVE`] (a silently dead connection).
    pub keepalive_failures: u64,
    /// Whether the subscription is live now.
    pub subscribed: bool,
}

#[derive(Default)]
struct Counters {
    applied: AtomicU64,
    own_skipped: AtomicU64,
    subscriptions: AtomicU64,
    flushes: AtomicU64,
    keepalive_failures: AtomicU64,
}

/// A running subscription keeping one L1 in step with other processes' writes; dropping
/// it stops the subscription.
pub struct L1Invalidation {
    task: tokio::task::JoinHandle<()>,
    counters: Arc<Counters>,
    live: watch::Receiver<bool>,
}

impl std::fmt::Debug for L1Invalidation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("L1Invalidation")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Drop for L1Invalidation {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How often the subscription is checked with a `PING`, and how long the answer may take.
const KEEPALIVE: Duration = Duration::from_secs(1);

impl L1Invalidation {
    /// How often the subscription `PING`s its connection, and how long the answer may
    /// take before the connection counts as dead (then L1 is emptied and it resubscribes):
    /// a silently dead connection is noticed within twice this.
    pub const KEEPALIVE: Duration = KEEPALIVE;

    /// A snapshot of the counters.
    pub fn stats(&self) -> L1InvalidationStats {
        let c = &self.counters;
        L1InvalidationStats {
            applied: c.applied.load(Ordering::Relaxed),
            own_skipped: c.own_skipped.load(Ordering::Relaxed),
            subscriptions: c.subscriptions.load(Ordering::Relaxed),
            flushes: c.flushes.load(Ordering::Relaxed),
            keepalive_failures: c.keepalive_failures.load(Ordering::Relaxed),
            subscribed: *self.live.borrow(),
        }
    }

    /// Waits until the subscription is live (changes announced before then are covered
    /// by the flush that accompanies every (re)subscription).
    pub async fn subscribed(&self) {
        let mut live = self.live.clone();
        // The sender lives as long as the task, which runs until this handle drops.
        let _ = live.wait_for(|up| *up).await;
    }
}

impl<V> RedisTier<V>
where
    V: Clone + Send + Sync + 'static,
{
    /// Subscribes `l1` (the [`MemoryCache`] behind the tiered cache's L1, for example
    /// `memory_tier.cache().clone()`) to the other processes' writes through this tier's
    /// namespace: their `set`, `delete`, `invalidate_prefix` and `invalidate_all` drop the
    /// matching L1 entries. Needs a Tokio runtime; see the module docs for the guarantee.
    pub fn invalidate_l1(&self, l1: MemoryCache<String, V>) -> L1Invalidation {
        let counters = Arc::new(Counters::default());
        let (live_tx, live) = watch::channel(false);
        let task = tokio::spawn(subscribe(
            self.connection.clone(),
            self.invalidation_channel(),
            Arc::clone(&self.origin),
            l1,
            Arc::clone(&counters),
            live_tx,
        ));
        L1Invalidation {
            task,
            counters,
            live,
        }
    }
}

async fn subscribe<V>(
    redis: RedisConnection,
    channel: String,
    origin: Arc<str>,
    l1: MemoryCache<String, V>,
    counters: Arc<Counters>,
    live: watch::Sender<bool>,
) where
    V: Clone + Send + Sync + 'static,
{
    const FIRST_RETRY: Duration = Duration::from_millis(50);
    let flush = || {
        l1.invalidate_all();
        counters.flushes.fetch_add(1, Ordering::Relaxed);
    };
    let apply = |payload: &[u8]| {
        let Some((from, change)) = decode(payload) else {
            return;
        };
        if from == &*origin {
            counters.own_skipped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match change {
            Change::Key(key) => {
                l1.remove(key);
            }
            Change::Prefix(prefix) => l1.invalidate_prefix(prefix),
            Change::All => l1.invalidate_all(),
        }
        counters.applied.fetch_add(1, Ordering::Relaxed);
    };
    let mut retry = FIRST_RETRY;
    loop {
        let subscribed = match redis.pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                Ok(()) => Some(pubsub),
                Err(error) => {
                    tracing::warn!(%error, "could not subscribe to cache invalidations");
                    None
                }
            },
            Err(error) => {
                tracing::warn!(%error, "could not open the cache invalidation subscription");
                None
            }
        };
        if let Some(pubsub) = subscribed {
            // Whatever changed while unsubscribed was missed: start L1 afresh.
            flush();
            counters.subscriptions.fetch_add(1, Ordering::Relaxed);
            live.send_replace(true);
            retry = FIRST_RETRY;
            let (mut sink, mut messages) = pubsub.split();
            let mut keepalive = tokio::time::interval(KEEPALIVE);
            keepalive.tick().await;
            loop {
                let tick = std::pin::pin!(keepalive.tick());
                match futures::future::select(messages.next(), tick).await {
                    Either::Left((Some(message), _)) => apply(message.get_payload_bytes()),
                    Either::Left((None, _)) => break,
                    Either::Right(_) => {
                        // A connection the server or the network dropped without a FIN
                        // (a partition, a frozen server) never ends the message stream:
                        // a PING that goes unanswered does.
                        let ping = tokio::time::timeout(KEEPALIVE, sink.ping::<redis::Value>());
                        if !matches!(ping.await, Ok(Ok(_))) {
                            counters.keepalive_failures.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    }
                }
            }
            live.send_replace(false);
            tracing::warn!(
                "cache invalidation subscription dropped; emptying L1 and resubscribing"
            );
            flush();
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_round_trip() {
        for (change, kind) in [
            (Change::Key("user:{7}\nx"), "k"),
            (Change::Prefix("user:"), "p"),
            (Change::All, "a"),
        ] {
            let payload = encode("abc", change);
            let (origin, decoded) = decode(&payload).unwrap();
            assert_eq!(origin, "abc");
            let decoded_kind = match decoded {
                Change::Key(k) => {
                    assert_eq!(k, "user:{7}\nx");
                    "k"
                }
                Change::Prefix(p) => {
                    assert_eq!(p, "user:");
                    "p"
                }
                Change::All => "a",
            };
            assert_eq!(decoded_kind, kind);
        }
        assert!(decode(b"garbage").is_none());
        assert!(decode(b"o\nz\nx").is_none());
    }

    #[test]
    fn origins_differ() {
        assert_ne!(origin(), origin());
    }
}
