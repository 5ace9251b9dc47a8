//! Hostile guests, each built from source by `tests/build.rs`: every misbehaviour fails only the
//! call (or, for a forbidden import, the load) with an error naming the plugin and the target,
//! and the same plugin serves the next target.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use setpoint_core::{Bounds, Class, Classification, Explanation, FeatureVector, Target};
use setpoint_plugin_host::{
    Failure, FeaturesInput, Limits, OutputLimits, Plugin, PluginError, PluginHost, ProposeInput,
};
use setpoint_runtime::{Config, Runtime, Shutdown};

fn guest(name: &str) -> Vec<u8> {
    std::fs::read(guest_path(name)).unwrap()
}

pub(crate) fn guest_path(name: &str) -> &'static str {
    match name {
        "trap" => env!("SETPOINT_GUEST_TRAP"),
        "spin" => env!("SETPOINT_GUEST_SPIN"),
        "hog" => env!("SETPOINT_GUEST_HOG"),
        "recurse" => env!("SETPOINT_GUEST_RECURSE"),
        "panic" => env!("SETPOINT_GUEST_PANIC"),
        "flood" => env!("SETPOINT_GUEST_FLOOD"),
        "liar" => env!("SETPOINT_GUEST_LIAR"),
        "caps" => env!("SETPOINT_GUEST_CAPS"),
        other => panic!("no guest {other}"),
    }
}

fn load(name: &str) -> Plugin {
    PluginHost::new(Limits::default())
        .unwrap()
        .load(&format!("{name}.wasm"), &guest(name))
        .unwrap()
}

fn target(id: &str) -> Target {
    Target {
        id: id.to_string(),
        technology: "postgres".to_string(),
        labels: Default::default(),
        resources: setpoint_core::Resources {
            cpu_millicores: 8_000,
            memory_bytes: 32 << 30,
            replicas: 1,
            parameters: Default::default(),
        },
    }
}

fn window() -> setpoint_core::Window {
    let end: DateTime<Utc> = DateTime::parse_from_rfc3339("2026-11-23T06:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    setpoint_core::Window {
        start: end - chrono::Duration::weeks(5),
        end,
        step_seconds: 300,
        weeks: 4,
    }
}

fn scale_down() -> Classification {
    Classification {
        class: Class::ScaleDown,
        confidence: 0.9,
        model: "test".into(),
        model_version: "0".into(),
        explanation: Explanation {
            code: "test".into(),
            rule: "test".into(),
            evidence: vec![],
        },
    }
}

fn features(plugin: &Plugin, id: &str) -> Result<FeatureVector, PluginError> {
    plugin.features(&target(id), &window(), &[])
}

fn propose(plugin: &Plugin, id: &str) -> Result<Vec<setpoint_core::Proposal>, PluginError> {
    let features = FeatureVector {
        features: vec![setpoint_core::Feature {
            name: "cpu_w1".into(),
            value: Some(0.1),
            coverage: 1.0,
        }],
    };
    plugin.propose(&target(id), &scale_down(), &features, &Bounds::default())
}

fn failure(error: &PluginError) -> &Failure {
    error
        .failure()
        .unwrap_or_else(|| panic!("not a call failure: {error}"))
}

/// The error names the plugin, the target and the call, in the host's words.
fn assert_names(error: &PluginError, plugin: &str, target: &str, call: &str) {
    let text = error.to_string();
    assert!(
        text.contains(&format!("plugin {plugin:?}"))
            && text.contains(&format!("target {target:?}"))
            && text.contains(call),
        "{text}"
    );
}

#[test]
fn runaway_recursion_overflows_the_stack_of_that_call_only() {
    let plugin = load("recurse");
    let error = features(&plugin, "pg-1").unwrap_err();
    assert_eq!(failure(&error), &Failure::StackOverflow, "{error}");
    assert_names(&error, "recurse", "pg-1", "features()");
    assert!(
        error.to_string().contains("overflowed its call stack"),
        "{error}"
    );

    // Large frames exhaust the shadow stack in linear memory first: a memory trap, still
    // confined to the call.
    let error = features(&plugin, "frames").unwrap_err();
    assert!(
        matches!(failure(&error), Failure::Trap { message } if message.contains("out of bounds memory access")),
        "{error}"
    );
    assert_names(&error, "recurse", "frames", "features()");

    // The plugin carries on with the next call.
    assert_eq!(propose(&plugin, "pg-2").unwrap().len(), 1);
}

#[test]
fn a_panic_in_propose_is_reported_with_its_message() {
    let plugin = load("panic");
    assert!(features(&plugin, "pg-7").is_ok());
    let error = propose(&plugin, "pg-7").unwrap_err();
    assert!(
        matches!(failure(&error), Failure::Panic { message } if message.contains("deliberate panic in propose for pg-7")),
        "{error}"
    );
    assert_names(&error, "panic", "pg-7", "propose()");
    // The SDK's hook reports where it panicked, too.
    assert!(error.to_string().contains("src/lib.rs"), "{error}");
    assert!(features(&plugin, "pg-8").is_ok());
}

#[test]
fn a_long_panic_message_is_cut_before_it_reaches_a_report() {
    let plugin = load("panic");
    let error = propose(&plugin, "long").unwrap_err();
    let Failure::Panic { message } = failure(&error) else {
        panic!("{error}");
    };
    assert!(message.len() < 2048, "{} bytes", message.len());
    assert!(message.contains("bytes in all)"), "{message}");

    // A message longer than a call may hand the host is not copied at all.
    let error = propose(&plugin, "huge").unwrap_err();
    assert!(
        matches!(failure(&error), Failure::OutputTooLarge { what } if what.contains("one log line")),
        "{error}"
    );
    assert_names(&error, "panic", "huge", "propose()");
}

#[test]
fn a_huge_feature_list_is_refused_as_output_too_large() {
    let plugin = load("flood");
    let started = Instant::now();
    let error = features(&plugin, "pg-1").unwrap_err();
    assert!(
        matches!(failure(&error), Failure::OutputTooLarge { what } if what.contains("1048576 bytes")),
        "{error}"
    );
    assert_names(&error, "flood", "pg-1", "features()");
    assert!(error.to_string().contains("output too large"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn strings_aliasing_one_buffer_do_not_make_the_host_copy_it_each_time() {
    // 100,000 operation reasons pointing at one 1 MiB string: 100 GB if the host copied each.
    // wasmtime's own per-call bound (128 MiB) stops it even when the host's is lifted.
    for bytes_per_call in [OutputLimits::default().bytes_per_call, 128 << 20] {
        let host = PluginHost::new(Limits::default())
            .unwrap()
            .with_output_limits(OutputLimits {
                bytes_per_call,
                ..OutputLimits::default()
            });
        let plugin = host.load("flood.wasm", &guest("flood")).unwrap();
        let started = Instant::now();
        let error = propose(&plugin, "aliased").unwrap_err();
        assert!(
            matches!(failure(&error), Failure::OutputTooLarge { .. }),
            "{error}"
        );
        eprintln!(
            "aliased strings, {bytes_per_call} bytes per call: refused in {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn without_the_host_bound_wasmtime_lifts_a_huge_list_that_fits_the_memory_limit() {
    // What wasmtime does on its own: 400,000 features (two columns, about 6 MB) are under its
    // 128 MiB per-call default, so they are all copied into the host before anything can look
    // at them — only the contract check stops them. The host's bound refuses them while
    // copying.
    let host = PluginHost::new(Limits::default())
        .unwrap()
        .with_output_limits(OutputLimits {
            bytes_per_call: 128 << 20,
            max_items: usize::MAX,
            ..OutputLimits::default()
        });
    let plugin = host.load("flood.wasm", &guest("flood")).unwrap();
    let started = Instant::now();
    let error = features(&plugin, "pg-1").unwrap_err();
    assert!(
        matches!(failure(&error), Failure::InvalidOutput { message } if message.contains("400000 feature values")),
        "{error}"
    );
    let unbounded = started.elapsed();
    let plugin = load("flood");
    let started = Instant::now();
    features(&plugin, "pg-1").unwrap_err();
    eprintln!(
        "400,000 features: lifted then refused in {unbounded:?}; refused while lifting in {:?}",
        started.elapsed()
    );
}

#[test]
fn more_features_than_the_bound_are_refused_before_the_schema_check() {
    let plugin = load("flood");
    let error = features(&plugin, "over-schema").unwrap_err();
    assert!(
        matches!(failure(&error), Failure::OutputTooLarge { what } if what == "2000 feature values returned; at most 1024"),
        "{error}"
    );
}

#[test]
fn oversized_proposals_are_refused() {
    let plugin = load("flood");
    for (target, expected) in [
        // 8 MiB: refused while copying.
        ("pg-1", "bytes of results"),
        (
            "long-summary",
            "the summary of proposal 0 is 65536 bytes; at most 1024",
        ),
        (
            "many-operations",
            "5000 operations in proposal 0; at most 1024",
        ),
    ] {
        let error = propose(&plugin, target).unwrap_err();
        assert!(
            matches!(failure(&error), Failure::OutputTooLarge { what } if what.contains(expected)),
            "{target}: {error}"
        );
        assert_names(&error, "flood", target, "propose()");
    }
    // Within bounds, the same plugin proposes.
    assert_eq!(propose(&plugin, "fine").unwrap().len(), 1);
}

#[test]
fn each_feature_that_breaks_the_contract_is_rejected() {
    let plugin = load("liar");
    for (target, expected) in [
        ("infinite-value", "feature \"cpu_w1\" has an infinite value"),
        ("nan-coverage", "coverage NaN outside 0..1"),
        ("coverage-above-one", "coverage 1.5 outside 0..1"),
        ("negative-coverage", "coverage -0.1 outside 0..1"),
        (
            "no-features",
            "0 feature values and 0 coverages returned, the schema has 1 features",
        ),
        (
            "extra-feature",
            "2 feature values and 2 coverages returned, the schema has 1 features",
        ),
        (
            "short-coverage",
            "1 feature values and 0 coverages returned, the schema has 1 features",
        ),
    ] {
        let error = features(&plugin, target).unwrap_err();
        assert!(
            matches!(failure(&error), Failure::InvalidOutput { message } if message.contains(expected)),
            "{target}: {error}"
        );
        assert_names(&error, "liar", target, "features()");
    }
    assert!(features(&plugin, "fine").is_ok());
}

#[test]
fn each_proposal_that_breaks_the_contract_is_rejected() {
    let plugin = load("liar");
    for (target, expected) in [
        ("zero-memory", "sizes the target to zero"),
        ("zero-cpu", "sizes the target to zero"),
        ("zero-replicas", "sizes the target to zero"),
        ("no-operations", "has no operations"),
        ("empty-summary", "has no summary"),
        (
            "undeclared-action",
            "a scale_up proposal, which the plugin did not declare",
        ),
        ("twice", "two scale_down proposals"),
    ] {
        let error = propose(&plugin, target).unwrap_err();
        assert!(
            matches!(failure(&error), Failure::InvalidOutput { message } if message.contains(expected)),
            "{target}: {error}"
        );
        assert_names(&error, "liar", target, "propose()");
    }
}

/// Plans that break the contract in their sizes or operations fail the target at the host,
/// before any policy sees them.
#[test]
fn proposals_outside_bounds_or_against_their_direction_are_rejected() {
    let plugin = load("liar");
    for (target, expected) in [
        ("above-max", "outside the bounds"),
        ("below-min", "outside the bounds"),
        ("grows-on-scale-down", "which is not a scale_down"),
        ("two-resizes", "is not the new size"),
        ("empty-parameter", "a set-parameter operation has no name"),
    ] {
        let error = propose(&plugin, target).unwrap_err();
        assert!(
            matches!(failure(&error), Failure::InvalidOutput { message } if message.contains(expected)),
            "{target}: {error}"
        );
        assert_names(&error, "liar", target, "propose()");
    }
}

#[test]
fn a_plugin_importing_a_capability_is_refused_at_load_naming_it() {
    let host = PluginHost::new(Limits::default()).unwrap();
    let error = host.load("caps.wasm", &guest("caps")).unwrap_err();
    let PluginError::Forbidden { imports, .. } = &error else {
        panic!("{error}");
    };
    assert_eq!(imports, &["wasi:filesystem/preopens@0.2.6"]);
    let text = error.to_string();
    assert!(
        text.contains("caps.wasm")
            && text.contains("imports wasi:filesystem/preopens@0.2.6")
            && text.contains("does not offer"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_plugins_in_a_cycle_fail_only_their_own_targets() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "state_dir: {state}\nloops:\n  - name: postgres\n  - name: recurse\n    plugin: {recurse}\n  - name: flood\n    plugin: {flood}\n",
        state = dir.path().join("state").display(),
        recurse = guest_path("recurse"),
        flood = guest_path("flood"),
    );
    let runtime = Runtime::new(Config::parse(&text, "test.yaml").unwrap()).unwrap();
    let now = DateTime::parse_from_rfc3339("2026-11-23T06:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let reports = runtime.run_once(now, None, &Shutdown::new()).await.unwrap();
    assert_eq!(reports.len(), 3);
    assert_eq!(reports[0].failed(), 0);
    assert!(reports[0].rows.iter().any(|r| r.verdict.is_some()));
    for (report, needle) in [
        (&reports[1], "overflowed its call stack"),
        (&reports[2], "output too large"),
    ] {
        assert_eq!(report.failed(), report.rows.len(), "{}", report.loop_name);
        for row in &report.rows {
            let error = row.error.as_deref().unwrap();
            assert!(error.contains(needle), "{error}");
            assert!(error.contains(&format!("{:?}", row.target)), "{error}");
        }
    }

    // A plugin that imports a capability stops the configuration before any cycle, naming it.
    let text = format!(
        "state_dir: {state}\nloops:\n  - name: caps\n    plugin: {caps}\n",
        state = dir.path().join("state").display(),
        caps = guest_path("caps"),
    );
    let Err(error) = Runtime::new(Config::parse(&text, "test.yaml").unwrap()) else {
        panic!("a plugin importing wasi:filesystem loaded");
    };
    assert!(
        error.to_string().contains("wasi:filesystem/preopens@0.2.6"),
        "{error}"
    );
}

/// Targets of one batch call: a trap, a refusal or an oversized answer of one of them fails
/// that target alone, naming it, and its neighbours get their answers.
#[test]
fn in_a_batch_a_misbehaving_target_fails_alone() {
    let ids = |ids: &[&str]| ids.iter().map(|id| target(id)).collect::<Vec<_>>();
    fn inputs(targets: &[Target]) -> Vec<FeaturesInput<'_>> {
        targets
            .iter()
            .map(|target| FeaturesInput {
                target,
                series: &[],
            })
            .collect()
    }

    // A panic traps the whole batch call; the targets are then run one by one.
    let plugin = load("panic");
    let targets = ids(&["pg-1", "panic-in-features", "pg-2"]);
    let results = plugin.features_batch(&window(), &inputs(&targets));
    assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
    let error = results[1].as_ref().unwrap_err();
    assert!(matches!(failure(error), Failure::Panic { .. }), "{error}");
    assert_names(error, "panic", "panic-in-features", "features()");

    // A contract breach is that target's answer; the batch itself is fine.
    let plugin = load("liar");
    let targets = ids(&["pg-1", "infinite-value", "pg-2", "nan-coverage"]);
    let results = plugin.features_batch(&window(), &inputs(&targets));
    assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
    for i in [1, 3] {
        let error = results[i].as_ref().unwrap_err();
        assert!(
            matches!(failure(error), Failure::InvalidOutput { .. }),
            "{error}"
        );
        assert_names(error, "liar", &targets[i].id, "features()");
    }

    // An answer too large to copy out fails the batch call; alone, only its target fails.
    let plugin = load("flood");
    let targets = ids(&["fine", "aliased", "fine"]);
    let features = FeatureVector {
        features: vec![setpoint_core::Feature {
            name: "cpu_w1".into(),
            value: Some(0.1),
            coverage: 1.0,
        }],
    };
    let class = scale_down();
    let requests: Vec<ProposeInput<'_>> = targets
        .iter()
        .map(|target| ProposeInput {
            target,
            classification: &class,
            features: &features,
        })
        .collect();
    let results = plugin.propose_batch(&requests, &Bounds::default());
    assert_eq!(results.len(), 3);
    assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
    let error = results[1].as_ref().unwrap_err();
    assert!(
        matches!(failure(error), Failure::OutputTooLarge { .. }),
        "{error}"
    );
    assert_names(error, "flood", "aliased", "propose()");
}
