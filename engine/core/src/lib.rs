//! Domain types shared by every stage of the setpoint loop.
//!
//! Every stage crate depends on this one and on nothing heavier, so the types that cross a stage
//! boundary — a [`Target`], its [`FeatureVector`], a [`Classification`], the plugin's
//! [`Proposal`]s, the policy's [`Decision`] — are defined once, here, with their JSON shape.
//! The JSON shape matters: the policy input document and the decision journal are built from
//! these types, and policy authors read and write them.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub mod resources;

pub use resources::{format_bytes, format_cpu};

/// A managed thing: one database instance, one cache, one cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    /// Stable identifier, unique within a loop (usually the `instance` label).
    pub id: String,
    /// Technology served by the target (`postgres`, `redis`, …); selects the plugin.
    pub technology: String,
    /// Labels carried over from discovery (exporter labels, static config).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// What the target runs with now.
    pub resources: Resources,
}

/// The size of a target and the technology settings that must follow it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// CPU in millicores (1000 = one vCPU).
    pub cpu_millicores: u64,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// Nodes (brokers, data nodes); 1 for a single server. CPU and memory are per node.
    #[serde(default = "one")]
    pub replicas: u32,
    /// Technology parameters tied to the size, e.g. PostgreSQL `shared_buffers` = `8GB`.
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
}

fn one() -> u32 {
    1
}

/// Configured lower and upper sizes a proposal must stay within.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bounds {
    /// Smallest CPU a proposal may go to, in millicores.
    pub min_cpu_millicores: u64,
    /// Largest CPU a proposal may go to, in millicores.
    pub max_cpu_millicores: u64,
    /// Smallest memory a proposal may go to, in bytes.
    pub min_memory_bytes: u64,
    /// Largest memory a proposal may go to, in bytes.
    pub max_memory_bytes: u64,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            min_cpu_millicores: 1_000,
            max_cpu_millicores: 64_000,
            min_memory_bytes: 2 * resources::GIB,
            max_memory_bytes: 512 * resources::GIB,
        }
    }
}

/// One named feature computed by a plugin, with how much of its data was present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feature {
    /// Feature name from the plugin's schema, e.g. `cpu_w1` (W-1 is the most recent week).
    pub name: String,
    /// The value, or `None` when there was too little data to compute it.
    pub value: Option<f64>,
    /// Fraction (0..=1) of the expected samples that were present.
    pub coverage: f64,
}

/// The ordered feature vector of one target for one cycle.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FeatureVector {
    /// Features in the plugin's schema order.
    pub features: Vec<Feature>,
}

impl FeatureVector {
    /// Looks a feature up by name.
    pub fn get(&self, name: &str) -> Option<&Feature> {
        self.features.iter().find(|f| f.name == name)
    }

    /// The value of a feature, `None` when absent or missing.
    pub fn value(&self, name: &str) -> Option<f64> {
        self.get(name).and_then(|f| f.value)
    }
}

/// The three classes a target can be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// The target is oversized.
    ScaleDown,
    /// The target is about right, or there is not enough evidence to change it.
    Remain,
    /// The target is undersized or about to be.
    ScaleUp,
}

impl Class {
    /// The snake_case name used in reports, policies and the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::ScaleDown => "scale_down",
            Class::Remain => "remain",
            Class::ScaleUp => "scale_up",
        }
    }

    /// The action kind that carries this class out, if any.
    pub fn action(self) -> Option<ActionKind> {
        match self {
            Class::ScaleDown => Some(ActionKind::ScaleDown),
            Class::Remain => None,
            Class::ScaleUp => Some(ActionKind::ScaleUp),
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One piece of evidence behind a classification: a feature compared with a threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Feature name.
    pub feature: String,
    /// Its value (`None` when missing).
    pub value: Option<f64>,
    /// The comparison made, e.g. `< 0.40`.
    pub test: String,
    /// Whether the comparison held.
    pub held: bool,
}

impl Evidence {
    /// The evidence that feature `name` is missing from `features` (absent or not finite),
    /// with the coverage it had.
    pub fn missing(name: &str, features: &FeatureVector) -> Self {
        Evidence {
            feature: name.to_string(),
            value: None,
            test: format!(
                "present (coverage {:.0} %)",
                features
                    .get(name)
                    .map(|f| f.coverage * 100.0)
                    .unwrap_or(0.0)
            ),
            held: false,
        }
    }
}

/// Why a classifier chose a class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// Machine-readable reason, e.g. `low_utilisation_all_weeks`, `insufficient_data`.
    pub code: String,
    /// The rule (or model output) that decided, in words.
    pub rule: String,
    /// The feature values that decided it.
    pub evidence: Vec<Evidence>,
}

/// The classifier's output for one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Classification {
    /// The class.
    pub class: Class,
    /// Confidence in 0..=1.
    pub confidence: f64,
    /// Classifier name, e.g. `bootstrap-heuristics`.
    pub model: String,
    /// Classifier version (of the rules or the trained model).
    pub model_version: String,
    /// Why.
    pub explanation: Explanation,
}

/// Kinds of action a plugin can propose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Give the target more CPU and memory.
    ScaleUp,
    /// Give the target less CPU and memory.
    ScaleDown,
}

impl ActionKind {
    /// The snake_case name used in policies and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::ScaleUp => "scale_up",
            ActionKind::ScaleDown => "scale_down",
        }
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How risky carrying a proposal out is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    /// Online, reversible, no restart.
    Low,
    /// Needs a rolling restart or a switchover.
    Medium,
    /// Disruptive or hard to reverse.
    High,
}

/// One typed step of a plan. Actuators execute these; dry-run records them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Operation {
    /// Change the CPU and memory given to the target.
    Resize {
        /// New CPU in millicores.
        cpu_millicores: u64,
        /// New memory in bytes.
        memory_bytes: u64,
    },
    /// Change one technology parameter.
    SetParameter {
        /// Parameter name, e.g. `shared_buffers`.
        name: String,
        /// New value, in the technology's own syntax.
        value: String,
        /// Whether the change takes effect only after a restart.
        requires_restart: bool,
    },
    /// Restart the target's processes (rolling where the technology allows it).
    Restart {
        /// Why the restart is needed.
        reason: String,
    },
    /// Change the number of nodes (brokers, data nodes).
    SetReplicas {
        /// The new node count.
        replicas: u32,
    },
    /// Move data (partitions, shards) across the nodes after their count changed.
    Rebalance {
        /// What to rebalance and why.
        reason: String,
    },
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operation::Resize {
                cpu_millicores,
                memory_bytes,
            } => write!(
                f,
                "resize to {} / {}",
                format_cpu(*cpu_millicores),
                format_bytes(*memory_bytes)
            ),
            Operation::SetParameter {
                name,
                value,
                requires_restart,
            } => {
                write!(f, "set {name} = {value}")?;
                if *requires_restart {
                    f.write_str(" (needs restart)")?;
                }
                Ok(())
            }
            Operation::Restart { reason } => write!(f, "restart ({reason})"),
            Operation::SetReplicas { replicas } => write!(f, "set the node count to {replicas}"),
            Operation::Rebalance { reason } => write!(f, "rebalance ({reason})"),
        }
    }
}

/// A concrete, typed plan for one action kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    /// The action kind this plan carries out.
    pub action: ActionKind,
    /// One line for humans, e.g. `8 vCPU / 32 GiB → 4 vCPU / 16 GiB, shared_buffers 8GB → 4GB`.
    pub summary: String,
    /// Resources before.
    pub before: Resources,
    /// Resources after.
    pub after: Resources,
    /// The steps that carry it out, in order.
    pub operations: Vec<Operation>,
    /// How risky it is.
    pub risk: Risk,
    /// Why the plugin sized it this way (floors and caps that applied included).
    pub rationale: String,
}

impl Proposal {
    /// Checks the plan against the contract a plugin must keep, given the target's current size
    /// and the bounds it was asked to stay within: the new size is positive and within the
    /// bounds, it moves in the action's direction (CPU, memory and node count; at least one
    /// changes, none the other way), `before` is the current size, every resize operation is
    /// the new size, and every parameter has a name and the value `after` gives it.
    pub fn check(&self, current: &Resources, bounds: &Bounds) -> Result<(), String> {
        let in_bounds = |cpu: u64, memory: u64, what: &str| {
            if cpu == 0 || memory == 0 {
                return Err(format!("{what} has a zero size ({cpu} m, {memory} bytes)"));
            }
            if !(bounds.min_cpu_millicores..=bounds.max_cpu_millicores).contains(&cpu) {
                return Err(format!(
                    "{what} has {cpu} millicores, outside the bounds {}..={}",
                    bounds.min_cpu_millicores, bounds.max_cpu_millicores
                ));
            }
            if !(bounds.min_memory_bytes..=bounds.max_memory_bytes).contains(&memory) {
                return Err(format!(
                    "{what} has {memory} bytes of memory, outside the bounds {}..={}",
                    bounds.min_memory_bytes, bounds.max_memory_bytes
                ));
            }
            Ok(())
        };
        let (after, before) = (&self.after, &self.before);
        if after.replicas == 0 {
            return Err("the new size has zero nodes".to_string());
        }
        in_bounds(after.cpu_millicores, after.memory_bytes, "the new size")?;
        let size = |r: &Resources| (r.cpu_millicores, r.memory_bytes, r.replicas);
        let (cpu, memory, replicas) = size(after);
        let (now_cpu, now_memory, now_replicas) = size(current);
        let direction_ok = match self.action {
            ActionKind::ScaleDown => {
                cpu <= now_cpu && memory <= now_memory && replicas <= now_replicas
            }
            ActionKind::ScaleUp => {
                cpu >= now_cpu && memory >= now_memory && replicas >= now_replicas
            }
        } && size(after) != size(current);
        if !direction_ok {
            return Err(format!(
                "goes from {now_cpu} m / {now_memory} bytes / {now_replicas} node(s) to {cpu} m / \
                 {memory} bytes / {replicas} node(s), which is not a {}",
                self.action
            ));
        }
        if size(before) != size(current) {
            return Err(format!(
                "`before` is {} m / {} bytes / {} node(s), not the target's {now_cpu} m / \
                 {now_memory} bytes / {now_replicas} node(s)",
                before.cpu_millicores, before.memory_bytes, before.replicas
            ));
        }
        for op in &self.operations {
            match op {
                Operation::Resize {
                    cpu_millicores,
                    memory_bytes,
                } => {
                    in_bounds(*cpu_millicores, *memory_bytes, "a resize operation")?;
                    if (*cpu_millicores, *memory_bytes) != (cpu, memory) {
                        return Err(format!(
                            "a resize operation to {cpu_millicores} m / {memory_bytes} bytes \
                             is not the new size {cpu} m / {memory} bytes"
                        ));
                    }
                }
                Operation::SetParameter { name, value, .. } => {
                    if name.trim().is_empty() {
                        return Err("a set-parameter operation has no name".to_string());
                    }
                    if let Some(planned) = after.parameters.get(name)
                        && planned != value
                    {
                        return Err(format!(
                            "a set-parameter operation sets {name} to {value:?}, `after` says {planned:?}"
                        ));
                    }
                }
                Operation::SetReplicas { replicas: n } if *n != replicas => {
                    return Err(format!(
                        "a set-replicas operation to {n} is not the new node count {replicas}"
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// What the policy says to do with a target this cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Execute the chosen proposal now.
    Act,
    /// Queue the chosen proposal for a human.
    Review,
    /// Not now (hysteresis, low confidence, nothing to do, policy error).
    Hold,
    /// Forbidden (kill switch, guardrail).
    Block,
}

impl Verdict {
    /// The snake_case name used in policies and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Act => "act",
            Verdict::Review => "review",
            Verdict::Hold => "hold",
            Verdict::Block => "block",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A machine-readable reason with a message for humans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// Stable code, e.g. `kill_switch`, `approval_required`, `policy_error`.
    pub code: String,
    /// What it means for this target.
    pub message: String,
}

impl Reason {
    /// Builds a reason.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// The policy's decision for one target, deserialised from the Rego output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// The verdict.
    pub verdict: Verdict,
    /// The action kind of the chosen proposal, if one was chosen.
    #[serde(default)]
    pub proposal: Option<ActionKind>,
    /// Why; the first reason is the top one.
    pub reasons: Vec<Reason>,
}

impl Decision {
    /// The fail-closed decision used whenever the policy cannot be evaluated or its output is malformed.
    pub fn policy_error(message: impl Into<String>) -> Self {
        Self {
            verdict: Verdict::Hold,
            proposal: None,
            reasons: vec![Reason::new("policy_error", message)],
        }
    }

    /// The proposal this decision chose among `proposals`.
    pub fn chosen<'a>(&self, proposals: &'a [Proposal]) -> Option<&'a Proposal> {
        let action = self.proposal?;
        proposals.iter().find(|p| p.action == action)
    }
}

/// Whether the loop may execute anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Execute nothing; record what would run.
    #[default]
    DryRun,
    /// Execute `act` verdicts through the actuators.
    Enforce,
}

impl Mode {
    /// The kebab-case name used in config, policies and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::DryRun => "dry-run",
            Mode::Enforce => "enforce",
        }
    }
}

/// One past cycle's class for a target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassRecord {
    /// The cycle's `now`.
    pub at: DateTime<Utc>,
    /// The class given then.
    pub class: Class,
    /// The start of the loop's schedule period the cycle fell in (its latest scheduled time
    /// at or before `at`): cycles of one period count once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<DateTime<Utc>>,
}

/// The last action taken (or approved) on a target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionRecord {
    /// When it ran.
    pub at: DateTime<Utc>,
    /// What kind of action it was.
    pub action: ActionKind,
    /// Its one-line summary.
    pub summary: String,
}

/// What the engine remembers about a target across cycles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetHistory {
    /// When the target was first seen by this loop.
    pub first_managed_at: DateTime<Utc>,
    /// Classes of recent cycles, oldest first (bounded).
    pub classes: Vec<ClassRecord>,
    /// Number of consecutive cycles, up to and including the latest, with the latest class.
    pub stable_cycles: u32,
    /// The last action carried out, if any.
    pub last_action: Option<ActionRecord>,
}

impl TargetHistory {
    /// How many recent class records are kept per target.
    pub const MAX_CLASSES: usize = 52;

    /// A history that starts now.
    pub fn new(now: DateTime<Utc>) -> Self {
        Self {
            first_managed_at: now,
            classes: Vec::new(),
            stable_cycles: 0,
            last_action: None,
        }
    }

    /// Records this cycle's class and updates the stable-cycle count.
    pub fn record_class(&mut self, at: DateTime<Utc>, class: Class) {
        self.record_class_in_period(at, None, class);
    }

    /// Records this cycle's class as the class of the schedule period starting at `period`.
    /// Hysteresis counts periods, not invocations: another cycle in the period of the last
    /// record (a second `run --once`, a cycle run early) replaces that record rather than
    /// adding one, so it never counts twice.
    pub fn record_class_in_period(
        &mut self,
        at: DateTime<Utc>,
        period: Option<DateTime<Utc>>,
        class: Class,
    ) {
        // A cycle dated before the last counted period (the clock jumped back, or an older
        // time replayed) says nothing about how long the class has held: it changes no count.
        if let (Some(p), Some(last)) = (period, self.classes.last().and_then(|l| l.period))
            && p < last
        {
            return;
        }
        let same_period = period.is_some()
            && self
                .classes
                .last()
                .is_some_and(|last| last.period == period);
        if same_period && let Some(last) = self.classes.pop() {
            if last.class == class {
                self.classes.push(ClassRecord { at, class, period });
                return;
            }
            // The period's class changed: count the run the earlier periods left.
            let run = self
                .classes
                .iter()
                .rev()
                .take_while(|r| r.class == class)
                .count();
            self.stable_cycles = u32::try_from(run).unwrap_or(u32::MAX).saturating_add(1);
            self.classes.push(ClassRecord { at, class, period });
            return;
        }
        let same = self.classes.last().is_some_and(|last| last.class == class);
        self.stable_cycles = if same { self.stable_cycles + 1 } else { 1 };
        self.classes.push(ClassRecord { at, class, period });
        if self.classes.len() > Self::MAX_CLASSES {
            let excess = self.classes.len() - Self::MAX_CLASSES;
            self.classes.drain(..excess);
        }
    }
}

/// The history as the policy sees it: derived figures computed by the host so that policies
/// need no date arithmetic of their own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryView {
    /// When the target was first managed (RFC 3339).
    pub first_managed_at: DateTime<Utc>,
    /// Whole days since it was first managed, as of `now`.
    pub managed_days: i64,
    /// Consecutive cycles with the current class, this cycle included.
    pub stable_cycles: u32,
    /// Classes of previous cycles (this one excluded), oldest first.
    pub classes: Vec<ClassRecord>,
    /// The last action carried out, if any.
    pub last_action: Option<ActionRecord>,
    /// Whole days since the last action, if any.
    pub days_since_last_action: Option<i64>,
}

/// The loop a decision is made for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoopInfo {
    /// Loop name from the config, e.g. `weekly-rightsizing`.
    pub name: String,
    /// Plugin name serving this target.
    pub plugin: String,
    /// The cycle's sequence number within the loop.
    pub cycle: u64,
}

/// A feature as the policy sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyFeature {
    /// The value, `null` when missing.
    pub value: Option<f64>,
    /// Fraction of data present.
    pub coverage: f64,
}

/// The document given to the policy: everything it may base a decision on.
///
/// Documented field by field in `policies/README.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyInput {
    /// The target.
    pub target: Target,
    /// Features by name.
    pub features: BTreeMap<String, PolicyFeature>,
    /// The classification.
    pub classification: Classification,
    /// The target's history.
    pub history: HistoryView,
    /// Every proposal the plugin made, one per feasible action kind.
    pub proposals: Vec<Proposal>,
    /// The cycle's time (RFC 3339). Policies use this, never the wall clock, so decisions replay.
    pub now: DateTime<Utc>,
    /// The same instant in nanoseconds since the Unix epoch, for `time.*` builtins.
    pub now_ns: i64,
    /// The loop's mode.
    pub mode: Mode,
    /// The loop.
    #[serde(rename = "loop")]
    pub loop_info: LoopInfo,
    /// The configured size bounds for the target.
    pub bounds: Bounds,
    /// A reviewer's approval or rejection of this target's proposal, still in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<ReviewFeedback>,
}

pub mod clock;
pub mod control;
pub mod floor;
pub mod intent;
pub mod journal;
pub mod plugin;
pub mod review;

pub use clock::{Clock, FixedClock, SharedClock, SystemClock, fixed_clock, system_clock};
pub use floor::{
    Dimension, DimensionBound, DimensionFloor, FloorSettings, NEAR_SATURATION, PeakStat, SATURATED,
    SafetyFloor, WeekPeak,
};
pub use intent::{Intent, IntentStatus, OpStatus, OperationResult};
pub use journal::{
    ActOutcome, FailureKind, JournalEntry, KillSwitches, ObserveIssue, StageError, StageName,
    SwitchSetter,
};
pub use plugin::{
    Aggregation, Domain, FeatureSpec, MetricSeries, MetricSpec, PluginDescriptor, SimMetric,
    SimScenario, Window,
};
pub use review::{ReviewFeedback, ReviewItem, ReviewStatus};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_period_counts_once_and_its_last_class_wins() {
        let t = |day: i64| {
            DateTime::<Utc>::from_timestamp(1_795_500_000 + day * 86_400, 0).unwrap_or_default()
        };
        let mut history = TargetHistory::new(t(0));
        let (p1, p2, p3) = (Some(t(0)), Some(t(7)), Some(t(14)));
        history.record_class_in_period(t(0), p1, Class::ScaleDown);
        history.record_class_in_period(t(1), p2, Class::ScaleDown);
        history.record_class_in_period(t(2), p2, Class::ScaleDown);
        assert_eq!(history.stable_cycles, 2, "the second period counted once");
        // The period's class changes on a later cycle of it: the run restarts there...
        history.record_class_in_period(t(3), p2, Class::Remain);
        assert_eq!(history.stable_cycles, 1);
        // ...and changing back restores the run the earlier period left.
        history.record_class_in_period(t(4), p2, Class::ScaleDown);
        assert_eq!(history.stable_cycles, 2);
        history.record_class_in_period(t(14), p3, Class::ScaleDown);
        assert_eq!(history.stable_cycles, 3);
        assert_eq!(history.classes.len(), 3);
        // The clock jumps back a week: nothing is counted again.
        history.record_class_in_period(t(8), p2, Class::ScaleDown);
        history.record_class_in_period(t(1), p1, Class::ScaleUp);
        assert_eq!(history.stable_cycles, 3);
        assert_eq!(history.classes.len(), 3);
        // Without a schedule every cycle counts, as before.
        history.record_class(t(15), Class::ScaleDown);
        assert_eq!(history.stable_cycles, 4);
    }

    fn resources(cpu: u64, memory: u64, replicas: u32) -> Resources {
        Resources {
            cpu_millicores: cpu,
            memory_bytes: memory,
            replicas,
            parameters: Default::default(),
        }
    }

    fn current() -> Resources {
        resources(8_000, 32 << 30, 1)
    }

    fn proposal(action: ActionKind, cpu: u64, memory: u64) -> Proposal {
        Proposal {
            action,
            summary: "s".into(),
            before: current(),
            after: resources(cpu, memory, 1),
            operations: vec![Operation::Resize {
                cpu_millicores: cpu,
                memory_bytes: memory,
            }],
            risk: Risk::Low,
            rationale: "r".into(),
        }
    }

    fn error(p: Proposal) -> String {
        p.check(&current(), &Bounds::default())
            .err()
            .unwrap_or_default()
    }

    #[test]
    fn a_plan_within_bounds_in_its_direction_passes() {
        let bounds = Bounds::default();
        assert_eq!(
            proposal(ActionKind::ScaleDown, 4_000, 16 << 30).check(&current(), &bounds),
            Ok(())
        );
        assert_eq!(
            proposal(ActionKind::ScaleUp, 16_000, 64 << 30).check(&current(), &bounds),
            Ok(())
        );
        // Adding nodes of the same size is a scale-up.
        let mut p = proposal(ActionKind::ScaleUp, 8_000, 32 << 30);
        p.after.replicas = 3;
        p.operations = vec![Operation::SetReplicas { replicas: 3 }];
        assert_eq!(p.check(&current(), &bounds), Ok(()));
    }

    #[test]
    fn sizes_outside_the_bounds_or_against_the_action_are_refused() {
        assert!(
            error(proposal(ActionKind::ScaleDown, 500, 16 << 30))
                .contains("outside the bounds 1000..=64000")
        );
        assert!(
            error(proposal(ActionKind::ScaleDown, 16_000, 64 << 30)).contains("not a scale_down")
        );
        assert!(error(proposal(ActionKind::ScaleUp, 8_000, 32 << 30)).contains("not a scale_up"));
        // Fewer CPUs but more memory is not a scale-down.
        assert!(
            error(proposal(ActionKind::ScaleDown, 4_000, 64 << 30)).contains("not a scale_down")
        );
        let mut p = proposal(ActionKind::ScaleDown, 4_000, 16 << 30);
        p.after.replicas = 2;
        assert!(error(p).contains("not a scale_down"));
        let mut p = proposal(ActionKind::ScaleDown, 4_000, 16 << 30);
        p.after.replicas = 0;
        assert!(error(p).contains("zero nodes"));
    }

    #[test]
    fn operations_must_carry_out_the_plan_from_the_current_size() {
        let mut p = proposal(ActionKind::ScaleDown, 4_000, 16 << 30);
        p.before.cpu_millicores = 1;
        assert!(error(p).contains("not the target's"));
        let mut p = proposal(ActionKind::ScaleDown, 4_000, 16 << 30);
        p.operations = vec![Operation::Resize {
            cpu_millicores: 0,
            memory_bytes: 0,
        }];
        assert!(error(p).contains("a resize operation has a zero size"));
        let mut p = proposal(ActionKind::ScaleDown, 4_000, 16 << 30);
        p.operations = vec![Operation::Resize {
            cpu_millicores: 2_000,
            memory_bytes: 16 << 30,
        }];
        assert!(error(p).contains("is not the new size"));
        let mut p = proposal(ActionKind::ScaleDown, 4_000, 16 << 30);
        p.operations = vec![Operation::SetParameter {
            name: " ".into(),
            value: "1".into(),
            requires_restart: false,
        }];
        assert!(error(p).contains("no name"));
        let mut p = proposal(ActionKind::ScaleDown, 4_000, 16 << 30);
        p.after
            .parameters
            .insert("shared_buffers".into(), "4GB".into());
        p.operations.push(Operation::SetParameter {
            name: "shared_buffers".into(),
            value: "2GB".into(),
            requires_restart: true,
        });
        assert!(error(p).contains("`after` says \"4GB\""));
        let mut p = proposal(ActionKind::ScaleUp, 8_000, 32 << 30);
        p.after.replicas = 3;
        p.operations = vec![Operation::SetReplicas { replicas: 4 }];
        assert!(error(p).contains("not the new node count 3"));
    }
}
