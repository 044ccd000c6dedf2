//! Helpers shared by the dedup test binaries.

use std::future::Future;

/// Runs `test` to completion on a current-thread runtime whose clock starts paused, so
/// timeouts and sleeps in a proptest case take no wall time.
pub(crate) fn on_paused_clock<T>(test: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(test)
}
