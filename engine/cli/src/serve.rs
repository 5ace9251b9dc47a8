//! `setpoint serve`: the arguments; the server itself is `setpoint_server::serve`.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use setpoint_core::SharedClock;
use setpoint_runtime::Config;
use setpoint_server::serve::ServeOptions;

/// `setpoint serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (overrides `serve.listen`; default 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Run one cycle of every loop at start, before waiting for their schedules.
    #[arg(long)]
    run_once_first: bool,
    /// Do not run the loops at all: only serve what the store holds.
    #[arg(long, conflicts_with = "run_once_first")]
    no_loops: bool,
}

impl From<&ServeArgs> for ServeOptions {
    fn from(args: &ServeArgs) -> Self {
        ServeOptions {
            listen: args.listen.clone(),
            run_once_first: args.run_once_first,
            no_loops: args.no_loops,
        }
    }
}

/// Runs `setpoint serve` until SIGINT/SIGTERM, printing what the server reports to stderr.
pub fn serve(config: Config, args: &ServeArgs, clock: SharedClock) -> Result<ExitCode> {
    setpoint_server::serve::serve(config, &args.into(), clock, |event| {
        eprintln!("setpoint serve: {event}");
    })?;
    Ok(ExitCode::SUCCESS)
}
