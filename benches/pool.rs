//! What a checkout costs: backstop-pool against bare deadpool and bb8.
//!
//! `cargo bench -p backstop --bench pool`
//!
//! - group `pool_get_put`: one task checks a no-op object out and returns it.
//! - group `pool_get_put_contended`: 64 tasks share 8 objects on a 2-worker runtime,
//!   each checking out and returning in a loop; time per checkout.
//!
//! Every contender gets the same no-op manager (create and health check return at
//! once) and 8 objects. `backstop` runs with its defaults (idle timeout, max lifetime,
//! housekeeping task, wait/usage histograms, 500 ms health-check bypass); `bb8` with its
//! defaults (health check on every checkout).

use std::convert::Infallible;
use std::time::{Duration, Instant};

use backstop::pool::{Pool, PoolConfig};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use tokio::runtime::Runtime;

const SIZE: usize = 8;
const TASKS: u64 = 64;

struct Noop;

impl deadpool::managed::Manager for Noop {
    type Type = u64;
    type Error = Infallible;

    async fn create(&self) -> Result<u64, Infallible> {
        Ok(0)
    }

    async fn recycle(
        &self,
        _: &mut u64,
        _: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<Infallible> {
        Ok(())
    }
}

struct NoopBb8;

impl bb8::ManageConnection for NoopBb8 {
    type Connection = u64;
    type Error = Infallible;

    async fn connect(&self) -> Result<u64, Infallible> {
        Ok(0)
    }

    async fn is_valid(&self, _: &mut u64) -> Result<(), Infallible> {
        Ok(())
    }

    fn has_broken(&self, _: &mut u64) -> bool {
        false
    }
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn backstop_pool(rt: &Runtime) -> Pool<Noop> {
    let config = PoolConfig::builder()
        .max_size(SIZE)
        .build()
        .expect("valid config");
    rt.block_on(async { Pool::new(Noop, config).expect("pool") })
}

fn deadpool_pool() -> deadpool::managed::Pool<Noop> {
    deadpool::managed::Pool::builder(Noop)
        .max_size(SIZE)
        .build()
        .expect("pool")
}

fn bb8_pool(rt: &Runtime) -> bb8::Pool<NoopBb8> {
    rt.block_on(bb8::Pool::builder().max_size(SIZE as u32).build(NoopBb8))
        .expect("pool")
}

/// A pool under test: one object checked out and returned at once.
trait Checkout: Clone + Send + Sync + 'static {
    /// Checks one object out and returns it.
    fn get_put(&self) -> impl Future<Output = ()> + Send;
}

impl Checkout for Pool<Noop> {
    async fn get_put(&self) {
        drop(self.get().await.expect("get"));
    }
}

impl Checkout for deadpool::managed::Pool<Noop> {
    async fn get_put(&self) {
        drop(self.get().await.expect("get"));
    }
}

impl Checkout for bb8::Pool<NoopBb8> {
    async fn get_put(&self) {
        drop(self.get().await.expect("get"));
    }
}

fn get_put(c: &mut Criterion) {
    every_pool(c, "pool_get_put", Load::Alone);
}

fn get_put_contended(c: &mut Criterion) {
    every_pool(c, "pool_get_put_contended", Load::Shared);
}

/// Who checks objects out.
#[derive(Clone, Copy)]
enum Load {
    /// One task, back to back.
    Alone,
    /// `TASKS` tasks in a loop; time per checkout.
    Shared,
}

/// The group `name`: each contender under `load`.
fn every_pool(c: &mut Criterion, name: &str, load: Load) {
    let rt = runtime();
    let mut group = c.benchmark_group(name);
    contender(&mut group, &rt, load, "backstop", backstop_pool(&rt));
    contender(&mut group, &rt, load, "deadpool", deadpool_pool());
    contender(&mut group, &rt, load, "bb8", bb8_pool(&rt));
    group.finish();
}

/// The bench `name`: `pool` checked out and in under `load`.
fn contender(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    load: Load,
    name: &str,
    pool: impl Checkout,
) {
    group.bench_function(name, |b| match load {
        Load::Alone => b.to_async(rt).iter(|| pool.get_put()),
        Load::Shared => b.to_async(rt).iter_custom(|iters| {
            let pool = pool.clone();
            contended(iters, move || {
                let pool = pool.clone();
                async move { pool.get_put().await }
            })
        }),
    });
}

/// Runs `iters` checkouts spread over `TASKS` tasks and returns the wall time.
async fn contended<F, Fut>(iters: u64, checkout: F) -> Duration
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let start = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let checkout = checkout.clone();
            let share = iters / TASKS + u64::from(task < iters % TASKS);
            tokio::spawn(async move {
                for _ in 0..share {
                    checkout().await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task finished");
    }
    start.elapsed()
}

criterion_group!(benches, get_put, get_put_contended);
criterion_main!(benches);
