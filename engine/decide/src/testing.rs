//! The policy test runner: Rego unit tests (`test_*` rules) and golden cases.
//!
//! regorus has no `opa test`, so this is one: every rule whose name starts with `test_` is
//! evaluated on the interpreter (the only engine that supports `with input as …`), `true`
//! passes and anything else fails. Golden cases run the real [`PolicyEngine`] on a recorded
//! input, so they also exercise the fail-closed checks the runtime applies.

use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use setpoint_core::PolicyInput;

use crate::bundle::{PolicyBundle, merge_json};
use crate::engine::PolicyEngine;
use crate::{PolicyError, Result, regorus_error};

/// How long one Rego test may run: generous, since tests run in debug builds too.
const TEST_TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// What kind of test a [`TestCase`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestKind {
    /// A `test_*` rule in the bundle.
    Rego,
    /// A directory of the golden set: `input.json`, `expected.json`, optional `data.json`.
    Golden,
}

/// The outcome of one test.
#[derive(Debug, Clone, PartialEq)]
pub struct TestCase {
    /// The rule path (`data.setpoint_test.guardrails.test_min_size_blocks`) or
    /// `golden/<case directory>`.
    pub name: String,
    /// Rego rule or golden case.
    pub kind: TestKind,
    /// Whether it passed.
    pub passed: bool,
    /// Empty when it passed; otherwise what happened, with actual and expected values.
    pub message: String,
}

/// The outcome of a test run, Rego tests first (sorted by name), then golden cases.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TestReport {
    /// Every test, in run order.
    pub cases: Vec<TestCase>,
}

impl TestReport {
    /// How many tests passed.
    pub fn passed(&self) -> usize {
        self.cases.iter().filter(|c| c.passed).count()
    }

    /// How many tests failed.
    pub fn failed(&self) -> usize {
        self.cases.len() - self.passed()
    }

    /// The failed tests.
    pub fn failures(&self) -> impl Iterator<Item = &TestCase> {
        self.cases.iter().filter(|c| !c.passed)
    }
}

/// Runs every `test_*` rule of `bundle`, then every golden case under `golden_dir` (each
/// subdirectory holding an `input.json`).
///
/// A failing test is a failed [`TestCase`], not an error; errors are reserved for a bundle that
/// cannot be prepared, one that calls an undefined function ([`PolicyBundle::check`], as
/// `opa test` refuses such a bundle before running any test), or a golden directory that cannot
/// be listed.
pub fn run_tests(bundle: &PolicyBundle, golden_dir: Option<&Path>) -> Result<TestReport> {
    bundle.check()?;
    let mut report = TestReport::default();
    run_rego_tests(bundle, &mut report)?;
    if let Some(dir) = golden_dir {
        run_golden(bundle, dir, &mut report)?;
    }
    Ok(report)
}

fn run_rego_tests(bundle: &PolicyBundle, report: &mut TestReport) -> Result<()> {
    let mut prepared = bundle.engine(bundle.data().clone(), TEST_TIME_LIMIT)?;
    let compiled = prepared
        .compile_with_entrypoint(&regorus::Rc::from(bundle.entry_point()))
        .map_err(|e| PolicyError::Compile {
            message: regorus_error(&e, true),
        })?;
    let paths: Vec<&String> = compiled.get_rules().keys().collect();
    // The rule map also holds every prefix of a rule path (the packages); a test is a leaf
    // whose last segment starts with `test_`.
    let mut tests: Vec<String> = paths
        .iter()
        .filter(|path| {
            path.rsplit('.')
                .next()
                .is_some_and(|last| last.starts_with("test_"))
        })
        .filter(|path| {
            let prefix = format!("{path}.");
            !paths.iter().any(|other| other.starts_with(&prefix))
        })
        .map(|path| path.to_string())
        .collect();
    tests.sort();
    for name in tests {
        // A clone per test: one test's evaluation state (or error) cannot affect another's.
        let mut engine = prepared.clone();
        let outcome = engine.eval_rule(name.clone());
        let (passed, message) = match outcome {
            Ok(regorus::Value::Bool(true)) => (true, String::new()),
            Ok(regorus::Value::Undefined) => (
                false,
                "undefined: a condition in the test did not hold".to_string(),
            ),
            Ok(other) => (
                false,
                format!(
                    "evaluated to {}, expected true",
                    other.to_json_str().unwrap_or_else(|_| format!("{other:?}"))
                ),
            ),
            Err(e) => (false, format!("error: {}", regorus_error(&e, false))),
        };
        report.cases.push(TestCase {
            name,
            kind: TestKind::Rego,
            passed,
            message,
        });
    }
    Ok(())
}

fn run_golden(bundle: &PolicyBundle, dir: &Path, report: &mut TestReport) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|source| PolicyError::Dir {
        dir: dir.to_path_buf(),
        source,
    })?;
    let mut cases: Vec<PathBuf> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| PolicyError::Dir {
            dir: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        if path.join("input.json").is_file() {
            cases.push(path);
        }
    }
    cases.sort();
    for case in cases {
        let name = format!(
            "golden/{}",
            case.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        let (passed, message) = match run_golden_case(bundle, &case) {
            Ok(None) => (true, String::new()),
            Ok(Some(mismatch)) => (false, mismatch),
            Err(e) => (false, e.to_string()),
        };
        report.cases.push(TestCase {
            name,
            kind: TestKind::Golden,
            passed,
            message,
        });
    }
    Ok(())
}

/// Runs one golden case: `Ok(None)` when it matches, `Ok(Some(why))` when it does not.
fn run_golden_case(bundle: &PolicyBundle, case: &Path) -> Result<Option<String>> {
    let input: PolicyInput = read_json(&case.join("input.json"))?;
    let expected: Json = read_json(&case.join("expected.json"))?;
    let mut data = bundle.data().clone();
    let overlay_path = case.join("data.json");
    if overlay_path.is_file() {
        let overlay: Json = read_json(&overlay_path)?;
        merge_json(&mut data, overlay);
    }
    let mut engine = PolicyEngine::with_data(bundle, data)?;
    let evaluation = engine.decide(&input);
    let actual = serde_json::to_value(&evaluation.decision).map_err(|e| PolicyError::Json {
        path: case.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(compare_decision(&expected, &actual))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| PolicyError::Json {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Compares a decision with an expectation: `verdict`, `proposal` (when the key is present)
/// and `reasons` in order, each reason's `code` and, when given, its `message`. Leaving
/// messages out lets a case pin the logic without pinning the wording.
fn compare_decision(expected: &Json, actual: &Json) -> Option<String> {
    let mismatch = |what: &str| {
        Some(format!(
            "{what}\n    expected: {}\n    actual:   {}",
            expected, actual
        ))
    };
    if expected.get("verdict") != actual.get("verdict") {
        return mismatch("verdict differs");
    }
    if let Some(proposal) = expected.get("proposal")
        && Some(proposal) != actual.get("proposal")
    {
        return mismatch("proposal differs");
    }
    let empty = Vec::new();
    let expected_reasons = expected
        .get("reasons")
        .and_then(Json::as_array)
        .unwrap_or(&empty);
    let actual_reasons = actual
        .get("reasons")
        .and_then(Json::as_array)
        .unwrap_or(&empty);
    if expected_reasons.len() != actual_reasons.len() {
        return mismatch("number of reasons differs");
    }
    for (i, (want, got)) in expected_reasons.iter().zip(actual_reasons).enumerate() {
        if want.get("code") != got.get("code") {
            return mismatch(&format!("reason {i}: code differs"));
        }
        if let Some(message) = want.get("message")
            && Some(message) != got.get("message")
        {
            return mismatch(&format!("reason {i}: message differs"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn messages_are_compared_only_when_expected() {
        let actual = json!({"verdict": "hold", "proposal": null,
            "reasons": [{"code": "cooldown", "message": "3 days ago"}]});
        assert_eq!(
            compare_decision(
                &json!({"verdict": "hold", "reasons": [{"code": "cooldown"}]}),
                &actual
            ),
            None
        );
        assert!(
            compare_decision(
                &json!({"verdict": "hold", "reasons": [{"code": "cooldown", "message": "x"}]}),
                &actual
            )
            .is_some()
        );
        assert!(compare_decision(&json!({"verdict": "act", "reasons": []}), &actual).is_some());
    }
}
