//! Weekly aggregation of samples, with data coverage.
//!
//! Every adapter summarises its metrics per week ending at the window's end; doing it once,
//! here, keeps the definition of a week, of coverage and of "too little data" identical across
//! technologies.

use crate::types::{Aggregation, Window};

/// Milliseconds in a week.
pub const WEEK_MS: i64 = 7 * 24 * 3600 * 1000;

/// Below this fraction of the expected samples, a week's value is reported as missing.
pub const MIN_COVERAGE: f64 = 0.5;

/// One week's summary.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WeekStat {
    /// The aggregate, or `None` when coverage was below the minimum.
    pub value: Option<f64>,
    /// Fraction (0..=1) of the expected samples that were present and finite.
    pub coverage: f64,
}

/// Summarises one metric per week, oldest first (W-N..W-1, W-1 ending at `window.end_ms`).
///
/// NaN and infinite samples count as missing. A week whose coverage is below `min_coverage`
/// gets no value: missing data must stay visible, never become zero.
pub fn weekly(
    window: &Window,
    timestamps_ms: &[i64],
    values: &[f64],
    aggregation: Aggregation,
    min_coverage: f64,
) -> Vec<WeekStat> {
    let weeks = window.weeks as usize;
    let mut buckets: Vec<Vec<f64>> = vec![Vec::new(); weeks];
    for (&t, &v) in timestamps_ms.iter().zip(values) {
        if !v.is_finite() || t >= window.end_ms {
            continue;
        }
        let back = ((window.end_ms - 1 - t) / WEEK_MS) as usize; // 0 = W-1
        if back < weeks {
            buckets[weeks - 1 - back].push(v);
        }
    }
    let step_ms = (window.step_seconds.max(1) as i64) * 1000;
    let expected = (WEEK_MS / step_ms).max(1) as f64;
    buckets
        .into_iter()
        .map(|mut samples| {
            let coverage = (samples.len() as f64 / expected).min(1.0);
            let value = if samples.is_empty() || coverage < min_coverage {
                None
            } else {
                Some(aggregate(&mut samples, aggregation))
            };
            WeekStat { value, coverage }
        })
        .collect()
}

fn aggregate(samples: &mut [f64], aggregation: Aggregation) -> f64 {
    match aggregation {
        Aggregation::Mean => samples.iter().sum::<f64>() / samples.len() as f64,
        Aggregation::Max => samples.iter().copied().fold(f64::MIN, f64::max),
        Aggregation::P95 => {
            samples.sort_by(f64::total_cmp);
            // Nearest-rank percentile.
            let rank = (0.95 * samples.len() as f64).ceil() as usize;
            samples[rank.clamp(1, samples.len()) - 1]
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn window(weeks: u32) -> Window {
        Window {
            start_ms: 0,
            end_ms: 5 * WEEK_MS,
            step_seconds: 3600,
            weeks,
        }
    }

    /// Hourly samples over five weeks with value = week index (0 = oldest).
    fn hourly() -> (Vec<i64>, Vec<f64>) {
        let mut t = Vec::new();
        let mut v = Vec::new();
        for h in 0..(5 * 7 * 24) {
            t.push(h * 3_600_000);
            v.push((h / (7 * 24)) as f64);
        }
        (t, v)
    }

    #[test]
    fn weeks_end_at_the_window_end_oldest_first() {
        let (t, v) = hourly();
        let stats = weekly(&window(4), &t, &v, Aggregation::Mean, MIN_COVERAGE);
        let values: Vec<f64> = stats.iter().map(|s| s.value.unwrap()).collect();
        assert_eq!(values, vec![1.0, 2.0, 3.0, 4.0]);
        assert!(stats.iter().all(|s| s.coverage == 1.0));
    }

    #[test]
    fn sparse_weeks_are_missing_not_zero() {
        let (mut t, mut v) = hourly();
        // Drop 70 % of the last week.
        let cut = 4 * 7 * 24 + (7 * 24 * 3 / 10);
        t.truncate(cut);
        v.truncate(cut);
        let stats = weekly(&window(4), &t, &v, Aggregation::Mean, MIN_COVERAGE);
        assert_eq!(stats[3].value, None);
        assert!((stats[3].coverage - 0.3).abs() < 0.01);
        assert_eq!(stats[2].value, Some(3.0));
    }

    #[test]
    fn non_finite_samples_count_as_missing() {
        let t = vec![4 * WEEK_MS, 4 * WEEK_MS + 1000, 4 * WEEK_MS + 2000];
        let v = vec![f64::NAN, f64::INFINITY, 0.5];
        let stats = weekly(&window(1), &t, &v, Aggregation::Max, 0.0);
        assert_eq!(stats[0].value, Some(0.5));
        assert!((stats[0].coverage - 1.0 / 168.0).abs() < 1e-9);
    }

    #[test]
    fn max_and_p95() {
        let t: Vec<i64> = (0..100).map(|i| 4 * WEEK_MS + i * 1000).collect();
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let max = weekly(&window(1), &t, &v, Aggregation::Max, 0.0);
        let p95 = weekly(&window(1), &t, &v, Aggregation::P95, 0.0);
        assert_eq!(max[0].value, Some(100.0));
        assert_eq!(p95[0].value, Some(95.0));
    }
}
