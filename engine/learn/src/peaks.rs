//! Peak features: what weekly means hide.
//!
//! A database whose CPU averages 45 % and reaches 95 % for an hour every afternoon looks like
//! one that sits at 45 % all day in a fingerprint of weekly means; halving either is not the
//! same decision. For every ratio metric the engine also asks the source for each week's 99th
//! percentile, its busiest 1-hour mean and the share of it spent at or above
//! [`NEAR_SATURATION`](setpoint_core::NEAR_SATURATION); over a four-week window those become six features per metric:
//!
//! | feature | what |
//! |---|---|
//! | `<m>_p99` | the highest weekly 99th percentile |
//! | `<m>_peak1h` | the busiest 1-hour mean of the window |
//! | `<m>_near_saturation` | the mean share of the weeks at or above [`NEAR_SATURATION`](setpoint_core::NEAR_SATURATION) |
//! | `<m>_growth` | compound weekly growth rate of the weekly means, first to last week |
//! | `<m>_weeks_to_saturation` | weeks until the peak reaches 100 % at the means' linear trend (at most [`HORIZON_CAP_WEEKS`]) |
//! | `<m>_peak_coverage` | the mean share of samples present: 0 says the peaks are unknown |
//!
//! Missing data is explicit: when no week has peaks, the peak features fall back to the highest
//! weekly mean and `<m>_peak_coverage` is 0, so the model sees both that they are missing and a
//! value that errs towards "busy" (the highest mean is a lower bound of the true peak); the
//! safety floor independently forbids shrinking a dimension whose peaks are unknown.

use std::collections::BTreeMap;

use setpoint_core::{Feature, WeekPeak};

/// Suffixes of the peak features of one metric, in schema order.
pub const PEAK_FEATURES: [&str; 6] = [
    "p99",
    "peak1h",
    "near_saturation",
    "growth",
    "weeks_to_saturation",
    "peak_coverage",
];

/// The projection's cap: a metric flat or falling is this many weeks from saturation.
pub const HORIZON_CAP_WEEKS: f64 = 52.0;

/// A weekly mean below this share of the capacity has no meaningful growth rate.
const GROWTH_FLOOR: f64 = 0.02;

/// The names of `metric`'s peak features, in schema order.
pub fn names(metric: &str) -> impl Iterator<Item = String> + '_ {
    PEAK_FEATURES.iter().map(move |s| format!("{metric}_{s}"))
}

/// The six peak features of one metric over a window's weeks (oldest first), always finite.
pub fn window(weeks: &[WeekPeak]) -> [f64; 6] {
    let means: Vec<(usize, f64)> = weeks
        .iter()
        .enumerate()
        .filter_map(|(i, w)| w.mean.filter(|v| v.is_finite()).map(|v| (i, v)))
        .collect();
    let max_of = |f: fn(&WeekPeak) -> Option<f64>| {
        weeks
            .iter()
            .filter_map(f)
            .filter(|v| v.is_finite())
            .fold(None, |acc: Option<f64>, v| {
                Some(acc.map_or(v, |a| a.max(v)))
            })
    };
    let highest_mean = means.iter().map(|&(_, v)| v).fold(0.0, f64::max);
    let p99 = max_of(|w| w.p99);
    let peak1h = max_of(|w| w.max_hourly);
    let near: Vec<f64> = weeks
        .iter()
        .filter_map(|w| w.near_saturation)
        .filter(|v| v.is_finite())
        .collect();
    let near_saturation = if near.is_empty() {
        0.0
    } else {
        near.iter().sum::<f64>() / near.len() as f64
    };
    let growth = match (means.first(), means.last()) {
        (Some(&(a, first)), Some(&(b, last))) if b > a && first >= GROWTH_FLOOR => {
            ((last.max(0.0) / first).powf(1.0 / (b - a) as f64) - 1.0).clamp(-1.0, 1.0)
        }
        _ => 0.0,
    };
    let peak = p99.into_iter().chain(peak1h).fold(highest_mean, f64::max);
    let trend = if means.len() >= 2 {
        // Least squares over the present weeks, spaced by their week indices.
        let n = means.len() as f64;
        let mx = means.iter().map(|&(i, _)| i as f64).sum::<f64>() / n;
        let my = means.iter().map(|&(_, v)| v).sum::<f64>() / n;
        let (num, den) = means.iter().fold((0.0, 0.0), |(num, den), &(i, v)| {
            let dx = i as f64 - mx;
            (num + dx * (v - my), den + dx * dx)
        });
        if den > 0.0 { num / den } else { 0.0 }
    } else {
        0.0
    };
    let weeks_to_saturation = if peak >= 1.0 {
        0.0
    } else if trend > 1e-6 {
        ((1.0 - peak) / trend).min(HORIZON_CAP_WEEKS)
    } else {
        HORIZON_CAP_WEEKS
    };
    let coverage = if weeks.is_empty() || (p99.is_none() && peak1h.is_none()) {
        0.0
    } else {
        weeks
            .iter()
            .map(|w| w.coverage.clamp(0.0, 1.0))
            .sum::<f64>()
            / weeks.len() as f64
    };
    [
        p99.unwrap_or(highest_mean),
        peak1h.unwrap_or(highest_mean),
        near_saturation,
        growth,
        weeks_to_saturation,
        coverage,
    ]
}

/// The peak features of a target's last `window_weeks` weeks of each metric, as named
/// features for its feature vector (coverage: the metric's peak coverage).
pub fn features(weeks: &BTreeMap<String, Vec<WeekPeak>>, window_weeks: usize) -> Vec<Feature> {
    let mut out = Vec::new();
    for (metric, all) in weeks {
        let last = &all[all.len().saturating_sub(window_weeks)..];
        let values = window(last);
        let coverage = values[5];
        out.extend(names(metric).zip(values).map(|(name, value)| Feature {
            name,
            value: Some(value),
            coverage,
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn week(mean: f64, p99: f64, hourly: f64, near: f64) -> WeekPeak {
        WeekPeak {
            mean: Some(mean),
            p99: Some(p99),
            max_hourly: Some(hourly),
            near_saturation: Some(near),
            coverage: 1.0,
        }
    }

    #[test]
    fn spiky_and_flat_windows_differ_where_their_means_do_not() {
        let flat = [week(0.45, 0.5, 0.48, 0.0); 4];
        let spiky = [week(0.45, 0.93, 0.95, 0.06); 4];
        let f = window(&flat);
        let s = window(&spiky);
        assert!((f[0] - 0.5).abs() < 1e-12 && (s[0] - 0.93).abs() < 1e-12);
        assert!((s[1] - 0.95).abs() < 1e-12);
        assert!((s[2] - 0.06).abs() < 1e-12 && f[2] == 0.0);
        assert_eq!(f[3], 0.0, "flat: no growth");
        assert_eq!(f[4], HORIZON_CAP_WEEKS, "flat: never saturates");
        assert_eq!(s[5], 1.0);
    }

    #[test]
    fn compound_growth_projects_weeks_to_saturation() {
        // +8 % a week: 0.40, 0.432, 0.467, 0.504; peaks 1.5× the mean.
        let weeks: Vec<WeekPeak> = (0..4)
            .map(|i| {
                let m = 0.4 * 1.08f64.powi(i);
                week(m, m * 1.5, m * 1.45, 0.0)
            })
            .collect();
        let v = window(&weeks);
        assert!((v[3] - 0.08).abs() < 1e-9, "growth {}", v[3]);
        // Peak 0.756, the means rise ~0.035 a week: about 7 weeks to go.
        assert!(v[4] > 6.0 && v[4] < 8.0, "weeks to saturation {}", v[4]);
    }

    #[test]
    fn missing_peaks_are_explicit_and_err_towards_busy() {
        let weeks = [
            WeekPeak {
                mean: Some(0.3),
                p99: None,
                max_hourly: None,
                near_saturation: None,
                coverage: 0.0,
            },
            WeekPeak {
                mean: Some(0.6),
                p99: None,
                max_hourly: None,
                near_saturation: None,
                coverage: 0.0,
            },
        ];
        let v = window(&weeks);
        assert_eq!(v[5], 0.0, "peak coverage says they are missing");
        assert_eq!(v[0], 0.6, "p99 falls back to the highest mean");
        assert!(v.iter().all(|x| x.is_finite()));
        let none = window(&[]);
        assert!(none.iter().all(|x| x.is_finite()));
        assert_eq!(none[5], 0.0);
        let named = features(&BTreeMap::from([("cpu".to_string(), weeks.to_vec())]), 4);
        assert_eq!(named.len(), 6);
        assert_eq!(named[0].name, "cpu_p99");
        assert_eq!(named[5].name, "cpu_peak_coverage");
    }
}
