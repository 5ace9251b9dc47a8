//! Sending the weekly report after cycles, when the configuration has `notify:`.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::Utc;
use setpoint_act::ActOutcome;
use setpoint_core::{ReviewItem, ReviewStatus};
use setpoint_notify::{Message, Notifier};
use setpoint_runtime::{Config, CycleReport};

use crate::report;

/// The notifier of a configuration, built (and its secret files read) before any cycle runs,
/// so a broken `notify:` section stops the start rather than a Monday morning's report.
pub fn notifier(config: &Config) -> Result<Option<Arc<Notifier>>> {
    config
        .notify
        .as_ref()
        .map(|n| Notifier::new(n).map(Arc::new))
        .transpose()
        .context("notify")
}

/// The reviews still waiting for a human, oldest first (empty if the store is busy).
fn pending_reviews(state_dir: &Path) -> Vec<ReviewItem> {
    let now = Utc::now();
    match setpoint_state::Store::open_waiting(state_dir, Duration::from_secs(30))
        .and_then(|s| s.reviews())
    {
        Ok(items) => items
            .into_iter()
            .filter(|r| r.status == ReviewStatus::Pending && r.expires_at >= now)
            .collect(),
        Err(error) => {
            tracing::warn!(%error, "the report goes out without the review queue");
            Vec::new()
        }
    }
}

/// The report of some cycles as a message: each loop's table, then what awaits review.
pub fn message(reports: &[CycleReport], pending: &[ReviewItem]) -> Message {
    let targets: usize = reports.iter().map(|r| r.rows.len()).sum();
    let executed = reports
        .iter()
        .flat_map(|r| &r.rows)
        .filter(|row| matches!(row.outcome, Some(ActOutcome::Executed { .. })))
        .count();
    let failed: usize = reports.iter().map(CycleReport::failed).sum();
    let loops: Vec<&str> = reports.iter().map(|r| r.loop_name.as_str()).collect();
    let mut subject = format!(
        "weekly report · {} · {targets} targets · {} awaiting review",
        loops.join(", "),
        pending.len()
    );
    if executed > 0 {
        let _ = write!(subject, " · {executed} executed");
    }
    if failed > 0 {
        let _ = write!(subject, " · {failed} failed");
    }
    let mut text = String::new();
    for r in reports {
        text.push_str(&report::render(r));
        text.push('\n');
    }
    if pending.is_empty() {
        text.push_str("nothing awaits review\n");
    } else {
        let _ = writeln!(text, "awaiting review ({}):", pending.len());
        for item in pending {
            let _ = writeln!(
                text,
                "  #{} {} · {} · {} · expires {}",
                item.id,
                item.target,
                item.action,
                item.proposal.summary,
                item.expires_at.format("%Y-%m-%d %H:%M UTC")
            );
        }
        text.push_str("decide: setpoint review show <id>, then approve or reject\n");
    }
    Message {
        subject,
        text,
        html: None,
    }
}

/// Sends the report of `reports`; each channel's outcome goes to the log (a failed delivery
/// never fails the cycle: the report stays in the journal).
pub async fn send(notifier: &Notifier, state_dir: &Path, reports: &[CycleReport]) {
    if reports.is_empty() {
        return;
    }
    let state_dir = state_dir.to_path_buf();
    let pending = tokio::task::spawn_blocking(move || pending_reviews(&state_dir))
        .await
        .unwrap_or_default();
    let message = message(reports, &pending);
    for delivery in notifier.send(&message).await {
        match &delivery.result {
            Ok(detail) => tracing::info!(channel = %delivery.channel, %detail, "report sent"),
            Err(error) => {
                tracing::error!(channel = %delivery.channel, %error, "report not sent");
                eprintln!("notify: {error}");
            }
        }
    }
}
