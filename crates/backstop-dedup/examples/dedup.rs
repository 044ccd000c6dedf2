//! 100 agents ask the same question at once; the backend is called once.
//! Then an agent retries within the duplicate-detection window and gets the first
//! answer without a second call.
//!
//! `cargo run -p backstop-dedup --example dedup`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backstop_dedup::{DedupWindow, Source, WindowConfig};

const AGENTS: usize = 100;

/// Stands in for a slow LLM call.
async fn ask_model(question: String, calls: Arc<AtomicU64>) -> Result<String, String> {
    calls.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(format!("answer to {question:?}"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = WindowConfig::builder()
        .ttl(Duration::from_secs(60))
        .max_entries(10_000)
        .build()?;
    let window: DedupWindow<String, String, String> = DedupWindow::new(config)?;
    let calls = Arc::new(AtomicU64::new(0));
    let question = "What is the refund policy for order 1234?".to_string();

    let agents: Vec<_> = (0..AGENTS)
        .map(|_| {
            let window = window.clone();
            let calls = calls.clone();
            let question = question.clone();
            tokio::spawn(async move {
                let ask = question.clone();
                window.work(question, move || ask_model(ask, calls)).await
            })
        })
        .collect();
    let mut answered = 0;
    for agent in agents {
        let outcome = agent.await??;
        answered += usize::from(outcome.value.starts_with("answer"));
    }
    println!(
        "agents_answered workload=100_agents_one_question contender=backstop value={answered}"
    );
    println!(
        "backend_calls workload=100_agents_one_question contender=backstop value={}",
        calls.load(Ordering::SeqCst)
    );

    let retry = window
        .work(question.clone(), {
            let calls = calls.clone();
            move || ask_model(question, calls)
        })
        .await?;
    println!(
        "retry_from_window workload=retry_within_ttl contender=backstop value={}",
        retry.source == Source::Window
    );
    println!(
        "stats workload=100_agents_one_question contender=backstop value={}",
        serde_json::to_string(&window.stats())?
    );
    Ok(())
}
