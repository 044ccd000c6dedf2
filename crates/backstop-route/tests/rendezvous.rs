//! Sticky keys against a reference: rendezvous hashing moves only the keys of a removed
//! target, and every key of the rest stays where it was.

use backstop_route::{RouteConfig, RouteHints, Router, TargetConfig};
use proptest::prelude::*;

fn router(weights: &[(usize, u32)]) -> Router {
    RouteConfig {
        targets: weights
            .iter()
            .map(|&(id, weight)| TargetConfig {
                weight,
                ..TargetConfig::named(format!("target-{id}"))
            })
            .collect(),
        ..RouteConfig::default()
    }
    .build()
    .unwrap()
}

fn home(router: &Router, key: u32) -> String {
    router
        .pick(&RouteHints::new().sticky(key))
        .unwrap()
        .name()
        .to_string()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn removing_a_target_moves_only_its_keys(
        weights in proptest::collection::vec(1u32..20, 2..10),
        removed in any::<proptest::sample::Index>(),
    ) {
        let all: Vec<(usize, u32)> = weights.iter().copied().enumerate().collect();
        let gone = removed.index(all.len());
        let rest: Vec<(usize, u32)> = all.iter().copied().filter(|(id, _)| *id != gone).collect();
        let (before, after) = (router(&all), router(&rest));
        let gone_name = format!("target-{gone}");
        for key in 0..300 {
            let (was, is) = (home(&before, key), home(&after, key));
            if was == gone_name {
                prop_assert_ne!(is, gone_name.clone());
            } else {
                prop_assert_eq!(was, is, "key {} moved although its target stayed", key);
            }
        }
    }
}

#[test]
fn keys_spread_by_weight() {
    let router = router(&[(0, 1), (1, 3)]);
    let heavy = (0..20_000)
        .filter(|&key| home(&router, key) == "target-1")
        .count() as f64
        / 20_000.0;
    assert!((heavy - 0.75).abs() < 0.02, "heavy share {heavy:.3}");
}
