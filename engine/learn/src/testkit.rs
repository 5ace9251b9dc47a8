//! Test helpers: the real PostgreSQL scenarios and the design's two instances.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use setpoint_core::{Feature, FeatureVector, Resources, SimMetric, SimScenario};
use setpoint_sdk::Adapter;

/// The PostgreSQL plugin's simulator scenarios, called natively and converted to core types.
pub(crate) fn postgres_scenarios() -> Vec<SimScenario> {
    <setpoint_plugin_postgres::Postgres as Adapter>::describe()
        .scenarios
        .into_iter()
        .map(|s| SimScenario {
            name: s.name,
            description: s.description,
            id_prefix: s.id_prefix,
            count: s.count,
            sizes: s
                .sizes
                .into_iter()
                .map(|r| Resources {
                    cpu_millicores: r.cpu_millicores,
                    memory_bytes: r.memory_bytes,
                    replicas: r.replicas,
                    parameters: r.parameters.into_iter().collect(),
                })
                .collect(),
            metrics: s
                .metrics
                .into_iter()
                .map(|m| SimMetric {
                    metric: m.metric,
                    weeks: m.weeks,
                    daily_amplitude: m.daily_amplitude,
                    noise: m.noise,
                    lift: m.lift,
                    scale: m.scale,
                    min: m.min,
                    max: m.max,
                })
                .collect(),
            gap_hours: s.gap_hours,
        })
        .collect()
}

/// A fingerprint from weekly percentages, W-4..W-1, in cpu, memory, connections, iops order.
pub(crate) fn fingerprint(weeks: [[f64; 4]; 4]) -> FeatureVector {
    let mut features = Vec::new();
    for (metric, values) in ["cpu", "memory", "connections", "iops"].iter().zip(weeks) {
        for (i, v) in values.iter().enumerate() {
            features.push(Feature {
                name: format!("{metric}_w{}", 4 - i),
                value: Some(v / 100.0),
                coverage: 1.0,
            });
        }
    }
    FeatureVector { features }
}

/// Instance A of the design: the reporting database.
pub(crate) fn instance_a() -> FeatureVector {
    fingerprint([
        [11.0, 9.0, 13.0, 10.0],
        [58.0, 61.0, 55.0, 57.0],
        [22.0, 19.0, 24.0, 21.0],
        [31.0, 28.0, 33.0, 29.0],
    ])
}

/// Instance B of the design: the transactional database.
pub(crate) fn instance_b() -> FeatureVector {
    fingerprint([
        [61.0, 66.0, 71.0, 74.0],
        [71.0, 74.0, 77.0, 81.0],
        [74.0, 79.0, 83.0, 89.0],
        [68.0, 71.0, 74.0, 78.0],
    ])
}
