//! The outcome that matters: the simulated service fleet run in closed loop for a day (in
//! simulated time, every action fed back into load and latency) under the predictive fast
//! loop, and again on the same traffic under the reactive HPA-style baseline (70 % target
//! utilisation, 15 s sync, 300 s scale-down stabilisation). Prints minutes in breach of the
//! latency SLO and replica-hours for each.
//!
//! ```text
//! cargo run --release -p setpoint-runtime --example fast_closed_loop -- [SERVICES] [SEED]
//! ```
//!
//! Defaults: 100 services, seed 42, Monday 2026-11-23 00:00 UTC for 24 h, a 15 s tick, the
//! predictive example policy (`policies/fast/examples/predictive`) under setpoint's guard.
//! With `PER_SERVICE=1` in the environment it also prints each service's breach minutes,
//! failed requests and replica-hours under both controllers.

use std::path::PathBuf;

use anyhow::{Context, Result};
use chrono::{TimeDelta, TimeZone, Utc};
use setpoint_core::control::{ActionMapping, RegoVersion};
use setpoint_decide::{ControlPolicy, guard_bundle};
use setpoint_observe::services::{ServiceFleetConfig, ServiceSim, run_closed_loop};
use setpoint_runtime::fast::FastSettings;
use setpoint_runtime::fast::simulated::SimulatedFastLoop;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let services: usize = args
        .next()
        .map_or(Ok(100), |a| a.parse())
        .context("SERVICES")?;
    let seed: u64 = args.next().map_or(Ok(42), |a| a.parse()).context("SEED")?;
    let start = Utc
        .with_ymd_and_hms(2026, 11, 23, 0, 0, 0)
        .single()
        .context("start")?;
    let until = start + TimeDelta::hours(24);
    let tick = TimeDelta::seconds(15);
    let config = ServiceFleetConfig::new(seed, services, start);

    let t = std::time::Instant::now();
    let mut sim = ServiceSim::new(config.clone())?;
    let mut baseline = sim.baseline();
    let reactive = run_closed_loop(&mut sim, &mut baseline, until, tick)?;
    let baseline_seconds = t.elapsed().as_secs_f64();

    let policy_dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../policies/fast/examples/predictive");
    let policy = ControlPolicy::load(
        &[policy_dir],
        serde_json::json!({}),
        RegoVersion::V1,
        "data.control.decision",
        ActionMapping::default(),
    )?;
    let t = std::time::Instant::now();
    let mut sim = ServiceSim::new(config)?;
    let mut settings = FastSettings::new("fast");
    settings.mode = setpoint_core::Mode::Enforce;
    let mut fast = SimulatedFastLoop::new(&sim, settings, &policy, &guard_bundle()?)?;
    let predictive = run_closed_loop(&mut sim, &mut fast, until, tick)?;
    let fast_seconds = t.elapsed().as_secs_f64();

    println!("{services} services, seed {seed}, {start} for 24 h, tick 15 s");
    println!(
        "| controller | breach minutes | replica-hours | failed requests | throttled requests | actions |"
    );
    println!("|---|---|---|---|---|---|");
    for report in [&reactive, &predictive] {
        println!(
            "| {} | {:.1} | {:.0} | {:.0} | {:.0} | {} |",
            report.controller,
            report.total.breach_minutes,
            report.total.replica_hours,
            report.total.failed_requests,
            report.total.throttled_requests,
            report.actions.len()
        );
    }
    let cut = 1.0 - predictive.total.breach_minutes / reactive.total.breach_minutes.max(1e-9);
    let replicas = predictive.total.replica_hours / reactive.total.replica_hours.max(1e-9);
    println!(
        "breach minutes cut by {:.0} %, replica-hours {:.2}× the baseline's",
        cut * 100.0,
        replicas
    );
    if std::env::var_os("PER_SERVICE").is_some() {
        println!(
            "| service | baseline breach min | fast breach min | baseline failed | fast failed | baseline replica-h | fast replica-h |"
        );
        for (i, name) in fast.names().iter().enumerate() {
            let (b, f) = (&reactive.services[i], &predictive.services[i]);
            println!(
                "| {name} | {:.1} | {:.1} | {:.0} | {:.0} | {:.0} | {:.0} |",
                b.breach_minutes,
                f.breach_minutes,
                b.failed_requests,
                f.failed_requests,
                b.replica_hours,
                f.replica_hours
            );
        }
    }
    let log = fast.log();
    println!(
        "fast loop: {} ticks, {} refits, verdicts {:?}, {} anomalies flagged; baseline run {:.1} s, fast loop run {:.1} s",
        log.ticks,
        log.refits,
        log.verdicts,
        log.anomalies.len(),
        baseline_seconds,
        fast_seconds
    );
    Ok(())
}
