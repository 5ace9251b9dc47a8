//! The observe stage: where metrics come from.
//!
//! A [`MetricSource`] answers one range query per metric for the whole fleet — never one query
//! per target — grouped by the label that names a target, and discovers the targets of a
//! technology. The plugin states its metrics as PromQL templates; a Prometheus-compatible source
//! sends them as they are, and the embedded [`SimulatedFleet`] answers the same queries from
//! deterministic scenarios, so switching from the quickstart to a real TSDB changes the
//! configuration, not the code path.

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use setpoint_core::{MetricSeries, Target};

pub mod export;
pub mod prometheus;
pub mod sim;

pub use prometheus::{PrometheusConfig, PrometheusSource};
pub use sim::{Scenario, SimulatedFleet};

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
}

/// The answer to a range query: one series per target that has data.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryResult {
    /// `(target id, series)` pairs. A target with no data at all is absent.
    pub series: Vec<(String, MetricSeries)>,
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
        /// The per-request timeout.
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
    /// Two series name the same target: joining them would mix two different things.
    #[error(
        "{source_name}: two series of {metric:?} name target {target:?} ({labels}); make the query aggregate by the target label"
    )]
    DuplicateSeries {
        /// The source.
        source_name: String,
        /// The metric.
        metric: String,
        /// The target label value.
        target: String,
        /// The two label sets.
        labels: String,
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
    /// Answers one range query for the whole fleet.
    fn query_range<'a>(
        &'a self,
        query: &'a RangeQuery,
    ) -> BoxFuture<'a, Result<QueryResult, ObserveError>>;
}
