//! 100 agents ask the same question at once and the backend is called once; then a
//! retried tool call inside the idempotency window gets the first answer again.
//!
//! `cargo run --release --example dedup`

use backstop::dedup::{DedupWindow, DedupWindowConfig, Group, Source};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A pretend LLM call: 50 ms, counted.
async fn ask(question: String, calls: Arc<AtomicU64>) -> Result<Arc<str>, String> {
    calls.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(Arc::from(format!("the answer to '{question}' is 42")))
}

#[tokio::main]
async fn main() {
    let calls = Arc::new(AtomicU64::new(0));

    // Singleflight: concurrent identical requests share one execution.
    let group: Group<String, Arc<str>, String> = Group::new();
    let agents: Vec<_> = (0..100)
        .map(|_| {
            let (group, calls) = (group.clone(), calls.clone());
            tokio::spawn(async move {
                let question = "what is the meaning of life".to_string();
                group
                    .work(question.clone(), move || ask(question, calls))
                    .await
            })
        })
        .collect();
    let mut joined = 0;
    for agent in agents {
        let outcome = agent
            .await
            .expect("agents do not panic")
            .expect("the call succeeds");
        if outcome.source == Source::Joined {
            joined += 1;
        }
    }
    println!(
        "100 agents asked at once: backend calls={} (joined={joined}, in flight now={})",
        calls.load(Ordering::Relaxed),
        group.in_flight()
    );

    // Idempotency window: a retry with the same key inside the TTL gets the first result.
    let window: DedupWindow<String, Arc<str>, String> = DedupWindow::new(
        DedupWindowConfig::builder()
            .ttl(Duration::from_secs(60))
            .max_entries(10_000)
            .build()
            .expect("valid window config"),
    )
    .expect("valid window config");
    for attempt in 1..=3 {
        let calls = calls.clone();
        let outcome = window
            .work("tool-call-7f3a".to_string(), move || {
                ask("book the flight".to_string(), calls)
            })
            .await
            .expect("the call succeeds");
        println!(
            "attempt {attempt} with idempotency key tool-call-7f3a: {:?} -> {}",
            outcome.source, outcome.value
        );
    }
    println!(
        "backend calls in total={} stats={}",
        calls.load(Ordering::Relaxed),
        serde_json::to_string(&window.stats()).unwrap_or_default()
    );
}
