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
}
