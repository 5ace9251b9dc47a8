//! Batches: how the host's columns become the per-target values a plugin implements against.
//!
//! The host sends a stage's targets in one call, as columns ([`FeaturesBatch`],
//! [`ProposeBatch`]), because crossing the sandbox boundary costs per call and per string or
//! list, not per value. [`export_adapter!`](crate::export_adapter) decodes a batch here and calls
//! the plugin's [`Adapter`] functions once per target, so a plugin is written, and unit-tested,
//! one target at a time.
//!
//! The encoders ([`target_columns`], [`metric_columns`]) build what the host would send, so a
//! plugin's tests can run the batch path natively too.

use std::ops::Range;

use crate::Adapter;
use crate::types::{
    Classification, FeatureVector, FeaturesBatch, MetricColumns, PackedStrings, PluginError,
    Proposal, ProposeBatch, ProposeRequest, Resources, Series, Target, TargetColumns,
};

/// The code of the error every target of a batch gets when the batch itself is malformed (a
/// host bug, never the plugin's).
pub const MALFORMED: &str = "malformed-batch";

/// Strings packed end to end, checked once so that reading an item cannot fail.
struct Packed<'a> {
    text: &'a str,
    ends: &'a [u32],
}

impl<'a> Packed<'a> {
    fn new(packed: &'a PackedStrings, what: &str) -> Result<Self, String> {
        let text = packed.text.as_str();
        let mut start = 0usize;
        for (i, &end) in packed.ends.iter().enumerate() {
            let end = end as usize;
            if end < start || end > text.len() || !text.is_char_boundary(end) {
                return Err(format!(
                    "{what}: item {i} ends at byte {end}, outside {start}..={} or inside a character",
                    text.len()
                ));
            }
            start = end;
        }
        Ok(Self {
            text,
            ends: &packed.ends,
        })
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn get(&self, i: usize) -> &'a str {
        let range = span(self.ends, i);
        self.text.get(range).unwrap_or_default()
    }
}

/// Entries `ends[i-1]..ends[i]` (from 0 for the first).
fn span(ends: &[u32], i: usize) -> Range<usize> {
    let start = match i {
        0 => 0,
        _ => ends.get(i - 1).copied().unwrap_or(0) as usize,
    };
    let end = ends.get(i).copied().map_or(start, |e| e as usize);
    start..end.max(start)
}

/// Checks that `ends` has one entry per target, never decreases and stays within `len` items.
fn check_ends(ends: &[u32], targets: usize, len: usize, what: &str) -> Result<(), String> {
    if ends.len() != targets {
        return Err(format!("{what}: {} ends for {targets} targets", ends.len()));
    }
    let mut previous = 0u32;
    for (i, &end) in ends.iter().enumerate() {
        if end < previous || end as usize > len {
            return Err(format!(
                "{what}: target {i} ends at {end}, outside {previous}..={len}"
            ));
        }
        previous = end;
    }
    Ok(())
}

/// The targets of a batch, checked.
struct Targets<'a> {
    columns: &'a TargetColumns,
    ids: Packed<'a>,
    technologies: Packed<'a>,
    label_names: Packed<'a>,
    label_values: Packed<'a>,
    parameter_names: Packed<'a>,
    parameter_values: Packed<'a>,
}

impl<'a> Targets<'a> {
    fn new(columns: &'a TargetColumns) -> Result<Self, String> {
        let targets = Self {
            columns,
            ids: Packed::new(&columns.ids, "ids")?,
            technologies: Packed::new(&columns.technologies, "technologies")?,
            label_names: Packed::new(&columns.label_names, "label names")?,
            label_values: Packed::new(&columns.label_values, "label values")?,
            parameter_names: Packed::new(&columns.parameter_names, "parameter names")?,
            parameter_values: Packed::new(&columns.parameter_values, "parameter values")?,
        };
        let n = targets.len();
        for (what, len) in [
            ("technologies", targets.technologies.len()),
            ("cpu", columns.cpu_millicores.len()),
            ("memory", columns.memory_bytes.len()),
            ("replicas", columns.replicas.len()),
        ] {
            if len != n {
                return Err(format!("{len} {what} for {n} targets"));
            }
        }
        if targets.label_names.len() != targets.label_values.len() {
            return Err("label names and values differ in number".to_string());
        }
        if targets.parameter_names.len() != targets.parameter_values.len() {
            return Err("parameter names and values differ in number".to_string());
        }
        check_ends(&columns.label_ends, n, targets.label_names.len(), "labels")?;
        check_ends(
            &columns.parameter_ends,
            n,
            targets.parameter_names.len(),
            "parameters",
        )?;
        Ok(targets)
    }

    fn len(&self) -> usize {
        self.ids.len()
    }

    fn pairs(
        names: &Packed<'_>,
        values: &Packed<'_>,
        range: Range<usize>,
    ) -> Vec<(String, String)> {
        range
            .map(|k| (names.get(k).to_string(), values.get(k).to_string()))
            .collect()
    }

    /// Target `i` (checked to exist by [`Targets::new`]).
    fn target(&self, i: usize) -> Target {
        let c = self.columns;
        Target {
            id: self.ids.get(i).to_string(),
            technology: self.technologies.get(i).to_string(),
            labels: Self::pairs(
                &self.label_names,
                &self.label_values,
                span(&c.label_ends, i),
            ),
            resources: Resources {
                cpu_millicores: c.cpu_millicores.get(i).copied().unwrap_or(0),
                memory_bytes: c.memory_bytes.get(i).copied().unwrap_or(0),
                replicas: c.replicas.get(i).copied().unwrap_or(0),
                parameters: Self::pairs(
                    &self.parameter_names,
                    &self.parameter_values,
                    span(&c.parameter_ends, i),
                ),
            },
        }
    }
}

/// One error per target, for a batch that cannot be read.
fn malformed<T>(targets: usize, message: &str) -> Vec<Result<T, PluginError>> {
    (0..targets)
        .map(|_| Err(crate::error(MALFORMED, message)))
        .collect()
}

fn check_series(columns: &MetricColumns, targets: usize) -> Result<(), String> {
    let points = columns.timestamps_ms.len();
    let counts = columns.sample_counts.as_ref().map_or(points, Vec::len);
    let shape = if columns.values.len() != points {
        Err(format!(
            "{} values for {points} timestamps",
            columns.values.len()
        ))
    } else if counts != points {
        Err(format!("{counts} sample counts for {points} points"))
    } else {
        check_ends(&columns.point_ends, targets, points, "points")
    };
    shape.map_err(|problem| format!("metric {:?}: {problem}", columns.metric))
}

/// Target `i`'s series: one per metric entry with points for it.
fn series_of(columns: &[MetricColumns], i: usize) -> Vec<Series> {
    columns
        .iter()
        .filter_map(|m| {
            let range = span(&m.point_ends, i);
            if range.is_empty() {
                return None;
            }
            Some(Series {
                metric: m.metric.clone(),
                timestamps_ms: m.timestamps_ms.get(range.clone())?.to_vec(),
                values: m.values.get(range.clone())?.to_vec(),
                sample_counts: match &m.sample_counts {
                    Some(counts) => Some(counts.get(range)?.to_vec()),
                    None => None,
                },
            })
        })
        .collect()
}

/// Runs `A::features` for every target of `batch`, in order.
pub fn features<A: Adapter>(batch: FeaturesBatch) -> Vec<Result<FeatureVector, PluginError>> {
    let n = batch.targets.ids.ends.len();
    let targets = match Targets::new(&batch.targets) {
        Ok(targets) => targets,
        Err(message) => return malformed(n, &message),
    };
    if let Some(message) = batch.series.iter().find_map(|m| check_series(m, n).err()) {
        return malformed(n, &message);
    }
    (0..n)
        .map(|i| A::features(targets.target(i), batch.window, series_of(&batch.series, i)))
        .collect()
}

/// Runs `A::propose` for every target of `batch`, in order.
pub fn propose<A: Adapter>(batch: ProposeBatch) -> Vec<Result<Vec<Proposal>, PluginError>> {
    let n = batch.targets.ids.ends.len();
    let targets = match Targets::new(&batch.targets) {
        Ok(targets) => targets,
        Err(message) => return malformed(n, &message),
    };
    let width = match n {
        0 => 0,
        _ => batch.feature_values.len() / n,
    };
    let shape = if batch.classes.len() != n || batch.confidences.len() != n {
        Err(format!(
            "{} classes and {} confidences for {n} targets",
            batch.classes.len(),
            batch.confidences.len()
        ))
    } else if width * n != batch.feature_values.len()
        || batch.feature_coverage.len() != batch.feature_values.len()
    {
        Err(format!(
            "{} feature values and {} coverages do not split into {n} vectors",
            batch.feature_values.len(),
            batch.feature_coverage.len()
        ))
    } else {
        Ok(())
    };
    if let Err(message) = shape {
        return malformed(n, &message);
    }
    (0..n)
        .map(|i| {
            let row = i * width..(i + 1) * width;
            A::propose(ProposeRequest {
                target: targets.target(i),
                classification: Classification {
                    class: batch.classes[i],
                    confidence: batch.confidences[i],
                },
                features: FeatureVector {
                    values: batch.feature_values[row.clone()].to_vec(),
                    coverage: batch.feature_coverage[row].to_vec(),
                },
                bounds: batch.bounds,
            })
        })
        .collect()
}

/// Packs `items` end to end.
pub fn pack<'a>(items: impl IntoIterator<Item = &'a str>) -> PackedStrings {
    let mut packed = PackedStrings {
        text: String::new(),
        ends: Vec::new(),
    };
    for item in items {
        packed.text.push_str(item);
        packed.ends.push(packed.text.len() as u32);
    }
    packed
}

/// The targets as the host sends them.
pub fn target_columns(targets: &[Target]) -> TargetColumns {
    let labels = targets.iter().flat_map(|t| &t.labels);
    let parameters = targets.iter().flat_map(|t| &t.resources.parameters);
    let ends = |count: fn(&Target) -> usize| {
        targets
            .iter()
            .scan(0u32, |end, t| {
                *end += count(t) as u32;
                Some(*end)
            })
            .collect()
    };
    TargetColumns {
        ids: pack(targets.iter().map(|t| t.id.as_str())),
        technologies: pack(targets.iter().map(|t| t.technology.as_str())),
        label_ends: ends(|t| t.labels.len()),
        label_names: pack(labels.clone().map(|(k, _)| k.as_str())),
        label_values: pack(labels.map(|(_, v)| v.as_str())),
        cpu_millicores: targets.iter().map(|t| t.resources.cpu_millicores).collect(),
        memory_bytes: targets.iter().map(|t| t.resources.memory_bytes).collect(),
        replicas: targets.iter().map(|t| t.resources.replicas).collect(),
        parameter_ends: ends(|t| t.resources.parameters.len()),
        parameter_names: pack(parameters.clone().map(|(k, _)| k.as_str())),
        parameter_values: pack(parameters.map(|(_, v)| v.as_str())),
    }
}

/// Every target's series as the host sends them: one entry per metric and shape (summarised
/// or raw), in order of first appearance.
pub fn metric_columns(series: &[Vec<Series>]) -> Vec<MetricColumns> {
    let mut columns: Vec<MetricColumns> = Vec::new();
    for (i, target) in series.iter().enumerate() {
        for s in target {
            let summarised = s.sample_counts.is_some();
            let k = match columns
                .iter()
                .position(|c| c.metric == s.metric && c.sample_counts.is_some() == summarised)
            {
                Some(k) => k,
                None => {
                    columns.push(MetricColumns {
                        metric: s.metric.clone(),
                        point_ends: vec![0; i],
                        timestamps_ms: Vec::new(),
                        values: Vec::new(),
                        sample_counts: summarised.then(Vec::new),
                    });
                    columns.len() - 1
                }
            };
            let c = &mut columns[k];
            c.point_ends.resize(i, c.timestamps_ms.len() as u32);
            c.timestamps_ms.extend_from_slice(&s.timestamps_ms);
            c.values.extend_from_slice(&s.values);
            if let (Some(counts), Some(more)) = (&mut c.sample_counts, &s.sample_counts) {
                counts.extend_from_slice(more);
            }
            c.point_ends.push(c.timestamps_ms.len() as u32);
        }
    }
    for c in &mut columns {
        c.point_ends
            .resize(series.len(), c.timestamps_ms.len() as u32);
    }
    columns
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::types::{ActionKind, Bounds, Class, Descriptor, Operation, ResizeOp, Risk, Window};

    /// Echoes what it was given, so a test sees what the decoding produced.
    struct Echo;

    impl Adapter for Echo {
        fn describe() -> Descriptor {
            unreachable!("not called")
        }

        fn features(
            target: Target,
            window: Window,
            series: Vec<Series>,
        ) -> Result<FeatureVector, PluginError> {
            if target.id == "refuse" {
                return Err(crate::error("no", "refused"));
            }
            let mut values = vec![window.weeks as f64, target.labels.len() as f64];
            for s in &series {
                values.push(s.values.iter().sum());
                values.push(s.sample_counts.as_ref().map_or(-1.0, |c| c.len() as f64));
            }
            Ok(FeatureVector {
                coverage: vec![1.0; values.len()],
                values,
            })
        }

        fn propose(request: ProposeRequest) -> Result<Vec<Proposal>, PluginError> {
            Ok(vec![Proposal {
                action: ActionKind::ScaleDown,
                summary: format!(
                    "{} {:?} {} {:?} {:?}",
                    request.target.id,
                    request.classification.class,
                    request.classification.confidence,
                    request.features.values,
                    request.target.resources.parameters
                ),
                operations: vec![Operation::Resize(ResizeOp {
                    cpu_millicores: request.bounds.min_cpu_millicores,
                    memory_bytes: request.target.resources.memory_bytes,
                })],
                risk: Risk::Low,
                rationale: request.target.technology,
            }])
        }
    }

    fn target(id: &str, labels: &[(&str, &str)], parameters: &[(&str, &str)]) -> Target {
        let pairs = |p: &[(&str, &str)]| {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        Target {
            id: id.to_string(),
            technology: "postgres".to_string(),
            labels: pairs(labels),
            resources: Resources {
                cpu_millicores: 4000,
                memory_bytes: 8 << 30,
                replicas: 1,
                parameters: pairs(parameters),
            },
        }
    }

    fn series(metric: &str, values: &[f64], counts: bool) -> Series {
        Series {
            metric: metric.to_string(),
            timestamps_ms: (0..values.len() as i64).collect(),
            values: values.to_vec(),
            sample_counts: counts.then(|| vec![10; values.len()]),
        }
    }

    const WINDOW: Window = Window {
        start_ms: 0,
        end_ms: 1,
        step_seconds: 300,
        weeks: 4,
    };

    #[test]
    fn each_target_gets_its_own_row_and_a_missing_metric_stays_missing() {
        let targets = vec![
            target("a", &[("instance", "a:9187"), ("role", "primary")], &[]),
            target("é-unicode", &[], &[("work_mem", "4MB")]),
            target("refuse", &[], &[]),
            target("c", &[("instance", "c")], &[]),
        ];
        let per_target = vec![
            vec![
                series("cpu", &[1.0, 2.0], true),
                series("mem", &[5.0], true),
            ],
            vec![series("mem", &[7.0, 1.0], false)],
            vec![],
            vec![series("cpu", &[3.0], true)],
        ];
        let columns = metric_columns(&per_target);
        assert_eq!(columns.len(), 3, "cpu, mem summarised, mem raw");
        let out = features::<Echo>(FeaturesBatch {
            window: WINDOW,
            targets: target_columns(&targets),
            series: columns,
        });
        assert_eq!(out.len(), 4);
        assert_eq!(
            out[0].as_ref().unwrap().values,
            vec![4.0, 2.0, 3.0, 2.0, 5.0, 1.0]
        );
        assert_eq!(out[1].as_ref().unwrap().values, vec![4.0, 0.0, 8.0, -1.0]);
        assert_eq!(out[2].as_ref().unwrap_err().code, "no");
        assert_eq!(out[3].as_ref().unwrap().values, vec![4.0, 1.0, 3.0, 1.0]);
    }

    #[test]
    fn proposals_see_their_target_class_and_feature_row() {
        let targets = vec![
            target("a", &[], &[("shared_buffers", "8GB")]),
            target("b", &[], &[("max_connections", "200"), ("work_mem", "4MB")]),
        ];
        let out = propose::<Echo>(ProposeBatch {
            targets: target_columns(&targets),
            classes: vec![Class::ScaleDown, Class::ScaleUp],
            confidences: vec![0.5, 0.75],
            feature_values: vec![1.0, 2.0, 3.0, 4.0],
            feature_coverage: vec![1.0; 4],
            bounds: Bounds {
                min_cpu_millicores: 500,
                max_cpu_millicores: 1000,
                min_memory_bytes: 1,
                max_memory_bytes: 2,
            },
        });
        let summary = |i: usize| out[i].as_ref().unwrap()[0].summary.clone();
        assert_eq!(
            summary(0),
            r#"a Class::ScaleDown 0.5 [1.0, 2.0] [("shared_buffers", "8GB")]"#
        );
        assert_eq!(
            summary(1),
            r#"b Class::ScaleUp 0.75 [3.0, 4.0] [("max_connections", "200"), ("work_mem", "4MB")]"#
        );
    }

    #[test]
    fn a_malformed_batch_fails_every_target_and_never_panics() {
        let targets = vec![target("a", &[], &[]), target("b", &[], &[])];
        let mut columns = target_columns(&targets);
        columns.ids.ends[1] = 99;
        let out = features::<Echo>(FeaturesBatch {
            window: WINDOW,
            targets: columns,
            series: vec![],
        });
        assert_eq!(out.len(), 2);
        assert!(
            out.iter()
                .all(|r| r.as_ref().unwrap_err().code == MALFORMED)
        );

        let mut cut = metric_columns(&[vec![series("cpu", &[1.0], true)], vec![]]);
        cut[0].point_ends = vec![1, 0];
        let out = features::<Echo>(FeaturesBatch {
            window: WINDOW,
            targets: target_columns(&targets),
            series: cut,
        });
        let message = &out[1].as_ref().unwrap_err().message;
        assert!(message.contains("metric \"cpu\""), "{message}");

        let mut inside = target_columns(&[target("é", &[], &[])]);
        inside.ids.ends[0] = 1;
        let out = features::<Echo>(FeaturesBatch {
            window: WINDOW,
            targets: inside,
            series: vec![],
        });
        assert!(
            out[0]
                .as_ref()
                .unwrap_err()
                .message
                .contains("inside a character")
        );

        let out = propose::<Echo>(ProposeBatch {
            targets: target_columns(&targets),
            classes: vec![Class::Remain],
            confidences: vec![0.5, 0.5],
            feature_values: vec![],
            feature_coverage: vec![],
            bounds: Bounds {
                min_cpu_millicores: 0,
                max_cpu_millicores: 0,
                min_memory_bytes: 0,
                max_memory_bytes: 0,
            },
        });
        assert!(
            out.iter()
                .all(|r| r.as_ref().unwrap_err().code == MALFORMED)
        );
    }

    #[test]
    fn an_empty_batch_answers_nothing() {
        let out = features::<Echo>(FeaturesBatch {
            window: WINDOW,
            targets: target_columns(&[]),
            series: vec![],
        });
        assert!(out.is_empty());
    }
}
