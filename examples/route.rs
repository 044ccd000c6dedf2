//! Two simulated providers and three keys; one provider fails mid-run. Prints where the
//! requests went in each phase and the router's stats.
//!
//! `cargo run --example route`

use backstop::core::Error;
use backstop::route::{ErrorClass, RouteConfig, RouteHints, TargetConfig, standard_class};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(Debug)]
struct Status(u16);

fn classify(error: &Error<Status>) -> ErrorClass {
    match error.inner() {
        Some(Status(429)) => ErrorClass::RateLimited { retry_after: None },
        Some(Status(400..=428)) => ErrorClass::Fatal,
        _ => standard_class(error),
    }
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    let router = RouteConfig {
        targets: vec![
            TargetConfig {
                provider: "openai".into(),
                key: "key-1".into(),
                tokens_per_minute: Some(60_000),
                ..TargetConfig::named("openai/key-1")
            },
            TargetConfig {
                provider: "openai".into(),
                key: "key-2".into(),
                tokens_per_minute: Some(20_000),
                ..TargetConfig::named("openai/key-2")
            },
            TargetConfig {
                provider: "anthropic".into(),
                key: "key-1".into(),
                group: 1, // the fallback provider
                ..TargetConfig::named("anthropic/key-1")
            },
        ],
        timeout: Some(Duration::from_secs(20)),
        ..RouteConfig::default()
    }
    .build()
    .expect("valid config");

    let openai_down = Arc::new(AtomicBool::new(false));
    for (phase, down) in [
        ("openai healthy", false),
        ("openai failing", true),
        ("openai back", false),
    ] {
        openai_down.store(down, Ordering::Relaxed);
        let mut went: BTreeMap<String, u32> = BTreeMap::new();
        let mut failed = 0;
        for _ in 0..100 {
            let down = openai_down.clone();
            let answer = router
                .run(&RouteHints::new().tokens(700), &classify, |target| {
                    let (provider, name) =
                        (target.provider().to_string(), target.name().to_string());
                    let down = down.load(Ordering::Relaxed);
                    async move {
                        let latency = if provider == "openai" { 80 } else { 150 };
                        tokio::time::sleep(Duration::from_millis(latency)).await;
                        if down && provider == "openai" {
                            Err(Error::Inner(Status(503)))
                        } else {
                            Ok(name)
                        }
                    }
                })
                .await;
            match answer {
                Ok(name) => *went.entry(name).or_default() += 1,
                Err(_) => failed += 1,
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        println!("{phase}: {went:?}, failed: {failed}");
    }
    let stats = router.stats();
    for t in &stats.targets {
        println!(
            "{:16} chosen {:3}  succeeded {:3}  server errors {:2}  cooldowns {}  skipped (budget) {:2}  ewma {:?}",
            t.name,
            t.chosen,
            t.succeeded,
            t.failed.server_error,
            t.cooldowns,
            t.skipped_no_budget,
            t.ewma_latency
        );
    }
    println!(
        "fallbacks {}, exhausted {}",
        stats.fallbacks, stats.exhausted
    );
}
