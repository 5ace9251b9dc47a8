//! Enforce mode: carrying out journalled intents through the loop's actuators, and finishing
//! the ones a dead process left behind.
//!
//! The order for one target is fixed, and each step is durable before the next starts:
//!
//! 1. the intent is written with the target's journal entry (one transaction, by the cycle);
//! 2. the kill switches are read afresh before each actuator's share of the plan starts — an
//!    operation never starts after a switch covering it is set;
//! 3. the actuators run, each call retried with exponential backoff when it failed on the way
//!    (a refusal, a conflict or a failed verification is reported at once, never retried
//!    into success);
//! 4. the outcome is written with the journal entry and history (one transaction).
//!
//! A process killed between 1 and 4 leaves the intent `pending`; [`reconcile`] runs at
//! start-up and carries it to an end. Re-running is safe because every actuator compares with
//! what the system holds first and reports `already_applied` instead of changing anything twice.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use setpoint_act::{ActError, Actuators, Execution, OpStatus, OperationResult};
use setpoint_core::{Clock, Intent, IntentStatus, KillSwitches};
use setpoint_retry::RetryPolicy;
use setpoint_state::Store;

use crate::config::ActConfig;
use crate::{Result, RuntimeError};

/// Environment variable naming a stage boundary where a cycle pauses, for crash and
/// kill-switch tests, which kill the process or flip a switch there; never set in production.
/// The boundaries, in the order a cycle meets them: [`PAUSE_POINTS`].
pub const PAUSE_AT_ENV: &str = "SETPOINT_PAUSE_AT";

/// Every stage boundary a cycle can pause at, in order: the cycle is numbered
/// (`after-begin-cycle`), the fleet observed (`after-observe`), a target decided with an intent
/// not yet journalled (`before-intent`), the intent journalled with nothing run
/// (`after-intent`), the actuators done with nothing recorded (`after-execute`), the intent's
/// end recorded (`after-finish-intent`), every target recorded and the cycle not yet closed
/// (`before-finish-cycle`).
pub const PAUSE_POINTS: [&str; 7] = [
    "after-begin-cycle",
    "after-observe",
    "before-intent",
    "after-intent",
    "after-execute",
    "after-finish-intent",
    "before-finish-cycle",
];
/// Environment variable naming the file created (holding the intent's key) when the pause
/// point is reached; the process waits until the file is removed (at most ten minutes).
pub const PAUSE_FILE_ENV: &str = "SETPOINT_PAUSE_FILE";

/// Waits at a test pause point (one of [`PAUSE_POINTS`]), when the environment asks for it.
pub(crate) async fn pause_point(point: &str, key: &str) {
    let (Ok(at), Ok(file)) = (std::env::var(PAUSE_AT_ENV), std::env::var(PAUSE_FILE_ENV)) else {
        return;
    };
    if at != point {
        return;
    }
    tracing::warn!(point, file = %file, "paused at a test pause point");
    if std::fs::write(&file, key).is_err() {
        return;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    while Path::new(&file).exists() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The kill switch that covers an intent, if one is on, for the error message.
fn kill_switch_covering(switches: &KillSwitches, intent: &Intent) -> Option<String> {
    if switches.global {
        return Some("the global kill switch".into());
    }
    if switches
        .loops
        .get(&intent.loop_name)
        .copied()
        .unwrap_or(false)
    {
        return Some(format!("the kill switch of loop {:?}", intent.loop_name));
    }
    if switches
        .targets
        .get(&intent.target.id)
        .copied()
        .unwrap_or(false)
    {
        return Some(format!("the kill switch of target {:?}", intent.target.id));
    }
    None
}

/// What carries out intents for one loop.
pub(crate) struct Enforcer<'a> {
    pub actuators: &'a Actuators,
    pub act: &'a ActConfig,
    pub state_dir: &'a Path,
    /// When an intent finished is read here.
    pub clock: &'a dyn Clock,
}

impl<'a> Enforcer<'a> {
    /// The enforcer of `lp`'s intents.
    pub(crate) fn for_loop(
        lp: &'a crate::LoopRuntime,
        state_dir: &'a Path,
        clock: &'a dyn Clock,
    ) -> Self {
        Self {
            actuators: &lp.actuators,
            act: &lp.config.act,
            state_dir,
            clock,
        }
    }

    /// Carries out a journalled intent and records how it ended; returns it finished.
    pub(crate) async fn carry_out(
        &self,
        store: &Store,
        mut intent: Intent,
        now: DateTime<Utc>,
    ) -> Result<Intent> {
        pause_point("after-intent", &intent.key).await;
        self.run(&mut intent, now).await?;
        pause_point("after-execute", &intent.key).await;
        intent.finished_at = Some(self.clock.now());
        store.finish_intent(&intent)?;
        pause_point("after-finish-intent", &intent.key).await;
        match intent.status {
            IntentStatus::Done => tracing::info!(
                target = %intent.target.id,
                key = %intent.key,
                attempts = intent.attempts,
                "plan executed"
            ),
            status => tracing::warn!(
                target = %intent.target.id,
                key = %intent.key,
                %status,
                error = intent.error.as_deref().unwrap_or_default(),
                "plan not executed"
            ),
        }
        Ok(intent)
    }

    /// Runs the plan actuator by actuator; sets the intent's status, results and error.
    async fn run(&self, intent: &mut Intent, now: DateTime<Utc>) -> Result<()> {
        let routed = match self.actuators.route(&intent.target, &intent.operations) {
            Ok(routed) => routed,
            Err(error) => {
                intent.status = IntentStatus::Failed;
                intent.error = Some(error.to_string());
                return Ok(());
            }
        };
        let total = intent.operations.len();
        let mut results: Vec<OperationResult> = Vec::new();
        for (actuator, operations) in routed {
            let switches = setpoint_state::read_kill_switches(self.state_dir)?;
            if let Some(switch) = kill_switch_covering(&switches, intent) {
                intent.status = IntentStatus::Cancelled;
                intent.error = Some(format!(
                    "{switch} is on: {} of {total} operation(s) ran before it was set; the rest \
                     did not start",
                    results.len()
                ));
                intent.results = results;
                return Ok(());
            }
            let execution = Execution {
                target: &intent.target,
                decision: &intent.decision,
                proposal: &intent.proposal,
                operations: &operations,
                key: &intent.key,
                trace_id: None,
                dry_run: false,
                now,
            };
            // `act.retries` is the intent's budget, shared by its actuators and by a run resumed
            // after a crash: what earlier calls used is not available to this one.
            let policy = RetryPolicy::new(self.act.backoff.0, self.act.max_backoff.0, 1)
                .with_retries(self.act.retries.saturating_sub(intent.attempts));
            let what = format!("actuator {} on {}", actuator.name(), intent.target.id);
            let outcome = policy
                .run(
                    &what,
                    || actuator.execute(&execution),
                    |error: &ActError| error.is_transient(),
                )
                .await;
            let attempts = match &outcome {
                Ok((_, attempts)) => *attempts,
                Err(error) => error.attempts(),
            };
            intent.attempts = intent.attempts.saturating_add(attempts);
            match outcome.map(|(part, _)| part) {
                Ok(part) => results.extend(part),
                Err(error) => {
                    intent.status = IntentStatus::Failed;
                    intent.error = Some(format!(
                        "{error} (after {} attempt(s); {} of {total} operation(s) done before)",
                        intent.attempts,
                        results.len()
                    ));
                    intent.results = results;
                    return Ok(());
                }
            }
        }
        intent.status = IntentStatus::Done;
        intent.error = None;
        intent.results = results;
        Ok(())
    }

    /// Reads the plan back without changing anything: `Ok(true)` when every operation is
    /// already in place (applied, scheduled or delivered).
    async fn verify(&self, intent: &mut Intent, now: DateTime<Utc>) -> Result<bool, ActError> {
        let execution = Execution {
            target: &intent.target,
            decision: &intent.decision,
            proposal: &intent.proposal,
            operations: &intent.operations,
            key: &intent.key,
            trace_id: None,
            dry_run: true,
            now,
        };
        let results = self.actuators.execute(&execution).await?;
        let in_place = results
            .iter()
            .all(|r| !matches!(r.status, OpStatus::DryRun));
        intent.results = results;
        Ok(in_place)
    }
}

/// Carries every intent a dead process left pending in `loop_name` to an end; returns them.
///
/// Young enough ones (see `act.resume_within`) with no kill switch on are finished: run again,
/// which applies what is missing and reports what was already there. Older ones, or any while
/// a kill switch covers them, are only read back: done if everything is in place, cancelled
/// otherwise (the next cycle decides again on fresh data). Nothing is ever forgotten: each
/// ends `done`, `failed` or `cancelled` in the journal, marked as reconciled.
pub(crate) async fn reconcile(
    enforcer: &Enforcer<'_>,
    store: &Store,
    loop_name: &str,
    now: DateTime<Utc>,
) -> Result<Vec<Intent>> {
    let mut finished = Vec::new();
    for mut intent in store.pending_intents(loop_name)? {
        intent.reconciled = true;
        tracing::warn!(
            loop_name,
            target = %intent.target.id,
            key = %intent.key,
            cycle = intent.cycle,
            "found an intent a previous process left pending; reconciling"
        );
        let switches = setpoint_state::read_kill_switches(enforcer.state_dir)?;
        let switch = kill_switch_covering(&switches, &intent);
        let age = (now - intent.created_at).to_std().unwrap_or_default();
        let stale = age > enforcer.act.resume_within.0;
        if enforcer.actuators.is_empty() {
            intent.status = IntentStatus::Failed;
            intent.error = Some(
                "left pending by a previous process, and the loop has no actuators any more to \
                 verify or finish it: check the target by hand"
                    .into(),
            );
        } else if switch.is_some() || stale {
            let why = match &switch {
                Some(switch) => format!("{switch} is on"),
                None => format!(
                    "it is {} old, more than act.resume_within ({})",
                    humantime::format_duration(Duration::from_secs(age.as_secs())),
                    humantime::format_duration(enforcer.act.resume_within.0)
                ),
            };
            match enforcer.verify(&mut intent, now).await {
                Ok(true) => {
                    intent.status = IntentStatus::Done;
                    intent.error = None;
                }
                Ok(false) => {
                    intent.status = IntentStatus::Cancelled;
                    intent.error = Some(format!(
                        "not resumed after a crash: {why}; reading back shows it did not \
                         (fully) happen"
                    ));
                }
                Err(error) => {
                    intent.status = IntentStatus::Failed;
                    intent.error = Some(format!(
                        "not resumed after a crash ({why}), and reading back failed: {error}"
                    ));
                }
            }
            intent.attempts += 1;
            intent.finished_at = Some(enforcer.clock.now());
            store.finish_intent(&intent)?;
            finished.push(intent);
            continue;
        } else {
            finished.push(enforcer.carry_out(store, intent, now).await?);
            continue;
        }
        intent.finished_at = Some(enforcer.clock.now());
        store.finish_intent(&intent)?;
        finished.push(intent);
    }
    Ok(finished)
}

/// Builds a loop's actuators from its configuration; errors name the loop and actuator.
pub(crate) fn build_actuators(
    loop_name: &str,
    configs: &[crate::config::ActuatorConfig],
) -> Result<Actuators> {
    let list = configs
        .iter()
        .enumerate()
        .map(|(index, config)| {
            config.build().map_err(|error| RuntimeError::Actuator {
                loop_name: loop_name.to_string(),
                index,
                message: error.to_string(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Actuators::new(list))
}
