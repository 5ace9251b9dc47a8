//! Labelled datasets: rolling four-week windows over weekly histories, their feature schema and
//! their labels.
//!
//! A window ending in week `t` covers weeks `t-3..=t` (W-4..W-1 of a cycle run at the end of
//! week `t`). Its label comes either from the bootstrap heuristics (phase 1: what the rules say
//! about the window) or from what followed it (phase 2):
//!
//! - `scale_up` when a degradation occurs in weeks `t+1..=t+horizon`;
//! - `scale_down` when the target would have fitted in half its size: no degradation in the
//!   window nor in the horizon, and every ratio metric's weekly peak over that span below its
//!   level in [`DownLevels`] — 45 % by default (doubled by halving, it stays under 90 %), 65 %
//!   for memory, because most of a database host's memory is buffers and caches sized as a
//!   share of the instance (PostgreSQL's `shared_buffers` is a quarter of it) that shrink with
//!   it rather than doubling their share;
//! - `remain` otherwise.
//!
//! Windows need `horizon` weeks after them, so the last `horizon` weeks of a history start no
//! window whichever labels are used, and phase-1 and phase-2 datasets of one history hold the
//! same windows.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use setpoint_classify::{BootstrapHeuristics, Classifier, Thresholds};
use setpoint_core::{Class, Evidence, Feature, FeatureVector};
use sha2::{Digest, Sha256};

use crate::history::{Event, EventKind, History, slope};
use crate::{Error, Result};

/// Version of the feature schema's definition (names, order and formulas): weekly means,
/// trends and levels.
pub const SCHEMA_VERSION: &str = "setpoint-learn/features/1";

/// Version of the schema that adds each ratio metric's peak features ([`crate::peaks`]).
pub const SCHEMA_VERSION_PEAKS: &str = "setpoint-learn/features/2";

/// Weeks in a window (W-4..W-1).
pub const WINDOW_WEEKS: u32 = 4;

/// The learner's feature schema: the weekly fingerprint of each metric (`<metric>_w4` …
/// `<metric>_w1`, metric by metric, as plugins produce it), then each metric's trend
/// (`<metric>_trend`, least-squares slope over the four weeks, per week) and level
/// (`<metric>_level`, the four weeks' mean); in version 2 ([`SCHEMA_VERSION_PEAKS`]) then the
/// six peak features of each metric in `peak_metrics` (see [`crate::peaks`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schema {
    /// [`SCHEMA_VERSION`] or [`SCHEMA_VERSION_PEAKS`].
    pub version: String,
    /// The metrics, in fingerprint order.
    pub metrics: Vec<String>,
    /// The metrics with peak features (the ratio metrics), empty in version 1.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peak_metrics: Vec<String>,
    /// Every feature name, in vector order.
    pub features: Vec<String>,
    /// SHA-256 of the version and the feature names: two models agree on their input iff their
    /// schema hashes do.
    pub hash: String,
}

impl Schema {
    /// The schema over `metrics` (in the plugin's metric order).
    pub fn new<S: Into<String>>(metrics: impl IntoIterator<Item = S>) -> Self {
        let metrics: Vec<String> = metrics.into_iter().map(Into::into).collect();
        let mut features = Vec::with_capacity(metrics.len() * (WINDOW_WEEKS as usize + 2));
        for m in &metrics {
            for k in (1..=WINDOW_WEEKS).rev() {
                features.push(format!("{m}_w{k}"));
            }
        }
        features.extend(metrics.iter().map(|m| format!("{m}_trend")));
        features.extend(metrics.iter().map(|m| format!("{m}_level")));
        let hash = Self::hash_of(SCHEMA_VERSION, &features);
        Self {
            version: SCHEMA_VERSION.to_string(),
            metrics,
            peak_metrics: Vec::new(),
            features,
            hash,
        }
    }

    /// The version-2 schema over `metrics`, with the peak features of `peak_metrics` appended
    /// (the version-1 schema when `peak_metrics` is empty).
    pub fn with_peaks<S: Into<String>>(
        metrics: impl IntoIterator<Item = S>,
        peak_metrics: impl IntoIterator<Item = S>,
    ) -> Self {
        let mut schema = Self::new(metrics);
        let peak_metrics: Vec<String> = peak_metrics.into_iter().map(Into::into).collect();
        if peak_metrics.is_empty() {
            return schema;
        }
        for m in &peak_metrics {
            schema.features.extend(crate::peaks::names(m));
        }
        schema.version = SCHEMA_VERSION_PEAKS.to_string();
        schema.hash = Self::hash_of(SCHEMA_VERSION_PEAKS, &schema.features);
        schema.peak_metrics = peak_metrics;
        schema
    }

    /// Whether the schema has peak features.
    pub fn has_peaks(&self) -> bool {
        !self.peak_metrics.is_empty()
    }

    /// Where the peak features start in a row.
    fn peaks_at(&self) -> usize {
        self.metrics.len() * (WINDOW_WEEKS as usize + 2)
    }

    fn hash_of(version: &str, features: &[String]) -> String {
        let mut h = Sha256::new();
        h.update(version.as_bytes());
        for f in features {
            h.update([0]);
            h.update(f.as_bytes());
        }
        hex(&h.finalize())
    }

    /// Checks a schema read from a file: the version is known and the names and hash are what
    /// this version derives from the metrics.
    pub fn check(&self) -> Result<()> {
        let expected = match self.version.as_str() {
            SCHEMA_VERSION if self.peak_metrics.is_empty() => Schema::new(self.metrics.clone()),
            SCHEMA_VERSION_PEAKS if !self.peak_metrics.is_empty() => {
                Schema::with_peaks(self.metrics.clone(), self.peak_metrics.clone())
            }
            _ => {
                return Err(Error::Model(format!(
                    "feature schema version {:?} is not {SCHEMA_VERSION:?} (without peak metrics) nor {SCHEMA_VERSION_PEAKS:?} (with)",
                    self.version
                )));
            }
        };
        if expected != *self {
            return Err(Error::Model(
                "feature schema names or hash do not match its metrics".into(),
            ));
        }
        Ok(())
    }

    /// Number of features.
    pub fn len(&self) -> usize {
        self.features.len()
    }

    /// Whether the schema has no features.
    pub fn is_empty(&self) -> bool {
        self.features.is_empty()
    }

    /// Names of the fingerprint features, the ones a plugin provides.
    pub fn fingerprint(&self) -> &[String] {
        &self.features[..self.metrics.len() * WINDOW_WEEKS as usize]
    }

    /// The feature row of a window: `weeks[metric]` holds that metric's four weekly values,
    /// oldest first; `peaks[k]` the weeks of `peak_metrics[k]` (ignored in version 1).
    pub fn row_with_peaks(
        &self,
        weeks: &[&[f64]],
        peaks: &[&[setpoint_core::WeekPeak]],
    ) -> Vec<f64> {
        let mut row = self.row(weeks);
        if self.has_peaks() {
            for k in 0..self.peak_metrics.len() {
                row.extend(crate::peaks::window(
                    peaks.get(k).copied().unwrap_or_default(),
                ));
            }
        }
        row
    }

    /// The version-1 part of a window's row: `weeks[metric]` holds that metric's four weekly
    /// values, oldest first.
    pub fn row(&self, weeks: &[&[f64]]) -> Vec<f64> {
        let mut row: Vec<f64> = weeks.iter().flat_map(|w| w.iter().copied()).collect();
        row.extend(weeks.iter().map(|w| slope(w)));
        row.extend(
            weeks
                .iter()
                .map(|w| w.iter().sum::<f64>() / w.len().max(1) as f64),
        );
        row
    }

    /// The feature row of a plugin's feature vector, or the evidence of every missing or
    /// non-finite fingerprint feature.
    pub fn row_from_features(&self, features: &FeatureVector) -> Result<Vec<f64>, Vec<Evidence>> {
        match self.row_with_filled_weeks(features) {
            (Some(row), missing) if missing.is_empty() => Ok(row),
            (_, missing) => Err(missing),
        }
    }

    /// The feature row of a plugin's feature vector in which each metric's missing weeks are
    /// filled from its nearest present week (the older one on a tie), when at least
    /// [`MIN_PRESENT_WEEKS`] of the metric's weeks are present; with the evidence of every
    /// missing or non-finite fingerprint feature. `None` when some metric has fewer weeks than
    /// that: the boosters never saw such a hole, and what they would make of it is arbitrary.
    pub fn row_with_filled_weeks(
        &self,
        features: &FeatureVector,
    ) -> (Option<Vec<f64>>, Vec<Evidence>) {
        let mut missing = Vec::new();
        let mut values: Vec<Option<f64>> = Vec::with_capacity(self.fingerprint().len());
        for name in self.fingerprint() {
            match features.value(name) {
                Some(v) if v.is_finite() => values.push(Some(v)),
                _ => {
                    values.push(None);
                    missing.push(Evidence::missing(name, features));
                }
            }
        }
        let mut filled = Vec::with_capacity(values.len());
        for (m, weeks) in values.chunks(WINDOW_WEEKS as usize).enumerate() {
            let present = weeks.iter().flatten().count();
            // With peak features a metric missing from the whole window is an explicit missing
            // value (zeros, its `_peak_coverage` 0), as in training; otherwise the boosters
            // never saw such a hole, and what they would make of it is arbitrary.
            if present == 0
                && self
                    .metrics
                    .get(m)
                    .is_some_and(|name| self.peak_metrics.contains(name))
            {
                filled.extend(std::iter::repeat_n(0.0, weeks.len()));
                continue;
            }
            if present < MIN_PRESENT_WEEKS {
                return (None, missing);
            }
            for i in 0..weeks.len() {
                let nearest = (0..weeks.len())
                    .filter_map(|j| weeks[j].map(|v| (i.abs_diff(j), j, v)))
                    .min_by_key(|&(distance, j, _)| (distance, j))
                    .map(|(_, _, v)| v);
                filled.push(nearest.unwrap_or(f64::NAN));
            }
        }
        let weeks: Vec<&[f64]> = filled.chunks(WINDOW_WEEKS as usize).collect();
        let mut row = self.row(&weeks);
        // The peak features come with the engine's observation, always finite (their
        // `_peak_coverage` says when the peaks behind them are missing); a vector without
        // them (journalled before they existed) cannot be scored by a version-2 model.
        for name in &self.features[self.peaks_at()..] {
            match features.value(name) {
                Some(v) if v.is_finite() => row.push(v),
                _ => {
                    missing.push(Evidence::missing(name, features));
                    return (None, missing);
                }
            }
        }
        (Some(row), missing)
    }
}

/// Least weeks of a metric's four present for its missing weeks to be filled from them.
pub const MIN_PRESENT_WEEKS: usize = 2;

/// Lower-case hex of a digest.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Where labels come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "from", deny_unknown_fields)]
pub enum Labels {
    /// Phase 1: what the bootstrap heuristics say about each window.
    Bootstrap {
        /// Their thresholds.
        #[serde(default)]
        thresholds: Thresholds,
    },
    /// Phase 2: what followed each window (see the module docs).
    Outcomes,
}

impl Labels {
    /// `bootstrap` or `outcomes`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Labels::Bootstrap { .. } => "bootstrap",
            Labels::Outcomes => "outcomes",
        }
    }
}

/// Peak levels under which a window would have fitted in half the size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DownLevels {
    /// For every ratio metric not listed in `per_metric`.
    pub default: f64,
    /// Per metric name.
    pub per_metric: BTreeMap<String, f64>,
}

impl Default for DownLevels {
    fn default() -> Self {
        Self {
            default: 0.45,
            per_metric: BTreeMap::from([("memory".to_string(), 0.65)]),
        }
    }
}

impl DownLevels {
    /// The level of one metric.
    pub fn level(&self, metric: &str) -> f64 {
        self.per_metric.get(metric).copied().unwrap_or(self.default)
    }
}

/// How to build a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatasetConfig {
    /// Label source.
    pub labels: Labels,
    /// Weeks after a window in which a degradation makes it `scale_up`.
    pub horizon_weeks: u32,
    /// Levels of the `scale_down` outcome.
    pub down: DownLevels,
}

impl Default for DatasetConfig {
    fn default() -> Self {
        Self {
            labels: Labels::Outcomes,
            horizon_weeks: 3,
            down: DownLevels::default(),
        }
    }
}

/// One window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Target id.
    pub target: String,
    /// The window's last week (W-1) in the history.
    pub week: u32,
    /// Feature values in schema order.
    pub values: Vec<f64>,
    /// Its label.
    pub label: Class,
}

/// A labelled dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    /// The feature schema.
    pub schema: Schema,
    /// `bootstrap` or `outcomes`.
    pub labels: String,
    /// The windows, by target then week.
    pub rows: Vec<Row>,
    /// Events that named no target of the history (a typo in an incident file shows here).
    pub unmatched_events: usize,
}

impl Dataset {
    /// SHA-256 of the schema hash, the label source and every row (target, week, the bits of
    /// each value, label): the dataset's identity in a model registry.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.schema.hash.as_bytes());
        h.update(self.labels.as_bytes());
        for row in &self.rows {
            h.update([0]);
            h.update(row.target.as_bytes());
            h.update([0]);
            h.update(row.week.to_le_bytes());
            for v in &row.values {
                h.update(v.to_bits().to_le_bytes());
            }
            h.update(row.label.as_str().as_bytes());
        }
        hex(&h.finalize())
    }

    /// Rows per class, in [`crate::CLASSES`] order.
    pub fn class_counts(&self) -> [usize; 3] {
        let mut counts = [0; 3];
        for row in &self.rows {
            counts[crate::class_index(row.label)] += 1;
        }
        counts
    }

    /// The subset of rows at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        Dataset {
            schema: self.schema.clone(),
            labels: self.labels.clone(),
            rows: indices.iter().map(|&i| self.rows[i].clone()).collect(),
            unmatched_events: 0,
        }
    }
}

/// Builds the windows of `history`, labelled as `config` says, with `events` as the outcomes
/// (the history's own, or those of an incident file).
pub fn build(history: &History, events: &[Event], config: &DatasetConfig) -> Result<Dataset> {
    if config.horizon_weeks == 0 {
        return Err(Error::Config("horizon_weeks must be at least 1".into()));
    }
    // A history read from a source brings each ratio metric's weekly peaks: the schema then
    // has their features, and the outcome labels judge halving by the peaks, not the means.
    let peak_metrics: Vec<usize> = (0..history.metrics.len())
        .filter(|&m| {
            history.metrics[m].is_ratio()
                && history
                    .targets
                    .iter()
                    .any(|t| t.peaks.get(m).is_some_and(|p| !p.is_empty()))
        })
        .collect();
    let schema = Schema::with_peaks(
        history.metrics.iter().map(|m| m.name.clone()),
        peak_metrics
            .iter()
            .map(|&m| history.metrics[m].name.clone()),
    );
    let ids: BTreeSet<&str> = history.targets.iter().map(|t| t.id.as_str()).collect();
    let mut event_weeks: BTreeSet<(&str, u32)> = BTreeSet::new();
    let mut unmatched_events = 0;
    for e in events {
        if ids.contains(e.target.as_str()) {
            event_weeks.insert((e.target.as_str(), e.week));
        } else {
            unmatched_events += 1;
        }
    }
    let bootstrap = match &config.labels {
        Labels::Bootstrap { thresholds } => {
            thresholds
                .validate()
                .map_err(|p| Error::Config(format!("bootstrap thresholds: {}", p.join("; "))))?;
            Some(BootstrapHeuristics::new(thresholds.clone()))
        }
        Labels::Outcomes => None,
    };
    let w = WINDOW_WEEKS as usize;
    let horizon = config.horizon_weeks as usize;
    let mut rows = Vec::new();
    for target in &history.targets {
        let weeks = target.weekly.first().map(Vec::len).unwrap_or(0);
        if target.weekly.len() != history.metrics.len()
            || target.weekly.iter().any(|m| m.len() != weeks)
        {
            return Err(Error::Dataset(format!(
                "target {}: one weekly series per metric, all of the same length",
                target.id
            )));
        }
        for t in (w - 1)..weeks.saturating_sub(horizon) {
            // Weeks without data (NaN) are filled from the nearest present one when enough
            // are present, as the classify stage does; else the window teaches nothing.
            // With peak features, a metric missing from the whole window is an explicit
            // missing value (zeros, and its `_peak_coverage` 0), as the classify stage sees it.
            let Some(filled) = target
                .weekly
                .iter()
                .map(|m| {
                    let weeks = &m[t + 1 - w..=t];
                    fill_missing_weeks(weeks).or_else(|| {
                        (schema.has_peaks() && weeks.iter().all(|v| !v.is_finite()))
                            .then(|| vec![0.0; weeks.len()])
                    })
                })
                .collect::<Option<Vec<Vec<f64>>>>()
            else {
                continue;
            };
            let window: Vec<&[f64]> = filled.iter().map(Vec::as_slice).collect();
            let peaks: Vec<&[setpoint_core::WeekPeak]> = peak_metrics
                .iter()
                .map(|&m| target.peaks[m].get(t + 1 - w..=t).unwrap_or_default())
                .collect();
            let values = schema.row_with_peaks(&window, &peaks);
            let label = match &bootstrap {
                Some(rules) => rules.classify(&vector(&schema, &values)).class,
                None => {
                    let event_in = |from: usize, to: usize| {
                        (from..=to).any(|k| event_weeks.contains(&(target.id.as_str(), k as u32)))
                    };
                    if event_in(t + 1, t + horizon) {
                        Class::ScaleUp
                    } else if !event_in(t + 1 - w, t)
                        && history
                            .metrics
                            .iter()
                            .zip(&target.weekly)
                            .enumerate()
                            .filter(|(_, (m, _))| m.is_ratio())
                            .all(|(k, (m, series))| {
                                let level = config.down.level(&m.name);
                                match target.peaks.get(k).filter(|p| !p.is_empty()) {
                                    // A missing peak (NaN, None) is no evidence of room.
                                    Some(peaks) => peaks
                                        .get(t + 1 - w..=t + horizon)
                                        .unwrap_or_default()
                                        .iter()
                                        .all(|p| p.peak().is_some_and(|v| v < level)),
                                    None => {
                                        series[t + 1 - w..=t + horizon].iter().all(|&v| v < level)
                                    }
                                }
                            })
                    {
                        Class::ScaleDown
                    } else {
                        Class::Remain
                    }
                }
            };
            rows.push(Row {
                target: target.id.clone(),
                week: t as u32,
                values,
                label,
            });
        }
    }
    Ok(Dataset {
        schema,
        labels: config.labels.as_str().to_string(),
        rows,
        unmatched_events,
    })
}

/// A metric's window of weekly values with each missing (non-finite) week filled from its
/// nearest present week (the older one on a tie); `None` when fewer than
/// [`MIN_PRESENT_WEEKS`] are present.
pub fn fill_missing_weeks(values: &[f64]) -> Option<Vec<f64>> {
    if values.iter().filter(|v| v.is_finite()).count() < MIN_PRESENT_WEEKS {
        return None;
    }
    Some(
        (0..values.len())
            .map(|i| {
                (0..values.len())
                    .filter(|&j| values[j].is_finite())
                    .min_by_key(|&j| (i.abs_diff(j), j))
                    .map_or(f64::NAN, |j| values[j])
            })
            .collect(),
    )
}

/// The plugin-shaped feature vector of a row's fingerprint.
pub(crate) fn vector(schema: &Schema, values: &[f64]) -> FeatureVector {
    FeatureVector {
        features: schema
            .fingerprint()
            .iter()
            .zip(values)
            .map(|(name, &v)| Feature {
                name: name.clone(),
                value: Some(v),
                coverage: 1.0,
            })
            .collect(),
    }
}

/// One line of a JSON-lines incident file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IncidentLine {
    target: String,
    #[serde(default)]
    week: Option<u32>,
    #[serde(default)]
    time: Option<String>,
    kind: String,
}

/// Reads an incident file: CSV (`target,week,kind` or `target,time,kind`, an optional header
/// line, `#` comments, no quoting) or JSON lines (`{"target": …, "week": 3, "kind": …}` or
/// `"time": "2025-03-04T10:00:00Z"`), told apart by the first non-blank line starting with `{`.
/// Kinds are `latency_spike`, `connection_timeout` and `oom_kill`. A `time` is placed in the
/// week counted from `origin` (the start of the history's week 0), which it then requires.
/// Every error names the file and the line.
pub fn load_incidents(path: &Path, origin: Option<DateTime<Utc>>) -> Result<Vec<Event>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_incidents(&text, path, origin)
}

/// [`load_incidents`] on text already read; `path` only names the source in errors.
pub fn parse_incidents(
    text: &str,
    path: &Path,
    origin: Option<DateTime<Utc>>,
) -> Result<Vec<Event>> {
    let fail = |line: usize, message: String| Error::Incident {
        path: path.to_path_buf(),
        line,
        message,
    };
    let json = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .is_some_and(|l| l.starts_with('{'));
    let mut events = Vec::new();
    let mut header_allowed = true;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (target, week, time, kind) = if json {
            let l: IncidentLine =
                serde_json::from_str(line).map_err(|e| fail(line_no, e.to_string()))?;
            (l.target, l.week.map(|w| w.to_string()), l.time, l.kind)
        } else {
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            if fields.len() != 3 {
                return Err(fail(
                    line_no,
                    format!(
                        "expected 3 comma-separated fields (target, week or time, kind), got {}",
                        fields.len()
                    ),
                ));
            }
            if header_allowed && fields[0] == "target" {
                header_allowed = false;
                continue;
            }
            let when = fields[1].to_string();
            if when.contains('T') || when.contains('-') {
                (
                    fields[0].to_string(),
                    None,
                    Some(when),
                    fields[2].to_string(),
                )
            } else {
                (
                    fields[0].to_string(),
                    Some(when),
                    None,
                    fields[2].to_string(),
                )
            }
        };
        header_allowed = false;
        if target.is_empty() {
            return Err(fail(line_no, "empty target".into()));
        }
        let kind = EventKind::parse(&kind).ok_or_else(|| {
            fail(
                line_no,
                format!(
                    "unknown kind {kind:?}; expected latency_spike, connection_timeout or oom_kill"
                ),
            )
        })?;
        let week = match (week, time) {
            (Some(w), None) => w
                .parse::<u32>()
                .map_err(|_| fail(line_no, format!("week {w:?} is not a whole number")))?,
            (None, Some(t)) => {
                let at = DateTime::parse_from_rfc3339(&t)
                    .map_err(|e| fail(line_no, format!("time {t:?} is not RFC 3339: {e}")))?
                    .with_timezone(&Utc);
                let origin = origin.ok_or_else(|| {
                    fail(
                        line_no,
                        "a time needs the history's start (origin) to find its week".into(),
                    )
                })?;
                let days = (at - origin).num_days();
                if days < 0 {
                    return Err(fail(line_no, format!("time {t} is before the history")));
                }
                u32::try_from(days / 7)
                    .map_err(|_| fail(line_no, format!("time {t} is too far from the origin")))?
            }
            (Some(_), Some(_)) => {
                return Err(fail(line_no, "give a week or a time, not both".into()));
            }
            (None, None) => return Err(fail(line_no, "missing week or time".into())),
        };
        events.push(Event { target, week, kind });
    }
    events.sort();
    events.dedup();
    Ok(events)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::history::{HistoryConfig, simulate};
    use crate::testkit::{instance_b, postgres_scenarios};

    fn history() -> History {
        simulate(
            &postgres_scenarios(),
            &HistoryConfig {
                seed: 3,
                weeks: 12,
                targets_per_scenario: 5,
                fresh_targets: 20,
                ..HistoryConfig::default()
            },
        )
        .unwrap()
    }

    #[test]
    fn schema_is_named_generically_and_hashed() {
        let s = Schema::new(["cpu", "memory", "connections", "iops"]);
        assert_eq!(s.len(), 24);
        assert_eq!(
            &s.features[..5],
            ["cpu_w4", "cpu_w3", "cpu_w2", "cpu_w1", "memory_w4"]
        );
        assert_eq!(s.features[16], "cpu_trend");
        assert_eq!(s.features[23], "iops_level");
        assert_eq!(s.hash.len(), 64);
        s.check().unwrap();
        let kafka = Schema::new(["cpu", "memory", "lag"]);
        assert_eq!(kafka.len(), 18);
        assert!(kafka.features.contains(&"lag_trend".to_string()));
        assert_ne!(kafka.hash, s.hash);
        let mut tampered = s.clone();
        tampered.features.swap(0, 1);
        assert!(tampered.check().is_err());
    }

    #[test]
    fn rows_from_plugin_features_add_trend_and_level() {
        let s = Schema::new(["cpu", "memory", "connections", "iops"]);
        let row = s.row_from_features(&instance_b()).unwrap();
        assert_eq!(row[3], 0.74);
        // CPU 61, 66, 71, 74 %: slope 4.4 points a week, mean 68 %.
        assert!((row[16] - 0.044).abs() < 1e-9, "{}", row[16]);
        assert!((row[20] - 0.68).abs() < 1e-9, "{}", row[20]);
        let mut gap = instance_b();
        gap.features[5].value = None;
        gap.features[6].value = Some(f64::NAN);
        let missing = s.row_from_features(&gap).unwrap_err();
        let names: Vec<&str> = missing.iter().map(|e| e.feature.as_str()).collect();
        assert_eq!(names, ["memory_w3", "memory_w2"]);
    }

    #[test]
    fn outcome_labels_follow_events_and_headroom() {
        let h = history();
        let d = build(&h, &h.events, &DatasetConfig::default()).unwrap();
        // 12 weeks, windows end in weeks 3..=8.
        assert_eq!(d.rows.len(), h.targets.len() * 6);
        for row in &d.rows {
            let later = h
                .events
                .iter()
                .any(|e| e.target == row.target && e.week > row.week && e.week <= row.week + 3);
            assert_eq!(later, row.label == Class::ScaleUp, "{row:?}");
        }
        let [down, remain, up] = d.class_counts();
        assert!(down > 0 && remain > 0 && up > 0, "{down} {remain} {up}");
        // Reporting targets idle: mostly scale_down. Instance B's last window: scale_up.
        let b = d
            .rows
            .iter()
            .find(|r| r.target == "pg-transactional-001" && r.week == 4)
            .unwrap();
        assert_eq!(b.label, Class::ScaleUp);
        let a = d
            .rows
            .iter()
            .find(|r| r.target == "pg-reporting-001" && r.week == 4)
            .unwrap();
        assert_eq!(a.label, Class::ScaleDown);
        // No events at all: nothing is scale_up.
        let quiet = build(&h, &[], &DatasetConfig::default()).unwrap();
        assert_eq!(quiet.class_counts()[2], 0);
        assert_ne!(quiet.fingerprint(), d.fingerprint());
    }

    #[test]
    fn bootstrap_labels_are_the_rules_verdicts() {
        let h = history();
        let config = DatasetConfig {
            labels: Labels::Bootstrap {
                thresholds: Thresholds::default(),
            },
            ..DatasetConfig::default()
        };
        let d = build(&h, &h.events, &config).unwrap();
        assert_eq!(d.labels, "bootstrap");
        let b = d
            .rows
            .iter()
            .find(|r| r.target == "pg-transactional-001" && r.week == 4)
            .unwrap();
        assert_eq!(b.label, Class::Remain, "the rules miss instance B");
        let again = build(&h, &h.events, &config).unwrap();
        assert_eq!(again.fingerprint(), d.fingerprint());
    }

    #[test]
    fn incident_files_parse_csv_and_json_lines() {
        let p = Path::new("incidents.csv");
        let csv = "# exported\ntarget,week,kind\npg-1, 5, oom_kill\npg-2,3,latency_spike\n";
        let events = parse_incidents(csv, p, None).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].target, "pg-1");
        assert_eq!(events[0].kind, EventKind::OomKill);
        let origin = DateTime::parse_from_rfc3339("2025-01-06T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let jsonl = r#"{"target":"pg-1","week":2,"kind":"connection_timeout"}

{"target":"pg-2","time":"2025-01-21T10:00:00Z","kind":"latency_spike"}"#;
        let events = parse_incidents(jsonl, Path::new("i.jsonl"), Some(origin)).unwrap();
        assert_eq!(events[1].week, 2);
        assert_eq!(events[0].kind, EventKind::ConnectionTimeout);
    }

    #[test]
    fn incident_errors_name_file_and_line() {
        let p = Path::new("/data/incidents.csv");
        let err = parse_incidents("target,week,kind\npg-1,5,oom\n", p, None).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("/data/incidents.csv:2:"), "{msg}");
        assert!(msg.contains("unknown kind \"oom\""), "{msg}");
        let err = parse_incidents("pg-1,five,oom_kill\n", p, None).unwrap_err();
        assert!(matches!(err, Error::Incident { line: 1, .. }), "{err}");
        let err = parse_incidents("pg-1,2025-01-07T00:00:00Z,oom_kill\n", p, None).unwrap_err();
        assert!(err.to_string().contains("origin"), "{err}");
        let err = parse_incidents("{\"target\":\"a\",\"kind\":\"oom_kill\"}\n{oops\n", p, None)
            .unwrap_err();
        assert!(matches!(err, Error::Incident { line: 1, .. }), "{err}");
        let err = load_incidents(Path::new("/nonexistent/incidents.csv"), None).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/incidents.csv"),
            "{err}"
        );
    }

    #[test]
    fn a_metric_missing_throughout_is_an_explicit_missing_value_never_room_to_shrink() {
        use crate::history::{MetricInfo, Pattern, TargetHistory};
        use setpoint_core::WeekPeak;
        let idle = WeekPeak {
            mean: Some(0.1),
            p99: Some(0.15),
            max_hourly: Some(0.14),
            near_saturation: Some(0.0),
            coverage: 1.0,
        };
        let weeks = 8;
        let target = |id: &str, with_iops: bool| TargetHistory {
            id: id.into(),
            scenario: "observed".into(),
            pattern: Pattern::Observed,
            weekly: vec![
                vec![0.1; weeks],
                if with_iops {
                    vec![0.1; weeks]
                } else {
                    vec![f64::NAN; weeks]
                },
            ],
            peaks: vec![
                vec![idle; weeks],
                if with_iops {
                    vec![idle; weeks]
                } else {
                    Vec::new()
                },
            ],
        };
        let history = History {
            metrics: vec![
                MetricInfo::observed("cpu", true),
                MetricInfo::observed("iops", true),
            ],
            weeks: weeks as u32,
            targets: vec![target("with", true), target("without", false)],
            events: Vec::new(),
        };
        let d = build(&history, &[], &DatasetConfig::default()).unwrap();
        assert_eq!(d.schema.version, SCHEMA_VERSION_PEAKS);
        assert_eq!(d.schema.peak_metrics, ["cpu", "iops"]);
        let coverage = d
            .schema
            .features
            .iter()
            .position(|f| f == "iops_peak_coverage")
            .unwrap();
        for row in &d.rows {
            assert!(row.values.iter().all(|v| v.is_finite()), "{row:?}");
            if row.target == "with" {
                assert_eq!(row.label, Class::ScaleDown);
                assert_eq!(row.values[coverage], 1.0);
            } else {
                // Idle on CPU, but its I/O is unknown: seen as missing, and no evidence of room.
                assert_eq!(row.label, Class::Remain);
                assert_eq!(row.values[coverage], 0.0);
            }
        }
        assert_eq!(d.rows.iter().filter(|r| r.target == "without").count(), 2);
    }

    #[test]
    fn incidents_of_unknown_targets_are_counted() {
        let h = history();
        let events = vec![Event {
            target: "pg-typo".into(),
            week: 4,
            kind: EventKind::OomKill,
        }];
        let d = build(&h, &events, &DatasetConfig::default()).unwrap();
        assert_eq!(d.unmatched_events, 1);
    }
}
