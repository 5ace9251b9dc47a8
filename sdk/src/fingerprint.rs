//! The weekly fingerprint: metrics declared once, their feature schema, and the feature vector.
//!
//! The engine's classifier reads features named `<metric>_w<k>` (`cpu_w4` … `cpu_w1`, W-1 the
//! last week), each a weekly aggregate of one metric. An adapter lists its metrics as
//! [`MetricDef`]s and gets from them the descriptor's metrics and features and the feature
//! vector itself, so the names in the schema and in the vector cannot drift apart.
//!
//! The bootstrap classifier reads three families as utilisation ratios (0..=1): `cpu`,
//! `memory` and, when the plugin declares it, `connections` (a share of a hard connection
//! limit). Name a metric so only when it means that; anything else (evictions, lag, shards) is
//! for the plugin's own proposals and for later models.

use crate::error;
use crate::types::{
    ActionKind, Aggregation, Descriptor, Feature, FeatureSpec, MetricSpec, PluginError, Scenario,
    Series, Window,
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
pub fn flat_features(metrics: &[MetricDef], values: &[(&str, f64)]) -> Vec<Feature> {
    let mut out = Vec::with_capacity(metrics.len() * WEEKS as usize);
    for m in metrics {
        let value = values
            .iter()
            .find(|(name, _)| *name == m.name)
            .map_or(0.0, |(_, v)| *v);
        for week in (1..=WEEKS).rev() {
            out.push(Feature {
                name: feature_name(m.name, week),
                value: Some(value),
                coverage: 1.0,
            });
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

/// The feature vector of one target, in schema order: per metric, each week's aggregate with
/// its coverage. A metric without a series has every week missing, visibly.
///
/// Fails on an empty window, a zero step or a malformed series.
pub fn weekly_features(
    target_id: &str,
    window: Window,
    series: &[Series],
    metrics: &[MetricDef],
) -> Result<Vec<Feature>, PluginError> {
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
    let mut out = Vec::with_capacity(metrics.len() * WEEKS as usize);
    for m in metrics {
        let stats = match series.iter().find(|s| s.metric == m.name) {
            Some(s) => weekly_series(&window, s, m.aggregation, MIN_COVERAGE)
                .map_err(|message| error("malformed_series", message))?,
            None => weekly(&window, &[], &[], m.aggregation, MIN_COVERAGE),
        };
        for (i, stat) in stats.iter().enumerate() {
            out.push(Feature {
                name: feature_name(m.name, WEEKS - i as u32),
                value: stat.value,
                coverage: stat.coverage,
            });
        }
    }
    Ok(out)
}

/// A feature's value, when present.
pub fn value(features: &[Feature], name: &str) -> Option<f64> {
    features
        .iter()
        .find(|f| f.name == name)
        .and_then(|f| f.value)
        .filter(|v| v.is_finite())
}

/// A metric's weekly values W-4..W-1 (`None` where missing).
pub fn weeks(features: &[Feature], metric: &str) -> Vec<Option<f64>> {
    (1..=WEEKS)
        .rev()
        .map(|w| value(features, &feature_name(metric, w)))
        .collect()
}

/// The highest weekly value of a metric over the window; `None` when no week has data.
pub fn peak(features: &[Feature], metric: &str) -> Option<f64> {
    weeks(features, metric)
        .into_iter()
        .flatten()
        .reduce(f64::max)
}

/// Whether every week of a metric has data: a guard that refuses to act on a partial window.
pub fn complete(features: &[Feature], metric: &str) -> bool {
    weeks(features, metric).iter().all(Option::is_some)
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
        let names: Vec<String> = features.iter().map(|f| f.name.clone()).collect();
        assert_eq!(names, feature_names(&METRICS));
        assert!((value(&features, "cpu_w1").unwrap() - 0.3).abs() < 1e-9);
        assert_eq!(weeks(&features, "urp"), vec![None; 4]);
        assert_eq!(peak(&features, "urp"), None);
        assert!(complete(&features, "cpu"));
        assert!(!complete(&features, "urp"));
        assert!((peak(&features, "cpu").unwrap() - 0.3).abs() < 1e-9);
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
