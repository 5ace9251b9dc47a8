use std::time::Duration;

use chrono::{DateTime, Utc};
use setpoint_core::{Bounds, Class, MetricSeries, Target};
use setpoint_observe::{MetricSource, RangeQuery};
use setpoint_plugin_host::{Failure, FeaturesInput, Limits, PluginError, PluginHost, ProposeInput};

fn guest(name: &str) -> Vec<u8> {
    let path = match name {
        "trap" => env!("SETPOINT_GUEST_TRAP"),
        "spin" => env!("SETPOINT_GUEST_SPIN"),
        "hog" => env!("SETPOINT_GUEST_HOG"),
        other => panic!("no guest {other}"),
    };
    std::fs::read(path).unwrap()
}

fn target(id: &str) -> Target {
    setpoint_runtime::builtin_fleet(42, "postgres")
        .unwrap()
        .targets()
        .iter()
        .find(|t| t.id == "pg-reporting-01")
        .map(|t| Target {
            id: id.to_string(),
            ..t.clone()
        })
        .unwrap()
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-23T06:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn window() -> setpoint_core::Window {
    setpoint_core::Window {
        start: now() - chrono::Duration::weeks(5),
        end: now(),
        step_seconds: 300,
        weeks: 4,
    }
}

/// The reporting instance's samples, straight from the simulator.
async fn reporting_series() -> Vec<MetricSeries> {
    let fleet = setpoint_runtime::builtin_fleet(42, "postgres").unwrap();
    let mut out = Vec::new();
    for metric in ["cpu", "memory", "connections", "iops"] {
        let query = RangeQuery {
            metric: metric.into(),
            promql: String::new(),
            technology: "postgres".into(),
            start: window().start,
            end: window().end,
            step_seconds: 300,
            target_label: "instance".into(),
            weekly: None,
        };
        let result = fleet.query_range(&query).await.unwrap();
        out.extend(
            result
                .series
                .into_iter()
                .filter(|(t, _)| t == "pg-reporting-01")
                .map(|(_, s)| s),
        );
    }
    out
}

#[tokio::test]
async fn the_postgres_plugin_runs_through_the_sandbox() {
    let host = PluginHost::new(Limits::default()).unwrap();
    let plugin = host
        .load("builtin:postgres", setpoint_plugins_bundled::postgres())
        .unwrap();
    let d = plugin.descriptor();
    assert_eq!(d.name, "postgres");
    assert_eq!(d.technology, "postgres");
    assert_eq!(d.metrics.len(), 4);
    assert_eq!(d.features.len(), 16);

    let t = target("pg-reporting-01");
    let features = plugin
        .features(&t, &window(), &reporting_series().await)
        .unwrap();
    let cpu: Vec<f64> = ["cpu_w4", "cpu_w3", "cpu_w2", "cpu_w1"]
        .iter()
        .map(|n| features.value(n).unwrap() * 100.0)
        .collect();
    for (got, want) in cpu.iter().zip([11.0, 9.0, 13.0, 10.0]) {
        assert!((got - want).abs() < 0.3, "{cpu:?}");
    }
    let classification = setpoint_classify_free(&features);
    let proposals = plugin
        .propose(&t, &classification, &features, &Bounds::default())
        .unwrap();
    let down = proposals
        .iter()
        .find(|p| p.action == setpoint_core::ActionKind::ScaleDown)
        .unwrap();
    assert_eq!(
        down.summary,
        "8 vCPU / 32 GiB → 4 vCPU / 16 GiB, shared_buffers 8GB → 4GB"
    );
}

/// A scale-down classification built by hand (the classifier has its own tests).
fn setpoint_classify_free(_: &setpoint_core::FeatureVector) -> setpoint_core::Classification {
    setpoint_core::Classification {
        class: Class::ScaleDown,
        confidence: 0.8,
        model: "test".into(),
        model_version: "0".into(),
        explanation: setpoint_core::Explanation {
            code: "test".into(),
            rule: "test".into(),
            evidence: vec![],
        },
    }
}

fn call_failure(error: &PluginError) -> &Failure {
    error
        .failure()
        .unwrap_or_else(|| panic!("not a call failure: {error}"))
}

#[test]
fn a_panicking_plugin_fails_that_target_only_with_its_message() {
    let host = PluginHost::new(Limits::default()).unwrap();
    let plugin = host.load("trap.wasm", &guest("trap")).unwrap();
    let error = plugin
        .features(&target("pg-1"), &window(), &[])
        .unwrap_err();
    assert!(
        matches!(call_failure(&error), Failure::Panic { message } if message.contains("deliberate panic for target pg-1")),
        "{error}"
    );
    let text = error.to_string();
    assert!(
        text.contains("\"trap\"") && text.contains("\"pg-1\"") && text.contains("features()"),
        "{text}"
    );
    // The same plugin serves the next target: a trap poisons nothing beyond its call.
    let features = plugin.features(&target("pg-2"), &window(), &[]).unwrap();
    assert_eq!(features.value("cpu_w1"), Some(0.5));
}

#[test]
fn an_endless_loop_runs_out_of_fuel() {
    let host = PluginHost::new(Limits::default()).unwrap();
    let plugin = host.load("spin.wasm", &guest("spin")).unwrap();
    let error = plugin
        .features(&target("pg-1"), &window(), &[])
        .unwrap_err();
    assert!(
        matches!(call_failure(&error), Failure::OutOfFuel { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("CPU budget"), "{error}");
}

#[test]
fn the_wall_clock_backstop_stops_a_loop_with_fuel_to_spare() {
    let host = PluginHost::new(Limits {
        fuel_per_call: u64::MAX / 2,
        wall_clock: Duration::from_millis(200),
        ..Limits::default()
    })
    .unwrap();
    let plugin = host.load("spin.wasm", &guest("spin")).unwrap();
    let error = plugin
        .features(&target("pg-1"), &window(), &[])
        .unwrap_err();
    assert!(
        matches!(call_failure(&error), Failure::Timeout { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("wall-clock limit"), "{error}");
}

#[test]
fn a_memory_hog_hits_the_memory_limit() {
    let host = PluginHost::new(Limits {
        memory_bytes: 16 * 1024 * 1024,
        ..Limits::default()
    })
    .unwrap();
    let plugin = host.load("hog.wasm", &guest("hog")).unwrap();
    let error = plugin
        .features(&target("pg-1"), &window(), &[])
        .unwrap_err();
    assert!(
        matches!(call_failure(&error), Failure::MemoryLimit { limit } if *limit == 16 * 1024 * 1024),
        "{error}"
    );
    assert!(
        error.to_string().contains("memory limit of 16 MiB"),
        "{error}"
    );
}

#[test]
fn bytes_that_are_not_a_component_are_refused_at_load() {
    let host = PluginHost::new(Limits::default()).unwrap();
    let error = host.load("junk.wasm", b"\0asm not really").unwrap_err();
    assert!(matches!(error, PluginError::Load { .. }), "{error}");
    assert!(error.to_string().contains("junk.wasm"), "{error}");
}

/// Every target of the simulated PostgreSQL fleet, half with raw samples and half with weekly
/// aggregates, answered in one batch exactly as when asked alone.
#[tokio::test]
async fn a_batch_answers_each_target_as_a_call_of_its_own_would() {
    use setpoint_observe::WeeklySummary;
    let host = PluginHost::new(Limits::default()).unwrap();
    let plugin = host
        .load("builtin:postgres", setpoint_plugins_bundled::postgres())
        .unwrap();
    let fleet = setpoint_runtime::builtin_fleet(42, "postgres").unwrap();
    let targets: Vec<Target> = fleet.targets().to_vec();
    assert!(targets.len() > 10, "{}", targets.len());
    let mut series: Vec<Vec<MetricSeries>> = vec![Vec::new(); targets.len()];
    for metric in &plugin.descriptor().metrics {
        for weekly in [false, true] {
            let query = RangeQuery {
                metric: metric.name.clone(),
                promql: String::new(),
                technology: "postgres".into(),
                start: window().start,
                end: window().end,
                step_seconds: 300,
                target_label: "instance".into(),
                weekly: weekly.then_some(WeeklySummary {
                    aggregation: metric.aggregation,
                    weeks: 4,
                    counted: true,
                }),
            };
            for (id, s) in fleet.query_range(&query).await.unwrap().series {
                let i = targets.iter().position(|t| t.id == id).unwrap();
                // Alternate shapes by target, and leave one metric out of one target.
                if (i % 2 == 1) == weekly && !(i == 3 && metric.name == "iops") {
                    series[i].push(s);
                }
            }
        }
    }
    let inputs: Vec<FeaturesInput<'_>> = targets
        .iter()
        .zip(&series)
        .map(|(target, series)| FeaturesInput { target, series })
        .collect();
    let batched = plugin.features_batch(&window(), &inputs);
    assert_eq!(batched.len(), targets.len());
    let features: Vec<_> = batched.into_iter().map(Result::unwrap).collect();
    for (i, target) in targets.iter().enumerate() {
        let alone = plugin.features(target, &window(), &series[i]).unwrap();
        assert_eq!(
            format!("{:?}", features[i]),
            format!("{alone:?}"),
            "{}",
            target.id
        );
    }
    assert!(
        features[3].value("iops_w1").is_none(),
        "the metric left out stays missing"
    );
    assert!(features[2].value("iops_w1").is_some());

    let classes: Vec<_> = features.iter().map(setpoint_classify_free).collect();
    let inputs: Vec<ProposeInput<'_>> = targets
        .iter()
        .zip(&features)
        .zip(&classes)
        .map(|((target, features), classification)| ProposeInput {
            target,
            classification,
            features,
        })
        .collect();
    let batched = plugin.propose_batch(&inputs, &Bounds::default());
    assert_eq!(batched.len(), targets.len());
    let mut planned = 0;
    for (i, proposals) in batched.into_iter().enumerate() {
        let proposals = proposals.unwrap();
        let alone = plugin
            .propose(&targets[i], &classes[i], &features[i], &Bounds::default())
            .unwrap();
        assert_eq!(proposals, alone, "{}", targets[i].id);
        planned += usize::from(!proposals.is_empty());
    }
    assert!(planned > 0);
}
