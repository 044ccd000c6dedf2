//! The router as a layer: one error type through the stack, readiness, contained closures.

mod common;

use backstop_core::{Error, Layer, RejectKind, Service, ServiceExt, service_fn};
use backstop_route::{RouteLayer, Routed, TargetServices, sticky_hash};
use common::*;
use std::time::Duration;

#[tokio::test(start_paused = true)]
async fn per_target_services_with_key_cost_and_classify() {
    let router = router(vec![target("down", 0), target("up", 1)]);
    let upstreams = TargetServices::new(vec![
        service_fn(|_: String| async {
            Err::<String, _>(Status {
                code: 503,
                retry_after: None,
            })
        })
        .lift()
        .boxed(),
        service_fn(|prompt: String| async move { Ok(format!("up: {prompt}")) })
            .lift()
            .boxed(),
    ]);
    let stack = RouteLayer::new(router.clone())
        .key(|prompt: &String| Some(sticky_hash(prompt)))
        .cost(|prompt: &String| prompt.len() as u64)
        .classify(classify)
        .layer(upstreams);
    assert_eq!(stack.call("hello".into()).await.unwrap(), "up: hello");
    assert!(stack.readiness().is_ok());
    assert_eq!(stack.router().stats().fallbacks, 1);
}

#[tokio::test(start_paused = true)]
async fn readiness_reports_every_target_cooling() {
    let router = router(vec![target("only", 0)]);
    let client = service_fn(|_: Routed<u32>| async {
        Err::<u32, _>(too_many(Some(Duration::from_secs(9))))
    });
    let stack = RouteLayer::new(router).classify(classify).layer(client);
    assert!(stack.call(1).await.is_err());
    let refused = stack.readiness().unwrap_err();
    assert_eq!(refused.kind, RejectKind::Unavailable);
    assert_eq!(refused.retry_after, Some(Duration::from_secs(9)));
    // A call now is refused without reaching the client.
    let error = stack.call(2).await.unwrap_err();
    assert_eq!(error.rejection().unwrap().kind, RejectKind::Unavailable);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_key_closure_is_a_typed_error() {
    let router = router(vec![target("only", 0)]);
    let client = service_fn(|r: Routed<u32>| async move { Ok::<_, Error<Status>>(r.request) });
    let stack = RouteLayer::new(router.clone())
        .key(|_: &u32| -> Option<u64> { panic!("bad key") })
        .layer(client);
    let error = stack.call(1).await.unwrap_err();
    assert_eq!(error.panic().unwrap().message(), "bad key");
    assert_eq!(router.stats().calls, 0, "nothing routed");
}
