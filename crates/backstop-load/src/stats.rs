//! The statistics behind regression detection: Mann-Whitney U, a bootstrap of a quantile
//! ratio, and the two-proportion z-test.

/// The standard normal CDF.
pub(crate) fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// Two-sided p-value of a standard normal statistic.
pub(crate) fn two_sided_p(z: f64) -> f64 {
    (2.0 * (1.0 - normal_cdf(z.abs()))).clamp(0.0, 1.0)
}

/// The complementary error function, with fractional error below 1.2e-7 everywhere
/// (Numerical Recipes' Chebyshev fit).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let value = t * poly.exp();
    if x >= 0.0 { value } else { 2.0 - value }
}

/// Mann-Whitney U test of `b` against `a` (normal approximation with tie correction).
/// Returns the z statistic (positive when `b` tends to be larger) and the two-sided p-value.
pub(crate) fn mann_whitney(a: &[u64], b: &[u64]) -> (f64, f64) {
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    if a.is_empty() || b.is_empty() {
        return (0.0, 1.0);
    }
    let mut all: Vec<(u64, bool)> = a
        .iter()
        .map(|v| (*v, false))
        .chain(b.iter().map(|v| (*v, true)))
        .collect();
    all.sort_unstable_by_key(|(v, _)| *v);
    let n = n1 + n2;
    let mut rank_sum_b = 0.0;
    let mut ties = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j < all.len() && all[j].0 == all[i].0 {
            j += 1;
        }
        // Tied values share the mean of the ranks they span (ranks are 1-based).
        let mean_rank = (i + 1 + j) as f64 / 2.0;
        let in_b = all[i..j].iter().filter(|(_, from_b)| *from_b).count() as f64;
        rank_sum_b += mean_rank * in_b;
        let t = (j - i) as f64;
        ties += t * t * t - t;
        i = j;
    }
    let u = rank_sum_b - n2 * (n2 + 1.0) / 2.0;
    let mean = n1 * n2 / 2.0;
    let variance = n1 * n2 / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)));
    if variance <= 0.0 {
        return (0.0, 1.0);
    }
    let diff = u - mean;
    // Continuity correction toward zero.
    let corrected = diff.signum() * (diff.abs() - 0.5).max(0.0);
    let z = corrected / variance.sqrt();
    (z, two_sided_p(z))
}

/// The `q`-quantile of `values` (nearest rank), reordering them; 0 when empty.
pub(crate) fn quantile(values: &mut [u64], q: f64) -> u64 {
    if values.is_empty() {
        return 0;
    }
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    *values.select_nth_unstable(rank - 1).1
}

/// A percentile-bootstrap confidence interval (level `1 - alpha`) of
/// `quantile(b) / quantile(a)`, from `resamples` resamples drawn with `rng`.
pub(crate) fn bootstrap_quantile_ratio(
    a: &[u64],
    b: &[u64],
    q: f64,
    resamples: u32,
    alpha: f64,
    rng: &mut fastrand::Rng,
) -> Option<(f64, f64)> {
    if a.is_empty() || b.is_empty() || resamples == 0 {
        return None;
    }
    let mut scratch_a = vec![0; a.len()];
    let mut scratch_b = vec![0; b.len()];
    let mut ratios: Vec<f64> = (0..resamples)
        .map(|_| {
            for slot in scratch_a.iter_mut() {
                *slot = a[rng.usize(..a.len())];
            }
            for slot in scratch_b.iter_mut() {
                *slot = b[rng.usize(..b.len())];
            }
            // +1 µs keeps the ratio finite for zero latencies.
            (quantile(&mut scratch_b, q) as f64 + 1.0) / (quantile(&mut scratch_a, q) as f64 + 1.0)
        })
        .collect();
    ratios.sort_unstable_by(f64::total_cmp);
    let at = |p: f64| {
        let index = ((p * (ratios.len() - 1) as f64).round() as usize).min(ratios.len() - 1);
        ratios[index]
    };
    Some((at(alpha / 2.0), at(1.0 - alpha / 2.0)))
}

/// Two-proportion z-test of `x2 / n2` against `x1 / n1`: z (positive when the second is
/// larger) and the two-sided p-value.
pub(crate) fn two_proportions(x1: u64, n1: u64, x2: u64, n2: u64) -> (f64, f64) {
    if n1 == 0 || n2 == 0 {
        return (0.0, 1.0);
    }
    let (n1, n2) = (n1 as f64, n2 as f64);
    let (p1, p2) = (x1 as f64 / n1, x2 as f64 / n2);
    let pooled = (x1 as f64 + x2 as f64) / (n1 + n2);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    if se == 0.0 {
        return (0.0, 1.0);
    }
    let z = (p2 - p1) / se;
    (z, two_sided_p(z))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_cdf_matches_known_values() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_cdf(1.959_964) - 0.975).abs() < 1e-6);
        assert!((normal_cdf(-2.575_829) - 0.005).abs() < 1e-6);
    }

    #[test]
    fn mann_whitney_matches_a_hand_computed_case() {
        // a = 1..=5, b = 6..=10: U_b = 25, mean 12.5, variance 22.9167.
        let a = [1, 2, 3, 4, 5];
        let b = [6, 7, 8, 9, 10];
        let (z, p) = mann_whitney(&a, &b);
        assert!((z - 12.0 / 22.916_667f64.sqrt()).abs() < 1e-6, "{z}");
        assert!(p < 0.02);
        let (z, p) = mann_whitney(&a, &a);
        assert!(z == 0.0 && p > 0.999, "{z} {p}");
        assert_eq!(mann_whitney(&[], &a), (0.0, 1.0));
        // All ties: no variance, no evidence.
        assert_eq!(mann_whitney(&[3, 3], &[3, 3]), (0.0, 1.0));
    }

    #[test]
    fn two_proportions_flags_a_clear_difference_only() {
        let (z, p) = two_proportions(10, 1000, 50, 1000);
        assert!(z > 0.0 && p < 1e-6);
        assert!(two_proportions(10, 1000, 11, 1000).1 > 0.5);
        assert_eq!(two_proportions(0, 1000, 0, 1000), (0.0, 1.0));
        assert_eq!(two_proportions(0, 0, 3, 10), (0.0, 1.0));
    }

    #[test]
    fn bootstrap_interval_brackets_the_true_ratio() {
        let a: Vec<u64> = (1..=1000).collect();
        let b: Vec<u64> = a.iter().map(|v| v * 2).collect();
        let mut rng = fastrand::Rng::with_seed(3);
        let (low, high) = bootstrap_quantile_ratio(&a, &b, 0.99, 300, 0.05, &mut rng).unwrap();
        assert!(
            low < 2.0 && 2.0 < high && low > 1.8 && high < 2.2,
            "{low} {high}"
        );
    }
}
