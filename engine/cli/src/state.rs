//! `setpoint state`: check the state store, back it up, restore a backup.
//!
//! A damaged store is refused by every command that opens it; recovering is done here, on
//! purpose, and never deletes anything: a restore moves the files it replaces aside.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use setpoint_core::SharedClock;
use setpoint_state::{BACKUPS_DIR, Store, StoreSummary};

/// How long a state command waits for a running cycle to release the store.
const STORE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// `setpoint state …`.
#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Check the store whole (every page's checksum, every table, the kill-switch file) and
    /// say what it holds; exit 1 naming what is wrong.
    Check,
    /// Copy the store and the kill-switch file into a new directory (default:
    /// <state_dir>/backups/<time>), consistently: the store is held while it is copied.
    Backup {
        /// The directory to create.
        #[arg(long, value_name = "DIR")]
        to: Option<PathBuf>,
    },
    /// Make a backup the store: it is checked first, and the files it replaces are moved to
    /// <state_dir>/backups/replaced-<time>, never deleted. Stop setpoint first.
    Restore {
        /// A directory `setpoint state backup` wrote.
        backup: PathBuf,
    },
}

/// Runs a state command on the store in `dir`.
pub fn run(dir: &Path, command: &StateCommand, clock: &SharedClock) -> Result<ExitCode> {
    let stamp = clock.now().format("%Y%m%dT%H%M%SZ").to_string();
    match command {
        StateCommand::Check => {
            let store = Store::open_waiting(dir, STORE_WAIT)?;
            let summary = store.summary()?;
            let switches = setpoint_state::read_kill_switches(dir)?;
            println!("state ok: {}", store.path().display());
            print_summary(&summary);
            let on = switches.global as usize + switches.loops.len() + switches.targets.len();
            println!("  kill switches on  {on}");
        }
        StateCommand::Backup { to } => {
            let to = to
                .clone()
                .unwrap_or_else(|| dir.join(BACKUPS_DIR).join(&stamp));
            let store = Store::open_waiting(dir, STORE_WAIT)?;
            let summary = store.summary()?;
            store
                .backup_to(dir, &to)
                .with_context(|| format!("backing up {}", dir.display()))?;
            println!("backed up {} to {}", dir.display(), to.display());
            print_summary(&summary);
        }
        StateCommand::Restore { backup } => {
            let replaced = dir.join(BACKUPS_DIR).join(format!("replaced-{stamp}"));
            let summary = setpoint_state::restore(dir, backup, &replaced).with_context(|| {
                format!("restoring {} into {}", backup.display(), dir.display())
            })?;
            println!(
                "restored {} into {}; the files it replaced are in {}",
                backup.display(),
                dir.display(),
                replaced.display()
            );
            print_summary(&summary);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_summary(s: &StoreSummary) {
    println!("  schema            {}", s.schema_version);
    println!("  target histories  {}", s.histories);
    println!("  journal records   {}", s.journal_records);
    println!("  cycles            {}", s.cycles);
    println!("  reviews           {}", s.reviews);
    println!("  models            {}", s.models);
    println!("  intents           {}", s.intents);
}
