//! `DedupLayer` over `backstop_core::Service`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use backstop_core::{Layer, Service, service_fn};
use backstop_dedup::{DedupError, DedupLayer, DedupWindow, Group, WindowConfig};

fn backend(
    calls: &Arc<AtomicUsize>,
) -> impl Service<(String, u32), Response = String, Error = String> + 'static {
    let calls = calls.clone();
    service_fn(move |(prompt, attempt): (String, u32)| {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            if prompt == "fail" {
                Err(format!("refused attempt {attempt}"))
            } else {
                Ok(format!("answer to {prompt}"))
            }
        }
    })
}

#[tokio::test(start_paused = true)]
async fn identical_requests_reach_the_inner_service_once() {
    let calls = Arc::new(AtomicUsize::new(0));
    let group = Group::new();
    let layer = DedupLayer::new(group.clone(), |req: &(String, u32)| req.0.clone());
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
            .all(|r| r.as_deref() == Ok("answer to capital of France"))
    );
    assert_eq!(calls.load(SeqCst), 1);
    assert_eq!(group.stats().coalesced, 49);
}

#[tokio::test(start_paused = true)]
async fn inner_errors_are_shared_as_dedup_errors() {
    let calls = Arc::new(AtomicUsize::new(0));
    let service =
        DedupLayer::new(Group::new(), |req: &(String, u32)| req.0.clone()).layer(backend(&calls));
    let (a, b) = tokio::join!(
        service.call(("fail".into(), 1)),
        service.call(("fail".into(), 2))
    );
    let expected = DedupError::Inner("refused attempt 1".to_string());
    assert_eq!(
        (a.unwrap_err(), b.unwrap_err()),
        (expected.clone(), expected)
    );
    assert_eq!(calls.load(SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn window_layer_answers_retries_without_calling_again() {
    let calls = Arc::new(AtomicUsize::new(0));
    let window = DedupWindow::new(WindowConfig::default()).unwrap();
    let service =
        DedupLayer::new(window.clone(), |req: &(String, u32)| req.0.clone()).layer(backend(&calls));
    service.call(("q".into(), 1)).await.unwrap();
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(service.call(("q".into(), 2)).await.unwrap(), "answer to q");
    assert_eq!(calls.load(SeqCst), 1);
    assert_eq!(window.stats().window_hits, 1);
}
