//! GCRA shared through Redis: one Lua script per decision, so every process charges one
//! budget.
//!
//! The script holds each quota's theoretical arrival time (TAT, microseconds since the Unix
//! epoch) in one key. Several quotas for one user live under keys sharing a `{hash tag}`
//! derived from the user key by [`backstop_redis::key::hash_tag`] (braces, empty and binary
//! keys escaped), so a Redis Cluster keeps them in one slot and the script checks them all
//! or none, whichever node owns the slot.

use crate::error::CheckError;
use crate::multi::Costs;
use crate::stats::LimiterStats;
use crate::{KeyedMultiRateLimiter, Quota};
use backstop_core::config::ConfigError;
use backstop_core::{DefaultClock, StripedCounters};
use backstop_redis::{RedisConnection, RedisFault};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

// Microseconds keep the epoch TAT below 2^53, exact in Lua's doubles; `%.0f` keeps Lua's
// `tostring` from storing it in lossy scientific notation.
const GCRA_SCRIPT: &str = r"
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end
local tats = {}
local retry = 0
for i = 1, #KEYS do
  local em = tonumber(ARGV[3 * i - 1])
  local tol = tonumber(ARGV[3 * i])
  local cost = tonumber(ARGV[3 * i + 1])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  tats[i] = tat
  local wait = tat + em * cost - tol - now
  if wait > retry then retry = wait end
end
local allowed = 1
if retry > 0 then allowed = 0 end
local remaining = -1
local reset = 0
for i = 1, #KEYS do
  local em = tonumber(ARGV[3 * i - 1])
  local tol = tonumber(ARGV[3 * i])
  local cost = tonumber(ARGV[3 * i + 1])
  local tat = tats[i]
  if allowed == 1 and cost > 0 then
    tat = tat + em * cost
    redis.call('SET', KEYS[i], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
  end
  local left = math.floor((tol - (tat - now)) / em)
  if left < 0 then left = 0 end
  if remaining < 0 or left < remaining then remaining = left end
  if tat - now > reset then reset = tat - now end
end
return {allowed, math.ceil(retry), remaining, math.ceil(reset)}
";

/// Where the script reads the current time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeSource {
    /// Redis `TIME`: one clock for every client, immune to client clock skew.
    #[default]
    Server,
    /// The client's wall clock, passed as an argument; for managed Redis (for example
    /// ElastiCache Serverless) that rejects `TIME` inside scripts. Clients must keep their
    /// clocks in sync (NTP); skew shifts their share of the budget.
    Client,
}

/// What a decision does when Redis is unreachable, errs or exceeds the per-call timeout.
#[derive(Debug, Clone)]
pub enum FailurePolicy {
    /// Admit the request: availability over strictness.
    FailOpen,
    /// Refuse with [`CheckError::Unavailable`]: strictness over availability.
    FailClosed,
    /// Decide with an in-process limiter holding the same quotas in the same order, so
    /// each process enforces them on its own (all or none, with the same costs) until
    /// Redis returns.
    ///
    /// Build it with [`FailurePolicy::local`] (or give the limiter a
    /// [`with_max_keys`](KeyedMultiRateLimiter::with_max_keys) cap yourself): an outage
    /// then holds at most that many keys, a full map sweeps idle keys like every keyed
    /// store, and the first decision Redis makes after an outage sweeps it again.
    Local(Arc<KeyedMultiRateLimiter<String, DefaultClock>>),
}

impl FailurePolicy {
    /// The key cap of [`FailurePolicy::local`]'s in-process limiter.
    pub const DEFAULT_LOCAL_MAX_KEYS: usize = 10_000;

    /// A local fallback enforcing `quotas` per process, holding at most
    /// [`DEFAULT_LOCAL_MAX_KEYS`](Self::DEFAULT_LOCAL_MAX_KEYS) keys; at least one quota is
    /// required.
    pub fn local(quotas: &[Quota]) -> Result<Self, ConfigError> {
        Self::local_with_max_keys(quotas, Self::DEFAULT_LOCAL_MAX_KEYS)
    }

    /// A local fallback enforcing `quotas` per process, holding at most `max_keys` keys
    /// (new keys beyond it are refused once no idle key can be swept).
    pub fn local_with_max_keys(quotas: &[Quota], max_keys: usize) -> Result<Self, ConfigError> {
        Ok(Self::Local(Arc::new(
            KeyedMultiRateLimiter::new(quotas.to_vec())?.with_max_keys(max_keys),
        )))
    }
}

/// The outcome of one distributed check, with what `X-RateLimit-*` headers need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisDecision {
    /// Whether the request was admitted (and charged).
    pub admitted: bool,
    /// When refused, how long until the same request would pass; zero when admitted.
    pub retry_after: Duration,
    /// Cells still admissible right now under the tightest quota.
    pub remaining: u64,
    /// How long until every quota of the key is fully replenished.
    pub reset_after: Duration,
    /// Whether Redis decided (`false` when the failure policy did).
    pub from_redis: bool,
}

/// The limiter's counts, on the workspace's one striped counter (as the local limiters').
#[derive(Default)]
struct Counters {
    counts: StripedCounters<4>,
    // Set when the local fallback decided; the next Redis decision sweeps it once.
    local_used: AtomicBool,
}

impl Counters {
    const ADMITTED: usize = 0;
    const REJECTED: usize = 1;
    const REDIS_ERRORS: usize = 2;
    const MISCONFIGURED: usize = 3;
}

/// A GCRA rate limiter whose state lives in Redis, so all processes share one budget.
///
/// Each decision is one `EVALSHA` round trip (the script is loaded on `NOSCRIPT`). Every
/// quota is checked per key and charged all or none. Clones share the connection.
///
/// It runs on any [`RedisConnection`]: one server, a Redis Cluster (each key's quotas share
/// a slot, and the cluster client follows the slot to its node) or a primary behind
/// Sentinel. Outages follow the [`FailurePolicy`]; a misconfiguration is always an error.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use backstop_limit::{FailurePolicy, Quota, RedisRateLimiter};
/// use backstop_redis::{RedisConfig, RedisConnection};
///
/// let redis = RedisConnection::new(&RedisConfig::cluster(["10.0.0.1:6379", "10.0.0.2:6379"]))?;
/// let quotas = [Quota::per_minute(60)?, Quota::per_hour(1_000)?];
/// let limiter = RedisRateLimiter::new(redis, "rl", &quotas)?
///     .with_failure_policy(FailurePolicy::local(&quotas)?);
/// let decision = limiter.check_key_n("user-42", 1).await?;
/// if !decision.admitted {
///     println!("429, Retry-After: {}s", decision.retry_after.as_secs_f64().ceil());
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisRateLimiter {
    redis: RedisConnection,
    script: Arc<redis::Script>,
    prefix: Arc<str>,
    quotas: Arc<[Quota]>,
    time: TimeSource,
    timeout: Duration,
    failure: FailurePolicy,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("prefix", &self.prefix)
            .field("quotas", &self.quotas)
            .field("time", &self.time)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisRateLimiter {
    /// A limiter enforcing every quota in `quotas` per key, under keys starting with
    /// `prefix` (behind the connection's [namespace](RedisConnection::namespace)), on
    /// `redis` (a [`RedisConnection`], or a `redis::Client` for one server).
    /// Connects lazily on the first check; fails open with a 50 ms timeout and reads Redis
    /// `TIME` until configured otherwise.
    pub fn new(
        redis: impl Into<RedisConnection>,
        prefix: &str,
        quotas: &[Quota],
    ) -> Result<Self, ConfigError> {
        backstop_core::config::ensure(!quotas.is_empty(), "quotas", "must not be empty")?;
        backstop_core::config::ensure(
            backstop_redis::key::is_safe_prefix(prefix),
            "prefix",
            "must not contain glob characters or braces",
        )?;
        let redis = redis.into();
        Ok(Self {
            prefix: redis.namespaced(prefix).into(),
            redis,
            script: Arc::new(redis::Script::new(GCRA_SCRIPT)),
            quotas: quotas.into(),
            time: TimeSource::Server,
            timeout: Duration::from_millis(50),
            failure: FailurePolicy::FailOpen,
            counters: Arc::default(),
        })
    }

    backstop_core::config_setters! {
        self;
        /// What to do when Redis fails or times out.
        with_failure_policy(policy: FailurePolicy) { failure = policy }
        /// The bound on one decision, connection included, before the failure policy applies.
        with_timeout(timeout: Duration) { timeout = timeout }
        /// Where the script reads the current time.
        with_time_source(time: TimeSource) { time = time }
    }

    /// The Redis key holding quota `index` of `key`: `prefix:{tag}:index`, where the tag is
    /// the user key, escaped when it holds a brace, `%`, a space or a non-printable byte
    /// (and `%` for the empty key), so one check touches one cluster slot and no two user
    /// keys share a budget.
    pub fn redis_key(&self, key: &str, index: usize) -> String {
        backstop_redis::key::tagged(&self.prefix, key, &index.to_string())
    }

    /// The Lua script each decision runs (`EVALSHA`; keys: one per quota, args: the time
    /// or `''` for Redis `TIME`, then emission interval, tolerance and cost per quota in
    /// microseconds), for audits and for benchmarks that compare against a bare client.
    pub fn script_source() -> &'static str {
        GCRA_SCRIPT
    }

    /// Admits one request for `key`.
    pub async fn check_key(&self, key: &str) -> Result<RedisDecision, CheckError> {
        self.check_key_n(key, 1).await
    }

    /// Admits a request of weight `cost` (e.g. LLM tokens) for `key` against every quota,
    /// charging all or none.
    pub async fn check_key_n(&self, key: &str, cost: u64) -> Result<RedisDecision, CheckError> {
        self.check(key, Costs::Same(cost)).await
    }

    /// Charges `costs[i]` to quota `i` for `key` (a request against requests-per-minute
    /// and its tokens against tokens-per-minute), all or none, in one round trip.
    pub async fn check_key_costs(
        &self,
        key: &str,
        costs: &[u64],
    ) -> Result<RedisDecision, CheckError> {
        self.check(key, Costs::Each(costs)).await
    }

    async fn check(&self, key: &str, costs: Costs<'_>) -> Result<RedisDecision, CheckError> {
        costs.fit(&self.quotas)?;
        let timeout = backstop_core::time::clamp(self.timeout);
        let outcome = tokio::time::timeout(timeout, self.eval(key, costs)).await;
        let decision = match outcome {
            Ok(Ok(decision)) => {
                self.sweep_local_after_outage();
                decision
            }
            Ok(Err(RedisFault::Misconfigured(mistake))) => {
                self.counters.counts.add(Counters::MISCONFIGURED);
                tracing::error!(prefix = %self.prefix, %mistake, "redis rate limiter is misconfigured; refusing");
                return Err(CheckError::Misconfigured(mistake));
            }
            Ok(Err(fault)) => self.on_failure(key, costs, fault)?,
            Err(_) => self.on_failure(key, costs, RedisFault::TimedOut(timeout))?,
        };
        self.counters.counts.add(if decision.admitted {
            Counters::ADMITTED
        } else {
            Counters::REJECTED
        });
        Ok(decision)
    }

    /// Redis is back: drop the keys the local fallback no longer needs (it keeps only
    /// those still over their quota), once per outage.
    fn sweep_local_after_outage(&self) {
        if let FailurePolicy::Local(limiter) = &self.failure
            && self.counters.local_used.swap(false, Ordering::Relaxed)
        {
            limiter.retain_recent();
        }
    }

    /// A snapshot of the counters: admitted and rejected as every limiter counts them,
    /// and the store's failures (the key fields are zero: the keys live in Redis).
    pub fn stats(&self) -> LimiterStats {
        LimiterStats {
            admitted: self.counters.counts.get(Counters::ADMITTED),
            rejected: self.counters.counts.get(Counters::REJECTED),
            redis_errors: self.counters.counts.get(Counters::REDIS_ERRORS),
            misconfigured: self.counters.counts.get(Counters::MISCONFIGURED),
            ..LimiterStats::default()
        }
    }

    async fn eval(&self, key: &str, costs: Costs<'_>) -> Result<RedisDecision, RedisFault> {
        let mut invocation = self.script.prepare_invoke();
        for index in 0..self.quotas.len() {
            invocation.key(self.redis_key(key, index));
        }
        match self.time {
            TimeSource::Server => invocation.arg(""),
            TimeSource::Client => invocation.arg(client_now_micros()),
        };
        for (index, quota) in self.quotas.iter().enumerate() {
            invocation.arg(quota.emission_nanos() as f64 / 1_000.0);
            invocation.arg(quota.tolerance_nanos() as f64 / 1_000.0);
            invocation.arg(costs.of(index));
        }
        let (admitted, retry, remaining, reset): (i64, i64, i64, i64) = self
            .redis
            .run(|mut conn| async move { invocation.invoke_async(&mut conn).await })
            .await?;
        Ok(RedisDecision {
            admitted: admitted == 1,
            retry_after: micros(retry),
            remaining: u64::try_from(remaining).unwrap_or(0),
            reset_after: micros(reset),
            from_redis: true,
        })
    }

    fn on_failure(
        &self,
        key: &str,
        costs: Costs<'_>,
        error: RedisFault,
    ) -> Result<RedisDecision, CheckError> {
        self.counters.counts.add(Counters::REDIS_ERRORS);
        tracing::warn!(prefix = %self.prefix, %error, "redis rate limit check failed; applying failure policy");
        let open = RedisDecision {
            admitted: true,
            retry_after: Duration::ZERO,
            remaining: 0,
            reset_after: Duration::ZERO,
            from_redis: false,
        };
        match &self.failure {
            FailurePolicy::FailOpen => Ok(open),
            FailurePolicy::FailClosed => {
                self.counters.counts.add(Counters::REJECTED);
                Err(CheckError::Unavailable(error))
            }
            FailurePolicy::Local(limiter) => {
                self.counters.local_used.store(true, Ordering::Relaxed);
                let key = key.to_string();
                if let Err(refused) = limiter.check_key_with(&key, costs) {
                    return Ok(RedisDecision {
                        admitted: false,
                        retry_after: refused.retry_after().unwrap_or(Duration::ZERO),
                        ..open
                    });
                }
                Ok(RedisDecision {
                    remaining: limiter.remaining(&key),
                    ..open
                })
            }
        }
    }
}

fn micros(value: i64) -> Duration {
    Duration::from_micros(u64::try_from(value).unwrap_or(0))
}

fn client_now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_local_fallback_holds_at_most_its_key_cap_during_an_outage() {
        // Nothing listens on port 1: every check fails and the local fallback decides.
        let client = redis::Client::open("redis://127.0.0.1:1").unwrap();
        let quotas = [Quota::per_hour(1).unwrap()];
        let policy = FailurePolicy::local_with_max_keys(&quotas, 16).unwrap();
        let FailurePolicy::Local(local) = policy.clone() else {
            unreachable!("a local policy")
        };
        let limiter = RedisRateLimiter::new(client, "rl", &quotas)
            .unwrap()
            .with_timeout(Duration::from_millis(20))
            .with_failure_policy(policy);
        for user in 0..200 {
            let decision = limiter.check_key(&format!("user-{user}")).await.unwrap();
            assert!(!decision.from_redis);
            assert_eq!(decision.admitted, user < 16, "user {user}");
        }
        assert_eq!(local.len(), 16, "the outage held at most the cap");
        assert!(local.stats().cap_sweeps >= 1, "a full fallback sweeps");
        assert_eq!(limiter.stats().redis_errors, 200);
    }

    #[test]
    fn the_default_local_fallback_is_capped() {
        let policy = FailurePolicy::local(&[Quota::per_hour(1).unwrap()]).unwrap();
        let FailurePolicy::Local(local) = policy else {
            unreachable!("a local policy")
        };
        for user in 0..FailurePolicy::DEFAULT_LOCAL_MAX_KEYS + 50 {
            let _ = local.check_key(&user.to_string());
        }
        assert_eq!(local.len(), FailurePolicy::DEFAULT_LOCAL_MAX_KEYS);
    }
}
