//! Weekly aggregation of samples, with data coverage.
//!
//! Every adapter summarises its metrics per week ending at the window's end; doing it once,
//! here, keeps the definition of a week, of coverage and of "too little data" identical across
//! technologies.

use crate::types::{Aggregation, Series, Window};

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

/// Summarises one metric per week, oldest first, from either shape the host sends: raw samples
/// (as [`weekly`]) or points the source already summarised per week (`sample_counts` set), whose
/// coverage is their sample count over the samples a week holds at the window's step.
///
/// Fails when the columns disagree in length, naming the metric.
pub fn weekly_series(
    window: &Window,
    series: &Series,
    aggregation: Aggregation,
    min_coverage: f64,
) -> Result<Vec<WeekStat>, String> {
    if series.timestamps_ms.len() != series.values.len() {
        return Err(format!(
            "metric {}: {} timestamps but {} values",
            series.metric,
            series.timestamps_ms.len(),
            series.values.len()
        ));
    }
    let Some(counts) = &series.sample_counts else {
        return Ok(weekly(
            window,
            &series.timestamps_ms,
            &series.values,
            aggregation,
            min_coverage,
        ));
    };
    if counts.len() != series.values.len() {
        return Err(format!(
            "metric {}: {} weekly points but {} sample counts",
            series.metric,
            series.values.len(),
            counts.len()
        ));
    }
    let weeks = window.weeks as usize;
    let step_ms = (window.step_seconds.max(1) as i64) * 1000;
    let expected = (WEEK_MS / step_ms).max(1) as f64;
    let mut stats = vec![
        WeekStat {
            value: None,
            coverage: 0.0,
        };
        weeks
    ];
    for ((&t, &v), &count) in series.timestamps_ms.iter().zip(&series.values).zip(counts) {
        // A point is stamped with its week's end; W-1 ends at the window's end.
        if t > window.end_ms || (window.end_ms - t) % WEEK_MS != 0 {
            continue;
        }
        let back = ((window.end_ms - t) / WEEK_MS) as usize;
        if back >= weeks {
            continue;
        }
        let coverage = (f64::from(count) / expected).min(1.0);
        stats[weeks - 1 - back] = WeekStat {
            value: (count > 0 && v.is_finite() && coverage >= min_coverage).then_some(v),
            coverage,
        };
    }
    Ok(stats)
}

fn aggregate(samples: &mut [f64], aggregation: Aggregation) -> f64 {
    match aggregation {
        Aggregation::Mean => samples.iter().sum::<f64>() / samples.len() as f64,
        Aggregation::Max => samples.iter().copied().fold(f64::MIN, f64::max),
        Aggregation::P95 => {
            // Linear interpolation between ranks, as PromQL's `quantile_over_time`, so a week
            // summarised in the TSDB and one summarised here agree.
            samples.sort_by(f64::total_cmp);
            let rank = 0.95 * (samples.len() - 1) as f64;
            let lower = rank.floor() as usize;
            let upper = (lower + 1).min(samples.len() - 1);
            let weight = rank - lower as f64;
            samples[lower] * (1.0 - weight) + samples[upper] * weight
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
        // Rank 0.95 × 99 = 94.05 between 95 and 96.
        assert!((p95[0].value.unwrap() - 95.05).abs() < 1e-9);
    }

    #[test]
    fn summarised_points_map_to_their_weeks_with_coverage() {
        let w = window(4);
        let series = Series {
            metric: "cpu".into(),
            // W-3 and W-1 only; W-1 at half coverage (84 of 168 hourly samples).
            timestamps_ms: vec![3 * WEEK_MS, 5 * WEEK_MS],
            values: vec![0.3, 0.6],
            sample_counts: Some(vec![168, 84]),
        };
        let stats = weekly_series(&w, &series, Aggregation::Mean, MIN_COVERAGE).unwrap();
        assert_eq!(stats[0].value, None);
        assert_eq!(stats[0].coverage, 0.0);
        assert_eq!(stats[1].value, Some(0.3));
        assert_eq!(stats[1].coverage, 1.0);
        assert_eq!(stats[3].value, Some(0.6));
        assert_eq!(stats[3].coverage, 0.5);
        let thin = Series {
            sample_counts: Some(vec![168, 83]),
            ..series
        };
        let stats = weekly_series(&w, &thin, Aggregation::Mean, MIN_COVERAGE).unwrap();
        assert_eq!(
            stats[3].value, None,
            "below the coverage floor the week is missing"
        );
    }

    #[test]
    fn both_shapes_agree() {
        let (t, v) = hourly();
        let raw = Series {
            metric: "cpu".into(),
            timestamps_ms: t,
            values: v,
            sample_counts: None,
        };
        let summarised = Series {
            metric: "cpu".into(),
            timestamps_ms: (2..=5).map(|k| k * WEEK_MS).collect(),
            values: vec![1.0, 2.0, 3.0, 4.0],
            sample_counts: Some(vec![168; 4]),
        };
        let w = window(4);
        assert_eq!(
            weekly_series(&w, &raw, Aggregation::Mean, MIN_COVERAGE).unwrap(),
            weekly_series(&w, &summarised, Aggregation::Mean, MIN_COVERAGE).unwrap()
        );
    }

    #[test]
    fn mismatched_columns_are_an_error_naming_the_metric() {
        let bad = Series {
            metric: "iops".into(),
            timestamps_ms: vec![WEEK_MS],
            values: vec![0.1],
            sample_counts: Some(vec![]),
        };
        let error = weekly_series(&window(4), &bad, Aggregation::Mean, MIN_COVERAGE).unwrap_err();
        assert!(error.contains("iops"), "{error}");
    }
}
