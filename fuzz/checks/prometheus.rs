//! The Prometheus answer decoder (`PrometheusSource::decode_range_answer`) on any body, read
//! three ways: a 200 answer to a raw query, a 200 answer to a weekly summary, and a 503.
//! Asserts what the rest of the engine relies on: series are aligned and in time order, a
//! weekly summary has only finite points in the weeks asked for with a positive count each, a
//! target is never both kept and dropped, and every error names the source and the metric.
//!
//! The check itself: `fuzz/fuzz_targets/prometheus.rs` drives it under libFuzzer, and
//! `tests/it/fuzz_seeds.rs` replays every seed of `fuzz/corpus/prometheus` through it in the suite.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use axum::http::StatusCode;
use chrono::{TimeZone, Utc};
use setpoint_core::Aggregation;
use setpoint_observe::{
    ObserveError, PrometheusConfig, PrometheusSource, QueryResult, RangeQuery, WEEK_MS,
    WeeklySummary,
};

const METRIC: &str = "cpu";
const WEEKS: u32 = 4;

// Port 9 (discard) on loopback: the source is never asked to send anything.
static SOURCE: LazyLock<PrometheusSource> = LazyLock::new(|| {
    PrometheusSource::new(PrometheusConfig::new("http://127.0.0.1:9"))
        .unwrap_or_else(|e| panic!("the fuzz source: {e}"))
});

fn query(weekly: bool) -> RangeQuery {
    let end = Utc.with_ymd_and_hms(2025, 6, 2, 0, 0, 0).single();
    let end = end.unwrap_or_else(|| panic!("a fixed date"));
    RangeQuery {
        metric: METRIC.to_string(),
        promql: "avg by (instance) (rate(cpu_seconds_total[5m]))".to_string(),
        technology: "postgres".to_string(),
        start: end - chrono::Duration::weeks(i64::from(WEEKS)),
        end,
        step_seconds: 300,
        target_label: "instance".to_string(),
        weekly: weekly.then_some(WeeklySummary {
            aggregation: Aggregation::Mean,
            weeks: WEEKS,
            counted: true,
        }),
    }
}

/// Every error names the source and the metric, so a degraded cycle says what failed.
fn check_error(error: &ObserveError) {
    let shown = error.to_string();
    assert!(
        shown.contains("prometheus(http://127.0.0.1:9)") && shown.contains(METRIC),
        "error without its source or metric: {shown:?}"
    );
}

fn check_result(result: &QueryResult, query: &RangeQuery) {
    let kept: BTreeSet<&str> = result.series.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(kept.len(), result.series.len(), "a target twice");
    for (id, _) in &result.problems {
        assert!(!kept.contains(id.as_str()), "{id:?} both kept and dropped");
    }
    for (id, series) in &result.series {
        assert_eq!(series.metric, query.metric, "{id:?}");
        assert_eq!(series.timestamps_ms.len(), series.values.len(), "{id:?}");
        assert!(
            series.timestamps_ms.windows(2).all(|w| w[0] < w[1]),
            "{id:?}: timestamps out of order: {:?}",
            series.timestamps_ms
        );
        match query.weekly {
            None => assert!(series.sample_counts.is_none(), "{id:?}: raw with counts"),
            Some(summary) => {
                assert!(!series.values.is_empty(), "{id:?}: an empty weekly series");
                assert!(
                    series.values.iter().all(|v| v.is_finite()),
                    "{id:?}: a week that is not a number: {:?}",
                    series.values
                );
                let end_ms = query.end.timestamp_millis();
                for t in &series.timestamps_ms {
                    let back = (end_ms - t) / WEEK_MS;
                    assert!(
                        (end_ms - t) % WEEK_MS == 0
                            && (0..i64::from(summary.weeks)).contains(&back),
                        "{id:?}: {t} is not the end of one of the weeks asked for"
                    );
                }
                let counts = series.sample_counts.as_deref().unwrap_or_default();
                assert_eq!(counts.len(), series.values.len(), "{id:?}: counts");
                assert!(
                    counts.iter().all(|c| *c > 0),
                    "{id:?}: a week of no samples"
                );
            }
        }
    }
}

/// Runs one input through the target's checks; panics when one does not hold.
pub fn check(data: &[u8]) {
    // The source refuses a body that is not UTF-8 before decoding it.
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    for weekly in [false, true] {
        let query = query(weekly);
        match SOURCE.decode_range_answer(StatusCode::OK, body, &query) {
            Ok(result) => check_result(&result, &query),
            Err(error) => check_error(&error),
        }
    }
    // A server error is an error whatever its body says, and a retried one.
    match SOURCE.decode_range_answer(StatusCode::SERVICE_UNAVAILABLE, body, &query(false)) {
        Ok(result) => panic!("a 503 decoded as data: {result:?}"),
        Err(error @ ObserveError::Http { status: 503, .. }) => check_error(&error),
        Err(other) => panic!("a 503 taken for something else: {other:?}"),
    }
}
