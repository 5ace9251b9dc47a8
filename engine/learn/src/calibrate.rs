//! Calibrated confidence: maps the boosters' softmax probabilities to probabilities that mean
//! what they say, so that a policy's `confidence >= 0.8` acts on classifications that are right
//! about 80 % of the time or more.
//!
//! Boosted trees are confident where their training rows were separable, which is not the same
//! as being right that often on rows they have not seen. The calibrator is therefore fitted on
//! predictions for rows the boosters did not train on: the cross-validation's out-of-fold
//! predictions, or, without cross-validation, those of boosters fitted on four fifths of the
//! targets for the remaining fifth (the model itself is still fitted on every row).
//!
//! Each class gets a one-vs-rest map of its own probability — isotonic regression
//! (pool-adjacent-violators) when the held-out rows hold enough of the class and of the others,
//! Platt scaling (a logistic fit on the logit) when they hold a few, the identity when they
//! hold almost none — and the three mapped values are renormalised to sum to 1. Both fits are
//! written here: they are some sixty lines, and the one crate of the family that has isotonic
//! regression (`linfa-linear`) brings `argmin` and a linear-algebra stack for it.

use serde::{Deserialize, Serialize};
use setpoint_core::Class;

use crate::evaluate::ProbabilityQuality;
use crate::{CLASSES, Error, Result, class_index};

/// A class needs this many held-out rows of it, and as many of the other classes, for an
/// isotonic map: with fewer, the steps of the fit follow noise.
pub const ISOTONIC_MIN_ROWS: usize = 50;

/// A class needs this many held-out rows of it, and as many of the other classes, for a Platt
/// map; with fewer it keeps its raw probability.
pub const PLATT_MIN_ROWS: usize = 10;

/// Probabilities are clamped this far from 0 and 1 before their logit is taken.
const LOGIT_EPS: f64 = 1e-7;

/// How one class's raw probability is mapped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClassMap {
    /// A non-decreasing piecewise-linear function through `(x[i], y[i])`, flat outside the
    /// points: isotonic regression of the class's indicator on its raw probability.
    Isotonic {
        /// Raw probabilities, strictly increasing.
        x: Vec<f64>,
        /// Calibrated probabilities, non-decreasing, in `[0, 1]`.
        y: Vec<f64>,
    },
    /// `1 / (1 + exp(-(a · logit(p) + b)))`.
    Platt {
        /// Slope on the logit: below 1 when the raw probabilities are overconfident.
        a: f64,
        /// Intercept.
        b: f64,
    },
    /// The raw probability unchanged.
    Identity,
}

impl ClassMap {
    /// The calibrated value of a raw probability, in `[0, 1]`.
    pub fn apply(&self, p: f64) -> f64 {
        match self {
            ClassMap::Isotonic { x, y } => interpolate(x, y, p),
            ClassMap::Platt { a, b } => sigmoid(a * logit(p) + b),
            ClassMap::Identity => p,
        }
        .clamp(0.0, 1.0)
    }

    /// The method's name, as in the JSON.
    pub fn method(&self) -> &'static str {
        match self {
            ClassMap::Isotonic { .. } => "isotonic",
            ClassMap::Platt { .. } => "platt",
            ClassMap::Identity => "identity",
        }
    }

    fn check(&self) -> Result<(), String> {
        match self {
            ClassMap::Isotonic { x, y } => {
                if x.is_empty() || x.len() != y.len() {
                    return Err(format!("{} x and {} y values", x.len(), y.len()));
                }
                if x.iter().chain(y).any(|v| !v.is_finite()) {
                    return Err("non-finite value".into());
                }
                if x.windows(2).any(|w| w[0] >= w[1]) {
                    return Err("x not strictly increasing".into());
                }
                if y.windows(2).any(|w| w[0] > w[1]) || y.iter().any(|v| !(0.0..=1.0).contains(v)) {
                    return Err("y not non-decreasing in [0, 1]".into());
                }
                Ok(())
            }
            ClassMap::Platt { a, b } if !a.is_finite() || !b.is_finite() => {
                Err("non-finite coefficient".into())
            }
            ClassMap::Platt { .. } | ClassMap::Identity => Ok(()),
        }
    }
}

/// One class's calibration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassCalibration {
    /// The class.
    pub class: Class,
    /// Held-out rows of this class.
    pub positives: usize,
    /// Held-out rows of the other classes.
    pub negatives: usize,
    /// The map.
    pub map: ClassMap,
    /// Why the map is not isotonic, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
}

/// The calibrator stored in a model artifact, with the evidence that it helps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// Where the held-out predictions came from.
    pub source: String,
    /// Held-out rows the maps were fitted on.
    pub rows: usize,
    /// One map per class, in [`CLASSES`] order.
    pub classes: Vec<ClassCalibration>,
    /// Raw and calibrated probabilities on the held-out rows. The calibrated ones are
    /// cross-fitted (each group of rows mapped by maps fitted on the other groups), so that
    /// they are not judged on the rows they were fitted to.
    pub held_out: ProbabilityQuality,
}

impl Calibration {
    /// Calibrated probabilities: each class mapped, then renormalised to sum to 1. Should every
    /// map give 0, the raw probabilities are returned rather than a division by zero.
    pub fn apply(&self, raw: [f64; 3]) -> [f64; 3] {
        apply_maps(self.classes.iter().map(|c| &c.map), raw)
    }

    /// Checks what [`TrainedModel::from_json`](crate::TrainedModel::from_json) cannot trust:
    /// one map per class in [`CLASSES`] order, each well-formed.
    pub(crate) fn check(&self) -> Result<()> {
        let order: Vec<Class> = self.classes.iter().map(|c| c.class).collect();
        if order != CLASSES {
            return Err(Error::Model(format!(
                "calibration classes {order:?}, expected {CLASSES:?}"
            )));
        }
        for c in &self.classes {
            c.map
                .check()
                .map_err(|m| Error::Model(format!("calibration of {}: {m}", c.class)))?;
        }
        Ok(())
    }

    /// A one-line summary of the methods, e.g. `isotonic (scale_down, remain), platt (scale_up)`.
    pub fn methods(&self) -> String {
        let mut groups: Vec<(&str, Vec<String>)> = Vec::new();
        for c in &self.classes {
            let method = c.map.method();
            match groups.iter_mut().find(|(m, _)| *m == method) {
                Some((_, classes)) => classes.push(c.class.to_string()),
                None => groups.push((method, vec![c.class.to_string()])),
            }
        }
        groups
            .iter()
            .map(|(m, classes)| format!("{m} ({})", classes.join(", ")))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn apply_maps<'a>(maps: impl Iterator<Item = &'a ClassMap>, raw: [f64; 3]) -> [f64; 3] {
    let mut q = raw;
    for (k, map) in maps.take(3).enumerate() {
        q[k] = map.apply(raw[k]);
    }
    let sum: f64 = q.iter().sum();
    if sum > 0.0 && sum.is_finite() {
        q.map(|v| v / sum)
    } else {
        raw
    }
}

/// Predictions for rows the boosters did not train on.
pub(crate) struct HeldOutPredictions {
    /// What they are, for the artifact.
    pub(crate) source: String,
    /// Raw (softmax) probabilities.
    pub(crate) proba: Vec<[f64; 3]>,
    /// The rows' labels.
    pub(crate) labels: Vec<Class>,
    /// Group of each row, for cross-fitting the reported quality (rows of a target share one).
    pub(crate) groups: Vec<usize>,
}

/// Fits the per-class maps on held-out predictions, and measures raw and (cross-fitted)
/// calibrated probabilities on them.
pub(crate) fn fit(held: &HeldOutPredictions) -> Calibration {
    let classes = fit_maps(&held.proba, &held.labels, &held.groups);
    let distinct = distinct(&held.groups);
    let calibrated: Vec<[f64; 3]> = if distinct.len() >= 2 {
        let mut out = held.proba.clone();
        for g in distinct {
            let (fit_rows, fit_groups): (Vec<([f64; 3], Class)>, Vec<usize>) = held
                .proba
                .iter()
                .zip(&held.labels)
                .zip(&held.groups)
                .filter(|(_, row_g)| **row_g != g)
                .map(|((p, l), row_g)| ((*p, *l), *row_g))
                .unzip();
            let (fit_p, fit_l): (Vec<[f64; 3]>, Vec<Class>) = fit_rows.into_iter().unzip();
            let maps = fit_maps(&fit_p, &fit_l, &fit_groups);
            for (slot, row_g) in out.iter_mut().zip(&held.groups) {
                if *row_g == g {
                    *slot = apply_maps(maps.iter().map(|c| &c.map), *slot);
                }
            }
        }
        out
    } else {
        // One group only (a handful of targets): the rows the maps were fitted on are all
        // there is to judge them by.
        held.proba
            .iter()
            .map(|p| apply_maps(classes.iter().map(|c| &c.map), *p))
            .collect()
    };
    Calibration {
        source: held.source.clone(),
        rows: held.proba.len(),
        held_out: ProbabilityQuality::new(&held.proba, Some(&calibrated), &held.labels),
        classes,
    }
}

fn distinct(groups: &[usize]) -> Vec<usize> {
    let mut d = groups.to_vec();
    d.sort_unstable();
    d.dedup();
    d
}

/// The three one-vs-rest maps. A class with enough rows of it and of the others gets isotonic
/// regression unless Platt scaling does better on rows neither was fitted to (each group of
/// `groups` mapped by fits on the others): on a few hundred rows, from a few dozen targets,
/// isotonic steps follow noise that Platt's two parameters cannot.
fn fit_maps(proba: &[[f64; 3]], labels: &[Class], groups: &[usize]) -> Vec<ClassCalibration> {
    CLASSES
        .iter()
        .map(|&class| {
            let k = class_index(class);
            let x: Vec<f64> = proba.iter().map(|p| p[k]).collect();
            let y: Vec<bool> = labels.iter().map(|l| *l == class).collect();
            class_map(class, &x, &y, groups)
        })
        .collect()
}

/// One class's map from its raw probabilities `x` and whether each row is of it, `y`.
fn class_map(class: Class, x: &[f64], y: &[bool], groups: &[usize]) -> ClassCalibration {
    let positives = y.iter().filter(|v| **v).count();
    let negatives = y.len() - positives;
    let fewest = positives.min(negatives);
    let (map, fallback) = if fewest >= ISOTONIC_MIN_ROWS {
        match cross_fitted_brier(x, y, groups) {
            Some((isotonic, platt)) if platt < isotonic => (
                platt_map(x, y),
                Some(format!(
                    "Platt scaling: on held-out rows it was not fitted to, its Brier score for {class} ({platt:.4}) beats isotonic regression's ({isotonic:.4})"
                )),
            ),
            _ => (isotonic_map(x, y), None),
        }
    } else if fewest >= PLATT_MIN_ROWS {
        (
            platt_map(x, y),
            Some(format!(
                "Platt scaling: {positives} held-out rows of {class} and {negatives} of the others, fewer than {ISOTONIC_MIN_ROWS} for isotonic regression"
            )),
        )
    } else {
        (
            ClassMap::Identity,
            Some(format!(
                "uncalibrated: {positives} held-out rows of {class} and {negatives} of the others, fewer than {PLATT_MIN_ROWS} for Platt scaling"
            )),
        )
    };
    ClassCalibration {
        class,
        positives,
        negatives,
        map,
        fallback,
    }
}

/// One-vs-rest Brier scores of isotonic and Platt maps, each row mapped by maps fitted on the
/// other groups; `None` with fewer than two groups.
fn cross_fitted_brier(x: &[f64], y: &[bool], groups: &[usize]) -> Option<(f64, f64)> {
    let distinct = distinct(groups);
    if distinct.len() < 2 {
        return None;
    }
    let (mut isotonic, mut platt) = (0.0, 0.0);
    for g in distinct {
        let (fit_x, fit_y): (Vec<f64>, Vec<bool>) = x
            .iter()
            .zip(y)
            .zip(groups)
            .filter(|(_, row_g)| **row_g != g)
            .map(|((x, y), _)| (*x, *y))
            .unzip();
        let maps = [isotonic_map(&fit_x, &fit_y), platt_map(&fit_x, &fit_y)];
        for ((x, y), _) in x
            .iter()
            .zip(y)
            .zip(groups)
            .filter(|(_, row_g)| **row_g == g)
        {
            let target = if *y { 1.0 } else { 0.0 };
            isotonic += (maps[0].apply(*x) - target).powi(2);
            platt += (maps[1].apply(*x) - target).powi(2);
        }
    }
    let n = x.len().max(1) as f64;
    Some((isotonic / n, platt / n))
}

/// Weighted least-squares non-decreasing fit of `y` (in the given order) by
/// pool-adjacent-violators: `(value, rows)` of each block, in order. Weights must be positive.
fn pav(y: &[f64], w: &[f64]) -> Vec<(f64, usize)> {
    // (weighted sum, weight, rows) per block.
    let mut blocks: Vec<(f64, f64, usize)> = Vec::with_capacity(y.len());
    for (&yi, &wi) in y.iter().zip(w) {
        blocks.push((yi * wi, wi, 1));
        while let [.., a, b] = blocks.as_slice() {
            if a.0 / a.1 <= b.0 / b.1 {
                break;
            }
            let merged = (a.0 + b.0, a.1 + b.1, a.2 + b.2);
            blocks.pop();
            if let Some(last) = blocks.last_mut() {
                *last = merged;
            }
        }
    }
    blocks.into_iter().map(|(s, w, n)| (s / w, n)).collect()
}

/// The isotonic (non-decreasing, least-squares) fit of `y` in the given order, with weights
/// `w` (all positive).
pub fn isotonic_regression(y: &[f64], w: &[f64]) -> Vec<f64> {
    pav(y, w)
        .into_iter()
        .flat_map(|(v, n)| std::iter::repeat_n(v, n))
        .collect()
}

/// Isotonic map of the indicator `y` on the raw probability `x`.
fn isotonic_map(x: &[f64], y: &[bool]) -> ClassMap {
    // Rounded so that the artifact holds no f64 noise, and so that its points read back to
    // the same bits (see `round6`).
    let mut pairs: Vec<(f64, f64)> = x
        .iter()
        .zip(y)
        .map(|(x, y)| (round6(*x), if *y { 1.0 } else { 0.0 }))
        .collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Equal raw probabilities become one weighted point, so the fit is a function of x.
    let mut xs: Vec<f64> = Vec::new();
    let mut sums: Vec<f64> = Vec::new();
    let mut weights: Vec<f64> = Vec::new();
    for (x, y) in pairs {
        match (xs.last(), sums.last_mut(), weights.last_mut()) {
            (Some(&last), Some(s), Some(w)) if last == x => {
                *s += y;
                *w += 1.0;
            }
            _ => {
                xs.push(x);
                sums.push(y);
                weights.push(1.0);
            }
        }
    }
    let means: Vec<f64> = sums.iter().zip(&weights).map(|(s, w)| s / w).collect();
    // Each block keeps its two ends: flat across the block, linear between blocks.
    let (mut px, mut py) = (Vec::new(), Vec::new());
    let mut start = 0;
    for (value, n) in pav(&means, &weights) {
        let (lo, hi) = (xs[start], xs[start + n - 1]);
        let value = round6(value);
        px.push(lo);
        py.push(value);
        if hi > lo {
            px.push(hi);
            py.push(value);
        }
        start += n;
    }
    if px.is_empty() {
        ClassMap::Identity
    } else {
        ClassMap::Isotonic { x: px, y: py }
    }
}

fn interpolate(x: &[f64], y: &[f64], p: f64) -> f64 {
    let i = x.partition_point(|&v| v <= p);
    match (
        i.checked_sub(1).and_then(|j| x.get(j).zip(y.get(j))),
        x.get(i).zip(y.get(i)),
    ) {
        (Some((x0, y0)), Some((x1, y1))) => y0 + (p - x0) / (x1 - x0) * (y1 - y0),
        (Some((_, y0)), None) => *y0,
        (None, Some((_, y1))) => *y1,
        (None, None) => p,
    }
}

/// `v` to six decimals. A model's JSON must read back to the same bytes (its version is their
/// hash), and `serde_json` parses a number of at most 15 significant digits exactly, not
/// every shortest representation of an `f64`.
pub(crate) fn round6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

fn logit(p: f64) -> f64 {
    let p = p.clamp(LOGIT_EPS, 1.0 - LOGIT_EPS);
    (p / (1.0 - p)).ln()
}

fn sigmoid(s: f64) -> f64 {
    1.0 / (1.0 + (-s).exp())
}

/// `ln(1 + e^s)` without overflow.
fn softplus(s: f64) -> f64 {
    s.max(0.0) + (-s.abs()).exp().ln_1p()
}

/// Platt's logistic fit of `y` on `logit(x)`, by Newton's method with a halving line search.
/// The targets are Platt's smoothed ones (`(n₊ + 1) / (n₊ + 2)` and `1 / (n₋ + 2)`), which keep
/// a separable handful of rows from driving the slope to infinity.
fn platt_map(x: &[f64], y: &[bool]) -> ClassMap {
    let z: Vec<f64> = x.iter().map(|p| logit(*p)).collect();
    let pos = y.iter().filter(|v| **v).count() as f64;
    let neg = y.len() as f64 - pos;
    let t: Vec<f64> = y
        .iter()
        .map(|v| {
            if *v {
                (pos + 1.0) / (pos + 2.0)
            } else {
                1.0 / (neg + 2.0)
            }
        })
        .collect();
    let loss = |a: f64, b: f64| -> f64 {
        z.iter()
            .zip(&t)
            .map(|(z, t)| {
                let s = a * z + b;
                softplus(s) - t * s
            })
            .sum()
    };
    // Start from the identity map: raw probabilities that are right stay as they are.
    let (mut a, mut b) = (1.0, 0.0);
    let mut current = loss(a, b);
    for _ in 0..100 {
        let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 1e-12, 0.0, 1e-12);
        for (z, t) in z.iter().zip(&t) {
            let q = sigmoid(a * z + b);
            let d = q * (1.0 - q);
            ga += (q - t) * z;
            gb += q - t;
            haa += d * z * z;
            hab += d * z;
            hbb += d;
        }
        if ga.abs() < 1e-9 && gb.abs() < 1e-9 {
            break;
        }
        let det = haa * hbb - hab * hab;
        if det <= 0.0 || !det.is_finite() {
            break;
        }
        let da = (hbb * ga - hab * gb) / det;
        let db = (haa * gb - hab * ga) / det;
        let mut step = 1.0;
        let mut moved = false;
        while step > 1e-10 {
            let (na, nb) = (a - step * da, b - step * db);
            let next = loss(na, nb);
            if next < current {
                (a, b, current) = (na, nb, next);
                moved = true;
                break;
            }
            step /= 2.0;
        }
        if !moved {
            break;
        }
    }
    if a.is_finite() && b.is_finite() {
        ClassMap::Platt {
            a: round6(a),
            b: round6(b),
        }
    } else {
        ClassMap::Identity
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::model::argmax;

    #[test]
    fn pav_pools_adjacent_violators() {
        let y = [5.0, 3.0, 1.0, 2.0, 8.0, 10.0, 7.0, 9.0, 6.0, 4.0];
        let fit = isotonic_regression(&y, &[1.0; 10]);
        // 5, 3, 1, 2 pool to 2.75; the rest to their mean, 44 / 6.
        for v in &fit[..4] {
            assert!((v - 2.75).abs() < 1e-12, "{fit:?}");
        }
        for v in &fit[4..] {
            assert!((v - 44.0 / 6.0).abs() < 1e-12, "{fit:?}");
        }
        // Already sorted: unchanged. Weights pull the pooled value towards the heavier row.
        assert_eq!(
            isotonic_regression(&[1.0, 2.0, 3.0], &[1.0; 3]),
            [1.0, 2.0, 3.0]
        );
        assert_eq!(isotonic_regression(&[2.0, 1.0], &[3.0, 1.0]), [1.75, 1.75]);
        assert!(isotonic_regression(&[], &[]).is_empty());
    }

    #[test]
    fn isotonic_map_is_a_monotone_step_function_of_the_raw_probability() {
        let x = [0.1, 0.2, 0.2, 0.3, 0.6, 0.7, 0.9, 0.95];
        let y = [false, true, false, false, true, false, true, true];
        let map = isotonic_map(&x, &y);
        map.check().unwrap();
        let ClassMap::Isotonic { x: px, y: py } = &map else {
            panic!("{map:?}");
        };
        // Blocks: {0.1} 0, {0.2 ×2, 0.3} 1/3, {0.6, 0.7} 1/2, {0.9} 1, {0.95} 1.
        assert_eq!(px, &[0.1, 0.2, 0.3, 0.6, 0.7, 0.9, 0.95]);
        let want = [0.0, 1.0 / 3.0, 1.0 / 3.0, 0.5, 0.5, 1.0, 1.0];
        // Values are stored to six decimals.
        for (a, b) in py.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{py:?}");
        }
        assert_eq!(map.apply(0.0), 0.0);
        assert!((map.apply(0.25) - 1.0 / 3.0).abs() < 1e-6);
        assert!((map.apply(0.8) - 0.75).abs() < 1e-12);
        assert_eq!(map.apply(1.0), 1.0);
    }

    #[test]
    fn platt_shrinks_an_overconfident_logit() {
        // Raw probabilities whose logit is three times the true one.
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for _ in 0..2000 {
            let s: f64 = rng.random_range(-3.0..3.0);
            x.push(sigmoid(3.0 * s));
            y.push(rng.random::<f64>() < sigmoid(s));
        }
        let ClassMap::Platt { a, b } = platt_map(&x, &y) else {
            panic!()
        };
        assert!((a - 1.0 / 3.0).abs() < 0.06, "a = {a}");
        assert!(b.abs() < 0.15, "b = {b}");
    }

    /// Three classes, each row's true probabilities drawn at random, the raw ones sharpened
    /// (logits tripled) as an overfitted model's are.
    fn overconfident(n: usize, seed: u64) -> (Vec<[f64; 3]>, Vec<Class>, Vec<usize>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (mut raw, mut labels, mut groups) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..n {
            let logits: [f64; 3] = std::array::from_fn(|_| rng.random_range(-1.5..1.5));
            let truth = softmax(logits);
            raw.push(softmax(logits.map(|l| 3.0 * l)));
            let u: f64 = rng.random();
            let k = if u < truth[0] {
                0
            } else if u < truth[0] + truth[1] {
                1
            } else {
                2
            };
            labels.push(CLASSES[k]);
            groups.push(i % 5);
        }
        (raw, labels, groups)
    }

    fn softmax(l: [f64; 3]) -> [f64; 3] {
        let e = l.map(f64::exp);
        let s: f64 = e.iter().sum();
        e.map(|v| v / s)
    }

    #[test]
    fn calibration_lowers_the_brier_score_of_an_overconfident_model() {
        let (raw, labels, groups) = overconfident(3000, 11);
        let c = fit(&HeldOutPredictions {
            source: "test".into(),
            proba: raw,
            labels,
            groups,
        });
        c.check().unwrap();
        // Tripled logits are exactly what Platt scaling undoes: it beats isotonic regression.
        for class in &c.classes {
            assert_eq!(class.map.method(), "platt", "{class:?}");
            assert!(
                class
                    .fallback
                    .as_deref()
                    .unwrap()
                    .contains("beats isotonic")
            );
        }
        let q = &c.held_out;
        let cal = q.calibrated.as_ref().unwrap();
        assert!(cal.brier < q.raw.brier - 0.03, "{q:#?}");
        assert!(cal.ece < q.raw.ece / 2.0, "{q:#?}");
        // On rows it was not fitted to either.
        let (raw, labels, _) = overconfident(3000, 12);
        let mapped: Vec<[f64; 3]> = raw.iter().map(|p| c.apply(*p)).collect();
        let fresh = ProbabilityQuality::new(&raw, Some(&mapped), &labels);
        let fresh_cal = fresh.calibrated.as_ref().unwrap();
        assert!(fresh_cal.brier < fresh.raw.brier - 0.03, "{fresh:#?}");
        // 0.8 now means about 80 %: the rows at 0.8 or more are right at least that often.
        let at = &fresh_cal.at_threshold;
        assert!(at.rows > 0 && at.accuracy >= 0.78, "{fresh:#?}");
        assert!(fresh.raw.at_threshold.accuracy < 0.75, "{fresh:#?}");
    }

    #[test]
    fn calibrated_probabilities_sum_to_one_and_stay_in_range() {
        let (raw, labels, groups) = overconfident(600, 5);
        let c = fit(&HeldOutPredictions {
            source: "test".into(),
            proba: raw.clone(),
            labels,
            groups,
        });
        let edges = [
            [1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0],
            [1.0 / 3.0; 3],
            [0.5, 0.5, 0.0],
        ];
        for p in raw.iter().chain(&edges) {
            let q = c.apply(*p);
            assert!((q.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{p:?} → {q:?}");
            assert!(q.iter().all(|v| (0.0..=1.0).contains(v)), "{p:?} → {q:?}");
        }
        // Monotone maps keep a clear winner the winner.
        assert_eq!(argmax(&c.apply([0.9, 0.05, 0.05])), Class::ScaleDown);
    }

    #[test]
    fn scarce_classes_fall_back_and_say_why() {
        let (mut raw, mut labels, mut groups) = overconfident(400, 7);
        // Keep 45 scale_up rows and 5 scale_down rows: remain has just enough others (50) for
        // isotonic regression.
        let (mut up, mut down) = (0, 0);
        let keep: Vec<bool> = labels
            .iter()
            .map(|l| match l {
                Class::ScaleUp => {
                    up += 1;
                    up <= 45
                }
                Class::ScaleDown => {
                    down += 1;
                    down <= 5
                }
                Class::Remain => true,
            })
            .collect();
        let mut it = keep.iter();
        raw.retain(|_| *it.next().unwrap());
        let mut it = keep.iter();
        labels.retain(|_| *it.next().unwrap());
        let mut it = keep.iter();
        groups.retain(|_| *it.next().unwrap());
        let c = fit(&HeldOutPredictions {
            source: "test".into(),
            proba: raw,
            labels,
            groups,
        });
        let [down, remain, up] = [&c.classes[0], &c.classes[1], &c.classes[2]];
        // Enough rows for either: the method that did better on rows it was not fitted to.
        assert_ne!(remain.map, ClassMap::Identity);
        assert!(
            remain
                .fallback
                .as_deref()
                .is_none_or(|f| f.contains("beats isotonic")),
            "{remain:?}"
        );
        assert_eq!(up.map.method(), "platt");
        assert!(
            up.fallback
                .as_deref()
                .unwrap()
                .contains("45 held-out rows of scale_up and ")
        );
        assert_eq!(down.map, ClassMap::Identity);
        assert!(
            down.fallback
                .as_deref()
                .unwrap()
                .contains("5 held-out rows")
        );
        assert!(
            c.methods().starts_with("identity (scale_down), "),
            "{}",
            c.methods()
        );
    }

    #[test]
    fn isotonic_wins_where_the_distortion_is_no_logistic_curve() {
        // The class is right 10 % of the time below 0.5 and 90 % above, wherever in each half
        // the raw probability is: a step that no sigmoid follows.
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let (mut x, mut y, mut groups) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..2000 {
            let p: f64 = rng.random();
            x.push(p);
            y.push(rng.random::<f64>() < if p < 0.5 { 0.1 } else { 0.9 });
            groups.push(i % 5);
        }
        let (isotonic, platt) = cross_fitted_brier(&x, &y, &groups).unwrap();
        assert!(isotonic < platt, "isotonic {isotonic}, platt {platt}");
        let c = class_map(Class::ScaleUp, &x, &y, &groups);
        assert_eq!(c.map.method(), "isotonic");
        assert_eq!(c.fallback, None);
        assert!((c.map.apply(0.25) - 0.1).abs() < 0.05, "{:?}", c.map);
        assert!((c.map.apply(0.75) - 0.9).abs() < 0.05, "{:?}", c.map);
    }

    #[test]
    fn methods_are_summarised_by_class() {
        let class = |class, map| ClassCalibration {
            class,
            positives: 0,
            negatives: 0,
            map,
            fallback: None,
        };
        let c = Calibration {
            source: String::new(),
            rows: 0,
            classes: vec![
                class(Class::ScaleDown, ClassMap::Platt { a: 1.0, b: 0.0 }),
                class(Class::Remain, ClassMap::Identity),
                class(Class::ScaleUp, ClassMap::Platt { a: 0.5, b: 0.1 }),
            ],
            held_out: ProbabilityQuality::new(&[], None, &[]),
        };
        c.check().unwrap();
        assert_eq!(
            c.methods(),
            "platt (scale_down, scale_up), identity (remain)"
        );
        let mut swapped = c.clone();
        swapped.classes.swap(0, 2);
        assert!(matches!(swapped.check(), Err(Error::Model(m)) if m.contains("classes")));
        let mut bad = c;
        bad.classes[1].map = ClassMap::Isotonic {
            x: vec![0.5, 0.4],
            y: vec![0.1, 0.2],
        };
        assert!(matches!(bad.check(), Err(Error::Model(m)) if m.contains("remain")));
    }
}
