//! Evaluating a bundle for one target at a time, failing closed.

use std::num::NonZeroU32;
use std::time::Duration;

use regorus::utils::limits::ExecutionTimerConfig;
use serde_json::Value as Json;
use setpoint_core::{Decision, KillSwitches, PolicyInput, Verdict};

use crate::bundle::{PolicyBundle, merge_json};
use crate::eval::{EvalError, Prepared};
use crate::{ENTRY_POINT, PolicyError, Result, json_type};

/// Work units between two looks at the clock: often enough that a runaway policy is caught
/// soon after its limit, rarely enough that reading the clock costs nothing measurable.
const CHECK_INTERVAL: NonZeroU32 = match NonZeroU32::new(32) {
    Some(n) => n,
    None => NonZeroU32::MIN,
};

/// The regorus timer configuration for a limit.
pub(crate) fn timer(limit: Duration) -> ExecutionTimerConfig {
    ExecutionTimerConfig {
        limit,
        check_interval: CHECK_INTERVAL,
    }
}

/// The result of evaluating the policy for one input.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyEvaluation {
    /// The decision: the policy's own when well formed, otherwise
    /// [`Decision::policy_error`] (hold, reason `policy_error`).
    pub decision: Decision,
    /// The policy's raw output, when it produced one (kept for the journal, also when it was
    /// malformed).
    pub output: Option<Json>,
    /// What went wrong, when the decision is a policy error.
    pub error: Option<String>,
}

impl PolicyEvaluation {
    fn failed(message: String, output: Option<Json>) -> Self {
        Self {
            decision: Decision::policy_error(message.clone()),
            output,
            error: Some(message),
        }
    }
}

/// A prepared interpreter for one bundle, evaluated once per target.
///
/// Evaluation takes `&mut self`: a worker thread owns its engine. It is `Send`, so it may move
/// to a blocking thread.
pub struct PolicyEngine {
    /// The prepared engine, reset after an error: an error (a time limit hit half-way, say)
    /// must not leak into another target's decision.
    prepared: Prepared,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("tainted", &self.prepared.tainted())
            .finish_non_exhaustive()
    }
}

impl PolicyEngine {
    /// Prepares `bundle` with the engine's stored `kill_switches` overlaid on
    /// `data.setpoint.kill_switches`, under [`DEFAULT_TIME_LIMIT`](crate::DEFAULT_TIME_LIMIT).
    ///
    /// A switch is on when it is on in the bundle's `data.json` or in `kill_switches`: the
    /// overlay can add stops but never lift one a policy author wrote into the bundle.
    pub fn new(bundle: &PolicyBundle, kill_switches: &KillSwitches) -> Result<Self> {
        let data = overlay_kill_switches(bundle.data().clone(), kill_switches)?;
        Self::with_data(bundle, data)
    }

    /// Prepares `bundle` with `data` as its whole data document.
    pub(crate) fn with_data(bundle: &PolicyBundle, data: Json) -> Result<Self> {
        let engine = bundle.engine(data, crate::DEFAULT_TIME_LIMIT)?;
        Ok(Self {
            prepared: Prepared::new(engine, crate::DEFAULT_TIME_LIMIT),
        })
    }

    /// Changes the time one evaluation may take (default
    /// [`DEFAULT_TIME_LIMIT`](crate::DEFAULT_TIME_LIMIT)).
    pub fn set_time_limit(&mut self, limit: Duration) {
        self.prepared.set_time_limit(limit);
    }

    /// Evaluates [`ENTRY_POINT`] for one target.
    ///
    /// Never fails and never panics: an evaluation error, an undefined result, an output that
    /// is not a [`Decision`], an `act` or `review` naming no proposal or one that is not among
    /// `input.proposals`, or a decision without reasons all give
    /// [`Decision::policy_error`] (hold), with the cause in
    /// [`PolicyEvaluation::error`].
    pub fn decide(&mut self, input: &PolicyInput) -> PolicyEvaluation {
        let input_json = match serde_json::to_value(input) {
            Ok(json) => json,
            Err(e) => {
                return PolicyEvaluation::failed(
                    format!("the policy input could not be serialised: {e}"),
                    None,
                );
            }
        };
        let value = match self
            .prepared
            .eval(regorus::Value::from(input_json), ENTRY_POINT)
        {
            Ok(value) => value,
            Err(e) => {
                return PolicyEvaluation::failed(failure_message(&e), None);
            }
        };
        if value == regorus::Value::Undefined {
            return PolicyEvaluation::failed(
                format!("{ENTRY_POINT} is undefined for this input"),
                None,
            );
        }
        let output = match serde_json::to_value(&value) {
            Ok(json) => json,
            Err(e) => {
                return PolicyEvaluation::failed(
                    format!("the output of {ENTRY_POINT} is not JSON: {e}"),
                    None,
                );
            }
        };
        match validate(&output, input) {
            Ok(decision) => PolicyEvaluation {
                decision,
                output: Some(output),
                error: None,
            },
            Err(message) => PolicyEvaluation::failed(message, Some(output)),
        }
    }
}

/// The weekly loop's message for an evaluation error: the same for every kind of error.
fn failure_message(error: &EvalError) -> String {
    match error {
        EvalError::Conflict { detail, .. }
        | EvalError::TimeLimit { detail, .. }
        | EvalError::Failed { detail, .. } => {
            format!("evaluating {ENTRY_POINT} failed: {detail}")
        }
        EvalError::Undefined { .. } => format!("{ENTRY_POINT} is undefined for this input"),
    }
}

/// Parses a policy's output into a decision for `input`, exactly as [`PolicyEngine::decide`]
/// does once the policy has answered: the Rego output decoder on its own, for the fuzz
/// targets in `fuzz/`. Not part of the crate's API.
#[doc(hidden)]
pub fn validate_output(
    output: &Json,
    input: &PolicyInput,
) -> std::result::Result<Decision, String> {
    validate(output, input)
}

/// Parses the policy output into a decision and checks it makes sense for this input.
fn validate(output: &Json, input: &PolicyInput) -> std::result::Result<Decision, String> {
    if !output.is_object() {
        return Err(format!(
            "{ENTRY_POINT} must be an object, got {}",
            json_type(output)
        ));
    }
    let decision: Decision = serde_json::from_value(output.clone())
        .map_err(|e| format!("{ENTRY_POINT} is not a valid decision: {e}"))?;
    if decision.reasons.is_empty() {
        return Err(format!(
            "{ENTRY_POINT} gave verdict {} without any reason",
            decision.verdict
        ));
    }
    if matches!(decision.verdict, Verdict::Act | Verdict::Review) {
        let Some(action) = decision.proposal else {
            return Err(format!(
                "{ENTRY_POINT} gave verdict {} without choosing a proposal",
                decision.verdict
            ));
        };
        if !input.proposals.iter().any(|p| p.action == action) {
            let offered: Vec<&str> = input.proposals.iter().map(|p| p.action.as_str()).collect();
            return Err(format!(
                "{ENTRY_POINT} gave verdict {} for proposal {action}, which is not among this target's proposals ({})",
                decision.verdict,
                if offered.is_empty() {
                    "none".to_string()
                } else {
                    offered.join(", ")
                }
            ));
        }
    }
    Ok(decision)
}

/// Overlays the engine's kill switches on `data.setpoint.kill_switches`, keeping every switch
/// that is on in either.
pub(crate) fn overlay_kill_switches(mut data: Json, switches: &KillSwitches) -> Result<Json> {
    let mut on = serde_json::Map::new();
    if switches.global {
        on.insert("global".into(), Json::Bool(true));
    }
    let only_on = |map: &std::collections::BTreeMap<String, bool>| {
        map.iter()
            .filter(|(_, on)| **on)
            .map(|(name, _)| (name.clone(), Json::Bool(true)))
            .collect::<serde_json::Map<_, _>>()
    };
    on.insert("loops".into(), Json::Object(only_on(&switches.loops)));
    on.insert("targets".into(), Json::Object(only_on(&switches.targets)));

    // Check the shape first: merging into a non-object would silently replace it.
    let setpoint = data.get("setpoint");
    if let Some(setpoint) = setpoint {
        if !setpoint.is_object() {
            return Err(PolicyError::Data {
                message: format!("setpoint must be an object, got {}", json_type(setpoint)),
            });
        }
        if let Some(existing) = setpoint.get("kill_switches") {
            if !existing.is_object() {
                return Err(PolicyError::Data {
                    message: format!(
                        "setpoint.kill_switches must be an object, got {}",
                        json_type(existing)
                    ),
                });
            }
            if existing.get("global") == Some(&Json::Bool(true)) {
                on.remove("global");
            }
        }
    }
    merge_json(
        &mut data,
        serde_json::json!({ "setpoint": { "kill_switches": on } }),
    );
    Ok(data)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn overlay_adds_switches_and_never_lifts_one() {
        let data = json!({"setpoint": {"kill_switches": {
            "global": true, "loops": {"a": true}, "targets": {}
        }}});
        let mut switches = KillSwitches::default();
        switches.loops.insert("a".into(), false);
        switches.targets.insert("t".into(), true);
        switches.targets.insert("u".into(), false);
        let merged = overlay_kill_switches(data, &switches).unwrap();
        assert_eq!(
            merged,
            json!({"setpoint": {"kill_switches": {
                "global": true, "loops": {"a": true}, "targets": {"t": true}
            }}})
        );
    }

    #[test]
    fn overlay_creates_missing_sections() {
        let switches = KillSwitches {
            global: true,
            ..Default::default()
        };
        let merged = overlay_kill_switches(json!({}), &switches).unwrap();
        assert_eq!(
            merged,
            json!({"setpoint": {"kill_switches": {"global": true, "loops": {}, "targets": {}}}})
        );
    }

    #[test]
    fn overlay_rejects_a_malformed_section() {
        let err = overlay_kill_switches(
            json!({"setpoint": {"kill_switches": []}}),
            &KillSwitches::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("setpoint.kill_switches"), "{err}");
    }
}
