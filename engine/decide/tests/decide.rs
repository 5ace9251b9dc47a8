//! Integration tests of the decide stage: the real default bundle, broken bundles, runtime
//! errors and malformed outputs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use serde_json::json;
use setpoint_core::{KillSwitches, PolicyInput, Verdict};
use setpoint_decide::{
    PolicyBundle, PolicyEngine, PolicyError, TestKind, default_bundle, run_tests,
};

fn policies_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

/// A golden input, as the runtime would build it.
fn input(case: &str) -> PolicyInput {
    let path = policies_dir().join("tests").join(case).join("input.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// A bundle made of one policy file (package setpoint) and no data.
fn bundle_of(rego: &str) -> PolicyBundle {
    PolicyBundle::from_sources(vec![("test.rego".into(), rego.into())], json!({})).unwrap()
}

fn engine_of(rego: &str) -> PolicyEngine {
    PolicyEngine::new(&bundle_of(rego), &KillSwitches::default()).unwrap()
}

mod real_bundle {
    use super::*;

    #[test]
    fn every_rego_test_and_golden_case_passes() {
        let bundle = PolicyBundle::load(&policies_dir()).unwrap();
        let report = run_tests(&bundle, Some(&policies_dir().join("tests"))).unwrap();
        for case in &report.cases {
            println!(
                "{} {}{}",
                if case.passed { "ok  " } else { "FAIL" },
                case.name,
                if case.passed {
                    String::new()
                } else {
                    format!(": {}", case.message)
                }
            );
        }
        assert_eq!(report.failed(), 0, "failures above");
        let rego = report
            .cases
            .iter()
            .filter(|c| c.kind == TestKind::Rego)
            .count();
        let golden = report
            .cases
            .iter()
            .filter(|c| c.kind == TestKind::Golden)
            .count();
        assert!(rego >= 30, "only {rego} Rego tests found");
        assert!(golden >= 12, "only {golden} golden cases found");
    }

    #[test]
    fn the_embedded_bundle_is_the_directory() {
        let embedded = default_bundle().unwrap();
        let loaded = PolicyBundle::load(&policies_dir()).unwrap();
        assert_eq!(embedded.data(), loaded.data());
        let texts = |b: &PolicyBundle| b.files().iter().map(|(_, t)| t.clone()).collect::<Vec<_>>();
        assert_eq!(texts(&embedded), texts(&loaded));
        // Without golden cases the Rego tests still run.
        let report = run_tests(&embedded, None).unwrap();
        assert_eq!(report.failed(), 0);
    }

    #[test]
    fn a_failing_test_is_reported_with_its_value() {
        let bundle = bundle_of(
            "package setpoint\nimport rego.v1\ndecision := {}\ntest_fails if { 1 == 2 }\ntest_passes if { true }\ntest_number := 3\n",
        );
        let report = run_tests(&bundle, None).unwrap();
        let by_name = |n: &str| report.cases.iter().find(|c| c.name == n).unwrap();
        assert!(by_name("data.setpoint.test_passes").passed);
        assert!(!by_name("data.setpoint.test_fails").passed);
        assert!(
            by_name("data.setpoint.test_fails")
                .message
                .contains("undefined")
        );
        assert!(
            by_name("data.setpoint.test_number")
                .message
                .contains("evaluated to 3")
        );
    }

    #[test]
    fn a_wrong_golden_expectation_shows_actual_and_expected() {
        let dir = tempfile::tempdir().unwrap();
        let case = dir.path().join("wrong");
        std::fs::create_dir(&case).unwrap();
        std::fs::copy(
            policies_dir().join("tests/past-approval-stable-act/input.json"),
            case.join("input.json"),
        )
        .unwrap();
        std::fs::write(
            case.join("expected.json"),
            r#"{"verdict": "hold", "reasons": [{"code": "cooldown"}]}"#,
        )
        .unwrap();
        let report = run_tests(&default_bundle().unwrap(), Some(dir.path())).unwrap();
        let golden = report
            .cases
            .iter()
            .find(|c| c.name == "golden/wrong")
            .unwrap();
        assert!(!golden.passed);
        assert!(golden.message.contains("expected:"), "{}", golden.message);
        assert!(golden.message.contains("\"act\""), "{}", golden.message);
    }
}

mod loading {
    use super::*;

    #[test]
    fn a_syntax_error_names_file_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("decision.rego"),
            "package setpoint\n\ndecision := {\"verdict\": \"hold\"}\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("guardrails.rego"),
            "package setpoint.guardrails\n\nok if {\n    input.x ==\n}\n",
        )
        .unwrap();
        let err = PolicyBundle::load(dir.path()).unwrap_err();
        assert!(matches!(err, PolicyError::Syntax { .. }), "{err:?}");
        let expected = format!(
            "{}:5:1: expecting expression",
            dir.path().join("guardrails.rego").display()
        );
        assert!(err.to_string().starts_with(&expected), "{err}");
    }

    #[test]
    fn a_missing_directory_is_named() {
        let err = PolicyBundle::load(Path::new("/nonexistent/policies")).unwrap_err();
        assert!(matches!(err, PolicyError::Dir { .. }), "{err:?}");
        assert!(err.to_string().contains("/nonexistent/policies"), "{err}");
    }

    #[test]
    fn bad_data_json_is_named_with_its_position() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("d.rego"),
            "package setpoint\ndecision := 1\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("data.json"), "{\"setpoint\": \n  [1,}").unwrap();
        let err = PolicyBundle::load(dir.path()).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("data.json"), "{message}");
        assert!(message.contains("line 2"), "{message}");
    }

    #[test]
    fn data_must_be_an_object() {
        let err = PolicyBundle::from_sources(
            vec![("d.rego".into(), "package setpoint\ndecision := 1\n".into())],
            json!([1]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("an array"), "{err}");
    }

    #[test]
    fn a_bundle_without_the_entry_point_is_refused() {
        let err = PolicyBundle::from_sources(
            vec![("d.rego".into(), "package other\nx := 1\n".into())],
            json!({}),
        )
        .unwrap_err();
        assert!(matches!(err, PolicyError::Compile { .. }), "{err:?}");
        assert!(err.to_string().contains("data.setpoint.decision"), "{err}");
    }

    #[test]
    fn an_unsafe_variable_is_refused_at_load() {
        let err = PolicyBundle::from_sources(
            vec![(
                "policies/d.rego".into(),
                "package setpoint\nimport rego.v1\ndecision := x if { y > 1 }\n".into(),
            )],
            json!({}),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("policies/d.rego:3:20: use of undefined variable `y` is unsafe"),
            "{err}"
        );
    }

    #[test]
    fn a_call_to_an_undefined_function_fails_the_check_and_holds_when_reached() {
        let rego = "package setpoint\nimport rego.v1\nimport data.lib\n\ndecision := {\"verdict\": \"hold\", \"proposal\": null, \"reasons\": [{\"code\": \"x\", \"message\": m}]} if {\n    m := no_such_fn(1)\n}\n\ntest_it if {\n    lib.helpr(2)\n}\n";
        let lib = "package lib\nimport rego.v1\n\nhelper(x) := x\n";
        let bundle = PolicyBundle::from_sources(
            vec![
                ("policies/d.rego".into(), rego.into()),
                ("policies/lib.rego".into(), lib.into()),
            ],
            json!({}),
        )
        .expect("loading still accepts it: the interpreter resolves calls when it evaluates");

        let err = bundle.check().unwrap_err();
        assert!(
            matches!(err, PolicyError::UndefinedFunction { .. }),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "policies/d.rego:6:10: call to undefined function no_such_fn; \
             policies/d.rego:10:5: call to undefined function lib.helpr"
        );
        let err = run_tests(&bundle, None).unwrap_err();
        assert!(err.to_string().contains("no_such_fn"), "{err}");

        // Deployed anyway, the target that reaches the call holds.
        let mut engine = PolicyEngine::new(&bundle, &KillSwitches::default()).unwrap();
        let evaluation = engine.decide(&input("past-approval-stable-act"));
        assert_eq!(evaluation.decision.verdict, Verdict::Hold);
        assert_eq!(evaluation.decision.reasons[0].code, "policy_error");
        let error = evaluation.error.unwrap();
        assert!(error.contains("no_such_fn"), "{error}");
    }

    #[test]
    fn the_default_bundle_passes_the_check() {
        default_bundle().unwrap().check().unwrap();
        PolicyBundle::load(&policies_dir())
            .unwrap()
            .check()
            .unwrap();
    }

    #[test]
    fn an_empty_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = PolicyBundle::load(dir.path()).unwrap_err();
        assert!(matches!(err, PolicyError::Empty { .. }), "{err:?}");
    }
}

mod failing_closed {
    use super::*;

    fn assert_policy_error(rego: &str, needle: &str) {
        let mut engine = engine_of(rego);
        let evaluation = engine.decide(&input("past-approval-stable-act"));
        assert_eq!(evaluation.decision.verdict, Verdict::Hold, "{evaluation:?}");
        assert_eq!(evaluation.decision.proposal, None);
        assert_eq!(evaluation.decision.reasons.len(), 1);
        assert_eq!(evaluation.decision.reasons[0].code, "policy_error");
        let error = evaluation.error.unwrap();
        assert!(error.contains(needle), "{error:?} lacks {needle:?}");
        assert_eq!(evaluation.decision.reasons[0].message, error);
    }

    #[test]
    fn a_runtime_error_holds_that_input_only() {
        let mut engine = engine_of(
            r#"package setpoint
import rego.v1
decision := {"verdict": "hold", "proposal": null, "reasons": [{"code": "weight", "message": sprintf("%v", [w])}]} if {
    w := to_number(input.target.labels.weight)
}
"#,
        );
        let mut bad = input("past-approval-stable-act");
        bad.target.labels.insert("weight".into(), "heavy".into());
        let mut good = bad.clone();
        good.target.labels.insert("weight".into(), "2".into());

        let failed = engine.decide(&bad);
        assert_eq!(failed.decision.verdict, Verdict::Hold);
        assert_eq!(failed.decision.reasons[0].code, "policy_error");
        assert!(failed.error.is_some());

        let decided = engine.decide(&good);
        assert_eq!(decided.error, None, "{decided:?}");
        assert_eq!(decided.decision.reasons[0].code, "weight");
        assert_eq!(decided.decision.reasons[0].message, "2");

        // And again, alternating, to show no state leaks either way.
        assert!(engine.decide(&bad).error.is_some());
        assert!(engine.decide(&good).error.is_none());
    }

    #[test]
    fn an_undefined_decision() {
        assert_policy_error(
            "package setpoint\nimport rego.v1\ndecision := 1 if { input.nothing }\n",
            "undefined",
        );
    }

    #[test]
    fn a_missing_verdict() {
        assert_policy_error(
            r#"package setpoint
decision := {"proposal": null, "reasons": [{"code": "x", "message": "y"}]}
"#,
            "missing field `verdict`",
        );
    }

    #[test]
    fn an_unknown_verdict() {
        assert_policy_error(
            r#"package setpoint
decision := {"verdict": "approve", "proposal": "scale_down", "reasons": [{"code": "x", "message": "y"}]}
"#,
            "unknown variant `approve`",
        );
    }

    #[test]
    fn an_unknown_field() {
        assert_policy_error(
            r#"package setpoint
decision := {"verdict": "hold", "proposal": null, "reasons": [{"code": "x", "message": "y"}], "extra": 1}
"#,
            "unknown field `extra`",
        );
    }

    #[test]
    fn a_proposal_not_in_the_input() {
        // The golden input offers only scale_down.
        assert_policy_error(
            r#"package setpoint
decision := {"verdict": "act", "proposal": "scale_up", "reasons": [{"code": "x", "message": "y"}]}
"#,
            "not among this target's proposals (scale_down)",
        );
    }

    #[test]
    fn an_act_without_a_proposal() {
        assert_policy_error(
            r#"package setpoint
decision := {"verdict": "act", "proposal": null, "reasons": [{"code": "x", "message": "y"}]}
"#,
            "without choosing a proposal",
        );
    }

    #[test]
    fn a_review_without_reasons() {
        assert_policy_error(
            r#"package setpoint
decision := {"verdict": "review", "proposal": "scale_down", "reasons": []}
"#,
            "without any reason",
        );
    }

    #[test]
    fn a_decision_that_is_not_an_object() {
        assert_policy_error(
            "package setpoint\ndecision := \"act\"\n",
            "must be an object",
        );
    }

    #[test]
    fn a_conflicting_rule() {
        assert_policy_error(
            r#"package setpoint
import rego.v1
decision := {"verdict": "hold", "proposal": null, "reasons": [{"code": "a", "message": "a"}]} if true
decision := {"verdict": "hold", "proposal": null, "reasons": [{"code": "b", "message": "b"}]} if true
"#,
            "evaluating data.setpoint.decision failed",
        );
    }

    #[test]
    fn a_runaway_policy_hits_the_time_limit() {
        // Cheap or runaway depending on the input, to show the limit is per evaluation.
        let mut engine = engine_of(
            r#"package setpoint
import rego.v1
decision := {"verdict": "hold", "proposal": null, "reasons": [{"code": "n", "message": sprintf("%v", [n])}]} if {
    n := count([x | some x in numbers.range(1, input.history.stable_cycles * 500000); x % 7 == 0])
}
"#,
        );
        engine.set_time_limit(std::time::Duration::from_millis(20));
        let runaway = input("past-approval-stable-act");
        let mut cheap = runaway.clone();
        cheap.history.stable_cycles = 0;

        let started = std::time::Instant::now();
        let evaluation = engine.decide(&runaway);
        assert_eq!(
            evaluation.decision.reasons[0].code, "policy_error",
            "{evaluation:?}"
        );
        let error = evaluation.error.unwrap();
        assert!(error.contains("exceeded time limit"), "{error}");
        assert!(started.elapsed() < std::time::Duration::from_secs(10));

        let evaluation = engine.decide(&cheap);
        assert_eq!(evaluation.error, None, "{evaluation:?}");
        assert_eq!(evaluation.decision.reasons[0].code, "n");
    }

    #[test]
    fn a_well_formed_decision_passes_through_with_its_output() {
        let mut engine = engine_of(
            r#"package setpoint
decision := {"verdict": "review", "proposal": "scale_down", "reasons": [{"code": "x", "message": "y"}]}
"#,
        );
        let evaluation = engine.decide(&input("past-approval-stable-act"));
        assert_eq!(evaluation.error, None);
        assert_eq!(evaluation.decision.verdict, Verdict::Review);
        assert_eq!(
            evaluation.output,
            Some(
                json!({"verdict": "review", "proposal": "scale_down", "reasons": [{"code": "x", "message": "y"}]})
            )
        );
    }
}

mod kill_switches {
    use super::*;

    fn decide(switches: &KillSwitches, case: &str) -> setpoint_core::Decision {
        let mut engine = PolicyEngine::new(&default_bundle().unwrap(), switches).unwrap();
        engine.decide(&input(case)).decision
    }

    const CASES: &[&str] = &[
        "past-approval-stable-act",
        "reporting-scale-down-approval",
        "insufficient-data-hold",
        "saturated-scale-up-review",
    ];

    #[test]
    fn global_on_blocks_every_target() {
        let switches = KillSwitches {
            global: true,
            ..Default::default()
        };
        for case in CASES {
            let decision = decide(&switches, case);
            assert_eq!(decision.verdict, Verdict::Block, "{case}: {decision:?}");
            assert_eq!(decision.reasons[0].code, "kill_switch", "{case}");
        }
    }

    #[test]
    fn off_decides_normally() {
        let switches = KillSwitches::default();
        assert_eq!(
            decide(&switches, "past-approval-stable-act").verdict,
            Verdict::Act
        );
        assert_eq!(
            decide(&switches, "reporting-scale-down-approval").verdict,
            Verdict::Review
        );
        assert_eq!(
            decide(&switches, "insufficient-data-hold").verdict,
            Verdict::Hold
        );
    }

    #[test]
    fn per_loop_and_per_target_switches_apply_to_their_own() {
        let target = input("past-approval-stable-act");
        let mut switches = KillSwitches::default();
        switches.targets.insert(target.target.id.clone(), true);
        assert_eq!(
            decide(&switches, "past-approval-stable-act").verdict,
            Verdict::Block
        );

        let mut switches = KillSwitches::default();
        switches.targets.insert("someone-else".into(), true);
        assert_eq!(
            decide(&switches, "past-approval-stable-act").verdict,
            Verdict::Act
        );

        let mut switches = KillSwitches::default();
        switches.loops.insert(target.loop_info.name.clone(), true);
        assert_eq!(
            decide(&switches, "past-approval-stable-act").verdict,
            Verdict::Block
        );
    }
}
