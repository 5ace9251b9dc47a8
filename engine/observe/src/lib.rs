//! The observe stage: where metrics come from.
//!
//! A [`MetricSource`] answers one range query per metric for the whole fleet — never one query
//! per target — grouped by the label that names a target, and discovers the targets of a
//! technology. The plugin states its metrics as PromQL templates; a Prometheus-compatible source
//! sends them as they are, and the embedded [`SimulatedFleet`] answers the same queries from
//! deterministic scenarios, so switching from the quickstart to a real TSDB changes the
//! configuration, not the code path.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use setpoint_core::{Aggregation, MetricSeries, Target};

pub mod export;
pub mod prometheus;
pub mod services;
pub mod sim;

pub use prometheus::{PrometheusConfig, PrometheusSource};
pub use services::{ServiceFleetConfig, ServiceSim};
pub use sim::SimulatedFleet;

/// A boxed future, so that sources can be used as trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One range query for the whole fleet.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeQuery {
    /// The plugin's name for the metric, e.g. `cpu`.
    pub metric: String,
    /// The plugin's PromQL template.
    pub promql: String,
    /// The technology of the targets asked about.
    pub technology: String,
    /// Start of the range (inclusive).
    pub start: DateTime<Utc>,
    /// End of the range (exclusive).
    pub end: DateTime<Utc>,
    /// Sample spacing in seconds.
    pub step_seconds: u64,
    /// The label whose value names a target (`instance`).
    pub target_label: String,
    /// `Some`: summarise in the source instead of returning raw samples — one point per whole
    /// week ending at `end`, for the last `weeks` weeks, each the week's aggregate of the
    /// samples at `step_seconds`, with its sample count. A TSDB does this with
    /// `avg_over_time((q)[1w:step])`, so a target brings a handful of numbers, not thousands.
    pub weekly: Option<WeeklySummary>,
}

/// How a source summarises a range query per week.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WeeklySummary {
    /// The plugin's aggregation of the metric.
    pub aggregation: Aggregation,
    /// Whole weeks, ending at the query's `end`.
    pub weeks: u32,
    /// Whether a TSDB also counts each week's samples. Each count is another pass over every
    /// sample, so a caller summarising one series several ways asks for it once; a summary
    /// made here from raw samples always has its counts.
    pub counted: bool,
}

/// Milliseconds in a week.
pub const WEEK_MS: i64 = 7 * 24 * 3600 * 1000;

/// Summarises raw samples per week the way a TSDB does for a [`WeeklySummary`]: weeks end at
/// `end_ms` (exclusive) and are stamped with their end; NaN and infinite samples are not
/// counted; a week without samples has no point. The 95th percentile interpolates linearly
/// between ranks, as PromQL's `quantile_over_time` does, so the embedded source and a TSDB agree.
pub fn summarise_weekly(raw: &MetricSeries, end_ms: i64, summary: WeeklySummary) -> MetricSeries {
    let weeks = summary.weeks as usize;
    let mut buckets: Vec<Vec<(i64, f64)>> = vec![Vec::new(); weeks];
    for (&t, &v) in raw.timestamps_ms.iter().zip(&raw.values) {
        if !v.is_finite() || t >= end_ms {
            continue;
        }
        let back = ((end_ms - 1 - t) / WEEK_MS) as usize; // 0 = the week ending at end_ms
        if back < weeks {
            buckets[weeks - 1 - back].push((t, v));
        }
    }
    let mut out = MetricSeries {
        metric: raw.metric.clone(),
        sample_counts: Some(Vec::new()),
        ..MetricSeries::default()
    };
    for (i, samples) in buckets.into_iter().enumerate() {
        if samples.is_empty() {
            continue;
        }
        let week_end = end_ms - (weeks - 1 - i) as i64 * WEEK_MS;
        out.timestamps_ms.push(week_end);
        out.values.push(aggregate(&samples, summary.aggregation));
        if let Some(counts) = out.sample_counts.as_mut() {
            counts.push(u32::try_from(samples.len()).unwrap_or(u32::MAX));
        }
    }
    out
}

/// Milliseconds in an hour.
const HOUR_MS: i64 = 3600 * 1000;

/// One aggregate of finite, non-empty `(time, value)` samples.
fn aggregate(samples: &[(i64, f64)], aggregation: Aggregation) -> f64 {
    let quantile = |q: f64| {
        let mut values: Vec<f64> = samples.iter().map(|&(_, v)| v).collect();
        values.sort_by(f64::total_cmp);
        let rank = q * (values.len() - 1) as f64;
        let lower = rank.floor() as usize;
        let upper = (lower + 1).min(values.len() - 1);
        let weight = rank - lower as f64;
        values[lower] * (1.0 - weight) + values[upper] * weight
    };
    match aggregation {
        Aggregation::Mean => samples.iter().map(|&(_, v)| v).sum::<f64>() / samples.len() as f64,
        Aggregation::Max => samples.iter().map(|&(_, v)| v).fold(f64::MIN, f64::max),
        Aggregation::P95 => quantile(0.95),
        Aggregation::P99 => quantile(0.99),
        Aggregation::MaxHourlyMean => {
            // Hours as a TSDB's hourly subquery sees them: (h - 1 h, h] for whole hours h.
            let mut hours: BTreeMap<i64, (f64, u32)> = BTreeMap::new();
            for &(t, v) in samples {
                let slot = hours
                    .entry(t.div_euclid(HOUR_MS) + i64::from(t.rem_euclid(HOUR_MS) != 0))
                    .or_default();
                slot.0 += v;
                slot.1 += 1;
            }
            hours
                .values()
                .map(|&(sum, n)| sum / f64::from(n))
                .fold(f64::MIN, f64::max)
        }
        Aggregation::ShareAtLeast(level) => {
            samples.iter().filter(|&&(_, v)| v >= level).count() as f64 / samples.len() as f64
        }
    }
}

/// The answer to a range query: one series per target that has data.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryResult {
    /// `(target id, series)` pairs. A target with no data at all is absent.
    pub series: Vec<(String, MetricSeries)>,
    /// `(target id, what is wrong)` for targets whose data had to be dropped (e.g. two series
    /// naming one target), so that only they, not the whole fleet, lose the metric.
    pub problems: Vec<(String, String)>,
}

/// Errors of metric sources. Each names the source and, where there is one, the metric.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    /// The source has no such metric.
    #[error(
        "{source_name}: unknown metric {metric:?} (query {promql:?}); this source serves: {known}"
    )]
    UnknownMetric {
        /// The source.
        source_name: String,
        /// The metric asked for.
        metric: String,
        /// Its PromQL.
        promql: String,
        /// What the source does serve.
        known: String,
    },
    /// The source has no targets of this technology to answer for.
    #[error("{source_name}: no {technology} targets here (metric {metric:?})")]
    UnsupportedTechnology {
        /// The source.
        source_name: String,
        /// The technology asked for.
        technology: String,
        /// The metric asked for.
        metric: String,
    },
    /// The source could not answer: unreachable, timed out, or answered with an error or a
    /// malformed response. Kept generic so that remote sources (Prometheus, VictoriaMetrics)
    /// need no new variant per transport failure.
    #[error("{source_name}: query for metric {metric:?} failed ({promql:?})")]
    Backend {
        /// The source.
        source_name: String,
        /// The metric asked for.
        metric: String,
        /// The query sent.
        promql: String,
        /// What went wrong underneath.
        #[source]
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The query itself is malformed.
    #[error("{source_name}: invalid query for metric {metric:?}: {message}")]
    InvalidQuery {
        /// The source.
        source_name: String,
        /// The metric asked for.
        metric: String,
        /// What is wrong.
        message: String,
    },
    /// The server could not be reached (after retries).
    #[error("{source_name}: unreachable while querying {metric:?}: {message}")]
    Unreachable {
        /// The source.
        source_name: String,
        /// The metric or query.
        metric: String,
        /// What the connection said.
        message: String,
    },
    /// The server did not answer in time (after retries).
    #[error("{source_name}: no answer within {timeout:?} for {metric:?}")]
    Timeout {
        /// The source.
        source_name: String,
        /// The metric or query.
        metric: String,
        /// The per-request timeout, or the deadline of the query with its retries.
        timeout: std::time::Duration,
    },
    /// The server answered with an HTTP error.
    #[error("{source_name}: HTTP {status} for {metric:?}: {message}")]
    Http {
        /// The source.
        source_name: String,
        /// The metric or query.
        metric: String,
        /// The HTTP status.
        status: u16,
        /// The server's error, when it gave one.
        message: String,
    },
    /// The answer is not what the API promises.
    #[error("{source_name}: malformed answer for {metric:?}: {message}")]
    Malformed {
        /// The source.
        source_name: String,
        /// The metric or query.
        metric: String,
        /// What is wrong with it.
        message: String,
    },
    /// The answer is larger than the source may send.
    #[error(
        "{source_name}: the answer for {metric:?} is larger than {limit} bytes \
         (max_response_bytes); narrow the query or raise the limit"
    )]
    TooLarge {
        /// The source.
        source_name: String,
        /// The metric or query.
        metric: String,
        /// The limit, in bytes.
        limit: u64,
    },
    /// The cycle's observe deadline passed before this query was answered.
    #[error(
        "{source_name}: the cycle's observe deadline ({deadline:?}) passed before {metric:?} was answered"
    )]
    CycleDeadline {
        /// The source.
        source_name: String,
        /// The metric.
        metric: String,
        /// The deadline of the whole observe stage.
        deadline: std::time::Duration,
    },
    /// The server refused the query (`"status": "error"`).
    #[error("{source_name}: query for {metric:?} failed: {message}")]
    QueryFailed {
        /// The source.
        source_name: String,
        /// The metric or query.
        metric: String,
        /// The server's error type and message.
        message: String,
    },
}

/// The observe stage's result type.
pub type Result<T, E = ObserveError> = std::result::Result<T, E>;

/// Where metrics come from.
pub trait MetricSource: Send + Sync {
    /// Name for reports and errors, e.g. `simulated(seed=42)`.
    fn name(&self) -> &str;
    /// The targets of a technology (empty when there are none).
    fn discover<'a>(
        &'a self,
        technology: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Target>, ObserveError>>;
    /// Whether the source can answer [`RangeQuery::weekly`] (summarise in the source). When it
    /// can, the runtime asks for weekly summaries; otherwise for raw samples.
    fn summarises_weekly(&self) -> bool {
        false
    }
    /// Answers one range query for the whole fleet.
    fn query_range<'a>(
        &'a self,
        query: &'a RangeQuery,
    ) -> BoxFuture<'a, Result<QueryResult, ObserveError>>;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn peaks_summarise_the_99th_percentile_and_the_busiest_hour() {
        let end = 10 * WEEK_MS;
        // One week at 5-minute steps: 0.2 all week, but one whole hour at 0.9.
        let step = 300_000;
        let start = end - WEEK_MS;
        let timestamps: Vec<i64> = (0..2016).map(|i| start + i * step).collect();
        let busy = start + 50 * 3_600_000;
        let values: Vec<f64> = timestamps
            .iter()
            .map(|&t| {
                if t > busy - 3_600_000 && t <= busy {
                    0.9
                } else {
                    0.2
                }
            })
            .collect();
        let raw = MetricSeries {
            metric: "cpu".into(),
            timestamps_ms: timestamps,
            values,
            sample_counts: None,
        };
        let week = |aggregation| {
            summarise_weekly(
                &raw,
                end,
                WeeklySummary {
                    aggregation,
                    weeks: 1,
                    counted: true,
                },
            )
            .values
        };
        // 12 samples of 2016 (0.6 %) are busy: the 99th percentile misses that hour, which is
        // why the floor also takes the busiest hour.
        assert_eq!(week(Aggregation::P99), [0.2]);
        assert!((week(Aggregation::MaxHourlyMean)[0] - 0.9).abs() < 1e-9);
        assert!((week(Aggregation::Mean)[0] - (0.2 + 0.7 * 12.0 / 2016.0)).abs() < 1e-9);
        assert_eq!(week(Aggregation::P95), [0.2]);
        assert!((week(Aggregation::ShareAtLeast(0.9))[0] - 12.0 / 2016.0).abs() < 1e-12);
        assert_eq!(week(Aggregation::ShareAtLeast(0.2)), [1.0]);
    }

    #[test]
    fn weekly_summaries_match_promql_semantics() {
        let end = 10 * WEEK_MS;
        // Hourly samples over three weeks, value = week index; one NaN and one +Inf in W-1.
        let mut raw = MetricSeries {
            metric: "cpu".into(),
            ..MetricSeries::default()
        };
        for h in 0..(3 * 168) {
            raw.timestamps_ms.push(end - 3 * WEEK_MS + h * 3_600_000);
            raw.values.push((h / 168) as f64);
        }
        raw.values[3 * 168 - 1] = f64::NAN;
        raw.values[3 * 168 - 2] = f64::INFINITY;
        let mean = summarise_weekly(
            &raw,
            end,
            WeeklySummary {
                aggregation: Aggregation::Mean,
                weeks: 4,
                counted: true,
            },
        );
        // W-4 has no samples: no point, rather than a zero.
        assert_eq!(mean.timestamps_ms, [end - 2 * WEEK_MS, end - WEEK_MS, end]);
        assert_eq!(mean.values, [0.0, 1.0, 2.0]);
        assert_eq!(mean.sample_counts, Some(vec![168, 168, 166]));

        let ramp = MetricSeries {
            metric: "cpu".into(),
            timestamps_ms: (0..100).map(|i| end - WEEK_MS + i * 1000).collect(),
            values: (1..=100).map(f64::from).collect(),
            sample_counts: None,
        };
        let p95 = summarise_weekly(
            &ramp,
            end,
            WeeklySummary {
                aggregation: Aggregation::P95,
                weeks: 1,
                counted: true,
            },
        );
        // As quantile_over_time(0.95, …): rank 0.95 × 99 = 94.05, between 95 and 96.
        assert!((p95.values[0] - 95.05).abs() < 1e-9);
        let max = summarise_weekly(
            &ramp,
            end,
            WeeklySummary {
                aggregation: Aggregation::Max,
                weeks: 1,
                counted: true,
            },
        );
        assert_eq!(max.values, [100.0]);
    }
}
