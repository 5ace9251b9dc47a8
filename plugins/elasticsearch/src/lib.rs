//! The Elasticsearch adapter.
//!
//! A target is a cluster's data tier; its `replicas` are data nodes. Observes, from
//! elasticsearch_exporter (one per cluster, so `instance` names the cluster), node CPU, JVM heap
//! used against its maximum, search latency, unassigned shards and data-path disk use.
//!
//! Two ways to grow or shrink, chosen per target:
//! - **heap**: when the heap is what is short (or idle), the container memory steps along the
//!   SDK's size ladder and the heap follows it at half the memory — the other half is the
//!   filesystem cache Lucene reads segments through — and never above 30 GiB, under the
//!   ~32 GiB limit past which the JVM loses compressed object pointers and a bigger heap holds
//!   fewer objects. `heap_size` is the value given to both `-Xms` and `-Xmx`; it needs a
//!   rolling restart.
//! - **data nodes**: otherwise (CPU- or latency-bound, or the heap at its cap) a quarter more
//!   data nodes (at least one), or one fewer; shards relocate onto or off them.
//!
//! A scale-down is never offered while any shard was unassigned in the window (or that data is
//! missing): a cluster that cannot place its shards has no capacity to give back. Removing a
//! node also needs the remaining disks to stay under 75 % (the low disk watermark is 85 %) and
//! at least three data nodes; shrinking the heap needs the window's peak heap use to fit 75 %
//! of the smaller heap.

use setpoint_sdk::bindings::setpoint::plugin::host::Level;
use setpoint_sdk::fingerprint::{self, Fingerprint, MetricDef};
use setpoint_sdk::proposal::{ProposalBuilder, parameter};
use setpoint_sdk::scenario::{Vary, flat, gauge, ratio};
use setpoint_sdk::size::{GIB, SizeLadder, parse_config_size};
use setpoint_sdk::types::{
    ActionKind, Aggregation, Bounds, Class, Descriptor, FeatureVector, PluginError, Proposal,
    ProposeRequest, Resources, Risk, Scenario, ScenarioMetric, Series, Target, Window,
};
use setpoint_sdk::{Adapter, error, log};

/// The metrics, one series per `instance` (the cluster's exporter).
const METRICS: [MetricDef; 5] = [
    MetricDef::ratio(
        "cpu",
        "avg by (instance) (elasticsearch_process_cpu_percent) / 100",
        "CPU of the Elasticsearch processes, averaged over the nodes",
    ),
    MetricDef::ratio(
        "memory",
        r#"max by (instance) (elasticsearch_jvm_memory_used_bytes{area="heap"} / elasticsearch_jvm_memory_max_bytes{area="heap"})"#,
        "JVM heap used as a share of its maximum, on the fullest node",
    ),
    MetricDef {
        name: "latency",
        query: "sum by (instance) (rate(elasticsearch_indices_search_query_time_seconds[5m])) / sum by (instance) (rate(elasticsearch_indices_search_query_total[5m]))",
        unit: "seconds",
        aggregation: Aggregation::Mean,
        description: "mean search query time",
        capacity: None,
        fallback_query: None,
    },
    MetricDef {
        name: "unassigned",
        query: "max by (instance) (elasticsearch_cluster_health_unassigned_shards)",
        unit: "shards",
        // One moment with unassigned shards is enough to forbid a scale-in.
        aggregation: Aggregation::Max,
        description: "unassigned shards",
        capacity: None,
        fallback_query: None,
    },
    MetricDef::ratio(
        "disk",
        "max by (instance) (1 - elasticsearch_filesystem_data_available_bytes / elasticsearch_filesystem_data_size_bytes)",
        "data-path disk use of the fullest node",
    ),
];

/// Largest heap: below the compressed-oops limit (~32 GiB) with a margin, as Elastic advises.
const HEAP_CAP: u64 = 30 * GIB;

/// Heap use at the window's peak from which a scale-up grows the heap rather than the nodes.
const HEAP_PRESSURE: f64 = 0.75;

/// Highest share of the smaller heap the window's peak heap use may fill after a scale-down.
const SCALE_DOWN_HEAP_FILL: f64 = 0.75;

/// Highest disk use the remaining nodes may reach after one is removed.
const SCALE_IN_DISK: f64 = 0.75;

/// Fewest data nodes: a primary and two replicas on distinct nodes.
const MIN_DATA_NODES: u32 = 3;

/// Most data nodes a proposal may go to.
const MAX_DATA_NODES: u32 = 200;

/// The Elasticsearch adapter.
pub struct Elasticsearch;

impl Adapter for Elasticsearch {
    fn describe() -> Descriptor {
        fingerprint::descriptor(
            "elasticsearch",
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
        if current.cpu_millicores == 0 || current.memory_bytes == 0 || current.replicas == 0 {
            return Err(error(
                "invalid_resources",
                format!(
                    "target {} has {} millicores, {} bytes of memory and {} data nodes; all must be positive",
                    request.target.id,
                    current.cpu_millicores,
                    current.memory_bytes,
                    current.replicas
                ),
            ));
        }
        let mut out = Vec::new();
        for action in [ActionKind::ScaleDown, ActionKind::ScaleUp] {
            let plan = match action {
                ActionKind::ScaleDown => scale_down(
                    current,
                    Fingerprint::new(&METRICS, &request.features),
                    &request.bounds,
                ),
                ActionKind::ScaleUp => scale_up(
                    current,
                    Fingerprint::new(&METRICS, &request.features),
                    &request.bounds,
                ),
            };
            match plan {
                Ok(p) => out.push(p),
                Err(why) => log(
                    Level::Info,
                    &format!("{}: no {action:?} proposal: {why}", request.target.id),
                ),
            }
        }
        if request.classification.class == Class::ScaleUp {
            out.reverse();
        }
        Ok(out)
    }
}

/// The heap for a node of `memory_bytes`: half of it, in whole GiB, at most [`HEAP_CAP`].
fn heap_for(memory_bytes: u64) -> u64 {
    (memory_bytes / 2 / GIB * GIB).min(HEAP_CAP)
}

/// The JVM's size syntax: `16g`, or `512m` under a gibibyte.
fn jvm_size(bytes: u64) -> String {
    if bytes >= GIB {
        format!("{}g", bytes / GIB)
    } else {
        format!("{}m", bytes / (1024 * 1024))
    }
}

fn current_heap(current: &Resources) -> Option<u64> {
    parameter(current, "heap_size")
        .and_then(parse_config_size)
        .filter(|&h| h > 0)
}

/// Resizes the nodes one step and moves the heap with them.
fn resize_with_heap<'a>(
    action: ActionKind,
    current: &'a Resources,
    bounds: &Bounds,
) -> Result<ProposalBuilder<'a>, String> {
    let step = SizeLadder::standard()
        .step(current, action, bounds)
        .ok_or("the bounds leave the node size unchanged")?;
    let heap = heap_for(step.memory_bytes);
    if heap == 0 {
        return Err("the smaller node would have under 1 GiB of heap".to_string());
    }
    let mut plan = ProposalBuilder::new(action, current);
    plan.resize(step.cpu_millicores, step.memory_bytes);
    plan.set_parameter("heap_size", &jvm_size(heap), true);
    for note in &step.notes {
        plan.note(note.clone());
    }
    if heap == HEAP_CAP {
        plan.note("heap held at the 30 GiB cap, under the compressed-oops limit");
    }
    plan.restart("the heap size takes effect only after a rolling restart of the nodes");
    plan.note(step.description);
    Ok(plan)
}

/// Why the cluster must not shrink now, if it must not.
fn refuse_scale_down(features: Fingerprint<'_>) -> Result<(), String> {
    match features.peak("unassigned") {
        Some(shards) if shards > 0.0 => Err(format!(
            "{shards:.0} unassigned shard(s) at the window's worst; never scale in while shards are unassigned"
        )),
        _ if !features.complete("unassigned") => Err(
            "unassigned shards unknown for part of the window; never scale in without proof every shard is placed"
                .to_string(),
        ),
        _ => Ok(()),
    }
}

/// One data node fewer when the disks allow it, else a smaller node and heap.
fn scale_down(
    current: &Resources,
    features: Fingerprint<'_>,
    bounds: &Bounds,
) -> Result<Proposal, String> {
    refuse_scale_down(features)?;
    let nodes = current.replicas;
    let disk = features.peak("disk");
    let disk_after = disk.map(|d| d * f64::from(nodes) / f64::from(nodes.saturating_sub(1).max(1)));
    let why_not_a_node = if nodes <= MIN_DATA_NODES {
        Some(format!(
            "{nodes} data nodes is the floor ({MIN_DATA_NODES})"
        ))
    } else {
        match disk_after {
            Some(after) if after <= SCALE_IN_DISK => {
                let mut plan = ProposalBuilder::new(ActionKind::ScaleDown, current);
                plan.rebalance("drain the shards off the node to be removed (allocation exclude) before it stops")
                    .set_replicas(nodes - 1, "data nodes")
                    .raise_risk(Risk::High)
                    .note(format!(
                        "disk at most {:.0} % today, about {:.0} % on {} nodes",
                        disk.unwrap_or_default() * 100.0,
                        after * 100.0,
                        nodes - 1
                    ))
                    .note("no unassigned shards in the window");
                return Ok(plan.build("one data node fewer; its shards drained first"));
            }
            Some(after) => Some(format!(
                "the remaining disks would be {:.0} % full",
                after * 100.0
            )),
            None => Some("disk use unknown".to_string()),
        }
    };
    // Keep the node count; give back memory instead, if the heap still fits.
    let (Some(heap), Some(used)) = (current_heap(current), features.peak("memory")) else {
        return Err(format!(
            "{}; heap size or heap use unknown",
            why_not_a_node.unwrap_or_default()
        ));
    };
    let mut plan = resize_with_heap(ActionKind::ScaleDown, current, bounds)?;
    let new_heap = plan
        .parameter("heap_size")
        .and_then(parse_config_size)
        .filter(|&h| h > 0)
        .unwrap_or(heap);
    let fill = used * heap as f64 / new_heap as f64;
    if fill > SCALE_DOWN_HEAP_FILL {
        return Err(format!(
            "{}; the heap in use at the window's peak would fill {:.0} % of a {} heap",
            why_not_a_node.unwrap_or_default(),
            fill * 100.0,
            jvm_size(new_heap)
        ));
    }
    if let Some(why) = why_not_a_node {
        plan.note(format!("not a node fewer: {why}"));
    }
    plan.note("no unassigned shards in the window");
    Ok(plan.build("smaller nodes, the heap at half their memory"))
}

/// A bigger heap when the heap is short and below its cap, else more data nodes.
fn scale_up(
    current: &Resources,
    features: Fingerprint<'_>,
    bounds: &Bounds,
) -> Result<Proposal, String> {
    let heap_used = features.peak("memory");
    let heap_short = heap_used.is_some_and(|h| h >= HEAP_PRESSURE);
    let below_cap = current_heap(current).is_none_or(|h| h < HEAP_CAP);
    if heap_short && below_cap {
        let mut plan = resize_with_heap(ActionKind::ScaleUp, current, bounds)?;
        plan.note(format!(
            "heap {:.0} % used at the window's peak",
            heap_used.unwrap_or_default() * 100.0
        ));
        return Ok(plan.build("bigger nodes, the heap at half their memory"));
    }
    if current.replicas >= MAX_DATA_NODES {
        return Err(format!("already at the cap of {MAX_DATA_NODES} data nodes"));
    }
    let nodes = (current.replicas + (current.replicas / 4).max(1)).min(MAX_DATA_NODES);
    let mut plan = ProposalBuilder::new(ActionKind::ScaleUp, current);
    plan.set_replicas(nodes, "data nodes")
        .rebalance("shards relocate onto the new data nodes (throttled by the cluster's recovery settings)")
        .raise_risk(Risk::Medium);
    let latency = features.weeks("latency");
    if let (Some(Some(first)), Some(Some(last))) = (latency.first(), latency.last())
        && last > first
    {
        plan.note(format!(
            "search latency rose from {:.0} ms to {:.0} ms over the window",
            first * 1000.0,
            last * 1000.0
        ));
    }
    if heap_short {
        plan.note("heap short but already at the 30 GiB cap: more nodes, not more heap");
    }
    Ok(plan.build("a quarter more data nodes (at least one), shards spread onto them"))
}

/// A data tier of `nodes` nodes of the given size, the heap at half the memory.
fn tier(vcpu: u64, memory_gib: u64, nodes: u32) -> Resources {
    let memory = memory_gib * GIB;
    Resources {
        cpu_millicores: vcpu * 1000,
        memory_bytes: memory,
        replicas: nodes,
        parameters: vec![("heap_size".to_string(), jvm_size(heap_for(memory)))],
    }
}

fn healthy() -> ScenarioMetric {
    gauge("unassigned", [0.0; 5], 0.0, 0.0, 0.0, 1e6)
}

fn latency_ms(level: f64) -> ScenarioMetric {
    gauge(
        "latency",
        [level / 1000.0; 5],
        level / 4000.0,
        level / 20_000.0,
        0.0,
        60.0,
    )
    .scaled(0.7, 1.4)
}

/// The simulator's Elasticsearch fleet, 15 data tiers. Metrics in [`METRICS`] order.
fn scenarios() -> Vec<Scenario> {
    let scenario = |name: &str, prefix: &str, count: u32, description: &str| Scenario {
        name: name.to_string(),
        description: description.to_string(),
        id_prefix: prefix.to_string(),
        count,
        sizes: vec![tier(8, 32, 5), tier(4, 16, 6), tier(16, 64, 4)],
        metrics: Vec::new(),
        gap_hours: None,
    };
    vec![
        Scenario {
            metrics: vec![
                ratio("cpu", [10.0, 9.0, 11.0, 10.0, 8.0], 0.04, 0.01).scaled(0.7, 1.5),
                flat("memory", 0.42, 0.05, 0.01).scaled(0.85, 1.15),
                latency_ms(12.0),
                healthy(),
                flat("disk", 0.35, 0.01, 0.005).scaled(0.8, 1.2),
            ],
            ..scenario(
                "over-provisioned",
                "es-idle",
                4,
                "a logging tier after retention was shortened: CPU and heap low, disks a third full",
            )
        },
        Scenario {
            metrics: vec![
                ratio("cpu", [12.0, 11.0, 10.0, 12.0, 11.0], 0.04, 0.01).scaled(0.8, 1.2),
                flat("memory", 0.45, 0.05, 0.01).scaled(0.9, 1.1),
                latency_ms(15.0),
                // A node keeps dropping out: shards go unassigned every week.
                gauge("unassigned", [4.0, 2.0, 6.0, 3.0, 5.0], 3.0, 1.0, 1.0, 1e6),
                flat("disk", 0.35, 0.01, 0.005).scaled(0.8, 1.2),
            ],
            ..scenario(
                "unassigned-shards",
                "es-unassigned",
                3,
                "idle enough to shrink, but shards go unassigned: never scaled in",
            )
        },
        Scenario {
            metrics: vec![
                flat("cpu", 0.50, 0.10, 0.02).scaled(0.9, 1.2),
                flat("memory", 0.70, 0.06, 0.01).scaled(0.95, 1.05),
                latency_ms(25.0),
                healthy(),
                flat("disk", 0.55, 0.01, 0.005).scaled(0.9, 1.1),
            ],
            ..scenario(
                "steady",
                "es-steady",
                5,
                "busy and well sized: nothing to do",
            )
        },
        Scenario {
            metrics: vec![
                ratio("cpu", [86.0, 88.0, 90.0, 91.0, 93.0], 0.02, 0.005).lifted(0.0, 0.02),
                flat("memory", 0.62, 0.06, 0.01).scaled(0.95, 1.05),
                gauge(
                    "latency",
                    [0.04, 0.06, 0.09, 0.14, 0.21],
                    0.01,
                    0.002,
                    0.0,
                    60.0,
                )
                .scaled(0.8, 1.2),
                healthy(),
                flat("disk", 0.50, 0.01, 0.005).scaled(0.9, 1.1),
            ],
            ..scenario(
                "search-heavy",
                "es-search",
                3,
                "search load above 85 % CPU every week, latency climbing",
            )
        },
    ]
}

setpoint_sdk::export_adapter!(Elasticsearch);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use setpoint_sdk::types::{Classification, Operation};

    fn features(values: &[(&str, f64)]) -> FeatureVector {
        fingerprint::flat_features(&METRICS, values)
    }

    fn idle() -> FeatureVector {
        features(&[
            ("cpu", 0.1),
            ("memory", 0.42),
            ("latency", 0.012),
            ("disk", 0.35),
        ])
    }

    fn request(resources: Resources, class: Class, features: FeatureVector) -> ProposeRequest {
        ProposeRequest {
            target: Target {
                id: "es-1".into(),
                technology: "elasticsearch".into(),
                labels: vec![],
                resources,
            },
            classification: Classification {
                class,
                confidence: 0.8,
            },
            features,
            bounds: Bounds {
                min_cpu_millicores: 1000,
                max_cpu_millicores: 64_000,
                min_memory_bytes: 2 * GIB,
                max_memory_bytes: 512 * GIB,
            },
        }
    }

    fn find(proposals: &[Proposal], action: ActionKind) -> Option<&Proposal> {
        proposals.iter().find(|p| p.action == action)
    }

    #[test]
    fn heap_is_half_the_memory_under_the_compressed_oops_limit() {
        assert_eq!(jvm_size(heap_for(32 * GIB)), "16g");
        assert_eq!(jvm_size(heap_for(64 * GIB)), "30g");
        assert_eq!(jvm_size(heap_for(128 * GIB)), "30g");
        assert_eq!(heap_for(GIB), 0);
        assert_eq!(jvm_size(512 * 1024 * 1024), "512m");
    }

    #[test]
    fn an_idle_tier_drains_and_loses_a_node() {
        let proposals =
            Elasticsearch::propose(request(tier(8, 32, 5), Class::ScaleDown, idle())).unwrap();
        let down = find(&proposals, ActionKind::ScaleDown).unwrap();
        assert_eq!(down.summary, "5 data nodes → 4 data nodes");
        assert!(matches!(down.operations[0], Operation::Rebalance(_)));
        assert_eq!(down.risk, Risk::High);
        // Heap at 42 % is not short: more nodes, not more heap.
        let up = find(&proposals, ActionKind::ScaleUp).unwrap();
        assert_eq!(up.summary, "5 data nodes → 6 data nodes");
    }

    #[test]
    fn at_the_node_floor_the_heap_shrinks_with_the_memory() {
        let light = features(&[("cpu", 0.1), ("memory", 0.35), ("disk", 0.35)]);
        let proposals =
            Elasticsearch::propose(request(tier(8, 32, 3), Class::ScaleDown, light)).unwrap();
        let down = find(&proposals, ActionKind::ScaleDown).unwrap();
        assert_eq!(
            down.summary,
            "8 vCPU / 32 GiB → 4 vCPU / 16 GiB, heap_size 16g → 8g"
        );
        assert!(matches!(
            down.operations.last(),
            Some(Operation::Restart(_))
        ));
        assert!(
            down.rationale.contains("not a node fewer"),
            "{}",
            down.rationale
        );
        // 42 % of 16g is 84 % of 8g: too full to halve.
        let busy = features(&[("cpu", 0.1), ("memory", 0.42), ("disk", 0.35)]);
        let proposals =
            Elasticsearch::propose(request(tier(8, 32, 3), Class::ScaleDown, busy)).unwrap();
        assert!(find(&proposals, ActionKind::ScaleDown).is_none());
    }

    #[test]
    fn never_scale_in_with_unassigned_shards() {
        let mut f = idle();
        f.values[fingerprint::index(&METRICS, "unassigned", 2).unwrap()] = 3.0;
        for nodes in [3, 5] {
            let proposals =
                Elasticsearch::propose(request(tier(8, 32, nodes), Class::ScaleDown, f.clone()))
                    .unwrap();
            assert!(find(&proposals, ActionKind::ScaleDown).is_none(), "{nodes}");
        }
        let mut f = idle();
        f.values[fingerprint::index(&METRICS, "unassigned", 1).unwrap()] = f64::NAN;
        let proposals =
            Elasticsearch::propose(request(tier(8, 32, 5), Class::ScaleDown, f)).unwrap();
        assert!(find(&proposals, ActionKind::ScaleDown).is_none());
    }

    #[test]
    fn heap_pressure_grows_the_heap_until_the_cap_then_the_nodes() {
        let short = features(&[("cpu", 0.9), ("memory", 0.85), ("disk", 0.5)]);
        let proposals =
            Elasticsearch::propose(request(tier(8, 32, 5), Class::ScaleUp, short.clone())).unwrap();
        assert_eq!(
            proposals[0].summary,
            "8 vCPU / 32 GiB → 16 vCPU / 64 GiB, heap_size 16g → 30g"
        );
        assert!(proposals[0].rationale.contains("30 GiB cap"));
        let proposals =
            Elasticsearch::propose(request(tier(16, 64, 4), Class::ScaleUp, short)).unwrap();
        assert_eq!(proposals[0].summary, "4 data nodes → 5 data nodes");
        assert!(proposals[0].rationale.contains("already at the 30 GiB cap"));
    }

    #[test]
    fn describe_matches_the_feature_schema() {
        let d = Elasticsearch::describe();
        assert_eq!(d.technology, "elasticsearch");
        assert_eq!(d.features.len(), 20);
        for s in &d.scenarios {
            assert_eq!(s.metrics.len(), METRICS.len(), "{}", s.name);
            for (m, def) in s.metrics.iter().zip(METRICS) {
                assert_eq!(m.metric, def.name, "{}", s.name);
            }
            for size in &s.sizes {
                assert!(current_heap(size).unwrap() <= size.memory_bytes / 2);
            }
        }
        assert_eq!(d.scenarios.iter().map(|s| s.count).sum::<u32>(), 15);
    }
}
