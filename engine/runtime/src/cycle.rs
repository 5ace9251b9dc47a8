//! One cycle of the weekly right-sizing loop: the stages of [`crate::stages`], composed.

use std::path::Path;

use chrono::{DateTime, Utc};
use setpoint_core::{JournalEntry, SharedClock};
use setpoint_decide::PolicyEngine;
use setpoint_state::{CycleRecord, CycleStatus, Store};
use tracing::{Instrument, info_span};

use crate::enforce::Enforcer;
use crate::stages::observe::ObservedFleet;
use crate::stages::{
    self, CycleContext, Prior, Proposed, Staged, act, classify, decide, fingerprint, observe,
    propose, record,
};
use crate::training::ActiveClassifier;
use crate::{CycleReport, LoopRuntime, Result, RuntimeError, Shutdown, TargetRow};

/// How long a cycle waits for the state store while another process (`setpoint explain`, a
/// kill-switch command) reads it.
const STORE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs one cycle of `lp` at `now` (of one target only, when `only_target` names it).
pub(crate) async fn run(
    lp: &LoopRuntime,
    state_dir: &Path,
    clock: &SharedClock,
    now: DateTime<Utc>,
    only_target: Option<&str>,
    shutdown: &Shutdown,
) -> Result<CycleReport> {
    let started = std::time::Instant::now();
    // The store is opened per cycle so that `explain` and other commands can read it between
    // cycles of a long-running `setpoint run`.
    let store = Store::open_waiting(state_dir, STORE_WAIT)?;
    let kill_switches = setpoint_state::read_kill_switches(state_dir)?;
    // Enforce mode acts on what the journal says was decided and approved: with the chain
    // broken, that cannot be trusted, so the cycle runs as dry-run until an operator
    // acknowledges the break.
    let chain_break = match lp.config.mode {
        setpoint_core::Mode::Enforce => store.verify_chain()?.broken,
        setpoint_core::Mode::DryRun => None,
    };
    let mode = match chain_break {
        Some(_) => setpoint_core::Mode::DryRun,
        None => lp.config.mode,
    };
    let cycle = store.begin_cycle(lp.config.name.as_str(), now)?;
    crate::enforce::pause_point("after-begin-cycle", &cycle.to_string()).await;
    let span = cycle_span(lp, cycle, now, mode);
    let classifier = active_classifier(lp, &store, now, &span)?;
    let step = lp.config.window.step.0.as_secs();
    let window = observe::window_for(now, lp.config.window.weeks, step);
    let deadline = Some(lp.config.observe_deadline.0);
    let mut fleet = observe::observe(lp, &window, deadline)
        .instrument(span.clone())
        .await;
    crate::enforce::pause_point("after-observe", &cycle.to_string()).await;
    if let Some(broken) = chain_break {
        tracing::error!(%broken, "journal chain broken: enforce suspended, running as dry-run");
        fleet
            .degraded
            .push(observe::Degradation::JournalChain { broken });
    }
    if let Some(only) = only_target {
        keep_only(&mut fleet, only, lp, &store, cycle, now)?;
    }
    let mut engine = lp.policy_engine(&kill_switches)?;
    let targeted = only_target.is_some();
    let plugin_label = lp.plugin_label();
    let context = CycleContext {
        lp,
        cycle,
        now,
        window,
        plugin_label,
        targeted,
        mode,
    };
    let enforcer = Enforcer::for_loop(lp, state_dir, clock.as_ref());
    // Plugin calls and policy evaluations are synchronous and CPU-bound: run the whole batch
    // on a blocking thread, paying the hop once per cycle rather than once per call.
    let (rows, interrupted) = tokio::task::block_in_place(|| {
        let _entered = span.enter();
        let fingerprinted = fingerprint::fingerprint(&context, &lp.plugin, fleet.targets);
        let classified = fingerprinted
            .into_iter()
            .map(|staged| staged.map(|f| classify::classify(&classifier, f)));
        let proposed = propose::propose(&lp.plugin, &lp.bounds, classified.collect());
        let mut rows = Vec::with_capacity(proposed.len());
        for staged in proposed {
            if shutdown.is_requested() {
                return Ok::<_, RuntimeError>((rows, true));
            }
            let entry = decide_and_record(&context, &store, &enforcer, &mut engine, staged)?;
            rows.push(TargetRow::from(&entry));
        }
        Ok((rows, false))
    })?;
    crate::enforce::pause_point("before-finish-cycle", &cycle.to_string()).await;
    finish(&store, lp, cycle, now, &rows, fleet.queries, interrupted)?;
    Ok(CycleReport {
        loop_name: lp.config.name.to_string(),
        cycle,
        now,
        mode,
        source: lp.source.name().to_string(),
        plugin: context.plugin_label,
        queries: fleet.queries,
        degraded: fleet.degraded.iter().map(ToString::to_string).collect(),
        unmatched_series: fleet
            .unmatched
            .iter()
            .map(|(label, metrics)| format!("{label} ({})", metrics.join(", ")))
            .collect(),
        targets_without_series: fleet.without_series,
        rows,
        interrupted,
        duration_seconds: started.elapsed().as_secs_f64(),
        forecast_errors: Vec::new(),
    })
}

/// The per-target stages of one target: its history is advanced by its class, the policy
/// decides and the decision is routed (unless an earlier stage failed), and it is recorded.
fn decide_and_record(
    context: &CycleContext<'_>,
    store: &Store,
    enforcer: &Enforcer<'_>,
    engine: &mut PolicyEngine,
    mut staged: Staged<Proposed>,
) -> Result<JournalEntry> {
    let run = stages::run_mut(&mut staged);
    let mut prior = Prior::load(store, context, &run.entry.target.id)?;
    prior.advance(context, &mut run.entry);
    let acted = staged.and_then(|p| act::act(context, decide::decide(context, engine, p, &prior)));
    let run = acted.map_or_else(|failed| failed.run, |acted| acted.run);
    record::record(context, store, enforcer, *run.entry, prior)
}

/// The classifier of this cycle, trained and promoted first when the loop asks for that.
fn active_classifier(
    lp: &LoopRuntime,
    store: &Store,
    now: DateTime<Utc>,
    span: &tracing::Span,
) -> Result<ActiveClassifier> {
    let classifier =
        span.in_scope(|| tokio::task::block_in_place(|| lp.classifier.for_cycle(lp, store, now)))?;
    if let Some(note) = &classifier.fallback {
        tracing::info!(parent: span, "{note}");
    }
    Ok(classifier)
}

/// Keeps only target `only` of the fleet; a target the source does not know ends the cycle.
fn keep_only(
    fleet: &mut ObservedFleet,
    only: &str,
    lp: &LoopRuntime,
    store: &Store,
    cycle: u64,
    now: DateTime<Utc>,
) -> Result<()> {
    fleet.targets.retain(|o| o.target.id == only);
    fleet.without_series.retain(|id| id == only);
    if !fleet.targets.is_empty() {
        return Ok(());
    }
    finish(store, lp, cycle, now, &[], fleet.queries, false)?;
    Err(RuntimeError::UnknownTarget {
        loop_name: lp.config.name.to_string(),
        target: only.to_string(),
    })
}

/// Records the end of the cycle in the store.
fn finish(
    store: &Store,
    lp: &LoopRuntime,
    cycle: u64,
    now: DateTime<Utc>,
    rows: &[TargetRow],
    queries: usize,
    interrupted: bool,
) -> Result<()> {
    let status = if interrupted {
        CycleStatus::Interrupted
    } else {
        CycleStatus::Completed
    };
    store.finish_cycle(&CycleRecord {
        loop_name: lp.config.name.to_string(),
        cycle,
        now,
        status,
        targets: rows.len(),
        failed: rows.iter().filter(|r| r.error.is_some()).count(),
        queries,
    })?;
    Ok(())
}

/// A cycle's root span: each cycle is a trace of its own, whatever the caller was doing. It is
/// tagged with the mode the cycle runs in (dry-run when enforce is suspended by a broken
/// journal chain, whatever the loop is configured with).
fn cycle_span(
    lp: &LoopRuntime,
    cycle: u64,
    now: DateTime<Utc>,
    mode: setpoint_core::Mode,
) -> tracing::Span {
    info_span!(
        parent: None,
        "cycle",
        loop_name = %lp.config.name,
        cycle,
        now = %now,
        setpoint.loop_name = %lp.config.name,
        setpoint.cycle = cycle,
        setpoint.mode = mode.as_str(),
        setpoint.dry_run = mode == setpoint_core::Mode::DryRun,
        setpoint.policy_bundle = %lp.policy_hash,
        setpoint.targets = tracing::field::Empty,
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use crate::{Config, Runtime, Shutdown};

    /// An inventoried target that the source has no series for is listed once for the cycle,
    /// and its row holds on insufficient data naming the labels that would have matched.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_target_with_no_series_is_listed_and_holds() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("inventory.csv"),
            "id,aliases,cpu,memory_gib,provisioned_iops\npg-ghost,10.9.9.9:9187,4,16,3000\n",
        )
        .unwrap();
        let config = "state_dir: state\nloops:\n  - name: w\n    inventory: inventory.csv\n";
        let path = dir.path().join("setpoint.yaml");
        std::fs::write(&path, config).unwrap();
        let runtime = Runtime::new(Config::load(&path).unwrap()).unwrap();
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-23T06:00:00Z")
            .unwrap()
            .to_utc();
        let reports = runtime.run_once(now, None, &Shutdown::new()).await.unwrap();
        let report = &reports[0];

        assert_eq!(report.targets_without_series, ["pg-ghost"]);
        let ghost = report.rows.iter().find(|r| r.target == "pg-ghost").unwrap();
        assert_eq!(ghost.class_reason.as_deref(), Some("insufficient_data"));
        assert_eq!(
            ghost.observe_issues,
            [setpoint_core::ObserveIssue::NoMatchingSeries {
                names: vec!["pg-ghost".into(), "10.9.9.9:9187".into()],
            }
            .to_string()]
        );
        // The simulated fleet's own targets have series, and the fact is said once: not again
        // per metric among the cycle's degradations.
        assert!(report.rows.len() > 1);
        assert!(
            report.degraded.iter().all(|d| !d.contains("pg-ghost")),
            "{:?}",
            report.degraded
        );
        let json = serde_json::to_value(report).unwrap();
        assert_eq!(json["targets_without_series"][0], "pg-ghost");
    }
}
