//! Model test of shared streams: readers arrive at random times, read at random paces and
//! some leave mid-stream, over upstreams that may fail, under either lag policy and a
//! small buffer bound. Every reader that stays must see a prefix of the one true sequence
//! from its first chunk, ending as the upstream did (or with a lag error under
//! `LagPolicy::Fail`), and nothing may be left behind: no reader, byte or key.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use backstop_core::{Error, RejectKind};
use backstop_dedup::{LagPolicy, StreamGroup, StreamShareConfig};
use backstop_testkit::on_paused_clock;
use futures::StreamExt;
use proptest::prelude::*;

type E = Error<u32>;

#[derive(Debug, Clone)]
struct Reader {
    arrive_ms: u64,
    pace_ms: u64,
    leave_after: Option<usize>,
}

fn reader() -> impl Strategy<Value = Reader> {
    (0..200u64, 0..30u64, prop::option::of(0..8usize)).prop_map(
        |(arrive_ms, pace_ms, leave_after)| Reader {
            arrive_ms,
            pace_ms,
            leave_after,
        },
    )
}

#[derive(Debug, PartialEq)]
enum End {
    Clean,
    Failed(u32),
    Lagged,
    Left,
}

fn run(
    readers: Vec<Reader>,
    gaps_ms: Vec<u64>,
    fail_at: Option<usize>,
    lag: LagPolicy,
    bound: usize,
) -> Result<(), TestCaseError> {
    on_paused_clock(async move {
        let group: StreamGroup<u8, u64, E> = StreamGroup::builder()
            .config(StreamShareConfig {
                max_buffered_bytes: bound,
                lag,
                ..StreamShareConfig::default()
            })
            .weigher(|_: &u64| 1)
            .build()
            .unwrap();
        let opened = Arc::new(AtomicUsize::new(0));
        let tasks = readers.iter().cloned().map(|reader| {
            let group = group.clone();
            let gaps = gaps_ms.clone();
            let opened = opened.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(reader.arrive_ms)).await;
                let open = move || async move {
                    opened.fetch_add(1, SeqCst);
                    let chunks = futures::stream::iter(gaps.into_iter().enumerate()).then(
                        move |(i, gap)| async move {
                            tokio::time::sleep(Duration::from_millis(gap)).await;
                            if Some(i) == fail_at {
                                Err(Error::Inner(i as u32))
                            } else {
                                Ok(i as u64)
                            }
                        },
                    );
                    Ok(chunks)
                };
                let mut stream = group.share(0, open);
                let mut got = Vec::new();
                let end = loop {
                    if reader.leave_after == Some(got.len()) {
                        break End::Left;
                    }
                    match stream.next().await {
                        None => break End::Clean,
                        Some(Ok(chunk)) => got.push(chunk),
                        Some(Err(error)) => match (error.inner(), error.rejection()) {
                            (Some(at), _) => break End::Failed(*at),
                            (_, Some(r)) if r.kind == RejectKind::QueueFull => break End::Lagged,
                            _ => panic!("unexpected error {error:?}"),
                        },
                    }
                    tokio::time::sleep(Duration::from_millis(reader.pace_ms)).await;
                };
                (got, end)
            })
        });
        let results = futures::future::join_all(tasks).await;
        let n = gaps_ms.len();
        for result in results {
            let (got, end) = result.unwrap();
            let expected: Vec<u64> = (0..got.len() as u64).collect();
            prop_assert_eq!(&got, &expected, "a prefix of the sequence, from chunk 0");
            match end {
                End::Clean => {
                    prop_assert!(fail_at.is_none());
                    prop_assert_eq!(got.len(), n);
                }
                End::Failed(at) => {
                    prop_assert_eq!(Some(at as usize), fail_at);
                    prop_assert_eq!(
                        got.len(),
                        at as usize,
                        "the error after every chunk before it"
                    );
                }
                End::Lagged => prop_assert_eq!(lag, LagPolicy::Fail),
                End::Left => {}
            }
        }
        let stats = group.stats();
        prop_assert_eq!(stats.readers, 0);
        prop_assert_eq!(stats.bytes_buffered, 0);
        prop_assert_eq!(stats.in_flight, 0);
        // A stream every reader left before polling it never opened its upstream.
        prop_assert!(opened.load(SeqCst) as u64 <= stats.streams + stats.unshared);
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn every_staying_reader_sees_the_true_sequence_and_nothing_leaks(
        readers in prop::collection::vec(reader(), 1..12),
        gaps in prop::collection::vec(0..40u64, 0..10),
        fail in prop::option::of(0..10usize),
        wait in any::<bool>(),
        bound in 1..6usize,
    ) {
        let fail_at = fail.filter(|at| *at < gaps.len());
        let lag = if wait { LagPolicy::Wait } else { LagPolicy::Fail };
        run(readers, gaps, fail_at, lag, bound)?;
    }
}
