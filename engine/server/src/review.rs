//! The review queue's workflow: recording a human's approval or rejection of a `review` verdict
//! and, in an `enforce` loop, re-checking an approval on fresh data before anything runs.
//!
//! `setpoint review` and the review page both decide through [`decide`] and re-check through
//! [`recheck`], so an approval means the same wherever it is given.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use setpoint_act::{ActOutcome, OpStatus};
use setpoint_core::{Mode, ReviewItem, ReviewStatus, SharedClock};
use setpoint_runtime::{Config, CycleReport, Runtime, RuntimeError, Shutdown};
use setpoint_state::{StateError, Store};

/// A running cycle holds the store; review commands wait this long for it.
pub const STORE_WAIT: Duration = Duration::from_secs(30);

/// What can go wrong while deciding or re-checking a review.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The state store failed: among others, the review does not exist
    /// ([`StateError::UnknownReview`]) or was already decided ([`StateError::ReviewNotPending`]).
    #[error(transparent)]
    State(#[from] StateError),
    /// The loop could not be set up, or its re-check cycle failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The async runtime the re-check runs on could not start.
    #[error("cannot start the async runtime")]
    AsyncRuntime(#[source] std::io::Error),
}

/// Result with [`ReviewError`].
pub type Result<T, E = ReviewError> = std::result::Result<T, E>;

/// A human's decision on one review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewDecision {
    /// The review's id.
    pub id: u64,
    /// Approve it, or reject it.
    pub approve: bool,
    /// Who decides, recorded in the journal.
    pub by: String,
    /// Why, recorded in the journal.
    pub comment: Option<String>,
}

/// A recorded decision.
#[derive(Debug, Clone)]
pub struct Decided {
    /// The review as it now stands.
    pub item: ReviewItem,
    /// The review was approved in a loop in `enforce` mode, where an approval is re-checked and
    /// carried out at once (see [`recheck`]); elsewhere the loop's next cycle does it.
    pub recheck_now: bool,
}

/// What a re-check did, for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecheckSummary {
    /// What happened, line by line.
    pub lines: Vec<String>,
    /// The target failed: the plan was not carried out.
    pub failed: bool,
}

/// Opens the state store in `state_dir`, waiting up to [`STORE_WAIT`] for a running cycle.
pub fn open_store(state_dir: &Path) -> Result<Store> {
    Ok(Store::open_waiting(state_dir, STORE_WAIT)?)
}

/// The reviews waiting for a decision at `now`, or with `all` every review.
pub fn queue(store: &Store, all: bool, now: DateTime<Utc>) -> Result<Vec<ReviewItem>> {
    Ok(store
        .reviews()?
        .into_iter()
        .filter(|r| all || r.awaits_decision(now))
        .collect())
}

/// Records a human's decision on a review.
pub fn decide(
    config: &Config,
    store: &Store,
    decision: &ReviewDecision,
    now: DateTime<Utc>,
) -> Result<Decided> {
    let item = store.decide_review(
        decision.id,
        decision.approve,
        &decision.by,
        decision.comment.as_deref(),
        now,
    )?;
    let enforce = config
        .loops
        .iter()
        .find(|l| l.name.as_str() == item.loop_name)
        .is_some_and(|l| l.mode == Mode::Enforce);
    Ok(Decided {
        item,
        recheck_now: decision.approve && enforce,
    })
}

/// Runs the approved review's loop for its target only, on fresh data: the policy re-checks
/// the approval and, if it still says act, the plan is executed.
pub async fn recheck(
    runtime: &Runtime,
    item: &ReviewItem,
    now: DateTime<Utc>,
) -> Result<CycleReport> {
    Ok(runtime
        .run_target(now, &item.loop_name, &item.target, &Shutdown::new())
        .await?)
}

/// [`recheck`] on an async runtime of its own, with a runtime of the review's loop only: for a
/// caller that is not already serving (the command line).
pub fn apply_now(config: &Config, item: &ReviewItem, clock: SharedClock) -> Result<RecheckSummary> {
    let mut config = config.clone();
    config.loops.retain(|l| l.name.as_str() == item.loop_name);
    let now = clock.now();
    let runtime = Runtime::new(config)?.with_clock(clock);
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ReviewError::AsyncRuntime)?;
    let report = tokio.block_on(recheck(&runtime, item, now))?;
    Ok(recheck_summary(&report))
}

/// What a re-check did, in lines for a person.
pub fn recheck_summary(report: &CycleReport) -> RecheckSummary {
    let Some(row) = report.rows.first() else {
        return RecheckSummary {
            lines: vec!["the cycle processed no target".to_string()],
            failed: true,
        };
    };
    if let Some(error) = &row.error {
        return RecheckSummary {
            lines: vec![
                format!("{}: not carried out: {error}", row.target),
                format!("see: setpoint explain {}", row.target),
            ],
            failed: true,
        };
    }
    let mut lines = Vec::new();
    match &row.outcome {
        Some(ActOutcome::Executed { results, .. }) => {
            lines.push(format!(
                "{}: executed ({} operation(s), cycle {}):",
                row.target,
                results.len(),
                report.cycle
            ));
            for r in results {
                let status = match &r.status {
                    OpStatus::Scheduled { at: Some(at) } => {
                        format!("scheduled for {}", at.format("%Y-%m-%d %H:%M UTC"))
                    }
                    OpStatus::Scheduled { at: None } => "scheduled".to_string(),
                    other => serde_json::to_value(other)
                        .ok()
                        .and_then(|v| v["status"].as_str().map(str::to_string))
                        .unwrap_or_default(),
                };
                lines.push(format!(
                    "  {} · {} · {status} · {}",
                    r.operation, r.actuator, r.detail
                ));
            }
        }
        _ => {
            let verdict = row.verdict.map(|v| v.to_string()).unwrap_or_default();
            let reason = row
                .reason
                .as_ref()
                .map(|r| format!("{}: {}", r.code, r.message))
                .unwrap_or_default();
            lines.push(format!(
                "{}: the policy no longer says act on fresh data (verdict {verdict}; {reason}); nothing was executed",
                row.target
            ));
        }
    }
    RecheckSummary {
        lines,
        failed: false,
    }
}

/// How often reviewers agreed with each model's recommendations, by (loop, model version):
/// (approved, decided). An approval counts as agreement, a rejection as disagreement; pending
/// and expired reviews do not count.
pub fn agreement_by_model(reviews: &[ReviewItem]) -> BTreeMap<(String, String), (usize, usize)> {
    let mut by_model = BTreeMap::new();
    for review in reviews {
        let key = (
            review.loop_name.clone(),
            review.classification.model_version.clone(),
        );
        let (agreed, decided) = by_model.entry(key).or_insert((0, 0));
        match review.status {
            ReviewStatus::Approved | ReviewStatus::Applied => {
                *agreed += 1;
                *decided += 1;
            }
            ReviewStatus::Rejected => *decided += 1,
            _ => {}
        }
    }
    by_model
}
