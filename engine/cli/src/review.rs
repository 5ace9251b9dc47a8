//! `setpoint review`: the queue of `review` verdicts, and approving or rejecting them.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use clap::Subcommand;
use comfy_table::Table;
use setpoint_act::{ActOutcome, OpStatus};
use setpoint_core::SharedClock;
use setpoint_core::{Mode, ReviewItem};
use setpoint_runtime::{Config, CycleReport, Runtime, Shutdown};
use setpoint_state::Store;

use crate::models::Format;

/// `setpoint review …`.
#[derive(Debug, Subcommand)]
pub enum ReviewCommand {
    /// The reviews waiting for a decision (with --all, every review and what became of it).
    List {
        /// Every review, not only pending ones.
        #[arg(long)]
        all: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: Format,
    },
    /// Everything needed to decide one review: the plan, its operations, the classification
    /// and its explanation, the policy's reasons.
    Show {
        /// The review's id.
        id: u64,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: Format,
    },
    /// Approve a pending review. The plan is re-checked against fresh data by the policy before
    /// anything runs: in an `enforce` loop at once (a cycle of that loop for that target only,
    /// which executes the plan if the policy still says act), in `dry-run` by the next cycle
    /// (which records what would have run).
    Approve {
        /// The review's id.
        id: u64,
        /// Why, for the journal.
        #[arg(long)]
        comment: Option<String>,
        /// Who (default: $USER).
        #[arg(long, env = "USER", default_value = "unknown")]
        by: String,
        /// Only record the approval; the loop's next scheduled cycle re-checks and acts.
        #[arg(long)]
        defer: bool,
    },
    /// Reject a pending review: the policy holds that plan on that target until it expires.
    Reject {
        /// The review's id.
        id: u64,
        /// Why, for the journal (required: a rejection without a reason teaches nothing).
        #[arg(long)]
        comment: String,
        /// Who (default: $USER).
        #[arg(long, env = "USER", default_value = "unknown")]
        by: String,
    },
}

/// A running cycle holds the store; review commands wait this long for it.
const STORE_WAIT: Duration = Duration::from_secs(30);

/// Runs a review command.
pub fn run(config: &Config, command: &ReviewCommand, clock: SharedClock) -> Result<ExitCode> {
    let store = Store::open_waiting(&config.state_dir, STORE_WAIT)?;
    match command {
        ReviewCommand::List { all, output } => {
            let now = clock.now();
            let items: Vec<ReviewItem> = store
                .reviews()?
                .into_iter()
                .filter(|r| *all || r.awaits_decision(now))
                .collect();
            match output {
                Format::Json => println!("{}", serde_json::to_string_pretty(&items)?),
                Format::Table => {
                    if items.is_empty() {
                        println!("no reviews waiting");
                        return Ok(ExitCode::SUCCESS);
                    }
                    let mut table = Table::new();
                    table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
                    table.set_header(vec![
                        "id", "status", "loop", "target", "action", "conf", "plan", "expires",
                    ]);
                    for r in &items {
                        table.add_row(vec![
                            r.id.to_string(),
                            r.status.to_string(),
                            r.loop_name.clone(),
                            r.target.clone(),
                            r.action.to_string(),
                            format!("{:.2}", r.classification.confidence),
                            r.proposal.summary.clone(),
                            r.expires_at.format("%Y-%m-%d %H:%M UTC").to_string(),
                        ]);
                    }
                    println!("{table}");
                }
            }
        }
        ReviewCommand::Show { id, output } => {
            let item = store.review(*id)?;
            match output {
                Format::Json => println!("{}", serde_json::to_string_pretty(&item)?),
                Format::Table => print!("{}", show(&item)),
            }
        }
        ReviewCommand::Approve {
            id,
            comment,
            by,
            defer,
        } => {
            let (item, enforce) = decide(
                config,
                &store,
                *id,
                true,
                by,
                comment.as_deref(),
                clock.now(),
            )?;
            if !enforce || *defer {
                println!(
                    "review {}: {} on {} approved by {}; the next cycle of loop {} re-checks it on fresh data and acts if it still holds",
                    item.id, item.action, item.target, by, item.loop_name
                );
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "review {}: {} on {} approved by {}; re-checking it on fresh data now (loop {} is in enforce mode)",
                item.id, item.action, item.target, by, item.loop_name
            );
            // The cycle opens the store itself.
            drop(store);
            return apply_now(config, &item, clock);
        }
        ReviewCommand::Reject { id, comment, by } => {
            if comment.trim().is_empty() {
                bail!("a rejection needs a --comment saying why");
            }
            let (item, _) = decide(config, &store, *id, false, by, Some(comment), clock.now())?;
            println!(
                "review {}: {} on {} rejected by {}; held until {}",
                item.id,
                item.action,
                item.target,
                by,
                item.expires_at.format("%Y-%m-%d %H:%M UTC")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Records a human's decision on a review (`setpoint review` and the web page share this);
/// returns the review and whether its loop is in enforce mode, where an approval is re-checked
/// and carried out at once (see [`recheck`]).
pub fn decide(
    config: &Config,
    store: &Store,
    id: u64,
    approve: bool,
    by: &str,
    comment: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(ReviewItem, bool)> {
    let item = store.decide_review(id, approve, by, comment, now)?;
    let enforce = config
        .loops
        .iter()
        .find(|l| l.name.as_str() == item.loop_name)
        .is_some_and(|l| l.mode == Mode::Enforce);
    Ok((item, approve && enforce))
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

/// What a re-check did, in lines for a person; `true` when the target failed.
pub fn recheck_summary(report: &CycleReport) -> (Vec<String>, bool) {
    let Some(row) = report.rows.first() else {
        return (vec!["the cycle processed no target".to_string()], true);
    };
    if let Some(error) = &row.error {
        return (
            vec![
                format!("{}: not carried out: {error}", row.target),
                format!("see: setpoint explain {}", row.target),
            ],
            true,
        );
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
    (lines, false)
}

/// Runs the approved review's loop for its target only; prints what happened.
fn apply_now(config: &Config, item: &ReviewItem, clock: SharedClock) -> Result<ExitCode> {
    let mut config = config.clone();
    config.loops.retain(|l| l.name.as_str() == item.loop_name);
    let now = clock.now();
    let runtime = Runtime::new(config)?.with_clock(clock);
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = tokio.block_on(recheck(&runtime, item, now))?;
    let (lines, failed) = recheck_summary(&report);
    for line in lines {
        println!("{line}");
    }
    Ok(if failed {
        ExitCode::from(crate::EXIT_TARGETS_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

fn show(item: &ReviewItem) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "review {} · {} · loop {} · target {} · cycle {}",
        item.id, item.status, item.loop_name, item.target, item.cycle
    );
    let _ = writeln!(
        out,
        "  queued {} · expires {}",
        item.created_at.to_rfc3339(),
        item.expires_at.to_rfc3339()
    );
    if let (Some(by), Some(at)) = (&item.decided_by, item.decided_at) {
        let _ = writeln!(
            out,
            "  decided by {by} at {}{}",
            at.to_rfc3339(),
            item.comment
                .as_deref()
                .map(|c| format!(": {c}"))
                .unwrap_or_default()
        );
    }
    let p = &item.proposal;
    let _ = writeln!(out, "\nplan: {} · risk {:?}", p.summary, p.risk);
    let _ = writeln!(out, "  why: {}", p.rationale);
    for (i, op) in p.operations.iter().enumerate() {
        let _ = writeln!(out, "  {}. {op}", i + 1);
    }
    let c = &item.classification;
    let _ = writeln!(
        out,
        "\nclassification: {} (confidence {:.2}) by {} {}",
        c.class, c.confidence, c.model, c.model_version
    );
    let _ = writeln!(out, "  {} — {}", c.explanation.code, c.explanation.rule);
    let _ = writeln!(out, "\npolicy");
    for r in &item.reasons {
        let _ = writeln!(out, "  {}: {}", r.code, r.message);
    }
    let _ = writeln!(
        out,
        "\napprove: setpoint review approve {} --comment …\nreject:  setpoint review reject {} --comment …",
        item.id, item.id
    );
    out
}
