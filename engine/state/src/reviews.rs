//! The review queue: `review` verdicts waiting for a human, and the humans' decisions.
//!
//! | table | key | value |
//! |---|---|---|
//! | `reviews` | id, zero-padded | [`ReviewItem`] (JSON) |
//! | `reviews_by_target` | `loop ␟ target ␟ id` | empty: an index, so that a cycle finds a target's reviews without reading the whole queue |
//!
//! A target has at most one pending review per loop: a newer one supersedes it. An approval is
//! used by the next cycle that still finds the action right on fresh data (the policy decides);
//! a rejection holds that action on that target until it expires. Decided reviews are kept:
//! they are the reviewers' labels for the next training run. Who decided what, when and
//! why stays on the item, and the decision that follows cites it in the journal.

use chrono::{DateTime, Utc};
use redb::{ReadableTable, ReadableTableMetadata};
use setpoint_core::{ReviewFeedback, ReviewItem, ReviewStatus};

use crate::chain::LinkKind;
use crate::{META, Result, StateError, Store, check_name, cycle_part};

pub(crate) const REVIEWS: redb::TableDefinition<&str, &[u8]> =
    redb::TableDefinition::new("reviews");

pub(crate) const REVIEWS_BY_TARGET: redb::TableDefinition<&str, &[u8]> =
    redb::TableDefinition::new("reviews_by_target");

const REVIEW_SEQ: &str = "review_seq";

fn index_key(loop_name: &str, target: &str, id: u64) -> String {
    crate::key(&[loop_name, target, &cycle_part(id)])
}

fn index_prefix(loop_name: &str, target: &str) -> String {
    crate::key(&[loop_name, target, ""])
}

impl Store {
    /// Builds the target index of a store written before it existed (once, at open).
    pub(crate) fn index_reviews(&self) -> Result<()> {
        let txn = self.db.begin_write().map_err(|e| self.storage(e))?;
        {
            let reviews = txn.open_table(REVIEWS).map_err(|e| self.storage(e))?;
            let mut index = txn
                .open_table(REVIEWS_BY_TARGET)
                .map_err(|e| self.storage(e))?;
            if !index.is_empty().map_err(|e| self.storage(e))?
                || reviews.is_empty().map_err(|e| self.storage(e))?
            {
                return Ok(());
            }
            for entry in reviews.iter().map_err(|e| self.storage(e))? {
                let (k, v) = entry.map_err(|e| self.storage(e))?;
                let item: ReviewItem = self.decode(k.value(), v.value())?;
                index
                    .insert(
                        index_key(&item.loop_name, &item.target, item.id).as_str(),
                        [].as_slice(),
                    )
                    .map_err(|e| self.storage(e))?;
            }
        }
        txn.commit().map_err(|e| self.storage(e))
    }

    /// The reviews of one target of one loop, oldest first, through the index.
    fn reviews_of(&self, loop_name: &str, target: &str) -> Result<Vec<ReviewItem>> {
        let txn = self.db.begin_read().map_err(|e| self.storage(e))?;
        let index = txn
            .open_table(REVIEWS_BY_TARGET)
            .map_err(|e| self.storage(e))?;
        let reviews = txn.open_table(REVIEWS).map_err(|e| self.storage(e))?;
        let prefix = index_prefix(loop_name, target);
        let mut out = Vec::new();
        for entry in index
            .range(prefix.as_str()..)
            .map_err(|e| self.storage(e))?
        {
            let (k, _) = entry.map_err(|e| self.storage(e))?;
            let Some(id) = k.value().strip_prefix(&prefix) else {
                break;
            };
            if let Some(v) = reviews.get(id).map_err(|e| self.storage(e))? {
                out.push(self.decode(id, v.value())?);
            }
        }
        Ok(out)
    }
}

impl Store {
    /// Queues a review; its `id` is assigned here and returned. An older pending review of the
    /// same loop and target is marked superseded in the same transaction.
    pub fn queue_review(&self, item: &ReviewItem) -> Result<u64> {
        let txn = self.db.begin_write().map_err(|e| self.storage(e))?;
        let id = self.queue_review_in(&txn, item)?;
        txn.commit().map_err(|e| self.storage(e))?;
        Ok(id)
    }

    /// [`Store::queue_review`] inside a write transaction.
    pub(crate) fn queue_review_in(
        &self,
        txn: &redb::WriteTransaction,
        item: &ReviewItem,
    ) -> Result<u64> {
        check_name(&item.loop_name)?;
        check_name(&item.target)?;
        let mut meta = txn.open_table(META).map_err(|e| self.storage(e))?;
        let last: u64 = match meta.get(REVIEW_SEQ).map_err(|e| self.storage(e))? {
            Some(v) => self.decode(REVIEW_SEQ, v.value())?,
            None => 0,
        };
        let id = last + 1;
        meta.insert(REVIEW_SEQ, self.encode(&id)?.as_slice())
            .map_err(|e| self.storage(e))?;
        let mut reviews = txn.open_table(REVIEWS).map_err(|e| self.storage(e))?;
        let mut index = txn
            .open_table(REVIEWS_BY_TARGET)
            .map_err(|e| self.storage(e))?;
        let prefix = index_prefix(&item.loop_name, &item.target);
        let mut ids = Vec::new();
        for entry in index
            .range(prefix.as_str()..)
            .map_err(|e| self.storage(e))?
        {
            let (k, _) = entry.map_err(|e| self.storage(e))?;
            match k.value().strip_prefix(&prefix) {
                Some(id) => ids.push(id.to_string()),
                None => break,
            }
        }
        let mut superseded = Vec::new();
        for k in ids {
            let stored = reviews
                .get(k.as_str())
                .map_err(|e| self.storage(e))?
                .map(|v| self.decode::<ReviewItem>(&k, v.value()))
                .transpose()?;
            if let Some(old) = stored
                && old.status == ReviewStatus::Pending
            {
                superseded.push((k, old));
            }
        }
        for (k, mut old) in superseded {
            old.status = ReviewStatus::Superseded;
            let bytes = self.encode(&old)?;
            reviews
                .insert(k.as_str(), bytes.as_slice())
                .map_err(|e| self.storage(e))?;
            self.append_link(txn, LinkKind::Review, &k, &bytes)?;
        }
        let mut item = item.clone();
        item.id = id;
        item.status = ReviewStatus::Pending;
        let k = cycle_part(id);
        let bytes = self.encode(&item)?;
        reviews
            .insert(k.as_str(), bytes.as_slice())
            .map_err(|e| self.storage(e))?;
        self.append_link(txn, LinkKind::Review, &k, &bytes)?;
        index
            .insert(
                index_key(&item.loop_name, &item.target, id).as_str(),
                [].as_slice(),
            )
            .map_err(|e| self.storage(e))?;
        Ok(id)
    }

    /// Every review, oldest first.
    pub fn reviews(&self) -> Result<Vec<ReviewItem>> {
        self.scan(REVIEWS, "")
    }

    /// One review.
    pub fn review(&self, id: u64) -> Result<ReviewItem> {
        self.get(REVIEWS, &cycle_part(id))?
            .ok_or(StateError::UnknownReview { id })
    }

    fn put_review(&self, item: &ReviewItem) -> Result<()> {
        let txn = self.db.begin_write().map_err(|e| self.storage(e))?;
        {
            let mut reviews = txn.open_table(REVIEWS).map_err(|e| self.storage(e))?;
            let (k, bytes) = (cycle_part(item.id), self.encode(item)?);
            reviews
                .insert(k.as_str(), bytes.as_slice())
                .map_err(|e| self.storage(e))?;
            self.append_link(&txn, LinkKind::Review, &k, &bytes)?;
        }
        txn.commit().map_err(|e| self.storage(e))
    }

    /// Approves or rejects a pending review. An expired one is marked so and refused.
    pub fn decide_review(
        &self,
        id: u64,
        approve: bool,
        by: &str,
        comment: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<ReviewItem> {
        let mut item = self.review(id)?;
        if item.status == ReviewStatus::Pending && now > item.expires_at {
            item.status = ReviewStatus::Expired;
            self.put_review(&item)?;
        }
        if item.status != ReviewStatus::Pending {
            return Err(StateError::ReviewNotPending {
                id,
                status: item.status.to_string(),
            });
        }
        item.status = if approve {
            ReviewStatus::Approved
        } else {
            ReviewStatus::Rejected
        };
        item.decided_by = Some(by.to_string());
        item.decided_at = Some(now);
        item.comment = comment.map(str::to_string);
        self.put_review(&item)?;
        Ok(item)
    }

    /// The approval or rejection in force for a target of a loop at `now`: the latest decided
    /// review that has not expired.
    pub fn review_feedback(
        &self,
        loop_name: &str,
        target: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<ReviewFeedback>> {
        let mut found = None;
        for item in self.reviews_of(loop_name, target)? {
            // A decision past its expiry is no longer in force, but stays what it was: it is
            // still a reviewer's label for training and agreement.
            if matches!(item.status, ReviewStatus::Approved | ReviewStatus::Rejected) {
                if now > item.expires_at {
                    continue;
                }
                found = Some(ReviewFeedback {
                    id: item.id,
                    status: item.status,
                    action: item.action,
                    by: item.decided_by.clone().unwrap_or_default(),
                    at: item.decided_at.unwrap_or(item.created_at),
                    comment: item.comment.clone(),
                });
            }
        }
        Ok(found)
    }

    /// Marks an approved review as carried out.
    pub fn mark_review_applied(&self, id: u64) -> Result<()> {
        self.review(id)?;
        let txn = self.db.begin_write().map_err(|e| self.storage(e))?;
        self.set_review_status_in(&txn, id, ReviewStatus::Applied)?;
        txn.commit().map_err(|e| self.storage(e))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]

    use chrono::Duration;
    use setpoint_core::{
        ActionKind, Class, Classification, Explanation, Proposal, Reason, Resources, Risk,
    };

    use super::*;

    pub(crate) fn item(target: &str, now: DateTime<Utc>) -> ReviewItem {
        let size = Resources {
            cpu_millicores: 8000,
            memory_bytes: 1 << 35,
            replicas: 1,
            parameters: Default::default(),
        };
        ReviewItem {
            id: 0,
            loop_name: "pg".into(),
            target: target.into(),
            cycle: 1,
            created_at: now,
            expires_at: now + Duration::days(7),
            action: ActionKind::ScaleDown,
            proposal: Proposal {
                action: ActionKind::ScaleDown,
                summary: "8 vCPU → 4 vCPU".into(),
                before: size.clone(),
                after: size,
                operations: vec![],
                risk: Risk::Low,
                rationale: String::new(),
            },
            classification: Classification {
                class: Class::ScaleDown,
                confidence: 0.9,
                model: "m".into(),
                model_version: "1".into(),
                explanation: Explanation {
                    code: "model".into(),
                    rule: String::new(),
                    evidence: vec![],
                },
            },
            reasons: vec![Reason::new("approval_required", "first 60 days")],
            status: ReviewStatus::Pending,
            decided_by: None,
            decided_at: None,
            comment: None,
        }
    }

    #[test]
    fn reviews_are_queued_superseded_decided_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let now = Utc::now();
        let store = Store::open(dir.path()).unwrap();
        let first = store.queue_review(&item("a", now)).unwrap();
        let second = store.queue_review(&item("a", now)).unwrap();
        let other = store.queue_review(&item("b", now)).unwrap();
        assert_eq!((first, second, other), (1, 2, 3));
        assert_eq!(
            store.review(first).unwrap().status,
            ReviewStatus::Superseded
        );
        assert!(matches!(
            store.decide_review(first, true, "alice", None, now),
            Err(StateError::ReviewNotPending { .. })
        ));
        assert_eq!(store.review_feedback("pg", "a", now).unwrap(), None);

        let approved = store
            .decide_review(second, true, "alice", Some("looks idle"), now)
            .unwrap();
        assert_eq!(approved.decided_by.as_deref(), Some("alice"));
        let feedback = store.review_feedback("pg", "a", now).unwrap().unwrap();
        assert_eq!(
            (feedback.id, feedback.status, feedback.by.as_str()),
            (second, ReviewStatus::Approved, "alice")
        );
        // Past its expiry an approval is no longer in force, but stays an approval.
        let later = now + Duration::days(8);
        assert_eq!(store.review_feedback("pg", "a", later).unwrap(), None);
        assert_eq!(store.review(second).unwrap().status, ReviewStatus::Approved);

        // An undecided review cannot be decided after its expiry.
        assert!(matches!(
            store.decide_review(other, false, "bob", Some("no"), later),
            Err(StateError::ReviewNotPending { .. })
        ));
        assert_eq!(store.review(other).unwrap().status, ReviewStatus::Expired);
        assert!(matches!(
            store.review(99),
            Err(StateError::UnknownReview { id: 99 })
        ));
        drop(store);
        // Durable across a reopen.
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.reviews().unwrap().len(), 3);
    }
}
