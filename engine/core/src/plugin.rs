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
    /// The 99th percentile (`quantile_over_time(0.99, …)`); the engine's safety floor asks for
    /// it, plugins cannot.
    P99,
    /// The busiest 1-hour mean (the hourly means' `max_over_time`); the engine's safety floor
    /// asks for it, plugins cannot.
    MaxHourlyMean,
    /// The share of the samples at or above a level (`avg_over_time((q >= bool level)[…])`):
    /// how long a week spent near saturation; the engine's features ask for it, plugins cannot.
    ShareAtLeast(f64),
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
    /// The target attribute (label) whose value divides each target's raw values into a ratio
    /// of its capacity, e.g. `provisioned_iops`; targets without it take `fallback_query`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<String>,
    /// The query (already a ratio) for targets `query` does not answer or that have no
    /// capacity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_query: Option<String>,
}

impl MetricSpec {
    /// The values the metric can take. Outside them a value is no measurement of the target
    /// but a broken exporter or query (−500 % utilisation, 1e308), and is never evidence.
    pub fn domain(&self) -> Domain {
        let max = match (self.unit.as_str(), &self.capacity) {
            // A share of the target's own size: above twice the size is no share of it.
            ("ratio", None) => 2.0,
            // A share of a declared capacity may burst past it (IOPS credits), not without bound.
            ("ratio", Some(_)) => 100.0,
            // Every other unit counts something (connections, keys/s, messages, seconds).
            _ => f64::MAX,
        };
        Domain {
            min: -Domain::ROUNDING,
            max,
        }
    }
}

/// The closed range of values a metric can take.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Domain {
    /// The least value.
    pub min: f64,
    /// The greatest value.
    pub max: f64,
}

impl Domain {
    /// How far below zero a value may be and still count as zero: `1 - idle / total` from
    /// counters read a moment apart can dip just under it.
    pub const ROUNDING: f64 = 0.01;

    /// Whether `value` is finite and within the range.
    pub fn contains(&self, value: f64) -> bool {
        value.is_finite() && value >= self.min && value <= self.max
    }
}

impl std::fmt::Display for Domain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.max == f64::MAX {
            write!(f, "{}..", self.min)
        } else {
            write!(f, "{}..={}", self.min, self.max)
        }
    }
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
    /// The contract version it was built for (`major.minor.patch`).
    #[serde(default)]
    pub abi_version: String,
    /// Behaviours the embedded simulator can play for this technology.
    #[serde(default)]
    pub scenarios: Vec<SimScenario>,
}

/// How one metric behaves in a simulator scenario (see the WIT `scenario-metric`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimMetric {
    /// The metric's name, as in the descriptor's metrics.
    pub metric: String,
    /// Weekly means, oldest first (W-5..W-1).
    pub weeks: Vec<f64>,
    /// Amplitude of the daily sine.
    pub daily_amplitude: f64,
    /// Standard deviation of the per-sample noise.
    pub noise: f64,
    /// Non-canonical targets add a draw from `[lo, hi)` to every week…
    pub lift: Option<(f64, f64)>,
    /// …then multiply every week by a draw from `[lo, hi)`.
    pub scale: Option<(f64, f64)>,
    /// Lowest sample value.
    pub min: f64,
    /// Highest sample value.
    pub max: f64,
}

/// A simulator scenario a plugin ships (see the WIT `scenario`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimScenario {
    /// Short name, the `scenario` label.
    pub name: String,
    /// What it shows.
    pub description: String,
    /// Target ids are `<id_prefix>-01`…; the first is canonical.
    pub id_prefix: String,
    /// Targets in the quickstart fleet.
    pub count: u32,
    /// Sizes the targets take in turn.
    pub sizes: Vec<crate::Resources>,
    /// One entry per metric.
    pub metrics: Vec<SimMetric>,
    /// Telemetry gap in hours: canonical `lo`, others a draw from `[lo, hi)`.
    pub gap_hours: Option<(f64, f64)>,
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
    /// `Some` when the source summarised the samples per week itself (in the TSDB): each point
    /// is one week's aggregate, stamped with the week's exclusive end, and this says how many
    /// finite samples at the window's step it summarises. `None`: raw samples at the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_counts: Option<Vec<u32>>,
}
