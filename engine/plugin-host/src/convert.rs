//! Conversions between the engine's types and the WIT contract's, with the checks that make a
//! plugin's output trustworthy: a plugin that breaks the contract fails its call, it never
//! feeds nonsense to the classifier or the policy.

use std::collections::BTreeSet;

use setpoint_core as core;

use crate::bindings::setpoint::plugin::types as wit;

/// Strings packed end to end, as [`wit::PackedStrings`] carries them.
fn pack<'a>(items: impl IntoIterator<Item = &'a str>) -> wit::PackedStrings {
    let mut packed = wit::PackedStrings {
        text: String::new(),
        ends: Vec::new(),
    };
    for item in items {
        packed.text.push_str(item);
        packed.ends.push(offset(packed.text.len()));
    }
    packed
}

/// A position in a batch's column. Batches are cut far below 4 Gi entries
/// ([`crate::MAX_BATCH_POINTS`], [`crate::MAX_BATCH_TARGETS`]); a string column cannot reach
/// it either, as the plugin's whole memory is smaller.
fn offset(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Running ends of per-target counts.
fn ends<'a, T: 'a>(targets: &[&'a T], count: impl Fn(&'a T) -> usize) -> Vec<u32> {
    let mut end = 0usize;
    targets
        .iter()
        .map(|t| {
            end += count(t);
            offset(end)
        })
        .collect()
}

/// The targets of a batch as the columns a plugin reads.
pub(crate) fn target_columns(targets: &[&core::Target]) -> wit::TargetColumns {
    let labels = || targets.iter().flat_map(|t| &t.labels);
    let parameters = || targets.iter().flat_map(|t| &t.resources.parameters);
    wit::TargetColumns {
        ids: pack(targets.iter().map(|t| t.id.as_str())),
        technologies: pack(targets.iter().map(|t| t.technology.as_str())),
        label_ends: ends(targets, |t| t.labels.len()),
        label_names: pack(labels().map(|(k, _)| k.as_str())),
        label_values: pack(labels().map(|(_, v)| v.as_str())),
        cpu_millicores: targets.iter().map(|t| t.resources.cpu_millicores).collect(),
        memory_bytes: targets.iter().map(|t| t.resources.memory_bytes).collect(),
        replicas: targets.iter().map(|t| t.resources.replicas).collect(),
        parameter_ends: ends(targets, |t| t.resources.parameters.len()),
        parameter_names: pack(parameters().map(|(k, _)| k.as_str())),
        parameter_values: pack(parameters().map(|(_, v)| v.as_str())),
    }
}

pub(crate) fn window(w: &core::Window) -> wit::Window {
    wit::Window {
        start_ms: w.start.timestamp_millis(),
        end_ms: w.end.timestamp_millis(),
        step_seconds: w.step_seconds,
        weeks: w.weeks,
    }
}

/// Every target's series as one entry per metric and shape (summarised per week or raw), in
/// order of first appearance; a target without a metric has an empty range in its entry.
pub(crate) fn metric_columns(series: &[&[core::MetricSeries]]) -> Vec<wit::MetricColumns> {
    let mut columns: Vec<wit::MetricColumns> = Vec::new();
    for (i, target) in series.iter().enumerate() {
        for s in target.iter() {
            let summarised = s.sample_counts.is_some();
            let k = match columns
                .iter()
                .position(|c| c.metric == s.metric && c.sample_counts.is_some() == summarised)
            {
                Some(k) => k,
                None => {
                    columns.push(wit::MetricColumns {
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
            // A target that sent one metric twice in one shape: keep the first, as the
            // engine does for two series of one target.
            if c.point_ends.len() > i {
                continue;
            }
            c.point_ends.resize(i, offset(c.timestamps_ms.len()));
            // Both columns of a series have the same length by construction; a series that
            // does not is cut to the shorter, never sent misaligned.
            let n = s.timestamps_ms.len().min(s.values.len());
            c.timestamps_ms.extend_from_slice(&s.timestamps_ms[..n]);
            c.values.extend_from_slice(&s.values[..n]);
            if let (Some(counts), Some(more)) = (&mut c.sample_counts, &s.sample_counts) {
                counts.extend((0..n).map(|k| more.get(k).copied().unwrap_or(0)));
            }
            c.point_ends.push(offset(c.timestamps_ms.len()));
        }
    }
    for c in &mut columns {
        c.point_ends
            .resize(series.len(), offset(c.timestamps_ms.len()));
    }
    columns
}

/// The engine's named features as the columns a plugin reads, in the schema's order: by
/// position when the names line up (the vector came from this plugin), else by name, with a
/// feature the vector lacks sent as missing.
fn push_feature_row(
    features: &core::FeatureVector,
    schema: &[core::FeatureSpec],
    values: &mut Vec<f64>,
    coverage: &mut Vec<f64>,
) {
    let in_order = features.features.len() == schema.len()
        && features
            .features
            .iter()
            .zip(schema)
            .all(|(f, spec)| f.name == spec.name);
    for (i, spec) in schema.iter().enumerate() {
        let feature = if in_order {
            features.features.get(i)
        } else {
            features.get(&spec.name)
        };
        values.push(feature.and_then(|f| f.value).unwrap_or(f64::NAN));
        coverage.push(feature.map_or(0.0, |f| f.coverage));
    }
}

fn class(c: core::Class) -> wit::Class {
    match c {
        core::Class::ScaleDown => wit::Class::ScaleDown,
        core::Class::Remain => wit::Class::Remain,
        core::Class::ScaleUp => wit::Class::ScaleUp,
    }
}

/// A batch of proposal requests as columns.
pub(crate) fn propose_batch(
    inputs: &[crate::ProposeInput<'_>],
    schema: &[core::FeatureSpec],
    bounds: &core::Bounds,
) -> wit::ProposeBatch {
    let targets: Vec<&core::Target> = inputs.iter().map(|i| i.target).collect();
    let mut feature_values = Vec::with_capacity(inputs.len() * schema.len());
    let mut feature_coverage = Vec::with_capacity(inputs.len() * schema.len());
    for input in inputs {
        push_feature_row(
            input.features,
            schema,
            &mut feature_values,
            &mut feature_coverage,
        );
    }
    wit::ProposeBatch {
        targets: target_columns(&targets),
        classes: inputs
            .iter()
            .map(|i| class(i.classification.class))
            .collect(),
        confidences: inputs.iter().map(|i| i.classification.confidence).collect(),
        feature_values,
        feature_coverage,
        bounds: wit::Bounds {
            min_cpu_millicores: bounds.min_cpu_millicores,
            max_cpu_millicores: bounds.max_cpu_millicores,
            min_memory_bytes: bounds.min_memory_bytes,
            max_memory_bytes: bounds.max_memory_bytes,
        },
    }
}

fn action(a: wit::ActionKind) -> core::ActionKind {
    match a {
        wit::ActionKind::ScaleUp => core::ActionKind::ScaleUp,
        wit::ActionKind::ScaleDown => core::ActionKind::ScaleDown,
    }
}

fn unique(names: impl Iterator<Item = String>, what: &str) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    for name in names {
        if name.trim().is_empty() {
            return Err(format!("an empty {what} name"));
        }
        if !seen.insert(name.clone()) {
            return Err(format!("{what} {name:?} declared twice"));
        }
    }
    Ok(())
}

pub(crate) fn descriptor(d: wit::Descriptor) -> Result<core::PluginDescriptor, String> {
    for (field, value) in [
        ("name", &d.name),
        ("version", &d.version),
        ("technology", &d.technology),
    ] {
        if value.trim().is_empty() {
            return Err(format!("empty {field}"));
        }
    }
    if d.features.is_empty() {
        return Err("no features declared".to_string());
    }
    unique(d.metrics.iter().map(|m| m.name.clone()), "metric")?;
    unique(d.features.iter().map(|f| f.name.clone()), "feature")?;
    if let Some(m) = d.metrics.iter().find(|m| m.query.trim().is_empty()) {
        return Err(format!("metric {:?} has no query", m.name));
    }
    let metric_names: BTreeSet<&str> = d.metrics.iter().map(|m| m.name.as_str()).collect();
    unique(d.scenarios.iter().map(|s| s.name.clone()), "scenario")?;
    let mut scenarios = Vec::with_capacity(d.scenarios.len());
    for sc in &d.scenarios {
        scenarios.push(scenario(sc, &metric_names)?);
    }
    Ok(core::PluginDescriptor {
        abi_version: d.abi_version,
        scenarios,
        name: d.name,
        version: d.version,
        technology: d.technology,
        metrics: d
            .metrics
            .into_iter()
            .map(|m| core::MetricSpec {
                name: m.name,
                query: m.query,
                aggregation: match m.aggregation {
                    wit::Aggregation::Mean => core::Aggregation::Mean,
                    wit::Aggregation::Max => core::Aggregation::Max,
                    wit::Aggregation::P95 => core::Aggregation::P95,
                },
                unit: m.unit,
                description: m.description,
                capacity: m.capacity,
                fallback_query: m.fallback_query,
            })
            .collect(),
        features: d
            .features
            .into_iter()
            .map(|f| core::FeatureSpec {
                name: f.name,
                description: f.description,
            })
            .collect(),
        actions: d.actions.into_iter().map(action).collect(),
    })
}

/// A simulator scenario, checked so the simulator never has to guess: every declared metric
/// once, five weekly levels, sane ranges, at least one positive size.
fn scenario(sc: &wit::Scenario, metrics: &BTreeSet<&str>) -> Result<core::SimScenario, String> {
    let name = &sc.name;
    if name.trim().is_empty() || sc.id_prefix.trim().is_empty() {
        return Err("a scenario without a name or id prefix".to_string());
    }
    if sc.count == 0 || sc.count > 1000 {
        return Err(format!(
            "scenario {name:?}: count {} outside 1..=1000",
            sc.count
        ));
    }
    if sc.sizes.is_empty() {
        return Err(format!("scenario {name:?}: no sizes"));
    }
    if let Some(r) = sc
        .sizes
        .iter()
        .find(|r| r.cpu_millicores == 0 || r.memory_bytes == 0 || r.replicas == 0)
    {
        return Err(format!("scenario {name:?}: a size of zero ({r:?})"));
    }
    let declared: BTreeSet<&str> = sc.metrics.iter().map(|m| m.metric.as_str()).collect();
    if declared != *metrics || declared.len() != sc.metrics.len() {
        return Err(format!(
            "scenario {name:?}: must describe each metric once ({metrics:?}), describes {:?}",
            sc.metrics.iter().map(|m| &m.metric).collect::<Vec<_>>()
        ));
    }
    let range_ok = |r: Option<(f64, f64)>| {
        r.is_none_or(|(lo, hi)| lo.is_finite() && hi.is_finite() && lo <= hi)
    };
    let mut out = Vec::with_capacity(sc.metrics.len());
    for m in &sc.metrics {
        let finite = m.weeks.iter().all(|w| w.is_finite())
            && [m.daily_amplitude, m.noise, m.min, m.max]
                .iter()
                .all(|v| v.is_finite());
        if m.weeks.len() != 5 || !finite || m.noise < 0.0 || m.min > m.max {
            return Err(format!(
                "scenario {name:?}, metric {:?}: needs five finite weekly levels, noise >= 0 and min <= max",
                m.metric
            ));
        }
        if !range_ok(m.lift) || !range_ok(m.scale) {
            return Err(format!(
                "scenario {name:?}, metric {:?}: a lift or scale range is not lo <= hi",
                m.metric
            ));
        }
        out.push(core::SimMetric {
            metric: m.metric.clone(),
            weeks: m.weeks.clone(),
            daily_amplitude: m.daily_amplitude,
            noise: m.noise,
            lift: m.lift,
            scale: m.scale,
            min: m.min,
            max: m.max,
        });
    }
    if !range_ok(sc.gap_hours) || sc.gap_hours.is_some_and(|(lo, _)| lo < 0.0) {
        return Err(format!(
            "scenario {name:?}: gap hours must be 0 <= lo <= hi"
        ));
    }
    Ok(core::SimScenario {
        name: sc.name.clone(),
        description: sc.description.clone(),
        id_prefix: sc.id_prefix.clone(),
        count: sc.count,
        sizes: sc.sizes.iter().cloned().map(resources_back).collect(),
        metrics: out,
        gap_hours: sc.gap_hours,
    })
}

/// Names a plugin's feature columns after its schema, refusing a vector of the wrong length,
/// a coverage outside 0..=1 or an infinite value (NaN is how a plugin says "missing").
pub(crate) fn features(
    raw: wit::FeatureVector,
    descriptor: &core::PluginDescriptor,
) -> Result<core::FeatureVector, String> {
    let schema = &descriptor.features;
    if raw.values.len() != schema.len() || raw.coverage.len() != schema.len() {
        return Err(format!(
            "{} feature values and {} coverages returned, the schema has {} features",
            raw.values.len(),
            raw.coverage.len(),
            schema.len()
        ));
    }
    let mut out = Vec::with_capacity(schema.len());
    for ((value, coverage), spec) in raw.values.into_iter().zip(raw.coverage).zip(schema) {
        if !coverage.is_finite() || !(0.0..=1.0).contains(&coverage) {
            return Err(format!(
                "feature {:?} has coverage {coverage} outside 0..1",
                spec.name
            ));
        }
        if value.is_infinite() {
            return Err(format!(
                "feature {:?} has an infinite value; missing data must be NaN",
                spec.name
            ));
        }
        out.push(core::Feature {
            name: spec.name.clone(),
            value: (!value.is_nan()).then_some(value),
            coverage,
        });
    }
    Ok(core::FeatureVector { features: out })
}

/// What `operations` make of `current`: the size after a plan, derived rather than declared so
/// a plan's operations and its stated outcome cannot disagree.
fn apply(current: &core::Resources, operations: &[core::Operation]) -> core::Resources {
    let mut after = current.clone();
    for op in operations {
        match op {
            core::Operation::Resize {
                cpu_millicores,
                memory_bytes,
            } => {
                after.cpu_millicores = *cpu_millicores;
                after.memory_bytes = *memory_bytes;
            }
            core::Operation::SetParameter { name, value, .. } => {
                after.parameters.insert(name.clone(), value.clone());
            }
            core::Operation::SetReplicas { replicas } => after.replicas = *replicas,
            core::Operation::Restart { .. } | core::Operation::Rebalance { .. } => {}
        }
    }
    after
}

fn resources_back(r: wit::Resources) -> core::Resources {
    core::Resources {
        cpu_millicores: r.cpu_millicores,
        memory_bytes: r.memory_bytes,
        replicas: r.replicas,
        parameters: r.parameters.into_iter().collect(),
    }
}

/// Converts a plugin's proposals and holds each to the contract ([`core::Proposal::check`]):
/// a plan outside the bounds, against its direction or not from the current size fails the
/// target rather than reaching the policy.
pub(crate) fn proposals(
    raw: Vec<wit::Proposal>,
    descriptor: &core::PluginDescriptor,
    current: &core::Resources,
    bounds: &core::Bounds,
) -> Result<Vec<core::Proposal>, String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for p in raw {
        let kind = action(p.action);
        if !descriptor.actions.contains(&kind) {
            return Err(format!(
                "a {kind} proposal, which the plugin did not declare"
            ));
        }
        if !seen.insert(kind) {
            return Err(format!(
                "two {kind} proposals; one per action kind is allowed"
            ));
        }
        if p.summary.trim().is_empty() {
            return Err(format!("the {kind} proposal has no summary"));
        }
        let operations: Vec<core::Operation> = p
            .operations
            .into_iter()
            .map(|op| match op {
                wit::Operation::Resize(r) => core::Operation::Resize {
                    cpu_millicores: r.cpu_millicores,
                    memory_bytes: r.memory_bytes,
                },
                wit::Operation::SetParameter(p) => core::Operation::SetParameter {
                    name: p.name,
                    value: p.value,
                    requires_restart: p.requires_restart,
                },
                wit::Operation::Restart(r) => core::Operation::Restart { reason: r.reason },
                wit::Operation::SetReplicas(r) => core::Operation::SetReplicas {
                    replicas: r.replicas,
                },
                wit::Operation::Rebalance(r) => core::Operation::Rebalance { reason: r.reason },
            })
            .collect();
        if operations.is_empty() {
            return Err(format!("the {kind} proposal has no operations"));
        }
        let after = apply(current, &operations);
        if after.cpu_millicores == 0 || after.memory_bytes == 0 || after.replicas == 0 {
            return Err(format!("the {kind} proposal sizes the target to zero"));
        }
        let proposal = core::Proposal {
            action: kind,
            summary: p.summary,
            before: current.clone(),
            after,
            operations,
            risk: match p.risk {
                wit::Risk::Low => core::Risk::Low,
                wit::Risk::Medium => core::Risk::Medium,
                wit::Risk::High => core::Risk::High,
            },
            rationale: p.rationale,
        };
        proposal
            .check(current, bounds)
            .map_err(|problem| format!("the {kind} proposal {problem}"))?;
        out.push(proposal);
    }
    Ok(out)
}
