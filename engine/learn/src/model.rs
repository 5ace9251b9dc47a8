//! The gradient-boosted classifier: training, the JSON artifact, and the engine-facing
//! [`Classifier`].
//!
//! `forust-ml` boosts binary log-loss models only, so each class gets a one-vs-rest booster and
//! a softmax over the three margins gives the raw probabilities, which the model's
//! [`Calibration`] (fitted on predictions for rows the boosters did not train on) maps to the
//! probabilities it reports. Boosters are fitted single-threaded
//! (`parallel = false`): with a fixed seed and no row or column sampling, a fit is then a pure
//! function of the data, and the artifact's bytes — hence its version — are too.

use std::sync::Arc;

use forust_ml::gradientbooster::{ContributionsMethod, ImportanceMethod};
use forust_ml::objective::ObjectiveType;
use forust_ml::{GradientBooster, Matrix};
use serde::{Deserialize, Serialize};
use setpoint_classify::Classifier;
use setpoint_core::{Class, Classification, Evidence, Explanation, FeatureVector};
use sha2::{Digest, Sha256};

use crate::calibrate::{self, Calibration, ClassCalibration, ClassMap};
use crate::dataset::{Dataset, Schema, hex};
use crate::evaluate::{
    CrossValidation, FeatureImportance, ProbabilityQuality, cross_validate, held_out_predictions,
};
use crate::surrogate::{Rule, Surrogate, TreeParams};
use crate::{CLASSES, Error, Result, class_index};

/// Format tag of the model artifact.
pub const MODEL_FORMAT: &str = "setpoint-learn/model/1";

/// Name the classifier records with every classification.
pub const MODEL_NAME: &str = "gradient-boosting";

/// Parameters of each one-vs-rest booster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BoosterParams {
    /// Trees per booster.
    pub iterations: usize,
    /// Shrinkage of each tree.
    pub learning_rate: f32,
    /// Depth of each tree.
    pub max_depth: usize,
    /// Histogram bins per feature.
    pub nbins: u16,
    /// L2 regularisation of leaf weights.
    pub l2: f32,
    /// Smallest hessian sum in a leaf.
    pub min_leaf_weight: f32,
}

impl Default for BoosterParams {
    fn default() -> Self {
        Self {
            iterations: 120,
            learning_rate: 0.1,
            max_depth: 4,
            nbins: 64,
            l2: 1.0,
            min_leaf_weight: 1.0,
        }
    }
}

/// How to train.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Seed of the fold assignment and the boosters.
    pub seed: u64,
    /// Cross-validation folds; 0 or 1 skips cross-validation.
    pub folds: u32,
    /// Booster parameters.
    pub booster: BoosterParams,
    /// The surrogate tree.
    pub surrogate: TreeParams,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            folds: 5,
            booster: BoosterParams::default(),
            surrogate: TreeParams::default(),
        }
    }
}

/// Stages reported to the progress callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Fitting the boosters of each fold (`done` and `total` count boosters).
    CrossValidation,
    /// Without cross-validation: fitting the boosters whose predictions for held-out targets
    /// the calibrator is fitted on.
    Calibration,
    /// Fitting the final boosters on every row.
    Fit,
    /// Fitting the surrogate tree.
    Surrogate,
}

impl Stage {
    /// A short name for progress bars.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::CrossValidation => "cross-validation",
            Stage::Calibration => "calibration",
            Stage::Fit => "fit",
            Stage::Surrogate => "surrogate",
        }
    }
}

/// What a model was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingInfo {
    /// [`Dataset::fingerprint`] of the training data.
    pub dataset: String,
    /// `bootstrap` or `outcomes`.
    pub labels: String,
    /// Training rows.
    pub rows: usize,
    /// Rows per class, in [`CLASSES`] order.
    pub class_counts: [usize; 3],
    /// The training configuration.
    pub config: TrainConfig,
}

/// The serialised model: everything needed to classify, explain and audit it.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Artifact {
    format: String,
    schema: Schema,
    classes: Vec<Class>,
    training: TrainingInfo,
    metrics: Option<CrossValidation>,
    importance: Vec<FeatureImportance>,
    surrogate: Surrogate,
    /// Absent from artifacts written before calibration existed: such a model reports its
    /// raw probabilities, and leaving the field out keeps their bytes, hence their versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    calibration: Option<Calibration>,
    boosters: Vec<GradientBooster>,
}

/// The three boosters, in [`CLASSES`] order.
pub(crate) struct Ensemble<'a> {
    pub(crate) boosters: &'a [GradientBooster],
    pub(crate) cols: usize,
}

impl Ensemble<'_> {
    /// Softmax of the three margins.
    pub(crate) fn proba(&self, row: &[f64]) -> [f64; 3] {
        let m = Matrix::new(row, 1, self.cols);
        let mut margins = [0.0; 3];
        for (k, b) in self.boosters.iter().enumerate().take(3) {
            margins[k] = b.predict(&m, false).first().copied().unwrap_or(0.0);
        }
        softmax(margins)
    }

    /// Probabilities of many rows at once (one matrix per booster).
    pub(crate) fn proba_rows(&self, rows: &[Vec<f64>]) -> Vec<[f64; 3]> {
        let n = rows.len();
        let mut col_major = vec![0.0; n * self.cols];
        for (i, r) in rows.iter().enumerate() {
            for (j, v) in r.iter().enumerate().take(self.cols) {
                col_major[j * n + i] = *v;
            }
        }
        let m = Matrix::new(&col_major, n, self.cols);
        let margins: Vec<Vec<f64>> = self.boosters.iter().map(|b| b.predict(&m, false)).collect();
        (0..n)
            .map(|i| {
                let mut row = [0.0; 3];
                for (k, mk) in margins.iter().enumerate().take(3) {
                    row[k] = mk.get(i).copied().unwrap_or(0.0);
                }
                softmax(row)
            })
            .collect()
    }

    /// Per-feature contributions to one class's margin (the last value is the bias).
    fn contributions(&self, class: usize, row: &[f64]) -> Vec<f64> {
        let m = Matrix::new(row, 1, self.cols);
        self.boosters
            .get(class)
            .map(|b| b.predict_contributions(&m, ContributionsMethod::Average, false))
            .unwrap_or_default()
    }
}

fn softmax(margins: [f64; 3]) -> [f64; 3] {
    let top = margins.iter().copied().fold(f64::MIN, f64::max);
    let e = margins.map(|m| (m - top).exp());
    let sum: f64 = e.iter().sum();
    e.map(|v| v / sum)
}

pub(crate) fn argmax(p: &[f64; 3]) -> Class {
    // Ties go to the conservative class.
    let mut best = class_index(Class::Remain);
    for k in [2, 0] {
        if p[k] > p[best] {
            best = k;
        }
    }
    CLASSES[best]
}

/// Column-major copy of `rows` (the layout `forust-ml` reads).
fn column_major(rows: &[&[f64]], cols: usize) -> Vec<f64> {
    let n = rows.len();
    let mut out = vec![0.0; n * cols];
    for (i, r) in rows.iter().enumerate() {
        for (j, v) in r.iter().enumerate().take(cols) {
            out[j * n + i] = *v;
        }
    }
    out
}

/// Fits the three one-vs-rest boosters on `rows`.
pub(crate) fn fit_boosters(
    rows: &[&[f64]],
    labels: &[Class],
    cols: usize,
    params: &BoosterParams,
    seed: u64,
    mut done: impl FnMut(usize),
) -> Result<Vec<GradientBooster>> {
    let data = column_major(rows, cols);
    let matrix = Matrix::new(&data, rows.len(), cols);
    let mut boosters = Vec::with_capacity(3);
    for (k, class) in CLASSES.iter().enumerate() {
        let y: Vec<f64> = labels
            .iter()
            .map(|l| if l == class { 1.0 } else { 0.0 })
            .collect();
        if !y.contains(&1.0) || !y.contains(&0.0) {
            return Err(Error::Dataset(format!(
                "every class must have rows and not be the only one; {class} has {} of {}",
                y.iter().filter(|&&v| v == 1.0).count(),
                y.len()
            )));
        }
        let mut booster = GradientBooster::default()
            .set_objective_type(ObjectiveType::LogLoss)
            .set_iterations(params.iterations)
            .set_learning_rate(params.learning_rate)
            .set_max_depth(params.max_depth)
            .set_nbins(params.nbins)
            .set_l2(params.l2)
            .set_min_leaf_weight(params.min_leaf_weight)
            .set_parallel(false)
            .set_seed(seed.wrapping_add(k as u64));
        booster
            .fit_unweighted(&matrix, &y, None)
            .map_err(|e| Error::Training(e.to_string()))?;
        boosters.push(booster);
        done(k + 1);
    }
    Ok(boosters)
}

/// Gain importance averaged over the three boosters, normalised to sum to 1, by decreasing
/// importance then name.
pub(crate) fn importance(boosters: &[GradientBooster], names: &[String]) -> Vec<FeatureImportance> {
    let mut total = vec![0.0f64; names.len()];
    for b in boosters {
        let gains = b.calculate_feature_importance(ImportanceMethod::Gain, true);
        for (i, slot) in total.iter_mut().enumerate() {
            *slot += f64::from(gains.get(&i).copied().unwrap_or(0.0));
        }
    }
    let sum: f64 = total.iter().sum();
    let mut out: Vec<FeatureImportance> = names
        .iter()
        .zip(total)
        .map(|(name, gain)| FeatureImportance {
            feature: name.clone(),
            // Rounded so that the artifact does not carry f32 noise as if it were signal.
            gain: if sum > 0.0 {
                (gain / sum * 1e6).round() / 1e6
            } else {
                0.0
            },
        })
        .collect();
    out.sort_by(|a, b| {
        b.gain
            .total_cmp(&a.gain)
            .then_with(|| a.feature.cmp(&b.feature))
    });
    out
}

/// Order in which the surrogate prefers features for equivalent splits: levels, trends, then
/// the most recent weeks first — the readable ones.
fn preference(schema: &Schema) -> Vec<usize> {
    let n = schema.features.len();
    let fp = schema.fingerprint().len();
    let metrics = schema.metrics.len();
    let mut order: Vec<usize> = (fp + metrics..n).collect();
    order.extend(fp..fp + metrics);
    for k in (0..crate::dataset::WINDOW_WEEKS as usize).rev() {
        for m in 0..metrics {
            order.push(m * crate::dataset::WINDOW_WEEKS as usize + k);
        }
    }
    order
}

/// Trains a model on `dataset`: cross-validation (when `config.folds >= 2`), the final
/// boosters, and the surrogate. `progress(stage, done, total)` is called as each booster or the
/// surrogate is done.
pub fn train(
    dataset: &Dataset,
    config: &TrainConfig,
    progress: &mut dyn FnMut(Stage, usize, usize),
) -> Result<TrainedModel> {
    let cols = dataset.schema.len();
    if dataset.rows.iter().any(|r| r.values.len() != cols) {
        return Err(Error::Dataset(format!(
            "every row needs {cols} values (schema {})",
            dataset.schema.hash
        )));
    }
    if dataset
        .rows
        .iter()
        .flat_map(|r| &r.values)
        .any(|v| !v.is_finite())
    {
        return Err(Error::Dataset("non-finite feature value".into()));
    }
    let (metrics, held) = if config.folds >= 2 {
        let (cv, held) = cross_validate(dataset, config, progress)?;
        (Some(cv), Ok(held))
    } else {
        (None, held_out_predictions(dataset, config, progress))
    };
    let calibration = match held {
        Ok(held) => calibrate::fit(&held),
        // Too few targets to hold some out with every class left to train on: the model is
        // still usable, and says why its probabilities are raw.
        Err(Error::Dataset(why)) => uncalibrated(&why),
        Err(e) => return Err(e),
    };
    let rows: Vec<&[f64]> = dataset.rows.iter().map(|r| r.values.as_slice()).collect();
    let labels: Vec<Class> = dataset.rows.iter().map(|r| r.label).collect();
    let boosters = fit_boosters(&rows, &labels, cols, &config.booster, config.seed, |k| {
        progress(Stage::Fit, k, 3)
    })?;
    let ensemble = Ensemble {
        boosters: &boosters,
        cols,
    };
    let values: Vec<Vec<f64>> = dataset.rows.iter().map(|r| r.values.clone()).collect();
    // The surrogate explains the classes the classifier gives, which are the calibrated ones.
    let predicted: Vec<Class> = ensemble
        .proba_rows(&values)
        .into_iter()
        .map(|p| argmax(&calibration.apply(p)))
        .collect();
    progress(Stage::Surrogate, 0, 1);
    let surrogate = Surrogate::fit(
        &dataset.schema.features,
        &values,
        &predicted,
        &config.surrogate,
        &preference(&dataset.schema),
    )?;
    progress(Stage::Surrogate, 1, 1);
    let artifact = Artifact {
        format: MODEL_FORMAT.to_string(),
        schema: dataset.schema.clone(),
        classes: CLASSES.to_vec(),
        training: TrainingInfo {
            dataset: dataset.fingerprint(),
            labels: dataset.labels.clone(),
            rows: dataset.rows.len(),
            class_counts: dataset.class_counts(),
            config: config.clone(),
        },
        metrics,
        importance: importance(&boosters, &dataset.schema.features),
        surrogate,
        calibration: Some(calibration),
        boosters,
    };
    TrainedModel::from_artifact(artifact)
}

/// A calibration that maps nothing, and says why.
fn uncalibrated(why: &str) -> Calibration {
    Calibration {
        source: format!("none: no held-out predictions ({why})"),
        rows: 0,
        classes: CLASSES
            .iter()
            .map(|&class| ClassCalibration {
                class,
                positives: 0,
                negatives: 0,
                map: ClassMap::Identity,
                fallback: Some("uncalibrated: no held-out predictions".to_string()),
            })
            .collect(),
        held_out: ProbabilityQuality::new(&[], None, &[]),
    }
}

/// A trained model: the artifact, its JSON and its version.
#[derive(Clone)]
pub struct TrainedModel {
    artifact: Arc<Artifact>,
    json: Arc<str>,
    version: Arc<str>,
}

impl std::fmt::Debug for TrainedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrainedModel")
            .field("version", &self.version)
            .field("schema", &self.artifact.schema.hash)
            .field("training", &self.artifact.training)
            .finish_non_exhaustive()
    }
}

impl TrainedModel {
    fn from_artifact(artifact: Artifact) -> Result<Self> {
        let json = serde_json::to_string(&artifact)?;
        let version = hex(&Sha256::digest(json.as_bytes()));
        Ok(Self {
            artifact: Arc::new(artifact),
            json: json.into(),
            version: version.into(),
        })
    }

    /// The artifact as JSON; the same model always gives the same bytes.
    pub fn to_json(&self) -> &str {
        &self.json
    }

    /// Reads an artifact written by [`TrainedModel::to_json`], checking its format, schema,
    /// class order and boosters.
    pub fn from_json(json: &str) -> Result<Self> {
        let artifact: Artifact = serde_json::from_str(json)?;
        if artifact.format != MODEL_FORMAT {
            return Err(Error::Model(format!(
                "format {:?}, expected {MODEL_FORMAT:?}",
                artifact.format
            )));
        }
        artifact.schema.check()?;
        if artifact.classes != CLASSES {
            return Err(Error::Model(format!(
                "class order {:?}, expected {CLASSES:?}",
                artifact.classes
            )));
        }
        if artifact.boosters.len() != CLASSES.len() {
            return Err(Error::Model(format!(
                "{} boosters, expected one per class",
                artifact.boosters.len()
            )));
        }
        if artifact.surrogate.features != artifact.schema.features {
            return Err(Error::Model(
                "the surrogate's features are not the schema's".into(),
            ));
        }
        if let Some(calibration) = &artifact.calibration {
            calibration.check()?;
        }
        Self::from_artifact(artifact)
    }

    /// SHA-256 (hex) of the JSON: the model's version.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The first 12 hex digits of the version, for display.
    pub fn short_version(&self) -> &str {
        self.version.get(..12).unwrap_or(&self.version)
    }

    /// The feature schema.
    pub fn schema(&self) -> &Schema {
        &self.artifact.schema
    }

    /// What it was trained on.
    pub fn training(&self) -> &TrainingInfo {
        &self.artifact.training
    }

    /// Cross-validation results, when cross-validation ran.
    pub fn metrics(&self) -> Option<&CrossValidation> {
        self.artifact.metrics.as_ref()
    }

    /// Gain importance of each feature, most important first.
    pub fn importance(&self) -> &[FeatureImportance] {
        &self.artifact.importance
    }

    /// The surrogate tree.
    pub fn surrogate(&self) -> &Surrogate {
        &self.artifact.surrogate
    }

    /// The surrogate's rules.
    pub fn surrogate_rules(&self) -> &[Rule] {
        &self.artifact.surrogate.rules
    }

    /// The calibrator, or `None` for a model written before calibration existed
    /// ("uncalibrated": its probabilities are the boosters' raw ones).
    pub fn calibration(&self) -> Option<&Calibration> {
        self.artifact.calibration.as_ref()
    }

    /// Class probabilities of one row (values in schema order), in [`CLASSES`] order,
    /// calibrated when the model has a calibrator. A NaN value is read as missing, as the
    /// boosters were trained to.
    pub fn predict_proba(&self, row: &[f64]) -> Result<[f64; 3]> {
        Ok(self.calibrate(self.predict_proba_raw(row)?))
    }

    /// The boosters' softmax probabilities of one row, before calibration.
    pub fn predict_proba_raw(&self, row: &[f64]) -> Result<[f64; 3]> {
        self.check_width(row)?;
        Ok(self.ensemble().proba(row))
    }

    /// Class probabilities of many rows, calibrated as [`TrainedModel::predict_proba`]'s.
    pub fn predict_proba_rows(&self, rows: &[Vec<f64>]) -> Result<Vec<[f64; 3]>> {
        Ok(self
            .predict_proba_rows_raw(rows)?
            .into_iter()
            .map(|p| self.calibrate(p))
            .collect())
    }

    /// The boosters' softmax probabilities of many rows, before calibration.
    pub fn predict_proba_rows_raw(&self, rows: &[Vec<f64>]) -> Result<Vec<[f64; 3]>> {
        for row in rows {
            self.check_width(row)?;
        }
        Ok(self.ensemble().proba_rows(rows))
    }

    fn calibrate(&self, raw: [f64; 3]) -> [f64; 3] {
        match &self.artifact.calibration {
            Some(c) => c.apply(raw),
            None => raw,
        }
    }

    fn check_width(&self, row: &[f64]) -> Result<()> {
        let cols = self.artifact.schema.len();
        if row.len() == cols {
            Ok(())
        } else {
            Err(Error::Dataset(format!(
                "a row has {} values, the model's schema {cols}",
                row.len()
            )))
        }
    }

    fn ensemble(&self) -> Ensemble<'_> {
        Ensemble {
            boosters: &self.artifact.boosters,
            cols: self.artifact.schema.len(),
        }
    }

    /// The engine-facing classifier.
    pub fn classifier(&self) -> ModelClassifier {
        ModelClassifier {
            model: self.clone(),
        }
    }
}

/// A [`TrainedModel`] as the classify stage's [`Classifier`].
#[derive(Debug, Clone)]
pub struct ModelClassifier {
    model: TrainedModel,
}

/// Features named in an explanation.
const TOP_CONTRIBUTIONS: usize = 5;

/// A metric counts as rising when its trend adds this share of its level every week.
const RISING_SHARE: f64 = 0.02;

impl ModelClassifier {
    /// The classification of a complete row (values in schema order, as many as the schema has:
    /// [`Schema::row_from_features`] guarantees it).
    fn classify_row(&self, row: &[f64]) -> Classification {
        let model = &self.model;
        let schema = model.schema();
        let ensemble = model.ensemble();
        let p = model.calibrate(ensemble.proba(row));
        let class = argmax(&p);
        let k = class_index(class);
        let contributions = ensemble.contributions(k, row);
        let mut pushes: Vec<(usize, f64)> = contributions
            .iter()
            .take(schema.len())
            .copied()
            .enumerate()
            .filter(|(_, c)| *c > 0.0)
            .collect();
        pushes.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        pushes.truncate(TOP_CONTRIBUTIONS);
        let evidence: Vec<Evidence> = pushes
            .iter()
            .map(|&(i, c)| Evidence {
                feature: schema.features[i].clone(),
                value: row.get(i).copied(),
                test: format!("pushes {class} by {c:+.3} log-odds"),
                held: true,
            })
            .collect();
        let others: Vec<String> = CLASSES
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != k)
            .map(|(j, c)| format!("{c} {:.2}", p[j]))
            .collect();
        let pushed: Vec<String> = pushes
            .iter()
            .map(|&(i, _)| {
                format!(
                    "{} = {}",
                    schema.features[i],
                    value_text(&schema.features[i], row[i])
                )
            })
            .collect();
        let mut rule = format!(
            "{MODEL_NAME} model {}: {class} with {}p = {:.2} ({})",
            model.short_version(),
            if model.calibration().is_some() {
                ""
            } else {
                "uncalibrated "
            },
            p[k],
            others.join(", ")
        );
        if !pushed.is_empty() {
            rule.push_str(&format!("; pushed by {}", pushed.join(", ")));
        }
        let rising = rising(schema, row);
        if !rising.is_empty() {
            rule.push_str(&format!("; rising together: {}", rising.join(", ")));
        }
        if let Some(r) = model.surrogate().rule_for(row) {
            rule.push_str(&format!("; surrogate rule: {r}"));
        }
        Classification {
            class,
            confidence: p[k].clamp(0.0, 1.0),
            model: MODEL_NAME.to_string(),
            model_version: model.version().to_string(),
            explanation: Explanation {
                code: "model".to_string(),
                rule,
                evidence,
            },
        }
    }
}

fn value_text(name: &str, v: f64) -> String {
    if name.ends_with("_trend") {
        format!("{v:+.3}/week")
    } else {
        format!("{v:.2}")
    }
}

/// Metrics whose trend adds at least [`RISING_SHARE`] of their level a week.
fn rising(schema: &Schema, row: &[f64]) -> Vec<String> {
    let fp = schema.fingerprint().len();
    let n = schema.metrics.len();
    schema
        .metrics
        .iter()
        .enumerate()
        .filter_map(|(m, name)| {
            let trend = *row.get(fp + m)?;
            let level = *row.get(fp + n + m)?;
            (trend > 0.0 && trend >= RISING_SHARE * level.abs())
                .then(|| format!("{name} {:+.1} points/week", trend * 100.0))
        })
        .collect()
}

impl Classifier for ModelClassifier {
    fn name(&self) -> &str {
        MODEL_NAME
    }

    fn version(&self) -> &str {
        self.model.version()
    }

    /// A vector with some weeks missing is still classified when every metric has at least
    /// two of its four weeks, the missing ones filled from the nearest present week: a gap of
    /// a week does not blind the model. Missing data lowers the confidence and never shrinks
    /// anything: a scale-down on filled data becomes `remain` (`missing_dimension`). With a
    /// metric missing more, `remain` (`insufficient_data`).
    fn classify(&self, features: &FeatureVector) -> Classification {
        let schema = self.model.schema();
        let (row, missing) = schema.row_with_filled_weeks(features);
        let wanted = schema.fingerprint().len();
        let coverage = wanted.saturating_sub(missing.len()) as f64 / wanted.max(1) as f64;
        let names = missing
            .iter()
            .map(|e| e.feature.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let Some(row) = row else {
            let rule = format!(
                "insufficient data: {} of {wanted} weekly features missing ({names}); never scale on missing data",
                missing.len(),
            );
            // As the bootstrap does: the less data, the surer that nothing should change.
            return Classification {
                class: Class::Remain,
                confidence: (0.6 + 0.4 * (1.0 - coverage)).clamp(0.0, 1.0),
                model: MODEL_NAME.to_string(),
                model_version: self.model.version().to_string(),
                explanation: Explanation {
                    code: "insufficient_data".to_string(),
                    rule,
                    evidence: missing,
                },
            };
        };
        let mut c = self.classify_row(&row);
        if missing.is_empty() {
            return c;
        }
        c.confidence = (c.confidence * (0.9 + 0.1 * coverage)).clamp(0.0, 1.0);
        let note = format!(
            "{} of {wanted} weekly features missing ({names}), filled from the nearest week present (a metric missing throughout: an explicit missing value)",
            missing.len()
        );
        if c.class == Class::ScaleDown {
            c.explanation.rule = format!(
                "would scale down ({}), but {note}: never shrink on missing data",
                c.explanation.rule
            );
            c.explanation.code = "missing_dimension".to_string();
            c.class = Class::Remain;
        } else {
            c.explanation.rule = format!("{}; {note}", c.explanation.rule);
        }
        c.explanation.evidence.extend(missing);
        c
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::dataset::{DatasetConfig, build};
    use crate::evaluate::evaluate;
    use crate::history::{HistoryConfig, simulate};
    use crate::testkit::{instance_a, instance_b, postgres_scenarios};

    use std::sync::OnceLock;

    fn small_history(seed: u64) -> crate::History {
        simulate(
            &postgres_scenarios(),
            &HistoryConfig {
                seed,
                targets_per_scenario: 20,
                fresh_targets: 100,
                ..HistoryConfig::default()
            },
        )
        .unwrap()
    }

    fn config() -> TrainConfig {
        TrainConfig {
            folds: 0,
            booster: BoosterParams {
                iterations: 60,
                ..BoosterParams::default()
            },
            ..TrainConfig::default()
        }
    }

    /// One model for the tests that only read it.
    fn model() -> &'static TrainedModel {
        static MODEL: OnceLock<TrainedModel> = OnceLock::new();
        MODEL.get_or_init(|| {
            let h = small_history(1);
            let d = build(&h, &h.events, &DatasetConfig::default()).unwrap();
            train(&d, &config(), &mut |_, _, _| {}).unwrap()
        })
    }

    #[test]
    fn quickstart_instance_b_scales_up_and_says_what_rises() {
        let c = model().classifier().classify(&instance_b());
        assert_eq!(c.class, Class::ScaleUp, "{c:#?}");
        assert!(c.confidence >= 0.8, "{c:#?}");
        assert_eq!(c.model, MODEL_NAME);
        assert_eq!(c.model_version, model().version());
        assert_eq!(c.explanation.code, "model");
        let rule = &c.explanation.rule;
        let rising = rule.split("rising together: ").nth(1).unwrap_or_default();
        for metric in ["cpu", "memory", "connections", "iops"] {
            assert!(rising.contains(metric), "{rule}");
        }
        assert!(rule.contains("surrogate rule: if "), "{rule}");
        assert!(!c.explanation.evidence.is_empty());
        for e in &c.explanation.evidence {
            assert!(e.held && e.value.is_some(), "{e:?}");
            assert!(model().schema().features.contains(&e.feature));
            assert!(e.test.starts_with("pushes scale_up by +"), "{e:?}");
        }
    }

    #[test]
    fn quickstart_instance_a_scales_down() {
        let c = model().classifier().classify(&instance_a());
        assert_eq!(c.class, Class::ScaleDown, "{c:#?}");
        assert!(c.confidence >= 0.8, "{c:#?}");
        assert!(
            !c.explanation.rule.contains("rising together"),
            "{}",
            c.explanation.rule
        );
    }

    #[test]
    fn missing_features_never_shrink_and_too_few_are_insufficient_data() {
        let classifier = model().classifier();
        let complete = classifier.classify(&instance_a());
        assert_eq!(complete.class, Class::ScaleDown);
        let mut fv = instance_a();
        fv.features[5].value = None;
        fv.features[5].coverage = 0.2;
        let c = classifier.classify(&fv);
        assert_eq!(c.class, Class::Remain, "{c:#?}");
        assert_eq!(c.explanation.code, "missing_dimension");
        assert!(
            c.explanation
                .evidence
                .iter()
                .any(|e| e.feature == "memory_w3" && e.value.is_none())
        );
        assert!(
            c.explanation.rule.contains("would scale down"),
            "{}",
            c.explanation.rule
        );
        assert!(c.explanation.rule.contains("memory_w3"));
        let nothing = classifier.classify(&FeatureVector::default());
        assert_eq!(nothing.class, Class::Remain);
        assert_eq!(nothing.explanation.code, "insufficient_data");
        assert_eq!(nothing.explanation.evidence.len(), 16);
    }

    /// A missing week does not blind the model: a target climbing on every dimension is
    /// still flagged with its last week missing, with a little less confidence; a metric with
    /// three weeks missing is insufficient data.
    #[test]
    fn a_missing_week_does_not_blind_the_model() {
        let classifier = model().classifier();
        let complete = classifier.classify(&instance_b());
        assert_eq!(complete.class, Class::ScaleUp);
        let mut fv = instance_b();
        for f in fv.features.iter_mut().filter(|f| f.name.ends_with("_w1")) {
            f.value = None;
            f.coverage = 0.3;
        }
        let c = classifier.classify(&fv);
        assert_eq!(c.class, Class::ScaleUp, "{c:#?}");
        assert!(c.confidence <= complete.confidence);
        assert!(
            c.explanation.rule.contains("iops_w1"),
            "{}",
            c.explanation.rule
        );
        for f in fv
            .features
            .iter_mut()
            .filter(|f| f.name.starts_with("iops_w") && !f.name.ends_with("_w4"))
        {
            f.value = None;
        }
        let c = classifier.classify(&fv);
        assert_eq!(c.class, Class::Remain, "{c:#?}");
        assert_eq!(c.explanation.code, "insufficient_data");
    }

    #[test]
    fn same_seed_same_bytes_and_the_json_round_trips() {
        let h = simulate(
            &postgres_scenarios(),
            &HistoryConfig {
                seed: 5,
                weeks: 12,
                targets_per_scenario: 8,
                fresh_targets: 40,
                ..HistoryConfig::default()
            },
        )
        .unwrap();
        let d = build(&h, &h.events, &DatasetConfig::default()).unwrap();
        let config = TrainConfig {
            folds: 3,
            ..config()
        };
        let a = train(&d, &config, &mut |_, _, _| {}).unwrap();
        let b = train(&d, &config, &mut |_, _, _| {}).unwrap();
        assert_eq!(a.to_json(), b.to_json());
        assert_eq!(a.version(), b.version());
        assert_eq!(a.version().len(), 64);
        assert_eq!(a.short_version(), &a.version()[..12]);
        let loaded = TrainedModel::from_json(a.to_json()).unwrap();
        assert_eq!(loaded.to_json(), a.to_json());
        assert_eq!(loaded.version(), a.version());
        assert_eq!(loaded.surrogate_rules(), a.surrogate_rules());
        assert_eq!(loaded.metrics(), a.metrics());
        assert!(a.calibration().is_some());
        assert_eq!(loaded.calibration(), a.calibration());
        assert_eq!(loaded.training().dataset, d.fingerprint());
        for fv in [instance_a(), instance_b()] {
            assert_eq!(
                loaded.classifier().classify(&fv),
                a.classifier().classify(&fv)
            );
        }
        // Another seed folds differently: the recorded metrics, hence the version, change.
        let c = train(&d, &TrainConfig { seed: 2, ..config }, &mut |_, _, _| {}).unwrap();
        assert_ne!(c.version(), a.version());
    }

    /// Calibrated on the cross-validation's out-of-fold predictions, the model's
    /// probabilities score better on a history it has never seen, and 0.8 means at least 80 %.
    #[test]
    fn calibration_lowers_the_brier_score_on_a_held_out_history() {
        let h = small_history(3);
        let d = build(&h, &h.events, &DatasetConfig::default()).unwrap();
        let m = train(
            &d,
            &TrainConfig {
                folds: 3,
                ..config()
            },
            &mut |_, _, _| {},
        )
        .unwrap();
        let c = m.calibration().unwrap();
        assert!(c.source.contains("out-of-fold"), "{}", c.source);
        assert_eq!(c.rows, d.rows.len());
        let fitted = &c.held_out;
        let cross_fitted = fitted.calibrated.as_ref().unwrap();
        assert!(cross_fitted.brier < fitted.raw.brier, "{fitted:#?}");
        let held = small_history(77);
        let report = evaluate(&m, &held, &held.events, &DatasetConfig::default()).unwrap();
        let q = &report.probabilities;
        assert_eq!(q.rows, report.windows);
        let calibrated = q.calibrated.as_ref().unwrap();
        assert!(calibrated.brier < q.raw.brier, "{q:#?}");
        assert!(calibrated.ece < q.raw.ece, "{q:#?}");
        assert!(calibrated.at_threshold.accuracy >= 0.8, "{q:#?}");
        let rows: usize = calibrated.bins.iter().map(|b| b.rows).sum();
        assert_eq!(rows, q.rows);
        // Calibrating does not cost classification quality.
        assert!(report.model.classes.macro_f1 >= 0.88, "{report:#?}");
        for fv in [instance_a(), instance_b()] {
            let row = m.schema().row_from_features(&fv).unwrap();
            let p = m.predict_proba(&row).unwrap();
            assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{p:?}");
            assert!(p.iter().all(|v| (0.0..=1.0).contains(v)), "{p:?}");
            assert_ne!(p, m.predict_proba_raw(&row).unwrap());
            let c = m.classifier().classify(&fv);
            assert_eq!(c.confidence, p[class_index(c.class)]);
        }
    }

    /// Without cross-validation, boosters fitted on four fifths of the targets predict the
    /// rest for the calibrator; the model itself is still fitted on every row.
    #[test]
    fn without_folds_a_fifth_of_the_targets_is_held_out_for_calibration() {
        let m = model();
        let c = m.calibration().unwrap();
        assert!(c.source.contains("held out"), "{}", c.source);
        assert!(c.rows > 0 && c.rows < m.training().rows / 3, "{c:#?}");
        assert!(c.held_out.calibrated.is_some());
        let h = small_history(4);
        let d = build(&h, &h.events, &DatasetConfig::default()).unwrap();
        let mut calls = Vec::new();
        train(&d, &config(), &mut |stage, done, total| {
            calls.push((stage, done, total))
        })
        .unwrap();
        assert_eq!(calls.first(), Some(&(Stage::Calibration, 1, 3)));
        assert!(calls.contains(&(Stage::Calibration, 3, 3)));
    }

    /// A model written before calibration existed has no `calibration`: it loads, keeps its
    /// bytes (hence its version), reports raw probabilities and says it is uncalibrated.
    #[test]
    fn an_artifact_without_calibrator_loads_as_uncalibrated() {
        let json = model().to_json();
        let start = json.find(r#","calibration":"#).unwrap();
        let end = json.find(r#","boosters":"#).unwrap();
        let old = format!("{}{}", &json[..start], &json[end..]);
        let loaded = TrainedModel::from_json(&old).unwrap();
        assert!(loaded.calibration().is_none());
        assert_eq!(loaded.to_json(), old);
        assert_eq!(loaded.version(), hex(&Sha256::digest(old.as_bytes())));
        assert_ne!(loaded.version(), model().version());
        let row = model().schema().row_from_features(&instance_b()).unwrap();
        assert_eq!(
            loaded.predict_proba(&row).unwrap(),
            model().predict_proba_raw(&row).unwrap()
        );
        let c = loaded.classifier().classify(&instance_b());
        assert_eq!(c.class, Class::ScaleUp);
        assert!(
            c.explanation
                .rule
                .contains("scale_up with uncalibrated p = "),
            "{}",
            c.explanation.rule
        );
        let calibrated = model().classifier().classify(&instance_b());
        assert!(!calibrated.explanation.rule.contains("uncalibrated"));
        let held = small_history(77);
        let report = evaluate(&loaded, &held, &held.events, &DatasetConfig::default()).unwrap();
        assert!(report.probabilities.calibrated.is_none());
    }

    #[test]
    fn malformed_artifacts_are_refused() {
        let json = model().to_json();
        assert!(matches!(TrainedModel::from_json("{"), Err(Error::Json(_))));
        let other = json.replacen(MODEL_FORMAT, "setpoint-learn/model/0", 1);
        assert!(matches!(
            TrainedModel::from_json(&other),
            Err(Error::Model(m)) if m.contains("format")
        ));
        let mut value: serde_json::Value = serde_json::from_str(json).unwrap();
        value["schema"]["features"][0] = "cpu_w9".into();
        assert!(matches!(
            TrainedModel::from_json(&value.to_string()),
            Err(Error::Model(m)) if m.contains("schema")
        ));
        let mut value: serde_json::Value = serde_json::from_str(json).unwrap();
        value["boosters"].as_array_mut().unwrap().pop();
        assert!(matches!(
            TrainedModel::from_json(&value.to_string()),
            Err(Error::Model(m)) if m.contains("boosters")
        ));
        let mut value: serde_json::Value = serde_json::from_str(json).unwrap();
        value["classes"] = serde_json::json!(["scale_up", "remain", "scale_down"]);
        assert!(TrainedModel::from_json(&value.to_string()).is_err());
    }

    #[test]
    fn progress_reports_every_stage_in_order() {
        let h = small_history(4);
        let d = build(&h, &h.events, &DatasetConfig::default()).unwrap();
        let mut calls = Vec::new();
        train(
            &d,
            &TrainConfig {
                folds: 2,
                ..config()
            },
            &mut |stage, done, total| calls.push((stage, done, total)),
        )
        .unwrap();
        assert_eq!(calls.first(), Some(&(Stage::CrossValidation, 1, 6)));
        assert!(calls.contains(&(Stage::CrossValidation, 6, 6)));
        let fit: Vec<_> = calls.iter().filter(|c| c.0 == Stage::Fit).collect();
        assert_eq!(fit.len(), 3);
        assert_eq!(calls.last(), Some(&(Stage::Surrogate, 1, 1)));
        let cv = calls
            .iter()
            .filter(|c| c.0 == Stage::CrossValidation)
            .count();
        assert_eq!(cv, 6);
    }

    #[test]
    fn a_dataset_without_some_class_is_refused() {
        let h = small_history(1);
        let d = build(&h, &[], &DatasetConfig::default()).unwrap();
        let err = train(&d, &config(), &mut |_, _, _| {}).unwrap_err();
        assert!(
            matches!(&err, Error::Dataset(m) if m.contains("scale_up")),
            "{err}"
        );
    }

    #[test]
    fn on_a_held_out_history_the_model_beats_the_bootstrap() {
        let held = small_history(77);
        let report = evaluate(model(), &held, &held.events, &DatasetConfig::default()).unwrap();
        assert_eq!(report.windows, held.targets.len() * 10);
        let (m, b) = (&report.model, &report.bootstrap);
        assert!(m.classes.macro_f1 >= 0.88, "{report:#?}");
        assert!(
            m.classes.macro_f1 > b.classes.macro_f1 + 0.05,
            "{report:#?}"
        );
        assert!(m.flagged > b.flagged, "{report:#?}");
        assert!(m.regretted < b.regretted, "{report:#?}");
        assert!(m.mean_weeks_ahead >= 1.0 && m.mean_weeks_ahead <= 3.0);
        assert!(m.reclaimed <= m.oversized && m.reclaimed > m.oversized * 9 / 10);
        // The surrogate is a readable approximation, not the model: it may not do better.
        assert!(report.surrogate.classes.macro_f1 <= m.classes.macro_f1 + 0.02);
    }

    /// A technology with no connection limit and a gauge (Kafka-like consumer lag): the schema,
    /// the outcome model and the classifier follow its metrics.
    #[test]
    fn other_technologies_get_their_own_schema() {
        use setpoint_core::{Feature, SimMetric, SimScenario};
        let metric = |name: &str, level: f64, max: f64| SimMetric {
            metric: name.to_string(),
            weeks: vec![level; 5],
            daily_amplitude: 0.0,
            noise: 0.0,
            lift: None,
            scale: Some((0.5, 1.5)),
            min: 0.0,
            max,
        };
        let scenario = |name: &str, cpu: f64, memory: f64| SimScenario {
            name: name.to_string(),
            description: String::new(),
            id_prefix: format!("kafka-{name}"),
            count: 1,
            sizes: Vec::new(),
            metrics: vec![
                metric("cpu", cpu, 1.0),
                metric("memory", memory, 1.0),
                metric("lag", 5e4, 1e7),
            ],
            gap_hours: None,
        };
        let h = simulate(
            &[scenario("idle", 0.1, 0.4), scenario("busy", 0.75, 0.8)],
            &HistoryConfig {
                targets_per_scenario: 30,
                fresh_targets: 120,
                ..HistoryConfig::default()
            },
        )
        .unwrap();
        assert_eq!(h.metrics[2].role, crate::history::Role::Gauge);
        assert!(
            h.targets
                .iter()
                .all(|t| t.weekly[2].iter().all(|v| *v >= 0.0))
        );
        let d = build(&h, &h.events, &DatasetConfig::default()).unwrap();
        assert_eq!(d.schema.len(), 18);
        let m = train(&d, &config(), &mut |_, _, _| {}).unwrap();
        let vector = |cpu: f64, memory: f64| FeatureVector {
            features: ["cpu", "memory", "lag"]
                .iter()
                .zip([cpu, memory, 5e4])
                .flat_map(|(name, v)| {
                    (1..=4).rev().map(move |k| Feature {
                        name: format!("{name}_w{k}"),
                        value: Some(v),
                        coverage: 1.0,
                    })
                })
                .collect(),
        };
        let c = m.classifier();
        assert_eq!(c.classify(&vector(0.08, 0.3)).class, Class::ScaleDown);
        assert_eq!(c.classify(&vector(0.95, 0.7)).class, Class::ScaleUp);
        // A PostgreSQL fingerprint is not this model's input.
        assert_eq!(
            c.classify(&instance_b()).explanation.code,
            "insufficient_data"
        );
        assert!(m.predict_proba(&[0.5; 3]).is_err());
    }

    #[test]
    fn the_model_learns_bootstrap_labels_too() {
        let h = small_history(2);
        let d = build(
            &h,
            &h.events,
            &DatasetConfig {
                labels: crate::Labels::Bootstrap {
                    thresholds: setpoint_classify::Thresholds::default(),
                },
                ..DatasetConfig::default()
            },
        )
        .unwrap();
        let m = train(
            &d,
            &TrainConfig {
                folds: 3,
                ..config()
            },
            &mut |_, _, _| {},
        )
        .unwrap();
        assert_eq!(m.training().labels, "bootstrap");
        let cv = m.metrics().unwrap();
        // Phase 1: the model imitates the rules it was labelled by.
        assert!(cv.model.macro_f1 > 0.9, "{cv:#?}");
        assert_eq!(cv.bootstrap.macro_f1, 1.0);
        assert_eq!(m.classifier().classify(&instance_b()).class, Class::Remain);
    }
}
