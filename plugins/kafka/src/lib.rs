//! The Kafka adapter.
//!
//! A target is a Kafka cluster; its `replicas` are brokers. Observes broker CPU, memory and
//! log-directory disk (node_exporter on the brokers), consumer-group lag and its growth, and
//! under-replicated partitions (kafka_exporter), all grouped by `instance`: the brokers' node
//! exporters must be relabelled so `instance` names the cluster, as kafka_exporter's does.
//!
//! Kafka scales out, not up: a scale-up adds brokers (a quarter more, at least one) and a
//! scale-down removes one, each with a partition rebalance, because a new broker takes no
//! partitions until they are reassigned to it and a broker cannot leave until its partitions
//! have moved. A scale-down is never offered while any partition was under-replicated in the
//! window (or that data is missing): removing a broker from a cluster that is already failing
//! to keep its replicas in sync risks losing the last in-sync copy. Nor is it offered below
//! three brokers (a replication factor of three needs three), while consumers fall behind, or
//! when the remaining brokers' disks would pass 75 %.

use setpoint_sdk::bindings::setpoint::plugin::host::Level;
use setpoint_sdk::fingerprint::{self, Fingerprint, MetricDef};
use setpoint_sdk::proposal::ProposalBuilder;
use setpoint_sdk::scenario::{Vary, flat, gauge, ratio};
use setpoint_sdk::size::GIB;
use setpoint_sdk::types::{
    ActionKind, Aggregation, Class, Descriptor, FeatureVector, PluginError, Proposal,
    ProposeRequest, Resources, Risk, Scenario, ScenarioMetric, Series, Target, Window,
};
use setpoint_sdk::{Adapter, error, log};

/// The metrics, one series per `instance` (the cluster).
const METRICS: [MetricDef; 6] = [
    MetricDef::ratio(
        "cpu",
        r#"1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[5m]))"#,
        "broker CPU utilisation, averaged over the brokers",
    ),
    MetricDef::ratio(
        "memory",
        "1 - sum by (instance) (node_memory_MemAvailable_bytes) / sum by (instance) (node_memory_MemTotal_bytes)",
        "broker memory utilisation (page cache counts as available)",
    ),
    MetricDef::ratio(
        "disk",
        r#"max by (instance) (1 - node_filesystem_avail_bytes{mountpoint="/var/lib/kafka"} / node_filesystem_size_bytes{mountpoint="/var/lib/kafka"})"#,
        "log-directory disk use of the fullest broker",
    ),
    MetricDef {
        name: "lag",
        query: "sum by (instance) (kafka_consumergroup_lag)",
        unit: "messages",
        aggregation: Aggregation::Mean,
        description: "consumer-group lag summed over groups, topics and partitions",
        capacity: None,
        fallback_query: None,
    },
    MetricDef {
        name: "lag_growth",
        query: "sum by (instance) (deriv(kafka_consumergroup_lag[30m]))",
        unit: "messages/s",
        aggregation: Aggregation::Mean,
        description: "growth of the consumer-group lag (positive: consumers fall behind)",
        capacity: None,
        fallback_query: None,
    },
    MetricDef {
        name: "under_replicated",
        query: "sum by (instance) (kafka_topic_partition_under_replicated_partition)",
        unit: "partitions",
        // One moment under-replicated is enough to forbid a scale-in.
        aggregation: Aggregation::Max,
        description: "under-replicated partitions",
        capacity: None,
        fallback_query: None,
    },
];

/// Fewest brokers: a replication factor of three needs three.
const MIN_BROKERS: u32 = 3;

/// Most brokers a proposal may go to.
const MAX_BROKERS: u32 = 200;

/// Highest disk use the remaining brokers may reach after one is removed.
const SCALE_IN_DISK: f64 = 0.75;

/// The Kafka adapter.
pub struct Kafka;

impl Adapter for Kafka {
    fn describe() -> Descriptor {
        fingerprint::descriptor(
            "kafka",
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
        if current.replicas == 0 {
            return Err(error(
                "invalid_resources",
                format!(
                    "target {} has no brokers; a Kafka cluster's replicas are its brokers",
                    request.target.id
                ),
            ));
        }
        let mut out = Vec::new();
        for (action, plan) in [
            (
                ActionKind::ScaleDown,
                scale_in(current, Fingerprint::new(&METRICS, &request.features)),
            ),
            (
                ActionKind::ScaleUp,
                scale_out(current, Fingerprint::new(&METRICS, &request.features)),
            ),
        ] {
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

/// Why the cluster must not lose a broker now, if it must not.
fn refuse_scale_in(current: &Resources, features: Fingerprint<'_>) -> Result<(), String> {
    match features.peak("under_replicated") {
        Some(urp) if urp > 0.0 => {
            return Err(format!(
                "{urp:.0} under-replicated partition(s) at the window's worst; never scale in while replicas are out of sync"
            ));
        }
        _ if !features.complete("under_replicated") => {
            return Err(
                "under-replicated partitions unknown for part of the window; never scale in without proof the replicas are in sync"
                    .to_string(),
            );
        }
        _ => {}
    }
    if current.replicas <= MIN_BROKERS {
        return Err(format!(
            "{} brokers is the floor ({MIN_BROKERS}, for a replication factor of three)",
            current.replicas
        ));
    }
    if let Some(growth) = features.value("lag_growth", 1).filter(|&g| g > 0.0) {
        return Err(format!(
            "consumer lag grew by {growth:.1} messages/s last week; consumers are falling behind"
        ));
    }
    let Some(disk) = features.peak("disk") else {
        return Err("disk use unknown".to_string());
    };
    let after = disk * f64::from(current.replicas) / f64::from(current.replicas - 1);
    if after > SCALE_IN_DISK {
        return Err(format!(
            "the remaining brokers' disks would be {:.0} % full (at most {:.0} %)",
            after * 100.0,
            SCALE_IN_DISK * 100.0
        ));
    }
    Ok(())
}

/// One broker fewer, its partitions moved off first.
fn scale_in(current: &Resources, features: Fingerprint<'_>) -> Result<Proposal, String> {
    refuse_scale_in(current, features)?;
    let brokers = current.replicas - 1;
    let mut plan = ProposalBuilder::new(ActionKind::ScaleDown, current);
    plan.rebalance(
        "reassign the partitions of the broker to be removed onto the others before it stops",
    )
    .set_replicas(brokers, "brokers")
    // Less capacity and data in motion: a human should look.
    .raise_risk(Risk::High);
    if let Some(disk) = features.peak("disk") {
        plan.note(format!(
            "disk at most {:.0} % today, about {:.0} % on {brokers} brokers",
            disk * 100.0,
            disk * f64::from(current.replicas) / f64::from(brokers) * 100.0
        ));
    }
    plan.note("no under-replicated partitions in the window");
    Ok(plan.build("one broker fewer; partitions reassigned off it first"))
}

/// A quarter more brokers (at least one), with the partitions spread onto them.
fn scale_out(current: &Resources, features: Fingerprint<'_>) -> Result<Proposal, String> {
    if current.replicas >= MAX_BROKERS {
        return Err(format!("already at the cap of {MAX_BROKERS} brokers"));
    }
    let brokers = (current.replicas + (current.replicas / 4).max(1)).min(MAX_BROKERS);
    let mut plan = ProposalBuilder::new(ActionKind::ScaleUp, current);
    plan.set_replicas(brokers, "brokers")
        .rebalance("reassign partitions onto the new brokers: a new broker takes none by itself")
        .raise_risk(Risk::Medium);
    let lag = features.weeks("lag");
    if lag.iter().all(Option::is_some) && lag.windows(2).all(|w| w[1] > w[0]) {
        plan.note(format!(
            "consumer lag rose every week, to {:.0} messages",
            lag[3].unwrap_or_default()
        ));
    }
    if let Some(urp) = features.peak("under_replicated").filter(|&u| u > 0.0) {
        plan.note(format!(
            "{urp:.0} under-replicated partition(s) at the window's worst: rebalance after the replicas caught up"
        ));
    }
    Ok(plan.build("a quarter more brokers (at least one), partitions spread onto them"))
}

/// A cluster of `brokers` nodes of the given size.
fn cluster(vcpu: u64, memory_gib: u64, brokers: u32) -> Resources {
    Resources {
        cpu_millicores: vcpu * 1000,
        memory_bytes: memory_gib * GIB,
        replicas: brokers,
        parameters: vec![
            ("default.replication.factor".to_string(), "3".to_string()),
            ("min.insync.replicas".to_string(), "2".to_string()),
        ],
    }
}

fn steady_lag(level: f64) -> [ScenarioMetric; 2] {
    [
        gauge("lag", [level; 5], level * 0.3, level * 0.05, 0.0, 1e12).scaled(0.5, 2.0),
        gauge("lag_growth", [0.0; 5], 0.0, 0.0, -1e9, 1e9),
    ]
}

fn no_under_replication() -> ScenarioMetric {
    gauge("under_replicated", [0.0; 5], 0.0, 0.0, 0.0, 1e6)
}

/// The simulator's Kafka fleet, 15 clusters. Metrics in [`METRICS`] order.
fn scenarios() -> Vec<Scenario> {
    let scenario = |name: &str, prefix: &str, count: u32, description: &str| Scenario {
        name: name.to_string(),
        description: description.to_string(),
        id_prefix: prefix.to_string(),
        count,
        sizes: vec![cluster(8, 32, 6), cluster(4, 16, 5), cluster(8, 32, 9)],
        metrics: Vec::new(),
        gap_hours: None,
    };
    let [lag, growth] = steady_lag(2_000.0);
    vec![
        Scenario {
            metrics: vec![
                ratio("cpu", [13.0, 12.0, 11.0, 13.0, 12.0], 0.04, 0.01).scaled(0.7, 1.5),
                flat("memory", 0.45, 0.03, 0.01).scaled(0.9, 1.1),
                flat("disk", 0.30, 0.01, 0.005).scaled(0.8, 1.2),
                lag.clone(),
                growth.clone(),
                no_under_replication(),
            ],
            ..scenario(
                "over-provisioned",
                "kafka-idle",
                4,
                "brokers for a peak that moved to another cluster: CPU low, consumers keep up",
            )
        },
        Scenario {
            metrics: vec![
                ratio("cpu", [11.0, 10.0, 12.0, 11.0, 10.0], 0.04, 0.01).scaled(0.8, 1.2),
                flat("memory", 0.40, 0.03, 0.01).scaled(0.9, 1.1),
                flat("disk", 0.30, 0.01, 0.005).scaled(0.8, 1.2),
                lag.clone(),
                growth.clone(),
                // A broker dropped out of the ISR now and then: the weekly max is never zero.
                gauge(
                    "under_replicated",
                    [2.0, 3.0, 2.0, 4.0, 3.0],
                    2.0,
                    1.0,
                    1.0,
                    1e6,
                ),
            ],
            ..scenario(
                "under-replicated",
                "kafka-urp",
                3,
                "idle enough to shrink, but replicas fell out of sync: never scaled in",
            )
        },
        Scenario {
            metrics: vec![
                flat("cpu", 0.55, 0.10, 0.02).scaled(0.9, 1.15),
                flat("memory", 0.70, 0.03, 0.01).scaled(0.95, 1.05),
                flat("disk", 0.55, 0.01, 0.005).scaled(0.9, 1.1),
                lag,
                growth,
                no_under_replication(),
            ],
            ..scenario(
                "steady",
                "kafka-steady",
                5,
                "busy and keeping up: nothing to do",
            )
        },
        Scenario {
            metrics: vec![
                ratio("cpu", [86.0, 88.0, 90.0, 91.0, 93.0], 0.02, 0.005).lifted(0.0, 0.02),
                flat("memory", 0.75, 0.02, 0.01),
                flat("disk", 0.60, 0.01, 0.005).scaled(0.9, 1.1),
                gauge(
                    "lag",
                    [50_000.0, 120_000.0, 260_000.0, 540_000.0, 1_100_000.0],
                    20_000.0,
                    5_000.0,
                    0.0,
                    1e12,
                )
                .scaled(0.8, 1.2),
                gauge(
                    "lag_growth",
                    [0.1, 0.12, 0.23, 0.46, 0.93],
                    0.05,
                    0.01,
                    -1e9,
                    1e9,
                ),
                no_under_replication(),
            ],
            ..scenario(
                "falling-behind",
                "kafka-lagging",
                3,
                "brokers above 85 % CPU and consumer lag doubling every week",
            )
        },
    ]
}

setpoint_sdk::export_adapter!(Kafka);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use setpoint_sdk::types::{Bounds, Classification, Operation};

    /// Features with every week of each metric at the given value.
    fn features(values: &[(&str, f64)]) -> FeatureVector {
        fingerprint::flat_features(&METRICS, values)
    }

    fn idle() -> FeatureVector {
        features(&[
            ("cpu", 0.12),
            ("memory", 0.45),
            ("disk", 0.30),
            ("lag", 2000.0),
        ])
    }

    fn request(resources: Resources, class: Class, features: FeatureVector) -> ProposeRequest {
        ProposeRequest {
            target: Target {
                id: "kafka-1".into(),
                technology: "kafka".into(),
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
    fn an_idle_cluster_loses_one_broker_after_a_rebalance() {
        let proposals =
            Kafka::propose(request(cluster(8, 32, 6), Class::ScaleDown, idle())).unwrap();
        let down = find(&proposals, ActionKind::ScaleDown).unwrap();
        assert_eq!(down.summary, "6 brokers → 5 brokers");
        assert!(matches!(down.operations[0], Operation::Rebalance(_)));
        assert!(matches!(
            down.operations[1],
            Operation::SetReplicas(setpoint_sdk::types::ReplicasOp { replicas: 5 })
        ));
        assert_eq!(down.risk, Risk::High);
        let after = setpoint_sdk::proposal::after(&cluster(8, 32, 6), down);
        assert_eq!(after.cpu_millicores, 8000, "node size unchanged");
        assert_eq!(after.replicas, 5);
        let up = find(&proposals, ActionKind::ScaleUp).unwrap();
        assert_eq!(up.summary, "6 brokers → 7 brokers");
        assert!(matches!(up.operations[1], Operation::Rebalance(_)));
    }

    #[test]
    fn never_scale_in_with_under_replicated_partitions() {
        let mut f = idle();
        f.values[fingerprint::index(&METRICS, "under_replicated", 3).unwrap()] = 2.0;
        let proposals = Kafka::propose(request(cluster(8, 32, 6), Class::ScaleDown, f)).unwrap();
        assert!(find(&proposals, ActionKind::ScaleDown).is_none());
        assert!(find(&proposals, ActionKind::ScaleUp).is_some());

        // Unknown is not zero.
        let mut f = idle();
        f.values[fingerprint::index(&METRICS, "under_replicated", 1).unwrap()] = f64::NAN;
        let proposals = Kafka::propose(request(cluster(8, 32, 6), Class::ScaleDown, f)).unwrap();
        assert!(find(&proposals, ActionKind::ScaleDown).is_none());
    }

    #[test]
    fn other_scale_in_guards() {
        let at_floor =
            Kafka::propose(request(cluster(8, 32, 3), Class::ScaleDown, idle())).unwrap();
        assert!(find(&at_floor, ActionKind::ScaleDown).is_none());
        let full = features(&[("cpu", 0.12), ("memory", 0.45), ("disk", 0.70)]);
        let proposals = Kafka::propose(request(cluster(8, 32, 6), Class::ScaleDown, full)).unwrap();
        assert!(find(&proposals, ActionKind::ScaleDown).is_none());
        let behind = features(&[("cpu", 0.12), ("disk", 0.3), ("lag_growth", 5.0)]);
        let proposals =
            Kafka::propose(request(cluster(8, 32, 6), Class::ScaleDown, behind)).unwrap();
        assert!(find(&proposals, ActionKind::ScaleDown).is_none());
    }

    #[test]
    fn a_lagging_cluster_grows_by_a_quarter_with_the_lag_explained() {
        let mut f = features(&[("cpu", 0.9), ("memory", 0.75), ("disk", 0.6)]);
        for (i, w) in (1..=4).rev().enumerate() {
            f.values[fingerprint::index(&METRICS, "lag", w).unwrap()] =
                1000.0 * 2f64.powi(i as i32);
        }
        let proposals = Kafka::propose(request(cluster(8, 32, 9), Class::ScaleUp, f)).unwrap();
        assert_eq!(proposals[0].action, ActionKind::ScaleUp);
        assert_eq!(proposals[0].summary, "9 brokers → 11 brokers");
        assert!(
            proposals[0].rationale.contains("rose every week, to 8000"),
            "{}",
            proposals[0].rationale
        );
    }

    #[test]
    fn no_brokers_is_refused() {
        let error =
            Kafka::propose(request(cluster(8, 32, 0), Class::ScaleDown, idle())).unwrap_err();
        assert_eq!(error.code, "invalid_resources");
    }

    #[test]
    fn describe_matches_the_feature_schema() {
        let d = Kafka::describe();
        assert_eq!(d.technology, "kafka");
        assert_eq!(d.features.len(), 24);
        assert!(
            d.features
                .iter()
                .all(|f| !f.name.starts_with("connections"))
        );
        for s in &d.scenarios {
            assert_eq!(s.metrics.len(), METRICS.len(), "{}", s.name);
            for (m, def) in s.metrics.iter().zip(METRICS) {
                assert_eq!(m.metric, def.name, "{}", s.name);
            }
        }
        assert_eq!(d.scenarios.iter().map(|s| s.count).sum::<u32>(), 15);
    }
}
