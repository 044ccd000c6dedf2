//! Two layers stacked around a service: order of calls, error propagation, sharing.

use backstop_core::{Layer, Service, Stack, service_fn};
use std::sync::{Arc, Mutex};
use tokio::sync::Barrier;

type Log = Arc<Mutex<Vec<String>>>;

/// Records entering and leaving, and can refuse requests it is told to.
#[derive(Clone)]
struct Trace {
    name: &'static str,
    log: Log,
    refuse: Option<u32>,
}

struct Traced<S> {
    inner: S,
    layer: Trace,
}

impl<S> Layer<S> for Trace {
    type Service = Traced<S>;
    fn layer(&self, inner: S) -> Traced<S> {
        Traced {
            inner,
            layer: self.clone(),
        }
    }
}

impl<S> Service<u32> for Traced<S>
where
    S: Service<u32, Response = u32, Error = String>,
{
    type Response = u32;
    type Error = String;

    async fn call(&self, req: u32) -> Result<u32, String> {
        let name = self.layer.name;
        self.layer.log.lock().unwrap().push(format!("{name}>"));
        if self.layer.refuse == Some(req) {
            self.layer.log.lock().unwrap().push(format!("{name}!"));
            return Err(format!("{name} refused {req}"));
        }
        let result = self.inner.call(req).await;
        self.layer.log.lock().unwrap().push(format!("<{name}"));
        result.map(|n| n + 1)
    }
}

fn stack(
    log: &Log,
    refuse_outer: Option<u32>,
) -> impl Service<u32, Response = u32, Error = String> {
    let inner_log = log.clone();
    Stack::new()
        .layer(Trace {
            name: "a",
            log: log.clone(),
            refuse: refuse_outer,
        })
        .layer(Trace {
            name: "b",
            log: log.clone(),
            refuse: None,
        })
        .service(service_fn(move |n: u32| {
            inner_log.lock().unwrap().push("inner".to_string());
            async move {
                if n == 13 {
                    Err("unlucky".to_string())
                } else {
                    Ok(n * 10)
                }
            }
        }))
}

fn take(log: &Log) -> Vec<String> {
    std::mem::take(&mut *log.lock().unwrap())
}

#[tokio::test]
async fn first_layer_added_is_outermost() {
    let log = Log::default();
    let svc = stack(&log, None);
    assert_eq!(svc.call(1).await, Ok(12), "10 from inner, +1 by b, +1 by a");
    assert_eq!(take(&log), ["a>", "b>", "inner", "<b", "<a"]);
}

#[tokio::test]
async fn inner_errors_travel_out_through_every_layer() {
    let log = Log::default();
    let svc = stack(&log, None);
    assert_eq!(svc.call(13).await, Err("unlucky".to_string()));
    assert_eq!(take(&log), ["a>", "b>", "inner", "<b", "<a"]);
}

#[tokio::test]
async fn an_outer_layer_can_refuse_before_the_inner_service_runs() {
    let log = Log::default();
    let svc = stack(&log, Some(7));
    assert_eq!(svc.call(7).await, Err("a refused 7".to_string()));
    assert_eq!(take(&log), ["a>", "a!"]);
}

#[tokio::test]
async fn absent_optional_layer_is_skipped() {
    let log = Log::default();
    let svc = Stack::new()
        .option_layer(None::<Trace>)
        .layer(Trace {
            name: "b",
            log: log.clone(),
            refuse: None,
        })
        .service(service_fn(|n: u32| async move { Ok::<_, String>(n) }));
    assert_eq!(svc.call(1).await, Ok(2));
    assert_eq!(take(&log), ["b>", "<b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_callers_share_one_stack_through_an_arc() {
    const CALLERS: u32 = 64;
    let log = Log::default();
    let inner_log = log.clone();
    let barrier = Arc::new(Barrier::new(CALLERS as usize));
    let inner_barrier = barrier.clone();
    // Every call waits at the barrier inside the innermost service, so the test only
    // passes if all callers are inside the shared stack at the same time.
    let svc = Arc::new(
        Stack::new()
            .layer(Trace {
                name: "a",
                log: log.clone(),
                refuse: None,
            })
            .service(service_fn(move |n: u32| {
                let barrier = inner_barrier.clone();
                inner_log.lock().unwrap().push("inner".to_string());
                async move {
                    barrier.wait().await;
                    Ok::<_, String>(n)
                }
            })),
    );
    let callers: Vec<_> = (0..CALLERS)
        .map(|n| {
            let svc = svc.clone();
            tokio::spawn(async move { svc.call(n).await })
        })
        .collect();
    let mut results = Vec::new();
    for caller in callers {
        results.push(caller.await.unwrap().unwrap());
    }
    results.sort_unstable();
    assert_eq!(results, (1..=CALLERS).collect::<Vec<_>>());
    let log = take(&log);
    assert_eq!(
        log.iter().filter(|e| *e == "inner").count(),
        CALLERS as usize
    );
    assert_eq!(log.iter().filter(|e| *e == "a>").count(), CALLERS as usize);
}
