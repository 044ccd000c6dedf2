//! A counting fake manager and the pool setup shared by the integration tests.
#![allow(dead_code)] // each test binary uses a different part of it

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use backstop_core::TokioClock;
use backstop_pool::{
    Manager, Metrics, Pool, PoolConfig, PoolConfigBuilder, PoolManager, RecycleError, RecycleResult,
};
use parking_lot::Mutex;

/// The tests' base config: no idle timeout or lifetime, 1 s to wait for a connection.
pub(crate) fn config() -> PoolConfigBuilder {
    PoolConfig::builder()
        .idle_timeout(None)
        .max_lifetime(None)
        .wait_timeout(Duration::from_secs(1))
}

/// A pool over a clone of `manager`, on tokio's clock (paused in most tests).
pub(crate) fn pool<M: PoolManager + Clone>(manager: &M, config: PoolConfigBuilder) -> Pool<M> {
    Pool::with_clock(manager.clone(), config.build().unwrap(), TokioClock).unwrap()
}

/// A fresh [`Fake`] and a pool over it.
pub(crate) fn fake_pool(config: PoolConfigBuilder) -> (Fake, Pool<Fake>) {
    let fake = Fake::default();
    let pool = pool(&fake, config);
    (fake, pool)
}

/// A pool of one over `manager` that health-checks every checkout, its one connection
/// already made and back in the idle queue.
pub(crate) async fn one_idle_checked<M>(manager: &M) -> Pool<M>
where
    M: PoolManager<Error: std::fmt::Debug> + Clone,
{
    let pool = pool(
        manager,
        config().max_size(1).health_check_bypass(Duration::ZERO),
    );
    drop(pool.get().await.unwrap());
    pool
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FakeError(pub(crate) String);

impl std::fmt::Display for FakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Default)]
pub(crate) struct FakeState {
    pub(crate) creates: AtomicU64,
    pub(crate) recycles: AtomicU64,
    pub(crate) fail_creates: AtomicBool,
    pub(crate) fail_recycles: AtomicBool,
    pub(crate) create_delay: Mutex<Duration>,
    pub(crate) recycle_delay: Mutex<Duration>,
}

/// Counts creates and recycles; can be told to fail either or to create slowly.
#[derive(Debug, Clone, Default)]
pub(crate) struct Fake(pub(crate) Arc<FakeState>);

impl Fake {
    pub(crate) fn creates(&self) -> u64 {
        self.0.creates.load(Ordering::SeqCst)
    }
    pub(crate) fn recycles(&self) -> u64 {
        self.0.recycles.load(Ordering::SeqCst)
    }
    pub(crate) fn fail_creates(&self, fail: bool) {
        self.0.fail_creates.store(fail, Ordering::SeqCst);
    }
    pub(crate) fn fail_recycles(&self, fail: bool) {
        self.0.fail_recycles.store(fail, Ordering::SeqCst);
    }
    pub(crate) fn create_delay(&self, delay: Duration) {
        *self.0.create_delay.lock() = delay;
    }
    pub(crate) fn recycle_delay(&self, delay: Duration) {
        *self.0.recycle_delay.lock() = delay;
    }
}

impl Manager for Fake {
    type Type = u64;
    type Error = FakeError;

    async fn create(&self) -> Result<u64, FakeError> {
        let n = self.0.creates.fetch_add(1, Ordering::SeqCst) + 1;
        let delay = *self.0.create_delay.lock();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if self.0.fail_creates.load(Ordering::SeqCst) {
            return Err(FakeError(format!("backend refused connection #{n}")));
        }
        Ok(n)
    }

    async fn recycle(&self, _: &mut u64, _: &Metrics) -> RecycleResult<FakeError> {
        self.0.recycles.fetch_add(1, Ordering::SeqCst);
        let delay = *self.0.recycle_delay.lock();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if self.0.fail_recycles.load(Ordering::SeqCst) {
            return Err(RecycleError::message("ping failed"));
        }
        Ok(())
    }
}
