//! The bootstrap heuristics over every target of the simulated quickstart fleet (the scenarios
//! the PostgreSQL plugin ships).
//!
//! Weekly means are computed here the way the PostgreSQL plugin does (weeks ending at the
//! window's end, a week below half coverage is missing), so a scenario that drifts across a
//! threshold, or a rule that stops matching its scenario, fails here rather than in the report.

use chrono::{TimeZone, Utc};
use setpoint_classify::{BootstrapHeuristics, Classifier, Thresholds};
use setpoint_core::{Class, Feature, FeatureVector, MetricSeries};
use setpoint_observe::RangeQuery;

const WEEK_MS: i64 = 7 * 24 * 3600 * 1000;
const STEP: u64 = 300;
const METRICS: [&str; 4] = ["cpu", "memory", "connections", "iops"];

fn features(series: &[Option<&MetricSeries>; 4], end_ms: i64) -> FeatureVector {
    let expected = (WEEK_MS / (STEP as i64 * 1000)) as f64;
    let mut out = Vec::new();
    for (metric, series) in METRICS.iter().zip(series) {
        for k in (1..=4).rev() {
            let (lo, hi) = (end_ms - k * WEEK_MS, end_ms - (k - 1) * WEEK_MS);
            let samples: Vec<f64> = series
                .map(|s| {
                    s.timestamps_ms
                        .iter()
                        .zip(&s.values)
                        .filter(|(t, _)| **t >= lo && **t < hi)
                        .map(|(_, v)| *v)
                        .collect()
                })
                .unwrap_or_default();
            let coverage = (samples.len() as f64 / expected).min(1.0);
            let value =
                (coverage >= 0.5).then(|| samples.iter().sum::<f64>() / samples.len() as f64);
            out.push(Feature {
                name: format!("{metric}_w{k}"),
                value,
                coverage,
            });
        }
    }
    FeatureVector { features: out }
}

#[test]
fn every_scenario_classifies_as_designed() {
    let fleet = setpoint_runtime::builtin_fleet(42, "postgres").unwrap();
    let end = Utc.with_ymd_and_hms(2026, 11, 23, 6, 0, 0).unwrap();
    let results: Vec<_> = METRICS
        .iter()
        .map(|metric| {
            fleet
                .query(&RangeQuery {
                    metric: metric.to_string(),
                    promql: String::new(),
                    technology: "postgres".into(),
                    start: end - chrono::Duration::weeks(5),
                    end,
                    step_seconds: STEP,
                    target_label: "instance".into(),
                    weekly: None,
                })
                .unwrap()
        })
        .collect();
    let classifier = BootstrapHeuristics::new(Thresholds::default());
    for target in fleet.targets() {
        let series = [0, 1, 2, 3].map(|i| {
            results[i]
                .series
                .iter()
                .find(|(id, _)| *id == target.id)
                .map(|(_, s)| s)
        });
        let c = classifier.classify(&features(&series, end.timestamp_millis()));
        let (class, code) = match target.labels["scenario"].as_str() {
            "reporting" => (Class::ScaleDown, "low_utilisation"),
            "transactional" | "steady-mid" | "spiky-but-safe" => {
                (Class::Remain, "no_threshold_crossed")
            }
            "saturated" => (Class::ScaleUp, "cpu_saturated"),
            "connection-pressure" => (Class::ScaleUp, "connection_pressure"),
            "telemetry-gap" => (Class::Remain, "insufficient_data"),
            other => panic!("unexpected scenario {other}"),
        };
        assert_eq!(
            (c.class, c.explanation.code.as_str()),
            (class, code),
            "{}: {c:#?}",
            target.id
        );
        if c.class != Class::Remain {
            assert!(c.confidence >= 0.6, "{}: {}", target.id, c.confidence);
        }
        if target.id == "pg-reporting-01" {
            assert!((0.75..0.9).contains(&c.confidence), "{}", c.confidence);
        }
    }
}
