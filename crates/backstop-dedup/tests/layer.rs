//! `DedupLayer` over `backstop_core::Service`.

use std::time::Duration;

use backstop_core::{Error, Layer, Service, ServiceExt, service_fn};
use backstop_dedup::{DedupLayer, DedupWindow, DedupWindowConfig, Group};
use backstop_testkit::Calls;

fn backend(
    calls: &Calls,
) -> impl Service<(String, u32), Response = String, Error = Error<String>> + 'static {
    service_fn(
        calls.counting(|(prompt, attempt): (String, u32)| async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if prompt == "fail" {
                Err(format!("refused attempt {attempt}"))
            } else {
                Ok(format!("answer to {prompt}"))
            }
        }),
    )
    .lift()
}

#[tokio::test(start_paused = true)]
async fn identical_requests_reach_the_inner_service_once() {
    let calls = Calls::new();
    let group = Group::new();
    let layer = DedupLayer::new(group.clone()).key(|req: &(String, u32)| req.0.clone());
    let service = layer.clone().layer(backend(&calls));
    let other_clone = layer.layer(backend(&calls));
    let results = futures::future::join_all((0..50u32).map(|attempt| {
        let s = if attempt % 2 == 0 {
            &service
        } else {
            &other_clone
        };
        s.call(("capital of France".to_string(), attempt))
    }))
    .await;
    assert!(
        results
            .iter()
            .all(|r| r.as_deref().ok() == Some("answer to capital of France"))
    );
    assert_eq!(calls.count(), 1);
    assert_eq!(group.stats().coalesced, 49);
}

#[tokio::test(start_paused = true)]
async fn inner_errors_are_shared_without_clone() {
    let calls = Calls::new();
    let service = DedupLayer::new(Group::new())
        .key(|req: &(String, u32)| req.0.clone())
        .layer(backend(&calls));
    let (a, b) = tokio::join!(
        service.call(("fail".into(), 1)),
        service.call(("fail".into(), 2))
    );
    // Both get the leader's error, shared through an `Arc`: no `Clone` asked of it.
    let (a, b) = (a.unwrap_err(), b.unwrap_err());
    assert!(matches!(a, Error::Shared(_)), "{a:?}");
    assert_eq!(a.inner().map(String::as_str), Some("refused attempt 1"));
    assert_eq!(b.inner().map(String::as_str), Some("refused attempt 1"));
    assert_eq!(calls.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn window_layer_answers_retries_without_calling_again() {
    let calls = Calls::new();
    let window = DedupWindow::new(DedupWindowConfig::default()).unwrap();
    let service = DedupLayer::new(window.clone())
        .key(|req: &(String, u32)| req.0.clone())
        .layer(backend(&calls));
    service.call(("q".into(), 1)).await.unwrap();
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(service.call(("q".into(), 2)).await.unwrap(), "answer to q");
    assert_eq!(calls.count(), 1);
    assert_eq!(window.stats().window_hits, 1);
}

/// An error type that is not `Clone` under the layer, as a rate limiter's or pool's is.
#[derive(Debug)]
struct NotClone(&'static str);

#[tokio::test(start_paused = true)]
async fn a_lone_caller_gets_the_error_itself_and_refusals_pass_through() {
    let service = DedupLayer::new(Group::new()).layer(
        service_fn(|prompt: String| async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Err::<String, _>(NotClone(if prompt == "a" { "down" } else { "other" }))
        })
        .lift(),
    );
    let error = service.call("a".to_string()).await.unwrap_err();
    assert!(matches!(error, Error::Inner(NotClone("down"))), "{error:?}");
    assert!(service.readiness().is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_panicking_inner_service_is_a_typed_error_for_every_caller() {
    let service = DedupLayer::new(Group::new()).layer(
        service_fn(|_: u8| async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if true {
                panic!("provider client bug");
            }
            Ok::<u8, NotClone>(0)
        })
        .lift(),
    );
    let (a, b) = tokio::join!(service.call(1), service.call(1));
    for error in [a.unwrap_err(), b.unwrap_err()] {
        assert_eq!(
            error.panic().map(|p| p.message()),
            Some("provider client bug")
        );
    }
}
