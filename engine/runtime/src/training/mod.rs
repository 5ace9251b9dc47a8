//! Training, evaluating and choosing a loop's classifier.
//!
//! A loop's model learns from what followed each 4-week window of a history: the simulator's
//! (its plugin's scenarios played forward, with the degradation events their trajectories lead
//! to) and, optionally, a file of real incidents. The model goes into the state store's
//! registry under its content hash; the loop classifies with the promoted version, and with
//! the bootstrap heuristics until one is promoted.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use setpoint_classify::{BootstrapHeuristics, Classifier, Thresholds};
use setpoint_core::SimScenario;
use setpoint_learn::{
    DatasetConfig, HeldOut, HistoryConfig, Labels, Stage, TrainConfig, TrainedModel,
};
use setpoint_state::{ModelRecord, Store};

use crate::{LoopRuntime, Result, RuntimeError};

mod source;

pub use source::{
    DEFAULT_SOURCE_WEEKS, LabelSources, MIN_SOURCE_WEEKS, SourceHistory, SourceHistoryOptions,
    read_history,
};

/// The kind recorded for boosted models in the registry.
pub const MODEL_KIND: &str = "gbdt";

/// Where a training run's labels come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelSource {
    /// What followed each window: degradations make it `scale_up`, room to halve `scale_down`.
    Outcomes,
    /// The bootstrap heuristics' own verdicts (phase 1: imitate the rules).
    Bootstrap,
}

/// How to train a loop's model.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOptions {
    /// Seed of the simulated history, the folds and the boosters.
    pub seed: u64,
    /// Weeks of simulated history per target.
    pub weeks: u32,
    /// Simulated targets started from each scenario.
    pub targets_per_scenario: u32,
    /// Simulated targets on fresh trajectories.
    pub fresh_targets: u32,
    /// Label source.
    pub labels: LabelSource,
    /// Weeks after a window in which a degradation counts against it.
    pub horizon_weeks: u32,
    /// Real incidents (CSV or JSON lines: target, week or time, kind) added to the simulator's.
    pub incidents: Option<PathBuf>,
    /// Cross-validation folds (0 or 1: none).
    pub folds: u32,
    /// Reviewers' decisions, as labelled windows added to the history's.
    pub feedback: Vec<Feedback>,
}

/// A reviewer's decision as a training label: the window the decision was about, labelled with
/// the class the reviewer agreed to (an approval) or `remain` (a rejection).
#[derive(Debug, Clone, PartialEq)]
pub struct Feedback {
    /// The target.
    pub target: String,
    /// The cycle whose window it was.
    pub cycle: u64,
    /// That cycle's features.
    pub features: setpoint_core::FeatureVector,
    /// The label.
    pub label: setpoint_core::Class,
}

/// The feedback labels of a loop: every approved, applied or rejected review, with the
/// features journalled by the cycle that queued it. Reviews whose entry is gone are skipped.
pub fn feedback(store: &Store, loop_name: &str) -> Result<Vec<Feedback>> {
    use setpoint_core::{Class, ReviewStatus};
    let mut out = Vec::new();
    for review in store.reviews()? {
        if review.loop_name != loop_name {
            continue;
        }
        let label = match review.status {
            ReviewStatus::Approved | ReviewStatus::Applied => review.classification.class,
            ReviewStatus::Rejected => Class::Remain,
            _ => continue,
        };
        let entry = store
            .entries(&review.target)?
            .into_iter()
            .find(|e| e.loop_name == loop_name && e.cycle == review.cycle);
        if let Some(entry) = entry {
            out.push(Feedback {
                target: review.target,
                cycle: review.cycle,
                features: entry.features,
                label,
            });
        }
    }
    Ok(out)
}

impl Default for TrainOptions {
    fn default() -> Self {
        let history = HistoryConfig::default();
        Self {
            seed: history.seed,
            weeks: history.weeks,
            targets_per_scenario: history.targets_per_scenario,
            fresh_targets: history.fresh_targets,
            labels: LabelSource::Outcomes,
            horizon_weeks: DatasetConfig::default().horizon_weeks,
            incidents: None,
            folds: TrainConfig::default().folds,
            feedback: Vec::new(),
        }
    }
}

impl TrainOptions {
    fn history(&self, seed: u64) -> HistoryConfig {
        HistoryConfig {
            seed,
            weeks: self.weeks,
            targets_per_scenario: self.targets_per_scenario,
            fresh_targets: self.fresh_targets,
            ..HistoryConfig::default()
        }
    }

    fn dataset(&self, thresholds: &Thresholds) -> DatasetConfig {
        DatasetConfig {
            labels: match self.labels {
                LabelSource::Outcomes => Labels::Outcomes,
                LabelSource::Bootstrap => Labels::Bootstrap {
                    thresholds: thresholds.clone(),
                },
            },
            horizon_weeks: self.horizon_weeks,
            ..DatasetConfig::default()
        }
    }
}

/// A trained model and what the registry keeps of it.
pub struct Trained {
    /// The model.
    pub model: TrainedModel,
    /// Its registry record (not yet registered).
    pub record: ModelRecord,
    /// Incidents from the file that named no simulated target.
    pub unmatched_incidents: usize,
}

fn learn_error(loop_name: &str, error: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Learn {
        loop_name: loop_name.to_string(),
        message: error.to_string(),
    }
}

/// The scenarios a loop's model is trained on: its plugin's.
fn scenarios(lp: &LoopRuntime) -> Result<&[SimScenario]> {
    let descriptor = lp.plugin.descriptor();
    if descriptor.scenarios.is_empty() {
        return Err(learn_error(
            &lp.config.name.0,
            format!(
                "plugin {} ships no simulator scenarios to simulate a history from",
                descriptor.name
            ),
        ));
    }
    Ok(&descriptor.scenarios)
}

fn thresholds(lp: &LoopRuntime) -> Thresholds {
    lp.config.classifier.thresholds().clone()
}

/// Trains a model for `lp` on a simulated history (plus incidents), deterministically for a
/// given seed and data. `progress` sees each stage's progress.
pub fn train(
    lp: &LoopRuntime,
    options: &TrainOptions,
    now: DateTime<Utc>,
    progress: &mut dyn FnMut(Stage, usize, usize),
) -> Result<Trained> {
    let loop_name = lp.config.name.0.clone();
    let history = setpoint_learn::simulate(scenarios(lp)?, &options.history(options.seed))
        .map_err(|e| learn_error(&loop_name, e))?;
    let mut events = history.events.clone();
    if let Some(path) = &options.incidents {
        events.extend(
            setpoint_learn::load_incidents(path, None).map_err(|e| learn_error(&loop_name, e))?,
        );
    }
    let dataset = setpoint_learn::build(&history, &events, &options.dataset(&thresholds(lp)))
        .map_err(|e| learn_error(&loop_name, e))?;
    let parameters = BTreeMap::from([
        ("source".to_string(), "simulator".to_string()),
        ("history_weeks".to_string(), options.weeks.to_string()),
        (
            "targets_per_scenario".to_string(),
            options.targets_per_scenario.to_string(),
        ),
        (
            "fresh_targets".to_string(),
            options.fresh_targets.to_string(),
        ),
    ]);
    train_dataset(lp, dataset, options, parameters, now, progress)
}

/// Trains `lp`'s model on every window of a history read from its source, with the
/// reviewers' feedback; the registry record names the data range and the label counts.
pub fn train_on_source(
    lp: &LoopRuntime,
    source: &SourceHistory,
    options: &TrainOptions,
    now: DateTime<Utc>,
    progress: &mut dyn FnMut(Stage, usize, usize),
) -> Result<Trained> {
    let loop_name = lp.config.name.0.clone();
    let dataset = setpoint_learn::build(
        &source.history,
        &source.events,
        &options.dataset(&thresholds(lp)),
    )
    .map_err(|e| learn_error(&loop_name, e))?;
    let mut trained = train_dataset(
        lp,
        dataset,
        options,
        source_parameters(lp, source),
        now,
        progress,
    )?;
    trained.unmatched_incidents = source.unmatched_events;
    Ok(trained)
}

/// What the registry records of a source history.
fn source_parameters(lp: &LoopRuntime, source: &SourceHistory) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("source".to_string(), lp.source.name().to_string()),
        ("history_start".to_string(), source.start.to_rfc3339()),
        ("history_end".to_string(), source.end.to_rfc3339()),
        (
            "history_weeks".to_string(),
            source.history.weeks.to_string(),
        ),
        (
            "history_targets".to_string(),
            source.history.targets.len().to_string(),
        ),
        (
            "degradations_detected".to_string(),
            source.label_sources.detected.to_string(),
        ),
        (
            "degradations_from_incidents".to_string(),
            source.label_sources.incidents.to_string(),
        ),
        (
            "degradations_from_alerts".to_string(),
            source.label_sources.alerts.to_string(),
        ),
    ])
}

/// A time-split evaluation: a model trained on the windows whose outcomes were known by the
/// split week, scored on the windows after it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SplitEvaluation {
    /// The last week (0-based) the training windows and their outcomes may reach.
    pub split_week: u32,
    /// Its date: the end of that week.
    pub split_at: DateTime<Utc>,
    /// Training windows per class (scale_down, remain, scale_up).
    pub train_counts: [usize; 3],
    /// Scored windows per class.
    pub test_counts: [usize; 3],
    /// The scores.
    pub held_out: HeldOut,
}

/// Trains on the windows of `source` whose outcome horizon ends by `split_week` (default: the
/// last week that leaves two scored windows per target) and scores the windows after it.
pub fn evaluate_split(
    lp: &LoopRuntime,
    source: &SourceHistory,
    options: &TrainOptions,
    split_week: Option<u32>,
    progress: &mut dyn FnMut(Stage, usize, usize),
) -> Result<SplitEvaluation> {
    let loop_name = lp.config.name.0.clone();
    let config = options.dataset(&thresholds(lp));
    let outcomes = setpoint_learn::DatasetConfig {
        labels: setpoint_learn::Labels::Outcomes,
        ..config
    };
    let dataset = setpoint_learn::build(&source.history, &source.events, &outcomes)
        .map_err(|e| learn_error(&loop_name, e))?;
    let horizon = options.horizon_weeks;
    let last_window = source.history.weeks.saturating_sub(1 + horizon);
    let split = split_week.unwrap_or_else(|| last_window.saturating_sub(2));
    let train_rows: Vec<usize> = (0..dataset.rows.len())
        .filter(|&i| dataset.rows[i].week + horizon <= split)
        .collect();
    let test_rows: Vec<usize> = (0..dataset.rows.len())
        .filter(|&i| dataset.rows[i].week > split)
        .collect();
    if train_rows.is_empty() || test_rows.is_empty() {
        return Err(learn_error(
            &loop_name,
            format!(
                "split at week {split} leaves {} training and {} scored windows (windows end in weeks {}..={last_window}, outcomes {horizon} weeks later); pick a split between {} and {}",
                train_rows.len(),
                test_rows.len(),
                setpoint_learn::dataset::WINDOW_WEEKS - 1,
                setpoint_learn::dataset::WINDOW_WEEKS - 1 + horizon,
                last_window.saturating_sub(1)
            ),
        ));
    }
    let train = dataset.subset(&train_rows);
    let test = dataset.subset(&test_rows);
    let model = setpoint_learn::train(
        &train,
        &TrainConfig {
            seed: options.seed,
            folds: 0,
            ..TrainConfig::default()
        },
        progress,
    )
    .map_err(|e| learn_error(&loop_name, e))?;
    let held_out = setpoint_learn::evaluate_dataset(&model, &test, &source.events, horizon)
        .map_err(|e| learn_error(&loop_name, e))?;
    Ok(SplitEvaluation {
        split_week: split,
        split_at: source.start + chrono::Duration::weeks(i64::from(split) + 1),
        train_counts: train.class_counts(),
        test_counts: test.class_counts(),
        held_out,
    })
}

/// Trains on `dataset` plus the reviewers' feedback and builds the registry record, with
/// `parameters` saying where the data came from.
fn train_dataset(
    lp: &LoopRuntime,
    mut dataset: setpoint_learn::Dataset,
    options: &TrainOptions,
    mut parameters: BTreeMap<String, String>,
    now: DateTime<Utc>,
    progress: &mut dyn FnMut(Stage, usize, usize),
) -> Result<Trained> {
    let loop_name = lp.config.name.0.clone();
    let mut feedback_rows = 0usize;
    for f in &options.feedback {
        // A window with a missing week teaches nothing certain: skipped, like the history's.
        if let Ok(values) = dataset.schema.row_from_features(&f.features) {
            dataset.rows.push(setpoint_learn::dataset::Row {
                target: format!("review:{}", f.target),
                week: u32::try_from(f.cycle).unwrap_or(u32::MAX),
                values,
                label: f.label,
            });
            feedback_rows += 1;
        }
    }
    let counts = dataset.class_counts();
    if let Some(k) = counts.iter().position(|&n| n == 0) {
        let class = setpoint_learn::CLASSES[k];
        return Err(learn_error(
            &loop_name,
            format!(
                "no window of the history is labelled {class} ({} windows: {}); the model could never learn when to say it. Train on a longer history or a larger fleet (--history-weeks), add --incidents or --alerts, or keep classifier.kind: bootstrap",
                dataset.rows.len(),
                setpoint_learn::CLASSES
                    .iter()
                    .zip(counts)
                    .map(|(c, n)| format!("{c} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let config = TrainConfig {
        seed: options.seed,
        folds: options.folds,
        ..TrainConfig::default()
    };
    let model = setpoint_learn::train(&dataset, &config, progress)
        .map_err(|e| learn_error(&loop_name, e))?;
    for (class, n) in setpoint_learn::CLASSES.iter().zip(counts) {
        parameters.insert(format!("label_count_{class}"), n.to_string());
    }
    parameters.extend([
        ("seed".to_string(), options.seed.to_string()),
        ("labels".to_string(), model.training().labels.clone()),
        (
            "horizon_weeks".to_string(),
            options.horizon_weeks.to_string(),
        ),
        ("folds".to_string(), options.folds.to_string()),
        ("rows".to_string(), model.training().rows.to_string()),
        (
            "iterations".to_string(),
            config.booster.iterations.to_string(),
        ),
        (
            "learning_rate".to_string(),
            config.booster.learning_rate.to_string(),
        ),
        (
            "max_depth".to_string(),
            config.booster.max_depth.to_string(),
        ),
    ]);
    if let Some(path) = &options.incidents {
        parameters.insert("incidents".to_string(), path.display().to_string());
    }
    parameters.insert("feedback_labels".to_string(), feedback_rows.to_string());
    let mut metrics = BTreeMap::new();
    if let Some(cv) = model.metrics() {
        metrics.insert("cv_accuracy".to_string(), cv.model.accuracy);
        metrics.insert("cv_macro_f1".to_string(), cv.model.macro_f1);
        metrics.insert("cv_bootstrap_macro_f1".to_string(), cv.bootstrap.macro_f1);
        for (class, recall) in setpoint_learn::CLASSES.iter().zip(cv.model.recall) {
            metrics.insert(format!("cv_recall_{class}"), recall);
        }
    }
    let record = ModelRecord {
        loop_name: loop_name.clone(),
        version: model.version().to_string(),
        kind: MODEL_KIND.to_string(),
        created_at: now,
        schema_version: model.schema().version.clone(),
        features: model.schema().features.clone(),
        data_fingerprint: model.training().dataset.clone(),
        parameters,
        metrics,
        tags: BTreeMap::new(),
        artifact: model.to_json().to_string(),
    };
    Ok(Trained {
        model,
        record,
        unmatched_incidents: dataset.unmatched_events,
    })
}

/// Replays a history simulated with `seed` (one the model was not trained on) through the
/// model, its surrogate and the bootstrap heuristics, scoring each against what followed.
pub fn evaluate(
    lp: &LoopRuntime,
    model: &TrainedModel,
    options: &TrainOptions,
    seed: u64,
) -> Result<HeldOut> {
    let loop_name = lp.config.name.0.clone();
    let history = setpoint_learn::simulate(scenarios(lp)?, &options.history(seed))
        .map_err(|e| learn_error(&loop_name, e))?;
    setpoint_learn::evaluate(
        model,
        &history,
        &history.events,
        &options.dataset(&thresholds(lp)),
    )
    .map_err(|e| learn_error(&loop_name, e))
}

/// The classifier a cycle uses, and why.
pub(crate) struct ActiveClassifier {
    pub(crate) classifier: Arc<dyn Classifier>,
    /// Said in every classification's explanation when the bootstrap heuristics stand in for a
    /// model that is not there.
    pub(crate) fallback: Option<String>,
}

/// Why a loop's promoted model cannot classify.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelProblem {
    /// No model is promoted for the loop.
    #[error(
        "no model is promoted for the loop (train one from the source's history with `setpoint train --promote`, or set classifier.fallback: bootstrap)"
    )]
    Missing,
    /// The promoted model is older than the loop allows.
    #[error(
        "the promoted model {version} is {age_days} days old, over classifier.max_age_days ({max_age_days}); retrain it"
    )]
    Stale {
        /// Its version.
        version: String,
        /// Its age in days.
        age_days: i64,
        /// The limit.
        max_age_days: i64,
    },
    /// The promoted model was trained on other features than the plugin computes.
    #[error(
        "the promoted model {version} was trained on other features than plugin {plugin} computes ({detail}); retrain it"
    )]
    Incompatible {
        /// Its version.
        version: String,
        /// The plugin.
        plugin: String,
        /// The first difference.
        detail: String,
    },
}

/// A loop's classifiers: the bootstrap heuristics, and the promoted model once parsed.
pub(crate) struct LoopClassifier {
    bootstrap: Arc<dyn Classifier>,
    use_models: bool,
    train_on_simulator: bool,
    /// Whether the bootstrap heuristics may stand in for an unusable model.
    fallback: bool,
    /// Age after which a promoted model is stale.
    max_age: chrono::Duration,
    /// The promoted version last parsed, kept until another is promoted.
    parsed: Mutex<Option<(String, Arc<dyn Classifier>)>>,
}

impl LoopClassifier {
    pub(crate) fn new(config: &crate::config::ClassifierConfig) -> Self {
        use crate::config::ClassifierConfig;
        let (use_models, train_on_simulator, fallback, max_age_days) = match config {
            ClassifierConfig::Bootstrap { .. } => (false, false, false, 0),
            ClassifierConfig::Model {
                train_on_simulator,
                fallback,
                max_age_days,
                ..
            } => (true, *train_on_simulator, fallback.is_some(), *max_age_days),
        };
        Self {
            bootstrap: Arc::new(BootstrapHeuristics::new(config.thresholds().clone())),
            use_models,
            train_on_simulator,
            fallback,
            max_age: chrono::Duration::days(i64::from(max_age_days)),
            parsed: Mutex::new(None),
        }
    }

    /// What makes `record` unusable by the loop at `now`: stale, or trained on other features
    /// than the loop's plugin computes.
    fn problem_with(
        &self,
        lp: &LoopRuntime,
        record: &setpoint_state::ModelRecord,
        now: DateTime<Utc>,
    ) -> Option<ModelProblem> {
        let age = now - record.created_at;
        if age > self.max_age {
            return Some(ModelProblem::Stale {
                version: record.version.clone(),
                age_days: age.num_days(),
                max_age_days: self.max_age.num_days(),
            });
        }
        let descriptor = lp.plugin.descriptor();
        let plugin: Vec<&str> = descriptor
            .features
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        let trained: Vec<&str> = record
            .features
            .iter()
            .map(String::as_str)
            .take(plugin.len())
            .collect();
        (trained != plugin).then(|| {
            let detail = plugin
                .iter()
                .zip(trained.iter().map(Some).chain(std::iter::repeat(None)))
                .find(|(p, t)| t.is_none_or(|t| t != *p))
                .map(|(p, t)| match t {
                    Some(t) => format!("the plugin's {p} where the model has {t}"),
                    None => format!("the model lacks the plugin's {p}"),
                })
                .unwrap_or_else(|| "a different feature list".to_string());
            ModelProblem::Incompatible {
                version: record.version.clone(),
                plugin: format!("{} {}", descriptor.name, descriptor.version),
                detail,
            }
        })
    }

    /// The classifier for a cycle starting at `now`: the promoted model, training and
    /// promoting one first when the loop asks for that and has none; else the bootstrap
    /// heuristics.
    pub(crate) fn for_cycle(
        &self,
        lp: &LoopRuntime,
        store: &Store,
        now: DateTime<Utc>,
    ) -> Result<ActiveClassifier> {
        let loop_name = &lp.config.name.0;
        if !self.use_models {
            return Ok(ActiveClassifier {
                classifier: self.bootstrap.clone(),
                fallback: None,
            });
        }
        let mut record = store.promoted_model(loop_name)?;
        if record.is_none() && self.train_on_simulator {
            let _span = tracing::info_span!("train", loop_name = %loop_name).entered();
            let seed = lp
                .config
                .source
                .seed()
                .unwrap_or(TrainOptions::default().seed);
            let options = TrainOptions {
                seed,
                // Cross-validation is for `setpoint train`'s report; a first run only needs
                // the model.
                folds: 0,
                ..TrainOptions::default()
            };
            let trained = train(lp, &options, now, &mut |_, _, _| {})?;
            store.register_model(&trained.record)?;
            store.promote_model(
                loop_name,
                &trained.record.version,
                "setpoint",
                Some("trained on the simulator's history at first run (classifier.train_on_simulator)"),
                now,
            )?;
            tracing::info!(version = %trained.model.short_version(), "trained and promoted a model");
            record = Some(trained.record);
        }
        let problem = match &record {
            None => Some(ModelProblem::Missing),
            Some(record) => self.problem_with(lp, record, now),
        };
        let (Some(record), None) = (record, &problem) else {
            let problem = problem.unwrap_or(ModelProblem::Missing);
            if !self.fallback {
                return Err(RuntimeError::ModelUnusable {
                    loop_name: loop_name.clone(),
                    problem,
                });
            }
            tracing::warn!(%problem, "the bootstrap heuristics stand in for the model (classifier.fallback: bootstrap)");
            return Ok(ActiveClassifier {
                classifier: self.bootstrap.clone(),
                fallback: Some(format!(
                    "fallback: the bootstrap heuristics decided, because {problem} (classifier.fallback: bootstrap)"
                )),
            });
        };
        let mut parsed = self
            .parsed
            .lock()
            .map_err(|_| learn_error(loop_name, "the model cache was poisoned by a panic"))?;
        if let Some((version, classifier)) = parsed.as_ref()
            && *version == record.version
        {
            return Ok(ActiveClassifier {
                classifier: classifier.clone(),
                fallback: None,
            });
        }
        let model = TrainedModel::from_json(&record.artifact).map_err(|e| {
            learn_error(
                loop_name,
                format!("promoted model {} is unreadable: {e}", record.version),
            )
        })?;
        if model.version() != record.version {
            return Err(learn_error(
                loop_name,
                format!(
                    "promoted model {} does not hash to its version ({}): the registry entry is damaged",
                    record.version,
                    model.version()
                ),
            ));
        }
        let classifier: Arc<dyn Classifier> = Arc::new(model.classifier());
        *parsed = Some((record.version.clone(), classifier.clone()));
        Ok(ActiveClassifier {
            classifier,
            fallback: None,
        })
    }
}
