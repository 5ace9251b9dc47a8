//! Act: route a decision by the loop's mode — nothing for `hold` and `block`, the review
//! queue for `review`, a record of what would run in dry-run, an intent to execute in enforce
//! mode. Nothing runs here: an intent is executed after it is journalled (see `record`).

use tracing::info_span;

use super::{CycleContext, Decided, Staged, TargetError, TargetRun};

/// A target whose decision has been routed.
pub struct Acted {
    /// The target's run; its entry holds the plan and the outcome (`entry.outcome`).
    pub run: TargetRun,
}

/// Routes one target's decision.
pub fn act(context: &CycleContext<'_>, decided: Decided) -> Staged<Acted> {
    let Decided {
        mut run,
        proposals,
        decision,
    } = decided;
    let lp = context.lp;
    let routed = {
        let _span = info_span!(parent: &run.span, "act").entered();
        setpoint_act::act(
            &run.entry.target,
            &decision,
            &proposals,
            context.mode,
            Some(&lp.actuators),
        )
    };
    match routed {
        Ok(outcome) => {
            run.entry.plan = outcome.operations().to_vec();
            run.entry.executed = outcome.executed();
            run.span.record("setpoint.executed", run.entry.executed);
            run.entry.outcome = Some(outcome);
            Ok(Acted { run })
        }
        Err(error) => Err(run.fail(TargetError::Act(error))),
    }
}
