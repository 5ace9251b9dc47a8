//! The intent journal: operations written down before they run, so that a crash never repeats
//! or loses one (see [`setpoint_core::intent`]).
//!
//! | table | key | value |
//! |---|---|---|
//! | `intents` | idempotency key | [`Intent`] (JSON) |
//!
//! An intent is written in the same transaction as its target's journal entry and history
//! ([`Store::record_target_with`]), and finished in one transaction with them
//! ([`Store::finish_intent`]), so the journal, the history's last action and the intent never
//! disagree, whatever moment the process dies at.

use redb::ReadableTable;
use setpoint_core::{
    ActionRecord, Intent, IntentStatus, JournalEntry, ReviewItem, ReviewStatus, TargetHistory,
};

use crate::chain::LinkKind;
use crate::reviews::REVIEWS;
use crate::{HISTORY, JOURNAL, Result, Store, check_name, cycle_part, key};

pub(crate) const INTENTS: redb::TableDefinition<&str, &[u8]> =
    redb::TableDefinition::new("intents");

/// What a target's cycle writes besides its journal entry and history, in the same transaction.
#[derive(Debug, Default, Clone, Copy)]
pub struct FollowUps<'a> {
    /// The intent to carry out (enforce mode, verdict `act`).
    pub intent: Option<&'a Intent>,
    /// The review to queue (verdict `review`); it supersedes the target's older pending one.
    pub review: Option<&'a ReviewItem>,
    /// An approval used up without execution (dry-run: recorded as what would have run).
    pub applied_review: Option<u64>,
}

impl Store {
    /// Records one target's cycle — its journal entry, its history, and its intent or queued
    /// review — atomically.
    pub fn record_target_with(
        &self,
        entry: &JournalEntry,
        history: &TargetHistory,
        follow_ups: FollowUps<'_>,
    ) -> Result<Option<u64>> {
        check_name(&entry.loop_name)?;
        check_name(&entry.target.id)?;
        let journal_key = key(&[&entry.target.id, &entry.loop_name, &cycle_part(entry.cycle)]);
        let history_key = key(&[&entry.loop_name, &entry.target.id]);
        let txn = self.db.begin_write().map_err(|e| self.storage(e))?;
        let mut queued = None;
        {
            let mut journal = txn.open_table(JOURNAL).map_err(|e| self.storage(e))?;
            let mut entry = entry.clone();
            if let Some(intent) = follow_ups.intent {
                entry.intent = Some(intent.clone());
            }
            let bytes = self.encode(&entry)?;
            journal
                .insert(journal_key.as_str(), bytes.as_slice())
                .map_err(|e| self.storage(e))?;
            self.append_link(&txn, LinkKind::Journal, &journal_key, &bytes)?;
            let mut histories = txn.open_table(HISTORY).map_err(|e| self.storage(e))?;
            histories
                .insert(history_key.as_str(), self.encode(history)?.as_slice())
                .map_err(|e| self.storage(e))?;
            if let Some(intent) = follow_ups.intent {
                let mut intents = txn.open_table(INTENTS).map_err(|e| self.storage(e))?;
                intents
                    .insert(intent.key.as_str(), self.encode(intent)?.as_slice())
                    .map_err(|e| self.storage(e))?;
            }
            if let Some(item) = follow_ups.review {
                queued = Some(self.queue_review_in(&txn, item)?);
            }
            if let Some(id) = follow_ups.applied_review {
                self.set_review_status_in(&txn, id, ReviewStatus::Applied)?;
            }
        }
        txn.commit().map_err(|e| self.storage(e))?;
        Ok(queued)
    }

    /// Records how an intent ended, in one transaction with its target's journal entry (which
    /// then says whether the plan was executed, with each operation's result), its history's
    /// last action (when done) and the approval it carried out (marked applied when done).
    pub fn finish_intent(&self, intent: &Intent) -> Result<()> {
        check_name(&intent.loop_name)?;
        check_name(&intent.target.id)?;
        let journal_key = key(&[
            &intent.target.id,
            &intent.loop_name,
            &cycle_part(intent.cycle),
        ]);
        let history_key = key(&[&intent.loop_name, &intent.target.id]);
        let done = intent.status == IntentStatus::Done;
        let txn = self.db.begin_write().map_err(|e| self.storage(e))?;
        {
            let mut intents = txn.open_table(INTENTS).map_err(|e| self.storage(e))?;
            intents
                .insert(intent.key.as_str(), self.encode(intent)?.as_slice())
                .map_err(|e| self.storage(e))?;
            let mut journal = txn.open_table(JOURNAL).map_err(|e| self.storage(e))?;
            let stored = journal
                .get(journal_key.as_str())
                .map_err(|e| self.storage(e))?
                .map(|v| self.decode::<JournalEntry>(&journal_key, v.value()))
                .transpose()?;
            if let Some(mut entry) = stored {
                entry.finish_intent(intent);
                let bytes = self.encode(&entry)?;
                journal
                    .insert(journal_key.as_str(), bytes.as_slice())
                    .map_err(|e| self.storage(e))?;
                self.append_link(&txn, LinkKind::Journal, &journal_key, &bytes)?;
            }
            if done {
                let mut histories = txn.open_table(HISTORY).map_err(|e| self.storage(e))?;
                let stored = histories
                    .get(history_key.as_str())
                    .map_err(|e| self.storage(e))?
                    .map(|v| self.decode::<TargetHistory>(&history_key, v.value()))
                    .transpose()?;
                if let Some(mut history) = stored {
                    history.last_action = Some(ActionRecord {
                        at: intent.finished_at.unwrap_or(intent.created_at),
                        action: intent.proposal.action,
                        summary: intent.proposal.summary.clone(),
                    });
                    histories
                        .insert(history_key.as_str(), self.encode(&history)?.as_slice())
                        .map_err(|e| self.storage(e))?;
                }
                if let Some(id) = intent.review {
                    self.set_review_status_in(&txn, id, ReviewStatus::Applied)?;
                }
            }
        }
        txn.commit().map_err(|e| self.storage(e))
    }

    /// One intent by its key.
    pub fn intent(&self, key: &str) -> Result<Option<Intent>> {
        self.get(INTENTS, key)
    }

    /// Every intent, in key order (use `created_at` for time order).
    pub fn intents(&self) -> Result<Vec<Intent>> {
        self.scan(INTENTS, "")
    }

    /// The intents of a loop still pending: their process died before recording how they
    /// ended. Oldest first.
    pub fn pending_intents(&self, loop_name: &str) -> Result<Vec<Intent>> {
        let mut pending: Vec<Intent> = self
            .intents()?
            .into_iter()
            .filter(|i| i.status == IntentStatus::Pending && i.loop_name == loop_name)
            .collect();
        pending.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.key.cmp(&b.key)));
        Ok(pending)
    }

    /// Sets a review's status inside a write transaction (a missing review is left alone: it
    /// may have been pruned, and the intent's outcome must still be recorded).
    pub(crate) fn set_review_status_in(
        &self,
        txn: &redb::WriteTransaction,
        id: u64,
        status: ReviewStatus,
    ) -> Result<()> {
        let mut reviews = txn.open_table(REVIEWS).map_err(|e| self.storage(e))?;
        let k = cycle_part(id);
        let stored = reviews
            .get(k.as_str())
            .map_err(|e| self.storage(e))?
            .map(|v| self.decode::<ReviewItem>(&k, v.value()))
            .transpose()?;
        if let Some(mut item) = stored {
            item.status = status;
            let bytes = self.encode(&item)?;
            reviews
                .insert(k.as_str(), bytes.as_slice())
                .map_err(|e| self.storage(e))?;
            self.append_link(txn, LinkKind::Review, &k, &bytes)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use chrono::Utc;
    use setpoint_core::{ActionKind, Decision, Reason, Verdict};

    use super::*;

    fn intent(entry: &JournalEntry, review: Option<u64>) -> Intent {
        let proposal = crate::reviews::tests::item(&entry.target.id, entry.at).proposal;
        Intent {
            key: "k1".into(),
            loop_name: entry.loop_name.clone(),
            cycle: entry.cycle,
            target: entry.target.clone(),
            decision: Decision {
                verdict: Verdict::Act,
                proposal: Some(ActionKind::ScaleDown),
                reasons: vec![Reason::new("approved_by_reviewer", "ok")],
            },
            proposal: proposal.clone(),
            operations: proposal.operations,
            review,
            created_at: entry.at,
            status: IntentStatus::Pending,
            attempts: 0,
            results: vec![],
            error: None,
            finished_at: None,
            reconciled: false,
        }
    }

    #[test]
    fn an_intent_is_journalled_with_its_decision_and_finished_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let now = Utc::now();
        let review = store
            .queue_review(&crate::reviews::tests::item("pg-1", now))
            .unwrap();
        store.decide_review(review, true, "ana", None, now).unwrap();
        let entry = crate::tests::entry("pg-1", 3, now);
        let history = TargetHistory::new(now);
        let pending = intent(&entry, Some(review));
        store
            .record_target_with(
                &entry,
                &history,
                FollowUps {
                    intent: Some(&pending),
                    ..FollowUps::default()
                },
            )
            .unwrap();
        // Written with the decision, before anything ran.
        assert_eq!(store.pending_intents(&entry.loop_name).unwrap().len(), 1);
        let journalled = store.last_entry("pg-1").unwrap().unwrap();
        assert_eq!(journalled.intent.as_ref().unwrap().key, "k1");
        assert!(!journalled.executed);
        assert!(store.pending_intents("other-loop").unwrap().is_empty());

        let mut done = pending.clone();
        done.status = IntentStatus::Done;
        done.attempts = 1;
        done.finished_at = Some(now);
        store.finish_intent(&done).unwrap();
        assert!(store.pending_intents(&entry.loop_name).unwrap().is_empty());
        let journalled = store.last_entry("pg-1").unwrap().unwrap();
        assert!(journalled.executed);
        assert_eq!(
            journalled.intent.unwrap().status,
            IntentStatus::Done,
            "the journal says how it ended"
        );
        let history = store.history(&entry.loop_name, "pg-1").unwrap().unwrap();
        assert_eq!(history.last_action.unwrap().action, ActionKind::ScaleDown);
        assert_eq!(store.review(review).unwrap().status, ReviewStatus::Applied);
    }

    #[test]
    fn a_failed_intent_is_an_act_error_in_the_journal_and_leaves_the_approval() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let now = Utc::now();
        let review = store
            .queue_review(&crate::reviews::tests::item("pg-1", now))
            .unwrap();
        store.decide_review(review, true, "ana", None, now).unwrap();
        let entry = crate::tests::entry("pg-1", 3, now);
        let pending = intent(&entry, Some(review));
        store
            .record_target_with(
                &entry,
                &TargetHistory::new(now),
                FollowUps {
                    intent: Some(&pending),
                    ..FollowUps::default()
                },
            )
            .unwrap();
        let mut failed = pending;
        failed.status = IntentStatus::Failed;
        failed.error = Some("not verified".into());
        store.finish_intent(&failed).unwrap();
        let journalled = store.last_entry("pg-1").unwrap().unwrap();
        assert!(!journalled.executed);
        let error = journalled.error.unwrap();
        assert_eq!(error.message, "plan failed: not verified");
        assert_eq!(error.kind, setpoint_core::FailureKind::PlanNotCarriedOut);
        let history = store.history(&entry.loop_name, "pg-1").unwrap().unwrap();
        assert!(history.last_action.is_none());
        assert_eq!(store.review(review).unwrap().status, ReviewStatus::Approved);
    }
}
