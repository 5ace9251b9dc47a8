//! A MongoDB adapter for setpoint, written against `setpoint-sdk` only.
//!
//! It reads what the Percona `mongodb_exporter` and node_exporter emit, computes the weekly
//! fingerprint the engine's classifier reads (`cpu_w*`, `memory_w*`, `connections_w*`) plus the
//! WiredTiger cache fill (`cache_w*`), and proposes one step down or up that moves the
//! container's size and `storage.wiredTiger.engineConfig.cacheSizeGB` together: MongoDB's own
//! default is 50 % of (RAM − 1 GiB), and a resized container that keeps its old cache size either
//! wastes the new memory or gets OOM-killed.

use setpoint_sdk::scenario::{Vary, flat, ratio};
use setpoint_sdk::types::{
    ActionKind, Aggregation, Class, Descriptor, FeatureSpec, FeatureVector, MetricSpec, Operation,
    ParameterOp, PluginError, Proposal, ProposeRequest, ResizeOp, Resources, RestartOp, Risk,
    Scenario, Series, Target, Window,
};
use setpoint_sdk::weekly::{MIN_COVERAGE, weekly, weekly_series};
use setpoint_sdk::{ABI_VERSION, Adapter, error};

/// (name, PromQL, description); every query returns one series per `instance`.
const METRICS: [(&str, &str, &str); 4] = [
    (
        "cpu",
        r#"1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[5m]))"#,
        "host CPU utilisation",
    ),
    (
        "memory",
        "1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes",
        "host memory utilisation",
    ),
    (
        "connections",
        r#"sum by (instance) (mongodb_ss_connections{conn_type="current"}) / sum by (instance) (mongodb_ss_connections{conn_type=~"current|available"})"#,
        "open connections as a share of the connection limit",
    ),
    (
        "cache",
        "sum by (instance) (mongodb_ss_wt_cache_bytes_currently_in_the_cache) / sum by (instance) (mongodb_ss_wt_cache_maximum_bytes_configured)",
        "WiredTiger cache fill",
    ),
];

const WEEKS: u32 = 4;
const GIB: u64 = 1 << 30;

/// The parameter this adapter keeps in step with the memory.
const CACHE_PARAMETER: &str = "wiredTigerCacheSizeGB";

/// The MongoDB adapter.
pub struct MongoDb;

impl Adapter for MongoDb {
    fn describe() -> Descriptor {
        Descriptor {
            name: "mongodb".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            technology: "mongodb".into(),
            abi_version: ABI_VERSION.to_string(),
            metrics: METRICS
                .iter()
                .map(|(name, query, description)| MetricSpec {
                    name: name.to_string(),
                    query: query.to_string(),
                    aggregation: Aggregation::Mean,
                    unit: "ratio".into(),
                    description: description.to_string(),
                    capacity: None,
                    fallback_query: None,
                })
                .collect(),
            features: METRICS
                .iter()
                .flat_map(|(metric, _, description)| {
                    (1..=WEEKS).rev().map(move |w| FeatureSpec {
                        name: format!("{metric}_w{w}"),
                        description: format!("weekly mean of {description}, week W-{w}"),
                    })
                })
                .collect(),
            actions: vec![ActionKind::ScaleDown, ActionKind::ScaleUp],
            scenarios: scenarios(),
        }
    }

    fn features(
        target: Target,
        window: Window,
        series: Vec<Series>,
    ) -> Result<FeatureVector, PluginError> {
        if window.end_ms <= window.start_ms || window.step_seconds == 0 {
            return Err(error(
                "invalid_window",
                format!("target {}: empty window or zero step", target.id),
            ));
        }
        let window = Window {
            weeks: WEEKS,
            ..window
        };
        let mut out = FeatureVector {
            values: Vec::new(),
            coverage: Vec::new(),
        };
        // Columns in the order of the descriptor's features: per metric, W-4 first.
        for (metric, _, _) in METRICS {
            let stats = match series.iter().find(|s| s.metric == metric) {
                Some(s) => weekly_series(&window, s, Aggregation::Mean, MIN_COVERAGE)
                    .map_err(|message| error("malformed_series", message))?,
                None => weekly(&window, &[], &[], Aggregation::Mean, MIN_COVERAGE),
            };
            for stat in stats {
                out.values.push(stat.value.unwrap_or(f64::NAN));
                out.coverage.push(stat.coverage);
            }
        }
        Ok(out)
    }

    fn propose(request: ProposeRequest) -> Result<Vec<Proposal>, PluginError> {
        let current = &request.target.resources;
        if current.cpu_millicores == 0 || current.memory_bytes == 0 {
            return Err(error(
                "invalid_resources",
                format!("target {} has no known size", request.target.id),
            ));
        }
        let bounds = &request.bounds;
        let mut out = Vec::new();
        for action in [ActionKind::ScaleDown, ActionKind::ScaleUp] {
            let (cpu, memory) = match action {
                ActionKind::ScaleDown => (current.cpu_millicores / 2, current.memory_bytes / 2),
                ActionKind::ScaleUp => (
                    current.cpu_millicores.saturating_mul(2),
                    current.memory_bytes.saturating_mul(2),
                ),
            };
            let cpu = cpu.clamp(bounds.min_cpu_millicores, bounds.max_cpu_millicores);
            let memory = memory.clamp(bounds.min_memory_bytes, bounds.max_memory_bytes);
            if cpu == current.cpu_millicores && memory == current.memory_bytes {
                continue;
            }
            out.push(plan(action, current, cpu, memory));
        }
        if request.classification.class == Class::ScaleUp {
            out.reverse();
        }
        Ok(out)
    }
}

/// MongoDB's default WiredTiger cache: 50 % of (RAM − 1 GiB), at least 0.25 GB.
fn cache_gb(memory_bytes: u64) -> f64 {
    let gib = memory_bytes as f64 / GIB as f64;
    (((gib - 1.0) * 0.5).max(0.25) * 100.0).round() / 100.0
}

fn show_cpu(millicores: u64) -> String {
    let v = millicores as f64 / 1000.0;
    if v.fract() == 0.0 {
        format!("{v:.0} vCPU")
    } else {
        format!("{v} vCPU")
    }
}

fn show_gib(bytes: u64) -> String {
    let v = bytes as f64 / GIB as f64;
    if v.fract() == 0.0 {
        format!("{v:.0} GiB")
    } else {
        format!("{v:.1} GiB")
    }
}

fn plan(action: ActionKind, current: &Resources, cpu: u64, memory: u64) -> Proposal {
    let before_cache = current
        .parameters
        .iter()
        .find(|(k, _)| k == CACHE_PARAMETER)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| format!("{}", cache_gb(current.memory_bytes)));
    let after_cache = format!("{}", cache_gb(memory));
    Proposal {
        action,
        summary: format!(
            "{} / {} → {} / {}, {CACHE_PARAMETER} {before_cache} → {after_cache}",
            show_cpu(current.cpu_millicores),
            show_gib(current.memory_bytes),
            show_cpu(cpu),
            show_gib(memory)
        ),
        operations: vec![
            Operation::Resize(ResizeOp {
                cpu_millicores: cpu,
                memory_bytes: memory,
            }),
            Operation::SetParameter(ParameterOp {
                name: CACHE_PARAMETER.to_string(),
                value: after_cache,
                requires_restart: true,
            }),
            Operation::Restart(RestartOp {
                reason: "the WiredTiger cache size is read at startup; restart members one at a time, primary last".into(),
            }),
        ],
        risk: Risk::Medium,
        rationale: "one step: half or double CPU and memory; WiredTiger cache at MongoDB's default of 50 % of (RAM − 1 GiB)".into(),
    }
}

fn size(vcpu: u64, memory_gib: u64) -> Resources {
    Resources {
        cpu_millicores: vcpu * 1000,
        memory_bytes: memory_gib * GIB,
        replicas: 3,
        parameters: vec![(
            CACHE_PARAMETER.to_string(),
            format!("{}", cache_gb(memory_gib * GIB)),
        )],
    }
}

/// Three behaviours of a replica set, four targets each.
fn scenarios() -> Vec<Scenario> {
    let base = |name: &str, description: &str| Scenario {
        name: name.into(),
        description: description.into(),
        id_prefix: format!("mongo-{name}"),
        count: 4,
        sizes: vec![size(8, 32), size(4, 16), size(16, 64)],
        metrics: Vec::new(),
        gap_hours: None,
    };
    vec![
        Scenario {
            metrics: vec![
                ratio("cpu", [14.0, 12.0, 11.0, 13.0, 12.0], 0.04, 0.01).scaled(0.8, 1.3),
                flat("memory", 0.45, 0.02, 0.01).scaled(0.9, 1.1),
                flat("connections", 0.10, 0.03, 0.01),
                flat("cache", 0.35, 0.02, 0.01),
            ],
            ..base("archive", "an archive replica set read a few times a day")
        },
        Scenario {
            metrics: vec![
                flat("cpu", 0.50, 0.10, 0.02).scaled(0.9, 1.1),
                flat("memory", 0.70, 0.02, 0.01),
                flat("connections", 0.40, 0.08, 0.02),
                flat("cache", 0.80, 0.02, 0.01),
            ],
            ..base(
                "catalog",
                "a product catalogue: busy by day, quiet by night",
            )
        },
        Scenario {
            metrics: vec![
                ratio("cpu", [86.0, 88.0, 89.0, 91.0, 92.0], 0.02, 0.005).lifted(0.0, 0.02),
                flat("memory", 0.90, 0.01, 0.005),
                flat("connections", 0.70, 0.05, 0.01),
                flat("cache", 0.95, 0.01, 0.005),
            ],
            ..base(
                "events",
                "an event store whose CPU has been above 85 % for weeks",
            )
        },
    ]
}

setpoint_sdk::export_adapter!(MongoDb);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use setpoint_sdk::types::{Bounds, Classification};

    #[test]
    fn the_cache_follows_the_memory() {
        assert_eq!(cache_gb(32 * GIB), 15.5);
        assert_eq!(cache_gb(16 * GIB), 7.5);
        assert_eq!(cache_gb(GIB), 0.25);
    }

    #[test]
    fn a_scale_down_halves_the_size_and_the_cache() {
        let proposals = MongoDb::propose(ProposeRequest {
            target: Target {
                id: "mongo-archive-01".into(),
                technology: "mongodb".into(),
                labels: vec![],
                resources: size(8, 32),
            },
            classification: Classification {
                class: Class::ScaleDown,
                confidence: 0.9,
            },
            features: FeatureVector {
                values: vec![],
                coverage: vec![],
            },
            bounds: Bounds {
                min_cpu_millicores: 1000,
                max_cpu_millicores: 64000,
                min_memory_bytes: 2 * GIB,
                max_memory_bytes: 512 * GIB,
            },
        })
        .unwrap();
        assert_eq!(
            proposals[0].summary,
            "8 vCPU / 32 GiB → 4 vCPU / 16 GiB, wiredTigerCacheSizeGB 15.5 → 7.5"
        );
        assert!(
            !proposals[0]
                .operations
                .iter()
                .any(|op| matches!(op, Operation::SetReplicas(_))),
            "the replica set keeps its members"
        );
    }

    #[test]
    fn features_follow_the_schema_in_both_shapes() {
        let week = 7 * 24 * 3600 * 1000_i64;
        let window = Window {
            start_ms: 0,
            end_ms: 5 * week,
            step_seconds: 300,
            weeks: 4,
        };
        let summarised: Vec<Series> = METRICS
            .iter()
            .map(|(m, _, _)| Series {
                metric: m.to_string(),
                timestamps_ms: (2..=5).map(|k| k * week).collect(),
                values: vec![0.2; 4],
                sample_counts: Some(vec![2016; 4]),
            })
            .collect();
        let target = Target {
            id: "t".into(),
            technology: "mongodb".into(),
            labels: vec![],
            resources: size(4, 16),
        };
        let features = MongoDb::features(target, window, summarised).unwrap();
        assert_eq!(features.values.len(), MongoDb::describe().features.len());
        assert_eq!(features.coverage.len(), features.values.len());
        assert!(features.values.iter().all(|&v| v == 0.2));
    }
}
