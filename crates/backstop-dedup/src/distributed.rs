//! Singleflight across processes through Redis (feature `redis`).
//!
//! Each process first coalesces its own callers with a [`Group`], so one Redis election
//! happens per key per process. The elected executor holds a lease key (`SET NX PX`
//! with a random token) that it renews while the work runs; the others poll for the
//! published result with a growing interval. A result is published under its own key
//! with a TTL, so a caller arriving shortly after also gets it. When the executor dies
//! its lease expires and the next poller takes it and runs the work itself.
//!
//! The lease and result keys of one key share a hash tag (`prefix:{tag}:lease`,
//! `prefix:{tag}:result`, the tag escaped by [`backstop_redis::key::hash_tag`]), so the
//! claim and publish scripts touch one slot and work on a Redis Cluster.

use std::fmt;
use std::hash::Hash;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use backstop_core::config::{ConfigError, Validate, ensure, ensure_duration};
use backstop_core::time::clamp;
use backstop_core::{Panicked, RejectKind, Rejected};
use backstop_redis::{Misconfiguration, RedisConn, RedisConnection, RedisFault};
use futures::FutureExt;
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::error::DedupError;
use crate::group::Group;
use crate::outcome::{DedupOutcome, Source};
use crate::stats::{Counters, GroupStats};

/// Returns the published result, or takes the lease, or reports that it is held.
const CLAIM: &str = r"
local published = redis.call('GET', KEYS[1])
if published then return {1, published} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2, ''} end
return {0, ''}
";

/// Publishes the result and releases the lease if this executor still holds it.
const PUBLISH: &str = r"
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
";

/// Releases the lease without a result, only if this executor still holds it.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// Extends the lease, only if this executor still holds it.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
";

/// What a [`DistributedGroup`] does when Redis fails or exceeds `redis_timeout`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedisFailure {
    /// Run the work in this process (still coalesced with this process's callers), so
    /// an outage costs duplicate executions across processes, not failed requests.
    #[default]
    ExecuteLocally,
    /// Fail the call with [`DedupError::Rejected`] ([`RejectKind::Unavailable`]).
    Fail,
}

/// Configuration of a [`DistributedGroup`].
///
/// ```
/// use backstop_dedup::DistributedConfig;
///
/// let config: DistributedConfig = serde_json::from_str(
///     r#"{ "prefix": "llm-dedup", "lease_ttl": "30s", "result_ttl": "1m", "on_redis_error": "fail" }"#,
/// ).unwrap();
/// assert_eq!(config.lease_ttl, std::time::Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DistributedConfig {
    /// Prefix of every Redis key this group writes: `prefix:{key}:lease` holds the
    /// executor's random token, `prefix:{key}:result` the published JSON result (the key
    /// escaped as a cluster hash tag by [`backstop_redis::key::hash_tag`]). No braces or
    /// glob characters. Default `"dedup"`.
    pub prefix: String,
    /// How long a lease lasts without renewal; the executor renews it every third of
    /// this while the work runs, so it bounds how long others wait after the executor
    /// dies, not how long the work may take. Default 10 s.
    #[serde(with = "backstop_core::duration::human")]
    pub lease_ttl: Duration,
    /// How long a published result stays readable; callers of other processes that
    /// arrive within it get the result without running the work. Default 10 s.
    #[serde(with = "backstop_core::duration::human")]
    pub result_ttl: Duration,
    /// First interval between polls for another process's result; it doubles up to
    /// `max_poll_interval`. Default 5 ms.
    #[serde(with = "backstop_core::duration::human")]
    pub poll_interval: Duration,
    /// Longest interval between polls. Default 200 ms.
    #[serde(with = "backstop_core::duration::human")]
    pub max_poll_interval: Duration,
    /// How long a caller waits for another process before it gives up with
    /// [`DedupError::Rejected`] ([`RejectKind::Timeout`]). Default 60 s; at most a year.
    #[serde(with = "backstop_core::duration::human")]
    pub max_wait: Duration,
    /// Bound on each Redis round trip, connecting included. Default 500 ms.
    #[serde(with = "backstop_core::duration::human")]
    pub redis_timeout: Duration,
    /// What to do when Redis fails. Default [`RedisFailure::ExecuteLocally`].
    pub on_redis_error: RedisFailure,
}

impl Default for DistributedConfig {
    fn default() -> Self {
        Self {
            prefix: "dedup".to_string(),
            lease_ttl: Duration::from_secs(10),
            result_ttl: Duration::from_secs(10),
            poll_interval: Duration::from_millis(5),
            max_poll_interval: Duration::from_millis(200),
            max_wait: Duration::from_secs(60),
            redis_timeout: Duration::from_millis(500),
            on_redis_error: RedisFailure::ExecuteLocally,
        }
    }
}

impl Validate for DistributedConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        ensure(!self.prefix.is_empty(), "prefix", "must not be empty")?;
        // Braces would move the hash tag off the user key (the lease and result keys
        // would land in different cluster slots).
        ensure(
            backstop_redis::key::is_safe_prefix(&self.prefix),
            "prefix",
            "must not contain braces or glob characters",
        )?;
        ensure(
            self.lease_ttl >= Duration::from_millis(3),
            "lease_ttl",
            "must be at least 3ms (it is renewed every third)",
        )?;
        ensure_duration("lease_ttl", self.lease_ttl)?;
        for (field, value) in [
            ("result_ttl", self.result_ttl),
            ("poll_interval", self.poll_interval),
            ("max_wait", self.max_wait),
            ("redis_timeout", self.redis_timeout),
        ] {
            ensure(
                value >= Duration::from_millis(1),
                field,
                "must be at least 1ms",
            )?;
            ensure_duration(field, value)?;
        }
        ensure_duration("max_poll_interval", self.max_poll_interval)?;
        ensure(
            self.max_poll_interval >= self.poll_interval,
            "max_poll_interval",
            "must not be less than poll_interval",
        )
    }
}

/// A snapshot of a [`DistributedGroup`]'s counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DistributedStats {
    /// The in-process coalescing in front of Redis.
    pub local: GroupStats,
    /// Executions this process ran under a lease.
    pub leased_executions: u64,
    /// Leases won after waiting on another holder (its lease expired or was released
    /// without a result).
    pub takeovers: u64,
    /// Results read from Redis that another process had published.
    pub remote_results: u64,
    /// Polls for another process's result.
    pub polls: u64,
    /// Redis calls that failed or timed out.
    pub redis_errors: u64,
    /// Executions run without a lease because Redis failed.
    pub local_fallbacks: u64,
    /// Calls refused because the Redis deployment is misconfigured (no fallback ran; see
    /// [`DistributedGroup::misconfiguration`]).
    pub misconfigured: u64,
}

backstop_core::counter_set!(
    /// What happened on the way through Redis; the local group keeps its own counters.
    pub(crate) struct RemoteCounters => DistributedStats {
        leased_executions,
        takeovers,
        remote_results,
        polls,
        redis_errors,
        local_fallbacks,
        misconfigured,
    }
);

/// A value and whether it came from another process.
#[derive(Clone)]
struct Arrival<V> {
    value: V,
    remote: bool,
}

enum Claim {
    Published(String),
    Won,
    Held,
}

/// Why a Redis round trip gave no answer.
enum CallFailure {
    /// An outage: the failure policy decides.
    Outage(String),
    /// A misconfiguration: refused whatever the policy.
    Mistake(Misconfiguration),
}

struct Shared {
    redis: RedisConnection,
    /// `config.prefix` behind the connection's namespace.
    prefix: String,
    /// The last misconfiguration seen, for [`DistributedGroup::misconfiguration`].
    mistake: Mutex<Option<Misconfiguration>>,
    config: DistributedConfig,
    claim: redis::Script,
    publish: redis::Script,
    release: redis::Script,
    renew: redis::Script,
    counters: RemoteCounters,
}

/// Singleflight across processes: one execution per key among every process sharing a
/// Redis, the others receiving its published result.
///
/// Callers in one process are first coalesced by a local [`Group`], so one Redis
/// election happens per key per process; only the elected executor runs the work.
/// Values travel as JSON (`V: Serialize + DeserializeOwned`). Errors are not published:
/// the executor releases its lease and a waiting process runs the work itself, so a
/// transient failure is retried once per waiting process rather than fanned out.
/// An execution that panics or is cancelled (every local caller dropped) releases its
/// lease at once; a crashed process's lease expires after `lease_ttl`; either way a
/// waiter takes over. Redis outages follow [`DistributedConfig::on_redis_error`], and no
/// Redis call waits longer than `redis_timeout`. A misconfigured deployment (a standalone
/// URL at a cluster node or a replica, an unknown Sentinel master, a wrong TLS CA) is never
/// an outage: the call fails with [`DedupError::Misconfigured`] under every policy, is
/// counted in [`DistributedStats::misconfigured`] and named by
/// [`misconfiguration`](Self::misconfiguration), and no process runs the work unleased.
///
/// It runs on any [`RedisConnection`]: one server, a Redis Cluster or a primary behind
/// Sentinel, optionally over TLS.
///
/// ```no_run
/// use backstop_dedup::{DistributedConfig, DistributedGroup};
/// use backstop_redis::{RedisConfig, RedisConnection};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let redis = RedisConnection::new(&RedisConfig::url("redis://127.0.0.1:6379"))?;
/// let group: DistributedGroup<String, String, String> =
///     DistributedGroup::new(redis, DistributedConfig::default())?;
/// let answer = group
///     .work("summarize:doc-17".to_string(), || async { Ok("a summary".to_string()) })
///     .await?;
/// println!("{} ({:?})", answer.value, answer.source);
/// # Ok(()) }
/// ```
pub struct DistributedGroup<K, V, E> {
    local: Group<K, Arrival<V>, E>,
    shared: Arc<Shared>,
}

impl<K, V, E> Clone for DistributedGroup<K, V, E> {
    fn clone(&self) -> Self {
        Self {
            local: self.local.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K, V, E> fmt::Debug for DistributedGroup<K, V, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DistributedGroup")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl<K, V, E> DistributedGroup<K, V, E>
where
    K: Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    E: Clone + Send + Sync + 'static,
{
    /// A group on `redis` (a [`RedisConnection`] of any topology, or a `redis::Client`
    /// for one server), its keys behind the connection's
    /// [namespace](RedisConnection::namespace). Connects lazily, on the first call.
    pub fn new(
        redis: impl Into<RedisConnection>,
        config: DistributedConfig,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let redis = redis.into();
        Ok(Self {
            local: Group::new(),
            shared: Arc::new(Shared {
                prefix: redis.namespaced(&config.prefix),
                redis,
                mistake: Mutex::new(None),
                config,
                claim: redis::Script::new(CLAIM),
                publish: redis::Script::new(PUBLISH),
                release: redis::Script::new(RELEASE),
                renew: redis::Script::new(RENEW),
                counters: RemoteCounters::default(),
            }),
        })
    }

    /// Runs `work` for `key` unless another caller, in this process or another one,
    /// is already running it; then returns that execution's result.
    ///
    /// [`DedupOutcome::source`] is [`Source::Remote`] when another process ran it.
    pub async fn work<F, Fut>(&self, key: K, work: F) -> Result<DedupOutcome<V>, DedupError<E>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        let redis_key = key.to_string();
        let outcome = self
            .local
            .run(key, None, move |local| {
                Box::pin(async move {
                    Counters::bump(&local.executions);
                    match AssertUnwindSafe(shared.resolve(&redis_key, work))
                        .catch_unwind()
                        .await
                    {
                        Ok(result) => result,
                        Err(payload) => Err(DedupError::Panicked(Panicked::from_payload(
                            "dedup.work",
                            &*payload,
                        ))),
                    }
                })
            })
            .await?;
        let Arrival { value, remote } = outcome.value;
        Ok(if remote {
            DedupOutcome {
                value,
                shared: true,
                source: Source::Remote,
            }
        } else {
            DedupOutcome {
                value,
                shared: outcome.shared,
                source: outcome.source,
            }
        })
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> DistributedStats {
        self.shared.counters.read_into(DistributedStats {
            local: self.local.stats(),
            ..DistributedStats::default()
        })
    }

    /// The last misconfiguration Redis calls met, if any: why calls are refused under
    /// every failure policy.
    pub fn misconfiguration(&self) -> Option<Misconfiguration> {
        self.shared.mistake.lock().clone()
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &DistributedConfig {
        &self.shared.config
    }
}

impl Shared {
    fn result_key(&self, key: &str) -> String {
        backstop_redis::key::tagged(&self.prefix, key, "result")
    }

    fn lease_key(&self, key: &str) -> String {
        backstop_redis::key::tagged(&self.prefix, key, "lease")
    }

    /// The local execution for `key`: the published result, or this process's run.
    async fn resolve<V, E, F, Fut>(
        self: &Arc<Self>,
        key: &str,
        work: F,
    ) -> Result<Arrival<V>, DedupError<E>>
    where
        V: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        let token = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        let token = token.as_str();
        let deadline = Instant::now() + clamp(self.config.max_wait);
        let mut interval = self.config.poll_interval;
        let mut waited = false;
        loop {
            let claim = self
                .call(|mut conn| async move {
                    let (state, published): (i64, String) = self
                        .claim
                        .key(self.result_key(key))
                        .key(self.lease_key(key))
                        .arg(token)
                        .arg(millis(self.config.lease_ttl))
                        .invoke_async(&mut conn)
                        .await?;
                    Ok(match state {
                        1 => Claim::Published(published),
                        2 => Claim::Won,
                        _ => Claim::Held,
                    })
                })
                .await;
            match claim {
                Ok(Claim::Published(json)) => match serde_json::from_str(&json) {
                    Ok(value) => {
                        RemoteCounters::bump(&self.counters.remote_results);
                        return Ok(Arrival {
                            value,
                            remote: true,
                        });
                    }
                    Err(error) => {
                        return self
                            .fall_back(format!("unreadable published result: {error}"), work)
                            .await;
                    }
                },
                Ok(Claim::Won) => {
                    if waited {
                        RemoteCounters::bump(&self.counters.takeovers);
                        tracing::debug!(target: "backstop_dedup", key, "took over an expired or released lease");
                    }
                    return self.execute_leased(key, token, work).await;
                }
                Ok(Claim::Held) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(DedupError::Rejected(Rejected::new(RejectKind::Timeout)));
                    }
                    waited = true;
                    RemoteCounters::bump(&self.counters.polls);
                    tokio::time::sleep(interval.min(deadline - now)).await;
                    interval = interval
                        .saturating_mul(2)
                        .min(self.config.max_poll_interval);
                }
                Err(CallFailure::Outage(reason)) => return self.fall_back(reason, work).await,
                Err(CallFailure::Mistake(mistake)) => {
                    return Err(DedupError::Misconfigured(mistake));
                }
            }
        }
    }

    /// Runs the work under the lease, renewing it, then publishes the result (or
    /// releases the lease after an error so a waiter can try).
    async fn execute_leased<V, E, F, Fut>(
        self: &Arc<Self>,
        key: &str,
        token: &str,
        work: F,
    ) -> Result<Arrival<V>, DedupError<E>>
    where
        V: Serialize,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        RemoteCounters::bump(&self.counters.leased_executions);
        let mut lease = LeaseGuard {
            shared: Arc::clone(self),
            key: key.to_string(),
            token: token.to_string(),
            held: true,
        };
        let mut running = std::pin::pin!(work());
        let mut renewal = tokio::time::interval(clamp(self.config.lease_ttl / 3));
        renewal.tick().await;
        let result = loop {
            tokio::select! {
                result = &mut running => break result,
                _ = renewal.tick() => {
                    self.run_or_warn(
                        key,
                        self.renew
                            .key(self.lease_key(key))
                            .arg(token)
                            .arg(millis(self.config.lease_ttl)),
                        "could not renew a dedup lease",
                    )
                    .await;
                }
            }
        };
        let value = match result {
            Ok(value) => value,
            Err(error) => {
                lease.held = false;
                self.release_lease(key, token).await;
                return Err(DedupError::Inner(error));
            }
        };
        // From here the lease ends with the publication (or expires if that fails),
        // never with a bare release that would let a waiter run the work again.
        lease.held = false;
        match serde_json::to_string(&value) {
            Ok(json) => {
                self.run_or_warn(
                    key,
                    self.publish
                        .key(self.result_key(key))
                        .key(self.lease_key(key))
                        .arg(token)
                        .arg(&json)
                        .arg(millis(self.config.result_ttl)),
                    "could not publish a deduplicated result; waiting processes will run it themselves",
                )
                .await;
            }
            Err(error) => {
                tracing::warn!(target: "backstop_dedup", key, %error, "deduplicated result does not serialize; other processes will run it themselves");
            }
        }
        Ok(Arrival {
            value,
            remote: false,
        })
    }

    /// Deletes the lease if `token` still holds it, so a waiter can take over now.
    async fn release_lease(&self, key: &str, token: &str) {
        self.run_or_warn(
            key,
            self.release.key(self.lease_key(key)).arg(token),
            "could not release a dedup lease; it will expire",
        )
        .await;
    }

    /// Runs a script whose answer nothing waits for (a renewal, publication or release)
    /// and logs an outage as `failed`; a misconfiguration is logged by [`call`](Self::call).
    async fn run_or_warn(&self, key: &str, script: &redis::ScriptInvocation<'_>, failed: &str) {
        let ran = self
            .call(|mut conn| async move {
                let _: i64 = script.invoke_async(&mut conn).await?;
                Ok(())
            })
            .await;
        if let Err(CallFailure::Outage(reason)) = ran {
            tracing::warn!(target: "backstop_dedup", key, %reason, "{failed}");
        }
    }

    /// Applies the Redis failure policy.
    async fn fall_back<V, E, F, Fut>(
        &self,
        reason: String,
        work: F,
    ) -> Result<Arrival<V>, DedupError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        match self.config.on_redis_error {
            RedisFailure::ExecuteLocally => {
                RemoteCounters::bump(&self.counters.local_fallbacks);
                tracing::warn!(target: "backstop_dedup", %reason, "Redis unavailable; running the work in this process only");
                match work().await {
                    Ok(value) => Ok(Arrival {
                        value,
                        remote: false,
                    }),
                    Err(error) => Err(DedupError::Inner(error)),
                }
            }
            RedisFailure::Fail => {
                tracing::warn!(target: "backstop_dedup", %reason, "Redis unavailable; failing the call");
                Err(DedupError::Rejected(Rejected::new(RejectKind::Unavailable)))
            }
        }
    }

    /// One Redis round trip, connecting first if needed, under `redis_timeout`. Outages
    /// are counted and returned as a reason; a misconfiguration is counted, logged and
    /// remembered, and never reaches the failure policy.
    async fn call<'a, T, C, Fut>(&'a self, call: C) -> Result<T, CallFailure>
    where
        C: FnOnce(RedisConn) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>> + 'a,
    {
        let attempt = self.redis.run(call);
        let failure = match tokio::time::timeout(clamp(self.config.redis_timeout), attempt).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(RedisFault::Misconfigured(mistake))) => {
                RemoteCounters::bump(&self.counters.misconfigured);
                tracing::error!(target: "backstop_dedup", %mistake, "Redis is misconfigured; refusing instead of running unleased");
                *self.mistake.lock() = Some(mistake.clone());
                return Err(CallFailure::Mistake(mistake));
            }
            Ok(Err(fault)) => fault.to_string(),
            Err(_) => format!("no answer within {:?}", self.config.redis_timeout),
        };
        RemoteCounters::bump(&self.counters.redis_errors);
        Err(CallFailure::Outage(failure))
    }
}

/// A lease this process holds while its execution runs.
///
/// If the execution is cancelled (every local caller dropped) or panics, dropping the
/// guard releases the lease in a background task, so waiting processes take over at
/// once instead of after `lease_ttl`. Outside a Tokio runtime it is left to expire.
struct LeaseGuard {
    shared: Arc<Shared>,
    key: String,
    token: String,
    held: bool,
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if !self.held {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        tracing::debug!(target: "backstop_dedup", key = self.key.as_str(), "execution abandoned; releasing its lease");
        let shared = Arc::clone(&self.shared);
        let (key, token) = (
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.token),
        );
        runtime.spawn(async move { shared.release_lease(&key, &token).await });
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}
