//! Operations on their way to real infrastructure: what an actuator reports for each, and the
//! journalled intent that makes a crash neither repeat nor lose one.
//!
//! In `enforce` mode an `act` verdict becomes an [`Intent`] that is written to the store, in
//! the same transaction as the target's journal entry, *before* any actuator is called. Its
//! [`key`](Intent::key) is the idempotency key: the same loop, cycle, target and operations
//! always give the same key. When the actuators are done, the intent is finished (`done`,
//! `failed` or `cancelled`) in one transaction with the journal entry. An intent still `pending`
//! when the engine starts belongs to a process that died between the two writes; start-up
//! reconciliation carries it to an end — re-running it is safe because actuators compare with
//! what the system holds and report `already_applied` instead of changing anything twice.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Decision, Operation, Proposal, Target};

/// What happened to one operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum OpStatus {
    /// Changed now, and reading back shows the change.
    Applied,
    /// The system already had the target value; nothing was changed.
    AlreadyApplied,
    /// Accepted, and takes effect later: at `at` (a scheduled restart), or when the system's
    /// own controller rolls it out (`at` = `None`, e.g. CloudNativePG).
    Scheduled {
        /// When it takes effect, if the actuator chose the time.
        at: Option<DateTime<Utc>>,
    },
    /// Dry-run: validated (by the server where the API offers it), nothing changed.
    DryRun,
    /// Handed to an external system (a webhook) that applies it in its own way.
    Delivered,
}

/// One operation's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationResult {
    /// The operation.
    pub operation: Operation,
    /// Actuator name.
    pub actuator: String,
    /// The URL or object it was carried out on.
    pub object: String,
    /// What happened.
    pub status: OpStatus,
    /// Details for humans, e.g. the value that was read back.
    #[serde(default)]
    pub detail: String,
}

/// Where an intent stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntentStatus {
    /// Journalled; the actuators have not reported yet (or the process died before they did).
    Pending,
    /// Every operation was applied, already applied, scheduled or delivered.
    Done,
    /// An operation failed, could not be verified, or conflicted with another writer; the
    /// error says which. The next cycle decides again on fresh data.
    Failed,
    /// Not started (or not resumed): a kill switch was on, or the intent was too old to resume
    /// after a crash. Nothing was changed by it, which reading back confirmed.
    Cancelled,
}

impl IntentStatus {
    /// The status as written in the store and shown to people.
    pub fn as_str(self) -> &'static str {
        match self {
            IntentStatus::Pending => "pending",
            IntentStatus::Done => "done",
            IntentStatus::Failed => "failed",
            IntentStatus::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for IntentStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One plan on its way to the actuators.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intent {
    /// The idempotency key (a hash of loop, cycle, target and operations).
    pub key: String,
    /// The loop.
    pub loop_name: String,
    /// The cycle that decided it.
    pub cycle: u64,
    /// The target as it was decided (its labels name the object or URL acted on).
    pub target: Target,
    /// The decision being carried out.
    pub decision: Decision,
    /// The chosen proposal.
    pub proposal: Proposal,
    /// The operations, in plan order.
    pub operations: Vec<Operation>,
    /// The approval this intent carries out, if a reviewer's approval led to it.
    #[serde(default)]
    pub review: Option<u64>,
    /// When it was journalled (the cycle's `now`).
    pub created_at: DateTime<Utc>,
    /// Where it stands.
    pub status: IntentStatus,
    /// Calls of the actuators so far (retries and resumptions included).
    #[serde(default)]
    pub attempts: u32,
    /// One result per operation carried out, in order, once known.
    #[serde(default)]
    pub results: Vec<OperationResult>,
    /// Why it failed or was cancelled.
    #[serde(default)]
    pub error: Option<String>,
    /// When it reached its end.
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    /// Whether it was carried to its end by start-up reconciliation (its process died).
    #[serde(default)]
    pub reconciled: bool,
}
