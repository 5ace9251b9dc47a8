//! What a plugin declares about itself and the data the host hands it.
//!
//! These mirror the records of the WIT contract in `sdk/wit/`; the plugin host converts between
//! the two at the boundary so that no other stage depends on generated bindings.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ActionKind;

/// How the samples of a metric are summarised per week.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    /// Mean of the samples (`avg_over_time`).
    Mean,
    /// Largest sample (`max_over_time`).
    Max,
    /// The 95th percentile (`quantile_over_time(0.95, …)`).
    P95,
}

/// One metric a plugin needs, as a PromQL template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSpec {
    /// Short name the plugin refers to it by, e.g. `cpu`.
    pub name: String,
    /// PromQL returning one series per target, grouped by the target label.
    pub query: String,
    /// How the plugin summarises it per week.
    pub aggregation: Aggregation,
    /// Unit of the values, e.g. `ratio`.
    pub unit: String,
    /// What it measures.
    pub description: String,
}

/// One feature of a plugin's feature schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpec {
    /// Feature name, e.g. `cpu_w1`.
    pub name: String,
    /// What it is.
    pub description: String,
}

/// A plugin's self-description, read once at load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginDescriptor {
    /// Plugin name, e.g. `postgres`.
    pub name: String,
    /// Plugin version.
    pub version: String,
    /// Technology it adapts.
    pub technology: String,
    /// Metrics it needs.
    pub metrics: Vec<MetricSpec>,
    /// Its feature schema, in vector order.
    pub features: Vec<FeatureSpec>,
    /// Action kinds it can propose.
    pub actions: Vec<ActionKind>,
}

/// The time range of one cycle's observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// Start of the range (inclusive).
    pub start: DateTime<Utc>,
    /// End of the range (exclusive): the cycle's `now`.
    pub end: DateTime<Utc>,
    /// Sample spacing in seconds.
    pub step_seconds: u64,
    /// Number of whole weeks, ending at `end`, that features are computed over.
    pub weeks: u32,
}

/// The samples of one metric for one target, as columns (cheap to pass into a plugin).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricSeries {
    /// Metric name from the plugin's descriptor.
    pub metric: String,
    /// Sample times, milliseconds since the Unix epoch, ascending.
    pub timestamps_ms: Vec<i64>,
    /// Sample values, same length as `timestamps_ms`.
    pub values: Vec<f64>,
}
