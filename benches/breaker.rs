//! What a circuit breaker costs on the hot path.
//!
//! `cargo bench -p backstop --bench breaker`
//!
//! Every call is a future that is ready at once, polled once with a no-op waker, so the
//! figures are the breakers' own bookkeeping and nothing else.
//!
//! - group `breaker_closed_call`: a successful call through a closed breaker, one
//!   thread. Contenders `backstop`, `failsafe` (1.3, default consecutive-failures policy),
//!   `recloser` and `baseline` (the bare future, no breaker).
//! - group `breaker_open_reject`: a call rejected by an open breaker, one thread.
//!   Contenders `backstop`, `failsafe` and `recloser`. Every breaker reads a clock to see
//!   whether the open period is over, which dominates this figure: `backstop` reads its
//!   `DefaultClock` (the CPU counter through quanta, as governor does, since the
//!   umbrella's default features include `quanta`); `backstop_system_clock` is the same
//!   breaker on the OS clock that failsafe and recloser read, for comparison.
//! - group `breaker_call`: the closed-call workload on 1 and 4 threads sharing one
//!   breaker (parameter = threads); one iteration is every thread making one call.
//!   Contenders `backstop`, `failsafe` and `baseline`.
//!
//! `recloser` (1.x, its `AsyncRecloser`) joins the closed-call and open-reject groups.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Barrier;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use backstop::breaker::Breaker;
use backstop::core::{Clock, SystemClock};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use failsafe::futures::CircuitBreaker as _;

const THREADS: [usize; 2] = [1, 4];

/// Polls a future that is expected to be ready on its first poll.
fn ready<F: Future>(future: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut cx) {
        Poll::Ready(output) => output,
        Poll::Pending => unreachable!("the benchmarked futures never wait"),
    }
}

// Each contender's call sits in its own out-of-line function, called the same way by
// every group: inlined into criterion's loop, a few nanoseconds of one contender's
// figure moved with code layout from build to build (whole-binary alignment luck, seen
// as ±15 ns swings from adding an unrelated benchmark).
#[inline(never)]
fn backstop_call<C: Clock>(breaker: &Breaker<C>) -> Result<u64, backstop::core::Error<()>> {
    ready(breaker.call(|| async { Ok::<_, ()>(black_box(1u64)) }))
}

#[inline(never)]
fn failsafe_call(
    breaker: &(impl failsafe::futures::CircuitBreaker + Sync),
) -> Result<u64, failsafe::Error<()>> {
    ready(breaker.call(async { Ok::<_, ()>(black_box(1u64)) }))
}

#[inline(never)]
fn recloser_call(breaker: &recloser::AsyncRecloser) -> Result<u64, recloser::Error<()>> {
    ready(breaker.call(async { Ok::<_, ()>(black_box(1u64)) }))
}

#[inline(never)]
fn baseline_call() -> Result<u64, ()> {
    ready(async { Ok::<_, ()>(black_box(1u64)) })
}

fn backstop_breaker() -> Breaker {
    Breaker::builder()
        .name("bench")
        .build()
        .expect("default config is valid")
}

fn failsafe_breaker() -> impl failsafe::futures::CircuitBreaker + Sync + Clone {
    failsafe::Config::new().build()
}

fn closed_call(c: &mut Criterion) {
    let mut group = c.benchmark_group("breaker_closed_call");
    let backstop = backstop_breaker();
    group.bench_function("backstop", |b| b.iter(|| backstop_call(&backstop)));
    let failsafe = failsafe_breaker();
    group.bench_function("failsafe", |b| b.iter(|| failsafe_call(&failsafe)));
    let recloser = recloser_breaker(100);
    group.bench_function("recloser", |b| b.iter(|| recloser_call(&recloser)));
    group.bench_function("baseline", |b| b.iter(baseline_call));
    group.finish();
}

/// recloser's async breaker, tripping at a 50 % failure rate over `closed_len` calls.
fn recloser_breaker(closed_len: usize) -> recloser::AsyncRecloser {
    recloser::Recloser::custom()
        .error_rate(0.5)
        .closed_len(closed_len)
        .half_open_len(10)
        .open_wait(Duration::from_secs(3600))
        .build()
        .into()
}

fn open_reject(c: &mut Criterion) {
    let mut group = c.benchmark_group("breaker_open_reject");
    let backstop = Breaker::builder()
        .name("bench")
        .count_window(1)
        .minimum_calls(1)
        .wait_in_open(Duration::from_secs(3600))
        .build()
        .expect("valid config");
    let _ = ready(backstop.call(|| async { Err::<u64, _>(()) }));
    assert!(
        backstop.try_acquire().is_err(),
        "backstop breaker must be open"
    );
    group.bench_function("backstop", |b| b.iter(|| backstop_call(&backstop)));
    let on_system_clock = Breaker::builder()
        .name("bench")
        .count_window(1)
        .minimum_calls(1)
        .wait_in_open(Duration::from_secs(3600))
        .clock(SystemClock)
        .build()
        .expect("valid config");
    let _ = ready(on_system_clock.call(|| async { Err::<u64, _>(()) }));
    group.bench_function("backstop_system_clock", |b| {
        b.iter(|| backstop_call(&on_system_clock))
    });
    let failsafe = failsafe::Config::new()
        .failure_policy(failsafe::failure_policy::consecutive_failures(
            1,
            failsafe::backoff::constant(Duration::from_secs(3600)),
        ))
        .build();
    let _ = ready(failsafe.call(async { Err::<u64, _>(()) }));
    assert!(
        !failsafe.is_call_permitted(),
        "failsafe breaker must be open"
    );
    group.bench_function("failsafe", |b| b.iter(|| failsafe_call(&failsafe)));
    let recloser = recloser_breaker(1);
    for _ in 0..2 {
        let _ = ready(recloser.call(async { Err::<u64, _>(()) }));
    }
    assert!(
        matches!(
            ready(recloser.call(async { Ok::<_, ()>(1u64) })),
            Err(recloser::Error::Rejected)
        ),
        "recloser breaker must be open"
    );
    group.bench_function("recloser", |b| b.iter(|| recloser_call(&recloser)));
    group.finish();
}

/// Runs `call` `iters` times on each of `threads` threads at once; returns the wall time.
fn contended(threads: usize, iters: u64, call: impl Fn() + Sync) -> Duration {
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                barrier.wait();
                for _ in 0..iters {
                    call();
                }
                barrier.wait();
            });
        }
        barrier.wait();
        let start = Instant::now();
        barrier.wait();
        start.elapsed()
    })
}

fn call_threads(c: &mut Criterion) {
    let mut group = c.benchmark_group("breaker_call");
    for threads in THREADS {
        let backstop = backstop_breaker();
        group.bench_with_input(BenchmarkId::new("backstop", threads), &threads, |b, &t| {
            b.iter_custom(|iters| {
                contended(t, iters, || {
                    black_box(backstop_call(&backstop)).ok();
                })
            })
        });
        let failsafe = failsafe_breaker();
        group.bench_with_input(BenchmarkId::new("failsafe", threads), &threads, |b, &t| {
            b.iter_custom(|iters| {
                contended(t, iters, || {
                    black_box(failsafe_call(&failsafe)).ok();
                })
            })
        });
        group.bench_with_input(BenchmarkId::new("baseline", threads), &threads, |b, &t| {
            b.iter_custom(|iters| {
                contended(t, iters, || {
                    black_box(baseline_call()).ok();
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, closed_call, open_reject, call_threads);
criterion_main!(benches);
