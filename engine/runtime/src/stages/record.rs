//! Record: a target's entry, its updated history and what follows from its verdict (a review
//! to queue, an intent to execute, an approval used) go to the store in one transaction; an
//! intent is executed only once it is journalled, and how it ended joins the entry.

use chrono::Duration;
use setpoint_core::{
    ActOutcome, Intent, IntentStatus, JournalEntry, ReviewFeedback, ReviewItem, ReviewStatus,
    TargetHistory, Verdict,
};
use setpoint_state::{FollowUps, Store};

use super::CycleContext;
use crate::Result;
use crate::enforce::Enforcer;

/// How long a review waits for a decision, and an approval for a cycle to use it: a week, one
/// weekly cycle.
pub const REVIEW_TTL: Duration = Duration::days(7);

/// What the store knows of a target before this cycle decides it.
pub struct Prior {
    /// The target's history, advanced by this cycle's class (see [`Prior::advance`]).
    pub history: TargetHistory,
    /// A human's decision on its latest proposal, if one is still in force.
    pub review: Option<ReviewFeedback>,
    /// The history as stored, before this cycle.
    stored: Option<TargetHistory>,
}

impl Prior {
    /// Reads `target`'s history and review feedback.
    pub fn load(store: &Store, context: &CycleContext<'_>, target: &str) -> Result<Self> {
        let loop_name = context.lp.config.name.as_str();
        let stored = store.history(loop_name, target)?;
        let review = store.review_feedback(loop_name, target, context.now)?;
        Ok(Self {
            history: stored
                .clone()
                .unwrap_or_else(|| TargetHistory::new(context.now)),
            review,
            stored,
        })
    }

    /// Counts the entry's class (when it was reached) in the history, and the stable cycles
    /// that follow in the entry: the policy sees this cycle's class.
    pub fn advance(&mut self, context: &CycleContext<'_>, entry: &mut JournalEntry) {
        if let Some(classification) = &entry.classification {
            let period = context.lp.config.schedule.period_of(context.now);
            self.history
                .record_class_in_period(context.now, period, classification.class);
        }
        entry.stable_cycles = self.history.stable_cycles;
    }
}

/// Journals one target's cycle with its history and follow-ups, then carries out the intent
/// of an `act` verdict in enforce mode; returns the entry as it ended.
pub fn record(
    context: &CycleContext<'_>,
    store: &Store,
    enforcer: &Enforcer<'_>,
    mut entry: JournalEntry,
    prior: Prior,
) -> Result<JournalEntry> {
    let Prior {
        mut history,
        review,
        stored,
    } = prior;
    if context.targeted {
        // The policy saw this cycle's class; the stored history keeps only scheduled cycles',
        // so an approval re-check does not count towards hysteresis.
        let scheduled = stored.unwrap_or_else(|| TargetHistory::new(context.now));
        history.classes = scheduled.classes;
        history.stable_cycles = scheduled.stable_cycles;
    }
    let intent = intent(context, &entry, review.as_ref());
    let queued = review_item(context, &entry);
    // Dry-run uses an approval up by recording what would have run; enforce mode when the
    // intent is done.
    let applied_review = match (&entry.outcome, &review, &entry.decision) {
        (Some(ActOutcome::WouldExecute { .. }), Some(r), Some(d))
            if r.status == ReviewStatus::Approved
                && d.verdict == Verdict::Act
                && d.proposal == Some(r.action) =>
        {
            Some(r.id)
        }
        _ => None,
    };
    if let Some(pending) = &intent {
        tokio::runtime::Handle::current()
            .block_on(crate::enforce::pause_point("before-intent", &pending.key));
    }
    store.record_target_with(
        &entry,
        &history,
        FollowUps {
            intent: intent.as_ref(),
            review: queued.as_ref(),
            applied_review,
        },
    )?;
    if let Some(pending) = intent {
        let finished = tokio::runtime::Handle::current().block_on(enforcer.carry_out(
            store,
            pending,
            context.now,
        ))?;
        entry.finish_intent(&finished);
    }
    Ok(entry)
}

/// The review to queue for a `review` verdict.
fn review_item(context: &CycleContext<'_>, entry: &JournalEntry) -> Option<ReviewItem> {
    let decision = entry.decision.as_ref()?;
    if decision.verdict != Verdict::Review {
        return None;
    }
    let proposal = entry.chosen_proposal()?;
    Some(ReviewItem {
        id: 0,
        loop_name: entry.loop_name.clone(),
        target: entry.target.id.clone(),
        cycle: entry.cycle,
        created_at: context.now,
        expires_at: context.now + REVIEW_TTL,
        action: proposal.action,
        proposal: proposal.clone(),
        classification: entry.classification.clone()?,
        reasons: decision.reasons.clone(),
        status: ReviewStatus::Pending,
        decided_by: None,
        decided_at: None,
        comment: None,
    })
}

/// The intent to journal before executing, for an `act` verdict in enforce mode (the act
/// stage answered `ready`); it carries the approval it uses, if any.
fn intent(
    context: &CycleContext<'_>,
    entry: &JournalEntry,
    review: Option<&ReviewFeedback>,
) -> Option<Intent> {
    if entry.error.is_some() {
        return None;
    }
    let lp = context.lp;
    let decision = entry.decision.as_ref()?;
    if decision.verdict != Verdict::Act || lp.config.mode != setpoint_core::Mode::Enforce {
        return None;
    }
    if lp.actuators.is_empty() {
        return None;
    }
    let proposal = entry.chosen_proposal()?;
    let scope = format!("{}/{}", entry.loop_name, entry.cycle);
    Some(Intent {
        key: setpoint_act::idempotency_key(&scope, &entry.target, &proposal.operations),
        loop_name: entry.loop_name.clone(),
        cycle: entry.cycle,
        target: entry.target.clone(),
        decision: decision.clone(),
        proposal: proposal.clone(),
        operations: proposal.operations.clone(),
        review: review
            .filter(|r| r.status == ReviewStatus::Approved && r.action == proposal.action)
            .map(|r| r.id),
        created_at: context.now,
        status: IntentStatus::Pending,
        attempts: 0,
        results: Vec::new(),
        error: None,
        finished_at: None,
        reconciled: false,
    })
}
