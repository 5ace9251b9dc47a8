//! The simulator playing the scenarios the PostgreSQL plugin ships: the quickstart fleet has
//! every scenario, the canonical instances have the design's figures whatever `now` and the
//! seed, and variants stay within their scenario.

use setpoint_core::MetricSeries;
use setpoint_observe::{QueryResult, RangeQuery, SimulatedFleet};

const WEEK: i64 = 7 * 24 * 3600;
const DAY: i64 = 24 * 3600;
const END: i64 = 1_795_413_600; // 2026-11-23T06:00:00Z
const GIB: u64 = 1 << 30;
const METRICS: [&str; 4] = ["cpu", "memory", "connections", "iops"];

fn fleet(seed: u64) -> SimulatedFleet {
    setpoint_runtime::builtin_fleet(seed, "postgres").unwrap()
}

fn at(t: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(t, 0).unwrap()
}

fn query(metric: &str, end: i64) -> RangeQuery {
    RangeQuery {
        metric: metric.to_string(),
        promql: String::new(),
        technology: "postgres".to_string(),
        start: at(end - 5 * WEEK),
        end: at(end),
        step_seconds: 300,
        target_label: "instance".to_string(),
        weekly: None,
    }
}

fn series_of<'a>(result: &'a QueryResult, id: &str) -> &'a MetricSeries {
    &result.series.iter().find(|(t, _)| t == id).unwrap().1
}

/// Weekly means W-4..W-1 (in percent) and sample counts, the way a plugin computes them.
fn weekly(series: &MetricSeries, end: i64) -> Vec<(f64, usize)> {
    (1..=4)
        .rev()
        .map(|k| {
            let lo = (end - k * WEEK) * 1000;
            let hi = (end - (k - 1) * WEEK) * 1000;
            let v: Vec<f64> = series
                .timestamps_ms
                .iter()
                .zip(&series.values)
                .filter(|(t, _)| **t >= lo && **t < hi)
                .map(|(_, v)| *v)
                .collect();
            let mean = if v.is_empty() {
                f64::NAN
            } else {
                v.iter().sum::<f64>() / v.len() as f64 * 100.0
            };
            (mean, v.len())
        })
        .collect()
}

#[test]
fn the_quickstart_fleet_has_every_scenario_and_at_least_fifty_targets() {
    let fleet = fleet(42);
    let targets = fleet.targets();
    assert_eq!(targets.len(), 54);
    for (prefix, scenario) in [
        ("pg-reporting", "reporting"),
        ("pg-transactional", "transactional"),
        ("pg-steady", "steady-mid"),
        ("pg-spiky", "spiky-but-safe"),
        ("pg-saturated", "saturated"),
        ("pg-connections", "connection-pressure"),
        ("pg-gap", "telemetry-gap"),
    ] {
        assert_eq!(fleet.scenario_of(&format!("{prefix}-01")), Some(scenario));
    }
    let reporting = targets.iter().find(|t| t.id == "pg-reporting-01").unwrap();
    assert_eq!(reporting.resources.cpu_millicores, 8000);
    assert_eq!(reporting.resources.memory_bytes, 32 * GIB);
    assert_eq!(reporting.resources.parameters["shared_buffers"], "8GB");
    let transactional = targets
        .iter()
        .find(|t| t.id == "pg-transactional-01")
        .unwrap();
    assert_eq!(transactional.resources.cpu_millicores, 16_000);
    assert_eq!(transactional.resources.memory_bytes, 64 * GIB);
    for target in targets {
        assert_eq!(target.technology, "postgres");
        assert_eq!(target.labels["instance"], target.id);
        assert_eq!(
            target.resources.parameters["shared_buffers"],
            format!("{}GB", target.resources.memory_bytes / 4 / GIB),
            "{}",
            target.id
        );
    }
}

#[test]
fn every_bundled_technology_has_a_fleet_of_its_own() {
    for (plugin, count, prefixes) in [
        (
            "redis",
            20,
            &[
                "redis-idle",
                "redis-steady",
                "redis-evicting",
                "redis-hot",
                "redis-clients",
            ][..],
        ),
        (
            "kafka",
            15,
            &["kafka-idle", "kafka-urp", "kafka-steady", "kafka-lagging"][..],
        ),
        (
            "elasticsearch",
            15,
            &["es-idle", "es-unassigned", "es-steady", "es-search"][..],
        ),
    ] {
        let fleet = setpoint_runtime::builtin_fleet(42, plugin).unwrap();
        assert_eq!(fleet.targets().len(), count, "{plugin}");
        for prefix in prefixes {
            assert!(
                fleet.scenario_of(&format!("{prefix}-01")).is_some(),
                "{prefix}"
            );
        }
        for target in fleet.targets() {
            assert_eq!(target.technology, plugin);
            if plugin != "redis" {
                // Clusters: brokers and data nodes are replicas.
                assert!(target.resources.replicas >= 4, "{}", target.id);
            }
        }
    }
}

/// The canonical (`-01`) weekly means W-4..W-1, in percent, per scenario and metric.
const CANONICAL: [(&str, &str, [f64; 4]); 20] = [
    ("pg-reporting-01", "cpu", [11.0, 9.0, 13.0, 10.0]),
    ("pg-reporting-01", "memory", [58.0, 61.0, 55.0, 57.0]),
    ("pg-reporting-01", "connections", [22.0, 19.0, 24.0, 21.0]),
    ("pg-reporting-01", "iops", [31.0, 28.0, 33.0, 29.0]),
    ("pg-transactional-01", "cpu", [61.0, 66.0, 71.0, 74.0]),
    ("pg-transactional-01", "memory", [71.0, 74.0, 77.0, 81.0]),
    (
        "pg-transactional-01",
        "connections",
        [74.0, 79.0, 83.0, 89.0],
    ),
    ("pg-transactional-01", "iops", [68.0, 71.0, 74.0, 78.0]),
    ("pg-steady-01", "cpu", [50.0; 4]),
    ("pg-steady-01", "memory", [60.0; 4]),
    ("pg-steady-01", "connections", [40.0; 4]),
    ("pg-spiky-01", "cpu", [50.0; 4]),
    ("pg-spiky-01", "memory", [58.0; 4]),
    ("pg-spiky-01", "connections", [40.0; 4]),
    ("pg-saturated-01", "cpu", [88.0, 90.0, 91.0, 93.0]),
    ("pg-saturated-01", "memory", [80.0; 4]),
    ("pg-connections-01", "cpu", [55.0; 4]),
    ("pg-connections-01", "connections", [95.5, 96.0, 97.0, 97.5]),
    ("pg-gap-01", "cpu", [15.0, 15.0, 15.0, f64::NAN]),
    ("pg-gap-01", "memory", [50.0, 50.0, 50.0, f64::NAN]),
];

fn assert_canonical_means(fleet: &SimulatedFleet, end: i64) {
    // One fleet-wide query per metric, as the engine does.
    let results: Vec<QueryResult> = METRICS
        .iter()
        .map(|m| fleet.query(&query(m, end)).unwrap())
        .collect();
    for (id, metric, expected) in CANONICAL {
        let index = METRICS.iter().position(|m| *m == metric).unwrap();
        let weeks = weekly(series_of(&results[index], id), end);
        for ((mean, count), want) in weeks.iter().zip(expected) {
            if want.is_nan() {
                assert_eq!(*count, 0, "{id} {metric} at {end}");
                continue;
            }
            assert!(*count > 0, "{id} {metric} at {end}");
            assert!(
                (mean - want).abs() <= 0.3,
                "{id} {metric} at {end}: {mean} vs {want}"
            );
        }
    }
}

#[test]
fn canonical_instances_have_the_design_figures_whatever_now_and_seed() {
    // Not aligned to the day, the hour or the step: whole weeks still hold whole days.
    for (seed, end) in [
        (42, END),
        (42, END + 3 * 3600 + 17 * 60 + 11),
        (7, END - 3 * DAY),
        (1, END + 11 * WEEK),
    ] {
        assert_canonical_means(&fleet(seed), end);
    }
}

#[test]
fn variants_stay_in_their_scenario() {
    let fleet = fleet(42);
    let answer = |m: &str| fleet.query(&query(m, END)).unwrap();
    let (cpu, memory, connections) = (answer("cpu"), answer("memory"), answer("connections"));
    let means = |r: &QueryResult, id: &str| -> Vec<f64> {
        weekly(series_of(r, id), END).iter().map(|w| w.0).collect()
    };
    for target in fleet.targets() {
        let id = target.id.as_str();
        let (c, m, n) = (means(&cpu, id), means(&memory, id), means(&connections, id));
        match fleet.scenario_of(id).unwrap() {
            "reporting" => assert!(
                c.iter().all(|v| *v < 39.0) && m.iter().all(|v| *v < 64.5),
                "{id}: {c:?} {m:?}"
            ),
            "transactional" => assert!(
                c.iter().all(|v| *v < 84.0) && n.iter().all(|v| *v < 94.5),
                "{id}: {c:?} {n:?}"
            ),
            "saturated" => assert!(c.iter().all(|v| *v > 86.0), "{id}: {c:?}"),
            "connection-pressure" => assert!(n.iter().all(|v| *v >= 95.2), "{id}: {n:?}"),
            "spiky-but-safe" | "steady-mid" => assert!(
                c.iter().all(|v| *v > 41.0 && *v < 84.0) && n.iter().all(|v| *v < 94.0),
                "{id}: {c:?} {n:?}"
            ),
            _ => {}
        }
    }
}

#[test]
fn spiky_targets_really_spike_and_gap_targets_lack_the_last_weeks() {
    let fleet = fleet(42);
    let cpu = fleet.query(&query("cpu", END)).unwrap();
    let peak = series_of(&cpu, "pg-spiky-01")
        .values
        .iter()
        .copied()
        .fold(0.0, f64::max);
    assert!(peak > 0.85, "{peak}");
    for target in fleet
        .targets()
        .iter()
        .filter(|t| t.id.starts_with("pg-gap-"))
    {
        let weeks = weekly(series_of(&cpu, &target.id), END);
        assert_eq!(weeks[3].1, 0, "{}: W-1 must be empty", target.id);
        assert!(weeks[2].1 <= 2016 / 2, "{}: {}", target.id, weeks[2].1);
        assert_eq!(weeks[1].1, 2016, "{}", target.id);
    }
}
