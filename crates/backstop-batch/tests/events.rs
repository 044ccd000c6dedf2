//! The batcher reports failures and state changes as tracing events.

use backstop_batch::{BatchError, Batcher};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test(start_paused = true)]
async fn failures_and_close_are_reported() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

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
