//! The stages of a loop, each a named unit with a typed input and output.
//!
//! ```text
//!  observe ──▶ fingerprint ──▶ classify ──▶ propose ──▶ decide ──▶ act ──▶ record
//!  Observed    Fingerprinted   Classified   Proposed    Decided    Acted   JournalEntry
//!  (fleet)     (plugin batch)  (per target) (plugin     (Rego, per (per    (store, then
//!                                            batch)      target)    target) the intent)
//! ```
//!
//! A loop is their composition ([`crate::cycle`] for the weekly loop); another kind of loop
//! reuses the subset it needs. Every stage after `observe` carries one [`TargetRun`]: the
//! target's journal entry, filled in as the stages go, and its trace span. The entry is the
//! one record of a target's cycle: the report row ([`crate::TargetRow::from`]), `explain`, the
//! HTML report, the review page and the engine's metrics are all read from it.
//!
//! A stage that fails for a target hands back a [`Failed`] with a typed [`TargetError`]; what
//! the entry holds so far is kept, the error is written into it as a
//! [`setpoint_core::StageError`] with its [`setpoint_core::FailureKind`], and the target goes
//! straight to `record`. Nothing downstream reads an error's message to learn what happened.

pub mod act;
pub mod classify;
pub mod decide;
pub mod fingerprint;
pub mod observe;
pub mod propose;
pub mod record;

use chrono::{DateTime, Utc};
use setpoint_core::{
    FailureKind, JournalEntry, ObserveIssue, SafetyFloor, StageError, StageName, Target, Window,
};
use setpoint_plugin_host::PluginError;
use tracing::info_span;

use crate::LoopRuntime;

pub use act::Acted;
pub use classify::Classified;
pub use decide::Decided;
pub use fingerprint::Fingerprinted;
pub use observe::Observed;
pub use propose::Proposed;
pub use record::Prior;

/// What every stage of one cycle of one loop shares.
pub struct CycleContext<'a> {
    /// The loop.
    pub lp: &'a LoopRuntime,
    /// The cycle's number in the state store.
    pub cycle: u64,
    /// The cycle's time.
    pub now: DateTime<Utc>,
    /// The observation window.
    pub window: Window,
    /// `name version` of the loop's plugin.
    pub plugin_label: String,
    /// A cycle for one target (an approval re-checked at once): the class history is not
    /// advanced, so hysteresis counts scheduled cycles only.
    pub targeted: bool,
    /// The mode this cycle runs in: the loop's, except that a broken journal chain runs an
    /// enforce loop as dry-run.
    pub mode: setpoint_core::Mode,
}

/// One target on its way through a cycle.
pub struct TargetRun {
    /// The target's record, filled in by each stage (boxed: runs move from stage to stage).
    pub entry: Box<JournalEntry>,
    /// The target's trace span; each stage's span is its child.
    pub span: tracing::Span,
}

impl TargetRun {
    /// Starts the record and the span of `target` in this cycle.
    pub fn begin(
        context: &CycleContext<'_>,
        target: Target,
        issues: Vec<ObserveIssue>,
        floor: SafetyFloor,
    ) -> Self {
        let lp = context.lp;
        // The attributes a person filters traces on (documented in the crate docs); those not
        // known yet are recorded as the stages produce them.
        let span = info_span!(
            "target",
            target = %target.id,
            setpoint.target = %target.id,
            setpoint.technology = %target.technology,
            setpoint.loop_name = %lp.config.name,
            setpoint.dry_run = context.mode == setpoint_core::Mode::DryRun,
            setpoint.policy_bundle = %lp.policy_hash,
            setpoint.class = tracing::field::Empty,
            setpoint.confidence = tracing::field::Empty,
            setpoint.model = tracing::field::Empty,
            setpoint.model_version = tracing::field::Empty,
            setpoint.verdict = tracing::field::Empty,
            setpoint.reason_codes = tracing::field::Empty,
            setpoint.proposal = tracing::field::Empty,
            setpoint.executed = tracing::field::Empty,
            setpoint.error = tracing::field::Empty,
        );
        let mut entry = JournalEntry::begin(
            lp.config.name.as_str(),
            context.cycle,
            context.now,
            target,
            &context.plugin_label,
        );
        entry.observe_issues = issues;
        entry.floor = Some(floor);
        Self {
            entry: Box::new(entry),
            span,
        }
    }

    /// Ends this target's way through the stages with `error`, kept in its record.
    pub fn fail(mut self, error: TargetError) -> Failed {
        let message = error.to_string();
        {
            let _entered = self.span.enter();
            tracing::warn!(stage = error.stage().as_str(), error = %message, "target failed");
        }
        self.span.record("setpoint.error", message.as_str());
        self.entry.error = Some(StageError {
            stage: error.stage(),
            kind: error.kind(),
            message,
        });
        Failed { run: self }
    }
}

/// A target whose cycle a stage ended early; its record holds the error.
pub struct Failed {
    /// The target's run, its entry's `error` set.
    pub run: TargetRun,
}

/// What a stage hands the next for one target: its output, or the failure that ends the
/// target's way through the stages.
pub type Staged<T> = Result<T, Failed>;

/// The run of the target a staged result is about, whichever way its stages went.
pub fn run_mut<T: AsMut<TargetRun>>(staged: &mut Staged<T>) -> &mut TargetRun {
    match staged {
        Ok(output) => output.as_mut(),
        Err(failed) => &mut failed.run,
    }
}

/// Every stage's output carries its target's run.
macro_rules! carries_run {
    ($($stage:ty),*) => {$(
        impl AsMut<TargetRun> for $stage {
            fn as_mut(&mut self) -> &mut TargetRun {
                &mut self.run
            }
        }
    )*};
}
carries_run!(Fingerprinted, Classified, Proposed, Decided, Acted);

/// Why a stage could not go on with a target.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The plugin's `features` call failed for this target.
    #[error(transparent)]
    Features(PluginError),
    /// The target's current size is unknown, so the plugin cannot be asked for a plan.
    #[error(
        "current resources of target {target:?} are unknown; declare them under loops[].targets in the config, or give its discovery series {cpu} and {memory} labels",
        cpu = observe::CPU_LABEL,
        memory = observe::MEMORY_LABEL
    )]
    UnknownSize {
        /// The target.
        target: String,
    },
    /// The plugin's `propose` call failed for this target.
    #[error(transparent)]
    Propose(PluginError),
    /// The plugin's batch answered fewer targets than it was asked about.
    #[error("the plugin gave no proposals for target {target:?}")]
    NoAnswer {
        /// The target.
        target: String,
    },
    /// The act stage could not route the decision.
    #[error(transparent)]
    Act(setpoint_act::ActError),
}

impl TargetError {
    /// The stage that failed.
    pub fn stage(&self) -> StageName {
        match self {
            TargetError::Features(_) => StageName::Features,
            TargetError::UnknownSize { .. }
            | TargetError::Propose(_)
            | TargetError::NoAnswer { .. } => StageName::Propose,
            TargetError::Act(_) => StageName::Act,
        }
    }

    /// The kind of failure, for the report, the metrics and the journal.
    pub fn kind(&self) -> FailureKind {
        match self {
            TargetError::Features(error) | TargetError::Propose(error) => plugin_failure(error),
            TargetError::UnknownSize { .. } => FailureKind::UnknownSize,
            TargetError::NoAnswer { .. } => FailureKind::Incomplete,
            TargetError::Act(_) => FailureKind::Act,
        }
    }
}

/// Whether the sandbox stopped the plugin, rather than the plugin refusing or misbehaving.
fn plugin_failure(error: &PluginError) -> FailureKind {
    use setpoint_plugin_host::Failure;
    match error.failure() {
        Some(
            Failure::Trap { .. }
            | Failure::Panic { .. }
            | Failure::OutOfFuel { .. }
            | Failure::Timeout { .. }
            | Failure::MemoryLimit { .. }
            | Failure::StackOverflow,
        ) => FailureKind::SandboxTrap,
        _ => FailureKind::Plugin,
    }
}
