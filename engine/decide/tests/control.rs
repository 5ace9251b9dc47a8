//! Integration tests of the fast loop's decide stage: a team's control policy (Rego v0 and
//! v1), the action mapping, conflicts and other policy errors, and setpoint's guard.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use setpoint_core::control::{
    ActionMapping, ControlAction, ControlActionKind, ControlDecision, ControlInput, ControlLimits,
    ControlLoop, Cooldown, CurrentSettings, Flags, Metrics, RegoVersion, ReplicaTarget,
    ThrottleLimit,
};
use setpoint_core::{KillSwitches, Mode, Verdict};
use setpoint_decide::{
    ControlEngine, ControlPolicy, PolicyBundle, PolicyError, TestKind, guard_bundle,
    load_guard_bundle, run_tests,
};

fn fast_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/fast")
}

fn example(version: &str) -> PathBuf {
    fast_dir()
        .join("examples")
        .join(version)
        .join("control.rego")
}

const ENTRY: &str = "data.control.decision";

fn load_example(version: RegoVersion) -> ControlPolicy {
    let dir = match version {
        RegoVersion::V0 => "v0",
        RegoVersion::V1 => "v1",
    };
    ControlPolicy::load(
        &[example(dir)],
        json!({}),
        version,
        ENTRY,
        ActionMapping::default(),
    )
    .unwrap()
}

fn policy_of(version: RegoVersion, rego: &str) -> ControlPolicy {
    ControlPolicy::from_sources(
        vec![("team.rego".into(), rego.into())],
        json!({}),
        version,
        ENTRY,
        ActionMapping::default(),
    )
    .unwrap()
}

fn engine(policy: &ControlPolicy) -> ControlEngine {
    ControlEngine::new(policy, &guard_bundle().unwrap(), &KillSwitches::default()).unwrap()
}

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(1_796_083_200 + seconds, 0).unwrap()
}

fn metrics(rate: f64, latency: f64, errors: f64, cpu: f64) -> Metrics {
    Metrics {
        request_rate: Some(rate),
        latency_p99_ms: Some(latency),
        error_percent: Some(errors),
        cpu_percent: Some(cpu),
        ..Metrics::default()
    }
}

/// A quiet service: 4 replicas, all traffic on primary, last changed 10 minutes ago.
fn quiet(service: &str) -> ControlInput {
    let now = at(0);
    let mut forecast = metrics(800.0, 110.0, 0.1, 35.0);
    forecast
        .region
        .insert("primary".into(), metrics(600.0, 110.0, 0.1, 35.0));
    forecast
        .region
        .insert("secondary".into(), metrics(200.0, 90.0, 0.1, 20.0));
    ControlInput {
        service: service.into(),
        loop_info: ControlLoop {
            name: "fast-scaling".into(),
            tick: 7,
        },
        at: now,
        at_ns: now.timestamp_nanos_opt().unwrap(),
        now: metrics(800.0, 100.0, 0.1, 30.0),
        forecast,
        forecast_interval: Default::default(),
        anomaly: BTreeMap::new(),
        current: CurrentSettings {
            replicas: Some(4),
            weights: BTreeMap::from([("primary".into(), 100), ("secondary".into(), 0)]),
            throttle: None,
        },
        limits: ControlLimits {
            min_replicas: 2,
            max_replicas: 10,
            capacity_per_replica: Some(250.0),
            region: BTreeMap::new(),
        },
        cooldown: Cooldown::since(at(-600), ControlActionKind::Replicas, now),
        flags: Flags {
            other: BTreeMap::from([("secondary_has_capacity".into(), true)]),
            ..Flags::default()
        },
        horizon_seconds: 300,
        mode: Mode::DryRun,
    }
}

fn slow_and_busy(service: &str) -> ControlInput {
    let mut input = quiet(service);
    input.forecast.latency_p99_ms = Some(300.0);
    input.now.cpu_percent = Some(75.0);
    input
}

fn slow_primary(service: &str) -> ControlInput {
    let mut input = quiet(service);
    input
        .forecast
        .region
        .get_mut("primary")
        .unwrap()
        .latency_p99_ms = Some(400.0);
    input
}

fn erroring(service: &str) -> ControlInput {
    let mut input = quiet(service);
    input.forecast.error_percent = Some(9.0);
    input
}

fn codes(decision: &ControlDecision) -> Vec<&str> {
    decision.reasons.iter().map(|r| r.code.as_str()).collect()
}

mod loading {
    use super::*;

    #[test]
    fn a_v0_policy_loads_with_rego_version_v0() {
        let policy = load_example(RegoVersion::V0);
        assert_eq!(policy.entry_point(), ENTRY);
        assert_eq!(policy.bundle().rego_version(), RegoVersion::V0);
        policy.check().unwrap();
    }

    #[test]
    fn a_v0_policy_is_refused_as_v1_naming_file_line_and_the_setting() {
        let err = ControlPolicy::load(
            &[example("v0")],
            json!({}),
            RegoVersion::V1,
            ENTRY,
            ActionMapping::default(),
        )
        .unwrap_err();
        assert!(matches!(err, PolicyError::NeedsRegoV0 { .. }), "{err:?}");
        let message = err.to_string();
        let location = format!("{}:", example("v0").display());
        assert!(message.starts_with(&location), "{message}");
        let line: u32 = message[location.len()..]
            .split(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(line > 1, "{message}");
        assert!(message.contains("rego_version: v0"), "{message}");
    }

    #[test]
    fn a_broken_file_is_a_plain_syntax_error_in_either_version() {
        for version in [RegoVersion::V0, RegoVersion::V1] {
            let err = ControlPolicy::from_sources(
                vec![(
                    "team.rego".into(),
                    "package control\n\ndecision = {\n".into(),
                )],
                json!({}),
                version,
                ENTRY,
                ActionMapping::default(),
            )
            .unwrap_err();
            assert!(matches!(err, PolicyError::Syntax { .. }), "{err:?}");
            assert!(err.to_string().starts_with("team.rego:"), "{err}");
        }
    }

    #[test]
    fn a_directory_loads_every_rego_file_and_a_missing_entry_point_is_named() {
        let policy = ControlPolicy::load(
            &[fast_dir().join("examples/v1")],
            json!({}),
            RegoVersion::V1,
            ENTRY,
            ActionMapping::default(),
        )
        .unwrap();
        assert_eq!(policy.bundle().files().len(), 2);

        let err = ControlPolicy::load(
            &[example("v1")],
            json!({}),
            RegoVersion::V1,
            "data.control.verdict",
            ActionMapping::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("data.control.verdict"), "{err}");
        assert!(matches!(
            ControlPolicy::load(
                &[],
                json!({}),
                RegoVersion::V1,
                ENTRY,
                ActionMapping::default()
            ),
            Err(PolicyError::NoFiles)
        ));
    }

    #[test]
    fn a_bad_mapping_is_refused_at_load() {
        let err = ControlPolicy::load(
            &[example("v1")],
            json!({}),
            RegoVersion::V1,
            ENTRY,
            ActionMapping {
                most_percent: 150,
                ..ActionMapping::default()
            },
        )
        .unwrap_err();
        assert!(matches!(err, PolicyError::Mapping { .. }), "{err:?}");
    }

    #[test]
    fn a_call_to_an_undefined_function_is_found_by_check() {
        let policy = policy_of(
            RegoVersion::V0,
            "package control\n\ndefault decision = {\"type\": \"NONE\"}\n\ndecision = {\"type\": \"THROTTLE\", \"limit_fraction\": 0.8} {\n  too_many_errors(input)\n}\n",
        );
        let err = policy.check().unwrap_err();
        assert!(
            matches!(err, PolicyError::UndefinedFunction { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("team.rego:6:"), "{err}");
        assert!(err.to_string().contains("too_many_errors"), "{err}");
    }
}

mod rego_tests {
    use super::*;

    fn passes(bundle: &PolicyBundle, at_least: usize) {
        let report = run_tests(bundle, None).unwrap();
        for case in report.failures() {
            println!("FAIL {}: {}", case.name, case.message);
        }
        assert_eq!(report.failed(), 0, "failures above");
        let n = report
            .cases
            .iter()
            .filter(|c| c.kind == TestKind::Rego)
            .count();
        assert!(n >= at_least, "only {n} tests");
    }

    #[test]
    fn the_guard_tests_pass() {
        passes(&load_guard_bundle(&fast_dir()).unwrap(), 25);
    }

    #[test]
    fn the_example_tests_pass_in_both_versions() {
        for (version, dir) in [(RegoVersion::V0, "v0"), (RegoVersion::V1, "v1")] {
            let bundle =
                PolicyBundle::load_with(&fast_dir().join("examples").join(dir), ENTRY, version)
                    .unwrap();
            passes(&bundle, 5);
        }
    }

    #[test]
    fn the_predictive_example_tests_pass() {
        let bundle = PolicyBundle::load_with(
            &fast_dir().join("examples/predictive"),
            ENTRY,
            RegoVersion::V1,
        )
        .unwrap();
        passes(&bundle, 6);
    }
}

/// A policy whose decision is always `output`.
fn fixed(output: serde_json::Value) -> ControlPolicy {
    policy_of(
        RegoVersion::V1,
        &format!("package control\nimport rego.v1\ndecision := {output}\n"),
    )
}

mod example_policy {
    use super::*;

    #[test]
    fn each_action_of_the_example_for_crafted_inputs_in_both_versions() {
        for version in [RegoVersion::V0, RegoVersion::V1] {
            let policy = load_example(version);
            let mut engine = engine(&policy);
            let none = KillSwitches::default();

            let d = engine.decide(&quiet("a"), &none);
            assert_eq!(d.verdict, Verdict::Hold, "{d:?}");
            assert_eq!(codes(&d), ["no_change"]);
            assert_eq!(d.proposed, Some(ControlAction::None));
            assert_eq!(d.policy_output, Some(json!({"type": "NONE"})));

            let d = engine.decide(&slow_and_busy("b"), &none);
            assert_eq!(d.verdict, Verdict::Act, "{d:?}");
            assert_eq!(
                d.proposed,
                Some(ControlAction::Replicas(ReplicaTarget::Factor(1.5)))
            );
            assert_eq!(
                d.action,
                ControlAction::Replicas(ReplicaTarget::Absolute(6))
            );
            assert_eq!(codes(&d), ["approved"]);

            // "All to secondary", moved at most 50 points in one step.
            let d = engine.decide(&slow_primary("c"), &none);
            assert_eq!(d.verdict, Verdict::Act, "{d:?}");
            assert_eq!(
                d.proposed,
                Some(ControlAction::TrafficShift {
                    weights: BTreeMap::from([("primary".into(), 0), ("secondary".into(), 100)])
                })
            );
            assert_eq!(
                d.action,
                ControlAction::TrafficShift {
                    weights: BTreeMap::from([("primary".into(), 50), ("secondary".into(), 50)])
                }
            );
            assert_eq!(codes(&d), ["approved", "clamped_max_shift"]);

            let mut no_capacity = slow_primary("c");
            no_capacity
                .flags
                .other
                .insert("secondary_has_capacity".into(), false);
            assert_eq!(
                engine.decide(&no_capacity, &none).proposed,
                Some(ControlAction::None)
            );

            let d = engine.decide(&erroring("d"), &none);
            assert_eq!(d.verdict, Verdict::Act, "{d:?}");
            assert_eq!(
                d.action,
                ControlAction::Throttle(ThrottleLimit::Fraction(0.8))
            );

            assert_eq!(d.entry_point, ENTRY);
            assert_eq!(d.policy_hash, policy.hash());
            assert_eq!(d.service, "d");
        }
    }

    #[test]
    fn conflicting_rules_hold_that_service_and_the_next_one_is_decided() {
        for version in [RegoVersion::V0, RegoVersion::V1] {
            let mut engine = engine(&load_example(version));
            let none = KillSwitches::default();
            // Slow, busy and erroring: the REPLICAS and THROTTLE rules both match.
            let mut both = slow_and_busy("a");
            both.forecast.error_percent = Some(9.0);
            let d = engine.decide(&both, &none);
            assert_eq!(d.verdict, Verdict::Hold, "{d:?}");
            assert_eq!(d.action, ControlAction::None);
            assert_eq!(d.proposed, None);
            assert_eq!(codes(&d), ["policy_conflict"]);
            let message = &d.reasons[0].message;
            let file = example(if version == RegoVersion::V0 {
                "v0"
            } else {
                "v1"
            });
            // Both rules are named: the one that conflicted and the one it conflicted with.
            assert_eq!(
                message.matches(&file.display().to_string()).count(),
                2,
                "{message}"
            );

            let d = engine.decide(&slow_and_busy("b"), &none);
            assert_eq!(d.verdict, Verdict::Act, "{d:?}");
            let d = engine.decide(&erroring("c"), &none);
            assert_eq!(d.verdict, Verdict::Act, "{d:?}");
        }
    }
}

mod policy_errors {
    use super::*;

    #[test]
    fn outputs_that_do_not_fit_the_mapping_hold_with_the_output_kept() {
        for output in [
            json!({"type": "SCALE", "factor": 2}),
            json!("REPLICAS"),
            json!({"type": "REPLICAS"}),
            json!({"type": "REPLICAS", "factor": "lots"}),
            json!({"type": "WEIGHTS", "to": "secondary", "share": "some"}),
            json!({"type": "THROTTLE", "limit_fraction": 0}),
        ] {
            let mut engine = engine(&fixed(output.clone()));
            let d = engine.decide(&quiet("a"), &KillSwitches::default());
            assert_eq!(d.verdict, Verdict::Hold, "{output}: {d:?}");
            assert_eq!(codes(&d), ["policy_error"], "{output}");
            assert!(
                d.reasons[0]
                    .message
                    .contains("does not fit the action mapping"),
                "{}",
                d.reasons[0].message
            );
            assert_eq!(d.policy_output, Some(output));
            assert_eq!(d.proposed, None);
        }
    }

    #[test]
    fn an_undefined_decision_or_an_evaluation_error_holds() {
        let undefined = policy_of(
            RegoVersion::V0,
            "package control\n\ndecision = {\"type\": \"NONE\"} {\n  input.now.cpu_percent > 99\n}\n",
        );
        let d = engine(&undefined).decide(&quiet("a"), &KillSwitches::default());
        assert_eq!(codes(&d), ["policy_error"]);
        assert!(d.reasons[0].message.contains("undefined"), "{d:?}");

        let broken = policy_of(
            RegoVersion::V1,
            "package control\nimport rego.v1\ndecision := {\"type\": \"REPLICAS\", \"replicas\": to_number(input.service)}\n",
        );
        let mut engine = engine(&broken);
        let d = engine.decide(&quiet("heavy"), &KillSwitches::default());
        assert_eq!(d.verdict, Verdict::Hold);
        assert_eq!(codes(&d), ["policy_error"]);
        assert!(d.reasons[0].message.contains("team.rego:3"), "{d:?}");
        // The engine is reset: the next service is decided normally.
        let d = engine.decide(&quiet("8"), &KillSwitches::default());
        assert_eq!(d.verdict, Verdict::Act, "{d:?}");
        assert_eq!(
            d.action,
            ControlAction::Replicas(ReplicaTarget::Absolute(8))
        );
    }

    #[test]
    fn a_runaway_policy_hits_the_time_limit_and_the_next_service_is_decided() {
        // Cheap or runaway depending on the input, to show the limit is per evaluation.
        let policy = policy_of(
            RegoVersion::V1,
            r#"package control
import rego.v1
decision := {"type": "NONE", "n": n} if {
    n := count([x | some x in numbers.range(1, input.limits.max_replicas * 100000); x % 7 == 0])
}
"#,
        );
        let mut engine = engine(&policy);
        engine.set_time_limit(Duration::from_millis(20));
        let mut runaway = quiet("a");
        runaway.limits.max_replicas = 100;
        let d = engine.decide(&runaway, &KillSwitches::default());
        assert_eq!(d.verdict, Verdict::Hold, "{d:?}");
        assert_eq!(codes(&d), ["policy_error"]);
        assert!(d.reasons[0].message.contains("time limit"), "{d:?}");

        let mut cheap = quiet("b");
        cheap.limits.max_replicas = 0;
        cheap.limits.min_replicas = 0;
        let d = engine.decide(&cheap, &KillSwitches::default());
        assert_eq!(codes(&d), ["no_change"], "{d:?}");
    }
}

mod guard {
    use super::*;

    fn decide(output: serde_json::Value, input: &ControlInput) -> ControlDecision {
        engine(&fixed(output)).decide(input, &KillSwitches::default())
    }

    #[test]
    fn a_factor_is_clamped_to_the_max_step_and_replicas_to_the_bounds() {
        let d = decide(json!({"type": "REPLICAS", "factor": 5}), &quiet("a"));
        assert_eq!(d.verdict, Verdict::Act);
        assert_eq!(
            d.action,
            ControlAction::Replicas(ReplicaTarget::Absolute(8))
        );
        assert_eq!(codes(&d), ["approved", "clamped_max_step"]);

        let mut near_max = quiet("a");
        near_max.current.replicas = Some(9);
        let d = decide(json!({"type": "REPLICAS", "factor": 2}), &near_max);
        assert_eq!(
            d.action,
            ControlAction::Replicas(ReplicaTarget::Absolute(10))
        );
        assert_eq!(codes(&d), ["approved", "clamped_max_replicas"]);

        let d = decide(json!({"type": "REPLICAS", "replicas": 0}), &quiet("a"));
        assert_eq!(
            d.action,
            ControlAction::Replicas(ReplicaTarget::Absolute(2))
        );
    }

    #[test]
    fn the_guard_data_can_be_changed_by_the_loop() {
        let guard = guard_bundle()
            .unwrap()
            .with_data_overlay(json!({"setpoint": {"fast": {"config": {"max_step_ratio": 1.25}}}}))
            .unwrap();
        let mut engine = ControlEngine::new(
            &fixed(json!({"type": "REPLICAS", "factor": 2})),
            &guard,
            &KillSwitches::default(),
        )
        .unwrap();
        let d = engine.decide(&quiet("a"), &KillSwitches::default());
        assert_eq!(
            d.action,
            ControlAction::Replicas(ReplicaTarget::Absolute(5))
        );
    }

    #[test]
    fn a_change_inside_the_minimum_interval_holds_for_cooldown() {
        let mut recent = quiet("a");
        recent.cooldown = Cooldown::since(at(-20), ControlActionKind::Throttle, at(0));
        let d = decide(json!({"type": "REPLICAS", "factor": 1.5}), &recent);
        assert_eq!(d.verdict, Verdict::Hold, "{d:?}");
        assert_eq!(codes(&d), ["cooldown"]);
        assert_eq!(
            d.action,
            ControlAction::Replicas(ReplicaTarget::Absolute(6))
        );
    }

    #[test]
    fn a_missing_forecast_never_scales_down() {
        let mut partial = quiet("a");
        partial.forecast.cpu_percent = None;
        let d = decide(json!({"type": "REPLICAS", "factor": 0.5}), &partial);
        assert_eq!(d.verdict, Verdict::Hold, "{d:?}");
        assert_eq!(codes(&d), ["missing_data"]);

        // A non-finite forecast is as good as none.
        let mut nan = quiet("a");
        nan.forecast.request_rate = Some(f64::NAN);
        let d = decide(json!({"type": "REPLICAS", "factor": 0.5}), &nan);
        assert_eq!(codes(&d), ["missing_data"]);

        // With everything present it goes ahead.
        let d = decide(json!({"type": "REPLICAS", "factor": 0.5}), &quiet("a"));
        assert_eq!(d.verdict, Verdict::Act, "{d:?}");
        assert_eq!(
            d.action,
            ControlAction::Replicas(ReplicaTarget::Absolute(2))
        );
    }

    #[test]
    fn a_kill_switch_blocks_within_the_same_evaluation() {
        let mut engine = engine(&fixed(json!({"type": "REPLICAS", "factor": 1.5})));
        let none = KillSwitches::default();
        assert_eq!(engine.decide(&quiet("a"), &none).verdict, Verdict::Act);

        let mut service = KillSwitches::default();
        service.targets.insert("a".into(), true);
        let d = engine.decide(&quiet("a"), &service);
        assert_eq!(d.verdict, Verdict::Block, "{d:?}");
        assert_eq!(codes(&d), ["kill_switch"]);
        assert_eq!(engine.decide(&quiet("b"), &service).verdict, Verdict::Act);

        let mut looped = KillSwitches::default();
        looped.loops.insert("fast-scaling".into(), true);
        assert_eq!(engine.decide(&quiet("b"), &looped).verdict, Verdict::Block);

        let global = KillSwitches {
            global: true,
            ..KillSwitches::default()
        };
        assert_eq!(engine.decide(&quiet("b"), &global).verdict, Verdict::Block);

        // Turned off again: acts again.
        assert_eq!(engine.decide(&quiet("a"), &none).verdict, Verdict::Act);
    }

    #[test]
    fn a_kill_switch_in_the_guard_data_cannot_be_lifted_by_the_store() {
        let guard = guard_bundle()
            .unwrap()
            .with_data_overlay(json!({"setpoint": {"kill_switches": {"global": true}}}))
            .unwrap();
        let mut engine = ControlEngine::new(
            &fixed(json!({"type": "REPLICAS", "factor": 1.5})),
            &guard,
            &KillSwitches::default(),
        )
        .unwrap();
        let d = engine.decide(&quiet("a"), &KillSwitches::default());
        assert_eq!(d.verdict, Verdict::Block);
    }

    #[test]
    fn a_guard_that_acts_outside_the_bounds_is_caught() {
        // A guard edited to ignore the bounds: the engine's own check still holds the line.
        let lax = PolicyBundle::from_sources_with(
            vec![(
                "lax.rego".into(),
                "package setpoint.fast.guard\nimport rego.v1\ndecision := {\"verdict\": \"act\", \"action\": {\"type\": \"replicas\", \"absolute\": 50}, \"reasons\": [{\"code\": \"approved\", \"message\": \"yes\"}]}\n".into(),
            )],
            json!({}),
            setpoint_decide::GUARD_ENTRY_POINT,
            RegoVersion::V1,
        )
        .unwrap();
        let mut engine = ControlEngine::new(
            &fixed(json!({"type": "REPLICAS", "factor": 1.5})),
            &lax,
            &KillSwitches::default(),
        )
        .unwrap();
        let d = engine.decide(&quiet("a"), &KillSwitches::default());
        assert_eq!(d.verdict, Verdict::Hold, "{d:?}");
        assert_eq!(codes(&d), ["policy_error"]);
        assert!(d.reasons[0].message.contains("outside"), "{d:?}");
        assert!(d.guard_output.is_some());
    }
}

mod documentation {
    use super::*;

    /// The complete input of docs/fast-loop-policy.md is the example file, and it reads as a
    /// `ControlInput` that serialises back to itself.
    #[test]
    fn the_documented_input_is_the_example_file_and_round_trips() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let doc = std::fs::read_to_string(root.join("docs/fast-loop-policy.md")).unwrap();
        let block = doc.split("```json\n").nth(1).unwrap();
        let block = &block[..block.find("```").unwrap()];
        let documented: serde_json::Value = serde_json::from_str(block).unwrap();
        let file: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(fast_dir().join("examples/input.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(documented, file);
        let input: ControlInput = serde_json::from_value(file.clone()).unwrap();
        assert_eq!(serde_json::to_value(&input).unwrap(), file);

        // As the page says, it matches two rules of the example policy.
        for version in [RegoVersion::V0, RegoVersion::V1] {
            let d = engine(&load_example(version)).decide(&input, &KillSwitches::default());
            assert_eq!(codes(&d), ["policy_conflict"], "{d:?}");
        }
    }
}
