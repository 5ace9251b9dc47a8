//! `setpoint train`, `setpoint evaluate` and `setpoint models`: learning a loop's classifier
//! from outcomes, measuring it, and choosing which version a loop uses.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand, ValueEnum};
use comfy_table::Table;
use indicatif::{ProgressBar, ProgressStyle};
use setpoint_core::SharedClock;
use setpoint_learn::{
    CLASSES, Calibration, ClassMetrics, EventKind, HeldOut, OutcomeReport, ProbabilityQuality,
    Reliability, Stage, TrainedModel,
};
use setpoint_runtime::training::{self, LabelSource, TrainOptions};
use setpoint_runtime::{Config, LoopRuntime, Runtime};
use setpoint_state::{ModelRecord, Store};

/// Output format of the model commands.
#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum Format {
    /// For people.
    #[default]
    Table,
    /// For programs.
    Json,
}

/// Where labels come from.
#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum Labels {
    /// What followed each window (degradations → scale_up, room to halve → scale_down).
    #[default]
    Outcomes,
    /// The bootstrap heuristics' verdicts (phase 1).
    Bootstrap,
}

/// Learning from the loop's own metric source rather than the simulator.
#[derive(Debug, Clone, Args)]
pub struct SourceArgs {
    /// Learn from the loop's configured metric source (Prometheus, VictoriaMetrics): read
    /// --history-weeks weeks ending now (see --now), summarised per week in the source, and
    /// label each 4-week window from what followed: degradations seen in the history's peaks
    /// (CPU or disk at ≥ 90 % for a tenth of a week, memory's busiest hour at ≥ 95 %, connections at
    /// ≥ 95 % of the limit), --incidents and --alerts.
    #[arg(long)]
    from_source: bool,
    /// Weeks of history to read from the source (at least 12).
    #[arg(long, value_name = "N", default_value_t = training::DEFAULT_SOURCE_WEEKS)]
    history_weeks: u32,
    /// Firing alerts that count as degradations, as label matchers on
    /// ALERTS{alertstate="firing"}, e.g. 'severity="critical",alertname=~"PG.*"' (with
    /// --from-source).
    #[arg(long, value_name = "MATCHERS")]
    alerts: Option<String>,
    /// The degradation a firing alert stands for: latency_spike, connection_timeout or
    /// oom_kill.
    #[arg(long, value_name = "KIND", default_value = "latency_spike", value_parser = parse_event_kind)]
    alert_kind: EventKind,
}

fn parse_event_kind(s: &str) -> std::result::Result<EventKind, String> {
    EventKind::parse(s).ok_or_else(|| {
        format!("unknown kind {s:?}; expected latency_spike, connection_timeout or oom_kill")
    })
}

impl SourceArgs {
    fn options(
        &self,
        incidents: Option<&PathBuf>,
        end: DateTime<Utc>,
    ) -> training::SourceHistoryOptions {
        training::SourceHistoryOptions {
            weeks: self.history_weeks,
            end,
            rules: setpoint_learn::observed::DegradationRules::default(),
            incidents: incidents.cloned(),
            alerts: self.alerts.clone(),
            alert_kind: self.alert_kind,
        }
    }
}

/// Reads a loop's history from its source, with a spinner, and says what it found on stderr.
fn read_source_history(
    lp: &LoopRuntime,
    options: &training::SourceHistoryOptions,
) -> Result<training::SourceHistory> {
    let loop_name = lp.config().name.to_string();
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{prefix} {spinner} {msg} {elapsed}") {
        bar.set_style(style);
    }
    bar.set_prefix(format!("train {loop_name}"));
    bar.set_message(format!(
        "reading {} weeks from the source (one query per metric and statistic)",
        options.weeks
    ));
    bar.enable_steady_tick(Duration::from_millis(200));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the source client")?;
    let history = runtime.block_on(training::read_history(lp, options));
    bar.finish_and_clear();
    let history = history?;
    eprint!("{}", history_summary(&loop_name, &history));
    Ok(history)
}

/// What a source history holds, for people.
fn history_summary(loop_name: &str, h: &training::SourceHistory) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "loop {loop_name}: history {} .. {} ({} weeks, {} targets, {} queries); degradations: {} detected in the peaks, {} from incidents, {} from alerts",
        h.start.to_rfc3339(),
        h.end.to_rfc3339(),
        h.history.weeks,
        h.history.targets.len(),
        h.queries,
        h.label_sources.detected,
        h.label_sources.incidents,
        h.label_sources.alerts
    );
    if !h.targets_without_data.is_empty() {
        let shown: Vec<&str> = h
            .targets_without_data
            .iter()
            .take(20)
            .map(String::as_str)
            .collect();
        let _ = writeln!(
            out,
            "  {} target(s) with no series, not learned from: {}{}",
            h.targets_without_data.len(),
            shown.join(", "),
            if h.targets_without_data.len() > shown.len() {
                ", …"
            } else {
                ""
            }
        );
    }
    if !h.unmatched_series.is_empty() {
        let labels: Vec<&str> = h.unmatched_series.keys().map(String::as_str).collect();
        let _ = writeln!(
            out,
            "  {} series label value(s) named no target: {}",
            labels.len(),
            labels.join(", ")
        );
    }
    if h.unmatched_events > 0 {
        let _ = writeln!(
            out,
            "  {} incident(s) or alert(s) named no target of the history and were ignored",
            h.unmatched_events
        );
    }
    for d in h.degraded.iter().take(10) {
        let _ = writeln!(out, "  degraded: {d}");
    }
    if h.degraded.len() > 10 {
        let _ = writeln!(out, "  … and {} more", h.degraded.len() - 10);
    }
    out
}

/// `setpoint train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// The loop to train for (default: every configured loop).
    #[arg(long = "loop", value_name = "NAME")]
    loop_name: Option<String>,
    /// Seed of the simulated history, the folds and the boosters: the same seed and data give a
    /// byte-identical model.
    #[arg(long, default_value_t = TrainOptions::default().seed)]
    seed: u64,
    /// Weeks of simulated history per target.
    #[arg(long, default_value_t = TrainOptions::default().weeks)]
    weeks: u32,
    /// Simulated targets started from each of the plugin's scenarios.
    #[arg(long, default_value_t = TrainOptions::default().targets_per_scenario)]
    targets_per_scenario: u32,
    /// Simulated targets on fresh trajectories.
    #[arg(long, default_value_t = TrainOptions::default().fresh_targets)]
    fresh_targets: u32,
    /// Label source.
    #[arg(long, value_enum, default_value_t)]
    labels: Labels,
    /// Weeks after a window in which a degradation makes it scale_up.
    #[arg(long, default_value_t = TrainOptions::default().horizon_weeks)]
    horizon: u32,
    /// A file of real incidents (CSV or JSON lines: target, week or time, kind
    /// latency_spike|connection_timeout|oom_kill) added to the simulator's outcomes.
    #[arg(long, value_name = "FILE")]
    incidents: Option<PathBuf>,
    /// Cross-validation folds (0: none).
    #[arg(long, default_value_t = TrainOptions::default().folds)]
    folds: u32,
    /// Promote the new version right away (default: register only).
    #[arg(long)]
    promote: bool,
    /// Do not log to MLflow even when the config has an `mlflow:` section.
    #[arg(long)]
    no_mlflow: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    output: Format,
}

impl TrainArgs {
    fn options(&self) -> TrainOptions {
        TrainOptions {
            seed: self.seed,
            weeks: self.weeks,
            targets_per_scenario: self.targets_per_scenario,
            fresh_targets: self.fresh_targets,
            labels: match self.labels {
                Labels::Outcomes => LabelSource::Outcomes,
                Labels::Bootstrap => LabelSource::Bootstrap,
            },
            horizon_weeks: self.horizon,
            incidents: self.incidents.clone(),
            folds: self.folds,
            feedback: Vec::new(),
        }
    }
}

/// `setpoint evaluate`.
#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// The loop whose model to evaluate (default: every loop with a model).
    #[arg(long = "loop", value_name = "NAME")]
    loop_name: Option<String>,
    /// The model version (a hash prefix of at least 6 characters); default: the promoted one.
    #[arg(long, value_name = "VERSION")]
    model: Option<String>,
    /// Seed of the held-out simulated history; must differ from the model's training seed.
    #[arg(long, default_value_t = 1000)]
    seed: u64,
    #[command(flatten)]
    source: SourceArgs,
    /// With --from-source: train on the windows whose outcomes were known by the end of this
    /// week of the history (0-based), score the windows after it (default: two scored windows
    /// per target).
    #[arg(long, value_name = "WEEK")]
    split_week: Option<u32>,
    /// With --from-source: a file of incidents (CSV or JSON lines: target, week or RFC 3339
    /// time, kind) added to the degradations seen in the history.
    #[arg(long, value_name = "FILE")]
    incidents: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    output: Format,
}

/// `setpoint models …`.
#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// List the registered model versions, the promoted one marked.
    List {
        /// Only this loop.
        #[arg(long = "loop", value_name = "NAME")]
        loop_name: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: Format,
    },
    /// Show one version: schema, training data, parameters, metrics, surrogate rules, and the
    /// loop's promotion trail.
    Show {
        /// The version (a hash prefix of at least 6 characters).
        version: String,
        /// The loop (default: the one loop that has this version).
        #[arg(long = "loop", value_name = "NAME")]
        loop_name: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: Format,
    },
    /// Make a version the one the loop classifies with (from its next cycle on).
    Promote {
        /// The version (a hash prefix of at least 6 characters).
        version: String,
        /// The loop.
        #[arg(long = "loop", value_name = "NAME")]
        loop_name: String,
        /// Why, for the audit trail.
        #[arg(long)]
        reason: Option<String>,
        /// Who, for the audit trail (default: $USER).
        #[arg(long, env = "USER", default_value = "unknown")]
        by: String,
    },
    /// Restore the version promoted before the current one.
    Rollback {
        /// The loop.
        #[arg(long = "loop", value_name = "NAME")]
        loop_name: String,
        /// Why, for the audit trail.
        #[arg(long)]
        reason: Option<String>,
        /// Who, for the audit trail (default: $USER).
        #[arg(long, env = "USER", default_value = "unknown")]
        by: String,
    },
}

/// Commands that only read the registry wait this long for a running cycle to let go of it.
const STORE_WAIT: Duration = Duration::from_secs(30);

fn chosen_loops<'a>(runtime: &'a Runtime, only: Option<&str>) -> Result<Vec<&'a LoopRuntime>> {
    let loops: Vec<&LoopRuntime> = runtime
        .loops()
        .iter()
        .filter(|lp| only.is_none_or(|name| lp.config().name.as_str() == name))
        .collect();
    if loops.is_empty() {
        let names: Vec<&str> = runtime
            .loops()
            .iter()
            .map(|lp| lp.config().name.as_str())
            .collect();
        bail!(
            "no loop named {:?} in the configuration (loops: {})",
            only.unwrap_or_default(),
            names.join(", ")
        );
    }
    Ok(loops)
}

fn progress_bar(loop_name: &str) -> ProgressBar {
    let bar = ProgressBar::new(1);
    if let Ok(style) =
        ProgressStyle::with_template("{prefix} {msg:<18} [{bar:30}] {pos}/{len} {elapsed}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(format!("train {loop_name}"));
    bar
}

/// A training progress callback that drives `bar`.
fn show_progress(bar: &ProgressBar) -> impl FnMut(Stage, usize, usize) + '_ {
    |stage, done, total| {
        bar.set_message(stage.as_str());
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    }
}

/// Trains, reports, logs to MLflow when configured, and registers.
pub fn train(config: &Config, args: &TrainArgs, clock: &SharedClock) -> Result<ExitCode> {
    let runtime = Runtime::new(config.clone())?;
    let loops = chosen_loops(&runtime, args.loop_name.as_deref())?;
    let options = args.options();
    let mut failed = false;
    let mut reports = Vec::new();
    for lp in loops {
        let loop_name = lp.config().name.to_string();
        // Reviewers' approvals and rejections so far are labels too.
        let mut options = options.clone();
        options.feedback = {
            let store = Store::open_waiting(&config.state_dir, STORE_WAIT)?;
            training::feedback(&store, &loop_name)?
        };
        let history = if args.source.from_source {
            Some(read_source_history(
                lp,
                &args.source.options(args.incidents.as_ref(), clock.now()),
            )?)
        } else {
            None
        };
        let bar = progress_bar(&loop_name);
        let mut progress = show_progress(&bar);
        let trained = match &history {
            Some(history) => {
                training::train_on_source(lp, history, &options, clock.now(), &mut progress)
            }
            None => training::train(lp, &options, clock.now(), &mut progress),
        };
        bar.finish_and_clear();
        let mut trained = trained?;
        let mut mlflow_error = None;
        if let (Some(mlflow), false) = (&config.mlflow, args.no_mlflow) {
            match log_to_mlflow(
                mlflow,
                &loop_name,
                &trained.model,
                &trained.record,
                clock.now(),
            ) {
                Ok(tags) => trained.record.tags.extend(tags),
                Err(error) => mlflow_error = Some(format!("{error:#}")),
            }
        }
        // Registered even when MLflow failed: the model is not lost, and the error is said.
        let store = Store::open_waiting(&config.state_dir, STORE_WAIT)?;
        let added = store.register_model(&trained.record)?;
        let promoted = if args.promote {
            Some(store.promote_model(
                &loop_name,
                &trained.record.version,
                &std::env::var("USER").unwrap_or_else(|_| "unknown".to_string()),
                Some("setpoint train --promote"),
                clock.now(),
            )?)
        } else {
            None
        };
        drop(store);
        if let Some(error) = &mlflow_error {
            failed = true;
            eprintln!("error: loop {loop_name}: MLflow: {error} (the model is registered locally)");
        }
        match args.output {
            Format::Table => print!(
                "{}",
                train_report(
                    &loop_name,
                    &trained.model,
                    &trained.record,
                    added,
                    promoted.is_some(),
                    trained.unmatched_incidents
                )
            ),
            Format::Json => reports.push(serde_json::json!({
                "loop": loop_name,
                "version": trained.record.version,
                "registered": added,
                "promoted": promoted.is_some(),
                "parameters": trained.record.parameters,
                "metrics": trained.model.metrics(),
                "calibration": trained.model.calibration(),
                "importance": trained.model.importance(),
                "surrogate_rules": trained.model.surrogate_rules().iter().map(ToString::to_string).collect::<Vec<_>>(),
                "tags": trained.record.tags,
                "unmatched_incidents": trained.unmatched_incidents,
                "mlflow_error": mlflow_error,
            })),
        }
    }
    if matches!(args.output, Format::Json) {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn percent(value: f64) -> String {
    format!("{:.1} %", value * 100.0)
}

/// Brier score, calibration error and the rows at the policy's confidence threshold, raw and
/// calibrated, then the reliability table over the bins that hold any row.
fn probability_report(quality: &ProbabilityQuality, calibrated_label: &str) -> String {
    let mut out = String::new();
    let mut summary = Table::new();
    summary.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    let threshold = quality.raw.at_threshold.threshold;
    summary.set_header(vec![
        "probabilities".to_string(),
        "Brier".to_string(),
        "calibration error".to_string(),
        format!("windows at ≥ {threshold}"),
        format!("right at ≥ {threshold}"),
    ]);
    let mut sets: Vec<(&str, &Reliability)> = vec![("raw", &quality.raw)];
    if let Some(c) = &quality.calibrated {
        sets.push((calibrated_label, c));
    }
    for (name, r) in &sets {
        summary.add_row(vec![
            name.to_string(),
            format!("{:.4}", r.brier),
            format!("{:.4}", r.ece),
            format!(
                "{} ({})",
                r.at_threshold.rows,
                percent(r.at_threshold.share)
            ),
            percent(r.at_threshold.accuracy),
        ]);
    }
    let _ = writeln!(out, "{summary}");
    let (name, said) = sets.last().copied().unwrap_or(("raw", &quality.raw));
    let _ = writeln!(
        out,
        "  {threshold} means {} ({name} confidence of {threshold} or more, {} of {} windows)",
        percent(said.at_threshold.accuracy),
        said.at_threshold.rows,
        quality.rows
    );
    let mut bins = Table::new();
    bins.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    let mut header = vec!["confidence".to_string()];
    for (name, _) in &sets {
        header.extend([
            format!("{name} windows"),
            "mean confidence".to_string(),
            "right".to_string(),
        ]);
    }
    bins.set_header(header);
    for (k, bin) in quality.raw.bins.iter().enumerate() {
        let rows: Vec<_> = sets.iter().filter_map(|(_, r)| r.bins.get(k)).collect();
        if rows.iter().all(|b| b.rows == 0) {
            continue;
        }
        let mut row = vec![format!("{:.1}–{:.1}", bin.lower, bin.upper)];
        for b in rows {
            if b.rows == 0 {
                row.extend(["0".to_string(), "—".to_string(), "—".to_string()]);
            } else {
                row.extend([
                    b.rows.to_string(),
                    format!("{:.3}", b.mean_confidence),
                    percent(b.accuracy),
                ]);
            }
        }
        bins.add_row(row);
    }
    let _ = writeln!(out, "{bins}");
    out
}

/// The calibration of a trained model: what it was fitted on, each class's method and why, and
/// how raw and calibrated probabilities score on the held-out windows.
fn calibration_report(calibration: Option<&Calibration>) -> String {
    let mut out = String::new();
    let Some(c) = calibration else {
        let _ = writeln!(
            out,
            "
uncalibrated (a model written before calibration): its probabilities are the boosters' raw ones"
        );
        return out;
    };
    if c.rows == 0 {
        let _ = writeln!(
            out,
            "
uncalibrated: {}",
            c.source
        );
        return out;
    }
    let _ = writeln!(
        out,
        "
calibration: {}, fitted on {} ({} windows)",
        c.methods(),
        c.source,
        c.rows
    );
    for class in &c.classes {
        if let Some(why) = &class.fallback {
            let _ = writeln!(out, "  {}: {why}", class.class);
        }
    }
    let _ = writeln!(
        out,
        "on those windows (calibrated: each group of targets mapped by a calibration fitted on the others):"
    );
    out.push_str(&probability_report(&c.held_out, "calibrated"));
    out
}

fn confusion_table(metrics: &ClassMetrics) -> String {
    let mut table = Table::new();
    table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    let mut header = vec!["label \\ predicted".to_string()];
    header.extend(CLASSES.iter().map(ToString::to_string));
    header.push("recall".to_string());
    table.set_header(header);
    for (k, class) in CLASSES.iter().enumerate() {
        let mut row = vec![class.to_string()];
        row.extend(metrics.confusion[k].iter().map(ToString::to_string));
        row.push(percent(metrics.recall[k]));
        table.add_row(row);
    }
    table.to_string()
}

fn train_report(
    loop_name: &str,
    model: &TrainedModel,
    record: &ModelRecord,
    added: bool,
    promoted: bool,
    unmatched_incidents: usize,
) -> String {
    let mut out = String::new();
    let info = model.training();
    let _ = writeln!(
        out,
        "loop {loop_name}: model {} ({} labels, {} windows: scale_down {} · remain {} · scale_up {})",
        model.short_version(),
        info.labels,
        info.rows,
        info.class_counts[0],
        info.class_counts[1],
        info.class_counts[2]
    );
    if let Some(n) = record
        .parameters
        .get("feedback_labels")
        .filter(|n| n.as_str() != "0")
    {
        let _ = writeln!(
            out,
            "  {n} label(s) from reviewers' approvals and rejections"
        );
    }
    let _ = writeln!(
        out,
        "  schema {} ({} features), data {}",
        record.schema_version,
        record.features.len(),
        &record.data_fingerprint[..record.data_fingerprint.len().min(12)]
    );
    if unmatched_incidents > 0 {
        let _ = writeln!(
            out,
            "  {unmatched_incidents} incident(s) named no target of the history and were ignored"
        );
    }
    match model.metrics() {
        Some(cv) => {
            let _ = writeln!(
                out,
                "\n{}-fold cross-validation (folds grouped by target):",
                cv.folds
            );
            let _ = writeln!(
                out,
                "  accuracy {} · macro-F1 {} (folds {}) · bootstrap heuristics macro-F1 {}",
                percent(cv.model.accuracy),
                percent(cv.model.macro_f1),
                cv.fold_macro_f1
                    .iter()
                    .map(|f| format!("{f:.3}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                percent(cv.bootstrap.macro_f1)
            );
            let _ = writeln!(out, "{}", confusion_table(&cv.model));
        }
        None => {
            let _ = writeln!(out, "\n(no cross-validation: --folds 0)");
        }
    }
    out.push_str(&calibration_report(model.calibration()));
    let _ = writeln!(out, "\nfeature importance (share of split gain):");
    for f in model.importance().iter().take(10) {
        let _ = writeln!(out, "  {:<18} {}", f.feature, percent(f.gain));
    }
    let _ = writeln!(
        out,
        "\nsurrogate rules (a shallow tree fitted to the model):"
    );
    for rule in model.surrogate_rules() {
        let _ = writeln!(out, "  {rule}");
    }
    for (key, value) in &record.tags {
        let _ = writeln!(out, "  {key}: {value}");
    }
    let _ = writeln!(
        out,
        "\n{} version {}{}",
        if added {
            "registered"
        } else {
            "already registered:"
        },
        record.version,
        if promoted {
            " and promoted".to_string()
        } else {
            format!(
                "\npromote it with: setpoint models promote {} --loop {loop_name}",
                model.short_version()
            )
        }
    );
    out
}

/// Logs the training run and registers the model version in MLflow; returns the tags that
/// point at them.
fn log_to_mlflow(
    config: &setpoint_mlflow::MlflowConfig,
    loop_name: &str,
    model: &TrainedModel,
    record: &ModelRecord,
    now: DateTime<Utc>,
) -> Result<Vec<(String, String)>> {
    let mut run = setpoint_mlflow::TrainingRun {
        run_name: Some(format!("{loop_name}-{}", model.short_version())),
        params: record.parameters.clone(),
        model_path: "model/model.json".to_string(),
        model_hash: record.version.clone(),
        tags: [
            ("setpoint.loop".to_string(), loop_name.to_string()),
            ("setpoint.schema".to_string(), record.schema_version.clone()),
            (
                "setpoint.data_fingerprint".to_string(),
                record.data_fingerprint.clone(),
            ),
        ]
        .into_iter()
        .collect(),
        ..Default::default()
    };
    for (key, value) in &record.metrics {
        run.metric(key, *value);
    }
    if let Some(c) = model.calibration().filter(|c| c.rows > 0) {
        run.metric("held_out_brier_raw", c.held_out.raw.brier);
        run.metric("held_out_ece_raw", c.held_out.raw.ece);
        if let Some(calibrated) = &c.held_out.calibrated {
            run.metric("held_out_brier_calibrated", calibrated.brier);
            run.metric("held_out_ece_calibrated", calibrated.ece);
            run.metric(
                "held_out_accuracy_at_threshold_calibrated",
                calibrated.at_threshold.accuracy,
            );
        }
    }
    if let Some(cv) = model.metrics() {
        for (fold, f1) in cv.fold_macro_f1.iter().enumerate() {
            run.metrics.push(setpoint_mlflow::Metric {
                key: "cv_fold_macro_f1".to_string(),
                value: *f1,
                timestamp: now.timestamp_millis(),
                step: fold as i64,
            });
        }
    }
    let report = serde_json::json!({
        "metrics": model.metrics(),
        "calibration": model.calibration(),
        "importance": model.importance(),
        "surrogate_rules": model.surrogate_rules().iter().map(ToString::to_string).collect::<Vec<_>>(),
    });
    run.artifacts = vec![
        setpoint_mlflow::Artifact::new("model/model.json", model.to_json().as_bytes().to_vec()),
        setpoint_mlflow::Artifact::new("report/training.json", serde_json::to_vec_pretty(&report)?),
    ];
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the MLflow client")?;
    let logged = runtime.block_on(setpoint_mlflow::log_training(config, &run))?;
    Ok(vec![
        ("mlflow.run_id".to_string(), logged.run_id),
        ("mlflow.run_url".to_string(), logged.run_url),
        (
            "mlflow.model".to_string(),
            format!("{} v{}", logged.registered_model, logged.model_version),
        ),
        ("mlflow.alias".to_string(), logged.alias),
    ])
}

fn outcome_row(report: &OutcomeReport) -> Vec<String> {
    vec![
        report.name.clone(),
        format!("{:.3}", report.classes.macro_f1),
        percent(report.classes.accuracy),
        format!(
            "{}/{} ({:.1} weeks ahead)",
            report.flagged, report.degradations, report.mean_weeks_ahead
        ),
        format!("{}/{}", report.reclaimed, report.oversized),
        report.regretted.to_string(),
    ]
}

fn evaluate_report(loop_name: &str, version: &str, seed: u64, held_out: &HeldOut) -> String {
    let mut table = Table::new();
    table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    table.set_header(vec![
        "classifier",
        "macro-F1",
        "accuracy",
        "degradations flagged",
        "oversized reclaimed",
        "regretted scale-downs",
    ]);
    for report in [&held_out.model, &held_out.surrogate, &held_out.bootstrap] {
        table.add_row(outcome_row(report));
    }
    let probabilities = if held_out.probabilities.calibrated.is_some() {
        "model probabilities against the outcomes:".to_string()
    } else {
        "model probabilities against the outcomes (uncalibrated: a model written before calibration):"
            .to_string()
    };
    format!(
        "loop {loop_name}: model {} on a held-out history (seed {seed}, {} windows)\n{table}\n{}\n{probabilities}\n{}",
        &version[..version.len().min(12)],
        held_out.windows,
        confusion_table(&held_out.model.classes),
        probability_report(&held_out.probabilities, "calibrated")
    )
}

fn split_report(loop_name: &str, e: &training::SplitEvaluation) -> String {
    let mut out = String::new();
    let counts = |c: &[usize; 3]| {
        CLASSES
            .iter()
            .zip(c)
            .map(|(class, n)| format!("{class} {n}"))
            .collect::<Vec<_>>()
            .join(" · ")
    };
    let _ = writeln!(
        out,
        "loop {loop_name}: time split at the end of week {} ({}): trained on {} windows ({}), scored on {} ({})",
        e.split_week,
        e.split_at.to_rfc3339(),
        e.train_counts.iter().sum::<usize>(),
        counts(&e.train_counts),
        e.test_counts.iter().sum::<usize>(),
        counts(&e.test_counts)
    );
    let mut table = Table::new();
    table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    table.set_header(vec![
        "classifier",
        "macro-F1",
        "accuracy",
        "degradations flagged",
        "flagged ≥ 2 weeks ahead",
        "oversized reclaimed",
        "unsafe shrinks",
    ]);
    for report in [
        &e.held_out.model,
        &e.held_out.surrogate,
        &e.held_out.bootstrap,
    ] {
        let mut row = outcome_row(report);
        row.insert(
            4,
            format!("{}/{}", report.flagged_two_weeks_ahead, report.degradations),
        );
        table.add_row(row);
    }
    let _ = writeln!(out, "{table}");
    let m = &e.held_out.model.classes;
    let mut per_class = Table::new();
    per_class.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    per_class.set_header(vec!["class", "precision", "recall"]);
    for (k, class) in CLASSES.iter().enumerate() {
        per_class.add_row(vec![
            class.to_string(),
            percent(m.precision[k]),
            percent(m.recall[k]),
        ]);
    }
    let _ = writeln!(
        out,
        "{per_class}
{}",
        confusion_table(m)
    );
    let _ = writeln!(
        out,
        "unsafe shrinks: scale_down on a window followed by a degradation within the outcome horizon"
    );
    let _ = writeln!(
        out,
        "\nmodel probabilities against the outcomes of the scored windows:\n{}",
        probability_report(&e.held_out.probabilities, "calibrated")
    );
    out
}

/// Trains on the weeks up to a split of the source's history and scores what followed.
fn evaluate_from_source(
    config: &Config,
    args: &EvaluateArgs,
    clock: &SharedClock,
) -> Result<ExitCode> {
    let runtime = Runtime::new(config.clone())?;
    let loops = chosen_loops(&runtime, args.loop_name.as_deref())?;
    let mut reports = Vec::new();
    for lp in loops {
        let loop_name = lp.config().name.to_string();
        let history = read_source_history(
            lp,
            &args.source.options(args.incidents.as_ref(), clock.now()),
        )?;
        let bar = progress_bar(&loop_name);
        let evaluation = training::evaluate_split(
            lp,
            &history,
            &TrainOptions::default(),
            args.split_week,
            &mut show_progress(&bar),
        );
        bar.finish_and_clear();
        let evaluation = evaluation?;
        match args.output {
            Format::Table => print!("{}", split_report(&loop_name, &evaluation)),
            Format::Json => reports.push(serde_json::json!({
                "loop": loop_name,
                "history": {
                    "start": history.start,
                    "end": history.end,
                    "weeks": history.history.weeks,
                    "targets": history.history.targets.len(),
                    "label_sources": history.label_sources,
                    "targets_without_data": history.targets_without_data,
                },
                "split": evaluation,
            })),
        }
    }
    if matches!(args.output, Format::Json) {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// Replays a held-out simulated history through a model, its surrogate and the bootstrap
/// heuristics (or, with --from-source, a time split of the source's history).
pub fn evaluate(config: &Config, args: &EvaluateArgs, clock: &SharedClock) -> Result<ExitCode> {
    if args.source.from_source {
        return evaluate_from_source(config, args, clock);
    }
    let runtime = Runtime::new(config.clone())?;
    let loops = chosen_loops(&runtime, args.loop_name.as_deref())?;
    let store = Store::open_waiting(&config.state_dir, STORE_WAIT)?;
    let mut chosen = Vec::new();
    for lp in loops {
        let loop_name = lp.config().name.to_string();
        let record = match &args.model {
            Some(version) => Some(store.model(&loop_name, version)?),
            None => store.promoted_model(&loop_name)?,
        };
        match record {
            Some(record) => chosen.push((lp, record)),
            None if args.loop_name.is_some() => bail!(
                "loop {loop_name} has no promoted model: train one (`setpoint train --loop {loop_name} --promote`) or name one with --model"
            ),
            None => eprintln!("loop {loop_name}: no promoted model, skipped"),
        }
    }
    drop(store);
    if chosen.is_empty() {
        bail!("no loop has a promoted model to evaluate (see `setpoint train`)");
    }
    let mut reports = Vec::new();
    for (lp, record) in chosen {
        let loop_name = lp.config().name.to_string();
        let model = TrainedModel::from_json(&record.artifact)
            .with_context(|| format!("model {} of loop {loop_name}", record.version))?;
        let trained_seed = model.training().config.seed;
        if trained_seed == args.seed {
            bail!(
                "--seed {} is the seed model {} was trained with; evaluate on a history it has not seen",
                args.seed,
                model.short_version()
            );
        }
        let options = TrainOptions {
            seed: trained_seed,
            ..TrainOptions::default()
        };
        let held_out = training::evaluate(lp, &model, &options, args.seed)?;
        match args.output {
            Format::Table => print!(
                "{}",
                evaluate_report(&loop_name, &record.version, args.seed, &held_out)
            ),
            Format::Json => reports.push(serde_json::json!({
                "loop": loop_name,
                "version": record.version,
                "seed": args.seed,
                "held_out": held_out,
            })),
        }
    }
    if matches!(args.output, Format::Json) {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// `setpoint models …`.
pub fn models(state_dir: &Path, command: &ModelsCommand, clock: &SharedClock) -> Result<ExitCode> {
    let store = Store::open_waiting(state_dir, STORE_WAIT)?;
    match command {
        ModelsCommand::List { loop_name, output } => {
            let loops = match loop_name {
                Some(name) => vec![name.clone()],
                None => store.model_loops()?,
            };
            let mut rows = Vec::new();
            for name in &loops {
                let promoted = store.promoted_model(name)?.map(|m| m.version);
                for m in store.models(name)? {
                    let is_promoted = promoted.as_deref() == Some(m.version.as_str());
                    rows.push((m, is_promoted));
                }
            }
            match output {
                Format::Json => {
                    let list: Vec<_> = rows
                        .iter()
                        .map(|(m, promoted)| {
                            serde_json::json!({
                                "loop": m.loop_name,
                                "version": m.version,
                                "kind": m.kind,
                                "created_at": m.created_at,
                                "schema_version": m.schema_version,
                                "data_fingerprint": m.data_fingerprint,
                                "parameters": m.parameters,
                                "metrics": m.metrics,
                                "tags": m.tags,
                                "promoted": promoted,
                            })
                        })
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&list)?);
                }
                Format::Table => {
                    if rows.is_empty() {
                        println!("no models registered (train one with `setpoint train`)");
                        return Ok(ExitCode::SUCCESS);
                    }
                    let mut table = Table::new();
                    table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
                    table.set_header(vec![
                        "loop",
                        "version",
                        "",
                        "created",
                        "labels",
                        "windows",
                        "cv macro-F1",
                    ]);
                    for (m, promoted) in &rows {
                        table.add_row(vec![
                            m.loop_name.clone(),
                            m.version[..m.version.len().min(12)].to_string(),
                            if *promoted { "promoted" } else { "" }.to_string(),
                            m.created_at.format("%Y-%m-%d %H:%M UTC").to_string(),
                            m.parameters.get("labels").cloned().unwrap_or_default(),
                            m.parameters.get("rows").cloned().unwrap_or_default(),
                            m.metrics
                                .get("cv_macro_f1")
                                .map(|f| format!("{f:.3}"))
                                .unwrap_or_else(|| "—".to_string()),
                        ]);
                    }
                    println!("{table}");
                }
            }
        }
        ModelsCommand::Show {
            version,
            loop_name,
            output,
        } => {
            let record = find_model(&store, version, loop_name.as_deref())?;
            let trail = store.promotions(&record.loop_name)?;
            let agreement = agreement(&store, &record)?;
            let promoted = store.promoted_model(&record.loop_name)?.map(|m| m.version);
            let model = TrainedModel::from_json(&record.artifact)
                .with_context(|| format!("model {}", record.version))?;
            match output {
                Format::Json => {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&serde_json::json!({
                            "loop": record.loop_name,
                            "version": record.version,
                            "kind": record.kind,
                            "created_at": record.created_at,
                            "promoted": promoted.as_deref() == Some(record.version.as_str()),
                            "schema_version": record.schema_version,
                            "features": record.features,
                            "data_fingerprint": record.data_fingerprint,
                            "parameters": record.parameters,
                            "metrics": record.metrics,
                            "tags": record.tags,
                            "calibration": model.calibration(),
                            "importance": model.importance(),
                            "surrogate_rules": model.surrogate_rules().iter().map(ToString::to_string).collect::<Vec<_>>(),
                            "promotions": trail,
                            "reviews": {"agreed": agreement.0, "decided": agreement.1},
                        }))?
                    );
                }
                Format::Table => {
                    print!(
                        "{}",
                        show_model(&record, &model, promoted.as_deref(), &trail)
                    );
                    let (agreed, decided) = agreement;
                    if decided == 0 {
                        println!(
                            "\nreviewers: no decided review of this model's recommendations yet"
                        );
                    } else {
                        println!(
                            "\nreviewers agreed with {agreed} of {decided} decided recommendations ({:.0} %)",
                            agreed as f64 * 100.0 / decided as f64
                        );
                    }
                }
            }
        }
        ModelsCommand::Promote {
            version,
            loop_name,
            reason,
            by,
        } => {
            let promotion =
                store.promote_model(loop_name, version, by, reason.as_deref(), clock.now())?;
            println!(
                "loop {loop_name}: promoted {}{} (by {}); the next cycle classifies with it",
                promotion.version,
                promotion
                    .replaced
                    .map(|r| format!(", replacing {}", &r[..r.len().min(12)]))
                    .unwrap_or_default(),
                promotion.by
            );
        }
        ModelsCommand::Rollback {
            loop_name,
            reason,
            by,
        } => {
            let promotion = store.rollback_model(loop_name, by, reason.as_deref(), clock.now())?;
            println!(
                "loop {loop_name}: rolled back to {}{} (by {})",
                promotion.version,
                promotion
                    .replaced
                    .map(|r| format!(", replacing {}", &r[..r.len().min(12)]))
                    .unwrap_or_default(),
                promotion.by
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// How often reviewers agreed with this model's recommendations: (approved, decided).
fn agreement(store: &Store, record: &ModelRecord) -> Result<(usize, usize)> {
    Ok(
        setpoint_server::review::agreement_by_model(&store.reviews()?)
            .remove(&(record.loop_name.clone(), record.version.clone()))
            .unwrap_or((0, 0)),
    )
}

fn find_model(store: &Store, version: &str, loop_name: Option<&str>) -> Result<ModelRecord> {
    if let Some(name) = loop_name {
        return Ok(store.model(name, version)?);
    }
    let mut found = Vec::new();
    for name in store.model_loops()? {
        match store.model(&name, version) {
            Ok(record) => found.push(record),
            Err(setpoint_state::StateError::UnknownModel { .. }) => {}
            Err(error) => return Err(error.into()),
        }
    }
    match found.len() {
        0 => bail!("no loop has a model version {version:?} (see `setpoint models list`)"),
        1 => Ok(found.remove(0)),
        _ => bail!(
            "several loops have a model version {version:?} ({}); name one with --loop",
            found
                .iter()
                .map(|m| m.loop_name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn show_model(
    record: &ModelRecord,
    model: &TrainedModel,
    promoted: Option<&str>,
    trail: &[setpoint_state::Promotion],
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "model {} of loop {}{}",
        record.version,
        record.loop_name,
        if promoted == Some(record.version.as_str()) {
            " (promoted)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "  kind {} · created {} · schema {} · data {}",
        record.kind,
        record.created_at.to_rfc3339(),
        record.schema_version,
        record.data_fingerprint
    );
    let _ = writeln!(out, "  features: {}", record.features.join(", "));
    let _ = writeln!(out, "\nparameters");
    for (key, value) in &record.parameters {
        let _ = writeln!(out, "  {key:<22} {value}");
    }
    let _ = writeln!(out, "\nmetrics");
    for (key, value) in &record.metrics {
        let _ = writeln!(out, "  {key:<22} {value:.4}");
    }
    if !record.tags.is_empty() {
        let _ = writeln!(out, "\ntags");
        for (key, value) in &record.tags {
            let _ = writeln!(out, "  {key:<22} {value}");
        }
    }
    let _ = writeln!(
        out,
        "\ncalibration\n  {}",
        match model.calibration() {
            Some(c) if c.rows > 0 => format!("{} ({} held-out windows)", c.methods(), c.rows),
            Some(c) => format!("uncalibrated: {}", c.source),
            None => "uncalibrated (a model written before calibration)".to_string(),
        }
    );
    let _ = writeln!(out, "\nfeature importance");
    for f in model.importance().iter().take(10) {
        let _ = writeln!(out, "  {:<18} {}", f.feature, percent(f.gain));
    }
    let _ = writeln!(out, "\nsurrogate rules");
    for rule in model.surrogate_rules() {
        let _ = writeln!(out, "  {rule}");
    }
    let _ = writeln!(out, "\npromotions of loop {}", record.loop_name);
    if trail.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for p in trail {
        let _ = writeln!(
            out,
            "  {} {} {:?} {} by {}{}",
            p.sequence,
            p.at.format("%Y-%m-%d %H:%M UTC"),
            p.kind,
            &p.version[..p.version.len().min(12)],
            p.by,
            p.reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        );
    }
    out
}
