//! The fast loop's decide stage: a team's own control policy, then setpoint's guard.
//!
//! Per service per tick, [`ControlEngine::decide`] evaluates the team's policy at its entry point
//! on the [`ControlInput`], maps the output to a typed [`ControlAction`] with the policy's
//! [`ActionMapping`], and evaluates the guard (`policies/fast/guard.rego`, embedded by
//! [`guard_bundle`]) on that proposal. The guard's thresholds and the kill switches are policy
//! data, as in the weekly loop. Both policies run on the interpreter, each prepared once and
//! reused, reset after an error, under a time limit; nothing a policy does makes `decide` fail:
//! it holds with a reason instead.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value as Json, json};
use setpoint_core::control::{
    ActionMapping, ControlAction, ControlDecision, ControlInput, RegoVersion, ReplicaTarget,
};
use setpoint_core::{KillSwitches, Reason, Verdict};

use crate::bundle::{PolicyBundle, read_rego_dir};
use crate::engine::overlay_kill_switches;
use crate::eval::{EvalError, Prepared};
use crate::mapping::{map_output, validate_mapping};
use crate::{DEFAULT_TIME_LIMIT, PolicyError, Result};

/// The guard policy's entry point.
pub const GUARD_ENTRY_POINT: &str = "data.setpoint.fast.guard.decision";

/// A team's control policy: its Rego sources and data, the rule to evaluate, and how its output
/// maps to typed actions. Loaded and checked once; shared by every engine that runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlPolicy {
    bundle: PolicyBundle,
    mapping: ActionMapping,
    hash: String,
}

impl ControlPolicy {
    /// Loads a team's policy from `paths` (each a `.rego` file, or a directory whose `*.rego`
    /// files are all loaded), with `data` as its data document.
    ///
    /// Fails, naming `file:line:col`, if a file does not parse as `rego_version` (a file that
    /// only parses as v0 while `rego_version` is v1 is [`PolicyError::NeedsRegoV0`]), if the
    /// policy does not compile or does not define `entry_point`, or if `mapping` is not valid
    /// ([`PolicyError::Mapping`]).
    pub fn load(
        paths: &[PathBuf],
        data: Json,
        rego_version: RegoVersion,
        entry_point: &str,
        mapping: ActionMapping,
    ) -> Result<ControlPolicy> {
        let mut files = Vec::new();
        for path in paths {
            if path.is_dir() {
                files.extend(read_rego_dir(path)?);
            } else {
                let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
                    path: path.clone(),
                    source,
                })?;
                files.push((path.display().to_string(), text));
            }
        }
        if files.is_empty() {
            return Err(PolicyError::NoFiles);
        }
        Self::from_sources(files, data, rego_version, entry_point, mapping)
    }

    /// Builds a policy from in-memory `(name, text)` sources, checked as [`ControlPolicy::load`]
    /// does.
    pub fn from_sources(
        files: Vec<(String, String)>,
        data: Json,
        rego_version: RegoVersion,
        entry_point: &str,
        mapping: ActionMapping,
    ) -> Result<ControlPolicy> {
        let problems = validate_mapping(&mapping);
        if !problems.is_empty() {
            return Err(PolicyError::Mapping { problems });
        }
        let bundle = PolicyBundle::from_sources_with(files, data, entry_point, rego_version)?;
        let hash = hash_with_mapping(&bundle, &mapping);
        Ok(ControlPolicy {
            bundle,
            mapping,
            hash,
        })
    }

    /// Finds calls to functions that neither the policy nor regorus defines, as `setpoint config
    /// check` does for the weekly bundle ([`PolicyBundle::check`]); loading does not, since
    /// the interpreter only meets such a call when an evaluation reaches it.
    pub fn check(&self) -> Result<()> {
        self.bundle.check()
    }

    /// The policy's sources and data, e.g. for [`run_tests`](crate::run_tests).
    pub fn bundle(&self) -> &PolicyBundle {
        &self.bundle
    }

    /// How its output maps to typed actions.
    pub fn mapping(&self) -> &ActionMapping {
        &self.mapping
    }

    /// The rule evaluated per service.
    pub fn entry_point(&self) -> &str {
        self.bundle.entry_point()
    }

    /// A content hash (`sha256:<hex>`) of the sources, data, entry point, Rego version and
    /// mapping: which policy decided, for the journal.
    pub fn hash(&self) -> &str {
        &self.hash
    }
}

fn hash_with_mapping(bundle: &PolicyBundle, mapping: &ActionMapping) -> String {
    use sha2::{Digest, Sha256};
    use std::fmt::Write;
    let mut hasher = Sha256::new();
    hasher.update(bundle.hash().as_bytes());
    // Always the entry point and version too: PolicyBundle::hash leaves out the weekly defaults.
    hasher.update(bundle.entry_point().as_bytes());
    hasher.update(bundle.rego_version().as_str().as_bytes());
    hasher.update(
        serde_json::to_string(mapping)
            .unwrap_or_default()
            .as_bytes(),
    );
    let mut out = String::from("sha256:");
    for byte in hasher.finalize() {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// The files of `policies/fast/` that make up the guard, embedded so that a fast loop needs
/// nothing on disk. A unit test checks the list against the directory.
const GUARD_FILES: &[(&str, &str)] = &[
    (
        "policies/fast/guard.rego",
        include_str!("../../../policies/fast/guard.rego"),
    ),
    (
        "policies/fast/guard_test.rego",
        include_str!("../../../policies/fast/guard_test.rego"),
    ),
];

const GUARD_DATA: &str = include_str!("../../../policies/fast/data.json");

/// The guard policy (`policies/fast/` in the repository), embedded, with its default data.
///
/// A loop changes the guardrails with [`PolicyBundle::with_data_overlay`], e.g.
/// `{"setpoint": {"fast": {"config": {"max_step_ratio": 1.5}}}}`.
pub fn guard_bundle() -> Result<PolicyBundle> {
    let files = GUARD_FILES
        .iter()
        .map(|(name, text)| (name.to_string(), text.to_string()))
        .collect();
    let data = serde_json::from_str(GUARD_DATA).map_err(|e| PolicyError::Json {
        path: "policies/fast/data.json".into(),
        message: e.to_string(),
    })?;
    PolicyBundle::from_sources_with(files, data, GUARD_ENTRY_POINT, RegoVersion::V1)
}

/// Loads a guard bundle from a directory laid out like `policies/fast/`.
pub fn load_guard_bundle(dir: &Path) -> Result<PolicyBundle> {
    PolicyBundle::load_with(dir, GUARD_ENTRY_POINT, RegoVersion::V1)
}

/// The guard's output.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GuardOutput {
    verdict: Verdict,
    action: ControlAction,
    reasons: Vec<Reason>,
}

/// A team's control policy and the guard, prepared for one worker thread.
///
/// Evaluation takes `&mut self`: a worker owns its engine. It is `Send`, so it may move to a
/// blocking thread.
pub struct ControlEngine {
    team: Prepared,
    guard: Prepared,
    /// The guard as loaded, to prepare again when the kill switches change.
    guard_bundle: PolicyBundle,
    /// The kill switches overlaid on the guard's data now.
    switches: KillSwitches,
    /// Set when the guard could not be prepared with the latest switches: every decision holds
    /// until it can.
    guard_stale: Option<String>,
    entry_point: String,
    mapping: ActionMapping,
    policy_hash: String,
    limit: Duration,
}

impl std::fmt::Debug for ControlEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlEngine")
            .field("entry_point", &self.entry_point)
            .field("policy_hash", &self.policy_hash)
            .field("switches", &self.switches)
            .finish_non_exhaustive()
    }
}

impl ControlEngine {
    /// Prepares `policy` and `guard` (usually [`guard_bundle`]) with `kill_switches` overlaid on
    /// the guard's `data.setpoint.kill_switches`, under [`DEFAULT_TIME_LIMIT`] per evaluation.
    pub fn new(
        policy: &ControlPolicy,
        guard: &PolicyBundle,
        kill_switches: &KillSwitches,
    ) -> Result<Self> {
        let team = policy
            .bundle
            .engine(policy.bundle.data().clone(), DEFAULT_TIME_LIMIT)?;
        let guard_engine = guard.engine(
            overlay_kill_switches(guard.data().clone(), kill_switches)?,
            DEFAULT_TIME_LIMIT,
        )?;
        Ok(Self {
            team: Prepared::new(team, DEFAULT_TIME_LIMIT),
            guard: Prepared::new(guard_engine, DEFAULT_TIME_LIMIT),
            guard_bundle: guard.clone(),
            switches: kill_switches.clone(),
            guard_stale: None,
            entry_point: policy.entry_point().to_string(),
            mapping: policy.mapping.clone(),
            policy_hash: policy.hash.clone(),
            limit: DEFAULT_TIME_LIMIT,
        })
    }

    /// Changes the time each of the two evaluations may take (default [`DEFAULT_TIME_LIMIT`]).
    pub fn set_time_limit(&mut self, limit: Duration) {
        self.team.set_time_limit(limit);
        self.guard.set_time_limit(limit);
        self.limit = limit;
    }

    /// Decides for one service.
    ///
    /// `kill_switches` are the store's switches as of now: when they differ from the last call's,
    /// the guard is prepared again with them before this evaluation, so a switch turned on
    /// between two services of a tick applies to the second.
    ///
    /// Never fails and never panics. Every failure is a `hold` with [`ControlAction::None`]:
    /// conflicting rules give reason `policy_conflict` (naming both rules' `file:line:col`); an
    /// evaluation error, the time limit, an undefined result, an output that does not fit the
    /// mapping, or a guard failure give `policy_error`. After an error the next service starts
    /// from a pristine engine.
    pub fn decide(
        &mut self,
        input: &ControlInput,
        kill_switches: &KillSwitches,
    ) -> ControlDecision {
        let mut decision = ControlDecision {
            service: input.service.clone(),
            verdict: Verdict::Hold,
            action: ControlAction::None,
            proposed: None,
            reasons: Vec::new(),
            policy_output: None,
            guard_output: None,
            entry_point: self.entry_point.clone(),
            policy_hash: self.policy_hash.clone(),
        };
        let fail = |mut decision: ControlDecision, code: &str, message: String| {
            decision.verdict = Verdict::Hold;
            decision.action = ControlAction::None;
            decision.reasons = vec![Reason::new(code, message)];
            decision
        };

        if *kill_switches != self.switches || self.guard_stale.is_some() {
            self.apply_switches(kill_switches);
        }
        if let Some(problem) = &self.guard_stale {
            let message = format!("the guard could not take the kill switches: {problem}");
            return fail(decision, "policy_error", message);
        }

        let input_json = match serde_json::to_value(input) {
            Ok(json) => json,
            Err(e) => {
                let message = format!("the control input could not be serialised: {e}");
                return fail(decision, "policy_error", message);
            }
        };

        // The team's policy.
        let output = match self.evaluate_team(input_json.clone()) {
            Ok(output) => output,
            Err(e) => {
                let code = match e {
                    EvalError::Conflict { .. } => "policy_conflict",
                    _ => "policy_error",
                };
                return fail(decision, code, e.to_string());
            }
        };
        decision.policy_output = Some(output.clone());
        let proposed = match map_output(&output, &self.mapping, &input.current.weights) {
            Ok(action) => action,
            Err(e) => {
                let message = format!(
                    "the output of {} does not fit the action mapping: {e}",
                    self.entry_point
                );
                return fail(decision, "policy_error", message);
            }
        };
        decision.proposed = Some(proposed.clone());

        // The guard.
        let guard_input = guard_input(input, &input_json, &proposed);
        let guard_output = match self
            .guard
            .eval(regorus::Value::from(guard_input), GUARD_ENTRY_POINT)
        {
            Ok(regorus::Value::Undefined) => {
                let message = format!("{GUARD_ENTRY_POINT} is undefined for this input");
                return fail(decision, "policy_error", message);
            }
            Ok(value) => match serde_json::to_value(&value) {
                Ok(json) => json,
                Err(e) => {
                    let message = format!("the output of {GUARD_ENTRY_POINT} is not JSON: {e}");
                    return fail(decision, "policy_error", message);
                }
            },
            Err(e) => {
                return fail(decision, "policy_error", format!("the guard failed: {e}"));
            }
        };
        decision.guard_output = Some(guard_output.clone());
        match check_guard_output(guard_output, input) {
            Ok(out) => {
                decision.verdict = out.verdict;
                decision.action = out.action;
                decision.reasons = out.reasons;
                decision
            }
            Err(message) => fail(decision, "policy_error", message),
        }
    }

    /// Evaluates the team's policy and returns its output as JSON.
    fn evaluate_team(&mut self, input: Json) -> std::result::Result<Json, EvalError> {
        let value = self
            .team
            .eval(regorus::Value::from(input), &self.entry_point)?;
        if value == regorus::Value::Undefined {
            return Err(EvalError::Undefined {
                rule: self.entry_point.clone(),
            });
        }
        serde_json::to_value(&value).map_err(|e| EvalError::Failed {
            rule: self.entry_point.clone(),
            detail: format!("the output is not JSON: {e}"),
        })
    }

    /// Prepares the guard again with `switches` overlaid on its data.
    fn apply_switches(&mut self, switches: &KillSwitches) {
        let prepared = overlay_kill_switches(self.guard_bundle.data().clone(), switches)
            .and_then(|data| self.guard_bundle.engine(data, self.limit));
        match prepared {
            Ok(engine) => {
                self.guard = Prepared::new(engine, self.limit);
                self.switches = switches.clone();
                self.guard_stale = None;
            }
            // The old switches may be missing a stop: hold everything rather than use them.
            Err(e) => self.guard_stale = Some(e.to_string()),
        }
    }
}

/// The guard's input: the proposal and what the guardrails are checked against, taken from the
/// control input (`input_json` is its serialisation, so metrics are already cleaned).
fn guard_input(input: &ControlInput, input_json: &Json, proposed: &ControlAction) -> Json {
    let part = |key: &str| input_json.get(key).cloned().unwrap_or(Json::Null);
    let mut doc = json!({
        "service": input.service,
        "loop": input.loop_info.name,
        "at": part("at"),
        "at_ns": input.at_ns,
        "proposed": proposed,
        "current": part("current"),
        "limits": part("limits"),
        "observed": part("now"),
        "forecast": part("forecast"),
        "flags": part("flags"),
    });
    if let (Some(at), Some(obj)) = (input.cooldown.last_change_at, doc.as_object_mut()) {
        let mut last = json!({ "at_ns": at.timestamp_nanos_opt() });
        if let Some(kind) = input.cooldown.last_change_kind {
            last["kind"] = json!(kind.as_str());
        }
        obj.insert("last_change".into(), last);
    }
    doc
}

/// Parses the guard's output and re-checks, in Rust, what must never be wrong whatever the
/// guard's data says: an `act` carries a real change, replicas within the service's bounds and
/// weights that sum to 100.
fn check_guard_output(
    output: Json,
    input: &ControlInput,
) -> std::result::Result<GuardOutput, String> {
    let out: GuardOutput = serde_json::from_value(output)
        .map_err(|e| format!("{GUARD_ENTRY_POINT} is not a valid guard decision: {e}"))?;
    if out.reasons.is_empty() {
        return Err(format!(
            "{GUARD_ENTRY_POINT} gave verdict {} without any reason",
            out.verdict
        ));
    }
    if out.verdict == Verdict::Review {
        return Err(format!(
            "{GUARD_ENTRY_POINT} gave verdict review, which a fast loop has no use for"
        ));
    }
    if out.verdict != Verdict::Act {
        return Ok(out);
    }
    match &out.action {
        ControlAction::None => Err(format!("{GUARD_ENTRY_POINT} acts on no action")),
        ControlAction::Replicas(ReplicaTarget::Factor(_)) => Err(format!(
            "{GUARD_ENTRY_POINT} acts on a replica factor, not a replica count"
        )),
        ControlAction::Replicas(ReplicaTarget::Absolute(n)) => {
            let (min, max) = (input.limits.min_replicas, input.limits.max_replicas);
            if (min..=max).contains(n) {
                Ok(out)
            } else {
                Err(format!(
                    "{GUARD_ENTRY_POINT} acts on {n} replicas, outside the service's {min}..={max}"
                ))
            }
        }
        ControlAction::TrafficShift { weights } => {
            let total: u64 = weights.values().map(|w| u64::from(*w)).sum();
            if total == 100 {
                Ok(out)
            } else {
                Err(format!(
                    "{GUARD_ENTRY_POINT} acts on traffic weights that sum to {total}, not 100"
                ))
            }
        }
        ControlAction::Throttle(_) => Ok(out),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn embedded_guard_files_match_the_directory() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/fast");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".rego"))
            .map(|n| format!("policies/fast/{n}"))
            .collect();
        on_disk.sort();
        let embedded: Vec<String> = GUARD_FILES.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(embedded, on_disk, "update GUARD_FILES in control.rs");
        let loaded = load_guard_bundle(&dir).unwrap();
        assert_eq!(loaded.data(), guard_bundle().unwrap().data());
    }

    #[test]
    fn the_policy_hash_covers_the_mapping() {
        let files = vec![(
            "p.rego".to_string(),
            "package control\nimport rego.v1\ndecision := {\"type\": \"NONE\"}\n".to_string(),
        )];
        let load = |mapping: ActionMapping| {
            ControlPolicy::from_sources(
                files.clone(),
                json!({}),
                RegoVersion::V1,
                "data.control.decision",
                mapping,
            )
            .unwrap()
        };
        let a = load(ActionMapping::default());
        let b = load(ActionMapping {
            most_percent: 80,
            ..ActionMapping::default()
        });
        assert_ne!(a.hash(), b.hash());
        assert_eq!(a.hash(), load(ActionMapping::default()).hash());
    }
}
