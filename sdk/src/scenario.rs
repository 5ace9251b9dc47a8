//! Building simulator scenarios: the behaviours the embedded simulator plays for a plugin's
//! technology, so the quickstart and tests show the plugin without a real system.
//!
//! ```ignore
//! use setpoint_sdk::scenario::{ratio, flat};
//! let idle = Scenario {
//!     name: "idle".into(), description: "…".into(), id_prefix: "my-idle".into(), count: 4,
//!     sizes: vec![size(4, 16)], gap_hours: None,
//!     metrics: vec![flat("cpu", 0.10, 0.04, 0.01).scaled(0.8, 1.2), ratio("memory", [55.0; 5], 0.02, 0.01)],
//! };
//! ```

use crate::types::ScenarioMetric;

/// A ratio metric (clamped to 0..=1) with weekly means given in percent, W-5..W-1.
pub fn ratio(metric: &str, weeks_percent: [f64; 5], daily: f64, noise: f64) -> ScenarioMetric {
    ScenarioMetric {
        metric: metric.to_string(),
        weeks: weeks_percent.iter().map(|w| w / 100.0).collect(),
        daily_amplitude: daily,
        noise,
        lift: None,
        scale: None,
        min: 0.0,
        max: 1.0,
    }
}

/// A ratio metric at the same level (0..=1) every week.
pub fn flat(metric: &str, level: f64, daily: f64, noise: f64) -> ScenarioMetric {
    ScenarioMetric {
        metric: metric.to_string(),
        weeks: vec![level; 5],
        daily_amplitude: daily,
        noise,
        lift: None,
        scale: None,
        min: 0.0,
        max: 1.0,
    }
}

/// A metric in its own unit (counts, milliseconds, bytes per second), clamped to `[min, max]`.
pub fn gauge(
    metric: &str,
    weeks: [f64; 5],
    daily: f64,
    noise: f64,
    min: f64,
    max: f64,
) -> ScenarioMetric {
    ScenarioMetric {
        metric: metric.to_string(),
        weeks: weeks.to_vec(),
        daily_amplitude: daily,
        noise,
        lift: None,
        scale: None,
        min,
        max,
    }
}

/// Variations of a scenario metric across a scenario's targets (the first target keeps the
/// declared figures exactly).
pub trait Vary {
    /// Multiply every week by a draw from `[lo, hi)`.
    fn scaled(self, lo: f64, hi: f64) -> Self;
    /// Add a draw from `[lo, hi)` to every week (applied before the scale).
    fn lifted(self, lo: f64, hi: f64) -> Self;
}

impl Vary for ScenarioMetric {
    fn scaled(self, lo: f64, hi: f64) -> Self {
        Self {
            scale: Some((lo, hi)),
            ..self
        }
    }

    fn lifted(self, lo: f64, hi: f64) -> Self {
        Self {
            lift: Some((lo, hi)),
            ..self
        }
    }
}
