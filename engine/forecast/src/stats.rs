//! Small order statistics on `f64` slices (non-finite values are never passed in).

/// The `q`-quantile of `values` (linear interpolation between order statistics),
/// reordering them; `None` when empty. O(n).
pub(crate) fn quantile_in_place(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let pos = q.clamp(0.0, 1.0) * (values.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let frac = pos - lo as f64;
    let (_, at_lo, above) = values.select_nth_unstable_by(lo, f64::total_cmp);
    let at_lo = *at_lo;
    // The next order statistic is the smallest of those above.
    let next = above
        .iter()
        .copied()
        .min_by(f64::total_cmp)
        .unwrap_or(at_lo);
    Some(at_lo + (next - at_lo) * frac)
}

/// The median of `values`, reordering them; `None` when empty. O(n).
pub(crate) fn median_in_place(values: &mut [f64]) -> Option<f64> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let (_, upper, _) = values.select_nth_unstable_by(n / 2, f64::total_cmp);
    let upper = *upper;
    if n % 2 == 1 {
        return Some(upper);
    }
    let lower = values[..n / 2]
        .iter()
        .copied()
        .max_by(f64::total_cmp)
        .unwrap_or(upper);
    Some((lower + upper) / 2.0)
}

/// `P(Z > x)` for a standard normal `Z`: Abramowitz and Stegun 7.1.26 for erfc (absolute
/// error under 1.5e-7), enough for the tail probabilities of about 1 % it is used at.
pub(crate) fn normal_upper_tail(x: f64) -> f64 {
    let z = x.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * z);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erfc = poly * (-z * z).exp();
    if x >= 0.0 {
        0.5 * erfc
    } else {
        1.0 - 0.5 * erfc
    }
}

/// `P(X >= at_least)` for `X ~ Binomial(n, p)`.
pub(crate) fn binomial_at_least(n: usize, at_least: usize, p: f64) -> f64 {
    if at_least == 0 {
        return 1.0;
    }
    if at_least > n {
        return 0.0;
    }
    // The probability mass, term by term from P(X = 0), summed from `at_least` up.
    let q = 1.0 - p;
    let mut term = q.powi(n as i32);
    let mut sum = 0.0;
    for i in 0..=n {
        if i >= at_least {
            sum += term;
        }
        if i < n {
            term *= (n - i) as f64 / (i + 1) as f64 * p / q;
        }
    }
    sum.clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_medians() {
        let mut v = vec![5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(median_in_place(&mut v), Some(3.0));
        let mut v = vec![4.0, 1.0, 3.0, 2.0];
        assert_eq!(median_in_place(&mut v), Some(2.5));
        let mut v = vec![0.0, 10.0];
        assert_eq!(quantile_in_place(&mut v, 0.1), Some(1.0));
        assert_eq!(quantile_in_place(&mut [], 0.5), None);
        assert_eq!(median_in_place(&mut []), None);
    }

    #[test]
    fn normal_and_binomial_tails() {
        assert!((normal_upper_tail(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_upper_tail(1.959_964) - 0.025).abs() < 1e-6);
        assert!((normal_upper_tail(2.575_829) - 0.005).abs() < 1e-6);
        assert!((normal_upper_tail(-1.0) - 0.841_344_7).abs() < 1e-6);
        assert_eq!(binomial_at_least(2, 0, 0.3), 1.0);
        assert!((binomial_at_least(2, 1, 0.3) - 0.51).abs() < 1e-12);
        assert!((binomial_at_least(4, 3, 0.5) - 5.0 / 16.0).abs() < 1e-12);
        assert_eq!(binomial_at_least(2, 3, 0.3), 0.0);
    }
}
