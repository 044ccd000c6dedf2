//! A first look at Backstop's composition: layers stacked around a pretend LLM call,
//! shared by many concurrent callers, driven by a manual clock.
//!
//! `cargo run --release --example quickstart`

use backstop::core::{Clock, Layer, ManualClock, Service, Stack, service_fn};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Counts requests and measures their latency on the given clock.
#[derive(Clone)]
struct Measure<C> {
    clock: C,
    calls: Arc<AtomicU64>,
}

struct Measured<S, C> {
    inner: S,
    layer: Measure<C>,
}

impl<S, C: Clone> Layer<S> for Measure<C> {
    type Service = Measured<S, C>;
    fn layer(&self, inner: S) -> Self::Service {
        Measured {
            inner,
            layer: self.clone(),
        }
    }
}

impl<S, C> Service<String> for Measured<S, C>
where
    S: Service<String>,
    C: Clock,
{
    type Response = (S::Response, Duration);
    type Error = S::Error;

    async fn call(&self, prompt: String) -> Result<Self::Response, S::Error> {
        self.layer.calls.fetch_add(1, Ordering::Relaxed);
        let start = self.layer.clock.now();
        let answer = self.inner.call(prompt).await?;
        Ok((answer, self.layer.clock.now() - start))
    }
}

#[tokio::main]
async fn main() {
    let clock = ManualClock::new();
    let calls = Arc::new(AtomicU64::new(0));
    let model_clock = clock.clone();
    let model = service_fn(move |prompt: String| {
        // Simulated generation time: 1 ms per character of the prompt.
        model_clock.advance(Duration::from_millis(prompt.len() as u64));
        async move { Ok::<_, std::io::Error>(format!("{} tokens", prompt.split_whitespace().count())) }
    });
    let stack = Arc::new(
        Stack::new()
            .layer(Measure {
                clock: clock.clone(),
                calls: calls.clone(),
            })
            .service(model),
    );

    let prompts = ["summarize this page", "plan a trip", "translate hello"];
    let answers = futures::future::join_all(prompts.iter().map(|prompt| {
        let stack = stack.clone();
        async move { (prompt, stack.call(prompt.to_string()).await) }
    }))
    .await;
    for (prompt, answer) in answers {
        match answer {
            Ok((answer, took)) => println!("{prompt:>22} -> {answer} (simulated {took:?})"),
            Err(error) => println!("{prompt:>22} -> error: {error}"),
        }
    }
    println!(
        "calls={} simulated_time={:?}",
        calls.load(Ordering::Relaxed),
        clock.elapsed()
    );
}
