//! A runtime for tests that drive Tokio time by hand.

use std::future::Future;

/// Runs `test` to completion on a current-thread runtime whose clock starts paused, so
/// timeouts and sleeps take no wall time: for proptest cases and other synchronous tests
/// that cannot use `#[tokio::test(start_paused = true)]`.
///
/// # Panics
///
/// If the runtime cannot be built.
pub fn on_paused_clock<T>(test: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime builds")
        .block_on(test)
}
