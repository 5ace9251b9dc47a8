//! The weekly fingerprint: metrics declared once, their feature schema, and the feature vector.
//!
//! The engine's classifier reads features named `<metric>_w<k>` (`cpu_w4` … `cpu_w1`, W-1 the
//! last week), each a weekly aggregate of one metric. An adapter lists its metrics as
//! [`MetricDef`]s and gets from them the descriptor's metrics and features and the feature
//! vector itself, so the names in the schema and the positions in the vector cannot drift
//! apart. The vector crosses the sandbox as columns without names; [`Fingerprint`] reads it
//! back by metric and week.
//!
//! The bootstrap classifier reads three families as utilisation ratios (0..=1): `cpu`,
//! `memory` and, when the plugin declares it, `connections` (a share of a hard connection
//! limit). Name a metric so only when it means that; anything else (evictions, lag, shards) is
//! for the plugin's own proposals and for later models.

use crate::error;
use crate::types::{
    ActionKind, Aggregation, Descriptor, FeatureSpec, FeatureVector, MetricSpec, PluginError,
    Scenario, Series, Window,
};
use crate::weekly::{MIN_COVERAGE, weekly, weekly_series};

/// Weeks in the fingerprint: W-4..W-1.
pub const WEEKS: u32 = 4;

/// One metric of an adapter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricDef {
    /// Short name, the stem of its features (`cpu` → `cpu_w1`).
    pub name: &'static str,
    /// PromQL returning one series per target.
    pub query: &'static str,
    /// Unit of the values: `ratio`, `keys/s`, `messages`, `seconds`, `count`.
    pub unit: &'static str,
    /// How a week of samples is summarised.
    pub aggregation: Aggregation,
    /// What it measures, for the descriptor and the feature descriptions.
    pub description: &'static str,
    /// The target attribute dividing the query's raw values into a ratio (see
    /// [`MetricDef::ratio_of_capacity`]).
    pub capacity: Option<&'static str>,
    /// The query (already a ratio) for targets without that attribute or series.
    pub fallback_query: Option<&'static str>,
}

impl MetricDef {
    /// A utilisation ratio summarised by its weekly mean.
    pub const fn ratio(name: &'static str, query: &'static str, description: &'static str) -> Self {
        Self {
            name,
            query,
            unit: "ratio",
            aggregation: Aggregation::Mean,
            description,
            capacity: None,
            fallback_query: None,
        }
    }

    /// A utilisation ratio of a capacity the target declares: `query` returns raw values
    /// (e.g. disk operations per second), the host divides each target's by its `capacity`
    /// attribute (e.g. the inventory's `provisioned_iops`), and targets without it — or without
    /// series for `query` — are answered by `fallback_query`, already a ratio. Summarised by
    /// the weekly mean.
    pub const fn ratio_of_capacity(
        name: &'static str,
        query: &'static str,
        capacity: &'static str,
        fallback_query: &'static str,
        description: &'static str,
    ) -> Self {
        Self {
            capacity: Some(capacity),
            fallback_query: Some(fallback_query),
            ..Self::ratio(name, query, description)
        }
    }
}

fn aggregation_word(aggregation: Aggregation) -> &'static str {
    match aggregation {
        Aggregation::Mean => "mean",
        Aggregation::Max => "max",
        Aggregation::P95 => "p95",
    }
}

/// The descriptor of an adapter named after its technology whose features are the weekly
/// fingerprint of `metrics`; `version` is the plugin crate's (`env!("CARGO_PKG_VERSION")`).
pub fn descriptor(
    technology: &str,
    version: &str,
    metrics: &[MetricDef],
    actions: Vec<ActionKind>,
    scenarios: Vec<Scenario>,
) -> Descriptor {
    Descriptor {
        name: technology.to_string(),
        version: version.to_string(),
        technology: technology.to_string(),
        abi_version: crate::ABI_VERSION.to_string(),
        metrics: metric_specs(metrics),
        features: feature_specs(metrics),
        actions,
        scenarios,
    }
}

/// A complete fingerprint with every week of each metric at the value `values` gives it (0
/// when not listed), in schema order: the input of an adapter's native unit tests of
/// `propose`.
pub fn flat_features(metrics: &[MetricDef], values: &[(&str, f64)]) -> FeatureVector {
    let mut out = FeatureVector {
        values: Vec::with_capacity(metrics.len() * WEEKS as usize),
        coverage: Vec::with_capacity(metrics.len() * WEEKS as usize),
    };
    for m in metrics {
        let value = values
            .iter()
            .find(|(name, _)| *name == m.name)
            .map_or(0.0, |(_, v)| *v);
        for _ in 0..WEEKS {
            out.values.push(value);
            out.coverage.push(1.0);
        }
    }
    out
}

/// The feature name of `metric` in week W-`week`.
pub fn feature_name(metric: &str, week: u32) -> String {
    format!("{metric}_w{week}")
}

/// The descriptor's metrics.
pub fn metric_specs(metrics: &[MetricDef]) -> Vec<MetricSpec> {
    metrics
        .iter()
        .map(|m| MetricSpec {
            name: m.name.to_string(),
            query: m.query.to_string(),
            aggregation: m.aggregation,
            unit: m.unit.to_string(),
            description: m.description.to_string(),
            capacity: m.capacity.map(str::to_string),
            fallback_query: m.fallback_query.map(str::to_string),
        })
        .collect()
}

/// The descriptor's features: per metric, W-4 first.
pub fn feature_specs(metrics: &[MetricDef]) -> Vec<FeatureSpec> {
    metrics
        .iter()
        .flat_map(|m| {
            (1..=WEEKS).rev().map(move |w| FeatureSpec {
                name: feature_name(m.name, w),
                description: format!(
                    "weekly {} of {}, week W-{w}",
                    aggregation_word(m.aggregation),
                    m.description
                ),
            })
        })
        .collect()
}

/// The feature names, in schema order.
pub fn feature_names(metrics: &[MetricDef]) -> Vec<String> {
    feature_specs(metrics).into_iter().map(|f| f.name).collect()
}

/// The feature vector of one target, in schema order: per metric, each week's aggregate (NaN
/// when missing) with its coverage. A metric without a series has every week missing, visibly.
///
/// Fails on an empty window, a zero step or a malformed series.
pub fn weekly_features(
    target_id: &str,
    window: Window,
    series: &[Series],
    metrics: &[MetricDef],
) -> Result<FeatureVector, PluginError> {
    if window.end_ms <= window.start_ms || window.step_seconds == 0 {
        return Err(error(
            "invalid_window",
            format!("target {target_id}: empty window or zero step"),
        ));
    }
    let window = Window {
        weeks: WEEKS,
        ..window
    };
    let mut out = FeatureVector {
        values: Vec::with_capacity(metrics.len() * WEEKS as usize),
        coverage: Vec::with_capacity(metrics.len() * WEEKS as usize),
    };
    for m in metrics {
        let stats = match series.iter().find(|s| s.metric == m.name) {
            Some(s) => weekly_series(&window, s, m.aggregation, MIN_COVERAGE)
                .map_err(|message| error("malformed_series", message))?,
            None => weekly(&window, &[], &[], m.aggregation, MIN_COVERAGE),
        };
        for stat in stats {
            out.values.push(stat.value.unwrap_or(f64::NAN));
            out.coverage.push(stat.coverage);
        }
    }
    Ok(out)
}

/// The position of `metric`'s week W-`week` (1 = the last week) in a vector laid out from
/// `metrics`; `None` for an undeclared metric or a week outside 1..=4.
pub fn index(metrics: &[MetricDef], metric: &str, week: u32) -> Option<usize> {
    if !(1..=WEEKS).contains(&week) {
        return None;
    }
    let m = metrics.iter().position(|m| m.name == metric)?;
    Some(m * WEEKS as usize + (WEEKS - week) as usize)
}

/// A feature vector read by metric and week, through the metrics that laid it out.
#[derive(Debug, Clone, Copy)]
pub struct Fingerprint<'a> {
    metrics: &'a [MetricDef],
    features: &'a FeatureVector,
}

impl<'a> Fingerprint<'a> {
    /// Reads `features`, laid out by [`weekly_features`] from `metrics`.
    pub fn new(metrics: &'a [MetricDef], features: &'a FeatureVector) -> Self {
        Self { metrics, features }
    }

    /// The value of `metric` in week W-`week` (1 = the last week), when present and finite.
    pub fn value(&self, metric: &str, week: u32) -> Option<f64> {
        self.features
            .values
            .get(index(self.metrics, metric, week)?)
            .copied()
            .filter(|v| v.is_finite())
    }

    /// A metric's weekly values W-4..W-1 (`None` where missing).
    pub fn weeks(&self, metric: &str) -> [Option<f64>; WEEKS as usize] {
        let mut out = [None; WEEKS as usize];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = self.value(metric, WEEKS - i as u32);
        }
        out
    }

    /// The highest weekly value of a metric over the window; `None` when no week has data.
    pub fn peak(&self, metric: &str) -> Option<f64> {
        self.weeks(metric).into_iter().flatten().reduce(f64::max)
    }

    /// Whether every week of a metric has data: a guard that refuses to act on a partial
    /// window.
    pub fn complete(&self, metric: &str) -> bool {
        self.weeks(metric).iter().all(Option::is_some)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const METRICS: [MetricDef; 2] = [
        MetricDef::ratio("cpu", "q1", "CPU"),
        MetricDef {
            name: "urp",
            query: "q2",
            unit: "count",
            aggregation: Aggregation::Max,
            description: "under-replicated partitions",
            capacity: None,
            fallback_query: None,
        },
    ];

    fn window() -> Window {
        Window {
            start_ms: 0,
            end_ms: 5 * crate::weekly::WEEK_MS,
            step_seconds: 3600,
            weeks: 0,
        }
    }

    #[test]
    fn schema_and_vector_agree_and_missing_metrics_show() {
        let specs = feature_specs(&METRICS);
        assert_eq!(specs[0].name, "cpu_w4");
        assert_eq!(specs[0].description, "weekly mean of CPU, week W-4");
        assert_eq!(
            specs[4].description,
            "weekly max of under-replicated partitions, week W-4"
        );
        let hours = 5 * 7 * 24;
        let cpu = Series {
            metric: "cpu".into(),
            timestamps_ms: (0..hours).map(|h| h * 3_600_000).collect(),
            values: (0..hours)
                .map(|h| if h % 2 == 0 { 0.2 } else { 0.4 })
                .collect(),
            sample_counts: None,
        };
        let features = weekly_features("t", window(), &[cpu], &METRICS).unwrap();
        assert_eq!(features.values.len(), feature_names(&METRICS).len());
        assert_eq!(features.coverage.len(), features.values.len());
        let fp = Fingerprint::new(&METRICS, &features);
        assert!((fp.value("cpu", 1).unwrap() - 0.3).abs() < 1e-9);
        assert!(
            (features.values[3] - 0.3).abs() < 1e-9,
            "cpu_w1 is the fourth"
        );
        assert_eq!(fp.weeks("urp"), [None; 4]);
        assert!(features.values[4].is_nan(), "missing is NaN, never zero");
        assert_eq!(features.coverage[4], 0.0);
        assert_eq!(fp.peak("urp"), None);
        assert!(fp.complete("cpu"));
        assert!(!fp.complete("urp"));
        assert_eq!(fp.value("cpu", 5), None);
        assert_eq!(fp.value("disk", 1), None);
        assert!((fp.peak("cpu").unwrap() - 0.3).abs() < 1e-9);
    }

    #[test]
    fn bad_windows_and_series_are_refused() {
        let empty = Window {
            end_ms: 0,
            ..window()
        };
        assert_eq!(
            weekly_features("t", empty, &[], &METRICS).unwrap_err().code,
            "invalid_window"
        );
        let bad = Series {
            metric: "cpu".into(),
            timestamps_ms: vec![1],
            values: vec![],
            sample_counts: None,
        };
        assert_eq!(
            weekly_features("t", window(), &[bad], &METRICS)
                .unwrap_err()
                .code,
            "malformed_series"
        );
    }
}
