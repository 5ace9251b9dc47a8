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

/// Cross-validates the boosters of `config` on `dataset`.
pub(crate) fn cross_validate(
    dataset: &Dataset,
    config: &TrainConfig,
    progress: &mut dyn FnMut(Stage, usize, usize),
) -> Result<CrossValidation> {
    let k = config.folds.max(2);
    let cols = dataset.schema.len();
    let fold = folds(dataset, k, config.seed);
    let mut predicted = vec![Class::Remain; dataset.rows.len()];
    let mut fold_macro_f1 = Vec::new();
    let total = 3 * k as usize;
    for f in 0..k as usize {
        let train: Vec<usize> = (0..dataset.rows.len()).filter(|&i| fold[i] != f).collect();
        let test: Vec<usize> = (0..dataset.rows.len()).filter(|&i| fold[i] == f).collect();
        if test.is_empty() {
            continue;
        }
        let rows: Vec<&[f64]> = train
            .iter()
            .map(|&i| dataset.rows[i].values.as_slice())
            .collect();
        let labels: Vec<Class> = train.iter().map(|&i| dataset.rows[i].label).collect();
        let boosters = fit_boosters(&rows, &labels, cols, &config.booster, config.seed, |b| {
            progress(Stage::CrossValidation, 3 * f + b, total)
        })?;
        let ensemble = Ensemble {
            boosters: &boosters,
            cols,
        };
        let test_rows: Vec<Vec<f64>> = test
            .iter()
            .map(|&i| dataset.rows[i].values.clone())
            .collect();
        let p = ensemble.proba_rows(&test_rows);
        let mut fold_labels = Vec::with_capacity(test.len());
        let mut fold_predicted = Vec::with_capacity(test.len());
        for (&i, p) in test.iter().zip(&p) {
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
    Ok(CrossValidation {
        folds: k,
        model: ClassMetrics::new(&labels, &predicted),
        fold_macro_f1,
        bootstrap: ClassMetrics::new(&labels, &bootstrap),
    })
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
    let by_model: Vec<Class> = model
        .predict_proba_rows(&values)?
        .iter()
        .map(argmax)
        .collect();
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
