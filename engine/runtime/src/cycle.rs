//! One cycle of one loop.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use chrono::{DateTime, Duration, TimeZone, Utc};
use setpoint_act::ActOutcome;
use setpoint_core::{
    Classification, FeatureVector, HistoryView, Intent, IntentStatus, JournalEntry, LoopInfo,
    MetricSeries, PolicyFeature, PolicyInput, Proposal, ReviewFeedback, ReviewItem, ReviewStatus,
    StageError, StageName, Target, TargetHistory, Verdict, Window,
};
use setpoint_decide::PolicyEngine;
use setpoint_observe::{RangeQuery, WeeklySummary};
use setpoint_plugin_host::{FeaturesInput, PluginError, ProposeInput};
use setpoint_state::{CycleRecord, CycleStatus, Store};
use tracing::{Instrument, info_span};

use crate::{CycleReport, LoopRuntime, Result, RuntimeError, Shutdown, TargetRow};
use setpoint_core::SharedClock;

const WEEK_SECONDS: i64 = 7 * 24 * 3600;

/// How long a cycle waits for the state store while another process (`setpoint explain`, a
/// kill-switch command) reads it.
const STORE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The label that names a target in metric series.
const TARGET_LABEL: &str = "instance";

/// The observation window for a cycle at `now`: whole steps, `weeks + 1` weeks long so the
/// oldest feature week is complete even when `now` falls mid-step.
pub(crate) fn window_for(now: DateTime<Utc>, weeks: u32, step_seconds: u64) -> Window {
    let step = step_seconds.max(1) as i64;
    let end_s = now.timestamp().div_euclid(step) * step;
    let end = Utc.timestamp_opt(end_s, 0).single().unwrap_or(now);
    let start = end - Duration::seconds(WEEK_SECONDS * (i64::from(weeks) + 1));
    Window {
        start,
        end,
        step_seconds: step as u64,
        weeks,
    }
}

pub(crate) async fn run(
    lp: &LoopRuntime,
    state_dir: &Path,
    clock: &SharedClock,
    now: DateTime<Utc>,
    only_target: Option<&str>,
    shutdown: &Shutdown,
) -> Result<CycleReport> {
    let loop_name = lp.config.name.to_string();
    let started = std::time::Instant::now();
    // The store is opened per cycle so that `explain` and other commands can read it between
    // cycles of a long-running `setpoint run`.
    let store = Store::open_waiting(state_dir, STORE_WAIT)?;
    let kill_switches = setpoint_state::read_kill_switches(state_dir)?;
    let cycle = store.begin_cycle(&loop_name, now)?;
    // A root span: each cycle is a trace of its own, whatever the caller was doing.
    let span = info_span!(
        parent: None,
        "cycle",
        loop_name = %loop_name,
        cycle,
        now = %now,
        setpoint.loop_name = %loop_name,
        setpoint.cycle = cycle,
        setpoint.mode = lp.config.mode.as_str(),
        setpoint.dry_run = lp.config.mode == setpoint_core::Mode::DryRun,
        setpoint.policy_bundle = %lp.policy_hash,
        setpoint.targets = tracing::field::Empty,
    );
    let classifier = {
        let _entered = span.enter();
        tokio::task::block_in_place(|| lp.classifier.for_cycle(lp, &store, now))?
    };
    if let Some(note) = &classifier.fallback {
        tracing::info!(parent: &span, "{note}");
    }
    let descriptor = lp.plugin.descriptor().clone();
    let plugin_label = format!("{} {}", descriptor.name, descriptor.version);

    let (targets, series_by_target, mut observation, queries, degraded) = async {
        let mut degraded = Vec::new();
        let discovered = lp
            .source
            .discover(&descriptor.technology)
            .instrument(info_span!("discover"))
            .await;
        // A source that cannot list targets still leaves the declared ones to decide (they
        // will hold on missing data); the cycle completes and says what was degraded.
        let targets = match discovered {
            Ok(targets) => targets,
            Err(error) => {
                tracing::warn!(%error, "discovery failed; continuing with the declared targets");
                degraded.push(format!("discovery: {error}"));
                Vec::new()
            }
        };
        let (targets, names, label_problems) =
            resolve_targets(targets, &lp.config.targets, &descriptor.technology);
        let window = window_for(
            now,
            lp.config.window.weeks,
            lp.config.window.step.0.as_secs(),
        );
        let mut series_by_target: HashMap<String, Vec<MetricSeries>> = HashMap::new();
        let mut observation = Observation::default();
        for (target, problem) in label_problems {
            tracing::warn!(target = %target, %problem, "unusable size labels");
            observation
                .problems
                .entry(target)
                .or_default()
                .push(format!("resources: {problem}"));
        }
        let mut queries = 0;
        let summarise = lp.source.summarises_weekly();
        for metric in &descriptor.metrics {
            let query = RangeQuery {
                metric: metric.name.clone(),
                promql: metric.query.clone(),
                technology: descriptor.technology.clone(),
                start: window.start,
                end: window.end,
                step_seconds: window.step_seconds,
                target_label: TARGET_LABEL.to_string(),
                weekly: summarise.then_some(WeeklySummary {
                    aggregation: metric.aggregation,
                    weeks: window.weeks,
                }),
            };
            queries += 1;
            let result = lp
                .source
                .query_range(&query)
                .instrument(info_span!("observe", metric = %metric.name))
                .await;
            match result {
                Ok(result) => {
                    for (label, problem) in result.problems {
                        let target = names.get(&label).cloned().unwrap_or(label);
                        tracing::warn!(target = %target, metric = %metric.name, %problem, "series dropped");
                        observation
                            .problems
                            .entry(target)
                            .or_default()
                            .push(format!("{}: {problem}", metric.name));
                    }
                    for (label, series) in result.series {
                        let target = names.get(&label).cloned().unwrap_or(label);
                        let slot = series_by_target.entry(target.clone()).or_default();
                        if slot.iter().any(|s| s.metric == series.metric) {
                            // Two label values of one target both answered: keep the first,
                            // say so, never average two different things.
                            tracing::warn!(target = %target, metric = %metric.name, "several series for one target; keeping the first");
                            continue;
                        }
                        slot.push(series);
                    }
                }
                Err(error) => {
                    tracing::warn!(metric = %metric.name, %error, "query failed; the metric is missing for every target");
                    degraded.push(format!(
                        "{}: query failed, missing for every target: {error}",
                        metric.name
                    ));
                    observation
                        .failed_metrics
                        .insert(metric.name.clone(), error.to_string());
                }
            }
        }
        tracing::info!(targets = targets.len(), queries, summarised_in_source = summarise, "observed");
        tracing::Span::current().record("setpoint.targets", targets.len());
        Ok::<_, RuntimeError>((targets, series_by_target, observation, queries, degraded))
    }
    .instrument(span.clone())
    .await?;

    let window = window_for(
        now,
        lp.config.window.weeks,
        lp.config.window.step.0.as_secs(),
    );
    let mut engine =
        PolicyEngine::new(&lp.policies, &kill_switches).map_err(|source| RuntimeError::Policy {
            loop_name: loop_name.clone(),
            bundle: "loaded bundle".to_string(),
            source,
        })?;

    let mut targets = targets;
    if let Some(only) = only_target {
        targets.retain(|t| t.id == only);
        if targets.is_empty() {
            store.finish_cycle(&CycleRecord {
                loop_name: loop_name.clone(),
                cycle,
                now,
                status: CycleStatus::Completed,
                targets: 0,
                failed: 0,
                queries,
            })?;
            return Err(RuntimeError::UnknownTarget {
                loop_name,
                target: only.to_string(),
            });
        }
    }
    let context = TargetContext {
        lp,
        classifier,
        now,
        cycle,
        window,
        plugin_label: plugin_label.clone(),
        targeted: only_target.is_some(),
    };
    let enforcer = crate::enforce::Enforcer {
        actuators: &lp.actuators,
        act: &lp.config.act,
        state_dir,
        clock: clock.as_ref(),
    };
    let runtime = tokio::runtime::Handle::current();
    let shutdown = shutdown.clone();
    let source_name = lp.source.name().to_string();
    let span_for_targets = span.clone();
    // Plugin calls and policy evaluations are synchronous and CPU-bound: run the whole batch on
    // a blocking thread, paying the hop once per cycle rather than once per call.
    let (rows, interrupted) = tokio::task::block_in_place(|| {
        let _entered = span_for_targets.enter();
        targets.sort_by(|a, b| a.id.cmp(&b.id));
        let mut series_by_target = series_by_target;
        let observed: Vec<Observed> = targets
            .into_iter()
            .map(|target| {
                let series = series_by_target.remove(&target.id).unwrap_or_default();
                let issues = observation.issues_of(&target.id, &descriptor.metrics, &series);
                Observed {
                    target,
                    series,
                    issues,
                }
            })
            .collect();
        // The plugin stages run for the whole fleet at once (a batch call crosses the sandbox
        // boundary once); the per-target stages follow, one target at a time.
        let staged = context.stage(observed);
        let mut rows = Vec::with_capacity(staged.len());
        for staged in staged {
            if shutdown.is_requested() {
                return Ok::<_, RuntimeError>((rows, true));
            }
            let target_id = staged.target.id.clone();
            let history = store.history(&context.lp.config.name.0, &target_id)?;
            let review = store.review_feedback(&context.lp.config.name.0, &target_id, now)?;
            let scheduled = history.clone();
            let (entry, mut history, mut row) =
                context.process(&mut engine, staged, history, review.clone());
            if context.targeted {
                // The policy saw this cycle's class; the stored history keeps only scheduled
                // cycles', so an approval re-check does not count towards hysteresis.
                let scheduled = scheduled.unwrap_or_else(|| TargetHistory::new(now));
                history.classes = scheduled.classes;
                history.stable_cycles = scheduled.stable_cycles;
            }
            let mut intent = context.intent(&entry, review.as_ref());
            let queued = context.review_item(&entry);
            // Dry-run uses an approval up by recording what would have run; enforce mode
            // when the intent is done.
            let applied_review = match (&row.outcome, &review) {
                (Some(ActOutcome::WouldExecute { .. }), Some(r))
                    if r.status == ReviewStatus::Approved
                        && entry.decision.as_ref().is_some_and(|d| {
                            d.verdict == Verdict::Act && d.proposal == Some(r.action)
                        }) =>
                {
                    Some(r.id)
                }
                _ => None,
            };
            store.record_target_with(
                &entry,
                &history,
                setpoint_state::FollowUps {
                    intent: intent.as_ref(),
                    review: queued.as_ref(),
                    applied_review,
                },
            )?;
            if let Some(pending) = intent.take() {
                let finished = runtime.block_on(enforcer.carry_out(&store, pending, now))?;
                match finished.status {
                    IntentStatus::Done => {
                        row.outcome = Some(setpoint_act::executed(
                            finished.operations.clone(),
                            finished.results.clone(),
                        ));
                    }
                    status => {
                        row.error = Some(format!(
                            "plan {status}: {}",
                            finished.error.as_deref().unwrap_or_default()
                        ));
                    }
                }
            }
            rows.push(row);
        }
        Ok((rows, false))
    })?;

    // Targets that lack a metric the others have (partial series, dropped series) make the
    // cycle degraded too, by name; a failed query is already reported once for the fleet.
    let mut degraded = degraded;
    for row in &rows {
        for issue in &row.observe_issues {
            if !issue.contains(": query failed: ") {
                degraded.push(format!("{}: {issue}", row.target));
            }
        }
    }
    let report = CycleReport {
        loop_name: loop_name.clone(),
        cycle,
        now,
        mode: lp.config.mode,
        source: source_name,
        plugin: plugin_label,
        queries,
        degraded,
        rows,
        interrupted,
        duration_seconds: 0.0,
    };
    store.finish_cycle(&CycleRecord {
        loop_name,
        cycle,
        now,
        status: if interrupted {
            CycleStatus::Interrupted
        } else {
            CycleStatus::Completed
        },
        targets: report.rows.len(),
        failed: report.failed(),
        queries,
    })?;
    let mut report = report;
    report.duration_seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Whether the sandbox stopped the plugin, rather than the plugin refusing or misbehaving.
fn is_sandbox_trap(error: &setpoint_plugin_host::PluginError) -> bool {
    use setpoint_plugin_host::Failure;
    matches!(
        error.failure(),
        Some(
            Failure::Trap { .. }
                | Failure::Panic { .. }
                | Failure::OutOfFuel { .. }
                | Failure::Timeout { .. }
                | Failure::MemoryLimit { .. }
                | Failure::StackOverflow
        )
    )
}

/// Applies the configuration's targets to what discovery found: aliases fold the label values
/// that name one target into its id, declared resources and labels win, and declared targets
/// that discovery missed are added; a discovered target without declared resources takes them
/// from its `setpoint_cpu` / `setpoint_memory_gib` / `setpoint_param_*` labels. Returns the
/// targets, the label-value → id map, and the targets whose size labels are unusable.
pub(crate) fn resolve_targets(
    discovered: Vec<Target>,
    declared: &[crate::config::StaticTarget],
    technology: &str,
) -> (
    Vec<Target>,
    HashMap<String, String>,
    HashMap<String, String>,
) {
    let mut names: HashMap<String, String> = HashMap::new();
    for t in declared {
        names.insert(t.id.clone(), t.id.clone());
        for alias in &t.aliases {
            names.insert(alias.clone(), t.id.clone());
        }
    }
    let mut targets: BTreeMap<String, Target> = BTreeMap::new();
    let mut problems: HashMap<String, String> = HashMap::new();
    for mut target in discovered {
        let id = names.get(&target.id).cloned().unwrap_or(target.id.clone());
        target.id = id.clone();
        match resources_from_labels(&target.labels) {
            Ok(Some(resources)) => target.resources = resources,
            Ok(None) => {}
            Err(problem) => {
                problems.insert(id.clone(), problem);
            }
        }
        targets.entry(id).or_insert(target);
    }
    for t in declared {
        let target = targets.entry(t.id.clone()).or_insert_with(|| Target {
            id: t.id.clone(),
            technology: technology.to_string(),
            labels: BTreeMap::new(),
            resources: setpoint_core::Resources {
                cpu_millicores: 0,
                memory_bytes: 0,
                replicas: 1,
                parameters: BTreeMap::new(),
            },
        });
        if let Some(resources) = &t.resources {
            target.resources = resources.resolve();
            problems.remove(&t.id);
        }
        target
            .labels
            .extend(t.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    (targets.into_values().collect(), names, problems)
}

/// Label on the discovery series giving a target's vCPUs (set by relabelling in the scrape
/// configuration), so a fleet can be sized without listing every target in setpoint's config.
pub const CPU_LABEL: &str = "setpoint_cpu";
/// Label giving a target's memory in GiB.
pub const MEMORY_LABEL: &str = "setpoint_memory_gib";
/// Prefix of labels giving a technology parameter, e.g. `setpoint_param_shared_buffers="8GB"`.
pub const PARAMETER_LABEL_PREFIX: &str = "setpoint_param_";

/// A target's current size from its discovery labels: `None` when it has neither size label, an
/// error naming the label when one is missing or not a positive number.
fn resources_from_labels(
    labels: &BTreeMap<String, String>,
) -> Result<Option<setpoint_core::Resources>, String> {
    let (cpu, memory) = (labels.get(CPU_LABEL), labels.get(MEMORY_LABEL));
    if cpu.is_none() && memory.is_none() {
        return Ok(None);
    }
    let number = |label: &str, value: Option<&String>| -> Result<f64, String> {
        let value = value.ok_or_else(|| {
            format!("label {label} is missing (both {CPU_LABEL} and {MEMORY_LABEL} are needed)")
        })?;
        value
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v > 0.0)
            .ok_or_else(|| format!("label {label}={value:?} is not a positive number"))
    };
    let resources = crate::config::ResourcesConfig {
        cpu: number(CPU_LABEL, cpu)?,
        memory_gib: number(MEMORY_LABEL, memory)?,
        parameters: labels
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(PARAMETER_LABEL_PREFIX)
                    .map(|name| (name.to_string(), v.clone()))
            })
            .collect(),
    };
    Ok(Some(resources.resolve()))
}

/// What went wrong while observing, kept so every affected target's record names the cause.
#[derive(Default)]
struct Observation {
    /// Metric → why its query failed (the metric is missing for every target).
    failed_metrics: BTreeMap<String, String>,
    /// Target → series the source had to drop for it.
    problems: HashMap<String, Vec<String>>,
}

impl Observation {
    /// One line per metric this target lacks, with the reason, plus its dropped series.
    fn issues_of(
        &mut self,
        target: &str,
        metrics: &[setpoint_core::MetricSpec],
        series: &[MetricSeries],
    ) -> Vec<String> {
        let mut issues = Vec::new();
        for metric in metrics {
            if let Some(error) = self.failed_metrics.get(&metric.name) {
                issues.push(format!("{}: query failed: {error}", metric.name));
            } else if !series.iter().any(|s| s.metric == metric.name) {
                issues.push(format!(
                    "{}: the source returned no series for this target",
                    metric.name
                ));
            }
        }
        let problems = self.problems.remove(target).unwrap_or_default();
        // A dropped series also shows as "no series"; keep only the more precise line.
        issues.retain(|line| {
            !problems
                .iter()
                .any(|p| p.split(':').next() == line.split(':').next())
        });
        issues.extend(problems);
        issues
    }
}

struct TargetContext<'a> {
    lp: &'a LoopRuntime,
    classifier: crate::training::ActiveClassifier,
    now: DateTime<Utc>,
    cycle: u64,
    window: Window,
    plugin_label: String,
    /// A cycle for one target (an approval re-checked at once): the class history is not
    /// advanced, so hysteresis counts scheduled cycles only.
    targeted: bool,
}

/// A target as observed, before the plugin stages.
struct Observed {
    target: Target,
    series: Vec<MetricSeries>,
    issues: Vec<String>,
}

/// A target after the fleet-wide stages (features, classify, propose), ready for its own.
struct Staged {
    target: Target,
    observe_issues: Vec<String>,
    /// The target's span; the stages so far are its children.
    span: tracing::Span,
    features: Result<FeatureVector, PluginError>,
    /// Present when the features were.
    classification: Option<Classification>,
    /// Present when the plugin was asked: features computed and the size known.
    proposals: Option<Result<Vec<Proposal>, PluginError>>,
}

impl TargetContext<'_> {
    fn target_span(&self, target: &Target) -> tracing::Span {
        // The attributes a person filters traces on (documented in the crate docs); those not
        // known yet are recorded as the stages produce them.
        info_span!(
            "target",
            target = %target.id,
            setpoint.target = %target.id,
            setpoint.technology = %target.technology,
            setpoint.loop_name = %self.lp.config.name,
            setpoint.dry_run = self.lp.config.mode == setpoint_core::Mode::DryRun,
            setpoint.policy_bundle = %self.lp.policy_hash,
            setpoint.class = tracing::field::Empty,
            setpoint.confidence = tracing::field::Empty,
            setpoint.model = tracing::field::Empty,
            setpoint.model_version = tracing::field::Empty,
            setpoint.verdict = tracing::field::Empty,
            setpoint.reason_codes = tracing::field::Empty,
            setpoint.proposal = tracing::field::Empty,
            setpoint.executed = tracing::field::Empty,
            setpoint.error = tracing::field::Empty,
        )
    }

    /// Runs the plugin and classifier stages for every target: `features` as one batch, the
    /// classifier per target, `propose` as one batch of the targets it applies to. Each
    /// target's `features` and `propose` spans cover the stage's batch calls.
    fn stage(&self, observed: Vec<Observed>) -> Vec<Staged> {
        let plugin = &self.lp.plugin;
        let spans: Vec<tracing::Span> = observed
            .iter()
            .map(|o| self.target_span(&o.target))
            .collect();
        let features = {
            let inputs: Vec<FeaturesInput<'_>> = observed
                .iter()
                .map(|o| FeaturesInput {
                    target: &o.target,
                    series: &o.series,
                })
                .collect();
            let _stage: Vec<tracing::Span> = spans
                .iter()
                .map(|span| info_span!(parent: span, "features", setpoint.batch_targets = inputs.len()))
                .collect();
            plugin.features_batch(&self.window, &inputs)
        };
        let mut staged: Vec<Staged> = observed
            .into_iter()
            .zip(spans)
            .zip(features)
            .map(|((o, span), features)| {
                let classification = features.as_ref().ok().map(|features| {
                    let _s = info_span!(parent: &span, "classify").entered();
                    let mut classification = self.classifier.classifier.classify(features);
                    if let Some(note) = &self.classifier.fallback {
                        let rule = &mut classification.explanation.rule;
                        if !rule.is_empty() {
                            rule.push_str("; ");
                        }
                        rule.push_str(note);
                    }
                    classification
                });
                Staged {
                    target: o.target,
                    observe_issues: o.issues,
                    span,
                    features,
                    classification,
                    proposals: None,
                }
            })
            .collect();
        let asked: Vec<usize> = staged
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                s.classification.is_some()
                    && s.target.resources.cpu_millicores != 0
                    && s.target.resources.memory_bytes != 0
            })
            .map(|(i, _)| i)
            .collect();
        let proposals = {
            let inputs: Vec<ProposeInput<'_>> = asked
                .iter()
                .filter_map(|&i| {
                    let s = &staged[i];
                    Some(ProposeInput {
                        target: &s.target,
                        classification: s.classification.as_ref()?,
                        features: s.features.as_ref().ok()?,
                    })
                })
                .collect();
            let _stage: Vec<tracing::Span> = asked
                .iter()
                .map(|&i| {
                    info_span!(parent: &staged[i].span, "propose", setpoint.batch_targets = inputs.len())
                })
                .collect();
            plugin.propose_batch(&inputs, &self.lp.bounds)
        };
        for (i, proposals) in asked.into_iter().zip(proposals) {
            staged[i].proposals = Some(proposals);
        }
        staged
    }

    fn process(
        &self,
        engine: &mut PolicyEngine,
        staged: Staged,
        history: Option<TargetHistory>,
        review: Option<ReviewFeedback>,
    ) -> (JournalEntry, TargetHistory, TargetRow) {
        let Staged {
            target,
            observe_issues,
            span,
            features,
            classification,
            proposals,
        } = staged;
        let _entered = span.enter();
        let mut history = history.unwrap_or_else(|| TargetHistory::new(self.now));
        let mut entry = JournalEntry {
            loop_name: self.lp.config.name.to_string(),
            cycle: self.cycle,
            at: self.now,
            target: target.clone(),
            plugin: self.plugin_label.clone(),
            features: FeatureVector::default(),
            classification: None,
            stable_cycles: history.stable_cycles,
            proposals: Vec::new(),
            policy_input: None,
            policy_output: None,
            decision: None,
            plan: Vec::new(),
            executed: false,
            error: None,
            observe_issues: observe_issues.clone(),
            intent: None,
        };
        let mut row = TargetRow {
            target: target.id.clone(),
            technology: target.technology.clone(),
            class: None,
            confidence: None,
            class_reason: None,
            stable_cycles: history.stable_cycles,
            verdict: None,
            change: None,
            reason: None,
            outcome: None,
            error: None,
            observe_issues,
            error_stage: None,
            sandbox_trap: false,
            policy_seconds: None,
            policy_error: false,
        };
        let fail = |entry: &mut JournalEntry, row: &mut TargetRow, stage, message: String| {
            tracing::warn!(stage = ?stage, error = %message, "target failed");
            span.record("setpoint.error", message.as_str());
            row.error = Some(message.clone());
            row.error_stage = Some(stage);
            entry.error = Some(StageError { stage, message });
        };

        let (features, classification) = match (features, classification) {
            (Ok(features), Some(classification)) => (features, classification),
            (Err(error), _) => {
                row.sandbox_trap = is_sandbox_trap(&error);
                fail(&mut entry, &mut row, StageName::Features, error.to_string());
                return (entry, history, row);
            }
            (Ok(_), None) => {
                fail(
                    &mut entry,
                    &mut row,
                    StageName::Features,
                    "no classification for computed features".to_string(),
                );
                return (entry, history, row);
            }
        };
        entry.features = features.clone();

        history.record_class(self.now, classification.class);
        entry.classification = Some(classification.clone());
        entry.stable_cycles = history.stable_cycles;
        span.record("setpoint.class", classification.class.as_str());
        span.record("setpoint.confidence", classification.confidence);
        span.record("setpoint.model", classification.model.as_str());
        span.record(
            "setpoint.model_version",
            classification.model_version.as_str(),
        );
        row.class = Some(classification.class);
        row.confidence = Some(classification.confidence);
        row.class_reason = Some(classification.explanation.code.clone());
        row.stable_cycles = history.stable_cycles;

        if target.resources.cpu_millicores == 0 || target.resources.memory_bytes == 0 {
            fail(
                &mut entry,
                &mut row,
                StageName::Propose,
                format!(
                    "current resources of target {:?} are unknown; declare them under loops[].targets in the config, or give its discovery series {CPU_LABEL} and {MEMORY_LABEL} labels",
                    target.id
                ),
            );
            return (entry, history, row);
        }
        let proposals = match proposals {
            Some(Ok(proposals)) => proposals,
            Some(Err(error)) => {
                row.sandbox_trap = is_sandbox_trap(&error);
                fail(&mut entry, &mut row, StageName::Propose, error.to_string());
                return (entry, history, row);
            }
            None => {
                fail(
                    &mut entry,
                    &mut row,
                    StageName::Propose,
                    format!(
                        "the plugin was not asked to propose for target {:?}",
                        target.id
                    ),
                );
                return (entry, history, row);
            }
        };
        entry.proposals = proposals.clone();

        let mut input = self.policy_input(&target, &features, &classification, &history, proposals);
        input.review = review;
        entry.policy_input = serde_json::to_value(&input).ok();
        let policy_started = std::time::Instant::now();
        let evaluation = {
            let _s = info_span!("decide").entered();
            engine.decide(&input)
        };
        row.policy_seconds = Some(policy_started.elapsed().as_secs_f64());
        row.policy_error = evaluation.error.is_some();
        if let Some(error) = &evaluation.error {
            tracing::warn!(%error, "policy failed; holding");
        }
        entry.policy_output = evaluation.output.clone();
        let decision = evaluation.decision;
        row.verdict = Some(decision.verdict);
        row.reason = decision.reasons.first().cloned();
        row.change =
            setpoint_act::chosen_proposal(&decision, &input.proposals).map(|p| p.summary.clone());
        span.record("setpoint.verdict", decision.verdict.as_str());
        let codes: Vec<&str> = decision.reasons.iter().map(|r| r.code.as_str()).collect();
        span.record("setpoint.reason_codes", codes.join(","));
        if let Some(change) = &row.change {
            span.record("setpoint.proposal", change.as_str());
        }
        entry.decision = Some(decision.clone());

        let outcome = {
            let _s = info_span!("act").entered();
            setpoint_act::act(
                &target,
                &decision,
                &input.proposals,
                self.lp.config.mode,
                Some(&self.lp.actuators),
            )
        };
        match outcome {
            Ok(outcome) => {
                entry.plan = outcome.operations().to_vec();
                entry.executed = outcome.executed();
                span.record("setpoint.executed", entry.executed);
                if let (ActOutcome::Executed { .. }, Some(p)) = (
                    &outcome,
                    setpoint_act::chosen_proposal(&decision, &input.proposals),
                ) {
                    history.last_action = Some(setpoint_core::ActionRecord {
                        at: self.now,
                        action: p.action,
                        summary: p.summary.clone(),
                    });
                }
                row.outcome = Some(outcome);
            }
            Err(error) => fail(&mut entry, &mut row, StageName::Act, error.to_string()),
        }
        (entry, history, row)
    }

    fn policy_input(
        &self,
        target: &Target,
        features: &FeatureVector,
        classification: &Classification,
        history: &TargetHistory,
        proposals: Vec<Proposal>,
    ) -> PolicyInput {
        let features: BTreeMap<String, PolicyFeature> = features
            .features
            .iter()
            .map(|f| {
                (
                    f.name.clone(),
                    PolicyFeature {
                        value: f.value,
                        coverage: f.coverage,
                    },
                )
            })
            .collect();
        let previous = history.classes.len().saturating_sub(1);
        let view = HistoryView {
            first_managed_at: history.first_managed_at,
            managed_days: (self.now - history.first_managed_at).num_days(),
            stable_cycles: history.stable_cycles,
            classes: history.classes[..previous].to_vec(),
            last_action: history.last_action.clone(),
            days_since_last_action: history
                .last_action
                .as_ref()
                .map(|a| (self.now - a.at).num_days()),
        };
        PolicyInput {
            target: target.clone(),
            features,
            classification: classification.clone(),
            history: view,
            proposals,
            now: self.now,
            now_ns: self.now.timestamp_nanos_opt().unwrap_or(i64::MAX),
            mode: self.lp.config.mode,
            loop_info: LoopInfo {
                name: self.lp.config.name.to_string(),
                plugin: self.plugin_label.clone(),
                cycle: self.cycle,
            },
            bounds: self.lp.bounds,
            review: None,
        }
    }

    /// The review to queue for a `review` verdict.
    fn review_item(&self, entry: &JournalEntry) -> Option<ReviewItem> {
        let decision = entry.decision.as_ref()?;
        if decision.verdict != Verdict::Review {
            return None;
        }
        let proposal = setpoint_act::chosen_proposal(decision, &entry.proposals)?;
        Some(ReviewItem {
            id: 0,
            loop_name: entry.loop_name.clone(),
            target: entry.target.id.clone(),
            cycle: entry.cycle,
            created_at: self.now,
            expires_at: self.now + REVIEW_TTL,
            action: proposal.action,
            proposal: proposal.clone(),
            classification: entry.classification.clone()?,
            reasons: decision.reasons.clone(),
            status: ReviewStatus::Pending,
            decided_by: None,
            decided_at: None,
            comment: None,
        })
    }

    /// The intent to journal before executing, for an `act` verdict in enforce mode (the act
    /// stage answered `ready`); it carries the approval it uses, if any.
    fn intent(&self, entry: &JournalEntry, review: Option<&ReviewFeedback>) -> Option<Intent> {
        if entry.error.is_some() {
            return None;
        }
        let decision = entry.decision.as_ref()?;
        if decision.verdict != Verdict::Act || self.lp.config.mode != setpoint_core::Mode::Enforce {
            return None;
        }
        if self.lp.actuators.is_empty() {
            return None;
        }
        let proposal = setpoint_act::chosen_proposal(decision, &entry.proposals)?;
        let scope = format!("{}/{}", entry.loop_name, entry.cycle);
        Some(Intent {
            key: setpoint_act::idempotency_key(&scope, &entry.target, &proposal.operations),
            loop_name: entry.loop_name.clone(),
            cycle: entry.cycle,
            target: entry.target.clone(),
            decision: decision.clone(),
            proposal: proposal.clone(),
            operations: proposal.operations.clone(),
            review: review
                .filter(|r| r.status == ReviewStatus::Approved && r.action == proposal.action)
                .map(|r| r.id),
            created_at: self.now,
            status: IntentStatus::Pending,
            attempts: 0,
            results: Vec::new(),
            error: None,
            finished_at: None,
            reconciled: false,
        })
    }
}

/// How long a review waits for a decision, and an approval for a cycle to use it: a week, one
/// weekly cycle.
const REVIEW_TTL: Duration = Duration::days(7);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn declared_targets_fold_aliases_and_supply_resources() {
        use crate::config::{ResourcesConfig, StaticTarget};
        let discovered = vec![
            Target {
                id: "127.0.0.1:9187".into(),
                technology: "postgres".into(),
                labels: BTreeMap::new(),
                resources: setpoint_core::Resources {
                    cpu_millicores: 0,
                    memory_bytes: 0,
                    replicas: 1,
                    parameters: BTreeMap::new(),
                },
            },
            Target {
                id: "pg-found".into(),
                technology: "postgres".into(),
                labels: BTreeMap::new(),
                resources: setpoint_core::Resources {
                    cpu_millicores: 0,
                    memory_bytes: 0,
                    replicas: 1,
                    parameters: BTreeMap::new(),
                },
            },
        ];
        let declared = vec![
            StaticTarget {
                id: "pg-main".into(),
                aliases: vec!["127.0.0.1:9187".into(), "127.0.0.1:9100".into()],
                resources: Some(ResourcesConfig {
                    cpu: 8.0,
                    memory_gib: 32.0,
                    parameters: BTreeMap::new(),
                }),
                labels: BTreeMap::new(),
            },
            StaticTarget {
                id: "pg-declared-only".into(),
                aliases: vec![],
                resources: None,
                labels: BTreeMap::new(),
            },
        ];
        let (targets, names, problems) = resolve_targets(discovered, &declared, "postgres");
        assert!(problems.is_empty());
        let ids: Vec<&str> = targets.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, vec!["pg-declared-only", "pg-found", "pg-main"]);
        assert_eq!(targets[2].resources.cpu_millicores, 8000);
        assert_eq!(names["127.0.0.1:9100"], "pg-main");
        assert_eq!(targets[0].resources.cpu_millicores, 0);
    }

    #[test]
    fn sizes_come_from_discovery_labels_unless_declared() {
        let labelled = |id: &str, labels: &[(&str, &str)]| Target {
            id: id.into(),
            technology: "postgres".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            resources: setpoint_core::Resources {
                cpu_millicores: 0,
                memory_bytes: 0,
                replicas: 1,
                parameters: BTreeMap::new(),
            },
        };
        let discovered = vec![
            labelled(
                "pg-a",
                &[
                    ("setpoint_cpu", "4"),
                    ("setpoint_memory_gib", "16"),
                    ("setpoint_param_shared_buffers", "4GB"),
                ],
            ),
            labelled(
                "pg-b",
                &[("setpoint_cpu", "four"), ("setpoint_memory_gib", "16")],
            ),
            labelled("pg-c", &[("setpoint_cpu", "2")]),
            labelled("pg-d", &[("setpoint_cpu", "x")]),
        ];
        use crate::config::{ResourcesConfig, StaticTarget};
        let declared = vec![StaticTarget {
            id: "pg-d".into(),
            aliases: vec![],
            resources: Some(ResourcesConfig {
                cpu: 8.0,
                memory_gib: 32.0,
                parameters: BTreeMap::new(),
            }),
            labels: BTreeMap::new(),
        }];
        let (targets, _, problems) = resolve_targets(discovered, &declared, "postgres");
        assert_eq!(targets[0].resources.cpu_millicores, 4000);
        assert_eq!(targets[0].resources.memory_bytes, 16 << 30);
        assert_eq!(targets[0].resources.parameters["shared_buffers"], "4GB");
        assert_eq!(targets[1].resources.cpu_millicores, 0);
        assert!(
            problems["pg-b"].contains("setpoint_cpu=\"four\""),
            "{problems:?}"
        );
        assert!(
            problems["pg-c"].contains("setpoint_memory_gib is missing"),
            "{problems:?}"
        );
        assert_eq!(targets[3].resources.cpu_millicores, 8000, "declared wins");
        assert!(
            !problems.contains_key("pg-d"),
            "declared sizes make the labels moot"
        );
    }

    #[test]
    fn window_is_whole_steps_and_one_extra_week() {
        let now = DateTime::parse_from_rfc3339("2026-11-23T06:02:31Z")
            .unwrap()
            .with_timezone(&Utc);
        let window = window_for(now, 4, 300);
        assert_eq!(window.end.to_rfc3339(), "2026-11-23T06:00:00+00:00");
        assert_eq!((window.end - window.start).num_days(), 35);
    }
}
