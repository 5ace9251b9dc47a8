//! Wires the stages into loops and cycles.
//!
//! A cycle of a loop runs, for every target the metric source knows of the plugin's technology:
//! observe (one range query per metric for the whole fleet) → features (plugin) → classify →
//! propose (plugin) → decide (Rego) → act (dry-run or actuator), and journals each target's
//! trace with its updated history in one transaction. The plugin stages run for the whole
//! fleet in batch calls (crossing the sandbox once per batch, not per target); the stages
//! after them run target by target. The runtime talks to each stage only
//! through its crate's small API, so a stage can change without the others noticing.
//!
//! One target's failure — a plugin trap, a policy error — is recorded for that target and the
//! cycle carries on; only problems that make the whole loop meaningless (the state store cannot
//! be opened, no plugin) end a cycle early.
//!
//! # Spans
//!
//! Each cycle is a root `tracing` span, so with an OpenTelemetry layer (the binary's
//! `telemetry:` config) every cycle is a trace of its own. Under it: `discover`, one `observe`
//! per metric (the fleet-wide stages, batched over all targets), and one `target` span per
//! target with `features`, `classify`, `propose`, `decide` and `act` below it (a stage that is
//! not reached, after a failure, has no span; `features` and `propose` cover the stage's batch
//! calls for all the loop's targets, so they show the same interval). These attribute
//! names are stable:
//!
//! | span | attribute | value |
//! |---|---|---|
//! | `cycle` | `setpoint.loop_name` | the loop's name |
//! | `cycle` | `setpoint.cycle` | the cycle number in the state store |
//! | `cycle` | `setpoint.mode` | `dry-run` or `enforce` |
//! | `cycle`, `target` | `setpoint.dry_run` | `true` when the loop is in dry-run mode |
//! | `cycle`, `target` | `setpoint.policy_bundle` | `sha256:…` of the loop's policy bundle ([`setpoint_decide::PolicyBundle::hash`]) |
//! | `cycle` | `setpoint.targets` | how many targets the cycle decides |
//! | `target` | `setpoint.target` | the target's id |
//! | `target` | `setpoint.loop_name` | the loop's name |
//! | `target` | `setpoint.technology` | `postgres`, `redis`, … |
//! | `target` | `setpoint.class` | `scale_down`, `remain` or `scale_up` |
//! | `target` | `setpoint.confidence` | the classifier's confidence, 0..1 |
//! | `target` | `setpoint.model`, `setpoint.model_version` | the classifier that decided the class |
//! | `target` | `setpoint.verdict` | `act`, `review`, `hold` or `block` |
//! | `target` | `setpoint.reason_codes` | the decision's reason codes, comma-separated |
//! | `target` | `setpoint.proposal` | the chosen proposal's summary, when one is chosen |
//! | `target` | `setpoint.executed` | whether the act stage ran operations |
//! | `target` | `setpoint.error` | the stage error that ended this target's cycle, if any |
//! | `features`, `propose` | `setpoint.batch_targets` | the targets the stage's batch calls carried |

pub mod config;
mod cycle;
pub mod enforce;
pub mod fast;
pub mod loops;
pub mod sources;
mod stages;
pub mod training;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use setpoint_act::ActOutcome;
use setpoint_core::{
    Bounds, Class, FailureKind, JournalEntry, Mode, Reason, SharedClock, StageName, Verdict,
};
use setpoint_decide::PolicyBundle;
use setpoint_observe::{MetricSource, SimulatedFleet};
use setpoint_plugin_host::{CompileCache, Plugin, PluginHost};
use tokio::sync::Notify;

pub use config::{
    Config, ConfigError, LoopConfig, OtlpConfig, OtlpProtocol, ProxyAuthConfig, ServeConfig,
    TelemetryConfig,
};

/// Errors that stop a loop or the whole run.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A loop's plugin could not be read or loaded.
    #[error("loop {loop_name}: {message}")]
    Plugin {
        /// The loop.
        loop_name: String,
        /// What went wrong, naming the plugin.
        message: String,
    },
    /// A loop's policy bundle could not be loaded (a syntax error names file:line:col), or
    /// failed [`LoopRuntime::check_policies`].
    #[error("loop {loop_name}: policy bundle {bundle}: {source}")]
    Policy {
        /// The loop.
        loop_name: String,
        /// The bundle (`builtin` or its directory).
        bundle: String,
        /// The policy error.
        #[source]
        source: setpoint_decide::PolicyError,
    },
    /// The state store failed.
    #[error(transparent)]
    State(#[from] setpoint_state::StateError),
    /// The metric source failed as a whole (discovery).
    #[error("loop {loop_name}: metric source {source_name}: {message}")]
    Source {
        /// The loop.
        loop_name: String,
        /// The source.
        source_name: String,
        /// What went wrong.
        message: String,
    },
    /// A loop classifies with a model that is missing, stale or incompatible, and has no
    /// `classifier.fallback`.
    #[error("loop {loop_name}: classifier kind model: {problem}")]
    ModelUnusable {
        /// The loop.
        loop_name: String,
        /// What is wrong with its model.
        problem: training::ModelProblem,
    },
    /// Training, evaluating or loading a loop's model failed.
    #[error("loop {loop_name}: model: {message}")]
    Learn {
        /// The loop.
        loop_name: String,
        /// What went wrong.
        message: String,
    },
    /// A loop's actuator could not be built from its configuration.
    #[error("loop {loop_name}: actuators[{index}]: {message}")]
    Actuator {
        /// The loop.
        loop_name: String,
        /// Its position under `actuators`.
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// A fast loop's actuator could not be built from its configuration.
    #[error("loop {loop_name}: fast.actuator: {message}")]
    FastActuator {
        /// The loop.
        loop_name: String,
        /// What is wrong.
        message: String,
    },
    /// The scheduler was handed a clock stopped at one instant: it could never wait for the
    /// next cycle.
    #[error(
        "the loops cannot run on their schedules from a fixed time (--now): replay one cycle with run --once"
    )]
    FixedClockSchedule,
    /// A targeted cycle was asked for a target the loop's source does not know.
    #[error("loop {loop_name}: no target {target:?} among the targets its source reports")]
    UnknownTarget {
        /// The loop.
        loop_name: String,
        /// The target asked for.
        target: String,
    },
    /// No loop of the configuration has that name.
    #[error("no loop named {0:?} in the configuration")]
    UnknownLoop(String),
    /// A worker task died (a bug).
    #[error("loop {loop_name}: internal error: {message}")]
    Internal {
        /// The loop.
        loop_name: String,
        /// What went wrong.
        message: String,
    },
}

/// Result of runtime operations.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// A cooperative shutdown signal: set once, seen by every loop and cycle.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    requested: Arc<AtomicBool>,
    notify: Arc<Notify>,
}

impl Shutdown {
    /// A signal not yet given.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks everything to stop: cycles stop between targets and are recorded as interrupted.
    pub fn request(&self) {
        self.requested.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Whether a stop was asked for.
    pub fn is_requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// Waits until a stop is asked for.
    pub async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_requested() {
                return;
            }
            notified.await;
        }
    }
}

/// One target's line in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetRow {
    /// Target id.
    pub target: String,
    /// Technology.
    pub technology: String,
    /// Class, when classification was reached.
    pub class: Option<Class>,
    /// Classifier confidence.
    pub confidence: Option<f64>,
    /// Classification reason code (e.g. `insufficient_data`).
    pub class_reason: Option<String>,
    /// Why the bootstrap heuristics classified instead of the loop's model, if they did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classifier_fallback: Option<String>,
    /// Consecutive cycles with this class.
    pub stable_cycles: u32,
    /// Verdict, when the policy was reached.
    pub verdict: Option<Verdict>,
    /// Summary of the chosen proposal.
    pub change: Option<String>,
    /// The top reason of the decision.
    pub reason: Option<Reason>,
    /// What the act stage did.
    pub outcome: Option<ActOutcome>,
    /// The error that failed this target's cycle.
    pub error: Option<String>,
    /// What was wrong with this target's data (a failed query, no series), one line each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub observe_issues: Vec<String>,
    /// The metrics whose values for this target fell outside their domain and were not taken
    /// as evidence (for the engine's metrics; the reason is in `observe_issues`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected_evidence: Vec<String>,
    /// The stage that failed, with `error` (for the engine's metrics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_stage: Option<StageName>,
    /// Whether the plugin sandbox stopped the plugin (a trap, a panic, an exhausted CPU, time,
    /// memory or stack limit), as opposed to the plugin refusing or misbehaving.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sandbox_trap: bool,
    /// How long the policy evaluation took, when the policy was reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_seconds: Option<f64>,
    /// Whether the policy evaluation failed (the target then holds with `policy_error`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub policy_error: bool,
    /// What became of a fast loop's decision; `None` on a weekly loop's row, which has its
    /// class and [`TargetRow::outcome`] instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<setpoint_core::control::ControlOutcome>,
}

/// What one cycle of one loop did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CycleReport {
    /// Loop name.
    pub loop_name: String,
    /// Cycle number.
    pub cycle: u64,
    /// The cycle's `now`.
    pub now: DateTime<Utc>,
    /// The loop's mode.
    pub mode: Mode,
    /// Metric source name.
    pub source: String,
    /// Plugin name and version.
    pub plugin: String,
    /// Range queries issued (one per metric, whatever the fleet size).
    pub queries: usize,
    /// Queries that failed; their metrics are missing for every target.
    pub degraded: Vec<String>,
    /// Series that answered for no target: `label (metric, …)`, one per target-label value.
    /// Declare the target or add its value to a target's `aliases` (docs/targets.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmatched_series: Vec<String>,
    /// Targets (declared, inventoried or discovered) that no series of any answered metric
    /// named, by id: each holds on insufficient data, its row saying so. Check that it is
    /// scraped, or add its exporters' label values to its `aliases` (docs/targets.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets_without_series: Vec<String>,
    /// One row per target, sorted by id.
    pub rows: Vec<TargetRow>,
    /// Whether the cycle stopped early on a shutdown request.
    pub interrupted: bool,
    /// Wall-clock seconds the cycle took, from opening the store to recording its end.
    #[serde(default)]
    pub duration_seconds: f64,
    /// A fast loop's forecast errors, one row per series with a checked forecast, by service
    /// and series; empty for a weekly loop.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forecast_errors: Vec<ForecastErrorRow>,
}

/// One series' forecast errors after a fast loop's tick: the loop's forecasts at its horizon
/// checked against what followed, over the last one to two days (docs/fast-loop.md,
/// "Forecast error metrics").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForecastErrorRow {
    /// The service.
    pub service: String,
    /// The metric, as the policy input names it (`request_rate`, `latency_p99_ms`, …).
    pub metric: String,
    /// The region, for a per-region series.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// How far ahead the forecasts looked, in seconds.
    pub horizon_seconds: u64,
    /// Forecasts checked.
    pub count: u64,
    /// Mean absolute error, in the metric's unit.
    pub mae: Option<f64>,
    /// Mean absolute percentage error, as a fraction (0.05 = 5 %); actual values of zero are
    /// left out.
    pub mape: Option<f64>,
    /// Mean absolute scaled error against the seasonal-naive forecast (the value one day
    /// before): below 1, the loop's forecasts did better.
    pub mase: Option<f64>,
    /// Share of actual values inside the forecasts' intervals.
    pub coverage: Option<f64>,
}

impl ForecastErrorRow {
    /// The series' name as the fast loop's configuration names it: the metric, with
    /// `_<region>` for a per-region series (`request_rate_primary`).
    pub fn series(&self) -> String {
        match &self.region {
            Some(region) => format!("{}_{region}", self.metric),
            None => self.metric.clone(),
        }
    }
}

impl From<&JournalEntry> for TargetRow {
    /// The report's line of a target: read from its journal entry and nothing else, so the
    /// report, `explain`, the HTML, the review page and the metrics cannot disagree.
    fn from(entry: &JournalEntry) -> Self {
        let classification = entry.classification.as_ref();
        let decision = entry.decision.as_ref();
        let error = entry.error.as_ref();
        TargetRow {
            target: entry.target.id.clone(),
            technology: entry.target.technology.clone(),
            class: classification.map(|c| c.class),
            confidence: classification.map(|c| c.confidence),
            class_reason: classification.map(|c| c.explanation.code.clone()),
            classifier_fallback: entry.classifier_fallback.clone(),
            stable_cycles: entry.stable_cycles,
            verdict: decision.map(|d| d.verdict),
            change: entry.chosen_proposal().map(|p| p.summary.clone()),
            reason: decision.and_then(|d| d.reasons.first().cloned()),
            outcome: entry.outcome.clone(),
            error: error.map(|e| e.message.clone()),
            observe_issues: entry
                .observe_issues
                .iter()
                .map(ToString::to_string)
                .collect(),
            rejected_evidence: entry
                .observe_issues
                .iter()
                .filter_map(|issue| match issue {
                    setpoint_core::ObserveIssue::OutOfDomain { metric, .. } => Some(metric.clone()),
                    _ => None,
                })
                .collect(),
            error_stage: error.map(|e| e.stage),
            sandbox_trap: error.is_some_and(|e| e.kind == FailureKind::SandboxTrap),
            policy_seconds: entry.policy_seconds,
            policy_error: entry.policy_error.is_some(),
            control: None,
        }
    }
}

impl CycleReport {
    /// Targets whose cycle failed at some stage, a policy evaluation error included (the
    /// target held, but the policy did not decide it).
    pub fn failed(&self) -> usize {
        self.rows
            .iter()
            .filter(|r| r.error.is_some() || r.policy_error)
            .count()
    }
}

/// A loop, resolved: its plugin loaded, its policies parsed, its source built.
pub struct LoopRuntime {
    config: LoopConfig,
    plugin: Plugin,
    source: Arc<dyn MetricSource>,
    classifier: training::LoopClassifier,
    policies: PolicyBundle,
    /// [`PolicyBundle::hash`], computed once: every target span of every cycle carries it.
    policy_hash: String,
    bounds: Bounds,
    actuators: setpoint_act::Actuators,
    /// A loop of `kind: fast`: its control policy, queries and state between ticks.
    fast: Option<fast::cycle::FastRuntime>,
}

impl LoopRuntime {
    /// The loop's configuration.
    pub fn config(&self) -> &LoopConfig {
        &self.config
    }

    /// A policy engine for one cycle of this loop, with the kill switches as its data.
    pub(crate) fn policy_engine(
        &self,
        kill_switches: &setpoint_core::KillSwitches,
    ) -> Result<setpoint_decide::PolicyEngine> {
        setpoint_decide::PolicyEngine::new(&self.policies, kill_switches).map_err(|source| {
            RuntimeError::Policy {
                loop_name: self.config.name.to_string(),
                bundle: "loaded bundle".to_string(),
                source,
            }
        })
    }

    /// Checks the loop's policies for what loading leaves to evaluation: calls to undefined
    /// functions ([`PolicyBundle::check`]). `config check` runs it; a cycle does not need it,
    /// since a target whose evaluation reaches such a call holds with `policy_error`.
    pub fn check_policies(&self) -> Result<()> {
        self.policies
            .check()
            .map_err(|source| RuntimeError::Policy {
                loop_name: self.config.name.to_string(),
                bundle: bundle_label(&self.config.policies),
                source,
            })
    }

    /// `name version` of the loop's plugin, as reports and the journal name it.
    pub fn plugin_label(&self) -> String {
        let descriptor = self.plugin.descriptor();
        format!("{} {}", descriptor.name, descriptor.version)
    }

    /// The loop's metric source, for read-only tools (`setpoint forecast`) that query it as
    /// the loop does.
    pub fn source(&self) -> &Arc<dyn MetricSource> {
        &self.source
    }

    /// What the loop's plugin declared: its technology and metrics (with their PromQL).
    pub fn descriptor(&self) -> &setpoint_core::PluginDescriptor {
        self.plugin.descriptor()
    }
}

/// Every loop of a configuration, ready to run.
pub struct Runtime {
    state_dir: PathBuf,
    loops: Vec<LoopRuntime>,
    /// One cycle at a time per process: a cycle holds the state store open, and the store
    /// admits one writer.
    cycle_lock: tokio::sync::Mutex<()>,
    /// Where the scheduler and the actuators read the time (the wall clock unless injected).
    clock: SharedClock,
}

impl Runtime {
    /// Resolves a configuration: loads plugins and policy bundles, builds sources.
    ///
    /// Fails before any cycle runs if a plugin does not load or a policy does not parse, so a
    /// broken deployment never half-runs.
    pub fn new(config: Config) -> Result<Self> {
        let mut loops = Vec::with_capacity(config.loops.len());
        // One cache for every loop: the same plugin under the same engine is compiled once.
        let cache = Arc::new(CompileCache::new(config.plugin_cache_dir()));
        for lp in config.loops {
            loops.push(resolve_loop(lp, &cache)?);
        }
        Ok(Self {
            state_dir: config.state_dir,
            loops,
            cycle_lock: tokio::sync::Mutex::new(()),
            clock: setpoint_core::system_clock(),
        })
    }

    /// The same runtime reading the time from `clock` (a fixed one replays an instant).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The clock this runtime reads.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// The state directory.
    pub fn state_dir(&self) -> &std::path::Path {
        &self.state_dir
    }

    /// The loops.
    pub fn loops(&self) -> &[LoopRuntime] {
        &self.loops
    }

    /// Runs one cycle of every loop (or of the named one) at `now`.
    pub async fn run_once(
        &self,
        now: DateTime<Utc>,
        only: Option<&str>,
        shutdown: &Shutdown,
    ) -> Result<Vec<CycleReport>> {
        self.reconcile(now).await?;
        let mut reports = Vec::new();
        for lp in &self.loops {
            if only.is_some_and(|name| name != lp.config.name.as_str()) {
                continue;
            }
            let _cycle = self.cycle_lock.lock().await;
            reports.push(
                loops::run_cycle(lp, &self.state_dir, &self.clock, now, None, shutdown).await?,
            );
        }
        Ok(reports)
    }

    /// Runs one cycle of one loop for one target only: how an approval is re-checked against
    /// fresh data and, in enforce mode, carried out at once. The target's class history is not
    /// advanced (hysteresis counts scheduled cycles only).
    pub async fn run_target(
        &self,
        now: DateTime<Utc>,
        loop_name: &str,
        target: &str,
        shutdown: &Shutdown,
    ) -> Result<CycleReport> {
        let lp = self
            .loops
            .iter()
            .find(|lp| lp.config.name.as_str() == loop_name)
            .ok_or_else(|| RuntimeError::UnknownLoop(loop_name.to_string()))?;
        self.reconcile(now).await?;
        let _cycle = self.cycle_lock.lock().await;
        loops::run_cycle(
            lp,
            &self.state_dir,
            &self.clock,
            now,
            Some(target),
            shutdown,
        )
        .await
    }

    /// Carries every intent that a dead process left pending to an end (see
    /// [`enforce`]); returns them. Runs before the first cycle of `run` and `run --once`.
    pub async fn reconcile(&self, now: DateTime<Utc>) -> Result<Vec<setpoint_core::Intent>> {
        let _cycle = self.cycle_lock.lock().await;
        let mut finished = Vec::new();
        let mut store = None;
        for lp in &self.loops {
            let store = match &mut store {
                Some(store) => store,
                None => store.insert(setpoint_state::Store::open_waiting(
                    &self.state_dir,
                    std::time::Duration::from_secs(30),
                )?),
            };
            let enforcer = enforce::Enforcer::for_loop(lp, &self.state_dir, self.clock.as_ref());
            finished
                .extend(enforce::reconcile(&enforcer, store, lp.config.name.as_str(), now).await?);
        }
        Ok(finished)
    }

    /// Runs every loop on its schedule until `shutdown` is requested.
    ///
    /// `on_cycle` sees each finished cycle (to print or export it). A cycle's error is logged
    /// and the loop carries on to its next scheduled time: one bad cycle never ends the run.
    pub async fn run_scheduled<F>(&self, shutdown: Shutdown, on_cycle: F) -> Result<()>
    where
        F: Fn(&CycleReport) + Send + Sync,
    {
        let on_cycle = &on_cycle;
        // Intents a crashed process left pending are finished before anything else, not at the
        // next scheduled cycle (which may be a week away).
        if self.clock.is_fixed() {
            return Err(RuntimeError::FixedClockSchedule);
        }
        if let Err(error) = self.reconcile(self.clock.now()).await {
            tracing::error!(%error, "reconciling pending intents failed");
        }
        let tasks = self.loops.iter().map(|lp| {
            let shutdown = shutdown.clone();
            let state_dir = self.state_dir.clone();
            let cycle_lock = &self.cycle_lock;
            async move {
                loop {
                    let Some(next) = lp.config.schedule.next_after(self.clock.now()) else {
                        tracing::error!(loop_name = %lp.config.name, "schedule has no next time; loop stops");
                        return;
                    };
                    tracing::info!(loop_name = %lp.config.name, next = %next, "next cycle scheduled");
                    let wait = (next - self.clock.now()).to_std().unwrap_or_default();
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.wait() => return,
                    }
                    let result = {
                        let _cycle = cycle_lock.lock().await;
                        loops::run_cycle(lp, &state_dir, &self.clock, next, None, &shutdown).await
                    };
                    match result {
                        Ok(report) => on_cycle(&report),
                        Err(error) => tracing::error!(loop_name = %lp.config.name, %error, "cycle failed"),
                    }
                    if shutdown.is_requested() {
                        return;
                    }
                }
            }
        });
        futures_util::future::join_all(tasks).await;
        Ok(())
    }
}

/// The simulated fleet of a bundled plugin's scenarios (`postgres`, …), as the quickstart runs
/// it; for `setpoint sim export`, tests and benchmarks.
pub fn builtin_fleet(seed: u64, plugin: &str) -> Result<SimulatedFleet> {
    builtin_fleet_sized(seed, plugin, None)
}

/// [`builtin_fleet`] with `size` targets instead of the scenarios' own counts (each scenario
/// keeps its share, at least one target), for backfilling and benchmarking large fleets.
pub fn builtin_fleet_sized(seed: u64, plugin: &str, size: Option<usize>) -> Result<SimulatedFleet> {
    let plugin_error = |message: String| RuntimeError::Plugin {
        loop_name: "-".to_string(),
        message,
    };
    let bytes = setpoint_plugins_bundled::all()
        .iter()
        .find(|(n, _)| *n == plugin)
        .map(|(_, bytes)| *bytes)
        .ok_or_else(|| plugin_error(format!("no builtin plugin named {plugin:?}")))?;
    let host = PluginHost::new(setpoint_plugin_host::Limits::default())
        .map_err(|e| plugin_error(e.to_string()))?;
    let loaded = host
        .load(&format!("builtin:{plugin}"), bytes)
        .map_err(|e| plugin_error(e.to_string()))?;
    Ok(match size {
        Some(size) => SimulatedFleet::sized(seed, loaded.descriptor(), size),
        None => SimulatedFleet::new(seed, loaded.descriptor()),
    })
}

/// The fleet of the bundled plugin for `technology`, if setpoint bundles one.
pub(crate) fn bundled_fleet_for(seed: u64, technology: &str) -> Option<SimulatedFleet> {
    setpoint_plugins_bundled::all()
        .iter()
        .filter_map(|(name, _)| builtin_fleet(seed, name).ok())
        .find(|fleet| {
            fleet
                .targets()
                .first()
                .is_some_and(|t| t.technology == technology)
        })
}

/// A loop's policy bundle as errors name it: `builtin` or its directory.
fn bundle_label(policies: &config::PolicyRef) -> String {
    match policies {
        config::PolicyRef::Builtin => "builtin".to_string(),
        config::PolicyRef::Dir(dir) => dir.display().to_string(),
    }
}

fn resolve_loop(config: LoopConfig, cache: &Arc<CompileCache>) -> Result<LoopRuntime> {
    let loop_name = config.name.to_string();
    let host = PluginHost::new(config.limits.resolve())
        .map_err(|error| RuntimeError::Plugin {
            loop_name: loop_name.clone(),
            message: error.to_string(),
        })?
        .with_cache(cache.clone());
    let plugin = match &config.plugin {
        config::PluginRef::Builtin(name) => {
            let bytes = setpoint_plugins_bundled::all()
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, bytes)| *bytes)
                .ok_or_else(|| RuntimeError::Plugin {
                    loop_name: loop_name.clone(),
                    message: format!("no builtin plugin named {name:?}"),
                })?;
            host.load(&format!("builtin:{name}"), bytes)
        }
        config::PluginRef::File { path, sha256 } => {
            let bytes = std::fs::read(path).map_err(|error| RuntimeError::Plugin {
                loop_name: loop_name.clone(),
                message: format!("cannot read plugin {}: {error}", path.display()),
            })?;
            if let Some(pinned) = sha256 {
                let actual = setpoint_plugin_host::digest(&bytes);
                if &actual != pinned {
                    return Err(RuntimeError::Plugin {
                        loop_name: loop_name.clone(),
                        message: format!(
                            "plugin {} is not the pinned one: its sha256 is {actual}, the loop pins {pinned}; if the change is intended, check it (`setpoint plugin inspect {}`) and pin the new digest",
                            path.display(),
                            path.display()
                        ),
                    });
                }
            }
            host.load(&path.display().to_string(), &bytes)
        }
    }
    .map_err(|error| RuntimeError::Plugin {
        loop_name: loop_name.clone(),
        message: error.to_string(),
    })?;
    // A fast loop's `policies` is its control policy, loaded by its fast runtime; the weekly
    // bundle it carries is the default one, which its ticks never evaluate.
    let fast = match config.kind {
        loops::LoopKind::Fast => Some(fast::cycle::FastRuntime::new(&config)?),
        loops::LoopKind::Weekly => None,
    };
    let policies = match (&config.policies, &fast) {
        (config::PolicyRef::Builtin, _) | (_, Some(_)) => setpoint_decide::default_bundle(),
        (config::PolicyRef::Dir(dir), None) => PolicyBundle::load(dir),
    }
    .map_err(|source| RuntimeError::Policy {
        loop_name: loop_name.clone(),
        bundle: bundle_label(&config.policies),
        source,
    })?;
    let source = config
        .source
        .build(&sources::SourceContext {
            descriptor: plugin.descriptor(),
        })
        .map_err(|error| RuntimeError::Source {
            loop_name: loop_name.clone(),
            source_name: config.source.describe(),
            message: error.to_string(),
        })?;
    let classifier = training::LoopClassifier::new(&config.classifier);
    let bounds = config.bounds.resolve();
    let actuators = enforce::build_actuators(&loop_name, &config.actuators)?;
    let policy_hash = policies.hash();
    Ok(LoopRuntime {
        config,
        plugin,
        source,
        classifier,
        policies,
        policy_hash,
        bounds,
        actuators,
        fast,
    })
}
