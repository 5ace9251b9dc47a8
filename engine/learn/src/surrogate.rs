//! A small decision tree that mimics the boosted model, printed as if/then rules.
//!
//! Hundreds of boosted trees cannot be read; a depth-limited tree fitted to their predictions
//! can, and how often it agrees with them (its fidelity) says how much of the model it tells.
//! It also serves as a baseline: a single tree on the same features.
//!
//! `linfa-trees` fits the tree, but its fits are not reproducible as they are: class
//! frequencies live in `HashMap`s whose iteration order changes from map to map, so the order of
//! an `f32` sum changes, and splits that score the same — several features that cut a node's
//! rows into the very same two sets, or different cuts with equal class counts on each side, both
//! common when clusters of targets sit far apart — go to whichever the rounding favours. A
//! surrogate whose rules change between two runs on the same data explains nothing, so the tree
//! is rebuilt here over the training rows, top-down along linfa's: at each node the split is
//! scored exactly (weighted Gini as a fraction of integers), and among splits of equal score the
//! first feature in a fixed preference order and its lowest cut win. Where to stop is decided by
//! the same exact rule (linfa's depth, leaf-size and gain limits), not by where linfa stopped:
//! linfa's gain is one of those `f32` sums, so a node whose gain sits at the limit was a leaf in
//! one fit and a split in the next. (linfa's tree then no longer changes the result; it still
//! names the class of an empty node.) Thresholds are the roundest numbers between the two sets;
//! leaves take their class from the rows that reach them (ties to `remain`, then `scale_up`),
//! and sibling leaves of one class merge. The result depends on the rows alone, not even on their order.

use std::fmt;

use linfa::Dataset as LinfaDataset;
use linfa::prelude::*;
use linfa_trees::{DecisionTree, TreeNode};
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};
use setpoint_core::Class;

use crate::{CLASSES, Error, Result, class_index};

/// A node of the rebuilt tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "node")]
pub enum Node {
    /// A leaf.
    Leaf {
        /// Its class.
        class: Class,
        /// Training rows that reach it.
        samples: usize,
        /// Share of them whose label is `class`.
        agreement: f64,
    },
    /// A split: rows with `values[feature] < threshold` go `below`, the others `above`.
    Split {
        /// Feature index in the schema.
        feature: usize,
        /// The threshold.
        threshold: f64,
        /// Rows below.
        below: Box<Node>,
        /// Rows at or above.
        above: Box<Node>,
    },
}

/// One comparison of a rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    /// Feature name.
    pub feature: String,
    /// `true` for `feature < threshold`, `false` for `feature >= threshold`.
    pub below: bool,
    /// The threshold.
    pub threshold: f64,
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = if self.below { "<" } else { ">=" };
        write!(f, "{} {op} {}", self.feature, self.threshold)
    }
}

/// One root-to-leaf path, as a rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// Its comparisons, all of which must hold; one per feature and direction (the tightest).
    pub conditions: Vec<Condition>,
    /// The class it gives.
    pub class: Class,
    /// Training rows it covers.
    pub samples: usize,
    /// Share of them labelled `class`.
    pub agreement: f64,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.conditions.is_empty() {
            write!(f, "always {}", self.class)?;
        } else {
            f.write_str("if ")?;
            for (i, c) in self.conditions.iter().enumerate() {
                if i > 0 {
                    f.write_str(" and ")?;
                }
                write!(f, "{c}")?;
            }
            write!(f, " then {}", self.class)?;
        }
        write!(
            f,
            " ({} windows, {:.0} % agree)",
            self.samples,
            self.agreement * 100.0
        )
    }
}

/// A fitted, rebuilt decision tree and its rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Surrogate {
    /// Feature names in schema order.
    pub features: Vec<String>,
    /// The tree.
    pub root: Node,
    /// Its rules, left to right (`below` before `above`).
    pub rules: Vec<Rule>,
    /// Share of the training rows whose label the tree reproduces (for a surrogate: agreement
    /// with the model it mimics).
    pub fidelity: f64,
}

/// Smallest Gini impurity decrease worth a split, for linfa and for the rebuilt tree alike.
const MIN_GAIN: f64 = 1e-4;

/// How the tree is grown.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TreeParams {
    /// Maximum depth (rules have at most this many comparisons).
    pub max_depth: usize,
    /// Smallest share of the rows a leaf may hold.
    pub min_leaf_share: f64,
}

impl Default for TreeParams {
    fn default() -> Self {
        Self {
            max_depth: 4,
            min_leaf_share: 0.01,
        }
    }
}

impl Surrogate {
    /// Fits a tree to `labels` over `rows` (values in the order of `features`). `preference`
    /// lists feature indices in the order ties between equivalent splits go to (indices it
    /// omits come after it, in schema order).
    pub fn fit(
        features: &[String],
        rows: &[Vec<f64>],
        labels: &[Class],
        params: &TreeParams,
        preference: &[usize],
    ) -> Result<Self> {
        let n = rows.len();
        let cols = features.len();
        if n == 0 || labels.len() != n {
            return Err(Error::Surrogate(format!(
                "{n} rows and {} labels: need as many labels as rows, and at least one",
                labels.len()
            )));
        }
        if let Some(r) = rows.iter().find(|r| r.len() != cols) {
            return Err(Error::Surrogate(format!(
                "a row has {} values for {cols} features",
                r.len()
            )));
        }
        if rows.iter().flatten().any(|v| !v.is_finite()) {
            return Err(Error::Surrogate("non-finite feature value".into()));
        }
        let flat: Vec<f64> = rows.iter().flatten().copied().collect();
        let records =
            Array2::from_shape_vec((n, cols), flat).map_err(|e| Error::Surrogate(e.to_string()))?;
        let targets = Array1::from_iter(labels.iter().map(|&c| class_index(c)));
        let data = LinfaDataset::new(records, targets).with_feature_names(features.to_vec());
        let min_leaf = ((n as f64 * params.min_leaf_share).ceil() as f32).max(1.0);
        let tree: DecisionTree<f64, usize> = DecisionTree::params()
            .max_depth(Some(params.max_depth.max(1)))
            .min_weight_leaf(min_leaf)
            .min_weight_split(2.0 * min_leaf)
            .min_impurity_decrease(MIN_GAIN)
            .fit(&data)
            .map_err(|e| Error::Surrogate(e.to_string()))?;

        let mut order: Vec<usize> = preference.iter().copied().filter(|&i| i < cols).collect();
        order.extend((0..cols).filter(|i| !preference.contains(i)));
        let all: Vec<usize> = (0..n).collect();
        let builder = Builder {
            rows,
            labels,
            order: &order,
            max_depth: params.max_depth.max(1),
            min_leaf: min_leaf as usize,
        };
        let root = builder.node(Some(tree.root_node()), &all, 0);
        let mut rules = Vec::new();
        collect_rules(&root, features, &mut Vec::new(), &mut rules);
        let mut surrogate = Surrogate {
            features: features.to_vec(),
            root,
            rules,
            fidelity: 0.0,
        };
        let agree = rows
            .iter()
            .zip(labels)
            .filter(|(r, l)| surrogate.predict(r) == **l)
            .count();
        surrogate.fidelity = agree as f64 / n as f64;
        Ok(surrogate)
    }

    /// The class the tree gives a row.
    pub fn predict(&self, row: &[f64]) -> Class {
        self.rule_for(row).map(|r| r.class).unwrap_or(Class::Remain)
    }

    /// The rule a row falls under.
    pub fn rule_for(&self, row: &[f64]) -> Option<&Rule> {
        let mut node = &self.root;
        let mut leaf = 0;
        loop {
            match node {
                Node::Leaf { .. } => return self.rules.get(leaf),
                Node::Split {
                    feature,
                    threshold,
                    below,
                    above,
                } => {
                    let v = row.get(*feature).copied().unwrap_or(f64::NAN);
                    // NaN compares false: missing data goes `above`, as the rules say nothing
                    // about it; callers refuse incomplete rows before this.
                    if v < *threshold {
                        node = below;
                    } else {
                        leaf += leaves(below);
                        node = above;
                    }
                }
            }
        }
    }

    /// The rules as lines of text.
    pub fn to_text(&self) -> String {
        self.rules.iter().map(|r| format!("{r}\n")).collect()
    }
}

fn leaves(node: &Node) -> usize {
    match node {
        Node::Leaf { .. } => 1,
        Node::Split { below, above, .. } => leaves(below) + leaves(above),
    }
}

struct Builder<'a> {
    rows: &'a [Vec<f64>],
    labels: &'a [Class],
    order: &'a [usize],
    max_depth: usize,
    min_leaf: usize,
}

/// A candidate split, scored exactly.
#[derive(Clone, Copy)]
struct Split {
    feature: usize,
    threshold: f64,
    purity: Purity,
}

/// `Σ left² / n_left + Σ right² / n_right` over the class counts of both sides, kept as a
/// fraction so that splits compare exactly: the larger, the lower the weighted Gini impurity.
#[derive(Clone, Copy)]
struct Purity {
    numerator: u128,
    denominator: u128,
}

impl Purity {
    fn of(left: &[u64; 3], right: &[u64; 3]) -> Self {
        let squares = |c: &[u64; 3]| c.iter().map(|&v| u128::from(v) * u128::from(v)).sum();
        let (nl, nr): (u128, u128) = (
            left.iter().map(|&v| u128::from(v)).sum(),
            right.iter().map(|&v| u128::from(v)).sum(),
        );
        let (sl, sr): (u128, u128) = (squares(left), squares(right));
        Self {
            numerator: sl * nr + sr * nl,
            denominator: nl * nr,
        }
    }

    /// The Gini impurity decrease of this split over the node's `counts` (both sides).
    fn gain_over(&self, counts: &[u64; 3]) -> f64 {
        let n = counts.iter().sum::<u64>().max(1) as f64;
        let squares: f64 = counts.iter().map(|&c| (c as f64) * (c as f64)).sum();
        (self.numerator as f64 / self.denominator.max(1) as f64) / n - squares / (n * n)
    }

    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.numerator * other.denominator).cmp(&(other.numerator * self.denominator))
    }
}

impl Builder<'_> {
    fn counts(&self, idx: &[usize]) -> [u64; 3] {
        let mut counts = [0u64; 3];
        for &i in idx {
            counts[class_index(self.labels[i])] += 1;
        }
        counts
    }

    fn leaf(&self, idx: &[usize], fallback: Class) -> Node {
        let counts = self.counts(idx);
        // Ties go to the conservative class first.
        let mut class = fallback;
        if !idx.is_empty() {
            let most = counts.iter().copied().max().unwrap_or(0);
            for c in [Class::Remain, Class::ScaleUp, Class::ScaleDown] {
                if counts[class_index(c)] == most {
                    class = c;
                    break;
                }
            }
        }
        Node::Leaf {
            class,
            samples: idx.len(),
            agreement: if idx.is_empty() {
                0.0
            } else {
                counts[class_index(class)] as f64 / idx.len() as f64
            },
        }
    }

    /// Rebuilds the subtree over `idx`. `fitted` is linfa's node for these rows while the
    /// rebuilt tree still follows linfa's; `None` once a tie sent it elsewhere.
    fn node(&self, fitted: Option<&TreeNode<f64, usize>>, idx: &[usize], depth: usize) -> Node {
        let fallback = fitted
            .and_then(|n| n.prediction())
            .and_then(|p| CLASSES.get(p).copied())
            .unwrap_or(Class::Remain);
        // Not where linfa stopped: its gain limit is checked on a sum whose order varies.
        if depth >= self.max_depth {
            return self.leaf(idx, fallback);
        }
        let Some(split) = self.best_split(idx) else {
            return self.leaf(idx, fallback);
        };
        if split.purity.gain_over(&self.counts(idx)) < MIN_GAIN {
            return self.leaf(idx, fallback);
        }
        let (below, above): (Vec<usize>, Vec<usize>) = idx
            .iter()
            .partition(|&&i| self.rows[i][split.feature] < split.threshold);
        // Follow linfa's children only while its split cuts the same two sets.
        let (fitted_below, fitted_above) = match fitted {
            Some(n) => {
                let (feature, threshold, _) = n.split();
                let same = idx.iter().all(|&i| {
                    (self.rows[i][feature] < threshold)
                        == (self.rows[i][split.feature] < split.threshold)
                });
                let children = n.children();
                match (same, children.first(), children.get(1)) {
                    (true, Some(Some(l)), Some(Some(r))) => (Some(&**l), Some(&**r)),
                    _ => (None, None),
                }
            }
            None => (None, None),
        };
        let below_node = self.node(fitted_below, &below, depth + 1);
        let above_node = self.node(fitted_above, &above, depth + 1);
        match (&below_node, &above_node) {
            (Node::Leaf { class: a, .. }, Node::Leaf { class: b, .. }) if a == b => {
                self.leaf(idx, fallback)
            }
            _ => Node::Split {
                feature: split.feature,
                threshold: split.threshold,
                below: Box::new(below_node),
                above: Box::new(above_node),
            },
        }
    }

    /// The purest split of `idx` with at least `min_leaf` rows a side; among exactly equal
    /// ones, the first feature in preference order and its lowest cut.
    fn best_split(&self, idx: &[usize]) -> Option<Split> {
        let total = self.counts(idx);
        let mut best: Option<Split> = None;
        for &j in self.order {
            let mut sorted: Vec<(f64, usize)> = idx.iter().map(|&i| (self.rows[i][j], i)).collect();
            sorted.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let mut left = [0u64; 3];
            for k in 0..sorted.len().saturating_sub(1) {
                left[class_index(self.labels[sorted[k].1])] += 1;
                let (here, next) = (sorted[k].0, sorted[k + 1].0);
                if here >= next || k + 1 < self.min_leaf || sorted.len() - (k + 1) < self.min_leaf {
                    continue;
                }
                let right = [total[0] - left[0], total[1] - left[1], total[2] - left[2]];
                let purity = Purity::of(&left, &right);
                if best
                    .as_ref()
                    .is_none_or(|b| purity.cmp(&b.purity) == std::cmp::Ordering::Greater)
                {
                    best = Some(Split {
                        feature: j,
                        threshold: round_between(here, next),
                        purity,
                    });
                }
            }
        }
        best
    }
}

/// The roundest number in `(low, high]`.
fn round_between(low: f64, high: f64) -> f64 {
    let mid = (low + high) / 2.0;
    (1..=6)
        .map(|digits| round_significant(mid, digits))
        .find(|&t| low < t && t <= high)
        .unwrap_or(mid)
}

fn round_significant(x: f64, digits: i32) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let magnitude = x.abs().log10().floor() as i32;
    let factor = 10f64.powi(digits - 1 - magnitude);
    (x * factor).round() / factor
}

fn collect_rules(
    node: &Node,
    features: &[String],
    path: &mut Vec<(usize, bool, f64)>,
    out: &mut Vec<Rule>,
) {
    match node {
        Node::Leaf {
            class,
            samples,
            agreement,
        } => {
            // Keep the tightest bound per feature and direction, in first-use order.
            let mut conditions: Vec<Condition> = Vec::new();
            for &(feature, below, threshold) in path.iter() {
                let name = features.get(feature).cloned().unwrap_or_default();
                match conditions
                    .iter_mut()
                    .find(|c| c.feature == name && c.below == below)
                {
                    Some(c) if below => c.threshold = c.threshold.min(threshold),
                    Some(c) => c.threshold = c.threshold.max(threshold),
                    None => conditions.push(Condition {
                        feature: name,
                        below,
                        threshold,
                    }),
                }
            }
            out.push(Rule {
                conditions,
                class: *class,
                samples: *samples,
                agreement: *agreement,
            });
        }
        Node::Split {
            feature,
            threshold,
            below,
            above,
        } => {
            path.push((*feature, true, *threshold));
            collect_rules(below, features, path, out);
            path.pop();
            path.push((*feature, false, *threshold));
            collect_rules(above, features, path, out);
            path.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// Two clusters that three features separate equally well: the tie linfa breaks by hash
    /// order.
    fn clustered() -> (Vec<String>, Vec<Vec<f64>>, Vec<Class>) {
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        for i in 0..60 {
            let x = i as f64 / 100.0;
            if i % 3 == 0 {
                rows.push(vec![0.1 + x / 10.0, 0.2 + x / 7.0, 0.05 + x / 9.0]);
                labels.push(Class::ScaleDown);
            } else if i % 3 == 1 {
                rows.push(vec![0.8 + x / 10.0, 0.9 + x / 11.0, 0.7 + x / 13.0]);
                labels.push(Class::ScaleUp);
            } else {
                rows.push(vec![0.5 + x / 10.0, 0.55 + x / 11.0, 0.45 + x / 13.0]);
                labels.push(Class::Remain);
            }
        }
        (names, rows, labels)
    }

    #[test]
    fn ties_go_to_the_preferred_feature_and_refits_print_the_same_rules() {
        let (names, rows, labels) = clustered();
        let params = TreeParams {
            max_depth: 3,
            min_leaf_share: 0.01,
        };
        let first = Surrogate::fit(&names, &rows, &labels, &params, &[2, 1, 0]).unwrap();
        for _ in 0..10 {
            let again = Surrogate::fit(&names, &rows, &labels, &params, &[2, 1, 0]).unwrap();
            assert_eq!(again.to_text(), first.to_text());
        }
        assert_eq!(first.fidelity, 1.0);
        assert_eq!(first.rules.len(), 3, "{}", first.to_text());
        assert!(
            first
                .rules
                .iter()
                .all(|r| r.conditions.iter().all(|c| c.feature == "c")),
            "{}",
            first.to_text()
        );
        let other = Surrogate::fit(&names, &rows, &labels, &params, &[0]).unwrap();
        assert!(other.to_text().contains("a <"), "{}", other.to_text());
    }

    /// Regression: two fits on the same windows printed different rules (an `iops_w1` cut in
    /// one run, an `iops_w2` cut with the same class counts in another).
    #[test]
    fn refits_on_simulated_windows_print_identical_rules_whatever_the_row_order() {
        use crate::dataset::{DatasetConfig, build};
        use crate::history::{HistoryConfig, simulate};
        let h = simulate(
            &crate::testkit::postgres_scenarios(),
            &HistoryConfig {
                seed: 11,
                targets_per_scenario: 15,
                fresh_targets: 80,
                ..HistoryConfig::default()
            },
        )
        .unwrap();
        let d = build(&h, &h.events, &DatasetConfig::default()).unwrap();
        let rows: Vec<Vec<f64>> = d.rows.iter().map(|r| r.values.clone()).collect();
        let labels: Vec<Class> = d.rows.iter().map(|r| r.label).collect();
        let params = TreeParams::default();
        let first = Surrogate::fit(&d.schema.features, &rows, &labels, &params, &[]).unwrap();
        assert!(first.rules.len() >= 4, "{}", first.to_text());
        for _ in 0..6 {
            let again = Surrogate::fit(&d.schema.features, &rows, &labels, &params, &[]).unwrap();
            assert_eq!(again.to_text(), first.to_text());
        }
        let reversed_rows: Vec<Vec<f64>> = rows.iter().rev().cloned().collect();
        let reversed_labels: Vec<Class> = labels.iter().rev().copied().collect();
        let reversed = Surrogate::fit(
            &d.schema.features,
            &reversed_rows,
            &reversed_labels,
            &params,
            &[],
        )
        .unwrap();
        assert_eq!(reversed.to_text(), first.to_text());
    }

    #[test]
    fn rules_read_as_if_then_and_match_rows() {
        let (names, rows, labels) = clustered();
        let s = Surrogate::fit(&names, &rows, &labels, &TreeParams::default(), &[]).unwrap();
        let text = s.to_text();
        assert!(text.starts_with("if a < "), "{text}");
        assert!(text.contains("then scale_up"), "{text}");
        let rule = s.rule_for(&[0.95, 0.95, 0.8]).unwrap();
        assert_eq!(rule.class, Class::ScaleUp);
        assert!(rule.conditions.iter().all(|c| !c.below), "{rule}");
        assert_eq!(s.predict(&[0.1, 0.2, 0.05]), Class::ScaleDown);
        // Thresholds are round numbers between the clusters.
        for r in &s.rules {
            for c in &r.conditions {
                assert!(c.to_string().len() <= "a >= 0.123".len(), "{c}");
            }
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        let names = vec!["a".to_string()];
        assert!(Surrogate::fit(&names, &[], &[], &TreeParams::default(), &[]).is_err());
        assert!(
            Surrogate::fit(
                &names,
                &[vec![1.0, 2.0]],
                &[Class::Remain],
                &TreeParams::default(),
                &[]
            )
            .is_err()
        );
        assert!(
            Surrogate::fit(
                &names,
                &[vec![f64::NAN]],
                &[Class::Remain],
                &TreeParams::default(),
                &[]
            )
            .is_err()
        );
    }

    #[test]
    fn round_thresholds() {
        assert_eq!(round_significant(0.123456, 2), 0.12);
        assert_eq!(round_significant(1234.5, 2), 1200.0);
    }
}
