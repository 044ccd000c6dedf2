//! Backoff, jitter bounds, `Retry-After` and classification, on paused time.

use backstop_core::{Error, Layer, RejectKind, Rejected, RetryHint, Service, service_fn};
use backstop_retry::{
    HintedClassify, Jitter, RetryConfig, RetryDecision, RetryLayer, standard_decision,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::time::Instant;

mod support;

#[derive(Debug, PartialEq)]
struct Status(u16);

fn config(max_attempts: u32, jitter: Jitter) -> RetryConfig {
    RetryConfig {
        backoff: support::backoff(Duration::from_millis(100), jitter),
        ..support::exact_policy(max_attempts)
    }
}

/// A provider that answers each call with the next of `script` (then succeeds), recording
/// when each attempt started.
fn scripted(
    script: Vec<Result<u32, Error<Status>>>,
) -> (
    impl Service<(), Response = u32, Error = Error<Status>>,
    Arc<parking_lot::Mutex<Vec<Instant>>>,
) {
    let starts = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let script = Arc::new(parking_lot::Mutex::new(script.into_iter()));
    let seen = starts.clone();
    let service = service_fn(move |()| {
        seen.lock().push(Instant::now());
        let next = script.lock().next().unwrap_or(Ok(0));
        async move { next }
    });
    (service, starts)
}

fn gaps(starts: &[Instant]) -> Vec<u64> {
    starts
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis() as u64)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn waits_grow_exponentially_and_the_last_error_is_returned() {
    let fail = || Err(Error::Inner(Status(503)));
    let (provider, starts) = scripted(vec![fail(), fail(), fail(), fail(), fail()]);
    let retry = config(5, Jitter::None).build().unwrap();
    let stack = RetryLayer::new(retry.clone()).layer(provider);
    let error = stack.call(()).await.unwrap_err();
    assert_eq!(error.inner(), Some(&Status(503)));
    assert_eq!(gaps(&starts.lock()), [100, 200, 400, 800]);
    let stats = retry.stats();
    assert_eq!((stats.calls, stats.attempts, stats.retries), (1, 5, 4));
}

#[tokio::test(start_paused = true)]
async fn full_jitter_waits_stay_within_the_exponential() {
    for _ in 0..20 {
        let fail = || Err(Error::Inner(Status(503)));
        let (provider, starts) = scripted(vec![fail(), fail(), fail(), fail()]);
        let stack = RetryLayer::new(config(5, Jitter::Full).build().unwrap()).layer(provider);
        assert_eq!(stack.call(()).await.unwrap(), 0);
        for (gap, cap) in gaps(&starts.lock()).into_iter().zip([100, 200, 400, 800]) {
            assert!(gap <= cap, "{gap} > {cap}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_waited_exactly_and_permanent_refusals_stop() {
    let limited = Rejected::new(RejectKind::RateLimited { quota: 0 })
        .with_retry_after(Duration::from_millis(1_500));
    let (provider, starts) = scripted(vec![Err(Error::Rejected(limited))]);
    let stack = RetryLayer::new(config(3, Jitter::None).build().unwrap()).layer(provider);
    assert_eq!(stack.call(()).await.unwrap(), 0);
    assert_eq!(gaps(&starts.lock()), [1_500]);

    let too_large = Rejected::new(RejectKind::TooLarge { quota: 1 });
    let (provider, starts) = scripted(vec![Err(Error::Rejected(too_large))]);
    let stack = RetryLayer::new(config(3, Jitter::None).build().unwrap()).layer(provider);
    let error = stack.call(()).await.unwrap_err();
    assert_eq!(error.rejection(), Some(&too_large));
    assert_eq!(starts.lock().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_beyond_the_maximum_is_not_waited_for() {
    let far = Rejected::new(RejectKind::CircuitOpen).with_retry_after(Duration::from_secs(3_600));
    let (provider, starts) = scripted(vec![Err(Error::Rejected(far))]);
    let stack = RetryLayer::new(config(3, Jitter::None).build().unwrap()).layer(provider);
    let started = Instant::now();
    assert!(stack.call(()).await.is_err());
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(starts.lock().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_user_classifier_reads_provider_errors() {
    // 429 carries its Retry-After in the provider's own error; 400 never passes.
    let classify = |e: &Error<Status>| match e.inner() {
        Some(Status(400)) => RetryDecision::Stop,
        Some(Status(429)) => RetryDecision::RetryAfter(Duration::from_secs(2)),
        _ => standard_decision(e),
    };
    let (provider, starts) = scripted(vec![
        Err(Error::Inner(Status(429))),
        Err(Error::Inner(Status(400))),
    ]);
    let retry = config(5, Jitter::None).build().unwrap();
    let stack = RetryLayer::new(retry.clone())
        .classify(classify)
        .layer(provider);
    assert_eq!(
        stack.call(()).await.unwrap_err().inner(),
        Some(&Status(400))
    );
    assert_eq!(gaps(&starts.lock()), [2_000]);
    assert_eq!(retry.stats().retries, 1);
}

/// A provider's status and `Retry-After` header, said through `RetryHint`.
#[derive(Debug, PartialEq)]
struct Upstream {
    status: u16,
    retry_after: Option<Duration>,
}

impl RetryHint for Upstream {
    fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
    fn is_rate_limited(&self) -> bool {
        self.status == 429
    }
    fn is_permanent(&self) -> bool {
        (400..429).contains(&self.status)
    }
}

#[tokio::test(start_paused = true)]
async fn the_hinted_classifier_waits_a_providers_retry_after_and_stops_on_a_permanent_error() {
    let fail = |status, retry_after| {
        Err(Error::Inner(Upstream {
            status,
            retry_after,
        }))
    };
    let starts = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let script = Arc::new(parking_lot::Mutex::new(
        vec![
            fail(429, Some(Duration::from_millis(1_500))),
            fail(503, Some(Duration::from_millis(700))),
            fail(500, None),
            fail(400, None),
        ]
        .into_iter(),
    ));
    let seen = starts.clone();
    let provider = service_fn(move |()| {
        seen.lock().push(Instant::now());
        let next = script.lock().next().unwrap_or(Ok(0u32));
        async move { next }
    });
    let retry = config(5, Jitter::None).build().unwrap();
    let stack = RetryLayer::new(retry.clone())
        .classify(HintedClassify)
        .layer(provider);
    let error = stack.call(()).await.unwrap_err();
    assert_eq!(error.inner().map(|e| e.status), Some(400));
    // 429 and 503 wait exactly their Retry-After; the 500 the backoff's first step (the
    // waits a callee set are not backoff steps); the 400 stops.
    assert_eq!(gaps(&starts.lock()), [1_500, 700, 100]);
    assert_eq!(retry.stats().retries, 3);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_classifier_is_contained_and_counted() {
    let (provider, starts) = scripted(vec![Err(Error::Inner(Status(503)))]);
    let retry = config(5, Jitter::None).build().unwrap();
    let stack = RetryLayer::new(retry.clone())
        .classify(|_: &Error<Status>| -> RetryDecision { panic!("classifier bug") })
        .layer(provider);
    let error = stack.call(()).await.unwrap_err();
    let panicked = error.panic().expect("the panic is the call's error");
    assert_eq!(panicked.site(), "retry.classify");
    assert_eq!(panicked.message(), "classifier bug");
    assert_eq!(retry.stats().classifier_panics, 1);
    assert_eq!(starts.lock().len(), 1);
    // The handle keeps working after the panic.
    let ok = service_fn(|()| async { Ok::<u32, Error<Status>>(7) });
    assert_eq!(RetryLayer::new(retry).layer(ok).call(()).await.unwrap(), 7);
}

#[tokio::test(start_paused = true)]
async fn the_standalone_call_lifts_the_error_and_readiness_passes_through() {
    let retry = config(2, Jitter::None).build().unwrap();
    let attempts = AtomicU32::new(0);
    let out: Result<u32, Error<Status>> = retry
        .call(|| async {
            attempts.fetch_add(1, Ordering::Relaxed);
            Err(Status(502))
        })
        .await;
    assert_eq!(out.unwrap_err().inner(), Some(&Status(502)));
    assert_eq!(attempts.load(Ordering::Relaxed), 2);

    struct Closed;
    impl Service<()> for Closed {
        type Response = ();
        type Error = Error<Status>;
        async fn call(&self, (): ()) -> Result<(), Error<Status>> {
            Ok(())
        }
        fn readiness(&self) -> Result<(), Rejected> {
            Err(Rejected::new(RejectKind::CircuitOpen))
        }
    }
    let stack = RetryLayer::new(retry).layer(Closed);
    assert_eq!(stack.readiness().unwrap_err().kind, RejectKind::CircuitOpen);
}
