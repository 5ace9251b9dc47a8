//! The PostgreSQL adapter.
//!
//! Observes host CPU, memory, disk busy time and active connections; computes the 16-feature
//! weekly fingerprint (four metrics × weeks W-4..W-1); proposes one step down and one step up
//! the SDK's standard size ladder (half and double, keeping the instance shape's memory per
//! vCPU), and moves the memory-bound parameters with the size — `shared_buffers` at 25 % and
//! `effective_cache_size` at 75 % of memory, `work_mem` (when set) from the memory per
//! connection within 4MB..256MB, `max_connections` up by half under connection pressure and
//! never below the connections in use at the window's peak — because resizing a PostgreSQL
//! container without its configuration changes nothing the database can use.

use setpoint_sdk::fingerprint::{self, Fingerprint, MetricDef};
use setpoint_sdk::proposal::{ProposalBuilder, parameter};
use setpoint_sdk::scenario::{Vary, flat, ratio};
use setpoint_sdk::size::{GIB, MIB, SizeLadder, config_size, push_u64};
use setpoint_sdk::types::{
    ActionKind, Bounds, Class, Descriptor, FeatureVector, PluginError, Proposal, ProposeRequest,
    Resources, Scenario, Series, Target, Window,
};
use setpoint_sdk::{Adapter, error};

/// The metrics (ratios 0..=1, one series per `instance`).
const METRICS: [MetricDef; 4] = [
    MetricDef::ratio(
        "cpu",
        r#"1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[5m]))"#,
        "host CPU utilisation",
    ),
    MetricDef::ratio(
        "memory",
        "1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes",
        "host memory utilisation",
    ),
    MetricDef::ratio(
        "connections",
        r#"sum by (instance) (pg_stat_activity_count{state="active"}) / on (instance) pg_settings_max_connections"#,
        "active connections as a share of max_connections",
    ),
    MetricDef::ratio_of_capacity(
        "iops",
        "sum by (instance) (rate(node_disk_reads_completed_total[5m]) + rate(node_disk_writes_completed_total[5m]))",
        "provisioned_iops",
        "max by (instance) (rate(node_disk_io_time_seconds_total[5m]))",
        "disk reads and writes completed per second as a share of the provisioned IOPS (else the busiest disk's busy fraction)",
    ),
];

/// Connection share from which a scale-up also raises `max_connections`.
const CONNECTION_PRESSURE: f64 = 0.95;

/// Bounds of `work_mem`: below 4 MB sorts spill to disk for trivial queries; above 256 MB a
/// burst of parallel sorts can exhaust the node whatever its size.
const WORK_MEM_MIN: u64 = 4 * MIB;
const WORK_MEM_MAX: u64 = 256 * MIB;

/// The PostgreSQL adapter.
pub struct Postgres;

#[cfg(test)]
fn feature_names() -> Vec<String> {
    fingerprint::feature_names(&METRICS)
}

impl Adapter for Postgres {
    fn describe() -> Descriptor {
        fingerprint::descriptor(
            "postgres",
            env!("CARGO_PKG_VERSION"),
            &METRICS,
            vec![ActionKind::ScaleDown, ActionKind::ScaleUp],
            scenarios(),
        )
    }

    fn features(
        target: Target,
        window: Window,
        series: Vec<Series>,
    ) -> Result<FeatureVector, PluginError> {
        fingerprint::weekly_features(&target.id, window, &series, &METRICS)
    }

    fn propose(request: ProposeRequest) -> Result<Vec<Proposal>, PluginError> {
        let current = &request.target.resources;
        if current.cpu_millicores == 0 || current.memory_bytes == 0 {
            return Err(error(
                "invalid_resources",
                format!(
                    "target {} has {} millicores and {} bytes of memory; both must be positive",
                    request.target.id, current.cpu_millicores, current.memory_bytes
                ),
            ));
        }
        let features = Fingerprint::new(&METRICS, &request.features);
        let connections = Connections {
            last_week: features.value("connections", 1),
            peak: features.peak("connections"),
        };
        let mut out = Vec::new();
        for action in [ActionKind::ScaleDown, ActionKind::ScaleUp] {
            if let Some(p) = plan(action, current, &request.bounds, connections) {
                out.push(p);
            }
        }
        // The class only orders the list; the policy chooses.
        if request.classification.class == Class::ScaleUp {
            out.reverse();
        }
        Ok(out)
    }
}

/// Active connections as a share of `max_connections`, from the features.
#[derive(Debug, Clone, Copy)]
struct Connections {
    /// Last week's mean.
    last_week: Option<f64>,
    /// The highest weekly mean in the window.
    peak: Option<f64>,
}

/// Sizes one step along the standard ladder in `action`'s direction, clamped to `bounds`;
/// `None` when the clamp leaves the size unchanged (nothing feasible that way).
fn plan(
    action: ActionKind,
    current: &Resources,
    bounds: &Bounds,
    connections: Connections,
) -> Option<Proposal> {
    let step = SizeLadder::standard().step(current, action, bounds)?;
    let memory = step.memory_bytes;
    let mut plan = ProposalBuilder::new(action, current);
    plan.resize(step.cpu_millicores, memory);
    for note in &step.notes {
        plan.note(note.clone());
    }
    // A quarter of the new memory, but never more buffers on a smaller node nor fewer on a
    // larger one: a target tuned by hand keeps its tuning in the direction it moves, and a
    // step that leaves memory alone (the safety floor can ask for one) leaves it alone.
    let buffers_now = parameter(current, "shared_buffers").and_then(pg_bytes);
    let buffers = match (action, buffers_now) {
        (ActionKind::ScaleDown, Some(now)) => (memory / 4).min(now),
        (ActionKind::ScaleUp, Some(now)) => (memory / 4).max(now),
        (_, None) => memory / 4,
    };
    if buffers_now != Some(buffers) {
        plan.set_parameter("shared_buffers", &pg_size(buffers), true);
    }
    if memory != current.memory_bytes && parameter(current, "effective_cache_size").is_some() {
        // A planner hint: it would crowd the one-line summary.
        plan.set_parameter_quietly("effective_cache_size", &pg_size(memory / 4 * 3), false);
    }
    let max_connections =
        parameter(current, "max_connections").and_then(|v| v.trim().parse::<u64>().ok());
    let mut new_max_connections = max_connections;
    if let Some(max) = max_connections {
        let mut proposed = max;
        if action == ActionKind::ScaleUp
            && connections
                .last_week
                .is_some_and(|c| c >= CONNECTION_PRESSURE)
        {
            proposed = max + max / 2;
            plan.note(format!(
                "active connections at {:.0} % of max_connections last week",
                connections.last_week.unwrap_or_default() * 100.0
            ));
        }
        // Never below the connections already in use at the window's busiest week.
        let in_use = connections
            .peak
            .map(|c| (c * max as f64).ceil() as u64)
            .unwrap_or(0);
        if proposed < in_use {
            plan.note(format!(
                "max_connections held at the {in_use} connections in use at the window's peak"
            ));
            proposed = in_use;
        }
        let mut text = String::with_capacity(8);
        push_u64(&mut text, proposed);
        plan.set_parameter("max_connections", &text, true);
        new_max_connections = Some(proposed);
    }
    if parameter(current, "work_mem").is_some()
        && let Some(max) = new_max_connections.filter(|&m| m > 0)
    {
        plan.set_parameter_quietly("work_mem", &work_mem(memory, max), false);
    }
    if plan.restart_needed() {
        plan.restart("shared_buffers and max_connections take effect only after a restart");
    }
    let rationale = [
        step.description.as_str(),
        ", keeping the instance shape's memory per vCPU; shared_buffers at 25 % and effective_cache_size at 75 % of memory",
        if parameter(current, "work_mem").is_some() {
            "; work_mem at a quarter of memory shared by max_connections, within 4MB..256MB"
        } else {
            ""
        },
    ]
    .concat();
    Some(plan.build(&rationale))
}

/// A PostgreSQL memory setting in bytes: a number with an optional unit (`kB`, `MB`, `GB`,
/// `TB`; none means 8 kB pages, as `shared_buffers` reads); `None` when it is not one.
fn pg_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let number: u64 = text.get(..digits)?.parse().ok()?;
    let unit = match text.get(digits..)?.trim() {
        "" => 8 * 1024,
        "kB" => 1024,
        "MB" => MIB,
        "GB" => GIB,
        "TB" => 1024 * GIB,
        _ => return None,
    };
    number.checked_mul(unit)
}

/// `work_mem` for a node: a quarter of its memory shared by `max_connections` (each connection
/// may sort or hash at least once at a time), within [`WORK_MEM_MIN`]..[`WORK_MEM_MAX`], in
/// whole megabytes.
fn work_mem(memory_bytes: u64, max_connections: u64) -> String {
    let share = (memory_bytes / 4 / max_connections).clamp(WORK_MEM_MIN, WORK_MEM_MAX);
    let mut text = String::with_capacity(8);
    push_u64(&mut text, share / MIB);
    text.push_str("MB");
    text
}

/// An instance size with the parameters that follow it.
fn instance(vcpu: u64, memory_gib: u64) -> Resources {
    let memory = memory_gib * GIB;
    let max_connections = match vcpu {
        0..=4 => 100,
        5..=16 => 200,
        _ => 400,
    };
    Resources {
        cpu_millicores: vcpu * 1000,
        memory_bytes: memory,
        replicas: 1,
        parameters: vec![
            ("effective_cache_size".to_string(), pg_size(memory / 4 * 3)),
            ("max_connections".to_string(), max_connections.to_string()),
            ("shared_buffers".to_string(), pg_size(memory / 4)),
        ],
    }
}

/// The simulator's PostgreSQL fleet: the design's reporting (A) and transactional (B)
/// instances and the behaviours around them, 54 targets in all. Metrics in [`METRICS`] order.
fn scenarios() -> Vec<Scenario> {
    let sizes = || {
        vec![
            instance(8, 32),
            instance(16, 64),
            instance(4, 16),
            instance(32, 128),
            instance(2, 8),
        ]
    };
    let scenario = |name: &str, prefix: &str, count: u32, description: &str| Scenario {
        name: name.to_string(),
        description: description.to_string(),
        id_prefix: prefix.to_string(),
        count,
        sizes: sizes(),
        metrics: Vec::new(),
        gap_hours: None,
    };
    vec![
        Scenario {
            metrics: vec![
                ratio("cpu", [12.0, 11.0, 9.0, 13.0, 10.0], 0.04, 0.01).scaled(0.7, 2.5),
                ratio("memory", [57.0, 58.0, 61.0, 55.0, 57.0], 0.02, 0.01).scaled(0.75, 1.05),
                ratio("connections", [20.0, 22.0, 19.0, 24.0, 21.0], 0.05, 0.01).scaled(0.5, 1.5),
                ratio("iops", [30.0, 31.0, 28.0, 33.0, 29.0], 0.06, 0.015).scaled(0.5, 1.5),
            ],
            ..scenario(
                "reporting",
                "pg-reporting",
                10,
                "instance A of the design: a reporting database idling at a fraction of its size",
            )
        },
        Scenario {
            // The canonical instance B is 16 vCPU / 64 GiB.
            sizes: vec![
                instance(16, 64),
                instance(16, 64),
                instance(4, 16),
                instance(32, 128),
                instance(2, 8),
            ],
            metrics: vec![
                ratio("cpu", [57.0, 61.0, 66.0, 71.0, 74.0], 0.06, 0.015).scaled(0.85, 1.05),
                ratio("memory", [68.0, 71.0, 74.0, 77.0, 81.0], 0.03, 0.01).scaled(0.85, 1.05),
                ratio("connections", [70.0, 74.0, 79.0, 83.0, 89.0], 0.03, 0.01).scaled(0.85, 1.05),
                ratio("iops", [65.0, 68.0, 71.0, 74.0, 78.0], 0.06, 0.015).scaled(0.85, 1.05),
            ],
            ..scenario(
                "transactional",
                "pg-transactional",
                8,
                "instance B of the design: every dimension climbs, no single threshold crossed",
            )
        },
        Scenario {
            metrics: vec![
                flat("cpu", 0.50, 0.08, 0.02).scaled(0.9, 1.2),
                flat("memory", 0.60, 0.03, 0.01).scaled(0.9, 1.15),
                flat("connections", 0.40, 0.08, 0.02).scaled(0.75, 1.25),
                flat("iops", 0.40, 0.08, 0.02).scaled(0.75, 1.25),
            ],
            ..scenario(
                "steady-mid",
                "pg-steady",
                14,
                "flat, mid-range utilisation: nothing to do",
            )
        },
        Scenario {
            // The daily swing peaks above the 85 % scale-up line while the weekly mean stays
            // mid-range: weekly means alone must not read this as saturation.
            metrics: vec![
                flat("cpu", 0.50, 0.36, 0.04).scaled(0.9, 1.1),
                flat("memory", 0.58, 0.05, 0.01).scaled(0.95, 1.05),
                flat("connections", 0.40, 0.25, 0.03).scaled(0.9, 1.1),
                flat("iops", 0.45, 0.30, 0.04).scaled(0.9, 1.1),
            ],
            ..scenario(
                "spiky-but-safe",
                "pg-spiky",
                8,
                "mid-range on average, daily peaks near saturation: not idle, not saturated",
            )
        },
        Scenario {
            metrics: vec![
                ratio("cpu", [87.0, 88.0, 90.0, 91.0, 93.0], 0.02, 0.005).lifted(0.0, 0.02),
                flat("memory", 0.80, 0.02, 0.01),
                flat("connections", 0.60, 0.05, 0.01).scaled(0.8, 1.2),
                flat("iops", 0.70, 0.05, 0.01).scaled(0.8, 1.1),
            ],
            ..scenario("saturated", "pg-saturated", 5, "CPU above 85 % every week")
        },
        Scenario {
            metrics: vec![
                flat("cpu", 0.55, 0.08, 0.02).scaled(0.9, 1.1),
                flat("memory", 0.70, 0.03, 0.01).scaled(0.95, 1.05),
                ratio("connections", [95.0, 95.5, 96.0, 97.0, 97.5], 0.004, 0.003)
                    .lifted(0.0, 0.01),
                flat("iops", 0.50, 0.08, 0.02).scaled(0.9, 1.1),
            ],
            ..scenario(
                "connection-pressure",
                "pg-connections",
                5,
                "active connections at 95 % or more of max_connections",
            )
        },
        Scenario {
            // Idle enough to be shrunk — had the data been there. Past 10.5 days, at least
            // half of W-2 is gone along with all of W-1.
            metrics: vec![
                flat("cpu", 0.15, 0.04, 0.01),
                flat("memory", 0.50, 0.02, 0.01),
                flat("connections", 0.20, 0.05, 0.01),
                flat("iops", 0.25, 0.05, 0.01),
            ],
            gap_hours: Some((11.0 * 24.0, 13.5 * 24.0)),
            ..scenario(
                "telemetry-gap",
                "pg-gap",
                4,
                "exporter outage: no samples for most of W-2 and all of W-1",
            )
        },
    ]
}

/// PostgreSQL's size syntax: whole GB when exact, else MB.
fn pg_size(bytes: u64) -> String {
    config_size(bytes, "GB", "MB")
}

setpoint_sdk::export_adapter!(Postgres);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use setpoint_sdk::proposal;
    use setpoint_sdk::types::{Classification, Operation, Risk};

    fn resources(vcpu: u64, gib: u64, params: &[(&str, &str)]) -> Resources {
        Resources {
            cpu_millicores: vcpu * 1000,
            memory_bytes: gib * GIB,
            replicas: 1,
            parameters: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn bounds() -> Bounds {
        Bounds {
            min_cpu_millicores: 1000,
            max_cpu_millicores: 64_000,
            min_memory_bytes: 2 * GIB,
            max_memory_bytes: 512 * GIB,
        }
    }

    fn request(resources: Resources, class: Class, connections_w1: f64) -> ProposeRequest {
        ProposeRequest {
            target: Target {
                id: "pg-1".into(),
                technology: "postgres".into(),
                labels: vec![],
                resources,
            },
            classification: Classification {
                class,
                confidence: 0.8,
            },
            features: {
                // Only last week's connections known; every other week missing.
                let mut f = fingerprint::flat_features(&METRICS, &[]);
                f.values.fill(f64::NAN);
                f.values[2 * 4 + 3] = connections_w1;
                f
            },
            bounds: bounds(),
        }
    }

    #[test]
    fn instance_a_halves_with_shared_buffers() {
        let r = resources(
            8,
            32,
            &[("shared_buffers", "8GB"), ("max_connections", "200")],
        );
        let proposals = Postgres::propose(request(r, Class::ScaleDown, 0.21)).unwrap();
        let down = proposals
            .iter()
            .find(|p| p.action == ActionKind::ScaleDown)
            .unwrap();
        assert_eq!(
            down.summary,
            "8 vCPU / 32 GiB → 4 vCPU / 16 GiB, shared_buffers 8GB → 4GB"
        );
        assert_eq!(down.risk, Risk::Medium);
        assert!(matches!(
            down.operations.last(),
            Some(Operation::Restart(_))
        ));
        let up = proposals
            .iter()
            .find(|p| p.action == ActionKind::ScaleUp)
            .unwrap();
        assert_eq!(
            up.summary,
            "8 vCPU / 32 GiB → 16 vCPU / 64 GiB, shared_buffers 8GB → 16GB"
        );
    }

    #[test]
    fn connection_pressure_raises_max_connections() {
        let r = resources(
            4,
            16,
            &[("shared_buffers", "4GB"), ("max_connections", "200")],
        );
        let proposals = Postgres::propose(request(r, Class::ScaleUp, 0.97)).unwrap();
        assert_eq!(proposals[0].action, ActionKind::ScaleUp);
        assert_eq!(
            proposals[0].summary,
            "4 vCPU / 16 GiB → 8 vCPU / 32 GiB, shared_buffers 4GB → 8GB, max_connections 200 → 300"
        );
    }

    #[test]
    fn floors_make_a_kind_infeasible_and_are_explained() {
        let r = resources(1, 2, &[("shared_buffers", "512MB")]);
        let proposals = Postgres::propose(request(r, Class::ScaleDown, 0.1)).unwrap();
        assert!(proposals.iter().all(|p| p.action == ActionKind::ScaleUp));

        let r = resources(2, 8, &[("shared_buffers", "2GB")]);
        let proposals = Postgres::propose(request(r.clone(), Class::ScaleDown, 0.1)).unwrap();
        let down = &proposals[0];
        let after = proposal::after(&r, down);
        assert_eq!(after.cpu_millicores, 1000);
        assert_eq!(after.memory_bytes, 4 * GIB);

        let r = resources(1, 3, &[("shared_buffers", "768MB")]);
        let proposals = Postgres::propose(request(r, Class::ScaleDown, 0.1)).unwrap();
        let down = proposals
            .iter()
            .find(|p| p.action == ActionKind::ScaleDown)
            .unwrap();
        assert!(
            down.rationale.contains("CPU held at the floor of 1 vCPU"),
            "{}",
            down.rationale
        );
    }

    #[test]
    fn work_mem_follows_memory_per_connection_within_bounds() {
        assert_eq!(work_mem(16 * GIB, 200), "20MB");
        assert_eq!(work_mem(2 * GIB, 400), "4MB", "floor");
        assert_eq!(work_mem(512 * GIB, 100), "256MB", "cap");
        let r = resources(
            8,
            32,
            &[
                ("shared_buffers", "8GB"),
                ("max_connections", "200"),
                ("work_mem", "64MB"),
            ],
        );
        let proposals = Postgres::propose(request(r.clone(), Class::ScaleDown, 0.21)).unwrap();
        let down = &proposals[0];
        assert_eq!(down.action, ActionKind::ScaleDown);
        assert_eq!(
            parameter(&proposal::after(&r, down), "work_mem"),
            Some("20MB")
        );
        // Quiet: the summary stays one readable line.
        assert_eq!(
            down.summary,
            "8 vCPU / 32 GiB → 4 vCPU / 16 GiB, shared_buffers 8GB → 4GB"
        );
        assert!(down.rationale.contains("4MB..256MB"), "{}", down.rationale);
    }

    #[test]
    fn max_connections_never_below_the_connections_in_use() {
        // The configured limit is below what was in use at the peak (it was lowered by hand
        // after a busy week): any plan restores at least the peak.
        let r = resources(
            4,
            16,
            &[("shared_buffers", "4GB"), ("max_connections", "100")],
        );
        let mut req = request(r.clone(), Class::ScaleDown, 0.5);
        req.features.values[2 * 4 + 1] = 1.2; // connections_w3
        let proposals = Postgres::propose(req).unwrap();
        for p in &proposals {
            let max: u64 = parameter(&proposal::after(&r, p), "max_connections")
                .unwrap()
                .parse()
                .unwrap();
            assert!(max >= 120, "{}: {max}", p.summary);
            assert!(
                p.rationale.contains("connections in use"),
                "{}",
                p.rationale
            );
        }
    }

    #[test]
    fn zero_resources_are_refused() {
        let r = resources(0, 0, &[]);
        let error = Postgres::propose(request(r, Class::ScaleDown, 0.1)).unwrap_err();
        assert_eq!(error.code, "invalid_resources");
    }

    #[test]
    fn features_follow_the_schema_and_show_missing_data() {
        let end = 5 * 7 * 24 * 3_600_000i64;
        let window = Window {
            start_ms: 0,
            end_ms: end,
            step_seconds: 300,
            weeks: 4,
        };
        let ts: Vec<i64> = (0..(5 * 2016)).map(|i| i * 300_000).collect();
        let series = vec![Series {
            metric: "cpu".into(),
            values: vec![0.25; ts.len()],
            timestamps_ms: ts,
            sample_counts: None,
        }];
        let target = Target {
            id: "pg-1".into(),
            technology: "postgres".into(),
            labels: vec![],
            resources: resources(8, 32, &[]),
        };
        let features = Postgres::features(target, window, series).unwrap();
        assert_eq!(features.values.len(), feature_names().len());
        assert_eq!(feature_names()[3], "cpu_w1");
        let fp = Fingerprint::new(&METRICS, &features);
        assert!((fp.value("cpu", 1).unwrap() - 0.25).abs() < 1e-9);
        assert_eq!(features.coverage[3], 1.0);
        assert_eq!(feature_names()[4], "memory_w4");
        assert_eq!(fp.value("memory", 4), None);
        assert_eq!(features.coverage[4], 0.0);
    }

    #[test]
    fn describe_matches_the_feature_schema() {
        let d = Postgres::describe();
        assert_eq!(d.abi_version, setpoint_sdk::ABI_VERSION);
        assert_eq!(d.scenarios.len(), 7);
        assert_eq!(d.metrics.len(), 4);
        let names: Vec<String> = d.features.iter().map(|f| f.name.clone()).collect();
        assert_eq!(names, feature_names());
    }

    #[test]
    fn a_smaller_node_never_gets_more_buffers() {
        assert_eq!(pg_bytes("1536MB"), Some(1536 * MIB));
        assert_eq!(pg_bytes("16384"), Some(16384 * 8 * 1024));
        assert_eq!(pg_bytes("lots"), None);
        let mut current = instance(2, 8);
        for (name, value) in current.parameters.iter_mut() {
            if name == "shared_buffers" {
                *value = "1536MB".to_string();
            }
        }
        let connections = Connections {
            last_week: None,
            peak: None,
        };
        // CPU only (the floor held memory): buffers untouched, so no restart for them.
        let bounds = Bounds {
            min_cpu_millicores: 250,
            max_cpu_millicores: 64_000,
            min_memory_bytes: 8 * GIB,
            max_memory_bytes: 512 * GIB,
        };
        let p = plan(ActionKind::ScaleDown, &current, &bounds, connections).unwrap();
        assert!(!p.summary.contains("shared_buffers"), "{}", p.summary);
        // Halving: a quarter of 4 GiB is 1 GiB, below the hand-tuned 1536MB.
        let bounds = Bounds {
            min_memory_bytes: GIB,
            ..bounds
        };
        let p = plan(ActionKind::ScaleDown, &current, &bounds, connections).unwrap();
        assert!(
            p.summary.contains("shared_buffers 1536MB → 1GB"),
            "{}",
            p.summary
        );
    }
}
