//! The Redis adapter.
//!
//! Observes, from redis_exporter, the CPU of the Redis process, used memory against
//! `maxmemory`, connected clients against `maxclients`, and the eviction rate; computes the
//! 16-feature weekly fingerprint; and proposes one step down and one step up the SDK's standard
//! size ladder, moving `maxmemory` with the container memory.
//!
//! `maxmemory` is set to 70 % of the container memory. Redis forks to persist (BGSAVE, AOF
//! rewrite) and to sync a new replica; while the child runs, every page the parent writes is
//! copied, so a write-heavy instance briefly needs up to twice its data. The remaining 30 % also
//! holds replication and client output buffers and allocator fragmentation, which `maxmemory`
//! does not count. 70 % sits in the 60–75 % range operators use with persistence on; below it
//! memory is wasted on an instance that never forks, above it a fork under load risks the OOM
//! killer taking the whole dataset.
//!
//! A scale-down is never offered while the cache evicts (a smaller cache evicts more), while
//! memory use is unknown, or when the data at the window's peak would fill more than 80 % of the
//! smaller `maxmemory`. Under client pressure a scale-up also raises `maxclients` by half. Both
//! parameters are applied live (`CONFIG SET`), so neither needs a restart; on the way down
//! `maxmemory` is lowered before the container shrinks, on the way up raised after it grew, so
//! Redis is never allowed more than its container holds.

use setpoint_sdk::bindings::setpoint::plugin::host::Level;
use setpoint_sdk::fingerprint::{self, Fingerprint, MetricDef};
use setpoint_sdk::proposal::{ProposalBuilder, parameter};
use setpoint_sdk::scenario::{Vary, flat, gauge, ratio};
use setpoint_sdk::size::{GIB, MIB, SizeLadder, config_size, format_bytes, parse_config_size};
use setpoint_sdk::types::{
    ActionKind, Aggregation, Class, Descriptor, FeatureVector, PluginError, Proposal,
    ProposeRequest, Resources, Risk, Scenario, Series, Target, Window,
};
use setpoint_sdk::{Adapter, error, log};

/// The metrics, one series per `instance` (the Redis server redis_exporter scrapes).
const METRICS: [MetricDef; 4] = [
    MetricDef::ratio(
        "cpu",
        "sum by (instance) (rate(redis_cpu_sys_seconds_total[5m]) + rate(redis_cpu_user_seconds_total[5m]))",
        "CPU of the Redis process, as a share of one core (its command loop runs on one thread)",
    ),
    MetricDef::ratio(
        "memory",
        // `> 0` drops instances without maxmemory: no limit, no ratio, visibly missing.
        "redis_memory_used_bytes / (redis_memory_max_bytes > 0)",
        "used memory as a share of maxmemory",
    ),
    MetricDef::ratio(
        "connections",
        "redis_connected_clients / redis_config_maxclients",
        "connected clients as a share of maxclients",
    ),
    MetricDef {
        name: "evictions",
        query: "sum by (instance) (rate(redis_evicted_keys_total[5m]))",
        unit: "keys/s",
        // The worst moment matters: one evicting burst means the cache is already too small.
        aggregation: Aggregation::Max,
        description: "keys evicted per second",
        capacity: None,
        fallback_query: None,
    },
];

/// Share of the container memory given to `maxmemory` (see the crate docs).
const MAXMEMORY_PERCENT: u64 = 70;

/// Highest share of the new `maxmemory` the window's peak data may fill after a scale-down.
const SCALE_DOWN_FILL: f64 = 0.80;

/// Client share from which a scale-up also raises `maxclients`.
const CLIENT_PRESSURE: f64 = 0.95;

/// The Redis adapter.
pub struct Redis;

impl Adapter for Redis {
    fn describe() -> Descriptor {
        fingerprint::descriptor(
            "redis",
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
        let mut out = Vec::new();
        for action in [ActionKind::ScaleDown, ActionKind::ScaleUp] {
            match plan(action, &request) {
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

/// `maxmemory` for a container of `memory_bytes`, in whole MiB.
fn maxmemory_for(memory_bytes: u64) -> u64 {
    // In u128: the product of a large memory and the percentage must not overflow.
    let share = u128::from(memory_bytes) * u128::from(MAXMEMORY_PERCENT) / 100;
    u64::try_from(share).unwrap_or(u64::MAX) / MIB * MIB
}

/// Redis's size syntax: `12gb`, `11468mb`.
fn redis_size(bytes: u64) -> String {
    config_size(bytes, "gb", "mb")
}

/// One step in `action`'s direction, or why there is none.
fn plan(action: ActionKind, request: &ProposeRequest) -> Result<Proposal, String> {
    let current = &request.target.resources;
    let features = Fingerprint::new(&METRICS, &request.features);
    if action == ActionKind::ScaleDown {
        refuse_scale_down(current, features)?;
    }
    let step = SizeLadder::standard()
        .step(current, action, &request.bounds)
        .ok_or("the bounds leave the size unchanged")?;
    let maxmemory = maxmemory_for(step.memory_bytes);
    if action == ActionKind::ScaleDown {
        check_fit(current, features, maxmemory)?;
    }
    let mut plan = ProposalBuilder::new(action, current);
    // Redis must never be allowed more memory than its container: lower the limit before
    // shrinking, raise it after growing.
    match action {
        ActionKind::ScaleDown => {
            plan.set_parameter("maxmemory", &redis_size(maxmemory), false);
            plan.resize(step.cpu_millicores, step.memory_bytes);
            // Less room means more evictions if the data grows: worth a human look.
            plan.raise_risk(Risk::Medium);
        }
        ActionKind::ScaleUp => {
            plan.resize(step.cpu_millicores, step.memory_bytes);
            plan.set_parameter("maxmemory", &redis_size(maxmemory), false);
        }
    }
    for note in &step.notes {
        plan.note(note.clone());
    }
    let clients_last_week = features.value("connections", 1);
    if action == ActionKind::ScaleUp
        && let Some(share) = clients_last_week.filter(|&c| c >= CLIENT_PRESSURE)
        && let Some(max) =
            parameter(current, "maxclients").and_then(|v| v.trim().parse::<u64>().ok())
    {
        plan.set_parameter("maxclients", &(max + max / 2).to_string(), false);
        plan.note(format!(
            "connected clients at {:.0} % of maxclients last week",
            share * 100.0
        ));
    }
    if action == ActionKind::ScaleUp
        && let Some(rate) = features.peak("evictions").filter(|&r| r > 0.0)
    {
        plan.note(format!("evicting up to {rate:.1} keys/s in the window"));
    }
    Ok(plan.build(&format!(
        "{}; maxmemory at {MAXMEMORY_PERCENT} % of the container memory, leaving room for the copy-on-write of a persistence or replication fork, client and replication buffers and fragmentation",
        step.description
    )))
}

/// Why a scale-down must not be offered at all, before any sizing.
fn refuse_scale_down(current: &Resources, features: Fingerprint<'_>) -> Result<(), String> {
    if let Some(rate) = features.peak("evictions").filter(|&r| r > 0.0) {
        return Err(format!(
            "evicting up to {rate:.1} keys/s in the window; a smaller cache would evict more"
        ));
    }
    if !features.complete("memory") {
        return Err("memory use is missing for part of the window".to_string());
    }
    if current_maxmemory(current).is_none() {
        return Err("maxmemory is not set, so the data size is unknown".to_string());
    }
    Ok(())
}

/// Whether the data at the window's peak fits the smaller `maxmemory` with room to spare.
fn check_fit(current: &Resources, features: Fingerprint<'_>, maxmemory: u64) -> Result<(), String> {
    let (Some(limit), Some(peak)) = (current_maxmemory(current), features.peak("memory")) else {
        return Err("memory use or maxmemory unknown".to_string());
    };
    let used = peak * limit as f64;
    let fill = used / maxmemory.max(1) as f64;
    if fill > SCALE_DOWN_FILL {
        return Err(format!(
            "the data at the window's peak ({}) would fill {:.0} % of a maxmemory of {} (at most {:.0} %)",
            format_bytes(used as u64),
            fill * 100.0,
            format_bytes(maxmemory),
            SCALE_DOWN_FILL * 100.0
        ));
    }
    Ok(())
}

fn current_maxmemory(current: &Resources) -> Option<u64> {
    parameter(current, "maxmemory")
        .and_then(parse_config_size)
        .filter(|&b| b > 0)
}

/// A Redis node with the parameters that follow its size.
fn node(vcpu: u64, memory_gib: u64) -> Resources {
    let memory = memory_gib * GIB;
    Resources {
        cpu_millicores: vcpu * 1000,
        memory_bytes: memory,
        replicas: 1,
        parameters: vec![
            ("maxclients".to_string(), "10000".to_string()),
            ("maxmemory".to_string(), redis_size(maxmemory_for(memory))),
        ],
    }
}

/// No evictions at all.
fn no_evictions() -> setpoint_sdk::types::ScenarioMetric {
    gauge("evictions", [0.0; 5], 0.0, 0.0, 0.0, 1e9)
}

/// The simulator's Redis fleet, 20 targets. Metrics in [`METRICS`] order.
fn scenarios() -> Vec<Scenario> {
    let scenario = |name: &str, prefix: &str, count: u32, description: &str| Scenario {
        name: name.to_string(),
        description: description.to_string(),
        id_prefix: prefix.to_string(),
        count,
        sizes: vec![node(4, 16), node(2, 8), node(8, 32), node(4, 16)],
        metrics: Vec::new(),
        gap_hours: None,
    };
    vec![
        Scenario {
            metrics: vec![
                ratio("cpu", [9.0, 8.0, 10.0, 7.0, 8.0], 0.03, 0.01).scaled(0.7, 1.5),
                flat("memory", 0.30, 0.02, 0.005).scaled(0.8, 1.2),
                flat("connections", 0.08, 0.03, 0.01).scaled(0.5, 1.5),
                no_evictions(),
            ],
            ..scenario(
                "idle-cache",
                "redis-idle",
                5,
                "a session cache sized for a launch that never came: a third of maxmemory used",
            )
        },
        Scenario {
            metrics: vec![
                flat("cpu", 0.45, 0.10, 0.02).scaled(0.9, 1.2),
                flat("memory", 0.72, 0.02, 0.005).scaled(0.95, 1.05),
                flat("connections", 0.35, 0.08, 0.02).scaled(0.8, 1.2),
                no_evictions(),
            ],
            ..scenario(
                "steady",
                "redis-steady",
                6,
                "busy and well sized: nothing to do",
            )
        },
        Scenario {
            metrics: vec![
                flat("cpu", 0.35, 0.08, 0.02).scaled(0.9, 1.1),
                flat("memory", 0.99, 0.003, 0.002),
                flat("connections", 0.30, 0.05, 0.01).scaled(0.8, 1.2),
                gauge(
                    "evictions",
                    [40.0, 55.0, 60.0, 80.0, 95.0],
                    30.0,
                    5.0,
                    0.0,
                    1e9,
                )
                .scaled(0.5, 2.0),
            ],
            ..scenario(
                "evicting",
                "redis-evicting",
                3,
                "full and evicting: memory at maxmemory every week, so a scale-up; never offered a smaller size",
            )
        },
        Scenario {
            metrics: vec![
                ratio("cpu", [86.0, 88.0, 89.0, 91.0, 93.0], 0.02, 0.005).lifted(0.0, 0.02),
                flat("memory", 0.60, 0.02, 0.01),
                flat("connections", 0.50, 0.05, 0.01).scaled(0.8, 1.2),
                no_evictions(),
            ],
            ..scenario(
                "hot-cpu",
                "redis-hot",
                3,
                "the command loop above 85 % of its core every week",
            )
        },
        Scenario {
            metrics: vec![
                flat("cpu", 0.50, 0.08, 0.02).scaled(0.9, 1.1),
                flat("memory", 0.55, 0.02, 0.01),
                ratio("connections", [95.0, 95.5, 96.0, 97.0, 97.5], 0.004, 0.003)
                    .lifted(0.0, 0.01),
                no_evictions(),
            ],
            ..scenario(
                "client-pressure",
                "redis-clients",
                3,
                "connected clients at 95 % or more of maxclients",
            )
        },
    ]
}

setpoint_sdk::export_adapter!(Redis);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use setpoint_sdk::types::{Bounds, Classification, Operation};

    fn bounds() -> Bounds {
        Bounds {
            min_cpu_millicores: 1000,
            max_cpu_millicores: 64_000,
            min_memory_bytes: 2 * GIB,
            max_memory_bytes: 512 * GIB,
        }
    }

    /// Features with every week of each metric at the given value.
    fn features(cpu: f64, memory: f64, clients: f64, evictions: f64) -> FeatureVector {
        fingerprint::flat_features(
            &METRICS,
            &[
                ("cpu", cpu),
                ("memory", memory),
                ("connections", clients),
                ("evictions", evictions),
            ],
        )
    }

    fn request(resources: Resources, class: Class, features: FeatureVector) -> ProposeRequest {
        ProposeRequest {
            target: Target {
                id: "redis-1".into(),
                technology: "redis".into(),
                labels: vec![],
                resources,
            },
            classification: Classification {
                class,
                confidence: 0.8,
            },
            features,
            bounds: bounds(),
        }
    }

    fn find(proposals: &[Proposal], action: ActionKind) -> Option<&Proposal> {
        proposals.iter().find(|p| p.action == action)
    }

    #[test]
    fn maxmemory_keeps_fork_headroom() {
        assert_eq!(redis_size(maxmemory_for(16 * GIB)), "11468mb");
        assert_eq!(redis_size(maxmemory_for(10 * GIB)), "7gb");
        assert_eq!(node(4, 16).parameters[1].1, "11468mb");
    }

    #[test]
    fn an_idle_cache_halves_with_maxmemory_lowered_first() {
        let proposals = Redis::propose(request(
            node(4, 16),
            Class::ScaleDown,
            features(0.08, 0.30, 0.1, 0.0),
        ))
        .unwrap();
        let down = find(&proposals, ActionKind::ScaleDown).unwrap();
        assert_eq!(
            down.summary,
            "4 vCPU / 16 GiB → 2 vCPU / 8 GiB, maxmemory 11468mb → 5734mb"
        );
        assert!(
            matches!(&down.operations[0], Operation::SetParameter(p) if p.name == "maxmemory" && !p.requires_restart)
        );
        assert!(matches!(down.operations[1], Operation::Resize(_)));
        assert_eq!(down.risk, Risk::Medium);
        assert!(
            down.rationale.contains("copy-on-write"),
            "{}",
            down.rationale
        );
        let up = find(&proposals, ActionKind::ScaleUp).unwrap();
        assert!(matches!(up.operations[0], Operation::Resize(_)));
        assert_eq!(
            up.summary,
            "4 vCPU / 16 GiB → 8 vCPU / 32 GiB, maxmemory 11468mb → 22937mb"
        );
    }

    #[test]
    fn no_scale_down_while_evicting_or_when_the_data_would_not_fit() {
        let evicting = Redis::propose(request(
            node(4, 16),
            Class::Remain,
            features(0.3, 0.99, 0.3, 50.0),
        ))
        .unwrap();
        assert!(find(&evicting, ActionKind::ScaleDown).is_none());
        let up = find(&evicting, ActionKind::ScaleUp).unwrap();
        assert!(
            up.rationale.contains("evicting up to 50.0 keys/s"),
            "{}",
            up.rationale
        );

        // 50 % of maxmemory today is 100 % of half of it.
        let tight = Redis::propose(request(
            node(4, 16),
            Class::ScaleDown,
            features(0.1, 0.50, 0.1, 0.0),
        ))
        .unwrap();
        assert!(find(&tight, ActionKind::ScaleDown).is_none());

        let mut gap = features(0.1, 0.3, 0.1, 0.0);
        gap.values[fingerprint::index(&METRICS, "memory", 2).unwrap()] = f64::NAN;
        let proposals = Redis::propose(request(node(4, 16), Class::ScaleDown, gap)).unwrap();
        assert!(find(&proposals, ActionKind::ScaleDown).is_none());

        let mut unlimited = node(4, 16);
        unlimited.parameters.retain(|(k, _)| k != "maxmemory");
        let proposals = Redis::propose(request(
            unlimited,
            Class::ScaleDown,
            features(0.1, 0.3, 0.1, 0.0),
        ))
        .unwrap();
        assert!(find(&proposals, ActionKind::ScaleDown).is_none());
    }

    #[test]
    fn client_pressure_raises_maxclients() {
        let proposals = Redis::propose(request(
            node(2, 8),
            Class::ScaleUp,
            features(0.5, 0.55, 0.97, 0.0),
        ))
        .unwrap();
        assert_eq!(proposals[0].action, ActionKind::ScaleUp);
        assert_eq!(
            proposals[0].summary,
            "2 vCPU / 8 GiB → 4 vCPU / 16 GiB, maxmemory 5734mb → 11468mb, maxclients 10000 → 15000"
        );
        assert_eq!(proposals[0].risk, Risk::Low);
    }

    #[test]
    fn zero_resources_are_refused() {
        let error = Redis::propose(request(
            Resources {
                cpu_millicores: 0,
                memory_bytes: 0,
                replicas: 1,
                parameters: vec![],
            },
            Class::ScaleDown,
            features(0.1, 0.1, 0.1, 0.0),
        ))
        .unwrap_err();
        assert_eq!(error.code, "invalid_resources");
    }

    #[test]
    fn describe_matches_the_feature_schema_and_scenarios_cover_every_metric() {
        let d = Redis::describe();
        assert_eq!(d.technology, "redis");
        assert_eq!(d.features.len(), 16);
        assert_eq!(d.features[0].name, "cpu_w4");
        for s in &d.scenarios {
            let metrics: Vec<&str> = s.metrics.iter().map(|m| m.metric.as_str()).collect();
            assert_eq!(
                metrics,
                ["cpu", "memory", "connections", "evictions"],
                "{}",
                s.name
            );
            assert!(s.count > 0);
        }
        assert_eq!(d.scenarios.iter().map(|s| s.count).sum::<u32>(), 20);
    }

    #[test]
    fn features_follow_the_schema() {
        let end = 5 * 7 * 24 * 3_600_000i64;
        let window = Window {
            start_ms: 0,
            end_ms: end,
            step_seconds: 300,
            weeks: 4,
        };
        let ts: Vec<i64> = (0..(5 * 2016)).map(|i| i * 300_000).collect();
        let series = vec![Series {
            metric: "evictions".into(),
            values: vec![3.0; ts.len()],
            timestamps_ms: ts,
            sample_counts: None,
        }];
        let target = Target {
            id: "redis-1".into(),
            technology: "redis".into(),
            labels: vec![],
            resources: node(4, 16),
        };
        let features = Redis::features(target, window, series).unwrap();
        assert_eq!(features.values.len(), 16);
        let fp = Fingerprint::new(&METRICS, &features);
        assert_eq!(fp.value("evictions", 1), Some(3.0));
        assert_eq!(fp.value("cpu", 1), None);
    }
}
