//! An HTTP gateway on axum: a Backstop stack (per-user request and token budget → circuit
//! breaker → model) behind one route, with refusals mapped to 429/503, `Retry-After`, and
//! the IETF `RateLimit` / `RateLimit-Policy` and `X-RateLimit-*` headers on every response,
//! admitted or refused, requests and tokens apart.
//!
//! ```text
//! cargo run --example axum_gateway                  # listens on 127.0.0.1:3000
//! cargo run --example axum_gateway -- 127.0.0.1:0   # any free port; prints the address
//! curl -i 'http://127.0.0.1:3000/v1/complete?user=ann&prompt=hello&tokens=300'
//! ```
//!
//! A prompt of `fail` makes the model fail (502, and counted by the breaker until it opens:
//! then 503 with `Retry-After`). `tests/axum_gateway.rs` runs this binary on a loopback
//! port and checks each status and header.
//!
//! No `HandleErrorLayer` is needed: the stack's one error type is matched in the handler.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use backstop::breaker::{Breaker, BreakerLayer};
use backstop::core::http::{apply_headers, error_status};
use backstop::core::{BoxService, Error, Service, ServiceExt, Stack, service_fn};
use backstop::limit::{KeyedMultiRateLimiter, Quota, RateLimitLayer};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// The model's own failure, typed all the way to the handler.
#[derive(Debug, thiserror::Error)]
#[error("the model failed")]
struct ModelError;

#[derive(Clone, Deserialize)]
struct Ask {
    user: String,
    prompt: String,
    #[serde(default = "default_tokens")]
    tokens: u64,
}

fn default_tokens() -> u64 {
    100
}

#[derive(Serialize)]
struct Answer {
    text: String,
}

/// What the handler holds: the stack as one named type, and the budget to report from.
#[derive(Clone)]
struct Gateway {
    stack: BoxService<Ask, Answer, Error<ModelError>>,
    budget: Arc<KeyedMultiRateLimiter<String>>,
}

fn gateway() -> Result<Gateway, Box<dyn std::error::Error>> {
    // Per user: 5 requests per minute and 1,000 tokens per minute, charged together.
    let budget = Arc::new(
        KeyedMultiRateLimiter::new(vec![Quota::per_minute(5)?, Quota::per_minute(1_000)?])?
            .with_quota_names(["requests", "tokens"])?,
    );
    let breaker = Breaker::builder()
        .name("model")
        .consecutive_failures(3)
        .wait_in_open(Duration::from_secs(30))
        .build()?;
    let model = service_fn(|ask: Ask| async move {
        if ask.prompt == "fail" {
            return Err(ModelError);
        }
        Ok(Answer {
            text: format!("answer to {}", ask.prompt),
        })
    })
    .lift();
    let stack = Stack::new()
        .layer(
            RateLimitLayer::new(budget.clone())
                .key(|ask: &Ask| ask.user.clone())
                .cost(|ask: &Ask| [1, ask.tokens]),
        )
        .layer(BreakerLayer::new(breaker))
        .service(model)
        .boxed();
    Ok(Gateway { stack, budget })
}

async fn complete(State(gateway): State<Gateway>, Query(ask): Query<Ask>) -> Response {
    let user = ask.user.clone();
    let result = gateway.stack.call(ask).await;
    let quotas = gateway.budget.quota_states(&user);
    let mut headers = HeaderMap::new();
    match result {
        Ok(answer) => {
            apply_headers(&mut headers, None, &quotas);
            (StatusCode::OK, headers, Json(answer)).into_response()
        }
        Err(error) => {
            apply_headers(&mut headers, error.rejection(), &quotas);
            // A refusal, a panic or a failed backend has its status; the model's own error
            // is this application's to map.
            let status = error_status(&error).unwrap_or(StatusCode::BAD_GATEWAY);
            (status, headers, error.to_string()).into_response()
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".to_string());
    let app = Router::new()
        .route("/v1/complete", get(complete))
        .with_state(gateway()?);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    // The first line names the bound address, so a caller that asked for port 0 finds it.
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
