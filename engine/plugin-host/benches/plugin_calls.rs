//! Per-target cost of `features` + `propose` on the PostgreSQL plugin fed weekly aggregates (what
//! a TSDB that summarises per week sends): through the sandbox as the engine calls it (a fleet's
//! targets in batches), through the sandbox one target per call, and the same plugin code called
//! natively. Also the cold load of the component (compile + describe).
//!
//!     cargo bench -p setpoint-plugin-host --bench plugin_calls
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use setpoint_core::{
    Bounds, Class, Classification, Explanation, MetricSeries, Resources, Target, Window,
};
use setpoint_plugin_host::{CallUsage, FeaturesInput, Limits, PluginHost, ProposeInput};
use setpoint_plugin_postgres::Postgres;
use setpoint_sdk::Adapter;
use setpoint_sdk::types as sdk;

/// The allocator the `setpoint` binary runs with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const WEEK_MS: i64 = 7 * 24 * 3600 * 1000;
const END_MS: i64 = 1_795_413_600_000; // 2026-11-23T06:00:00Z
const GIB: u64 = 1 << 30;
/// Targets of the fleet a cycle hands the plugin: one loop's worth.
const FLEET: usize = 64;
const METRICS: [(&str, [f64; 4]); 4] = [
    ("cpu", [0.11, 0.09, 0.13, 0.10]),
    ("memory", [0.58, 0.61, 0.55, 0.57]),
    ("connections", [0.22, 0.19, 0.24, 0.21]),
    ("iops", [0.31, 0.28, 0.33, 0.29]),
];

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap()
}

fn engine_inputs() -> (Target, Window, Vec<MetricSeries>) {
    let target = Target {
        id: "pg-reporting-01".into(),
        technology: "postgres".into(),
        labels: BTreeMap::from([("instance".to_string(), "pg-reporting-01".to_string())]),
        resources: Resources {
            cpu_millicores: 8000,
            memory_bytes: 32 * GIB,
            replicas: 1,
            parameters: BTreeMap::from([
                ("shared_buffers".to_string(), "8GB".to_string()),
                ("effective_cache_size".to_string(), "24GB".to_string()),
                ("max_connections".to_string(), "200".to_string()),
            ]),
        },
    };
    let window = Window {
        start: at(END_MS - 5 * WEEK_MS),
        end: at(END_MS),
        step_seconds: 300,
        weeks: 4,
    };
    let series = METRICS
        .iter()
        .map(|(metric, weeks)| MetricSeries {
            metric: metric.to_string(),
            timestamps_ms: (0..4).map(|k| END_MS - (3 - k) * WEEK_MS).collect(),
            values: weeks.to_vec(),
            sample_counts: Some(vec![2016; 4]),
        })
        .collect();
    (target, window, series)
}

fn classification() -> Classification {
    Classification {
        class: Class::ScaleDown,
        confidence: 0.83,
        model: "bench".into(),
        model_version: "1".into(),
        explanation: Explanation {
            code: "low_utilisation".into(),
            rule: String::new(),
            evidence: Vec::new(),
        },
    }
}

fn native_inputs() -> (sdk::Target, sdk::Window, Vec<sdk::Series>, sdk::Bounds) {
    let (target, window, series) = engine_inputs();
    let target = sdk::Target {
        id: target.id,
        technology: target.technology,
        labels: target.labels.into_iter().collect(),
        resources: sdk::Resources {
            cpu_millicores: target.resources.cpu_millicores,
            memory_bytes: target.resources.memory_bytes,
            replicas: 1,
            parameters: target.resources.parameters.into_iter().collect(),
        },
    };
    let window = sdk::Window {
        start_ms: window.start.timestamp_millis(),
        end_ms: window.end.timestamp_millis(),
        step_seconds: window.step_seconds,
        weeks: window.weeks,
    };
    let series = series
        .into_iter()
        .map(|s| sdk::Series {
            metric: s.metric,
            timestamps_ms: s.timestamps_ms,
            values: s.values,
            sample_counts: s.sample_counts,
        })
        .collect();
    let bounds = sdk::Bounds {
        min_cpu_millicores: 1000,
        max_cpu_millicores: 64_000,
        min_memory_bytes: 2 * GIB,
        max_memory_bytes: 512 * GIB,
    };
    (target, window, series, bounds)
}

/// Fuel (about one unit per WASM instruction) of each call: unlike time, it does not depend on
/// what else the machine is doing, so it shows what a change to a plugin or the SDK saved.
fn print_fuel(
    target: &Target,
    window: &Window,
    series: &[MetricSeries],
    class: &Classification,
    bounds: &Bounds,
) {
    let used = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&used);
    let host = PluginHost::new(Limits::default())
        .unwrap()
        .with_meter(Arc::new(move |usage: &CallUsage| {
            sink.lock().unwrap().push((usage.call, usage.fuel));
        }));
    let plugin = host
        .load("builtin:postgres", setpoint_plugins_bundled::postgres())
        .unwrap();
    let features = plugin.features(target, window, series).unwrap();
    plugin.propose(target, class, &features, bounds).unwrap();
    for (call, fuel) in used.lock().unwrap().iter() {
        println!("fuel: {call:?} {fuel}");
    }
}

fn per_target(c: &mut Criterion) {
    let host = PluginHost::new(Limits::default()).unwrap();
    let plugin = host
        .load("builtin:postgres", setpoint_plugins_bundled::postgres())
        .unwrap();
    let (target, window, series) = engine_inputs();
    let bounds = Bounds {
        min_cpu_millicores: 1000,
        max_cpu_millicores: 64_000,
        min_memory_bytes: 2 * GIB,
        max_memory_bytes: 512 * GIB,
    };
    let class = classification();
    print_fuel(&target, &window, &series, &class, &bounds);
    let mut group = c.benchmark_group("postgres features+propose per target");
    // The fleet as a cycle has it: distinct targets, each with its own series.
    let fleet: Vec<Target> = (0..FLEET)
        .map(|i| Target {
            id: format!("pg-{i:04}"),
            ..target.clone()
        })
        .collect();
    let fleet_series = vec![series.clone(); FLEET];
    // Reported per target: each iteration runs the whole fleet, and its time is divided by
    // the fleet's size.
    group.bench_function("sandbox batched", |b| {
        b.iter_custom(|iters| {
            let started = std::time::Instant::now();
            for _ in 0..iters {
                let inputs: Vec<FeaturesInput<'_>> = fleet
                    .iter()
                    .zip(&fleet_series)
                    .map(|(target, series)| FeaturesInput { target, series })
                    .collect();
                let features: Vec<_> = plugin
                    .features_batch(&window, black_box(&inputs))
                    .into_iter()
                    .map(Result::unwrap)
                    .collect();
                let requests: Vec<ProposeInput<'_>> = fleet
                    .iter()
                    .zip(&features)
                    .map(|(target, features)| ProposeInput {
                        target,
                        classification: &class,
                        features,
                    })
                    .collect();
                let proposals = plugin.propose_batch(&requests, &bounds);
                assert!(proposals.iter().all(Result::is_ok));
                black_box(proposals);
            }
            started.elapsed() / FLEET as u32
        })
    });
    group.bench_function("sandbox one per call", |b| {
        b.iter(|| {
            let features = plugin
                .features(black_box(&target), &window, black_box(&series))
                .unwrap();
            let proposals = plugin.propose(&target, &class, &features, &bounds).unwrap();
            black_box(proposals)
        })
    });
    group.bench_function("sandbox features", |b| {
        b.iter(|| {
            plugin
                .features(black_box(&target), &window, black_box(&series))
                .unwrap()
        })
    });
    let features = plugin.features(&target, &window, &series).unwrap();
    group.bench_function("sandbox propose", |b| {
        b.iter(|| {
            plugin
                .propose(&target, &class, black_box(&features), &bounds)
                .unwrap()
        })
    });
    let (n_target, n_window, n_series, n_bounds) = native_inputs();
    group.bench_function("native", |b| {
        b.iter(|| {
            let features = Postgres::features(
                black_box(n_target.clone()),
                n_window,
                black_box(n_series.clone()),
            )
            .unwrap();
            let proposals = Postgres::propose(sdk::ProposeRequest {
                target: n_target.clone(),
                classification: sdk::Classification {
                    class: sdk::Class::ScaleDown,
                    confidence: 0.83,
                },
                features,
                bounds: n_bounds,
            })
            .unwrap();
            black_box(proposals)
        })
    });
    // The plugin's code behind the SDK's batch decoding, natively: what the guest runs.
    let n_fleet: Vec<sdk::Target> = (0..FLEET)
        .map(|i| sdk::Target {
            id: format!("pg-{i:04}"),
            ..n_target.clone()
        })
        .collect();
    let n_series_columns = setpoint_sdk::batch::metric_columns(&vec![n_series.clone(); FLEET]);
    group.bench_function("native batched", |b| {
        b.iter_custom(|iters| {
            let started = std::time::Instant::now();
            for _ in 0..iters {
                let features = setpoint_sdk::batch::features::<Postgres>(sdk::FeaturesBatch {
                    window: n_window,
                    targets: setpoint_sdk::batch::target_columns(&n_fleet),
                    series: n_series_columns.clone(),
                });
                let mut values = Vec::new();
                let mut coverage = Vec::new();
                for f in features {
                    let f = f.unwrap();
                    values.extend(f.values);
                    coverage.extend(f.coverage);
                }
                let proposals = setpoint_sdk::batch::propose::<Postgres>(sdk::ProposeBatch {
                    targets: setpoint_sdk::batch::target_columns(&n_fleet),
                    classes: vec![sdk::Class::ScaleDown; FLEET],
                    confidences: vec![0.83; FLEET],
                    feature_values: values,
                    feature_coverage: coverage,
                    bounds: n_bounds,
                });
                black_box(proposals);
            }
            started.elapsed() / FLEET as u32
        })
    });
    group.finish();

    let mut load = c.benchmark_group("postgres cold load");
    load.sample_size(10);
    load.bench_function("compile + describe", |b| {
        b.iter(|| {
            black_box(
                host.load("builtin:postgres", setpoint_plugins_bundled::postgres())
                    .unwrap(),
            )
        })
    });
    load.finish();
}

criterion_group!(benches, per_target);
criterion_main!(benches);
