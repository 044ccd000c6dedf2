//! Budgets kept in Redis: one Lua script reserves on every level of a path all or none,
//! another settles; both atomic, so every process shares exact balances.
//!
//! Layout, for a path whose widest id is `org` (all keys share its hash tag, so a Redis
//! Cluster keeps them in one slot and each script runs on one node):
//! - `prefix:{org}:b:<level>:<id>`: a hash per id per level, `p<i>`/`u<i>` the period and
//!   use of quota `i`, `t0`/`t1`/`t2` the totals of requests, tokens and spend; it expires
//!   after its longest current period plus the reservation TTL;
//! - `prefix:{org}:r:<reservation>`: the reservation record (when, and the estimate, one
//!   string), taken with `GETDEL` (Redis 6.2) by the settlement that applies it. Settling
//!   twice — a retry after a timeout, a cancelled settlement followed by the drop rule —
//!   finds no record and changes nothing, so a settlement is applied exactly once. A record left by a process that
//!   died expires after the reservation TTL, its estimate staying charged.

use super::error::BudgetError;
use super::money::{Charges, ModelPrice, TokenUsage};
use super::plan::{BudgetPlan, BudgetQuota, DropRule, LevelQuotas, Overrides};
use super::reservation::Settlement;
use crate::TimeSource;
use crate::error::limited;
use backstop_core::QuotaState;
use backstop_core::config::{ConfigError, ensure, ensure_duration};
use backstop_redis::{RedisConnection, RedisFault};
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;

// Shared by both scripts: periods by number (`len` microseconds, 0 for the calendar month
// in UTC, Howard Hinnant's civil-date algorithms), as `BudgetPeriod` computes them.
const PERIODS: &str = r"
local DAY = 86400000000
local function civil(days)
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y, m
end
local function days_from_civil(y, m)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = math.floor((153 * mp + 2) / 5)
  return era * 146097 + yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy - 719468
end
local function pid(len, t)
  if len == 0 then
    local y, m = civil(math.floor(t / DAY))
    return (y - 1970) * 12 + m - 1
  end
  return math.floor(t / len)
end
local function pend(len, id)
  if len == 0 then
    local n = id + 1
    return days_from_civil(1970 + math.floor(n / 12), n % 12 + 1) * DAY
  end
  return (id + 1) * len
end
local function clock(arg)
  if arg == '' then
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000000 + tonumber(t[2]), t[1], t[2]
  end
  return tonumber(arg), '0', arg
end
";

// Both scripts read each entry with one HMGET (every quota's period and use, then the
// totals) and write it with one HSET. Its expiry, the end of the path's longest current
// period plus the TTL margin, moves only when a quota of the path starts a new period (or
// an entry is new), so most calls set none. Numbers go to `redis.call` as they are: Redis
// writes them with `%.17g`, exact for the integers here (below 2^53), while
// `string.format` cost as much as a command; field names come from constant tables (at
// most `MAX_QUOTAS_PER_LEVEL` quotas), since `'u' .. q` formats the number `q` with
// `sprintf`.
const ENTRIES: &str = r"
local PF = {'p0', 'p1', 'p2', 'p3', 'p4', 'p5', 'p6', 'p7', 'p8', 'p9', 'p10', 'p11', 'p12', 'p13', 'p14', 'p15'}
local UF = {'u0', 'u1', 'u2', 'u3', 'u4', 'u5', 'u6', 'u7', 'u8', 'u9', 'u10', 'u11', 'u12', 'u13', 'u14', 'u15'}
local TF = {'t0', 't1', 't2'}
local function read(key, n)
  local fields = {}
  for q = 1, n do
    fields[2 * q - 1] = PF[q]
    fields[2 * q] = UF[q]
  end
  fields[2 * n + 1] = 't0'
  fields[2 * n + 2] = 't1'
  fields[2 * n + 3] = 't2'
  return redis.call('HMGET', key, unpack(fields))
end
";

// KEYS: the record, then one entry per level. ARGV: now, record TTL (ms), the estimate
// (requests, tokens, spend), then per level its quota count and per quota meter (0-2),
// limit and period length. Reply: admitted (1/0), now, refusing level, quota and index,
// retry (µs), then per quota its use after the decision and its reset (µs). The record is
// one string, `seconds micros c0 c1 c2` (the time as `TIME` gives it, or `0` and the
// client's microseconds, then the estimate as passed): one SET to write with its TTL, one
// GETDEL to settle, and no number formatted.
const RESERVE: &str = r"
local now, sec, usec = clock(ARGV[1])
local ttl = tonumber(ARGV[2])
local cost = {tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])}
local pos = 6
local levels = {}
local refused = nil
local last = 0
local index = 0
local moved = false
for l = 1, #KEYS - 1 do
  local n = tonumber(ARGV[pos])
  pos = pos + 1
  local stored = read(KEYS[l + 1], n)
  if stored[2 * n + 1] == false then moved = true end
  local level = {n = n, stored = stored, quotas = {}}
  for q = 0, n - 1 do
    local c = cost[tonumber(ARGV[pos]) + 1]
    local limit = tonumber(ARGV[pos + 1])
    local len = tonumber(ARGV[pos + 2])
    pos = pos + 3
    local id = pid(len, now)
    local used = 0
    local same = tonumber(stored[2 * q + 1]) == id
    if same then used = tonumber(stored[2 * q + 2]) or 0 else moved = true end
    local ends = pend(len, id)
    if ends > last then last = ends end
    if refused == nil and used + c > limit then
      refused = {l - 1, q, index, ends - now}
    end
    level.quotas[q + 1] = {id, c, used, ends - now, same}
    index = index + 1
  end
  levels[l] = level
end
local reply
if refused then
  reply = {0, now, refused[1], refused[2], refused[3], refused[4]}
else
  reply = {1, now, 0, 0, 0, 0}
end
local at = math.ceil(last / 1000) + ttl
for l, level in ipairs(levels) do
  local args = {}
  for q, s in ipairs(level.quotas) do
    local used = s[3]
    if not refused then used = used + s[2] end
    reply[#reply + 1] = used
    reply[#reply + 1] = s[4]
    if not s[5] then
      args[#args + 1] = PF[q]
      args[#args + 1] = s[1]
    end
    args[#args + 1] = UF[q]
    args[#args + 1] = used
  end
  if not refused then
    local stored = level.stored
    local n = level.n
    for m = 1, 3 do
      args[#args + 1] = TF[m]
      args[#args + 1] = (tonumber(stored[2 * n + m]) or 0) + cost[m]
    end
    redis.call('HSET', KEYS[l + 1], unpack(args))
    if moved then redis.call('PEXPIREAT', KEYS[l + 1], at) end
  end
end
if not refused then
  redis.call('SET', KEYS[1], sec .. ' ' .. usec .. ' ' .. ARGV[3] .. ' ' .. ARGV[4] .. ' ' .. ARGV[5], 'PX', ttl)
end
return reply
";

// KEYS: the record, then one entry per level. ARGV: now, entry TTL margin (ms), the
// actual usage, then the quotas as for RESERVE. Reply: applied (1, or 0 when the record
// is gone: settled already or expired), now.
const SETTLE: &str = r"
local now = clock(ARGV[1])
local ttl = tonumber(ARGV[2])
local rec = redis.call('GETDEL', KEYS[1])
if not rec then return {0, now} end
local sec, usec, h0, h1, h2 = string.match(rec, '^(%d+) (%d+) (%d+) (%d+) (%d+)$')
local at = tonumber(sec) * 1000000 + tonumber(usec)
local held = {tonumber(h0), tonumber(h1), tonumber(h2)}
local used = {tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])}
local pos = 6
local last = 0
local moved = false
for l = 1, #KEYS - 1 do
  local key = KEYS[l + 1]
  local n = tonumber(ARGV[pos])
  pos = pos + 1
  local stored = read(key, n)
  local args = {}
  for q = 0, n - 1 do
    local m = tonumber(ARGV[pos]) + 1
    local len = tonumber(ARGV[pos + 2])
    pos = pos + 3
    local before = pid(len, at)
    local current = pid(len, now)
    local ends = pend(len, current)
    if ends > last then last = ends end
    local period = tonumber(stored[2 * q + 1])
    local value = nil
    if before == current and period == before then
      value = (tonumber(stored[2 * q + 2]) or 0) - held[m] + used[m]
      if value < 0 then value = 0 end
    elseif used[m] > held[m] then
      value = used[m] - held[m]
      if period == current then value = value + (tonumber(stored[2 * q + 2]) or 0) end
    end
    if value then
      if period ~= current then
        args[#args + 1] = PF[q + 1]
        args[#args + 1] = current
        moved = true
      end
      args[#args + 1] = UF[q + 1]
      args[#args + 1] = value
    end
  end
  for m = 1, 3 do
    args[#args + 1] = TF[m]
    args[#args + 1] = (tonumber(stored[2 * n + m]) or 0) - held[m] + used[m]
  end
  redis.call('HSET', key, unpack(args))
  if stored[2 * n + 1] == false then moved = true end
end
if moved then
  local at = math.ceil(last / 1000) + ttl
  for l = 2, #KEYS do redis.call('PEXPIREAT', KEYS[l], at) end
end
return {1, now}
";

/// What a reservation does when Redis fails or exceeds the timeout.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReserveFailure {
    /// Refuse with [`BudgetError::Unavailable`]: no call runs unbudgeted. The default.
    #[default]
    FailClosed,
    /// Admit with an unbacked reservation (its settlement charges nothing): availability
    /// over budget accuracy while Redis is down; counted in `unbacked`.
    FailOpen,
}

/// How a settlement that cannot reach Redis is retried before it is given up and logged.
///
/// Retrying is safe: the settle script applies a reservation once, whichever attempt
/// reaches Redis first. A settlement given up (Redis down longer than the retries) is
/// logged at `error` and counted in [`RedisBudgetStats::settlements_lost`]; what is lost is
/// the difference between the estimate and the actual usage: the estimate stays charged
/// for the rest of its period (the refund is lost, or an overrun goes uncharged), and the
/// reservation record expires after the reservation TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettleRetry {
    /// Attempts in all (at least 1, at most [`SettleRetry::MAX_ATTEMPTS`]).
    pub attempts: u32,
    /// The wait before the second attempt, doubling after each failure.
    pub backoff: Duration,
}

impl SettleRetry {
    /// The most attempts accepted.
    pub const MAX_ATTEMPTS: u32 = 100;
}

impl Default for SettleRetry {
    /// Five attempts from 50 ms: about 1.5 s of outage covered.
    fn default() -> Self {
        Self {
            attempts: 5,
            backoff: Duration::from_millis(50),
        }
    }
}

/// Counters of a [`RedisBudgets`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RedisBudgetStats {
    /// Reservations made (by Redis, or unbacked under fail-open).
    pub reserved: u64,
    /// Reservations refused (no room, too large, unknown model, Redis down and failing
    /// closed).
    pub refused: u64,
    /// Settlements applied by Redis (by the caller or by the drop rule).
    pub settled: u64,
    /// Reservations dropped without settling, settled by the drop rule.
    pub dropped: u64,
    /// Settlements whose record was already gone: settled before or expired.
    pub already_settled: u64,
    /// Settle attempts that failed and were retried.
    pub settle_retries: u64,
    /// Settlements given up after every retry (logged; the estimate stays charged).
    pub settlements_lost: u64,
    /// Reservations admitted unbacked because Redis failed and the policy fails open.
    pub unbacked: u64,
    /// Redis failures and timeouts seen by reservations and settlements.
    pub redis_errors: u64,
}

#[derive(Debug, Default)]
struct Counters {
    reserved: AtomicU64,
    refused: AtomicU64,
    settled: AtomicU64,
    dropped: AtomicU64,
    already_settled: AtomicU64,
    settle_retries: AtomicU64,
    settlements_lost: AtomicU64,
    unbacked: AtomicU64,
    redis_errors: AtomicU64,
}

struct Shared {
    redis: RedisConnection,
    reserve: redis::Script,
    settle: redis::Script,
    prefix: Arc<str>,
    plan: BudgetPlan,
    overrides: Box<[Overrides]>,
    time: TimeSource,
    timeout: Duration,
    reservation_ttl: Duration,
    on_failure: ReserveFailure,
    retry: SettleRetry,
    counters: Counters,
    // Drop-rule settlements running in the background, for `flush`.
    pending: AtomicU64,
    idle: Notify,
    next_id: AtomicU64,
    nonce: u64,
}

/// [`Budgets`](crate::Budgets) kept in Redis: every process reserves and settles against
/// the same balances, exactly.
///
/// A reservation is one `EVALSHA` round trip (a Lua script checks every quota of every
/// level and charges all or none, recording the reservation), a settlement another (it
/// applies the actual usage to the balances the reservation charged and deletes the
/// record, so it is applied once however often it is retried). Keys of one path share the
/// hash tag of its widest id, so the scripts run on one node of a Redis Cluster; ids must
/// keep their parents (a team belongs to one organisation). Clones share the connection.
///
/// Outages: a reservation follows [`ReserveFailure`] (refuse by default); a settlement is
/// retried per [`SettleRetry`] and, if Redis stays down, logged and counted as lost (its
/// estimate stays charged). A dropped reservation settles by the plan's [`DropRule`] from a
/// task on the current Tokio runtime; [`flush`](Self::flush) waits for those tasks.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use backstop_limit::{BudgetPeriod, BudgetPlan, BudgetQuota, RedisBudgets, TokenUsage};
///
/// let plan = BudgetPlan::builder()
///     .level("key", [BudgetQuota::tokens(100_000, BudgetPeriod::minute())?])
///     .level("team", [BudgetQuota::tokens(10_000_000, BudgetPeriod::Day)?])
///     .build()?;
/// let redis = redis::Client::open("redis://127.0.0.1:6379")?;
/// let budgets = RedisBudgets::new(redis, "budget", plan)?;
/// let held = budgets.reserve(&["key-1", "team-a"], "any-model", TokenUsage::new(500, 2_000)).await?;
/// let settled = held.settle_usage(TokenUsage::new(500, 120)).await?;
/// assert_eq!(settled.charged.tokens, 620);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisBudgets {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RedisBudgets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBudgets")
            .field("prefix", &self.shared.prefix)
            .field("plan", &self.shared.plan)
            .field("timeout", &self.shared.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisBudgets {
    /// Budgets enforcing `plan` under keys starting with `prefix`, on `redis` (a
    /// [`RedisConnection`], or a `redis::Client` for one server). Reads Redis `TIME`,
    /// times out after 250 ms, fails closed, keeps reservation records for an hour and
    /// retries settlements per [`SettleRetry::default`] until configured otherwise.
    pub fn new(
        redis: impl Into<RedisConnection>,
        prefix: &str,
        plan: BudgetPlan,
    ) -> Result<Self, ConfigError> {
        ensure(
            backstop_redis::key::is_safe_prefix(prefix),
            "prefix",
            "must not contain glob characters or braces",
        )?;
        let overrides = plan.levels.iter().map(Overrides::of).collect();
        Ok(Self {
            shared: Arc::new(Shared {
                redis: redis.into(),
                reserve: redis::Script::new(&format!("{PERIODS}{ENTRIES}{RESERVE}")),
                settle: redis::Script::new(&format!("{PERIODS}{ENTRIES}{SETTLE}")),
                prefix: prefix.into(),
                plan,
                overrides,
                time: TimeSource::Server,
                timeout: Duration::from_millis(250),
                reservation_ttl: Duration::from_secs(3_600),
                on_failure: ReserveFailure::FailClosed,
                retry: SettleRetry::default(),
                counters: Counters::default(),
                pending: AtomicU64::new(0),
                idle: Notify::new(),
                next_id: AtomicU64::new(0),
                nonce: fastrand::u64(..),
            }),
        })
    }

    fn configure(mut self, f: impl FnOnce(&mut Shared)) -> Result<Self, ConfigError> {
        let Some(shared) = Arc::get_mut(&mut self.shared) else {
            return Err(ConfigError::new(
                "redis_budgets",
                "must be configured before the handle is cloned",
            ));
        };
        f(shared);
        Ok(self)
    }

    /// The bound on one round trip, connecting included (at most
    /// [`MAX_DURATION`](backstop_core::config::MAX_DURATION)).
    pub fn with_timeout(self, timeout: Duration) -> Result<Self, ConfigError> {
        ensure_duration("timeout", timeout)?;
        self.configure(|s| s.timeout = timeout)
    }

    /// How long a reservation record outlives an unsettled reservation (at least a second,
    /// at most [`MAX_DURATION`](backstop_core::config::MAX_DURATION)): a settlement later
    /// than this finds no record and changes nothing.
    pub fn with_reservation_ttl(self, ttl: Duration) -> Result<Self, ConfigError> {
        ensure(
            ttl >= Duration::from_secs(1),
            "reservation_ttl",
            "must be at least 1s",
        )?;
        ensure_duration("reservation_ttl", ttl)?;
        self.configure(|s| s.reservation_ttl = ttl)
    }

    /// What a reservation does when Redis fails.
    pub fn with_reserve_failure(self, policy: ReserveFailure) -> Result<Self, ConfigError> {
        self.configure(|s| s.on_failure = policy)
    }

    /// How settlements are retried when Redis fails.
    pub fn with_settle_retry(self, retry: SettleRetry) -> Result<Self, ConfigError> {
        ensure(retry.attempts >= 1, "attempts", "must be at least 1")?;
        backstop_core::config::ensure_at_most(
            "attempts",
            u64::from(retry.attempts),
            u64::from(SettleRetry::MAX_ATTEMPTS),
        )?;
        ensure_duration("backoff", retry.backoff)?;
        self.configure(|s| s.retry = retry)
    }

    /// Where the scripts read the time (Redis `TIME` by default).
    pub fn with_time_source(self, time: TimeSource) -> Result<Self, ConfigError> {
        self.configure(|s| s.time = time)
    }

    /// Gives `id` at `level` its own quotas (every process must set the same overrides).
    pub fn set_override(
        &self,
        level: &str,
        id: &str,
        quotas: Vec<BudgetQuota>,
    ) -> Result<(), ConfigError> {
        let shared = &self.shared;
        Overrides::set_in(&shared.overrides, &shared.plan, level, id, quotas)
    }

    /// Returns `id` at `level` to the level's quotas (every process must remove it too);
    /// its use in the current periods carries over.
    pub fn remove_override(&self, level: &str, id: &str) -> Result<(), ConfigError> {
        let shared = &self.shared;
        Overrides::remove_in(&shared.overrides, &shared.plan, level, id)
    }

    /// The plan enforced.
    pub fn plan(&self) -> &BudgetPlan {
        &self.shared.plan
    }

    fn quotas(&self, level: usize, id: &str) -> LevelQuotas {
        self.shared.overrides[level]
            .get(id)
            .unwrap_or_else(|| self.shared.plan.levels[level].quotas.clone())
    }

    /// The Redis key of `id` at `level` on a path whose widest id is `top`.
    pub fn redis_key(&self, top: &str, level: usize, id: &str) -> String {
        let suffix = format!("b:{level}:{}", backstop_redis::key::hash_tag(id));
        backstop_redis::key::tagged(&self.shared.prefix, top, &suffix)
    }

    /// Reserves the estimate of an LLM call to `model` on every quota of every level of
    /// `path`, all or none, in one round trip.
    pub async fn reserve(
        &self,
        path: &[&str],
        model: &str,
        estimate: TokenUsage,
    ) -> Result<RedisBudgetReservation, BudgetError> {
        let price = match self.shared.plan.price(model) {
            Ok(price) => price,
            Err(error) => return Err(self.refused(error)),
        };
        let charges = price.map_or(Charges::new(1, estimate.total(), 0), |p| {
            p.charges(estimate)
        });
        self.reserve_priced(path, charges, price).await
    }

    /// Reserves `estimate` on every quota of every level of `path`, all or none.
    pub async fn reserve_charges(
        &self,
        path: &[&str],
        estimate: Charges,
    ) -> Result<RedisBudgetReservation, BudgetError> {
        self.reserve_priced(path, estimate, None).await
    }

    fn refused(&self, error: BudgetError) -> BudgetError {
        self.shared.counters.refused.fetch_add(1, Ordering::Relaxed);
        error
    }

    async fn reserve_priced(
        &self,
        path: &[&str],
        estimate: Charges,
        price: Option<ModelPrice>,
    ) -> Result<RedisBudgetReservation, BudgetError> {
        let shared = &*self.shared;
        let depth = shared.plan.depth();
        if path.len() != depth {
            return Err(self.refused(BudgetError::PathMismatch {
                levels: depth,
                given: path.len(),
            }));
        }
        let quotas: Vec<LevelQuotas> = path
            .iter()
            .enumerate()
            .map(|(level, id)| self.quotas(level, id))
            .collect();
        let mut index = 0;
        for (level, level_quotas) in quotas.iter().enumerate() {
            for (quota, q) in level_quotas.iter().enumerate() {
                let cost = estimate.get(q.meter());
                if cost > q.limit() {
                    return Err(self.refused(BudgetError::TooLarge {
                        level,
                        quota,
                        index,
                        cost,
                        limit: q.limit(),
                    }));
                }
                index += 1;
            }
        }
        let top = path[depth - 1];
        let entries: Vec<String> = path
            .iter()
            .enumerate()
            .map(|(level, id)| self.redis_key(top, level, id))
            .collect();
        let serial = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let record = backstop_redis::key::tagged(
            &shared.prefix,
            top,
            &format!("r:{:016x}{serial:x}", shared.nonce),
        );
        let invocation = self.invocation(&shared.reserve, &record, &entries, &quotas, &estimate);
        // The guard exists before the round trip: if this future is cancelled after the
        // script ran, dropping it settles the record by the drop rule (and finds nothing
        // to settle if the script never ran).
        let mut held = RedisBudgetReservation {
            budgets: self.clone(),
            record: Some(record),
            entries,
            quotas,
            reserved: estimate,
            price,
            states: Vec::new(),
            open: true,
        };
        let outcome = self
            .run(|mut conn| async move { invocation.invoke_async::<Vec<i64>>(&mut conn).await })
            .await;
        let reply = match outcome {
            Ok(reply) => reply,
            Err(fault) => {
                // The script may have run with its reply lost (a timeout, a connection
                // dropped mid-reply): take it back, a no-op if it never ran.
                held.open = false;
                if let Some(record) = held.record.take() {
                    self.spawn_settlement(
                        record,
                        held.entries.clone(),
                        held.quotas.clone(),
                        Charges::ZERO,
                    );
                }
                return self.reserve_failed(fault, path, held);
            }
        };
        if reply.first() != Some(&1) {
            held.open = false;
            let at = |i: usize| reply.get(i).copied().unwrap_or(0).max(0) as u64;
            let (level, quota, index) = (at(2) as usize, at(3) as usize, at(4) as usize);
            return Err(self.refused(BudgetError::Refused {
                rejected: limited(index, Duration::from_micros(at(5))),
                level,
                quota,
            }));
        }
        held.states = states(&held.quotas, &reply);
        shared.counters.reserved.fetch_add(1, Ordering::Relaxed);
        Ok(held)
    }

    fn reserve_failed(
        &self,
        fault: RedisFault,
        path: &[&str],
        mut held: RedisBudgetReservation,
    ) -> Result<RedisBudgetReservation, BudgetError> {
        let counters = &self.shared.counters;
        counters.redis_errors.fetch_add(1, Ordering::Relaxed);
        if !fault.is_outage() || self.shared.on_failure == ReserveFailure::FailClosed {
            tracing::warn!(prefix = %self.shared.prefix, %fault, "budget reservation failed; refusing");
            return Err(self.refused(BudgetError::Unavailable(fault)));
        }
        tracing::warn!(prefix = %self.shared.prefix, %fault, levels = path.len(), "budget reservation failed; admitting unbacked");
        counters.reserved.fetch_add(1, Ordering::Relaxed);
        counters.unbacked.fetch_add(1, Ordering::Relaxed);
        held.record = None;
        held.open = true;
        Ok(held)
    }

    async fn run<T, F, Fut>(&self, f: F) -> Result<T, RedisFault>
    where
        F: FnOnce(backstop_redis::RedisConn) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let timeout = backstop_core::time::clamp(self.shared.timeout);
        match tokio::time::timeout(timeout, self.shared.redis.run(f)).await {
            Ok(result) => result,
            Err(_) => Err(RedisFault::TimedOut(timeout)),
        }
    }

    fn now_arg(&self) -> String {
        match self.shared.time {
            TimeSource::Server => String::new(),
            TimeSource::Client => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
                .to_string(),
        }
    }

    /// `script` invoked on `record` and the path's `entries` with the time, the reservation
    /// TTL, `charges` and `quotas`: the arguments the reserve and the settle script share.
    fn invocation<'s>(
        &self,
        script: &'s redis::Script,
        record: &str,
        entries: &[String],
        quotas: &[LevelQuotas],
        charges: &Charges,
    ) -> redis::ScriptInvocation<'s> {
        let mut invocation = script.prepare_invoke();
        invocation.key(record);
        for key in entries {
            invocation.key(key);
        }
        invocation.arg(self.now_arg());
        invocation.arg(millis(self.shared.reservation_ttl));
        push_charges(&mut invocation, charges);
        push_quotas(&mut invocation, quotas);
        invocation
    }

    /// Settles with retries per the policy: `Ok(true)` applied, `Ok(false)` the record was
    /// already gone (settled before); `Err` once every attempt failed (logged).
    async fn settle_retrying(
        &self,
        record: &str,
        entries: &[String],
        quotas: &[LevelQuotas],
        actual: &Charges,
    ) -> Result<bool, RedisFault> {
        let shared = &*self.shared;
        let mut backoff = shared.retry.backoff;
        let mut attempt = 1;
        loop {
            let invocation = self.invocation(&shared.settle, record, entries, quotas, actual);
            let outcome = self
                .run(|mut conn| async move { invocation.invoke_async::<Vec<i64>>(&mut conn).await })
                .await;
            match outcome {
                Ok(reply) => {
                    let applied = reply.first() == Some(&1);
                    let counter = if applied {
                        &shared.counters.settled
                    } else {
                        &shared.counters.already_settled
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    return Ok(applied);
                }
                Err(fault) => {
                    shared.counters.redis_errors.fetch_add(1, Ordering::Relaxed);
                    if !fault.is_outage() || attempt >= shared.retry.attempts {
                        shared
                            .counters
                            .settlements_lost
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::error!(
                            prefix = %shared.prefix, %fault, record, attempts = attempt,
                            requests = actual.requests, tokens = actual.tokens, spend = actual.spend,
                            "budget settlement lost; the reservation's estimate stays charged"
                        );
                        return Err(fault);
                    }
                    shared
                        .counters
                        .settle_retries
                        .fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(backstop_core::time::clamp(backoff)).await;
                    backoff = backoff.saturating_mul(2);
                    attempt += 1;
                }
            }
        }
    }

    /// Settles `record` with `actual` from a task on the current runtime (a drop-rule
    /// settlement, or taking back a reservation whose reply was lost).
    fn spawn_settlement(
        &self,
        record: String,
        entries: Vec<String>,
        quotas: Vec<LevelQuotas>,
        actual: Charges,
    ) {
        let shared = &self.shared;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            shared
                .counters
                .settlements_lost
                .fetch_add(1, Ordering::Relaxed);
            tracing::error!(prefix = %shared.prefix, record, "budget settlement outside a Tokio runtime; not applied, the estimate stays charged");
            return;
        };
        let budgets = self.clone();
        shared.pending.fetch_add(1, Ordering::AcqRel);
        runtime.spawn(async move {
            let _ = budgets
                .settle_retrying(&record, &entries, &quotas, &actual)
                .await;
            if budgets.shared.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
                budgets.shared.idle.notify_waiters();
            }
        });
    }

    /// Waits until every drop-rule settlement started so far has finished (applied, found
    /// settled, or given up).
    pub async fn flush(&self) {
        loop {
            let idle = self.shared.idle.notified();
            if self.shared.pending.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> RedisBudgetStats {
        let c = &self.shared.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RedisBudgetStats {
            reserved: load(&c.reserved),
            refused: load(&c.refused),
            settled: load(&c.settled),
            dropped: load(&c.dropped),
            already_settled: load(&c.already_settled),
            settle_retries: load(&c.settle_retries),
            settlements_lost: load(&c.settlements_lost),
            unbacked: load(&c.unbacked),
            redis_errors: load(&c.redis_errors),
        }
    }

    /// What `id` at level `level` has used in each quota's current period and in total, on
    /// a path whose widest id is `top` (one round trip); `None` if Redis holds nothing
    /// for it.
    pub async fn spend(
        &self,
        top: &str,
        level: &str,
        id: &str,
    ) -> Result<Option<super::EntrySpend>, BudgetError> {
        let index =
            self.shared
                .plan
                .level_index(level)
                .ok_or_else(|| BudgetError::PathMismatch {
                    levels: self.shared.plan.depth(),
                    given: 0,
                })?;
        let key = self.redis_key(top, index, id);
        let quotas = self.quotas(index, id);
        let (fields, now): (Vec<Option<u64>>, Vec<u64>) = self
            .run(|mut conn| async move {
                let mut pipe = redis::pipe();
                let cmd = pipe.cmd("HMGET").arg(&key);
                for i in 0..quotas.len() {
                    cmd.arg(format!("p{i}")).arg(format!("u{i}"));
                }
                cmd.arg("t0").arg("t1").arg("t2");
                pipe.cmd("TIME");
                pipe.query_async(&mut conn).await
            })
            .await
            .map_err(BudgetError::Unavailable)?;
        if fields.iter().all(Option::is_none) {
            return Ok(None);
        }
        let now = match self.shared.time {
            TimeSource::Server => {
                now.first().copied().unwrap_or(0) * 1_000_000 + now.get(1).copied().unwrap_or(0)
            }
            TimeSource::Client => self.now_arg().parse().unwrap_or(0),
        };
        let quotas = self.quotas(index, id);
        let n = quotas.len();
        let used = quotas.iter().enumerate().map(|(i, q)| {
            let current = fields[2 * i] == Some(q.period().id(now));
            (
                q,
                if current {
                    fields[2 * i + 1].unwrap_or(0)
                } else {
                    0
                },
            )
        });
        let total = |m: usize| fields.get(2 * n + m).copied().flatten().unwrap_or(0);
        Ok(Some(super::EntrySpend::new(
            id,
            used,
            Charges::new(total(0), total(1), total(2)),
        )))
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Amounts above [`BudgetQuota::MAX_LIMIT`] are charged as that much: the scripts' doubles
/// stay exact.
fn push_charges(invocation: &mut redis::ScriptInvocation<'_>, charges: &Charges) {
    for amount in [charges.requests, charges.tokens, charges.spend] {
        invocation.arg(amount.min(BudgetQuota::MAX_LIMIT));
    }
}

fn push_quotas(invocation: &mut redis::ScriptInvocation<'_>, quotas: &[LevelQuotas]) {
    for level in quotas {
        invocation.arg(level.len());
        for q in level.iter() {
            invocation.arg(q.meter().index());
            invocation.arg(q.limit());
            invocation.arg(q.period().micros());
        }
    }
}

/// Quota states from a script's reply: use and reset per quota, after the decision.
fn states(quotas: &[LevelQuotas], reply: &[i64]) -> Vec<QuotaState> {
    let now = reply.get(1).copied().unwrap_or(0).max(0) as u64;
    quotas
        .iter()
        .flat_map(|level| level.iter())
        .enumerate()
        .map(|(i, q)| {
            let used = reply.get(6 + 2 * i).copied().unwrap_or(0).max(0) as u64;
            let reset = reply.get(7 + 2 * i).copied().unwrap_or(0).max(0) as u64;
            let (start, end) = q.period().bounds_at(now);
            QuotaState::new(
                q.label().clone(),
                q.limit(),
                q.limit().saturating_sub(used),
                Duration::from_micros(reset),
                Duration::from_micros(end.saturating_sub(start)),
            )
        })
        .collect()
}

/// An estimate held in Redis until settled; see [`RedisBudgets`].
///
/// Settle it with [`settle_usage`](Self::settle_usage) or [`settle`](Self::settle). Dropped
/// without settling (including a settlement future cancelled mid-flight) it settles by the
/// plan's [`DropRule`] from a task on the current Tokio runtime; the settle script applies
/// whichever settlement reaches Redis first and ignores the other, so the rule or the
/// settlement is applied exactly once. With no runtime to run on, the drop is logged and
/// counted as a lost settlement (the estimate stays charged).
#[derive(Debug)]
#[must_use = "a reservation holds budget until it is settled; dropping it applies the drop rule"]
pub struct RedisBudgetReservation {
    budgets: RedisBudgets,
    // `None`: admitted unbacked while Redis was down (fail-open).
    record: Option<String>,
    entries: Vec<String>,
    quotas: Vec<LevelQuotas>,
    reserved: Charges,
    price: Option<ModelPrice>,
    states: Vec<QuotaState>,
    open: bool,
}

impl RedisBudgetReservation {
    /// What is held.
    pub fn reserved(&self) -> Charges {
        self.reserved
    }

    /// Every quota of the path as the reservation left it (remaining and reset per quota,
    /// levels in order); empty for an unbacked reservation.
    pub fn quota_states(&self) -> &[QuotaState] {
        &self.states
    }

    /// Whether Redis holds the reservation (`false`: admitted unbacked under fail-open).
    pub fn is_backed(&self) -> bool {
        self.record.is_some()
    }

    /// Settles with the tokens actually used, priced as at reservation.
    pub async fn settle_usage(self, usage: TokenUsage) -> Result<Settlement, BudgetError> {
        let actual = match self.price {
            Some(price) => price.charges(usage),
            None => Charges::new(1, usage.total(), 0),
        };
        self.settle(actual).await
    }

    /// Settles with `actual` in one round trip (retried per [`SettleRetry`]). `Err` when
    /// Redis stayed down through every retry: the settlement is lost and logged, the
    /// estimate stays charged.
    ///
    /// Cancelled before it completes, the reservation's drop rule is applied instead,
    /// unless this settlement already reached Redis.
    pub async fn settle(mut self, actual: Charges) -> Result<Settlement, BudgetError> {
        let settlement = Settlement::of(&self.reserved, &actual);
        let Some(record) = self.record.clone() else {
            self.open = false;
            return Ok(settlement);
        };
        let outcome = self
            .budgets
            .settle_retrying(&record, &self.entries, &self.quotas, &actual)
            .await;
        // Reached only if not cancelled: from here on `Drop` has nothing to do.
        self.open = false;
        outcome
            .map(|_| settlement)
            .map_err(BudgetError::Unavailable)
    }
}

impl Drop for RedisBudgetReservation {
    fn drop(&mut self) {
        if !std::mem::replace(&mut self.open, false) {
            return;
        }
        let budgets = &self.budgets;
        budgets
            .shared
            .counters
            .dropped
            .fetch_add(1, Ordering::Relaxed);
        let Some(record) = self.record.take() else {
            return;
        };
        let actual = match budgets.shared.plan.on_drop {
            DropRule::RefundAll => Charges::ZERO,
            DropRule::ChargeEstimate => self.reserved,
        };
        let entries = std::mem::take(&mut self.entries);
        let quotas = std::mem::take(&mut self.quotas);
        self.budgets
            .spawn_settlement(record, entries, quotas, actual);
    }
}
