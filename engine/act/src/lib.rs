//! The act stage: turns a decision into what happens next, and the actuators that carry it out.
//!
//! Only an `act` verdict in `enforce` mode reaches an [`Actuator`]. In `dry-run` (the default)
//! nothing is executed and the operations that would have run are recorded; a `review` verdict
//! goes to the approval queue instead. Keeping this decision in one function ([`act`]) makes the
//! rule "no action without a policy verdict of act" checkable in one place.
//!
//! Executing is a second, asynchronous step so that the caller can journal the intent between
//! the two (a crash then never repeats or loses an operation):
//!
//! 1. [`act`] routes the decision; an `act` verdict in enforce mode with an actuator configured
//!    comes back as [`ActOutcome::Ready`];
//! 2. the caller journals the intent under [`idempotency_key`];
//! 3. [`Actuators::execute`] (or one [`Actuator::execute`]) runs the operations and answers one
//!    [`OperationResult`] per operation — `applied`, `already_applied`, `scheduled` or
//!    `dry_run` — each verified by reading the system back; [`ActOutcome::executed_by`] turns them into
//!    [`ActOutcome::Executed`].
//!
//! Every actuator is idempotent: running the same intent again after a crash reports
//! `already_applied` instead of changing anything twice.
//!
//! The actuators, one module each, are registered in one list (`actuators!` below; see
//! [`registry`]) and listed in [`Actuators`] by the loop's configuration:
//! [`patroni`] (the Patroni REST API), [`kubernetes`] (merge patches on CloudNativePG, VPA,
//! Deployment / StatefulSet, HPA and Istio objects) and [`webhook`] (a signed POST of the
//! decision to a team's own automation).
//!
//! The fast loop acts through [`control`] instead: its actions are typed
//! [`ControlAction`](setpoint_core::control::ControlAction)s, not a proposal's operations, and
//! they are planned (current state read, other autoscalers detected, factors resolved) before
//! they are executed. [`control::ControlActuator`] reuses the Kubernetes actuator's object
//! resolution and read-modify-write, and adds the scale subresource, autoscaler minimums and a
//! Redis-held throttle. It is configured by the fast loop ([`control::ControlConfig`]), not
//! under a weekly loop's `actuators:`, whose entries carry out operations.

pub mod control;
mod http;
pub mod kubernetes;
pub mod patroni;
#[macro_use]
pub mod registry;
pub mod render;
pub mod webhook;

pub use registry::ActuatorSpec;

// The actuators a loop can name under `actuators:`; one line each.
actuators! {
    /// PostgreSQL parameters and restarts through the Patroni REST API.
    Patroni(patroni::PatroniConfig),
    /// Merge patches on CloudNativePG, VPA, Deployment/StatefulSet, HPA and Istio objects.
    Kubernetes(kubernetes::KubernetesConfig),
    /// A signed POST of the decision to a team's own automation.
    Webhook(webhook::WebhookConfig),
}

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
pub use setpoint_core::{ActOutcome, OpStatus, OperationResult};
use setpoint_core::{Decision, Mode, Operation, Proposal, Target, Verdict};
use sha2::{Digest, Sha256};

/// A boxed future, so that [`Actuator`] stays usable as `dyn Actuator`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Result type of this crate.
pub type Result<T, E = ActError> = std::result::Result<T, E>;

/// Where an actuator error happened: the actuator, the target, the object it talked to (a URL
/// or a Kubernetes object) and the operation(s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Site {
    /// Actuator name.
    pub actuator: String,
    /// Target id.
    pub target: String,
    /// The URL or object.
    pub object: String,
    /// The operation(s), for humans.
    pub operation: String,
}

impl Site {
    /// A site; boxed because errors carry it and should stay small.
    pub fn new(
        actuator: impl Into<String>,
        target: impl Into<String>,
        object: impl Into<String>,
        operation: impl Into<String>,
    ) -> Box<Site> {
        Box::new(Site {
            actuator: actuator.into(),
            target: target.into(),
            object: object.into(),
            operation: operation.into(),
        })
    }
}

impl std::fmt::Display for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "actuator {} on target {:?} at {} ({})",
            self.actuator, self.target, self.object, self.operation
        )
    }
}

/// Errors raised by the act stage and its actuators. Each actuator error carries its [`Site`],
/// so that a journal entry alone says what failed where.
#[derive(Debug, thiserror::Error)]
pub enum ActError {
    /// An actuator's configuration is unusable (found when it is built, before any request).
    #[error("actuator {actuator}: invalid configuration: {message}")]
    Config {
        /// Actuator name.
        actuator: String,
        /// What is wrong, with the config setting.
        message: String,
    },
    /// The actuator does not carry out this operation on this target; route it elsewhere.
    #[error("{site}: unsupported operation for this actuator: {why}")]
    Unsupported {
        /// Where.
        site: Box<Site>,
        /// Why not.
        why: String,
    },
    /// No configured actuator carries out an operation of the plan.
    #[error("no actuator is configured for operation {operation:?} on target {target:?}")]
    NoActuator {
        /// Target id.
        target: String,
        /// The operation, for humans.
        operation: String,
    },
    /// The actuator could not carry out an operation: transport error, refusal, bad answer.
    #[error("{site}: {message}")]
    Failed {
        /// Where.
        site: Box<Site>,
        /// What went wrong.
        message: String,
    },
    /// The target or an answer cannot be worked with — a label the actuator needs is missing,
    /// the API answered something that is not what it returns, the plan does not fit the
    /// object, a maintenance window never opens — so trying again would fail the same way.
    #[error("{site}: {message}")]
    Unusable {
        /// Where.
        site: Box<Site>,
        /// What cannot be worked with.
        message: String,
    },
    /// The system answered with a client error (HTTP 4xx other than a conflict): the request
    /// is wrong or not allowed, and sending it again would get the same answer.
    #[error("{site}: {message}")]
    Refused {
        /// Where.
        site: Box<Site>,
        /// The HTTP status.
        status: u16,
        /// What was answered.
        message: String,
    },
    /// The change was sent but reading the system back does not show it.
    #[error("{site}: not verified: expected {expected}, found {found}")]
    NotVerified {
        /// Where (the object is what was read back).
        site: Box<Site>,
        /// What should have been there.
        expected: String,
        /// What was there.
        found: String,
    },
    /// Someone else changed a field this plan changes since it was read: the plan is stale
    /// and is not applied over their change (it must be decided again).
    #[error(
        "{site}: changed by another writer ({field}: was {was}, now {now}, the plan wants \
         {wanted}); not overwriting it"
    )]
    Conflict {
        /// Where.
        site: Box<Site>,
        /// The field.
        field: String,
        /// Its value when the plan was made.
        was: String,
        /// Its value now.
        now: String,
        /// The value the plan wants.
        wanted: String,
    },
    /// A URL the configuration does not allow (webhooks), refused before any request.
    #[error("{site}: the URL is not in the allow-list; nothing was sent")]
    NotAllowed {
        /// Where (the object is the refused URL).
        site: Box<Site>,
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

impl ActError {
    /// Whether trying again later could succeed: the request failed on the way (transport) or
    /// the system had a passing problem (5xx, 429). A refusal, a conflict, a failed
    /// verification, something unusable or a configuration problem would fail the same way
    /// again.
    pub fn is_transient(&self) -> bool {
        matches!(self, ActError::Failed { .. })
    }

    /// The error for an HTTP answer that is not a success: [`ActError::Refused`] for a client
    /// error other than 429, [`ActError::Failed`] otherwise.
    pub fn from_status(site: Box<Site>, status: reqwest::StatusCode, message: String) -> Self {
        if status.is_client_error() && status != reqwest::StatusCode::TOO_MANY_REQUESTS {
            ActError::Refused {
                site,
                status: status.as_u16(),
                message,
            }
        } else {
            ActError::Failed { site, message }
        }
    }

    /// Where an actuator error happened, when it is one.
    pub fn site(&self) -> Option<&Site> {
        match self {
            ActError::Unsupported { site, .. }
            | ActError::Failed { site, .. }
            | ActError::Unusable { site, .. }
            | ActError::Refused { site, .. }
            | ActError::NotVerified { site, .. }
            | ActError::Conflict { site, .. }
            | ActError::NotAllowed { site } => Some(site),
            _ => None,
        }
    }
}

/// Operations routed to one actuator.
pub type Routed = Vec<(Arc<dyn Actuator>, Vec<Operation>)>;

/// One call of an actuator: the operations routed to it and the decision they come from.
#[derive(Debug, Clone, Copy)]
pub struct Execution<'a> {
    /// The target acted on (its labels say which object or URL the actuator talks to).
    pub target: &'a Target,
    /// The policy decision being carried out.
    pub decision: &'a Decision,
    /// The chosen proposal.
    pub proposal: &'a Proposal,
    /// The operations this actuator carries out, in plan order (a subset of the proposal's).
    pub operations: &'a [Operation],
    /// Identifies this intent in the journal and towards the systems that can dedupe on it
    /// (webhooks get it as `Idempotency-Key`); see [`idempotency_key`].
    pub key: &'a str,
    /// The trace the decision belongs to, passed on where a receiver can log it.
    pub trace_id: Option<&'a str>,
    /// Validate without changing anything: Kubernetes `dryRun=All`, Patroni read-only compare,
    /// webhooks marked `"dry_run": true`.
    pub dry_run: bool,
    /// The current time (injected, never read from the clock by an actuator), e.g. to find the
    /// next maintenance window.
    pub now: DateTime<Utc>,
}

/// Something that carries out operations on real infrastructure.
///
/// An implementation checks every operation before changing anything, applies them in order,
/// verifies each by reading the system back, is idempotent (re-running an intent reports
/// `already_applied`), and stops at the first failure.
pub trait Actuator: Send + Sync {
    /// Name used in traces and errors, e.g. `patroni`.
    fn name(&self) -> &str;
    /// Whether this actuator carries out `operation` on `target`; [`Actuators::route`] sends
    /// each operation to the first actuator that does.
    fn supports(&self, target: &Target, operation: &Operation) -> bool;
    /// Executes `execution.operations`; one result per operation, in order.
    fn execute<'a>(
        &'a self,
        execution: &'a Execution<'a>,
    ) -> BoxFuture<'a, Result<Vec<OperationResult>>>;
}

/// The actuators of one loop, in the order they are asked (an explicit list: a reader sees
/// every actuator a loop can use in its configuration).
#[derive(Clone, Default)]
pub struct Actuators {
    list: Vec<Arc<dyn Actuator>>,
}

impl std::fmt::Debug for Actuators {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.list.iter().map(|a| a.name()))
            .finish()
    }
}

impl Actuators {
    /// The actuators, asked in this order.
    pub fn new(list: Vec<Arc<dyn Actuator>>) -> Self {
        Self { list }
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Splits a plan by actuator: each operation goes to the first actuator that supports it;
    /// consecutive operations of one actuator stay together and the plan's order is kept. An
    /// operation nobody supports fails the whole plan before anything runs.
    pub fn route(&self, target: &Target, operations: &[Operation]) -> Result<Routed> {
        let mut routed: Routed = Vec::new();
        for op in operations {
            let actuator = self
                .list
                .iter()
                .find(|a| a.supports(target, op))
                .ok_or_else(|| ActError::NoActuator {
                    target: target.id.clone(),
                    operation: op.to_string(),
                })?;
            match routed.last_mut() {
                Some((last, ops)) if Arc::ptr_eq(last, actuator) => ops.push(op.clone()),
                _ => routed.push((actuator.clone(), vec![op.clone()])),
            }
        }
        Ok(routed)
    }

    /// Routes and executes a plan, actuator by actuator in plan order; stops at the first
    /// failure (the results so far are in the journal's hands through the error's context).
    pub async fn execute(&self, execution: &Execution<'_>) -> Result<Vec<OperationResult>> {
        let mut results = Vec::new();
        for (actuator, operations) in self.route(execution.target, execution.operations)? {
            let part = Execution {
                operations: &operations,
                ..*execution
            };
            results.extend(actuator.execute(&part).await?);
        }
        Ok(results)
    }
}

/// A stable key for one intent: the same scope (e.g. `loop/cycle`), target and operations give
/// the same key, so a journal entry and a receiver can recognise a repeat.
pub fn idempotency_key(scope: &str, target: &Target, operations: &[Operation]) -> String {
    let mut hash = Sha256::new();
    for part in [scope, &target.id] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    // Operations serialise deterministically (struct fields in declaration order).
    hash.update(serde_json::to_vec(operations).unwrap_or_default());
    hex(&hash.finalize())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Routes a decision according to the mode; never executes anything.
///
/// An `act` verdict in `enforce` mode becomes [`ActOutcome::Ready`] when `actuators` has any,
/// and would-execute otherwise (never silently dropped). The caller journals a `Ready` intent
/// and then runs [`Actuators::execute`].
pub fn act(
    target: &Target,
    decision: &Decision,
    proposals: &[Proposal],
    mode: Mode,
    actuators: Option<&Actuators>,
) -> Result<ActOutcome> {
    if matches!(decision.verdict, Verdict::Hold | Verdict::Block) {
        return Ok(ActOutcome::Nothing);
    }
    let proposal = decision
        .chosen(proposals)
        .ok_or_else(|| ActError::UnknownProposal {
            target: target.id.clone(),
            action: decision
                .proposal
                .map(|a| a.to_string())
                .unwrap_or_else(|| "none".into()),
        })?;
    let operations = proposal.operations.clone();
    match (decision.verdict, mode, actuators) {
        (Verdict::Review, _, _) => Ok(ActOutcome::AwaitingApproval { operations }),
        (Verdict::Act, Mode::Enforce, Some(a)) if !a.is_empty() => {
            Ok(ActOutcome::Ready { operations })
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

    /// Records what it is asked to do; supports the operations `accepts` says.
    struct Recording {
        name: &'static str,
        accepts: fn(&Operation) -> bool,
        seen: Mutex<Vec<Operation>>,
    }

    impl Recording {
        fn new(name: &'static str, accepts: fn(&Operation) -> bool) -> Arc<Recording> {
            Arc::new(Recording {
                name,
                accepts,
                seen: Mutex::new(vec![]),
            })
        }
    }

    impl Actuator for Recording {
        fn name(&self) -> &str {
            self.name
        }
        fn supports(&self, _target: &Target, operation: &Operation) -> bool {
            (self.accepts)(operation)
        }
        fn execute<'a>(
            &'a self,
            execution: &'a Execution<'a>,
        ) -> BoxFuture<'a, Result<Vec<OperationResult>>> {
            Box::pin(async move {
                self.seen
                    .lock()
                    .unwrap()
                    .extend_from_slice(execution.operations);
                Ok(execution
                    .operations
                    .iter()
                    .map(|op| OperationResult {
                        operation: op.clone(),
                        actuator: self.name.into(),
                        object: "memory".into(),
                        status: OpStatus::Applied,
                        detail: String::new(),
                    })
                    .collect())
            })
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
            operations: vec![
                Operation::Resize {
                    cpu_millicores: 4000,
                    memory_bytes: 16 << 30,
                },
                Operation::SetParameter {
                    name: "shared_buffers".into(),
                    value: "4GB".into(),
                    requires_restart: true,
                },
                Operation::Restart {
                    reason: "test".into(),
                },
            ],
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

    fn one_actuator() -> (Arc<Recording>, Actuators) {
        let recording = Recording::new("recording", |_| true);
        let actuators = Actuators::new(vec![recording.clone()]);
        (recording, actuators)
    }

    #[test]
    fn dry_run_never_reaches_the_actuator() {
        let (target, proposals) = fixture();
        let (_, actuators) = one_actuator();
        let outcome = act(
            &target,
            &decision(Verdict::Act),
            &proposals,
            Mode::DryRun,
            Some(&actuators),
        )
        .unwrap();
        assert!(matches!(outcome, ActOutcome::WouldExecute { .. }));
    }

    #[test]
    fn review_is_queued_even_in_enforce_mode() {
        let (target, proposals) = fixture();
        let (_, actuators) = one_actuator();
        let outcome = act(
            &target,
            &decision(Verdict::Review),
            &proposals,
            Mode::Enforce,
            Some(&actuators),
        )
        .unwrap();
        assert!(matches!(outcome, ActOutcome::AwaitingApproval { .. }));
    }

    #[test]
    fn act_in_enforce_mode_is_ready_and_then_executes() {
        let (target, proposals) = fixture();
        let (recording, actuators) = one_actuator();
        let decided = decision(Verdict::Act);
        let outcome = act(
            &target,
            &decided,
            &proposals,
            Mode::Enforce,
            Some(&actuators),
        )
        .unwrap();
        let ActOutcome::Ready { operations } = outcome else {
            panic!("not ready: {outcome:?}")
        };
        // Without actuators the same decision is recorded, never dropped.
        let none = act(&target, &decided, &proposals, Mode::Enforce, None).unwrap();
        assert!(matches!(none, ActOutcome::WouldExecute { .. }));

        let key = idempotency_key("weekly/7", &target, &operations);
        let execution = Execution {
            target: &target,
            decision: &decided,
            proposal: &proposals[0],
            operations: &operations,
            key: &key,
            trace_id: None,
            dry_run: false,
            now: Utc::now(),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let results = runtime.block_on(actuators.execute(&execution)).unwrap();
        assert_eq!(results.len(), 3);
        assert_eq!(recording.seen.lock().unwrap().len(), 3);
        let outcome = ActOutcome::executed_by(operations, results);
        assert!(outcome.executed());
        assert!(
            matches!(&outcome, ActOutcome::Executed { actuator, .. } if actuator == "recording")
        );
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

    #[test]
    fn operations_go_to_the_first_actuator_that_supports_them_in_plan_order() {
        let (target, proposals) = fixture();
        let platform = Recording::new("platform", |op| matches!(op, Operation::Resize { .. }));
        let database = Recording::new("database", |op| {
            matches!(
                op,
                Operation::SetParameter { .. } | Operation::Restart { .. }
            )
        });
        let actuators = Actuators::new(vec![platform, database]);
        let routed = actuators.route(&target, &proposals[0].operations).unwrap();
        let shape: Vec<(&str, usize)> = routed
            .iter()
            .map(|(a, ops)| (a.name(), ops.len()))
            .collect();
        assert_eq!(shape, vec![("platform", 1), ("database", 2)]);

        let only_platform = Actuators::new(vec![Recording::new("platform", |op| {
            matches!(op, Operation::Resize { .. })
        })]);
        let Err(error) = only_platform.route(&target, &proposals[0].operations) else {
            panic!("routed an operation nobody supports")
        };
        assert!(matches!(error, ActError::NoActuator { .. }), "{error}");
    }

    #[test]
    fn the_idempotency_key_names_scope_target_and_operations() {
        let (target, proposals) = fixture();
        let ops = &proposals[0].operations;
        let key = idempotency_key("weekly/7", &target, ops);
        assert_eq!(key, idempotency_key("weekly/7", &target, ops));
        assert_eq!(key.len(), 64);
        assert_ne!(key, idempotency_key("weekly/8", &target, ops));
        assert_ne!(key, idempotency_key("weekly/7", &target, &ops[..1]));
    }
}
