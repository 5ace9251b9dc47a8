//! `setpoint sim fast-loop`: the predictive fast loop over the embedded simulated service
//! fleet, in simulated time, beside the reactive HPA-style baseline on the same traffic.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, TimeDelta, Utc};
use clap::Args;
use setpoint_core::Mode;
use setpoint_core::control::{ActionMapping, RegoVersion};
use setpoint_decide::{ControlPolicy, guard_bundle};
use setpoint_observe::services::{
    EventKind, RunReport, ServiceFleetConfig, ServiceSim, run_closed_loop,
};
use setpoint_runtime::fast::FastSettings;
use setpoint_runtime::fast::simulated::{SimulatedFastLoop, detection, responses};

/// The predictive example policy, embedded so the command runs from any directory.
const PREDICTIVE_POLICY: &str =
    include_str!("../../../policies/fast/examples/predictive/control.rego");

/// Arguments of `setpoint sim fast-loop`.
#[derive(Debug, Args)]
pub struct FastLoopArgs {
    /// Services in the simulated fleet (each in two regions; every fifth gets a traffic surge,
    /// every seventh from the third a degradation of its primary region).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    services: u32,
    /// Simulation seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// When the simulated day starts (RFC 3339); the fleet's 14 days of history end there.
    #[arg(long, default_value = "2026-11-23T00:00:00Z")]
    start: DateTime<Utc>,
    /// Hours to simulate (the default schedule puts surges 10–11 h and degradations 13–14 h
    /// after the start).
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u32).range(1..=168))]
    hours: u32,
    /// Seconds between ticks.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u32).range(1..=3600))]
    tick: u32,
    /// Forecast horizon in minutes.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u32).range(1..=60))]
    horizon: u32,
    /// A directory of Rego v1 files whose `data.control.decision` decides (default: the
    /// predictive example, policies/fast/examples/predictive).
    #[arg(long, value_name = "DIR")]
    policy: Option<PathBuf>,
    /// Skip the reactive baseline's run.
    #[arg(long)]
    no_baseline: bool,
}

/// Runs the simulation and prints the summary.
pub fn run(args: &FastLoopArgs) -> Result<ExitCode> {
    let start = args.start;
    let until = start + TimeDelta::hours(i64::from(args.hours));
    let tick = TimeDelta::seconds(i64::from(args.tick));
    let config = ServiceFleetConfig::new(args.seed, args.services as usize, start);
    config.validate().context("simulated service fleet")?;
    let policy = match &args.policy {
        Some(dir) => ControlPolicy::load(
            std::slice::from_ref(dir),
            serde_json::json!({}),
            RegoVersion::V1,
            "data.control.decision",
            ActionMapping::default(),
        )
        .with_context(|| format!("policy {}", dir.display()))?,
        None => ControlPolicy::from_sources(
            vec![(
                "policies/fast/examples/predictive/control.rego".to_string(),
                PREDICTIVE_POLICY.to_string(),
            )],
            serde_json::json!({}),
            RegoVersion::V1,
            "data.control.decision",
            ActionMapping::default(),
        )?,
    };
    let mut settings = FastSettings::new("fast-loop");
    settings.horizon = TimeDelta::minutes(i64::from(args.horizon));
    // The simulation stands for the world: the loop acts on it.
    settings.mode = Mode::Enforce;
    let mut sim = ServiceSim::new(config.clone())?;
    let mut fast = SimulatedFastLoop::new(&sim, settings, &policy, &guard_bundle()?)?;
    let predictive = run_closed_loop(&mut sim, &mut fast, until, tick)?;
    let baseline = if args.no_baseline {
        None
    } else {
        let mut sim = ServiceSim::new(config)?;
        let mut hpa = sim.baseline();
        Some(run_closed_loop(&mut sim, &mut hpa, until, tick)?)
    };

    let log = fast.log();
    println!(
        "fast loop · simulated services (seed {}, {} services, 2 regions each) · {} → {} · tick {} s · horizon {} min · acting on the simulation",
        args.seed,
        args.services,
        start.format("%Y-%m-%d %H:%M UTC"),
        until.format("%Y-%m-%d %H:%M UTC"),
        args.tick,
        args.horizon
    );
    println!(
        "{} ticks, {} model fits, verdicts: {}, {} actions, {} anomalies flagged",
        log.ticks,
        log.refits,
        log.verdicts
            .iter()
            .map(|(v, n)| format!("{v} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        log.applied.len(),
        log.anomalies.len()
    );
    println!(
        "{}",
        detection(
            sim.events(),
            log,
            fast.names(),
            TimeDelta::minutes(5),
            TimeDelta::minutes(5)
        )
    );
    let answered = responses(sim.events(), log, fast.names(), TimeDelta::minutes(30));
    if answered.is_empty() {
        println!("no surge or degradation in the simulated interval");
    } else {
        println!(
            "events (breach minutes: the service's whole run; first answer: its first scale-up, or traffic shift for a degradation, from 30 min before the event to its end):"
        );
    }
    for response in &answered {
        let event = &response.event;
        let name = fast.names().get(event.service).map_or("?", String::as_str);
        let what = match &event.kind {
            EventKind::Surge { peak, .. } => format!("surge ×{peak:.1}"),
            EventKind::Degradation { region, .. } => format!("{region} region degraded"),
            EventKind::Anomaly { .. } => "anomaly".to_string(),
        };
        let answer = match (&response.first, response.lead()) {
            (Some(applied), Some(lead)) => {
                let when = if lead > TimeDelta::zero() {
                    format!("{} min before it began", lead.num_minutes().max(1))
                } else {
                    format!("{} min after it began", (-lead).num_minutes())
                };
                format!(
                    "first answer {} ({when}): {applied}",
                    applied.at.format("%H:%M")
                )
            }
            _ => "no answer".to_string(),
        };
        let breach = |r: &RunReport| {
            r.services
                .get(event.service)
                .map_or(f64::NAN, |s| s.breach_minutes)
        };
        let breaches = match &baseline {
            Some(b) => format!(
                "breach {:.1} min (baseline {:.1})",
                breach(&predictive),
                breach(b)
            ),
            None => format!("breach {:.1} min", breach(&predictive)),
        };
        println!(
            "  {name} {what} {}–{}: {breaches}; {answer}",
            event.start.format("%H:%M"),
            event.end.format("%H:%M")
        );
    }
    println!("outcome (SLO: p99 ≤ {} ms):", sim.config().slo_p99_ms);
    let line = |r: &RunReport| {
        println!(
            "  {:<26} {:>8.1} breach minutes  {:>9.0} replica-hours  {:>12.0} failed requests",
            r.controller, r.total.breach_minutes, r.total.replica_hours, r.total.failed_requests
        );
    };
    line(&predictive);
    if let Some(baseline) = &baseline {
        line(baseline);
        if baseline.total.breach_minutes > 0.0 {
            println!(
                "  breach minutes {:+.0} %, replica-hours {:+.0} % against the reactive baseline",
                (predictive.total.breach_minutes / baseline.total.breach_minutes - 1.0) * 100.0,
                (predictive.total.replica_hours / baseline.total.replica_hours - 1.0) * 100.0
            );
        }
    }
    if predictive.actions_refused > 0 {
        bail!(
            "the simulation refused {} of the loop's actions",
            predictive.actions_refused
        );
    }
    Ok(ExitCode::SUCCESS)
}
