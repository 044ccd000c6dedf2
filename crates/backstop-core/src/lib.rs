//! The shared vocabulary of Backstop.
//!
//! Every Backstop crate depends on this one and on nothing else of Backstop's unless it
//! genuinely builds on another primitive. It holds:
//!
//! - [`Clock`]: monotonic time for sync hot paths, with [`SystemClock`] for production and
//!   [`ManualClock`] for exact tests and simulations (and `QuantaClock`, feature `quanta`,
//!   a cheaper counter-based clock for hot paths);
//! - [`Service`] and [`Layer`]: a transport-free composition vocabulary (a cousin of
//!   tower's) with [`service_fn`], [`layer_fn`] and the [`Stack`] builder;
//! - [`LoadSignal`] and [`LoadSnapshot`]: how busy a pool, batcher or limiter is, for the
//!   autoscaler to read;
//! - [`Histogram`]: a lock-free latency histogram for wait-time percentiles;
//! - [`duration`]: human durations (`"250ms"`, `"5m"`) for serde configs, and [`config`]:
//!   the [`ConfigError`] every config reports when validated;
//! - `testing` (feature `testing`): a Redis test context that reads `REDIS_URL`;
//! - `tower` (feature `tower`): adapters that make Backstop layers tower layers and tower
//!   services Backstop services, and back.
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
#![warn(missing_docs)]

mod clock;
pub mod config;
pub mod duration;
mod histogram;
mod layer;
mod load;
mod service;
#[cfg(feature = "testing")]
pub mod testing;
#[cfg(feature = "tower")]
pub mod tower;

#[cfg(feature = "quanta")]
pub use clock::QuantaClock;
#[cfg(feature = "tokio")]
pub use clock::TokioClock;
pub use clock::{Clock, DefaultClock, ManualClock, SystemClock};
pub use config::{ConfigError, Validate};
pub use histogram::{Histogram, HistogramSnapshot, LatencySummary};
pub use layer::{Chain, Either, Identity, Layer, LayerFn, Stack, layer_fn};
pub use load::{LoadSignal, LoadSnapshot};
pub use service::{Service, ServiceFn, service_fn};
