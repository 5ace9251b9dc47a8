//! `setpoint journal`: verify the chain over the decision journal and the reviews, and
//! acknowledge a break once it is understood.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use setpoint_core::SharedClock;
use setpoint_state::Store;

/// How long a journal command waits for a running cycle to release the store.
const STORE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// `setpoint journal …`.
#[derive(Debug, Subcommand)]
pub enum JournalCommand {
    /// Check the chain: every link's hash, and every journal record and review exactly as
    /// the chain recorded it. Exit 1 naming the first broken record or link.
    Verify {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Accept the journal as it is after a break (a new baseline, recorded with who and
    /// when), which lets enforce mode run again. Check what broke first (`journal verify`).
    Acknowledge {
        /// Who acknowledges, recorded in the chain (default: $USER).
        #[arg(long, env = "USER", default_value = "unknown")]
        by: String,
    },
}

/// Runs a journal command on the store in `dir`.
pub fn run(dir: &Path, command: &JournalCommand, clock: &SharedClock) -> Result<ExitCode> {
    let store = Store::open_waiting(dir, STORE_WAIT)?;
    match command {
        JournalCommand::Verify { json } => {
            let report = store.verify_chain()?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                let head = report
                    .head
                    .as_ref()
                    .map_or("none".to_string(), ToString::to_string);
                match &report.broken {
                    None => println!(
                        "journal chain intact: head {head}; {} link(s) and {} record(s) checked",
                        report.links_checked, report.records_checked
                    ),
                    Some(broken) => eprintln!(
                        "journal chain broken: {broken}. Enforce mode is suspended (dry-run) until `setpoint journal acknowledge`; head {head}"
                    ),
                }
            }
            Ok(if report.broken.is_some() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        JournalCommand::Acknowledge { by } => {
            let before = store.verify_chain()?;
            let head = store.acknowledge_chain(by, clock.now())?;
            match before.broken {
                Some(broken) => println!("acknowledged by {by}: {broken}; new head {head}"),
                None => println!("acknowledged by {by} (the chain was intact); new head {head}"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
