//! The shared vocabulary of Backstop.
//!
//! Every Backstop crate depends on this one and on nothing else of Backstop's unless it
//! genuinely builds on another primitive. It holds:
//!
//! - [`Clock`]: monotonic time for sync hot paths, with [`SystemClock`] for production and
//!   [`ManualClock`] for exact tests and simulations (and `QuantaClock`, feature `quanta`,
//!   a cheaper counter-based clock for hot paths);
//! - [`Service`] and [`Layer`]: a transport-free composition vocabulary (a cousin of
//!   tower's) with [`service_fn`], [`layer_fn`], the [`Stack`] builder, [`ServiceExt`]
//!   (`map_err`, `map_response`, `lift`, `boxed`) and [`BoxService`] to name a stack;
//! - [`Rejected`]: the one refusal every primitive returns, with [`RejectKind`] and
//!   `retry_after`, and [`QuotaState`] for rate-limit headers; [`RetryHint`]: the same said
//!   by a service's own error (a provider's 429 and `Retry-After`); [`Error`] and
//!   [`StackError`]: one error type through any stack of layers, in any order (the decision
//!   is recorded in `ARCHITECTURE.md`); [`Panicked`], [`contain`] and [`contain_future`] to
//!   contain user code;
//! - [`time`]: saturating deadline arithmetic; `deadline` (feature `tokio`): one deadline per
//!   request that every wait inside respects; [`config`] bounds (`MAX_DURATION`,
//!   `ensure_at_most`); [`StripedCounters`] for stats on hot paths and [`counter_set!`] off them; [`layer_span!`],
//!   [`in_span`], [`record_outcome`] and [`key_hash`]: every layer's one span per call;
//! - `http` (feature `http`): refusals as statuses, `Retry-After` and rate-limit headers;
//! - [`LoadSignal`] and [`LoadSnapshot`]: how busy a pool, batcher or limiter is, for the
//!   autoscaler to read;
//! - [`Histogram`]: a lock-free latency histogram for wait-time percentiles;
//! - [`duration`]: human durations (`"250ms"`, `"5m"`) for serde configs, and [`config`]:
//!   the [`ConfigError`] every config reports when validated, with [`config_setters!`] for
//!   the builders' one-field setters;
//! - `tower` (feature `tower`): adapters that make Backstop layers tower layers and tower
//!   services Backstop services, and back; `poll_ready` follows [`Service::readiness`].
//!
//! A stack in one screen: a layer that counts calls, around a model service, shared by
//! every caller through an `Arc`.
//!
//! ```
//! use backstop_core::{Layer, Service, Stack, service_fn};
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//!
//! #[derive(Clone, Default)]
//! struct CountCalls(Arc<AtomicUsize>);
//! struct Counted<S>(S, Arc<AtomicUsize>);
//!
//! impl<S> Layer<S> for CountCalls {
//!     type Service = Counted<S>;
//!     fn layer(&self, inner: S) -> Counted<S> {
//!         Counted(inner, self.0.clone())
//!     }
//! }
//!
//! impl<S: Service<String>> Service<String> for Counted<S> {
//!     type Response = S::Response;
//!     type Error = S::Error;
//!     async fn call(&self, prompt: String) -> Result<S::Response, S::Error> {
//!         self.1.fetch_add(1, Ordering::Relaxed);
//!         self.0.call(prompt).await
//!     }
//! }
//!
//! let counter = CountCalls::default();
//! let model = service_fn(|prompt: String| async move {
//!     Ok::<_, std::io::Error>(format!("echo: {prompt}"))
//! });
//! let stack = Arc::new(Stack::new().layer(counter.clone()).service(model));
//! # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! # rt.block_on(async {
//! assert_eq!(stack.call("hi".into()).await.unwrap(), "echo: hi");
//! # });
//! assert_eq!(counter.0.load(Ordering::Relaxed), 1);
//! ```

#![forbid(unsafe_code)]
// docs.rs builds with `--cfg docsrs` on nightly: every item is labelled with the features it
// needs (rustdoc's `doc_cfg`, which now includes what `doc_auto_cfg` did).
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

mod boxed;
pub mod classify;
mod clock;
pub mod config;
mod counter;
#[cfg(feature = "tokio")]
pub mod deadline;
pub mod duration;
mod error;
mod ext;
mod histogram;
#[cfg(feature = "http")]
pub mod http;
mod layer;
mod load;
mod panicked;
mod rejected;
mod retry_hint;
mod service;
mod span;
pub mod time;
#[cfg(feature = "tower")]
pub mod tower;

pub use boxed::{BoxFuture, BoxService};
#[cfg(feature = "quanta")]
pub use clock::QuantaClock;
#[cfg(feature = "tokio")]
pub use clock::TokioClock;
pub use clock::{Clock, DefaultClock, ManualClock, SystemClock};
pub use config::{ConfigError, Validate};
pub use counter::StripedCounters;
pub use error::{BackendError, BoxError, Error, StackError};
pub use ext::{Lifted, MapErr, MapResponse, ServiceExt};
pub use histogram::{Histogram, HistogramSnapshot, LatencySummary};
pub use layer::{Chain, Either, Identity, Layer, LayerFn, Stack, layer_fn};
pub use load::{LoadSignal, LoadSnapshot};
pub use panicked::{Contained, Panicked, contain, contain_future};
pub use rejected::{QuotaState, RejectKind, Rejected};
pub use retry_hint::RetryHint;
pub use service::{Service, ServiceFn, service_fn};
pub use span::{in_span, key_hash, record_key_hash, record_outcome, spans_enabled};

/// What the crate's macros reach; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use tracing;
}
