//! The batcher reports failures and state changes as tracing events.

use backstop_batch::{BatchError, Batcher};
use backstop_testkit::logs::capture_logs;
use std::time::Duration;

#[tokio::test(start_paused = true)]
async fn failures_and_close_are_reported() {
    let (captured, _guard) = capture_logs(tracing::Level::DEBUG);

    let batcher = Batcher::builder(|batch: Vec<u32>| async move {
        match batch[0] {
            0 => panic!("handler bug"),
            1 => Err(std::io::Error::other("backend down")),
            _ => Ok(Vec::<u32>::new()),
        }
    })
    .max_batch_size(1)
    .queue_timeout(Duration::from_secs(1))
    .build()
    .unwrap();
    for n in 0..3 {
        assert!(batcher.submit(n).await.is_err());
    }
    batcher.close();
    assert!(matches!(batcher.submit(3).await, Err(BatchError::Closed)));

    let text = captured.text();
    assert!(
        text.contains("ERROR") && text.contains("batch handler panicked"),
        "{text}"
    );
    assert!(
        text.contains("batch handler failed") && text.contains("backend down"),
        "{text}"
    );
    assert!(
        text.contains("wrong result count") && text.contains("expected=1 got=0"),
        "{text}"
    );
    assert!(text.contains("batcher closed"), "{text}");
}
