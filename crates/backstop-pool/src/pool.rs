//! The pool itself: checkout with wait timing and leak detection, stats, resizing.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::panic::Location;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use backstop_core::time::clamp;
use backstop_core::{Clock, DefaultClock, LoadSignal, LoadSnapshot, Validate};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::{PoolConfig, QueueMode};
use crate::conn::{Conn, PoolManager, Rules, Verdict, nanos};
use crate::error::{PoolBuildError, PoolError};
use crate::housekeeping;
use crate::slots::{Grant, Slots, Status, Take};
use crate::stats::{CloseReason, Counters, PoolStats};

/// A connection pool with deadpool's manager model and min idle, lifetimes, health-check
/// bypass, keepalive, leak detection, metrics and optional adaptive sizing.
///
/// Clones share one pool. The background housekeeping task holds only a weak
/// reference, so it stops once the last clone (and every checked-out connection) is gone.
///
/// ```
/// use backstop_pool::{Manager, Metrics, Pool, PoolConfig, RecycleResult};
///
/// struct Numbers;
/// impl Manager for Numbers {
///     type Type = u32;
///     type Error = std::io::Error;
///     async fn create(&self) -> Result<u32, std::io::Error> { Ok(7) }
///     async fn recycle(&self, _: &mut u32, _: &Metrics) -> RecycleResult<std::io::Error> { Ok(()) }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let config = PoolConfig::builder().max_size(4).min_idle(1).build().unwrap();
/// let pool = Pool::new(Numbers, config).unwrap();
/// let conn = pool.get().await.unwrap();
/// assert_eq!(*conn, 7);
/// drop(conn);
/// assert_eq!(pool.stats().checkouts, 1);
/// # }
/// ```
pub struct Pool<M: PoolManager> {
    pub(crate) inner: Arc<Inner<M>>,
}

pub(crate) struct Inner<M: PoolManager> {
    manager: M,
    pub(crate) slots: Slots<Conn<M::Type>>,
    pub(crate) clock: PoolClock,
    pub(crate) counters: Arc<Counters>,
    pub(crate) config: PoolConfig,
    pub(crate) rules: Rules,
}

impl<M: PoolManager> Clone for Pool<M> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<M: PoolManager> fmt::Debug for Pool<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("status", &self.inner.slots.status())
            .finish_non_exhaustive()
    }
}

/// Who checked a connection out, named in leak warnings.
#[derive(Debug, Clone)]
enum Holder {
    Site(&'static Location<'static>),
    Label(&'static str),
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Site(location) => write!(f, "{location}"),
            Self::Label(label) => f.write_str(label),
        }
    }
}

impl<M> Pool<M>
where
    M: PoolManager,
{
    /// Builds a pool that keeps time with [`DefaultClock`]. Needs a running Tokio
    /// runtime when the config asks for background work (min idle, idle timeout, max
    /// lifetime, keepalive or adaptive sizing).
    pub fn new(manager: M, config: PoolConfig) -> Result<Self, PoolBuildError> {
        Self::build(manager, config, PoolClock::Default(DefaultClock::default()))
    }

    /// Builds a pool that stamps connections with `clock`: pass
    /// [`TokioClock`](backstop_core::TokioClock) in tests that pause Tokio time, so idle
    /// timeouts, lifetimes and the health-check bypass follow the paused clock.
    ///
    /// ```
    /// use backstop_core::TokioClock;
    /// use backstop_pool::{Manager, Metrics, Pool, PoolConfig, RecycleResult};
    /// use std::time::Duration;
    ///
    /// struct Numbers;
    /// impl Manager for Numbers {
    ///     type Type = u32;
    ///     type Error = std::io::Error;
    ///     async fn create(&self) -> Result<u32, std::io::Error> { Ok(7) }
    ///     async fn recycle(&self, _: &mut u32, _: &Metrics) -> RecycleResult<std::io::Error> { Ok(()) }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let config = PoolConfig::builder()
    ///     .idle_timeout(Some(Duration::from_secs(60)))
    ///     .build()
    ///     .unwrap();
    /// let pool = Pool::with_clock(Numbers, config, TokioClock).unwrap();
    /// drop(pool.get().await.unwrap());
    /// tokio::time::sleep(Duration::from_secs(120)).await;
    /// assert_eq!(pool.stats().closed.idle, 1, "reaped after a paused-time minute");
    /// # }
    /// ```
    pub fn with_clock(
        manager: M,
        config: PoolConfig,
        clock: impl Clock,
    ) -> Result<Self, PoolBuildError> {
        Self::build(manager, config, PoolClock::Given(Arc::new(clock)))
    }

    fn build(manager: M, config: PoolConfig, clock: PoolClock) -> Result<Self, PoolBuildError> {
        config.validate()?;
        let runtime_needed = config.needs_housekeeping();
        if runtime_needed && tokio::runtime::Handle::try_current().is_err() {
            return Err(PoolBuildError::NoRuntime);
        }
        let rules = Rules {
            idle_timeout: config.idle_timeout.map_or(u64::MAX, nanos),
            max_lifetime: config.max_lifetime,
            lifetime_jitter: config.lifetime_jitter,
            bypass: nanos(config.health_check_bypass),
            recycle_timeout: config.recycle_timeout,
        };
        let inner = Arc::new(Inner {
            manager,
            slots: Slots::new(config.max_size, config.queue_mode == QueueMode::Lifo),
            clock,
            counters: Arc::new(Counters::default()),
            config,
            rules,
        });
        if runtime_needed {
            tokio::spawn(housekeeping::run(Arc::downgrade(&inner)));
        }
        Ok(Self { inner })
    }

    /// Checks a connection out, naming the caller's source location in leak warnings.
    #[track_caller]
    pub fn get(&self) -> impl Future<Output = Result<Pooled<M>, PoolError<M::Error>>> + Send + '_ {
        self.checkout(Holder::Site(Location::caller()))
    }

    /// Checks a connection out, naming `label` in leak warnings.
    pub fn get_labeled(
        &self,
        label: &'static str,
    ) -> impl Future<Output = Result<Pooled<M>, PoolError<M::Error>>> + Send + '_ {
        self.checkout(Holder::Label(label))
    }

    async fn checkout(&self, holder: Holder) -> Result<Pooled<M>, PoolError<M::Error>> {
        let inner = &*self.inner;
        // Most checkouts find an idle connection used within the bypass window: one
        // lock, one clock read, no timer and no allocation.
        let first = match inner.slots.take() {
            Take::Idle(conn) => {
                let now = inner.clock.now_nanos();
                if inner.rules.verdict(&conn, now) == Verdict::Ready {
                    inner.counters.wait.record_immediate();
                    return Ok(self.lease(conn, now, holder));
                }
                Take::Idle(conn)
            }
            other => other,
        };
        // Boxed so the timer, the waiter and the manager's futures live only on this
        // path and do not bloat the future every fast checkout builds.
        Box::pin(self.checkout_slow(first, holder)).await
    }

    /// A checkout that has to wait, create or health-check. The wait timeout covers
    /// all of it, as HikariCP's connectionTimeout does.
    async fn checkout_slow(
        &self,
        first: Take<Conn<M::Type>>,
        holder: Holder,
    ) -> Result<Pooled<M>, PoolError<M::Error>> {
        let inner = &*self.inner;
        let start = inner.clock.now_nanos();
        let deadline =
            tokio::time::Instant::now() + backstop_core::time::clamp(inner.config.wait_timeout);
        match tokio::time::timeout_at(deadline, self.acquire(first)).await {
            Ok(Ok((conn, now))) => {
                let waited = Duration::from_nanos(now.saturating_sub(start));
                inner.counters.wait.record_wait(waited);
                Ok(self.lease(conn, now, holder))
            }
            Ok(Err(error)) => Err(error),
            Err(_) => {
                inner.counters.timeouts.fetch_add(1, Ordering::Relaxed);
                let waited = inner.clock.now_nanos().saturating_sub(start);
                Err(PoolError::timeout(
                    Duration::from_nanos(waited),
                    inner.counters.create_error_since(start),
                ))
            }
        }
    }

    /// Turns what `take` gave into a usable connection: waits for a grant, closes
    /// connections the rules reject, health-checks those idle past the bypass window,
    /// creates one when holding a reservation. Cancelled at any await, the guards give
    /// the capacity back.
    async fn acquire(
        &self,
        first: Take<Conn<M::Type>>,
    ) -> Result<(Conn<M::Type>, u64), PoolError<M::Error>> {
        let inner = &*self.inner;
        let conn = match first {
            Take::Idle(conn) => Some(conn),
            Take::Slot => None,
            Take::Wait(receiver) => match Waiter::new(inner, receiver).granted().await {
                Some(Grant::Conn(conn)) => Some(conn),
                Some(Grant::Slot) => None,
                None => return Err(PoolError::Closed),
            },
            Take::Closed => return Err(PoolError::Closed),
        };
        let mut hold = Hold::new(inner, conn);
        loop {
            let next = hold.conn.take();
            let Some(conn) = next.or_else(|| inner.slots.swap_reservation_for_idle()) else {
                let conn = inner.create().await?;
                hold.finish();
                return Ok((conn, inner.clock.now_nanos()));
            };
            let now = inner.clock.now_nanos();
            match inner.rules.verdict(&conn, now) {
                Verdict::Ready => {
                    hold.finish();
                    return Ok((conn, now));
                }
                Verdict::Close(reason) => inner.close(conn, reason),
                Verdict::Check => {
                    let passed = inner.health_check(hold.conn.insert(conn), now).await;
                    let Some(conn) = hold.conn.take() else {
                        continue;
                    };
                    if passed {
                        hold.finish();
                        return Ok((conn, now));
                    }
                    inner.close(conn, CloseReason::HealthCheck);
                }
            }
        }
    }

    fn lease(&self, mut conn: Conn<M::Type>, now: u64, holder: Holder) -> Pooled<M> {
        conn.lease(now);
        let leak_watch =
            self.inner.config.leak_detection_threshold.map(|threshold| {
                spawn_leak_watch(threshold, holder, Arc::clone(&self.inner.counters))
            });
        Pooled {
            conn: Some(conn),
            pool: Arc::clone(&self.inner),
            leak_watch,
        }
    }

    /// A snapshot of sizes, counters and latency summaries.
    pub fn stats(&self) -> PoolStats {
        let status = self.inner.slots.status();
        let counters = &self.inner.counters;
        let wait = counters.wait.snapshot();
        let usage = self.inner.slots.usage();
        PoolStats {
            max_size: status.max_size,
            size: status.size,
            in_use: status.size - status.idle,
            idle: status.idle,
            waiters: status.waiters,
            created: counters.created(),
            create_failures: counters.create_failures(),
            closed: counters.closed(),
            checkouts: wait.count(),
            timeouts: counters.timeouts.load(Ordering::Relaxed),
            leaks_suspected: counters.leaks_suspected.load(Ordering::Relaxed),
            panicked: counters.panicked.load(Ordering::Relaxed),
            resizes: counters.resizes.load(Ordering::Relaxed),
            wait: wait.summary(),
            usage: usage.summary(),
            wait_histogram: wait.histogram(),
            usage_histogram: usage,
        }
    }

    /// Whether a checkout now would have to wait: nothing idle and no room to create.
    pub(crate) fn would_wait(&self) -> bool {
        let status = self.inner.status();
        status.idle == 0 && status.size >= status.max_size
    }

    /// Sets `max_size`; idle connections above the new size are closed at once and busy
    /// ones as they return.
    pub fn resize(&self, max_size: usize, reason: &str) {
        self.inner.resize(max_size, reason);
    }

    /// Closes the pool: waiters and future checkouts get [`PoolError::Closed`]; idle
    /// connections are closed now and checked-out ones when they are returned.
    pub fn close(&self) {
        for conn in self.inner.slots.close() {
            self.inner.close(conn, CloseReason::PoolClosed);
        }
    }

    /// The configuration the pool was built with.
    pub fn config(&self) -> &PoolConfig {
        &self.inner.config
    }
}

impl<M> Inner<M>
where
    M: PoolManager,
{
    pub(crate) async fn create(&self) -> Result<Conn<M::Type>, PoolError<M::Error>> {
        // Contained: a panicking manager is this checkout's typed error, and never the
        // death of the housekeeping task that fills `min_idle`.
        let create = backstop_core::contain_future("manager.create", self.manager.create());
        let created = tokio::time::timeout(clamp(self.config.create_timeout), create).await;
        let now = self.clock.now_nanos();
        match created {
            Ok(Err(panicked)) => {
                self.counters.panicked.fetch_add(1, Ordering::Relaxed);
                tracing::error!(%panicked, "pool manager panicked creating a connection");
                self.counters.on_create_failed(panicked.to_string(), now);
                Err(PoolError::Panicked(panicked))
            }
            Ok(Ok(Ok(obj))) => {
                self.counters.on_created();
                tracing::debug!("pool created a connection");
                Ok(Conn::new(obj, now, &self.rules))
            }
            Ok(Ok(Err(error))) => {
                tracing::warn!(%error, "pool failed to create a connection");
                self.counters.on_create_failed(error.to_string(), now);
                Err(PoolError::Create(error))
            }
            Err(_) => {
                let timeout = self.config.create_timeout;
                tracing::warn!(?timeout, "pool timed out creating a connection");
                let message = format!("creating a connection timed out after {timeout:?}");
                self.counters.on_create_failed(message, now);
                Err(PoolError::CreateTimeout)
            }
        }
    }

    /// Runs the manager's `recycle` within the recycle timeout.
    pub(crate) async fn health_check(&self, conn: &mut Conn<M::Type>, now: u64) -> bool {
        let metrics = conn.metrics(now);
        let check = backstop_core::contain_future(
            "manager.recycle",
            self.manager.recycle(&mut conn.obj, &metrics),
        );
        match tokio::time::timeout(clamp(self.rules.recycle_timeout), check).await {
            Ok(Ok(Ok(()))) => true,
            Ok(Err(panicked)) => {
                self.counters.panicked.fetch_add(1, Ordering::Relaxed);
                tracing::error!(%panicked, "pool manager panicked in a health check; connection discarded");
                false
            }
            Ok(Ok(Err(error))) => {
                tracing::debug!(%error, "pool discarded a connection that failed its health check");
                false
            }
            Err(_) => {
                tracing::debug!("pool discarded a connection whose health check timed out");
                false
            }
        }
    }

    /// Returns a connection to the pool (or to the longest waiter); closes it when the
    /// pool shrank or closed meanwhile.
    pub(crate) fn give_back(&self, conn: Conn<M::Type>, held: Option<Duration>) {
        if let Some(surplus) = self.slots.put(conn, held) {
            let reason = if self.slots.is_closed() {
                CloseReason::PoolClosed
            } else {
                CloseReason::Resize
            };
            self.close(surplus, reason);
        }
    }

    /// Closes a connection whose unit the caller frees separately.
    pub(crate) fn close(&self, mut conn: Conn<M::Type>, reason: CloseReason) {
        self.counters.on_closed(reason);
        // `close` runs in `Drop` and in housekeeping: a panicking `detach` is counted and
        // logged, never raised there.
        if let Err(panicked) =
            backstop_core::contain("manager.detach", || self.manager.detach(&mut conn.obj))
        {
            self.counters.panicked.fetch_add(1, Ordering::Relaxed);
            tracing::error!(%panicked, "pool manager panicked detaching a connection");
        }
    }

    pub(crate) fn status(&self) -> Status {
        self.slots.status()
    }

    pub(crate) fn resize(&self, max_size: usize, reason: &str) {
        let from = self.slots.status().max_size;
        if max_size == from || max_size == 0 {
            return;
        }
        let surplus = self.slots.resize(max_size);
        for conn in surplus {
            self.close(conn, CloseReason::Resize);
        }
        self.counters.resizes.fetch_add(1, Ordering::Relaxed);
        tracing::info!(from, to = max_size, reason, "pool resized");
    }
}

/// One unit of the pool's capacity held by work in progress (a checkout, a refill, a
/// keepalive check), with the connection it is deciding about, if any. Dropped before
/// [`finish`](Hold::finish) — the work was cancelled or failed — it closes that
/// connection, whose state is unknown, and frees the unit for the next waiter.
pub(crate) struct Hold<'a, M: PoolManager> {
    inner: &'a Inner<M>,
    pub(crate) conn: Option<Conn<M::Type>>,
    armed: bool,
}

impl<'a, M: PoolManager> Hold<'a, M> {
    pub(crate) fn new(inner: &'a Inner<M>, conn: Option<Conn<M::Type>>) -> Self {
        Self {
            inner,
            conn,
            armed: true,
        }
    }

    /// The unit now belongs to a connection that was handed out or returned.
    pub(crate) fn finish(mut self) {
        self.armed = false;
    }
}

impl<M: PoolManager> Drop for Hold<'_, M> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(conn) = self.conn.take() {
            self.inner.close(conn, CloseReason::HealthCheck);
        }
        self.inner.slots.release();
    }
}

/// A place in the wait queue. Dropped before its grant is read (the checkout timed out
/// or was cancelled), it closes the channel and passes on anything already granted.
struct Waiter<'a, M: PoolManager> {
    inner: &'a Inner<M>,
    receiver: oneshot::Receiver<Grant<Conn<M::Type>>>,
    done: bool,
}

impl<'a, M: PoolManager> Waiter<'a, M> {
    fn new(inner: &'a Inner<M>, receiver: oneshot::Receiver<Grant<Conn<M::Type>>>) -> Self {
        Self {
            inner,
            receiver,
            done: false,
        }
    }

    /// The grant, or `None` when the pool closed.
    async fn granted(mut self) -> Option<Grant<Conn<M::Type>>> {
        let grant = (&mut self.receiver).await.ok();
        self.done = true;
        grant
    }
}

impl<M: PoolManager> Drop for Waiter<'_, M> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.receiver.close();
        match self.receiver.try_recv() {
            Ok(Grant::Conn(conn)) => self.inner.give_back(conn, None),
            Ok(Grant::Slot) => self.inner.slots.release(),
            Err(_) => {}
        }
    }
}

/// The pool's time source: the default one read without indirection on the hot path,
/// or one the caller chose.
pub(crate) enum PoolClock {
    Default(DefaultClock),
    Given(Arc<dyn Clock>),
}

impl PoolClock {
    #[inline]
    pub(crate) fn now_nanos(&self) -> u64 {
        match self {
            Self::Default(clock) => clock.now_nanos(),
            Self::Given(clock) => clock.now_nanos(),
        }
    }
}

fn spawn_leak_watch(
    threshold: std::time::Duration,
    holder: Holder,
    counters: Arc<Counters>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        tokio::time::sleep(threshold).await;
        counters.leaks_suspected.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            held_by = %holder,
            threshold = ?threshold,
            "possible connection leak: a pooled connection is held past the leak-detection threshold"
        );
    })
}

impl<M> LoadSignal for Pool<M>
where
    M: PoolManager,
{
    fn load(&self) -> LoadSnapshot {
        let status = self.inner.slots.status();
        let wait = self.inner.counters.wait.snapshot();
        LoadSnapshot {
            in_flight: (status.size - status.idle) as u64,
            queued: status.waiters as u64,
            capacity: Some(status.max_size as u64),
            mean_wait: wait.mean(),
            p95_wait: wait.quantile(0.95),
        }
    }
}

/// A checked-out connection; returns to the pool on drop.
pub struct Pooled<M: PoolManager> {
    conn: Option<Conn<M::Type>>,
    pool: Arc<Inner<M>>,
    leak_watch: Option<JoinHandle<()>>,
}

impl<M: PoolManager> Pooled<M> {
    /// Closes this connection instead of returning it (for example after an I/O error).
    pub fn discard(mut this: Self) {
        if let Some(conn) = this.conn.take() {
            this.pool.close(conn, CloseReason::Broken);
            this.pool.slots.release();
        }
    }

    /// A handle that marks this connection broken, so the pool closes it at its next
    /// checkout instead of handing it out again.
    pub fn broken_flag(this: &Self) -> BrokenFlag {
        BrokenFlag(this.conn.as_ref().map(|conn| Arc::clone(&conn.broken)))
    }
}

/// Marks a pooled connection broken after it has been returned (see [`Pooled::broken_flag`]).
#[derive(Debug, Clone)]
pub struct BrokenFlag(Option<Arc<AtomicBool>>);

impl BrokenFlag {
    /// Marks the connection broken.
    pub fn set(&self) {
        if let Some(flag) = &self.0 {
            flag.store(true, Ordering::Relaxed);
        }
    }
}

impl<M: PoolManager> Deref for Pooled<M> {
    type Target = M::Type;

    fn deref(&self) -> &M::Type {
        match &self.conn {
            Some(conn) => &conn.obj,
            None => unreachable!("a Pooled is only emptied by discard or drop"),
        }
    }
}

impl<M: PoolManager> DerefMut for Pooled<M> {
    fn deref_mut(&mut self) -> &mut M::Type {
        match &mut self.conn {
            Some(conn) => &mut conn.obj,
            None => unreachable!("a Pooled is only emptied by discard or drop"),
        }
    }
}

impl<M: PoolManager> fmt::Debug for Pooled<M>
where
    M::Type: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Pooled").field(&**self).finish()
    }
}

impl<M: PoolManager> Drop for Pooled<M> {
    fn drop(&mut self) {
        if let Some(watch) = self.leak_watch.take() {
            watch.abort();
        }
        if let Some(mut conn) = self.conn.take() {
            let now = self.pool.clock.now_nanos();
            let held = Duration::from_nanos(now.saturating_sub(conn.checked_out));
            conn.last_used = now;
            self.pool.give_back(conn, Some(held));
        }
    }
}
