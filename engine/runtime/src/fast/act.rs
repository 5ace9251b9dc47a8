//! The act stage of a fast loop: each `act` verdict planned against the live objects, then
//! written (enforce) or validated without being written (dry-run), through
//! [`setpoint_act::control::ControlActuator`].
//!
//! Planning reads what is in place and resolves the action to absolute values (a factor
//! becomes a replica count), so a plan carried out twice writes nothing the second time. The
//! tick journals each plan's writes as [`ControlOutcome::Pending`] before [`FastActuator::execute`]
//! runs, and replaces the record with how it ended; see `cycle.rs` for the order and
//! [`setpoint_state::control`] for the journal.

use chrono::{DateTime, Utc};
use setpoint_act::control::{
    ControlActuator, ControlPlan, ControlStatus, ControlStep, PlanContext, ServiceRef,
};
use setpoint_core::control::{ControlAction, ControlOutcome};

use crate::config::FastConfig;

/// Services planned or carried out at once (in batches of this many): enough to keep 1,000 services within a tick
/// when the API server answers in tens of milliseconds, few enough not to flood it.
const CONCURRENCY: usize = 16;

/// One action to plan: the service, what the policy decided, and its request rate now (a
/// throttle given as a fraction resolves against it).
#[derive(Debug, Clone)]
pub(crate) struct Wanted {
    /// The service's name and the labels of its objects.
    pub service: ServiceRef,
    /// The action.
    pub action: ControlAction,
    /// The request rate observed at this tick.
    pub request_rate: Option<f64>,
}

/// What planning an action came to.
#[derive(Debug)]
pub(crate) enum Planned {
    /// Something to write: journal it, then carry it out.
    Write(Box<ControlPlan>),
    /// Nothing to write, and why (already in place, refused, or planning failed).
    Settled(ControlOutcome),
}

/// A fast loop's actuator.
#[derive(Debug)]
pub(crate) struct FastActuator {
    actuator: ControlActuator,
    /// Who the writes are attributed to (`setpoint/<loop>`).
    set_by: String,
}

impl FastActuator {
    /// The actuator `config` names, if it names one; an error naming what is wrong (a
    /// kubeconfig that cannot be read, a Redis URL that does not parse).
    pub(crate) fn new(config: &FastConfig, loop_name: &str) -> Result<Option<Self>, String> {
        let Some(actuator) = &config.actuator else {
            return Ok(None);
        };
        let actuator = ControlActuator::new(actuator.clone()).map_err(|e| e.to_string())?;
        Ok(Some(Self {
            actuator,
            set_by: format!("setpoint/{loop_name}"),
        }))
    }

    /// Plans every action at `now`, a few at a time; the answers are in the order asked.
    pub(crate) async fn plan_all(&self, wanted: &[Wanted], now: DateTime<Utc>) -> Vec<Planned> {
        let mut out = Vec::with_capacity(wanted.len());
        for chunk in wanted.chunks(CONCURRENCY) {
            out.extend(
                futures_util::future::join_all(chunk.iter().map(|w| self.plan(w, now))).await,
            );
        }
        out
    }

    async fn plan(&self, wanted: &Wanted, now: DateTime<Utc>) -> Planned {
        let mut context = PlanContext::new(now, self.set_by.clone());
        if let Some(rate) = wanted.request_rate {
            context = context.with_request_rate(rate);
        }
        let plan = match self
            .actuator
            .plan(&wanted.service, &wanted.action, &context)
            .await
        {
            Ok(plan) => plan,
            Err(error) => {
                return Planned::Settled(ControlOutcome::Failed {
                    error: error.to_string(),
                });
            }
        };
        if let ControlStep::Refused { reason } = &plan.step {
            return Planned::Settled(ControlOutcome::Failed {
                error: format!("refused by the actuator: {reason}"),
            });
        }
        if plan.is_noop() {
            return Planned::Settled(ControlOutcome::AlreadyInPlace {
                detail: detail(&plan, "nothing to write"),
            });
        }
        Planned::Write(Box::new(plan))
    }

    /// Carries out plans (or, with `dry_run`, has them validated without writing), a few at
    /// a time; the outcomes are in the order of `plans`.
    pub(crate) async fn execute_all(
        &self,
        plans: &[&ControlPlan],
        dry_run: bool,
    ) -> Vec<ControlOutcome> {
        let mut out = Vec::with_capacity(plans.len());
        for chunk in plans.chunks(CONCURRENCY) {
            out.extend(
                futures_util::future::join_all(chunk.iter().map(|p| self.execute(p, dry_run)))
                    .await,
            );
        }
        out
    }

    async fn execute(&self, plan: &ControlPlan, dry_run: bool) -> ControlOutcome {
        match self.actuator.execute(plan, dry_run).await {
            Ok(outcome) => match outcome.status {
                ControlStatus::Applied => ControlOutcome::Applied {
                    detail: detail(plan, &outcome.detail),
                },
                ControlStatus::AlreadyInPlace => ControlOutcome::AlreadyInPlace {
                    detail: detail(plan, &outcome.detail),
                },
                ControlStatus::DryRun => ControlOutcome::DryRun {
                    writes: writes(plan),
                },
                ControlStatus::Refused { reason } => ControlOutcome::Failed {
                    error: format!("refused by the actuator: {reason}"),
                },
                ControlStatus::Nothing => ControlOutcome::NothingToDo,
            },
            Err(error) => ControlOutcome::Failed {
                error: error.to_string(),
            },
        }
    }
}

/// A plan's writes for the journal, each `object field: from -> to`.
pub(crate) fn writes(plan: &ControlPlan) -> Vec<String> {
    plan.writes()
        .into_iter()
        .map(|w| format!("{} {}: {} -> {}", w.object, w.field, w.from, w.to))
        .collect()
}

/// The actuator's report, with the plan's notes (a VPA that also acts, a clamp to an
/// autoscaler's maximum) that a person reading the journal must see.
fn detail(plan: &ControlPlan, reported: &str) -> String {
    let mut detail = reported.to_string();
    for note in &plan.notes {
        detail.push_str("; ");
        detail.push_str(note);
    }
    detail
}
