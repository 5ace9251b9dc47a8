//! The decision journal's record and the kill switches.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    Classification, Decision, FeatureVector, Intent, IntentStatus, Operation, OperationResult,
    Proposal, Target,
};

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

impl StageName {
    /// The name as written in traces, metrics and the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            StageName::Observe => "observe",
            StageName::Features => "features",
            StageName::Classify => "classify",
            StageName::Propose => "propose",
            StageName::Decide => "decide",
            StageName::Act => "act",
        }
    }
}

/// What kind of failure ended a target's cycle: what the report, the metrics and an HTTP API
/// match on (the message is for people).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The plugin sandbox stopped the plugin: a trap, a panic, or an exhausted CPU, time,
    /// memory or stack limit.
    SandboxTrap,
    /// The plugin refused the target or broke the contract (a malformed answer).
    Plugin,
    /// The target's current size is unknown, so no plan could be made.
    UnknownSize,
    /// The stages before did not hand this one what it needs (a bug, recorded, never hidden).
    Incomplete,
    /// The act stage could not route the decision (it chose a proposal that does not exist).
    Act,
    /// An actuator did not carry out the plan: it failed, or a kill switch cancelled it.
    PlanNotCarriedOut,
    /// Recorded before failures had kinds.
    #[default]
    Unclassified,
}

/// A stage that failed for one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageError {
    /// Where it failed.
    pub stage: StageName,
    /// What kind of failure it was.
    #[serde(default)]
    pub kind: FailureKind,
    /// The error, naming the plugin/source and the target.
    pub message: String,
}

/// What was wrong with one target's data: each costs the target a metric, so it holds rather
/// than shrinks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "issue", rename_all = "snake_case")]
pub enum ObserveIssue {
    /// The metric's query failed for the whole fleet.
    QueryFailed {
        /// The metric.
        metric: String,
        /// Why.
        error: String,
    },
    /// The source answered, without a series for this target.
    NoSeries {
        /// The metric.
        metric: String,
    },
    /// The source had a series for this target and had to drop it (ambiguous, malformed).
    SeriesDropped {
        /// The metric.
        metric: String,
        /// Why.
        problem: String,
    },
    /// The source's values of a metric for this target fell outside the metric's domain: a
    /// broken exporter or query, never evidence — the metric is missing for this target.
    OutOfDomain {
        /// The metric.
        metric: String,
        /// The first value outside the domain.
        value: f64,
        /// The values the metric can take.
        domain: crate::Domain,
    },
    /// No series of any metric the source answered named this target: its id and aliases
    /// match no label value (a target that is declared but not scraped, or whose exporters
    /// use other names). Said once rather than once per metric.
    NoMatchingSeries {
        /// The label values that would have matched: its id, then its aliases.
        names: Vec<String>,
    },
    /// The size labels on the target's discovery series are unusable.
    UnusableSize {
        /// Which label, and why.
        problem: String,
    },
    /// Recorded as text by a version before issues were typed.
    #[serde(untagged)]
    Text(String),
}

impl ObserveIssue {
    /// The metric concerned, when the issue is about one.
    pub fn metric(&self) -> Option<&str> {
        match self {
            ObserveIssue::QueryFailed { metric, .. }
            | ObserveIssue::NoSeries { metric }
            | ObserveIssue::SeriesDropped { metric, .. }
            | ObserveIssue::OutOfDomain { metric, .. } => Some(metric),
            ObserveIssue::NoMatchingSeries { .. }
            | ObserveIssue::UnusableSize { .. }
            | ObserveIssue::Text(_) => None,
        }
    }
}

impl fmt::Display for ObserveIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObserveIssue::QueryFailed { metric, error } => {
                write!(f, "{metric}: query failed: {error}")
            }
            ObserveIssue::NoSeries { metric } => {
                write!(f, "{metric}: the source returned no series for this target")
            }
            ObserveIssue::SeriesDropped { metric, problem } => write!(f, "{metric}: {problem}"),
            ObserveIssue::OutOfDomain {
                metric,
                value,
                domain,
            } => {
                // 1e308 written out in full would be 309 digits.
                let value = if value.abs() >= 1e6 {
                    format!("{value:e}")
                } else {
                    value.to_string()
                };
                write!(
                    f,
                    "{metric}: value {value} is outside its domain {domain}: a broken exporter \
                     or query, not evidence"
                )
            }
            ObserveIssue::NoMatchingSeries { names } => write!(
                f,
                "no series of any metric names this target ({}): check that it is scraped, or \
                 add the label values its exporters use to its aliases",
                names.join(", ")
            ),
            ObserveIssue::UnusableSize { problem } => write!(f, "resources: {problem}"),
            ObserveIssue::Text(text) => f.write_str(text),
        }
    }
}

/// What the act stage did with a target's decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ActOutcome {
    /// Nothing to do: the verdict was `hold` or `block`.
    Nothing,
    /// Dry-run: the operations were recorded, not executed.
    WouldExecute {
        /// The operations that would have run.
        operations: Vec<Operation>,
    },
    /// Queued for a human: the operations run only after approval.
    AwaitingApproval {
        /// The operations that would run once approved.
        operations: Vec<Operation>,
    },
    /// Enforce mode, verdict `act`, actuators configured: to be journalled, then executed.
    Ready {
        /// The operations to execute.
        operations: Vec<Operation>,
    },
    /// Executed by the actuators.
    Executed {
        /// Actuator names, in the order they ran.
        actuator: String,
        /// The operations that ran.
        operations: Vec<Operation>,
        /// One result per operation.
        #[serde(default)]
        results: Vec<OperationResult>,
    },
}

impl ActOutcome {
    /// The operations this outcome carries, executed or not.
    pub fn operations(&self) -> &[Operation] {
        match self {
            ActOutcome::Nothing => &[],
            ActOutcome::WouldExecute { operations }
            | ActOutcome::AwaitingApproval { operations }
            | ActOutcome::Ready { operations }
            | ActOutcome::Executed { operations, .. } => operations,
        }
    }

    /// Whether anything was executed.
    pub fn executed(&self) -> bool {
        matches!(self, ActOutcome::Executed { .. })
    }

    /// The outcome of an executed plan, from its results: the actuators named in the order
    /// they ran.
    pub fn executed_by(operations: Vec<Operation>, results: Vec<OperationResult>) -> Self {
        let mut names: Vec<&str> = Vec::new();
        for r in &results {
            if names.last() != Some(&r.actuator.as_str()) {
                names.push(&r.actuator);
            }
        }
        ActOutcome::Executed {
            actuator: names.join(","),
            operations,
            results,
        }
    }
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
    /// What was wrong with this target's data, one per metric or problem: a failed query,
    /// no series for this target, an ambiguous series. Empty when every metric answered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub observe_issues: Vec<ObserveIssue>,
    /// In enforce mode, the intent that carried out the plan: its key, status, attempts and
    /// each operation's result as the actuators reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<Intent>,
    /// What the act stage did, when it was reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<ActOutcome>,
    /// Why the policy could not be evaluated, when it could not (the decision is then the
    /// fail-closed `hold` with `policy_error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_error: Option<String>,
    /// How long the policy evaluation took, in seconds, when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_seconds: Option<f64>,
    /// Why the bootstrap heuristics classified instead of the loop's model (its
    /// `classifier.fallback`); `None` when the configured classifier decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classifier_fallback: Option<String>,
    /// The safety floor of each dimension: what a scale-down may not go below, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<crate::SafetyFloor>,
}

impl JournalEntry {
    /// An entry for `target` in a cycle, before any stage has run.
    pub fn begin(
        loop_name: &str,
        cycle: u64,
        at: DateTime<Utc>,
        target: Target,
        plugin: &str,
    ) -> Self {
        Self {
            loop_name: loop_name.to_string(),
            cycle,
            at,
            target,
            plugin: plugin.to_string(),
            features: FeatureVector::default(),
            classification: None,
            stable_cycles: 0,
            proposals: Vec::new(),
            policy_input: None,
            policy_output: None,
            decision: None,
            plan: Vec::new(),
            executed: false,
            error: None,
            observe_issues: Vec::new(),
            intent: None,
            outcome: None,
            policy_error: None,
            policy_seconds: None,
            classifier_fallback: None,
            floor: None,
        }
    }

    /// The proposal the decision chose, if any.
    pub fn chosen_proposal(&self) -> Option<&Proposal> {
        self.decision.as_ref()?.chosen(&self.proposals)
    }

    /// Records how the intent that carried out this entry's plan ended: the one place where an
    /// intent's end becomes the journal's (the store and a running cycle both apply it).
    pub fn finish_intent(&mut self, intent: &Intent) {
        let done = intent.status == IntentStatus::Done;
        self.executed = done;
        self.intent = Some(intent.clone());
        if done {
            self.outcome = Some(ActOutcome::executed_by(
                intent.operations.clone(),
                intent.results.clone(),
            ));
        } else {
            self.error = Some(StageError {
                stage: StageName::Act,
                kind: FailureKind::PlanNotCarriedOut,
                message: format!(
                    "plan {}: {}",
                    intent.status,
                    intent.error.as_deref().unwrap_or_default()
                ),
            });
        }
    }
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
