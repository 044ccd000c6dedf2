//! The pool itself: checkout with wait timing and leak detection, stats, resizing.

use std::fmt;
use std::future::poll_fn;
use std::ops::{Deref, DerefMut};
use std::panic::Location;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Duration;

use backstop_core::{LoadSignal, LoadSnapshot, Validate};
use deadpool::Runtime;
use deadpool::managed::{self, Object, TimeoutType};
use tokio::task::JoinHandle;
use tokio::time::{Instant, Sleep};

use crate::config::{PoolConfig, QueueMode};
use crate::conn::{PoolManager, Rules, Tracked};
use crate::error::{BuildError, PoolError};
use crate::housekeeping;
use crate::stats::{CloseReason, Counters, PoolStats};

/// A connection pool on deadpool's managed pool, with min idle, lifetimes, health-check
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
    pub(crate) pool: managed::Pool<Tracked<M>>,
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
            .field("status", &self.inner.pool.status())
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
    /// Builds a pool. Needs a running Tokio runtime when the config asks for background
    /// work (min idle, idle timeout, max lifetime, keepalive or adaptive sizing).
    pub fn new(manager: M, config: PoolConfig) -> Result<Self, BuildError> {
        config.validate()?;
        let counters = Arc::new(Counters::default());
        let rules = Rules {
            idle_timeout: config.idle_timeout,
            max_lifetime: config.max_lifetime,
            lifetime_jitter: config.lifetime_jitter,
            bypass: config.health_check_bypass,
            recycle_timeout: config.recycle_timeout,
        };
        let tracked = Tracked {
            inner: manager,
            rules,
            counters: Arc::clone(&counters),
        };
        let queue_mode = match config.queue_mode {
            QueueMode::Lifo => managed::QueueMode::Lifo,
            QueueMode::Fifo => managed::QueueMode::Fifo,
        };
        let runtime_needed = config.needs_housekeeping();
        if runtime_needed && tokio::runtime::Handle::try_current().is_err() {
            return Err(BuildError::NoRuntime);
        }
        let pool = managed::Pool::builder(tracked)
            .max_size(config.max_size)
            .queue_mode(queue_mode)
            .create_timeout(Some(config.create_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|_| BuildError::NoRuntime)?;
        let inner = Arc::new(Inner {
            pool,
            counters,
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
        let counters = &self.inner.counters;
        // The clock is read, and the wait-timeout timer armed, only once the checkout
        // has to wait: most checkouts complete on their first poll (see `WaitTimes`).
        // The timeout covers the whole checkout, creation included, as HikariCP's
        // connectionTimeout does.
        let wait_timeout = self.inner.config.wait_timeout;
        let mut get = pin!(self.inner.pool.get());
        let mut timer: Option<(Instant, Pin<Box<Sleep>>)> = None;
        let result = poll_fn(|cx| {
            if let Poll::Ready(result) = get.as_mut().poll(cx) {
                return Poll::Ready(result);
            }
            let (_, sleep) = timer.get_or_insert_with(|| {
                let start = Instant::now();
                (
                    start,
                    Box::pin(tokio::time::sleep_until(start + wait_timeout)),
                )
            });
            match sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(managed::PoolError::Timeout(TimeoutType::Wait))),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        let waited = timer.map(|(start, _)| (start, start.elapsed()));
        match result {
            Ok(obj) => {
                match waited {
                    Some((_, waited)) => counters.wait.record_wait(waited),
                    None => counters.wait.record_immediate(),
                }
                let leak_watch = self
                    .inner
                    .config
                    .leak_detection_threshold
                    .map(|threshold| spawn_leak_watch(threshold, holder, Arc::clone(counters)));
                Ok(Pooled {
                    obj: Some(obj),
                    leak_watch,
                })
            }
            Err(managed::PoolError::Timeout(TimeoutType::Create)) => Err(PoolError::CreateTimeout),
            Err(managed::PoolError::Timeout(_)) => {
                counters.timeouts.fetch_add(1, Ordering::Relaxed);
                let (start, waited) = waited.unwrap_or((Instant::now(), Duration::ZERO));
                Err(PoolError::Timeout {
                    waited,
                    last_create_error: counters.create_error_since(start),
                })
            }
            Err(managed::PoolError::Backend(error)) => Err(PoolError::Create(error)),
            Err(_) => Err(PoolError::Closed),
        }
    }

    /// A snapshot of sizes, counters and latency summaries.
    pub fn stats(&self) -> PoolStats {
        let status = self.inner.pool.status();
        let counters = &self.inner.counters;
        let wait = counters.wait.snapshot();
        PoolStats {
            max_size: status.max_size,
            size: status.size,
            in_use: status.size - status.available,
            idle: status.available,
            waiters: status.waiting,
            created: counters.created(),
            create_failures: counters.create_failures(),
            closed: counters.closed(),
            checkouts: wait.count(),
            timeouts: counters.timeouts.load(Ordering::Relaxed),
            leaks_suspected: counters.leaks_suspected.load(Ordering::Relaxed),
            resizes: counters.resizes.load(Ordering::Relaxed),
            wait: wait.summary(),
            usage: counters.usage.snapshot().summary(),
        }
    }

    /// Sets `max_size`; idle connections above the new size are closed at once and busy
    /// ones as they return.
    pub fn resize(&self, max_size: usize, reason: &str) {
        self.inner.resize(max_size, reason);
    }

    /// Closes the pool: waiters and future checkouts get [`PoolError::Closed`].
    pub fn close(&self) {
        self.inner.pool.close();
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
    pub(crate) fn resize(&self, max_size: usize, reason: &str) {
        let before = self.pool.status();
        if max_size == before.max_size || max_size == 0 {
            return;
        }
        self.pool.resize(max_size);
        let after = self.pool.status();
        let dropped = before.size.saturating_sub(after.size) as u64;
        self.counters.on_closed_n(CloseReason::Resize, dropped);
        self.counters.resizes.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            from = before.max_size,
            to = max_size,
            reason,
            "pool resized"
        );
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
        let status = self.inner.pool.status();
        let wait = self.inner.counters.wait.snapshot();
        LoadSnapshot {
            in_flight: (status.size - status.available) as u64,
            queued: status.waiting as u64,
            capacity: Some(status.max_size as u64),
            mean_wait: wait.mean(),
            p95_wait: wait.quantile(0.95),
        }
    }
}

/// A checked-out connection; returns to the pool on drop.
pub struct Pooled<M: PoolManager> {
    obj: Option<Object<Tracked<M>>>,
    leak_watch: Option<JoinHandle<()>>,
}

impl<M: PoolManager> Pooled<M> {
    /// Closes this connection instead of returning it (for example after an I/O error).
    pub fn discard(mut this: Self) {
        if let Some(obj) = this.obj.take() {
            obj.counters.on_closed(CloseReason::Broken);
            drop(Object::take(obj));
        }
    }

    /// A handle that marks this connection broken, so the pool closes it at its next
    /// checkout instead of handing it out again.
    pub fn broken_flag(this: &Self) -> BrokenFlag {
        BrokenFlag(this.obj.as_ref().map(|obj| Arc::clone(&obj.broken)))
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
        match &self.obj {
            Some(obj) => &obj.obj,
            None => unreachable!("a Pooled is only emptied by discard or drop"),
        }
    }
}

impl<M: PoolManager> DerefMut for Pooled<M> {
    fn deref_mut(&mut self) -> &mut M::Type {
        match &mut self.obj {
            Some(obj) => &mut obj.obj,
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
        if let Some(mut obj) = self.obj.take() {
            let now = Instant::now();
            obj.last_used = now;
            obj.counters.usage.record(now - obj.checked_out);
        }
    }
}
