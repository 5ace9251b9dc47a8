//! Property tests of the decide stage's safety contracts, through [`PolicyEngine::decide`] as
//! the runtime calls it:
//!
//! - verdicts fail closed: whatever value a policy returns, and whatever error or undefined
//!   result its evaluation ends in, the decision is `act` or `review` only when the output is a
//!   well-formed decision choosing one of the target's proposals; anything else holds with
//!   reason `policy_error`, and an error never leaks into the next target's decision;
//! - missing data never shrinks: the default bundle never lets a scale-down act, nor even go
//!   to review, while a feature of the fingerprint has no value.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::{Map, Value as Json, json};
use setpoint_core::{Decision, KillSwitches, PolicyInput, Verdict};
use setpoint_decide::{PolicyBundle, PolicyEngine, PolicyEvaluation, default_bundle};

/// A golden input of the default bundle (a scale-down of a reporting database, one proposal),
/// as JSON to vary.
fn base_input() -> Json {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/tests/cooldown-hold/input.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn parse(input: Json) -> PolicyInput {
    serde_json::from_value(input).unwrap()
}

/// A bundle whose decision is `data.out`, verbatim: a policy that returns `output`.
fn returning(output: &Json) -> PolicyEngine {
    let rego = "package setpoint\nimport rego.v1\ndecision := data.out\n";
    let bundle = PolicyBundle::from_sources(
        vec![("returning.rego".into(), rego.into())],
        json!({ "out": output }),
    )
    .unwrap();
    PolicyEngine::new(&bundle, &KillSwitches::default()).unwrap()
}

/// Words a decision is made of, so that generated values come close to well-formed ones.
fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "act", "review", "hold", "block", "scale_down", "scale_up", "verdict", "proposal",
            "reasons", "code", "message", "policy_error", "", "ACT", "Act",
        ])
        .prop_map(str::to_string),
        1 => "[a-z_ ]{0,12}",
    ]
}

/// Any JSON value: scalars of every type, nested arrays and objects.
fn any_json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<i64>().prop_map(Json::from),
        any::<u64>().prop_map(Json::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Json::from),
        word().prop_map(Json::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
            prop::collection::btree_map(word(), inner, 0..6)
                .prop_map(|m| Json::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A field of a decision-shaped value: left out, well-formed, or anything.
fn field(good: impl Strategy<Value = Json>) -> impl Strategy<Value = Option<Json>> {
    prop_oneof![
        1 => Just(None),
        3 => good.prop_map(Some),
        1 => any_json().prop_map(Some),
    ]
}

/// A value shaped like a decision, each part well-formed or not, sometimes with an extra key.
fn decision_like() -> impl Strategy<Value = Json> {
    let verdict = prop::sample::select(vec!["act", "review", "hold", "block"]).prop_map(Json::from);
    let proposal = prop_oneof![
        Just(Json::Null),
        prop::sample::select(vec!["scale_down", "scale_up"]).prop_map(Json::from),
    ];
    let reason = (
        field(word().prop_map(Json::from)),
        field(word().prop_map(Json::from)),
    )
        .prop_map(|(code, message)| {
            let mut r = Map::new();
            if let Some(code) = code {
                r.insert("code".into(), code);
            }
            if let Some(message) = message {
                r.insert("message".into(), message);
            }
            Json::Object(r)
        });
    let reasons = prop::collection::vec(reason, 0..3).prop_map(Json::Array);
    (
        field(verdict),
        field(proposal),
        field(reasons),
        prop::option::weighted(0.2, (word(), any_json())),
    )
        .prop_map(|(verdict, proposal, reasons, extra)| {
            let mut d = Map::new();
            for (key, value) in [
                ("verdict", verdict),
                ("proposal", proposal),
                ("reasons", reasons),
            ] {
                if let Some(value) = value {
                    d.insert(key.into(), value);
                }
            }
            if let Some((key, value)) = extra {
                d.insert(key, value);
            }
            Json::Object(d)
        })
}

/// The fail-closed decision: hold, no proposal, one `policy_error` reason naming the cause.
fn is_policy_error(evaluation: &PolicyEvaluation) -> bool {
    let d = &evaluation.decision;
    evaluation.error.is_some()
        && d.verdict == Verdict::Hold
        && d.proposal.is_none()
        && d.reasons.len() == 1
        && d.reasons[0].code == "policy_error"
}

/// Checks what a policy returning `output` may decide for `input`: an `act` or `review` only
/// from a well-formed decision that chose one of the input's proposals and gave a reason,
/// and otherwise either the policy's own well-formed hold or block, or a policy error.
fn check_decision(
    output: &Json,
    input: &PolicyInput,
    evaluation: &PolicyEvaluation,
) -> Result<(), TestCaseError> {
    let decision = &evaluation.decision;
    if evaluation.error.is_some() {
        prop_assert!(is_policy_error(evaluation), "{evaluation:?}");
        return Ok(());
    }
    // Accepted: it is the output (as recorded, numbers normalised by the interpreter), and
    // the output is a well-formed decision.
    let decode = |value: &Json| serde_json::from_value::<Decision>(value.clone());
    let recorded = evaluation.output.as_ref().map(decode);
    prop_assert!(
        matches!(&recorded, Some(Ok(d)) if d == decision),
        "recorded {recorded:?} for {decision:?}"
    );
    let parsed = decode(output)
        .map_err(|e| TestCaseError::fail(format!("accepted an undecodable output: {e}")))?;
    prop_assert_eq!(&parsed, decision);
    prop_assert!(!decision.reasons.is_empty(), "accepted without a reason");
    if matches!(decision.verdict, Verdict::Act | Verdict::Review) {
        let chosen = output.get("proposal").and_then(Json::as_str);
        prop_assert!(
            chosen.is_some_and(|c| input.proposals.iter().any(|p| p.action.as_str() == c)),
            "{} without one of the input's proposals: {output}",
            decision.verdict
        );
    }
    Ok(())
}

/// Inputs that differ in what a decision may choose: the golden one (a scale-down proposal),
/// one with a scale-up only, and one with none.
fn input_variant() -> impl Strategy<Value = PolicyInput> {
    (0usize..3).prop_map(|variant| {
        let mut input = base_input();
        match variant {
            0 => {}
            1 => input["proposals"][0]["action"] = json!("scale_up"),
            _ => input["proposals"] = json!([]),
        }
        parse(input)
    })
}

/// Cases per property: each builds a policy engine (a few milliseconds in a debug build).
fn config() -> ProptestConfig {
    ProptestConfig::with_cases(96)
}

/// Evaluation modes of [`conditional_policy`], chosen by the input's `mode` label.
const MODES: [&str; 8] = [
    "act",
    "undefined",
    "conflict",
    "divide_by_zero",
    "bad_builtin",
    "type_error",
    "runaway",
    "malformed",
];

/// A policy that, depending on the input, decides well (`act`), or fails in one of the ways a
/// real policy can: no value, conflicting values, a runtime error, a run past the time limit,
/// a value that is not a decision.
fn conditional_policy() -> PolicyEngine {
    let rego = r#"package setpoint
import rego.v1

mode := input.target.labels.mode

good := {"verdict": "act", "proposal": "scale_down", "reasons": [{"code": "ok", "message": "fine"}]}

decision := good if mode == "act"

decision := good if mode == "conflict"

decision := {"verdict": "block", "reasons": []} if mode == "conflict"

decision := x if {
	mode == "divide_by_zero"
	x := 1 / count(input.proposals[_].nothing)
}

decision := x if {
	mode == "bad_builtin"
	x := to_number("not a number")
}

decision := x if {
	mode == "type_error"
	x := input.target.id + 1
}

decision := good if {
	mode == "runaway"
	count([x | some i in numbers.range(1, 3000); some j in numbers.range(1, 3000); x := i * j]) > 0
}

decision := {"verdict": "act", "proposal": "scale_down"} if mode == "malformed"
"#;
    let bundle =
        PolicyBundle::from_sources(vec![("modes.rego".into(), rego.into())], json!({})).unwrap();
    let mut engine = PolicyEngine::new(&bundle, &KillSwitches::default()).unwrap();
    // Short enough that the runaway mode costs little, long enough for the others in a
    // debug build on a loaded machine.
    engine.set_time_limit(Duration::from_millis(100));
    engine
}

proptest! {
    #![proptest_config(config())]

    /// Any JSON value as the policy's output: never `act` or `review` unless it is a
    /// well-formed decision choosing one of the input's proposals.
    #[test]
    fn a_malformed_policy_output_never_acts(output in any_json(), input in input_variant()) {
        let evaluation = returning(&output).decide(&input);
        check_decision(&output, &input, &evaluation)?;
        // A value that is not even an object is always an error.
        if !output.is_object() {
            prop_assert!(is_policy_error(&evaluation), "{evaluation:?}");
        }
    }

    /// Values shaped like a decision, each part right or wrong: only a well-formed one is
    /// taken, and a wrong one holds with `policy_error`, keeping the output for the journal.
    #[test]
    fn a_nearly_well_formed_decision_acts_only_when_well_formed(
        output in decision_like(),
        input in input_variant(),
    ) {
        let evaluation = returning(&output).decide(&input);
        check_decision(&output, &input, &evaluation)?;
        if evaluation.error.is_some() {
            prop_assert!(evaluation.output.is_some(), "the malformed output is not kept");
        }
    }

    /// On one engine, any sequence of evaluation errors, undefined results, time-outs and
    /// malformed outputs: each holds with `policy_error`, and the well-formed decisions in
    /// between are exactly what the policy says, so no failure leaks into another target.
    #[test]
    fn evaluation_errors_hold_and_never_leak_into_the_next_decision(
        modes in prop::collection::vec(prop::sample::select(MODES.to_vec()), 1..6),
    ) {
        let mut engine = conditional_policy();
        for mode in modes {
            let mut input = base_input();
            input["target"]["labels"]["mode"] = json!(mode);
            let evaluation = engine.decide(&parse(input));
            if mode == "act" {
                prop_assert_eq!(evaluation.error.as_deref(), None);
                prop_assert_eq!(evaluation.decision.verdict, Verdict::Act);
            } else {
                prop_assert!(is_policy_error(&evaluation), "{mode}: {evaluation:?}");
            }
        }
    }
}

/// A feature of the fingerprint, with or without a value.
fn feature(missing: bool) -> impl Strategy<Value = Json> {
    (0.0..1.0f64, 0.0..=1.0f64).prop_map(move |(value, coverage)| {
        if missing {
            json!({ "value": null, "coverage": coverage * 0.8 })
        } else {
            json!({ "value": value, "coverage": coverage.max(0.8) })
        }
    })
}

/// The golden input varied in everything that moves the default bundle towards acting — a
/// confident, stable, long-managed target, a cooldown long over, a low-risk plan, a human's
/// approval, enforce mode — with at least one feature of its fingerprint missing.
fn scale_down_with_missing_data() -> impl Strategy<Value = PolicyInput> {
    let names: Vec<String> = base_input()["features"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let n = names.len();
    (
        prop::collection::vec(any::<bool>(), n).prop_flat_map(|mut missing| {
            // At least one feature is missing.
            let i = missing.len() - 1;
            if !missing.iter().any(|m| *m) {
                missing[i] = true;
            }
            missing.into_iter().map(feature).collect::<Vec<_>>()
        }),
        0.0..=1.0f64,
        0u32..20,
        0i64..400,
        prop::option::of(0i64..400),
        prop::sample::select(vec!["low", "medium", "high"]),
        prop::sample::select(vec!["dry-run", "enforce"]),
        any::<bool>(),
    )
        .prop_map(
            move |(features, confidence, stable, managed, since, risk, mode, approved)| {
                let mut input = base_input();
                input["features"] = Json::Object(names.iter().cloned().zip(features).collect());
                input["classification"]["confidence"] = json!(confidence);
                input["history"]["stable_cycles"] = json!(stable);
                input["history"]["managed_days"] = json!(managed);
                match since {
                    Some(days) => input["history"]["days_since_last_action"] = json!(days),
                    None => {
                        input["history"]["last_action"] = Json::Null;
                        input["history"]["days_since_last_action"] = Json::Null;
                    }
                }
                input["proposals"][0]["risk"] = json!(risk);
                input["mode"] = json!(mode);
                if approved {
                    input["review"] = json!({
                        "id": 7,
                        "status": "approved",
                        "action": "scale_down",
                        "by": "dba",
                        "at": "2025-06-01T00:00:00Z",
                    });
                }
                parse(input)
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// With any feature of the fingerprint missing, the default policy never lets a
    /// scale-down act or go to review, whatever else argues for it.
    #[test]
    fn missing_data_never_lets_the_default_policy_shrink(input in scale_down_with_missing_data()) {
        thread_local! {
            static ENGINE: std::cell::RefCell<PolicyEngine> = std::cell::RefCell::new(
                PolicyEngine::new(&default_bundle().unwrap(), &KillSwitches::default()).unwrap()
            );
        }
        let evaluation = ENGINE.with(|e| e.borrow_mut().decide(&input));
        prop_assert_eq!(evaluation.error.as_deref(), None);
        prop_assert!(
            matches!(evaluation.decision.verdict, Verdict::Hold | Verdict::Block),
            "{:?}",
            evaluation.decision
        );
    }
}

/// The missing-data property is not vacuous: the same inputs with every feature present do
/// act (or go to review).
#[test]
fn with_every_feature_present_the_same_scale_down_acts() {
    let mut input = base_input();
    input["history"]["last_action"] = Json::Null;
    input["history"]["days_since_last_action"] = Json::Null;
    input["history"]["managed_days"] = json!(200);
    input["proposals"][0]["risk"] = json!("low");
    let mut engine =
        PolicyEngine::new(&default_bundle().unwrap(), &KillSwitches::default()).unwrap();
    let evaluation = engine.decide(&parse(input));
    assert_eq!(evaluation.decision.verdict, Verdict::Act, "{evaluation:?}");
}
