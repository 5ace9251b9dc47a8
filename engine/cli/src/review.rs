//! `setpoint review`: the queue of `review` verdicts, and approving or rejecting them. The
//! workflow is `setpoint_server::review`; this module parses the commands and prints.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Subcommand;
use comfy_table::Table;
use setpoint_core::{ReviewItem, SharedClock};
use setpoint_runtime::Config;
use setpoint_server::review::{self, Decided, ReviewDecision};

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

/// Runs a review command.
pub fn run(config: &Config, command: &ReviewCommand, clock: SharedClock) -> Result<ExitCode> {
    // Listing and showing read a snapshot beside a running cycle; deciding waits for it.
    let store = match command {
        ReviewCommand::List { .. } | ReviewCommand::Show { .. } => {
            setpoint_state::Store::open_for_reading(&config.state_dir)?
        }
        _ => review::open_store(&config.state_dir)?,
    };
    match command {
        ReviewCommand::List { all, output } => {
            let items = review::queue(&store, *all, clock.now())?;
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
            let decision = ReviewDecision {
                id: *id,
                approve: true,
                by: by.clone(),
                comment: comment.clone(),
            };
            let Decided { item, recheck_now } =
                review::decide(config, &store, &decision, clock.now())?;
            if !recheck_now || *defer {
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
            let summary = review::apply_now(config, &item, clock)?;
            for line in &summary.lines {
                println!("{line}");
            }
            return Ok(if summary.failed {
                ExitCode::from(crate::EXIT_TARGETS_FAILED)
            } else {
                ExitCode::SUCCESS
            });
        }
        ReviewCommand::Reject { id, comment, by } => {
            if comment.trim().is_empty() {
                bail!("a rejection needs a --comment saying why");
            }
            let decision = ReviewDecision {
                id: *id,
                approve: false,
                by: by.clone(),
                comment: Some(comment.clone()),
            };
            let Decided { item, .. } = review::decide(config, &store, &decision, clock.now())?;
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
