//! The act stage: turns a decision into what happens next.
//!
//! Only an `act` verdict in `enforce` mode reaches an [`Actuator`]. In `dry-run` (the default)
//! nothing is executed and the operations that would have run are recorded; a `review` verdict
//! goes to the approval queue instead. Keeping this decision in one function makes the rule
//! "no action without a policy verdict of act" checkable in one place.

pub mod render;

use serde::{Deserialize, Serialize};
use setpoint_core::{Decision, Mode, Operation, Proposal, Target, Verdict};

/// Errors raised by actuators.
#[derive(Debug, thiserror::Error)]
pub enum ActError {
    /// The actuator could not carry out an operation.
    #[error(
        "actuator {actuator} failed on target {target:?} at operation {index} ({operation}): {message}"
    )]
    Failed {
        /// Actuator name.
        actuator: String,
        /// Target id.
        target: String,
        /// Index of the failing operation.
        index: usize,
        /// The operation, for humans.
        operation: String,
        /// What went wrong.
        message: String,
    },
    /// The decision chose a proposal that the plugin did not make.
    #[error(
        "the decision for target {target:?} chose proposal {action} that is not among the plugin's proposals"
    )]
    UnknownProposal {
        /// Target id.
        target: String,
        /// The chosen action kind.
        action: String,
    },
}

/// Something that carries out operations on real infrastructure.
pub trait Actuator: Send + Sync {
    /// Name used in traces and errors, e.g. `patroni`.
    fn name(&self) -> &str;
    /// Executes the operations in order; idempotent; stops at the first failure.
    fn execute(&self, target: &Target, operations: &[Operation]) -> Result<(), ActError>;
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
    /// Executed by an actuator.
    Executed {
        /// Actuator name.
        actuator: String,
        /// The operations that ran.
        operations: Vec<Operation>,
    },
}

impl ActOutcome {
    /// The operations this outcome carries, executed or not.
    pub fn operations(&self) -> &[Operation] {
        match self {
            ActOutcome::Nothing => &[],
            ActOutcome::WouldExecute { operations }
            | ActOutcome::AwaitingApproval { operations }
            | ActOutcome::Executed { operations, .. } => operations,
        }
    }

    /// Whether anything was executed.
    pub fn executed(&self) -> bool {
        matches!(self, ActOutcome::Executed { .. })
    }
}

/// Finds the proposal a decision chose.
pub fn chosen_proposal<'a>(decision: &Decision, proposals: &'a [Proposal]) -> Option<&'a Proposal> {
    let action = decision.proposal?;
    proposals.iter().find(|p| p.action == action)
}

/// Carries a decision out according to the mode.
///
/// `actuator` is consulted only for an `act` verdict in `enforce` mode; with none configured,
/// such a decision is recorded as would-execute, never silently dropped.
pub fn act(
    target: &Target,
    decision: &Decision,
    proposals: &[Proposal],
    mode: Mode,
    actuator: Option<&dyn Actuator>,
) -> Result<ActOutcome, ActError> {
    if matches!(decision.verdict, Verdict::Hold | Verdict::Block) {
        return Ok(ActOutcome::Nothing);
    }
    let proposal =
        chosen_proposal(decision, proposals).ok_or_else(|| ActError::UnknownProposal {
            target: target.id.clone(),
            action: decision
                .proposal
                .map(|a| a.to_string())
                .unwrap_or_else(|| "none".into()),
        })?;
    let operations = proposal.operations.clone();
    match (decision.verdict, mode, actuator) {
        (Verdict::Review, _, _) => Ok(ActOutcome::AwaitingApproval { operations }),
        (Verdict::Act, Mode::Enforce, Some(actuator)) => {
            actuator.execute(target, &operations)?;
            Ok(ActOutcome::Executed {
                actuator: actuator.name().to_string(),
                operations,
            })
        }
        _ => Ok(ActOutcome::WouldExecute { operations }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Mutex;

    use super::*;
    use setpoint_core::{ActionKind, Reason, Resources, Risk};

    struct Recording(Mutex<Vec<Operation>>);

    impl Actuator for Recording {
        fn name(&self) -> &str {
            "recording"
        }
        fn execute(&self, _target: &Target, operations: &[Operation]) -> Result<(), ActError> {
            self.0.lock().unwrap().extend_from_slice(operations);
            Ok(())
        }
    }

    fn fixture() -> (Target, Vec<Proposal>) {
        let resources = Resources {
            cpu_millicores: 8000,
            memory_bytes: 32 << 30,
            replicas: 1,
            parameters: Default::default(),
        };
        let target = Target {
            id: "pg-1".into(),
            technology: "postgres".into(),
            labels: Default::default(),
            resources: resources.clone(),
        };
        let proposal = Proposal {
            action: ActionKind::ScaleDown,
            summary: "down".into(),
            before: resources.clone(),
            after: resources,
            operations: vec![Operation::Restart {
                reason: "test".into(),
            }],
            risk: Risk::Medium,
            rationale: String::new(),
        };
        (target, vec![proposal])
    }

    fn decision(verdict: Verdict) -> Decision {
        Decision {
            verdict,
            proposal: Some(ActionKind::ScaleDown),
            reasons: vec![Reason::new("x", "y")],
        }
    }

    #[test]
    fn dry_run_never_reaches_the_actuator() {
        let (target, proposals) = fixture();
        let actuator = Recording(Mutex::new(vec![]));
        let outcome = act(
            &target,
            &decision(Verdict::Act),
            &proposals,
            Mode::DryRun,
            Some(&actuator),
        )
        .unwrap();
        assert!(matches!(outcome, ActOutcome::WouldExecute { .. }));
        assert!(actuator.0.lock().unwrap().is_empty());
    }

    #[test]
    fn review_is_queued_even_in_enforce_mode() {
        let (target, proposals) = fixture();
        let actuator = Recording(Mutex::new(vec![]));
        let outcome = act(
            &target,
            &decision(Verdict::Review),
            &proposals,
            Mode::Enforce,
            Some(&actuator),
        )
        .unwrap();
        assert!(matches!(outcome, ActOutcome::AwaitingApproval { .. }));
        assert!(actuator.0.lock().unwrap().is_empty());
    }

    #[test]
    fn act_in_enforce_mode_executes() {
        let (target, proposals) = fixture();
        let actuator = Recording(Mutex::new(vec![]));
        let outcome = act(
            &target,
            &decision(Verdict::Act),
            &proposals,
            Mode::Enforce,
            Some(&actuator),
        )
        .unwrap();
        assert!(outcome.executed());
        assert_eq!(actuator.0.lock().unwrap().len(), 1);
    }

    #[test]
    fn hold_and_block_do_nothing() {
        let (target, proposals) = fixture();
        for verdict in [Verdict::Hold, Verdict::Block] {
            let outcome =
                act(&target, &decision(verdict), &proposals, Mode::Enforce, None).unwrap();
            assert_eq!(outcome, ActOutcome::Nothing);
        }
    }
}
