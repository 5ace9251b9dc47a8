//! How good a model is: cross-validation on its training data, and a replay of a held-out
//! history that compares it with the bootstrap rules on what operators care about.
//!
//! Cross-validation folds are **grouped by target** (all windows of a target fall in one fold,
//! since consecutive windows share three weeks and would otherwise leak answers between folds)
//! and **stratified** by the classes a target's windows hold, so every fold sees every kind of
//! target. Fold assignment is a seeded shuffle: the same seed gives the same folds.

use std::collections::{BTreeMap, BTreeSet};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use setpoint_classify::{BootstrapHeuristics, Classifier, Thresholds};
use setpoint_core::Class;

use crate::calibrate::{HeldOutPredictions, round6};
use crate::dataset::{Dataset, DatasetConfig, build, vector};
use crate::history::{Event, History};
use crate::model::{Ensemble, Stage, TrainConfig, TrainedModel, argmax, fit_boosters};
use crate::{Result, class_index};

/// Classification quality against labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassMetrics {
    /// Rows evaluated.
    pub rows: usize,
    /// Share classified as labelled.
    pub accuracy: f64,
    /// Mean of the per-class F1 scores.
    pub macro_f1: f64,
    /// Per-class recall, in [`CLASSES`](crate::CLASSES) order.
    pub recall: [f64; 3],
    /// Per-class precision, in [`CLASSES`](crate::CLASSES) order.
    pub precision: [f64; 3],
    /// `confusion[label][predicted]`, in [`CLASSES`](crate::CLASSES) order.
    pub confusion: [[usize; 3]; 3],
}

impl ClassMetrics {
    /// Compares predictions with labels.
    pub fn new(labels: &[Class], predicted: &[Class]) -> Self {
        let mut confusion = [[0usize; 3]; 3];
        for (l, p) in labels.iter().zip(predicted) {
            confusion[class_index(*l)][class_index(*p)] += 1;
        }
        let rows = labels.len().min(predicted.len());
        let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let mut recall = [0.0; 3];
        let mut precision = [0.0; 3];
        let mut f1 = [0.0; 3];
        for k in 0..3 {
            let tp = confusion[k][k];
            let actual: usize = confusion[k].iter().sum();
            let said: usize = (0..3).map(|l| confusion[l][k]).sum();
            recall[k] = ratio(tp, actual);
            precision[k] = ratio(tp, said);
            f1[k] = if recall[k] + precision[k] > 0.0 {
                2.0 * recall[k] * precision[k] / (recall[k] + precision[k])
            } else {
                0.0
            };
        }
        let correct: usize = (0..3).map(|k| confusion[k][k]).sum();
        Self {
            rows,
            accuracy: ratio(correct, rows),
            macro_f1: f1.iter().sum::<f64>() / 3.0,
            recall,
            precision,
            confusion,
        }
    }
}

/// Importance of one feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureImportance {
    /// Feature name.
    pub feature: String,
    /// Share of the total split gain (averaged over the three boosters).
    pub gain: f64,
}

/// Cross-validation results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrossValidation {
    /// Number of folds.
    pub folds: u32,
    /// The model's out-of-fold predictions against the labels, pooled over the folds.
    pub model: ClassMetrics,
    /// Macro-F1 of each fold.
    pub fold_macro_f1: Vec<f64>,
    /// The bootstrap heuristics on the same rows.
    pub bootstrap: ClassMetrics,
}

/// The confidence a policy asks of a classification before it acts (the decision policy's
/// default `min_confidence`): the reliability reports say how often the model is right above it.
pub const CONFIDENCE_THRESHOLD: f64 = 0.8;

/// Bins of a reliability table, of equal width on `[0, 1]`.
pub const RELIABILITY_BINS: usize = 10;

/// One bin of a reliability table: rows whose predicted class's probability falls in
/// `[lower, upper)` (the last bin includes 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReliabilityBin {
    /// Lower edge.
    pub lower: f64,
    /// Upper edge.
    pub upper: f64,
    /// Rows in the bin.
    pub rows: usize,
    /// Their mean confidence (0 when the bin is empty).
    pub mean_confidence: f64,
    /// Share of them whose predicted class is the label (0 when the bin is empty).
    pub accuracy: f64,
}

/// How the classifications at or above a confidence fare.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AtThreshold {
    /// The confidence.
    pub threshold: f64,
    /// Rows classified with at least that confidence.
    pub rows: usize,
    /// Their share of all rows.
    pub share: f64,
    /// Share of them classified as labelled: what the threshold means (0 when there are none).
    pub accuracy: f64,
}

/// How well one set of probabilities matches the labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reliability {
    /// Multiclass Brier score: mean over rows of the sum over classes of `(p - y)²`, from 0
    /// (certain and right) to 2 (certain and wrong).
    pub brier: f64,
    /// Expected calibration error: the rows-weighted mean gap between a bin's mean confidence
    /// and its accuracy.
    pub ece: f64,
    /// The reliability table, [`RELIABILITY_BINS`] bins on the predicted class's confidence.
    pub bins: Vec<ReliabilityBin>,
    /// The rows at [`CONFIDENCE_THRESHOLD`] or above.
    pub at_threshold: AtThreshold,
}

impl Reliability {
    /// Scores `proba` (in [`CLASSES`](crate::CLASSES) order) against `labels`; the predicted
    /// class of a row is its most probable one, as the classifier's.
    pub fn new(proba: &[[f64; 3]], labels: &[Class]) -> Self {
        let n = proba.len().min(labels.len());
        let mut brier = 0.0;
        let mut sums = vec![(0usize, 0.0f64, 0usize); RELIABILITY_BINS];
        let (mut confident, mut confident_right) = (0usize, 0usize);
        for (p, label) in proba.iter().zip(labels) {
            let k = class_index(*label);
            brier += p
                .iter()
                .enumerate()
                .map(|(j, v)| (v - if j == k { 1.0 } else { 0.0 }).powi(2))
                .sum::<f64>();
            let predicted = argmax(p);
            let confidence = p[class_index(predicted)].clamp(0.0, 1.0);
            let right = usize::from(predicted == *label);
            let bin = ((confidence * RELIABILITY_BINS as f64) as usize).min(RELIABILITY_BINS - 1);
            if let Some(slot) = sums.get_mut(bin) {
                slot.0 += 1;
                slot.1 += confidence;
                slot.2 += right;
            }
            if confidence >= CONFIDENCE_THRESHOLD {
                confident += 1;
                confident_right += right;
            }
        }
        // Rounded: these numbers are stored in model artifacts (see `round6`).
        let ratio = |a: f64, b: usize| if b == 0 { 0.0 } else { round6(a / b as f64) };
        let bins: Vec<ReliabilityBin> = sums
            .iter()
            .enumerate()
            .map(|(i, &(rows, conf, right))| ReliabilityBin {
                lower: i as f64 / RELIABILITY_BINS as f64,
                upper: (i + 1) as f64 / RELIABILITY_BINS as f64,
                rows,
                mean_confidence: ratio(conf, rows),
                accuracy: ratio(right as f64, rows),
            })
            .collect();
        let ece = bins
            .iter()
            .map(|b| b.rows as f64 * (b.mean_confidence - b.accuracy).abs())
            .sum::<f64>();
        Self {
            brier: ratio(brier, n),
            ece: ratio(ece, n),
            bins,
            at_threshold: AtThreshold {
                threshold: CONFIDENCE_THRESHOLD,
                rows: confident,
                share: ratio(confident as f64, n),
                accuracy: ratio(confident_right as f64, confident),
            },
        }
    }
}

/// A model's probabilities on rows it did not train on, raw (the boosters' softmax) and
/// calibrated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbabilityQuality {
    /// Rows scored.
    pub rows: usize,
    /// The boosters' softmax probabilities.
    pub raw: Reliability,
    /// The calibrated ones; `None` for a model without a calibrator.
    pub calibrated: Option<Reliability>,
}

impl ProbabilityQuality {
    /// Scores raw and, when there are any, calibrated probabilities against `labels`.
    pub fn new(raw: &[[f64; 3]], calibrated: Option<&[[f64; 3]]>, labels: &[Class]) -> Self {
        Self {
            rows: raw.len().min(labels.len()),
            raw: Reliability::new(raw, labels),
            calibrated: calibrated.map(|c| Reliability::new(c, labels)),
        }
    }
}

/// Fold of each row: targets grouped, stratified by the classes of their windows.
fn folds(dataset: &Dataset, k: u32, seed: u64) -> Vec<usize> {
    let mut classes: BTreeMap<&str, [bool; 3]> = BTreeMap::new();
    for row in &dataset.rows {
        classes.entry(row.target.as_str()).or_default()[class_index(row.label)] = true;
    }
    let mut strata: BTreeMap<[bool; 3], Vec<&str>> = BTreeMap::new();
    for (target, seen) in &classes {
        strata.entry(*seen).or_default().push(target);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut fold_of: BTreeMap<&str, usize> = BTreeMap::new();
    let mut next = 0usize;
    for targets in strata.values_mut() {
        targets.shuffle(&mut rng);
        for t in targets.iter() {
            fold_of.insert(t, next % k as usize);
            next += 1;
        }
    }
    dataset
        .rows
        .iter()
        .map(|r| fold_of.get(r.target.as_str()).copied().unwrap_or(0))
        .collect()
}

/// Cross-validates the boosters of `config` on `dataset`; also returns the out-of-fold
/// probabilities, which the calibrator is fitted on.
pub(crate) fn cross_validate(
    dataset: &Dataset,
    config: &TrainConfig,
    progress: &mut dyn FnMut(Stage, usize, usize),
) -> Result<(CrossValidation, HeldOutPredictions)> {
    let k = config.folds.max(2);
    let fold = folds(dataset, k, config.seed);
    let mut proba = vec![[0.0; 3]; dataset.rows.len()];
    let mut predicted = vec![Class::Remain; dataset.rows.len()];
    let mut fold_macro_f1 = Vec::new();
    let total = 3 * k as usize;
    for f in 0..k as usize {
        let train: Vec<usize> = (0..dataset.rows.len()).filter(|&i| fold[i] != f).collect();
        let test: Vec<usize> = (0..dataset.rows.len()).filter(|&i| fold[i] == f).collect();
        if test.is_empty() {
            continue;
        }
        let p = fit_and_predict(dataset, &train, &test, config, &mut |b| {
            progress(Stage::CrossValidation, 3 * f + b, total)
        })?;
        let mut fold_labels = Vec::with_capacity(test.len());
        let mut fold_predicted = Vec::with_capacity(test.len());
        for (&i, p) in test.iter().zip(&p) {
            proba[i] = *p;
            predicted[i] = argmax(p);
            fold_labels.push(dataset.rows[i].label);
            fold_predicted.push(predicted[i]);
        }
        fold_macro_f1.push(ClassMetrics::new(&fold_labels, &fold_predicted).macro_f1);
    }
    let labels: Vec<Class> = dataset.rows.iter().map(|r| r.label).collect();
    let rules = BootstrapHeuristics::new(Thresholds::default());
    let bootstrap: Vec<Class> = dataset
        .rows
        .iter()
        .map(|r| rules.classify(&vector(&dataset.schema, &r.values)).class)
        .collect();
    let cv = CrossValidation {
        folds: k,
        model: ClassMetrics::new(&labels, &predicted),
        fold_macro_f1,
        bootstrap: ClassMetrics::new(&labels, &bootstrap),
    };
    let held = HeldOutPredictions {
        source: format!("out-of-fold predictions of the {k}-fold cross-validation"),
        proba,
        labels,
        groups: fold,
    };
    Ok((cv, held))
}

/// Share of the targets held out to calibrate a model trained without cross-validation: one
/// fold of this many.
const CALIBRATION_FOLDS: u32 = 5;

/// Without cross-validation: boosters fitted on all targets but one fold of
/// [`CALIBRATION_FOLDS`] predict that fold, for the calibrator only (the model itself is fitted
/// on every row). Its rows are grouped again by target for cross-fitting the reported quality.
pub(crate) fn held_out_predictions(
    dataset: &Dataset,
    config: &TrainConfig,
    progress: &mut dyn FnMut(Stage, usize, usize),
) -> Result<HeldOutPredictions> {
    let fold = folds(dataset, CALIBRATION_FOLDS, config.seed);
    let train: Vec<usize> = (0..dataset.rows.len()).filter(|&i| fold[i] != 0).collect();
    let test: Vec<usize> = (0..dataset.rows.len()).filter(|&i| fold[i] == 0).collect();
    let proba = fit_and_predict(dataset, &train, &test, config, &mut |b| {
        progress(Stage::Calibration, b, 3)
    })?;
    let held = dataset.subset(&test);
    let targets = held
        .rows
        .iter()
        .map(|r| r.target.as_str())
        .collect::<BTreeSet<_>>()
        .len();
    Ok(HeldOutPredictions {
        source: format!(
            "{} windows of {targets} targets (one in {CALIBRATION_FOLDS}) held out from boosters fitted on the others",
            test.len()
        ),
        proba,
        labels: held.rows.iter().map(|r| r.label).collect(),
        groups: folds(&held, CALIBRATION_FOLDS, config.seed.wrapping_add(1)),
    })
}

/// Fits boosters on the `train` rows and returns their raw probabilities for the `test` rows.
fn fit_and_predict(
    dataset: &Dataset,
    train: &[usize],
    test: &[usize],
    config: &TrainConfig,
    done: &mut dyn FnMut(usize),
) -> Result<Vec<[f64; 3]>> {
    let cols = dataset.schema.len();
    let rows: Vec<&[f64]> = train
        .iter()
        .map(|&i| dataset.rows[i].values.as_slice())
        .collect();
    let labels: Vec<Class> = train.iter().map(|&i| dataset.rows[i].label).collect();
    let boosters = fit_boosters(&rows, &labels, cols, &config.booster, config.seed, done)?;
    let ensemble = Ensemble {
        boosters: &boosters,
        cols,
    };
    let test_rows: Vec<Vec<f64>> = test
        .iter()
        .map(|&i| dataset.rows[i].values.clone())
        .collect();
    Ok(ensemble.proba_rows(&test_rows))
}

/// One classifier's record on a held-out history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutcomeReport {
    /// Which classifier.
    pub name: String,
    /// Against the outcome labels.
    pub classes: ClassMetrics,
    /// Degradation episodes (a run of weeks with events, after a quiet week) with at least
    /// one window ending in the `horizon` weeks before them.
    pub degradations: usize,
    /// Episodes with a `scale_up` on one of those windows.
    pub flagged: usize,
    /// Mean weeks between the first such `scale_up` and the episode.
    pub mean_weeks_ahead: f64,
    /// Episodes flagged at least two weeks before they began.
    #[serde(default)]
    pub flagged_two_weeks_ahead: usize,
    /// Windows that would have fitted in half the size (outcome `scale_down`).
    pub oversized: usize,
    /// Of those, windows classified `scale_down`: capacity reclaimed.
    pub reclaimed: usize,
    /// Windows classified `scale_down`.
    pub scale_downs: usize,
    /// `scale_down`s followed by a degradation within the horizon.
    pub regretted: usize,
}

/// A model, its surrogate and the bootstrap rules on a held-out history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeldOut {
    /// Windows replayed.
    pub windows: usize,
    /// The boosted model.
    pub model: OutcomeReport,
    /// The model's surrogate tree alone.
    pub surrogate: OutcomeReport,
    /// The bootstrap heuristics.
    pub bootstrap: OutcomeReport,
    /// The model's probabilities against the outcome labels: Brier score and reliability,
    /// raw and calibrated.
    pub probabilities: ProbabilityQuality,
}

/// Replays `history` (with `events` as outcomes, labelled by `config`'s horizon and levels)
/// through the model, its surrogate and the bootstrap rules.
pub fn evaluate(
    model: &TrainedModel,
    history: &History,
    events: &[Event],
    config: &DatasetConfig,
) -> Result<HeldOut> {
    let outcome_config = DatasetConfig {
        labels: crate::Labels::Outcomes,
        ..config.clone()
    };
    let dataset = build(history, events, &outcome_config)?;
    evaluate_dataset(model, &dataset, events, config.horizon_weeks)
}

/// Scores the windows of an outcome-labelled `dataset` (e.g. those after a time split)
/// through the model, its surrogate and the bootstrap rules; `events` are the outcomes the
/// labels came from.
pub fn evaluate_dataset(
    model: &TrainedModel,
    dataset: &Dataset,
    events: &[Event],
    horizon: u32,
) -> Result<HeldOut> {
    if dataset.schema.hash != model.schema().hash {
        return Err(crate::Error::Dataset(format!(
            "the history's features ({}) are not the model's ({})",
            dataset.schema.metrics.join(", "),
            model.schema().metrics.join(", ")
        )));
    }
    let values: Vec<Vec<f64>> = dataset.rows.iter().map(|r| r.values.clone()).collect();
    let raw = model.predict_proba_rows_raw(&values)?;
    let calibrated: Option<Vec<[f64; 3]>> = model
        .calibration()
        .map(|c| raw.iter().map(|p| c.apply(*p)).collect());
    let by_model: Vec<Class> = calibrated
        .as_deref()
        .unwrap_or(&raw)
        .iter()
        .map(argmax)
        .collect();
    let labels: Vec<Class> = dataset.rows.iter().map(|r| r.label).collect();
    let by_surrogate: Vec<Class> = values
        .iter()
        .map(|v| model.surrogate().predict(v))
        .collect();
    let rules = BootstrapHeuristics::new(Thresholds::default());
    let by_rules: Vec<Class> = values
        .iter()
        .map(|v| rules.classify(&vector(&dataset.schema, v)).class)
        .collect();
    Ok(HeldOut {
        windows: dataset.rows.len(),
        model: report("model", dataset, events, horizon, &by_model),
        surrogate: report("surrogate", dataset, events, horizon, &by_surrogate),
        bootstrap: report("bootstrap", dataset, events, horizon, &by_rules),
        probabilities: ProbabilityQuality::new(&raw, calibrated.as_deref(), &labels),
    })
}

fn report(
    name: &str,
    dataset: &Dataset,
    events: &[Event],
    horizon: u32,
    predicted: &[Class],
) -> OutcomeReport {
    let labels: Vec<Class> = dataset.rows.iter().map(|r| r.label).collect();
    let classes = ClassMetrics::new(&labels, predicted);
    let up: BTreeSet<(&str, u32)> = dataset
        .rows
        .iter()
        .zip(predicted)
        .filter(|(_, p)| **p == Class::ScaleUp)
        .map(|(r, _)| (r.target.as_str(), r.week))
        .collect();
    let windows: BTreeSet<(&str, u32)> = dataset
        .rows
        .iter()
        .map(|r| (r.target.as_str(), r.week))
        .collect();
    let event_weeks: BTreeSet<(&str, u32)> =
        events.iter().map(|e| (e.target.as_str(), e.week)).collect();
    let (mut degradations, mut flagged, mut ahead, mut two_ahead) = (0, 0, 0u64, 0);
    for &(target, week) in &event_weeks {
        if week > 0 && event_weeks.contains(&(target, week - 1)) {
            continue;
        }
        let before: Vec<u32> = (week.saturating_sub(horizon)..week)
            .filter(|t| windows.contains(&(target, *t)))
            .collect();
        if before.is_empty() {
            continue;
        }
        degradations += 1;
        if let Some(first) = before.iter().find(|t| up.contains(&(target, **t))) {
            flagged += 1;
            ahead += u64::from(week - first);
            if week - first >= 2 {
                two_ahead += 1;
            }
        }
    }
    let down = class_index(Class::ScaleDown);
    let up_k = class_index(Class::ScaleUp);
    OutcomeReport {
        name: name.to_string(),
        degradations,
        flagged,
        mean_weeks_ahead: if flagged == 0 {
            0.0
        } else {
            ahead as f64 / flagged as f64
        },
        flagged_two_weeks_ahead: two_ahead,
        oversized: classes.confusion[down].iter().sum(),
        reclaimed: classes.confusion[down][down],
        scale_downs: (0..3).map(|l| classes.confusion[l][down]).sum(),
        regretted: classes.confusion[up_k][down],
        classes,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn metrics_of_a_known_confusion() {
        use Class::*;
        let labels = [ScaleDown, ScaleDown, Remain, Remain, ScaleUp, ScaleUp];
        let predicted = [ScaleDown, Remain, Remain, Remain, ScaleUp, Remain];
        let m = ClassMetrics::new(&labels, &predicted);
        assert_eq!(m.confusion, [[1, 1, 0], [0, 2, 0], [0, 1, 1]]);
        assert!((m.accuracy - 4.0 / 6.0).abs() < 1e-12);
        assert_eq!(m.recall, [0.5, 1.0, 0.5]);
        assert_eq!(m.precision, [1.0, 0.5, 1.0]);
        // F1: 2/3, 2/3, 2/3.
        assert!((m.macro_f1 - 2.0 / 3.0).abs() < 1e-12, "{}", m.macro_f1);
        let perfect = ClassMetrics::new(&labels, &labels);
        assert_eq!(perfect.macro_f1, 1.0);
    }
}
