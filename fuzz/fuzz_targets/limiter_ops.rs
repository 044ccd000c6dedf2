//! Operation sequences on the GCRA limiter under a manual clock. Checked: no window of
//! length w ever admits more than burst + w / T cells; a rejection's `retry_after` is
//! honest (waiting exactly that long admits the same cost); an idle limiter admits any
//! cost up to the burst; a cost above the burst is refused as such.
#![no_main]

use arbitrary::Arbitrary;
use backstop_core::ManualClock;
use backstop_limit::{CheckError, Quota, RateLimiter};
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

#[derive(Debug, Arbitrary)]
struct Input {
    rate: u8,
    burst: u8,
    steps: Vec<(u32, u8, bool)>,
}

fuzz_target!(|input: Input| {
    let rate = u64::from(input.rate % 50) + 1;
    let burst = u64::from(input.burst % 20) + 1;
    let quota = Quota::per_second(rate)
        .and_then(|q| q.with_burst(burst))
        .expect("positive rate and burst");
    let t = quota.replenish_interval().as_nanos();
    let clock = ManualClock::new();
    let limiter = RateLimiter::with_clock(quota, clock.clone());
    let mut now: u128 = 0;
    let mut admitted: Vec<(u128, u64)> = Vec::new();

    for (advance, cost, retry) in input.steps.into_iter().take(300) {
        let advance = u64::from(advance % 400_000_000);
        clock.advance(Duration::from_nanos(advance));
        now += u128::from(advance);
        let cost = u64::from(cost % 25);
        let idle = admitted
            .last()
            .is_none_or(|&(at, _)| now - at >= t * u128::from(burst));
        match limiter.check_n(cost) {
            Ok(()) => admitted.push((now, cost)),
            Err(CheckError::InsufficientCapacity { .. }) => assert!(cost > burst),
            Err(CheckError::Rejected(rejected)) => {
                assert!(cost <= burst, "cost above burst must say so");
                assert!(!idle, "an idle limiter admits {cost} <= burst {burst}");
                let wait = rejected.retry_after.expect("a rate-limit refusal says when");
                if retry {
                    clock.advance(wait);
                    now += wait.as_nanos();
                    assert!(limiter.check_n(cost).is_ok(), "retry_after was honest");
                    admitted.push((now, cost));
                }
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    for (i, &(start, _)) in admitted.iter().enumerate() {
        let mut total = 0u128;
        for &(at, cost) in &admitted[i..] {
            total += u128::from(cost);
            assert!(total <= u128::from(burst) + (at - start) / t, "over the quota");
        }
    }
});
