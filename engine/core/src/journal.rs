//! The decision journal's record and the kill switches.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Classification, Decision, FeatureVector, Intent, Operation, Proposal, Target};

/// The stages of the loop, as named in traces and errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageName {
    /// Reading metrics.
    Observe,
    /// Plugin feature extraction.
    Features,
    /// Classification.
    Classify,
    /// Plugin proposals.
    Propose,
    /// Policy evaluation.
    Decide,
    /// Execution or dry-run recording.
    Act,
}

/// A stage that failed for one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageError {
    /// Where it failed.
    pub stage: StageName,
    /// The error, naming the plugin/source and the target.
    pub message: String,
}

/// One target's record for one cycle: everything needed to answer "why?" later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// Loop name.
    pub loop_name: String,
    /// Cycle sequence number within the loop.
    pub cycle: u64,
    /// The cycle's `now`.
    pub at: DateTime<Utc>,
    /// The target as observed.
    pub target: Target,
    /// Plugin name and version that served it.
    pub plugin: String,
    /// Features (empty when observe or features failed).
    pub features: FeatureVector,
    /// Classification, when reached.
    pub classification: Option<Classification>,
    /// Stable-cycle count after this cycle.
    pub stable_cycles: u32,
    /// Every proposal the plugin made.
    pub proposals: Vec<Proposal>,
    /// The policy input document, when reached.
    pub policy_input: Option<serde_json::Value>,
    /// The raw policy output, when the policy produced one.
    pub policy_output: Option<serde_json::Value>,
    /// The decision (fail-closed `hold`/`policy_error` when the policy failed).
    pub decision: Option<Decision>,
    /// The operations executed, or that would have been in dry-run.
    pub plan: Vec<Operation>,
    /// Whether the plan was executed (false in dry-run and for non-`act` verdicts).
    pub executed: bool,
    /// The failure that ended this target's cycle early, if any.
    pub error: Option<StageError>,
    /// What was wrong with this target's data, one line per metric or problem: a failed query,
    /// no series for this target, an ambiguous series. Empty when every metric answered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub observe_issues: Vec<String>,
    /// In enforce mode, the intent that carried out the plan: its key, status, attempts and
    /// each operation's result as the actuators reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<Intent>,
}

/// Kill switches, stored by the engine and handed to policies as data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillSwitches {
    /// Stops every loop.
    #[serde(default)]
    pub global: bool,
    /// Per loop name.
    #[serde(default)]
    pub loops: BTreeMap<String, bool>,
    /// Per target id.
    #[serde(default)]
    pub targets: BTreeMap<String, bool>,
    /// Who turned each switch that is on on, and when, keyed `global`, `loop:<name>` or
    /// `target:<id>` (files written before this was recorded have none).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set_by: BTreeMap<String, SwitchSetter>,
}

/// Who turned a kill switch on, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchSetter {
    /// The user (`$USER`, `--by`, or the web page's signed-in user).
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
}
