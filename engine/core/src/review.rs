//! The review queue's records: a `review` verdict waiting for a human, and what the human said.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{ActionKind, Classification, Proposal, Reason};

/// Where a review stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewStatus {
    /// Waiting for a human.
    Pending,
    /// Approved: the next cycle re-checks it against fresh data with the policy, then acts.
    Approved,
    /// Rejected: the policy holds the same action on this target until the review expires.
    Rejected,
    /// Nobody decided before it expired, or an approval was not used before it expired.
    Expired,
    /// A later cycle queued a newer review for the same target before this one was decided.
    Superseded,
    /// Approved and carried out (or, in dry-run, recorded as what would have run).
    Applied,
}

impl ReviewStatus {
    /// The status as written in the store and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewStatus::Pending => "pending",
            ReviewStatus::Approved => "approved",
            ReviewStatus::Rejected => "rejected",
            ReviewStatus::Expired => "expired",
            ReviewStatus::Superseded => "superseded",
            ReviewStatus::Applied => "applied",
        }
    }
}

impl std::fmt::Display for ReviewStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `review` verdict with everything a human needs to decide it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewItem {
    /// Sequence number in the store, from 1: what people type.
    pub id: u64,
    /// The loop.
    pub loop_name: String,
    /// The target.
    pub target: String,
    /// The cycle that queued it.
    pub cycle: u64,
    /// When it was queued (the cycle's `now`).
    pub created_at: DateTime<Utc>,
    /// After this an undecided review, or an unused approval, expires.
    pub expires_at: DateTime<Utc>,
    /// The proposal's action kind.
    pub action: ActionKind,
    /// The proposal itself.
    pub proposal: Proposal,
    /// The classification behind it (model, version, confidence, explanation).
    pub classification: Classification,
    /// The policy's reasons for asking.
    pub reasons: Vec<Reason>,
    /// Where it stands.
    pub status: ReviewStatus,
    /// Who approved or rejected it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// When.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<DateTime<Utc>>,
    /// Why, in the reviewer's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

impl ReviewItem {
    /// Whether it still waits for a decision at `now`: pending and not expired.
    pub fn awaits_decision(&self, now: DateTime<Utc>) -> bool {
        self.status == ReviewStatus::Pending && self.expires_at >= now
    }
}

/// A human's decision on a target's proposal, handed to the policy (`input.review`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewFeedback {
    /// The review's id.
    pub id: u64,
    /// `approved` or `rejected`.
    pub status: ReviewStatus,
    /// The action kind decided on.
    pub action: ActionKind,
    /// Who.
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
    /// Why.
    #[serde(default)]
    pub comment: Option<String>,
}
