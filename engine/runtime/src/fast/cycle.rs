//! A loop of `kind: fast` in the runtime: each cycle is one tick — observe the recent window of
//! every service (one range query per series name for the whole fleet), forecast, detect,
//! decide, and journal — with the models refitted in the background on the loop's history.
//!
//! The first tick fits the models before it decides (there is nothing to forecast with
//! before); later refits run on a task of their own, started when a refit falls due and
//! swapped in at the first tick after it finishes, so a tick never waits for a fit. A fit
//! reads the history up to the tick that started it: no code path mixes that time with the
//! wall clock.
//!
//! What a tick journals (see [`setpoint_state::control`]): every service whose decision is
//! anything but "the policy proposed no change", and the others once per `journal_every`.
//!
//! # Acting
//!
//! An `act` verdict goes to the loop's actuator (`fast.actuator`, see [`super::act`]), which
//! plans it against the live objects. In dry-run the plan is validated without being written
//! and journalled as what would have been written. In enforce mode, for each service, in
//! this order, each step durable before the next starts:
//!
//! 1. the plan's writes are journalled as [`ControlOutcome::Pending`] (one transaction for
//!    the tick, which also puts them in the loop's intent journal);
//! 2. the kill switches are read again: an action a switch now covers is not started;
//! 3. the actuator writes and reads back (transient failures retried with backoff);
//! 4. the outcome replaces the pending record.
//!
//! A process stopped between 1 and 4 leaves the record pending. The loop's first tick in the
//! next process marks it [`ControlOutcome::Interrupted`] and does not carry it out again: by
//! then the world has moved on, and the tick reads what is in place and decides afresh. The
//! cooldowns of a restarted loop count from the last change journalled for each service
//! (an interrupted one included), so a restart never makes a change come sooner.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use setpoint_core::control::{ControlAction, ControlOutcome, ControlRecord, CurrentSettings};
use setpoint_core::{KillSwitches, Mode, SharedClock, Verdict};
use setpoint_decide::{ControlPolicy, PolicyBundle};
use setpoint_forecast::{ForecastSettings, Series};
use setpoint_observe::services::SERVICE_TECHNOLOGY;
use setpoint_observe::{MetricSource, RangeQuery};
use setpoint_state::Store;
use tracing::Instrument as _;

use super::act::{FastActuator, Planned, Wanted};
use super::{FastLoop, FastObservation, FastSettings, Forecasters, SeriesKey};
use crate::config::{FastConfig, FastQuery, FastSeries, LoopConfig, PolicyRef};
use crate::{CycleReport, LoopRuntime, Result, RuntimeError, Shutdown, TargetRow};

/// How long a tick waits for the state store held by another command.
const STORE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A fast loop, resolved: its policy, guard, queries and the loop's state between ticks.
pub(crate) struct FastRuntime {
    config: FastConfig,
    settings: FastSettings,
    policy: ControlPolicy,
    guard: PolicyBundle,
    queries: Vec<FastQuery>,
    /// What carries out the loop's actions (none: they are only decided).
    actuator: Option<FastActuator>,
    state: tokio::sync::Mutex<FastState>,
}

/// What a fast loop keeps between ticks.
#[derive(Default)]
struct FastState {
    /// Built at the first tick, under the kill switches then in force.
    fast: Option<FastLoop>,
    /// A refit under way.
    refit: Option<tokio::task::JoinHandle<Fitted>>,
    /// When each service was last journalled.
    journalled: HashMap<String, DateTime<Utc>>,
    /// When records past the retention were last deleted.
    pruned_at: Option<DateTime<Utc>>,
}

impl FastRuntime {
    /// Loads the loop's control policy and the guard; fails, naming the file, when either
    /// does not load.
    pub(crate) fn new(config: &LoopConfig) -> Result<Self> {
        let loop_name = config.name.to_string();
        let fast = config.fast.clone().unwrap_or_default();
        let policy_error = |bundle: String, source| RuntimeError::Policy {
            loop_name: loop_name.clone(),
            bundle,
            source,
        };
        let PolicyRef::Dir(dir) = &config.policies else {
            return Err(policy_error(
                "builtin".to_string(),
                setpoint_decide::PolicyError::Json {
                    path: "policies".into(),
                    message: "a fast loop needs the directory of its control policy".to_string(),
                },
            ));
        };
        let label = dir.display().to_string();
        let data_file = dir.join("data.json");
        let data = match std::fs::read_to_string(&data_file) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| {
                policy_error(
                    label.clone(),
                    setpoint_decide::PolicyError::Json {
                        path: data_file.clone(),
                        message: e.to_string(),
                    },
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::json!({}),
            Err(e) => {
                return Err(policy_error(
                    label,
                    setpoint_decide::PolicyError::Json {
                        path: data_file,
                        message: e.to_string(),
                    },
                ));
            }
        };
        let policy = ControlPolicy::load(
            std::slice::from_ref(dir),
            data,
            fast.rego,
            &fast.entry_point,
            fast.mapping.clone(),
        )
        .map_err(|e| policy_error(label.clone(), e))?;
        let guard =
            setpoint_decide::guard_bundle().map_err(|e| policy_error("guard".to_string(), e))?;
        let settings = fast.settings(&loop_name, config.mode);
        let actuator =
            FastActuator::new(&fast, &loop_name).map_err(|message| RuntimeError::FastActuator {
                loop_name: loop_name.clone(),
                message,
            })?;
        Ok(Self {
            queries: fast.queries(),
            actuator,
            config: fast,
            settings,
            policy,
            guard,
            state: tokio::sync::Mutex::new(FastState::default()),
        })
    }

    /// The policy's content hash, for reports and spans.
    pub(crate) fn policy_hash(&self) -> &str {
        self.policy.hash()
    }
}

/// What the observe stage read over one range, for every service.
#[derive(Debug, Default)]
struct Read {
    series: BTreeMap<SeriesKey, Series>,
    /// The latest traffic share per service and region, 0..1.
    weights: BTreeMap<String, BTreeMap<String, f64>>,
    /// Queries that failed (their series are missing for every service), one line each.
    degraded: Vec<String>,
}

/// Reads `queries` over `[from, to)` at `step`, all at once: one range query per series name
/// for the whole fleet.
async fn read(
    source: &dyn MetricSource,
    queries: &[FastQuery],
    service_label: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    step: TimeDelta,
) -> Read {
    let step_seconds = u64::try_from(step.num_seconds()).unwrap_or(60).max(1);
    let requests: Vec<RangeQuery> = queries
        .iter()
        .map(|q| RangeQuery {
            metric: q.name.clone(),
            promql: q.promql.clone(),
            technology: SERVICE_TECHNOLOGY.to_string(),
            start: from,
            end: to,
            step_seconds,
            target_label: service_label.to_string(),
            weekly: None,
        })
        .collect();
    let answers =
        futures_util::future::join_all(requests.iter().map(|r| source.query_range(r))).await;
    let mut out = Read::default();
    for (query, answer) in queries.iter().zip(answers) {
        let answer = match answer {
            Ok(answer) => answer,
            Err(error) => {
                out.degraded.push(format!("{}: {error}", query.name));
                continue;
            }
        };
        for (service, problem) in answer.problems {
            out.degraded
                .push(format!("{} of {service}: {problem}", query.name));
        }
        for (service, samples) in answer.series {
            let points: Vec<(DateTime<Utc>, f64)> = samples
                .timestamps_ms
                .iter()
                .zip(&samples.values)
                .filter(|(_, v)| v.is_finite())
                .filter_map(|(&t, &v)| DateTime::from_timestamp_millis(t).map(|t| (t, v)))
                .collect();
            match &query.series {
                FastSeries::Metric { metric, region } => {
                    let Ok(series) = Series::from_points(&points, step) else {
                        continue;
                    };
                    let key = match region {
                        Some(region) => SeriesKey::region(&service, *metric, region),
                        None => SeriesKey::service(&service, *metric),
                    };
                    out.series.insert(key, series);
                }
                FastSeries::Weight { region } => {
                    if let Some(&(_, share)) = points.last() {
                        out.weights
                            .entry(service)
                            .or_default()
                            .insert(region.clone(), share);
                    }
                }
            }
        }
    }
    out
}

/// Traffic shares as whole percents summing to 100 (the largest remainders rounded up), or
/// nothing when no share is known.
fn percents(shares: &BTreeMap<String, f64>) -> BTreeMap<String, u32> {
    let total: f64 = shares.values().filter(|s| s.is_finite() && **s > 0.0).sum();
    if total <= 0.0 {
        return BTreeMap::new();
    }
    let exact: Vec<(&String, f64)> = shares
        .iter()
        .map(|(r, s)| {
            (
                r,
                if s.is_finite() { s.max(0.0) } else { 0.0 } * 100.0 / total,
            )
        })
        .collect();
    let mut out: BTreeMap<String, u32> = exact
        .iter()
        .map(|(r, p)| ((*r).clone(), p.floor() as u32))
        .collect();
    let mut left = 100u32.saturating_sub(out.values().sum());
    let mut by_remainder = exact.clone();
    by_remainder.sort_by(|a, b| (b.1 - b.1.floor()).total_cmp(&(a.1 - a.1.floor())));
    for (region, _) in by_remainder {
        if left == 0 {
            break;
        }
        if let Some(p) = out.get_mut(region) {
            *p += 1;
            left -= 1;
        }
    }
    out
}

/// The observation of one tick from what was read: the series, and the settings each
/// service is at (replicas from the last `replicas` sample, weights from the traffic shares).
fn observation(at: DateTime<Utc>, read: Read) -> FastObservation {
    let mut current: BTreeMap<String, CurrentSettings> = BTreeMap::new();
    for (key, series) in &read.series {
        if key.metric == super::FastMetric::Replicas
            && key.region.is_none()
            && let Some((_, value)) = series.last_before(at + TimeDelta::milliseconds(1))
            && value.is_finite()
            && value >= 0.0
        {
            current.entry(key.service.clone()).or_default().replicas =
                Some(value.round().min(f64::from(u32::MAX)) as u32);
        }
    }
    for (service, shares) in &read.weights {
        current.entry(service.clone()).or_default().weights = percents(shares);
    }
    FastObservation {
        at,
        series: read.series,
        current,
    }
}

/// A refit's models, and what went wrong reading its history.
struct Fitted {
    /// `None` when the history read returned no series at all: the loop keeps its models (or
    /// has none) and tries again at the next tick, instead of waiting `refit_every`.
    forecasters: Option<Forecasters>,
    /// The history queries that failed, one line each (in the next tick's report).
    degraded: Vec<String>,
}

/// Fits the models on the history before `at`.
async fn fit(
    source: Arc<dyn MetricSource>,
    queries: Vec<FastQuery>,
    config: FastConfig,
    settings: ForecastSettings,
    at: DateTime<Utc>,
) -> Fitted {
    let step = config.step.as_delta();
    let history = read(
        source.as_ref(),
        &queries,
        &config.service_label,
        at - config.history.as_delta(),
        at,
        step,
    )
    .await;
    let degraded: Vec<String> = history
        .degraded
        .iter()
        .map(|line| format!("history {line}"))
        .collect();
    if history.series.is_empty() {
        return Fitted {
            forecasters: None,
            degraded,
        };
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let series = history.series;
    let fitted =
        tokio::task::spawn_blocking(move || Forecasters::fit(&series, &settings, threads, at))
            .await;
    // A fit that panicked leaves the loop without models: every series then says so, and
    // the guard holds every scale-down.
    Fitted {
        forecasters: fitted.ok(),
        degraded,
    }
}

/// Runs one tick of the fast loop `lp` at `now` (of one service only, when `only_target`
/// names it).
pub(crate) async fn run(
    lp: &LoopRuntime,
    state_dir: &Path,
    _clock: &SharedClock,
    now: DateTime<Utc>,
    only_target: Option<&str>,
    _shutdown: &Shutdown,
) -> Result<CycleReport> {
    let started = std::time::Instant::now();
    let loop_name = lp.config.name.to_string();
    let Some(fast) = lp.fast.as_ref() else {
        return Err(RuntimeError::Internal {
            loop_name,
            message: "a fast loop without its fast runtime".to_string(),
        });
    };
    let span = tracing::info_span!(
        "tick",
        setpoint.loop_name = %loop_name,
        setpoint.services = tracing::field::Empty,
        setpoint.policy_hash = %fast.policy_hash(),
    );
    tick(lp, fast, state_dir, now, only_target, started, span.clone())
        .instrument(span)
        .await
}

/// The tick itself, under its span.
async fn tick(
    lp: &LoopRuntime,
    fast: &FastRuntime,
    state_dir: &Path,
    now: DateTime<Utc>,
    only_target: Option<&str>,
    started: std::time::Instant,
    span: tracing::Span,
) -> Result<CycleReport> {
    let loop_name = lp.config.name.to_string();
    let kill_switches = setpoint_state::read_kill_switches(state_dir)?;
    let mut state = fast.state.lock().await;
    let state = &mut *state;
    if state.fast.is_none() {
        let mut fresh = FastLoop::new(
            fast.settings.clone(),
            &fast.policy,
            &fast.guard,
            &kill_switches,
        )
        .map_err(|e| RuntimeError::Internal {
            loop_name: loop_name.clone(),
            message: e.to_string(),
        })?;
        recover(state_dir, &loop_name, &mut fresh)?;
        state.fast = Some(fresh);
    }
    let Some(fast_loop) = state.fast.as_mut() else {
        return Err(RuntimeError::Internal {
            loop_name,
            message: "the fast loop was not built".to_string(),
        });
    };

    // Refit: a finished background fit is swapped in; a due one starts (inline the first time).
    let mut degraded = Vec::new();
    if state.refit.as_ref().is_some_and(|h| h.is_finished())
        && let Some(handle) = state.refit.take()
        && let Ok(fitted) = handle.await
    {
        degraded.extend(fitted.degraded);
        if let Some(forecasters) = fitted.forecasters {
            fast_loop.install(forecasters);
        }
    }
    let mut queries_issued = 0;
    if fast_loop.refit_due(now) && state.refit.is_none() {
        let job = fit(
            lp.source.clone(),
            fast.queries.clone(),
            fast.config.clone(),
            fast.settings.forecast.clone(),
            now,
        );
        queries_issued += fast.queries.len();
        if fast_loop.forecasters().fitted_at().is_none() {
            let fitted = job.instrument(tracing::info_span!("refit")).await;
            degraded.extend(fitted.degraded);
            if let Some(forecasters) = fitted.forecasters {
                fast_loop.install(forecasters);
            }
        } else {
            state.refit = Some(tokio::spawn(job));
        }
    }

    // Observe the recent window, up to and including now.
    let recent = read(
        lp.source.as_ref(),
        &fast.queries,
        &fast.config.service_label,
        now - fast.settings.forecast.recent_window,
        now + TimeDelta::milliseconds(1),
        fast.config.step.as_delta(),
    )
    .instrument(tracing::info_span!("observe"))
    .await;
    queries_issued += fast.queries.len();
    degraded.extend(recent.degraded.iter().cloned());
    let mut observed = observation(now, recent);
    if let Some(only) = only_target {
        observed.series.retain(|k, _| k.service == only);
        observed.current.retain(|s, _| s == only);
        if observed.services().is_empty() {
            return Err(RuntimeError::UnknownTarget {
                loop_name,
                target: only.to_string(),
            });
        }
    }

    let report = {
        let _decide = tracing::info_span!("decide").entered();
        fast_loop.tick(&observed, &kill_switches)
    };
    span.record("setpoint.services", report.services.len());

    // Act: what became of each decision.
    let outcomes = act(fast, fast_loop, &report, state_dir, &loop_name, now).await?;

    // Journal and report.
    let journal_every = fast.config.journal_every.as_delta();
    let mut records = Vec::new();
    let mut rows = Vec::new();
    for (service, outcome) in report.services.iter().zip(outcomes) {
        let decision = &service.decision;
        let name = service.input.service.clone();
        let quiet = decision.verdict == Verdict::Hold
            && decision
                .reasons
                .first()
                .is_some_and(|r| r.code == "no_change");
        let due = state
            .journalled
            .get(&name)
            .is_none_or(|last| now - *last >= journal_every);
        let forecast_problems = forecast_problems(service);
        let change = match (&decision.action, &outcome) {
            (ControlAction::None, _) => None,
            (action, ControlOutcome::NothingToDo) => Some(action.to_string()),
            (action, outcome) => Some(format!("{action}: {outcome}")),
        };
        let control = Some(outcome.clone());
        rows.push(TargetRow {
            target: name.clone(),
            technology: SERVICE_TECHNOLOGY.to_string(),
            class: None,
            confidence: None,
            class_reason: None,
            classifier_fallback: None,
            stable_cycles: 0,
            verdict: Some(decision.verdict),
            change,
            reason: decision.reasons.first().cloned(),
            outcome: None,
            error: None,
            observe_issues: forecast_problems.clone(),
            rejected_evidence: Vec::new(),
            error_stage: None,
            sandbox_trap: false,
            policy_seconds: None,
            policy_error: decision
                .reasons
                .first()
                .is_some_and(|r| r.code == "policy_error"),
            control,
        });
        if !quiet || due {
            state.journalled.insert(name, now);
            records.push(record(&loop_name, report.tick, service, outcome));
        }
    }
    let store = Store::open_waiting(state_dir, STORE_WAIT)?;
    store.record_control(&records)?;
    let retention = fast.config.retention.as_delta();
    if state
        .pruned_at
        .is_none_or(|at| now - at >= TimeDelta::hours(1))
    {
        store.prune_control(&loop_name, now - retention)?;
        state.pruned_at = Some(now);
    }
    drop(store);

    Ok(CycleReport {
        loop_name,
        cycle: report.tick,
        now,
        mode: fast.settings.mode,
        source: lp.source.name().to_string(),
        plugin: "control policy".to_string(),
        queries: queries_issued,
        degraded,
        unmatched_series: Vec::new(),
        targets_without_series: Vec::new(),
        rows,
        interrupted: false,
        duration_seconds: started.elapsed().as_secs_f64(),
        forecast_errors: report.forecast_error_rows(),
    })
}

/// The series of `service` without a forecast at this tick, and why, one line each.
fn forecast_problems(service: &super::ServiceTick) -> Vec<String> {
    service
        .forecast_problems
        .iter()
        .map(|(key, problem)| format!("{key}: {problem}"))
        .collect()
}

/// The journal record of `service`'s tick.
fn record(
    loop_name: &str,
    tick: u64,
    service: &super::ServiceTick,
    outcome: ControlOutcome,
) -> ControlRecord {
    ControlRecord {
        loop_name: loop_name.to_string(),
        tick,
        input: service.input.clone(),
        decision: service.decision.clone(),
        forecast_problems: forecast_problems(service),
        outcome,
    }
}

/// The kill switch that covers `service` of `loop_name`, if one is on.
fn kill_switch_covering(switches: &KillSwitches, loop_name: &str, service: &str) -> Option<String> {
    if switches.global {
        return Some("the global kill switch".into());
    }
    if switches.loops.get(loop_name).copied().unwrap_or(false) {
        return Some(format!("the kill switch of loop {loop_name:?}"));
    }
    if switches.targets.get(service).copied().unwrap_or(false) {
        return Some(format!("the kill switch of target {service:?}"));
    }
    None
}

/// At the loop's first tick in this process: marks the actions a stopped process left
/// pending as interrupted (never carrying them out again), and counts the cooldowns from
/// the last change journalled for each service. Each interrupted action is logged as a
/// warning and stays in the journal, where `explain` shows it.
fn recover(state_dir: &Path, loop_name: &str, fast_loop: &mut FastLoop) -> Result<()> {
    let store = Store::open_waiting(state_dir, STORE_WAIT)?;
    let mut lines = Vec::new();
    let mut interrupted = Vec::new();
    for mut record in store.control_pending(loop_name)? {
        if let ControlOutcome::Pending { writes } = &record.outcome {
            lines.push(format!(
                "{}: {} decided at {} was interrupted by a stop before its outcome was \
                 recorded; not repeated (it meant to write {})",
                record.service(),
                record.decision.action,
                record.at().to_rfc3339(),
                writes.join("; ")
            ));
            record.outcome = ControlOutcome::Interrupted {
                writes: writes.clone(),
            };
            interrupted.push(record);
        }
    }
    store.record_control(&interrupted)?;
    for change in store.control_changes(loop_name)? {
        fast_loop.record_change(&change.service, &change.action, change.at);
    }
    for line in &lines {
        tracing::warn!(loop_name, "{line}");
    }
    Ok(())
}

/// The act stage: what became of each service's decision, in the order of
/// `report.services`. See the module's "Acting" for the order of the steps in enforce mode.
async fn act(
    fast: &FastRuntime,
    fast_loop: &mut FastLoop,
    report: &super::TickReport,
    state_dir: &Path,
    loop_name: &str,
    now: DateTime<Utc>,
) -> Result<Vec<ControlOutcome>> {
    let mode = fast.settings.mode;
    let acting = |s: &super::ServiceTick| {
        s.decision.verdict == Verdict::Act && s.decision.action != ControlAction::None
    };
    let mut outcomes: Vec<ControlOutcome> = report
        .services
        .iter()
        .map(|s| match (acting(s), mode) {
            (false, _) => ControlOutcome::NothingToDo,
            (true, Mode::DryRun) => ControlOutcome::DryRun { writes: Vec::new() },
            (true, Mode::Enforce) => ControlOutcome::NoActuator,
        })
        .collect();
    let Some(actuator) = &fast.actuator else {
        return Ok(outcomes);
    };
    let indices: Vec<usize> = (0..report.services.len())
        .filter(|&i| acting(&report.services[i]))
        .collect();
    if indices.is_empty() {
        return Ok(outcomes);
    }
    let wanted: Vec<Wanted> = indices
        .iter()
        .map(|&i| {
            let service = &report.services[i];
            Wanted {
                service: fast.config.service_ref(&service.input.service),
                action: service.decision.action.clone(),
                request_rate: service.input.now.request_rate,
            }
        })
        .collect();
    let planned = actuator
        .plan_all(&wanted, now)
        .instrument(tracing::info_span!("plan"))
        .await;
    let mut plans = Vec::new();
    for (&i, planned) in indices.iter().zip(planned) {
        match planned {
            Planned::Settled(outcome) => outcomes[i] = outcome,
            Planned::Write(plan) => plans.push((i, plan)),
        }
    }
    if plans.is_empty() {
        return Ok(outcomes);
    }
    if mode == Mode::DryRun {
        let checked = actuator
            .execute_all(
                &plans.iter().map(|(_, p)| p.as_ref()).collect::<Vec<_>>(),
                true,
            )
            .instrument(tracing::info_span!("act"))
            .await;
        for ((i, _), outcome) in plans.iter().zip(checked) {
            outcomes[*i] = outcome;
        }
        return Ok(outcomes);
    }

    // 1. Journal what will be written, before anything is.
    let pending: Vec<ControlRecord> = plans
        .iter()
        .map(|(i, plan)| {
            record(
                loop_name,
                report.tick,
                &report.services[*i],
                ControlOutcome::Pending {
                    writes: super::act::writes(plan),
                },
            )
        })
        .collect();
    Store::open_waiting(state_dir, STORE_WAIT)?.record_control(&pending)?;
    for (i, plan) in &plans {
        outcomes[*i] = ControlOutcome::Pending {
            writes: super::act::writes(plan),
        };
        fast_loop.record_change(&plan.service, &plan.action, now);
    }
    crate::enforce::pause_point("after-intent", loop_name).await;

    // 2. A kill switch set since the tick began stops what it covers.
    let switches = setpoint_state::read_kill_switches(state_dir)?;
    let mut go = Vec::new();
    for (i, plan) in &plans {
        match kill_switch_covering(&switches, loop_name, &plan.service) {
            Some(switch) => outcomes[*i] = ControlOutcome::Stopped { switch },
            None => go.push((*i, plan.as_ref())),
        }
    }

    // 3. Carry out and read back.
    let done = actuator
        .execute_all(&go.iter().map(|(_, p)| *p).collect::<Vec<_>>(), false)
        .instrument(tracing::info_span!("act"))
        .await;
    for ((i, _), outcome) in go.iter().zip(done) {
        outcomes[*i] = outcome;
    }
    crate::enforce::pause_point("after-execute", loop_name).await;
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_shares_become_whole_percents_summing_to_100() {
        let shares = BTreeMap::from([
            ("a".to_string(), 0.333),
            ("b".to_string(), 0.333),
            ("c".to_string(), 0.334),
        ]);
        let p = percents(&shares);
        assert_eq!(p.values().sum::<u32>(), 100);
        assert_eq!(p["c"], 34);
        assert!(percents(&BTreeMap::from([("a".to_string(), 0.0)])).is_empty());
        assert!(percents(&BTreeMap::from([("a".to_string(), f64::NAN)])).is_empty());
    }
}
