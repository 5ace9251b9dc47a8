//! Sending the weekly report after cycles, when the configuration has `notify:`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use setpoint_act::ActOutcome;
use setpoint_core::{FeatureVector, ReviewItem};
use setpoint_notify::{Message, Notifier};
use setpoint_runtime::{Config, CycleReport};

use setpoint_server::html;

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

/// What the report needs from the store besides the cycles: the reviews still waiting for a
/// human (oldest first) and each reported target's latest features (for its chart).
pub struct ReportContext {
    /// Pending reviews.
    pub pending: Vec<ReviewItem>,
    /// Target → latest features.
    pub features: BTreeMap<String, FeatureVector>,
}

/// Reads the [`ReportContext`]; an unreadable store gives an empty one (the report still goes
/// out, without the queue and charts, and the log says why).
pub fn report_context(
    state_dir: &Path,
    reports: &[CycleReport],
    now: DateTime<Utc>,
) -> ReportContext {
    let read = || -> Result<ReportContext, setpoint_state::StateError> {
        let store = setpoint_state::Store::open_waiting(state_dir, Duration::from_secs(30))?;
        let pending = store
            .reviews()?
            .into_iter()
            .filter(|r| r.awaits_decision(now))
            .collect();
        let mut features = BTreeMap::new();
        for row in reports.iter().flat_map(|r| &r.rows) {
            if let Some(entry) = store.last_entry(&row.target)? {
                features.insert(row.target.clone(), entry.features);
            }
        }
        Ok(ReportContext { pending, features })
    };
    read().unwrap_or_else(|error| {
        tracing::warn!(%error, "the report goes out without the review queue and charts");
        ReportContext {
            pending: Vec::new(),
            features: BTreeMap::new(),
        }
    })
}

/// The report of some cycles as a message: each loop's table, then what awaits review.
pub fn message(reports: &[CycleReport], context: &ReportContext) -> Message {
    let pending = &context.pending;
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
    // Without its HTML alternative the mail still says everything in its text part.
    let html = html::report(reports, &context.features, pending)
        .inspect_err(|error| tracing::warn!(%error, "the report's HTML part could not be rendered"))
        .ok();
    Message {
        subject,
        text,
        html,
    }
}

/// Sends the report of `reports`; each channel's outcome goes to the log (a failed delivery
/// never fails the cycle: the report stays in the journal).
pub async fn send(
    notifier: &Notifier,
    state_dir: &Path,
    reports: &[CycleReport],
    now: DateTime<Utc>,
) {
    if reports.is_empty() {
        return;
    }
    let (state_dir, owned) = (state_dir.to_path_buf(), reports.to_vec());
    let context =
        match tokio::task::spawn_blocking(move || report_context(&state_dir, &owned, now)).await {
            Ok(context) => context,
            Err(_) => ReportContext {
                pending: Vec::new(),
                features: BTreeMap::new(),
            },
        };
    let message = message(reports, &context);
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
