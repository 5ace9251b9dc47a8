//! `setpoint`: the command-line tool.
//!
//! With no arguments it runs one cycle of the quickstart — the embedded simulated fleet, the
//! bundled PostgreSQL plugin and policies, in dry-run — and prints the weekly report.

mod explain;
mod fast_sim;
mod forecast;
mod journal;
mod models;
mod notify;
mod plugin;
mod report;
mod review;
mod serve;
mod state;
mod telemetry;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};
use setpoint_core::SharedClock;
use setpoint_runtime::{Config, Runtime, Shutdown};
use setpoint_state::KillSwitchScope;

/// Exit status when the run completed but some targets failed at some stage.
const EXIT_TARGETS_FAILED: u8 = 3;

/// Exit status when the run completed on degraded observations (a metric query or discovery
/// failed, a target had no series): affected targets held, nothing shrank, but the data was
/// incomplete.
const EXIT_DEGRADED: u8 = 4;

const AFTER_HELP: &str = "\
With no command, setpoint runs one cycle of every configured loop and prints the report
(with no config: the quickstart over the embedded simulated fleet, in dry-run).

Exit status: 0 success; 1 error (bad config, policy that does not parse, state store); 2 bad
usage; 3 the cycle completed but some targets failed (a plugin trapped, a stage errored) —
the report names them; 4 the cycle completed on degraded observations (a metric query or
discovery failed, a target had no series; affected targets held, nothing shrank).";

/// setpoint closes the loop between infrastructure telemetry and action: it observes metrics,
/// classifies each target (scale down / remain / scale up), proposes concrete plans through
/// sandboxed WASM plugins, decides with Rego policies, and acts — or, by default, records what it
/// would do (dry-run). Every decision is journalled and can be explained.
#[derive(Debug, Parser)]
#[command(name = "setpoint", version, after_help = AFTER_HELP)]
struct Cli {
    /// Configuration file (YAML). Without one, the quickstart configuration is used.
    #[arg(
        long,
        short,
        global = true,
        env = "SETPOINT_CONFIG",
        value_name = "FILE"
    )]
    config: Option<PathBuf>,
    /// State directory (history, decision journal, kill switches); overrides the config's state_dir.
    #[arg(long, global = true, env = "SETPOINT_STATE_DIR", value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// More log output on stderr (-v info, -vv debug with per-stage spans). RUST_LOG overrides.
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// The current time (RFC 3339) for every command: replays a cycle at that instant
    /// (`run --once`), lists and decides reviews as of then, dates kill switches, ends a
    /// simulated export there. Default: the wall clock. Not for the scheduled `run` or `serve`.
    #[arg(long, global = true, env = "SETPOINT_NOW", value_name = "TIME")]
    now: Option<DateTime<Utc>>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the loops: one cycle each with --once, else on their schedules until SIGINT/SIGTERM.
    Run(RunArgs),
    /// Print the full trace of the last decision for a target.
    Explain(ExplainArgs),
    /// Turn kill switches on or off (global, per loop, per target), or show them.
    ///
    /// A kill switch makes every decision in its scope `block` with reason `kill_switch`, from
    /// the next cycle on (a running `setpoint run` reads them at every cycle).
    KillSwitch(KillSwitchArgs),
    /// The decision journal's tamper-evident chain: verify it, acknowledge a break.
    #[command(subcommand)]
    Journal(journal::JournalCommand),
    /// The state store: check it, back it up, restore a backup.
    #[command(subcommand)]
    State(state::StateCommand),
    /// Work with policy bundles.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Work with the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Work with the embedded simulated fleet.
    #[command(subcommand)]
    Sim(SimCommand),
    /// Inspect a plugin, or validate it against the plugin contract.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Train a loop's classifier on what followed each 4-week window of a history, report its
    /// cross-validated quality, and register it: with --from-source, the loop's own metric
    /// source's history (≥ 12 weeks, labelled from the degradations it shows, --incidents and
    /// --alerts); else the simulator's history of the plugin's scenarios. Logs to MLflow when
    /// configured.
    Train(models::TrainArgs),
    /// Score a loop's classifier against what actually followed: with --from-source, train on
    /// the source's history up to a split week and score the weeks after it (per-class
    /// precision and recall, macro-F1, unsafe shrinks, how far ahead degradations were
    /// flagged); else replay a held-out simulated history through the promoted model, its
    /// surrogate rules and the bootstrap heuristics.
    Evaluate(models::EvaluateArgs),
    /// The model registry: list, show, promote, roll back.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// The review queue: what waits for a human, and approving or rejecting it.
    #[command(subcommand)]
    Review(review::ReviewCommand),
    /// Check the predictive fast loop's forecasts on any series of a loop's metric source
    /// (or a CSV file): a backtest over past origins beside persistence and seasonal naive,
    /// or, with --at, the forecasts from now and when they reach a capacity threshold.
    Forecast(forecast::ForecastArgs),
    /// Run the loops on their schedules (as `run` does) and serve the engine's metrics on
    /// /metrics and the review web page, until SIGINT/SIGTERM.
    Serve(serve::ServeArgs),
}

#[derive(Debug, Subcommand)]
enum SimCommand {
    /// Write the fleet's history as raw exporter metrics, to backfill a real TSDB.
    ///
    /// openmetrics: for `promtool tsdb create-blocks-from openmetrics` (Prometheus).
    /// victoria-metrics: for `POST /api/v1/import/prometheus` (VictoriaMetrics).
    Export(SimExportArgs),
    /// Run the predictive fast loop over the simulated service fleet in simulated time —
    /// forecasts, anomaly scores, the control policy and setpoint's guard, every action fed
    /// back into load and latency — and the reactive HPA-style baseline on the same traffic;
    /// print when the loop pre-scaled, shifted or throttled against each surge and
    /// degradation, and the SLO breach minutes and replica-hours of both.
    FastLoop(fast_sim::FastLoopArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SimFormat {
    /// OpenMetrics text, timestamps in seconds, ending in `# EOF`.
    Openmetrics,
    /// Prometheus text lines with millisecond timestamps.
    VictoriaMetrics,
}

#[derive(Debug, Args)]
struct SimExportArgs {
    /// Output format.
    #[arg(long, value_enum)]
    format: SimFormat,
    /// Output file; `-` for standard output.
    #[arg(long, short, default_value = "-")]
    out: PathBuf,
    /// Simulation seed (the quickstart's is 42).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Weeks of history.
    #[arg(long, default_value_t = 5)]
    weeks: u32,
    /// Sample spacing in seconds (at most 150 so every 5-minute rate() window has two samples).
    #[arg(long, default_value_t = 150)]
    step: u64,
    /// Only this target (repeatable); default: the whole fleet.
    #[arg(long = "target", value_name = "ID")]
    targets: Vec<String>,
    /// Simulate a fleet of this many targets instead of the quickstart's (each scenario keeps
    /// its share; ids are numbered to match), e.g. to backfill a benchmark.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    fleet_size: Option<u32>,
}

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
enum Output {
    /// Human-readable table.
    #[default]
    Table,
    /// JSON, for scripts.
    Json,
}

#[derive(Debug, Default, Args)]
struct RunArgs {
    /// Run one cycle of each loop now and exit.
    #[arg(long)]
    once: bool,
    /// Only this loop.
    #[arg(long = "loop", value_name = "NAME")]
    loop_name: Option<String>,
    /// Output format of the report.
    #[arg(long, short, value_enum, default_value_t)]
    output: Output,
    /// Do not send the report to the configured `notify:` channels.
    #[arg(long)]
    no_notify: bool,
    /// Also write the report as an HTML document (with each target's four-week chart) to
    /// this file. Only with --once.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ExplainArgs {
    /// Target id, or a fast loop's service, as shown in the report.
    target: String,
    /// A fast loop's service: the decision journalled at or before this time (RFC 3339, e.g.
    /// 2026-11-24T09:00:00Z; default: the latest).
    #[arg(long, value_name = "TIME")]
    at: Option<chrono::DateTime<chrono::Utc>>,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t)]
    output: Output,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Switch {
    /// Turn the switch on: block every decision in its scope.
    On,
    /// Turn the switch off.
    Off,
    /// Show the switches that are on.
    Status,
}

#[derive(Debug, Args)]
struct KillSwitchArgs {
    /// on, off or status.
    #[arg(value_enum)]
    state: Switch,
    /// Only this loop.
    #[arg(long = "loop", value_name = "NAME", conflicts_with = "target")]
    loop_name: Option<String>,
    /// Only this target.
    #[arg(long, value_name = "ID")]
    target: Option<String>,
    /// Who turns it on, recorded with the switch (default: $USER).
    #[arg(long, env = "USER", default_value = "unknown")]
    by: String,
    /// Set a switch for a loop or target that the configuration and the store do not know
    /// (one not yet configured or seen); without it such a switch is refused, so that a typo
    /// protects nothing silently.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Run the Rego tests (rules named test_*) and the golden cases of a policy bundle, after
    /// checking that every function it calls is defined.
    Test {
        /// Bundle directory; default: ./policies if it exists, else the builtin bundle.
        dir: Option<PathBuf>,
        /// Golden cases directory (<case>/input.json + expected.json); default: <dir>/tests.
        #[arg(long, value_name = "DIR")]
        golden: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check the configuration (and that every function its policies call is defined) and
    /// print it with every default filled in.
    Check,
}

/// mimalloc rather than the system allocator: a plugin call's answers are many small strings
/// and lists lifted into host memory, on which glibc's malloc spent a fifth of the time of a
/// batch (`docs/benchmarks.md`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let telemetry = match init_tracing(&cli) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("error: {}", setpoint_server::describe(error.as_ref()));
            return ExitCode::FAILURE;
        }
    };
    let code = match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", setpoint_server::describe(error.as_ref()));
            ExitCode::FAILURE
        }
    };
    // Whatever the outcome, the traces of the cycles that ran are delivered before exiting.
    telemetry.shutdown();
    code
}

/// The stderr log, and OpenTelemetry traces when the config's `telemetry:` or the `OTEL_*`
/// environment turn them on. The config is read here only for its `telemetry:` section: a file
/// that does not load is reported by the command itself, with the log already set up.
fn init_tracing(cli: &Cli) -> Result<telemetry::Telemetry> {
    let config = cli
        .config
        .as_deref()
        .and_then(|path| Config::load(path).ok())
        .map(|config| config.telemetry)
        .unwrap_or_default();
    telemetry::init(cli.verbose, &config)
}

fn load_config(cli: &Cli) -> Result<Config> {
    let mut config = match &cli.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(dir) = &cli.state_dir {
        config.state_dir = dir.clone();
    }
    config.add_plugins_dir_loops()?;
    Ok(config)
}

/// The one clock every command reads the time from: `--now`, else the wall clock.
fn clock(cli: &Cli) -> SharedClock {
    match cli.now {
        Some(at) => setpoint_core::fixed_clock(at),
        None => setpoint_core::system_clock(),
    }
}

fn state_dir(cli: &Cli) -> Result<PathBuf> {
    Ok(load_config(cli)?.state_dir)
}

fn run(cli: Cli) -> Result<ExitCode> {
    let clock = clock(&cli);
    match &cli.command {
        None => run_loops(
            &cli,
            &RunArgs {
                once: true,
                ..RunArgs::default()
            },
        ),
        Some(Command::Run(args)) => run_loops(&cli, args),
        Some(Command::Explain(args)) => {
            let dir = state_dir(&cli)?;
            explain::explain(
                &dir,
                &args.target,
                args.at,
                matches!(args.output, Output::Json),
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::KillSwitch(args)) => kill_switch(&load_config(&cli)?, args, &clock),
        Some(Command::State(command)) => state::run(&state_dir(&cli)?, command, &clock),
        Some(Command::Journal(command)) => journal::run(&state_dir(&cli)?, command, &clock),
        Some(Command::Policy(PolicyCommand::Test { dir, golden })) => {
            policy_test(dir.as_deref(), golden.as_deref())
        }
        Some(Command::Sim(SimCommand::Export(args))) => sim_export(args, &clock),
        Some(Command::Sim(SimCommand::FastLoop(args))) => fast_sim::run(args),
        Some(Command::Plugin(command)) => plugin::run(command),
        Some(Command::Train(args)) => models::train(&load_config(&cli)?, args, &clock),
        Some(Command::Evaluate(args)) => models::evaluate(&load_config(&cli)?, args, &clock),
        Some(Command::Models(command)) => models::models(&state_dir(&cli)?, command, &clock),
        Some(Command::Review(command)) => review::run(&load_config(&cli)?, command, clock),
        Some(Command::Forecast(args)) => forecast::run(args, || load_config(&cli), &clock),
        Some(Command::Serve(args)) => {
            if cli.now.is_some() {
                bail!("--now replays one instant; `serve` follows the wall clock");
            }
            serve::serve(load_config(&cli)?, args, clock)
        }
        Some(Command::Config(ConfigCommand::Check)) => {
            let config = load_config(&cli)?;
            let runtime = Runtime::new(config.clone())?;
            for lp in runtime.loops() {
                lp.check_policies()?;
            }
            print!("{}", serde_yaml::to_string(&config)?);
            let inventoried: usize = config.loops.iter().map(|l| l.inventoried.len()).sum();
            eprintln!(
                "config ok: {} loop(s), {inventoried} target(s) from inventory files",
                config.loops.len()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn run_loops(cli: &Cli, args: &RunArgs) -> Result<ExitCode> {
    if cli.now.is_some() && !args.once {
        bail!("--now only makes sense with --once: the scheduled loops follow the wall clock");
    }
    let clock = clock(cli);
    if args.html.is_some() && !args.once {
        bail!("--html only makes sense with --once");
    }
    let config = load_config(cli)?;
    if let Some(name) = &args.loop_name
        && !config.loops.iter().any(|l| l.name.as_str() == name)
    {
        let known: Vec<&str> = config.loops.iter().map(|l| l.name.as_str()).collect();
        bail!("no loop named {name:?}; loops: {}", known.join(", "));
    }
    let notifier = if args.no_notify {
        None
    } else {
        notify::notifier(&config)?
    };
    let state_dir = config.state_dir.clone();
    let runtime = Runtime::new(config)?.with_clock(clock.clone());
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let shutdown = Shutdown::new();
    tokio.block_on(async {
        setpoint_server::spawn_signal_listener(shutdown.clone());
        if args.once {
            let now = clock.now();
            let reports = runtime
                .run_once(now, args.loop_name.as_deref(), &shutdown)
                .await?;
            match args.output {
                Output::Table => {
                    for r in &reports {
                        print!("{}", report::render(r));
                    }
                }
                Output::Json => println!("{}", serde_json::to_string_pretty(&reports)?),
            }
            if let Some(path) = &args.html {
                let context = notify::report_context(&state_dir, &reports, now);
                let document =
                    setpoint_server::html::report(&reports, &context.features, &context.pending)
                        .context("cannot render the HTML report")?;
                std::fs::write(path, document).with_context(|| {
                    format!("cannot write the HTML report to {}", path.display())
                })?;
                eprintln!("HTML report written to {}", path.display());
            }
            if let Some(notifier) = &notifier {
                notify::send(notifier, &state_dir, &reports, now).await;
            }
            let failed: usize = reports.iter().map(|r| r.failed()).sum();
            if reports.iter().any(|r| r.interrupted) {
                eprintln!("interrupted: the cycle stopped early and is recorded as interrupted");
                return Ok(ExitCode::from(130));
            }
            if failed > 0 {
                eprintln!(
                    "{failed} target(s) failed; see the report and `setpoint explain <target>`"
                );
                return Ok(ExitCode::from(EXIT_TARGETS_FAILED));
            }
            let degraded: Vec<&String> = reports.iter().flat_map(|r| &r.degraded).collect();
            let without_series: Vec<&String> = reports
                .iter()
                .flat_map(|r| &r.targets_without_series)
                .collect();
            if !degraded.is_empty() || !without_series.is_empty() {
                for d in &degraded {
                    eprintln!("degraded: {d}");
                }
                if !without_series.is_empty() {
                    let ids: Vec<&str> = without_series.iter().map(|s| s.as_str()).collect();
                    eprintln!("degraded: targets with no series: {}", ids.join(", "));
                }
                return Ok(ExitCode::from(EXIT_DEGRADED));
            }
            Ok(ExitCode::SUCCESS)
        } else {
            let output = args.output;
            eprintln!(
                "setpoint: running {} loop(s) on their schedules; Ctrl-C to stop",
                runtime.loops().len()
            );
            runtime
                .run_scheduled(shutdown.clone(), move |r| {
                    match output {
                        Output::Table => print!("{}", report::render(r)),
                        Output::Json => match serde_json::to_string(r) {
                            Ok(line) => println!("{line}"),
                            Err(error) => tracing::error!(%error, "cannot serialise the report"),
                        },
                    }
                    if let Some(notifier) = notifier.clone() {
                        let (state_dir, report) = (state_dir.clone(), r.clone());
                        let now = clock.now();
                        tokio::spawn(async move {
                            notify::send(&notifier, &state_dir, &[report], now).await;
                        });
                    }
                })
                .await?;
            eprintln!("setpoint: stopped");
            Ok(ExitCode::SUCCESS)
        }
    })
}

fn kill_switch(config: &Config, args: &KillSwitchArgs, clock: &SharedClock) -> Result<ExitCode> {
    let dir = config.state_dir.as_path();
    let scope = match (&args.loop_name, &args.target) {
        (Some(name), _) => KillSwitchScope::Loop(name.clone()),
        (None, Some(id)) => KillSwitchScope::Target(id.clone()),
        (None, None) => KillSwitchScope::Global,
    };
    if !matches!(args.state, Switch::Status) && !args.force {
        check_switch_scope(config, &scope)?;
    }
    let switches = match args.state {
        Switch::Status => setpoint_state::read_kill_switches(dir)?,
        Switch::On => {
            setpoint_state::set_kill_switch_by(dir, &scope, true, Some((&args.by, clock.now())))?
        }
        Switch::Off => setpoint_state::set_kill_switch(dir, &scope, false)?,
    };
    let mut on = Vec::new();
    if switches.global {
        on.push("global".to_string());
    }
    on.extend(switches.loops.keys().map(|l| format!("loop {l}")));
    on.extend(switches.targets.keys().map(|t| format!("target {t}")));
    // Who set each one, where that was recorded.
    let keys = std::iter::once("global".to_string())
        .filter(|_| switches.global)
        .chain(
            switches
                .loops
                .keys()
                .map(|l| KillSwitchScope::Loop(l.clone()).key()),
        )
        .chain(
            switches
                .targets
                .keys()
                .map(|t| KillSwitchScope::Target(t.clone()).key()),
        );
    for (label, key) in on.iter_mut().zip(keys) {
        if let Some(setter) = switches.set_by.get(&key) {
            label.push_str(&format!(
                " (by {} at {})",
                setter.by,
                setter.at.format("%Y-%m-%d %H:%M UTC")
            ));
        }
    }
    if on.is_empty() {
        println!("kill switches: none on");
    } else {
        println!("kill switches on: {}", on.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

/// Refuses a loop or target switch that names nothing the configuration or the store knows.
fn check_switch_scope(config: &Config, scope: &KillSwitchScope) -> Result<()> {
    match scope {
        KillSwitchScope::Global => Ok(()),
        KillSwitchScope::Loop(name) => {
            let loops: Vec<&str> = config.loops.iter().map(|l| l.name.as_str()).collect();
            if loops.contains(&name.as_str()) {
                return Ok(());
            }
            bail!(
                "no loop named {name:?} in the configuration (loops: {}); nothing was switched. --force sets it anyway",
                loops.join(", ")
            )
        }
        KillSwitchScope::Target(id) => {
            let declared = config.loops.iter().any(|l| {
                l.declared_targets()
                    .any(|t| &t.id == id || t.aliases.contains(id))
            });
            if declared {
                return Ok(());
            }
            // Discovered targets are known from the journal. A running cycle holds the store:
            // a short wait, then the operator decides.
            let store = setpoint_state::Store::open_waiting(
                &config.state_dir,
                std::time::Duration::from_secs(5),
            )
            .with_context(|| {
                format!(
                    "checking that target {id:?} exists (--force sets the switch without checking)"
                )
            })?;
            if store.targets()?.iter().any(|t| t == id) {
                return Ok(());
            }
            bail!(
                "no target {id:?} is declared in the configuration or was ever decided in {}; nothing was switched. --force sets it anyway",
                config.state_dir.display()
            )
        }
    }
}

fn policy_test(dir: Option<&Path>, golden: Option<&Path>) -> Result<ExitCode> {
    let default_dir = Path::new("policies");
    let dir = dir.or_else(|| default_dir.is_dir().then_some(default_dir));
    let (bundle, name, golden_dir) = match dir {
        Some(dir) => (
            setpoint_decide::PolicyBundle::load(dir)?,
            dir.display().to_string(),
            golden
                .map(Path::to_path_buf)
                .or_else(|| Some(dir.join("tests")).filter(|g| g.is_dir())),
        ),
        None => (
            setpoint_decide::default_bundle()?,
            "builtin".to_string(),
            golden.map(Path::to_path_buf),
        ),
    };
    let report = setpoint_decide::run_tests(&bundle, golden_dir.as_deref())?;
    println!("policy bundle {name}");
    let mut failed = 0;
    for case in &report.cases {
        if case.passed {
            println!("  ok    {}", case.name);
        } else {
            failed += 1;
            println!("  FAIL  {}: {}", case.name, case.message);
        }
    }
    let passed = report.cases.len() - failed;
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn sim_export(args: &SimExportArgs, clock: &SharedClock) -> Result<ExitCode> {
    use setpoint_observe::export::{ExportFormat, ExportOptions, export};
    if !(1..=52).contains(&args.weeks) {
        bail!("--weeks must be between 1 and 52, got {}", args.weeks);
    }
    if !(1..=3600).contains(&args.step) {
        bail!(
            "--step must be between 1 and 3600 seconds, got {}",
            args.step
        );
    }
    let step = args.step as i64;
    let now = clock.now();
    let end = DateTime::from_timestamp(now.timestamp().div_euclid(step) * step, 0).unwrap_or(now);
    let options = ExportOptions {
        end,
        weeks: args.weeks,
        step_seconds: args.step,
        targets: args.targets.clone(),
        job: "setpoint-sim".to_string(),
    };
    let format = match args.format {
        SimFormat::Openmetrics => ExportFormat::OpenMetrics,
        SimFormat::VictoriaMetrics => ExportFormat::VictoriaMetrics,
    };
    let fleet = setpoint_runtime::builtin_fleet_sized(
        args.seed,
        "postgres",
        args.fleet_size.map(|n| n as usize),
    )?;
    let stats = if args.out.as_os_str() == "-" {
        let stdout = std::io::stdout();
        let mut writer = std::io::BufWriter::new(stdout.lock());
        export(&fleet, &options, format, &mut writer)?
    } else {
        // Write beside the target and rename, so a failed export never leaves half a file.
        let tmp = args.out.with_extension("partial");
        let file = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        let mut writer = std::io::BufWriter::new(file);
        let stats = export(&fleet, &options, format, &mut writer)
            .with_context(|| format!("writing {}", tmp.display()))?;
        use std::io::Write;
        writer.flush()?;
        std::fs::rename(&tmp, &args.out)
            .with_context(|| format!("cannot move {} to {}", tmp.display(), args.out.display()))?;
        stats
    };
    eprintln!(
        "exported {} target(s), {} series, {} samples ending {}",
        stats.targets,
        stats.series,
        stats.samples,
        end.to_rfc3339()
    );
    Ok(ExitCode::SUCCESS)
}
