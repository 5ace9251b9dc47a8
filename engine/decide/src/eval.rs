//! One prepared interpreter, reused for every evaluation and reset after an error.
//!
//! Shared by the weekly [`PolicyEngine`](crate::PolicyEngine) and the fast loop's
//! [`ControlEngine`](crate::ControlEngine): both prepare once, swap only the input per target,
//! and start the next target from a pristine clone after any error, so an error (a time limit
//! hit half-way, say) cannot leak into another target's evaluation.

use std::time::Duration;

use regorus::Engine;

use crate::regorus_error;

/// Why an evaluation produced no value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// Two complete rules (or function rules) gave different values for the same input: OPA's
    /// `eval_conflict_error`. `detail` names the rule at `file:line:col` and the rule it
    /// conflicts with.
    #[error("two rules of {rule} gave different values for this input: {detail}")]
    Conflict {
        /// The rule evaluated, e.g. `data.control.decision`.
        rule: String,
        /// regorus' message, starting with `file:line:col`.
        detail: String,
    },
    /// The evaluation ran past its time limit and was abandoned.
    #[error("evaluating {rule} exceeded its time limit of {} ms: {detail}", limit.as_millis())]
    TimeLimit {
        /// The rule evaluated.
        rule: String,
        /// The limit in force.
        limit: Duration,
        /// regorus' message.
        detail: String,
    },
    /// The rule has no value for this input.
    #[error("{rule} is undefined for this input")]
    Undefined {
        /// The rule evaluated.
        rule: String,
    },
    /// Any other evaluation error: a builtin or type error, a call to an unknown function.
    #[error("evaluating {rule} failed: {detail}")]
    Failed {
        /// The rule evaluated.
        rule: String,
        /// regorus' message, starting with `file:line:col` when regorus gives one.
        detail: String,
    },
}

/// Whether a regorus evaluation error reports conflicting rule values.
///
/// regorus 0.14 reports a conflict only as text, so the match lives here alone, pinned by
/// `conflict_messages_of_this_regorus_are_recognised` below against the messages the installed
/// regorus actually produces: an upgrade that rewords them fails that test, not a deployment.
/// The three wordings are those of `Interpreter::check_rule_path` (complete rules and object
/// keys), the complete-rule merge, and function rules.
pub(crate) fn is_conflict(message: &str) -> bool {
    let message = message
        .lines()
        .find_map(|l| l.strip_prefix("error: "))
        .unwrap_or(message);
    message.starts_with("rule conflicts with rule at ")
        || message.contains("should not produce multiple outputs")
        || message.contains("must not produce multiple outputs")
}

/// A prepared engine and the pristine copy it is reset from.
#[derive(Clone)]
pub(crate) struct Prepared {
    /// The engine as prepared, never evaluated: the restart point after an error.
    pristine: Engine,
    /// The engine evaluations run on.
    engine: Engine,
    /// Set when the last evaluation failed, so the next starts from `pristine`.
    tainted: bool,
    /// The time limit in force, for error reports.
    limit: Duration,
}

impl Prepared {
    /// Wraps an engine prepared with a time limit of `limit`.
    pub(crate) fn new(engine: Engine, limit: Duration) -> Self {
        Self {
            pristine: engine.clone(),
            engine,
            tainted: false,
            limit,
        }
    }

    /// Changes the time one evaluation may take.
    pub(crate) fn set_time_limit(&mut self, limit: Duration) {
        self.pristine
            .set_execution_timer_config(crate::engine::timer(limit));
        self.engine
            .set_execution_timer_config(crate::engine::timer(limit));
        self.limit = limit;
    }

    /// Whether the next evaluation will start from the pristine copy.
    pub(crate) fn tainted(&self) -> bool {
        self.tainted
    }

    /// Evaluates `rule` for `input`. An undefined rule is `Ok(Value::Undefined)`; an error
    /// resets the engine before the next evaluation.
    pub(crate) fn eval(
        &mut self,
        input: regorus::Value,
        rule: &str,
    ) -> Result<regorus::Value, EvalError> {
        if self.tainted {
            self.engine = self.pristine.clone();
            self.tainted = false;
        }
        self.engine.set_input(input);
        self.engine.eval_rule(rule.to_string()).map_err(|e| {
            self.tainted = true;
            let detail = regorus_error(&e, false);
            if e.downcast_ref::<regorus::LimitError>()
                .is_some_and(|l| matches!(l, regorus::LimitError::TimeLimitExceeded { .. }))
            {
                EvalError::TimeLimit {
                    rule: rule.to_string(),
                    limit: self.limit,
                    detail,
                }
            } else if is_conflict(&e.to_string()) {
                EvalError::Conflict {
                    rule: rule.to_string(),
                    detail,
                }
            } else {
                EvalError::Failed {
                    rule: rule.to_string(),
                    detail,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn prepared(rego_v0: bool, policy: &str, rule: &str) -> Prepared {
        let mut engine = Engine::new();
        engine.set_rego_v0(rego_v0);
        engine.add_policy("p.rego".into(), policy.into()).unwrap();
        engine
            .compile_with_entrypoint(&regorus::Rc::from(rule))
            .unwrap();
        Prepared::new(engine, Duration::from_secs(5))
    }

    /// Pins [`is_conflict`] to the messages of the regorus this crate builds with.
    #[test]
    fn conflict_messages_of_this_regorus_are_recognised() {
        let complete = "package p\nx = 1 { input.a }\nx = 2 { input.b }\n";
        let key = "package p\nimport rego.v1\nobj[k] := 1 if { k := \"a\"; input.a }\nobj[k] := 2 if { k := \"a\"; input.b }\n";
        let function = "package p\nimport rego.v1\nf(x) := 1 if x > 0\nf(x) := 2 if x > 1\ny := f(5) if input.a\n";
        let both = regorus::Value::from_json_str(r#"{"a": true, "b": true}"#).unwrap();
        for (v0, policy, rule, line) in [
            (true, complete, "data.p.x", "p.rego:3:1"),
            (false, key, "data.p.obj", "p.rego:4:4"),
            (false, function, "data.p.y", "p.rego:5:7"),
        ] {
            let mut p = prepared(v0, policy, rule);
            let err = p.eval(both.clone(), rule).unwrap_err();
            match &err {
                EvalError::Conflict { detail, .. } => {
                    assert!(detail.starts_with(line), "{rule}: {detail}")
                }
                other => panic!("{rule}: not a conflict: {other:?}"),
            }
        }
        // The wordings themselves, as regorus 0.14 writes them.
        for message in [
            "\n--> c.rego:11:1\n   |\n11 | x = 2 {\n   | ^\nerror: rule conflicts with rule at c.rego:3:1",
            "error: complete rules should not produce multiple outputs",
            "error: rules should not produce multiple outputs.",
            "error: functions must not produce multiple outputs for same inputs",
        ] {
            assert!(is_conflict(message), "{message}");
        }
        for message in [
            "error: `to_number` failed",
            "execution exceeded time limit (elapsed=1ns, limit=1ns)",
            // A rule whose *message text* mentions a conflict is not one.
            "error: sprintf: rule conflicts with rule at",
        ] {
            assert!(!is_conflict(message), "{message}");
        }
    }

    #[test]
    fn an_error_resets_the_engine_for_the_next_input() {
        let mut p = prepared(
            false,
            "package p\nimport rego.v1\nx := to_number(input.n)\n",
            "data.p.x",
        );
        let bad = regorus::Value::from_json_str(r#"{"n": "heavy"}"#).unwrap();
        let good = regorus::Value::from_json_str(r#"{"n": "3"}"#).unwrap();
        assert!(matches!(
            p.eval(bad, "data.p.x"),
            Err(EvalError::Failed { .. })
        ));
        assert!(p.tainted());
        assert_eq!(p.eval(good, "data.p.x").unwrap(), regorus::Value::from(3));
        assert!(!p.tainted());
    }
}
