//! The checks on a plugin's `features()` and `propose()` answers (`setpoint_plugin_host::
//! fuzzing`: output bounds, then the contract) on answers written as JSON — a number may be
//! the string "NaN", "inf" or "-inf", which JSON cannot carry. Asserts that a feature vector
//! is accepted exactly when it fits the schema, the bounds and the ranges, and that every
//! accepted proposal is declared, unique, sized within bounds, in its direction, derived from
//! its operations and passes `Proposal::check`.
//!
//! The check itself: `fuzz/fuzz_targets/plugin_output.rs` drives it under libFuzzer, and
//! `tests/it/fuzz_seeds.rs` replays every seed of `fuzz/corpus/plugin_output` through it in the suite.

use std::collections::BTreeSet;

use serde::Deserialize;
use setpoint_core::{ActionKind, Bounds, FeatureSpec, Operation, PluginDescriptor, Resources};
use setpoint_plugin_host::OutputLimits;
use setpoint_plugin_host::fuzzing::{self, wit};

/// Far below the defaults, so the fuzzer reaches them with small inputs; the checks are the same.
const LIMITS: OutputLimits = OutputLimits {
    bytes_per_call: 64 * 1024,
    max_items: 8,
    max_line_bytes: 64,
    max_text_bytes: 256,
};

#[derive(Deserialize)]
#[serde(untagged)]
enum Number {
    Plain(f64),
    Spelled(String),
}

impl Number {
    fn value(&self) -> f64 {
        match self {
            Number::Plain(x) => *x,
            Number::Spelled(s) => s.parse().unwrap_or(f64::NAN),
        }
    }
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    schema: Vec<String>,
    #[serde(default)]
    actions: Vec<ActionKind>,
    current: Resources,
    #[serde(default)]
    bounds: Bounds,
    #[serde(default)]
    features: Option<Features>,
    #[serde(default)]
    proposals: Option<Vec<RawProposal>>,
}

#[derive(Deserialize)]
struct Features {
    values: Vec<Number>,
    coverage: Vec<Number>,
}

#[derive(Deserialize)]
struct RawProposal {
    action: ActionKind,
    #[serde(default)]
    summary: String,
    #[serde(default)]
    operations: Vec<RawOperation>,
    #[serde(default)]
    risk: RawRisk,
    #[serde(default)]
    rationale: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "snake_case")]
enum RawRisk {
    #[default]
    Low,
    Medium,
    High,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawOperation {
    Resize {
        cpu_millicores: u64,
        memory_bytes: u64,
    },
    SetParameter {
        name: String,
        value: String,
        #[serde(default)]
        requires_restart: bool,
    },
    Restart {
        reason: String,
    },
    SetReplicas {
        replicas: u32,
    },
    Rebalance {
        reason: String,
    },
}

fn wit_proposal(p: RawProposal) -> wit::Proposal {
    wit::Proposal {
        action: match p.action {
            ActionKind::ScaleUp => wit::ActionKind::ScaleUp,
            ActionKind::ScaleDown => wit::ActionKind::ScaleDown,
        },
        summary: p.summary,
        operations: p
            .operations
            .into_iter()
            .map(|op| match op {
                RawOperation::Resize {
                    cpu_millicores,
                    memory_bytes,
                } => wit::Operation::Resize(wit::ResizeOp {
                    cpu_millicores,
                    memory_bytes,
                }),
                RawOperation::SetParameter {
                    name,
                    value,
                    requires_restart,
                } => wit::Operation::SetParameter(wit::ParameterOp {
                    name,
                    value,
                    requires_restart,
                }),
                RawOperation::Restart { reason } => {
                    wit::Operation::Restart(wit::RestartOp { reason })
                }
                RawOperation::SetReplicas { replicas } => {
                    wit::Operation::SetReplicas(wit::ReplicasOp { replicas })
                }
                RawOperation::Rebalance { reason } => {
                    wit::Operation::Rebalance(wit::RebalanceOp { reason })
                }
            })
            .collect(),
        risk: match p.risk {
            RawRisk::Low => wit::Risk::Low,
            RawRisk::Medium => wit::Risk::Medium,
            RawRisk::High => wit::Risk::High,
        },
        rationale: p.rationale,
    }
}

fn check_features(features: Features, descriptor: &PluginDescriptor) {
    let values: Vec<f64> = features.values.iter().map(Number::value).collect();
    let coverage: Vec<f64> = features.coverage.iter().map(Number::value).collect();
    let n = descriptor.features.len();
    let acceptable = values.len() == n
        && coverage.len() == n
        && n <= LIMITS.max_items
        && coverage.iter().all(|c| (0.0..=1.0).contains(c))
        && values.iter().all(|v| !v.is_infinite());
    let raw = wit::FeatureVector {
        values: values.clone(),
        coverage: coverage.clone(),
    };
    match fuzzing::features(&LIMITS, raw, descriptor) {
        Ok(vector) => {
            assert!(
                acceptable,
                "accepted {values:?} / {coverage:?} for {n} features"
            );
            assert_eq!(vector.features.len(), n);
            for (i, (feature, spec)) in vector.features.iter().zip(&descriptor.features).enumerate()
            {
                assert_eq!(feature.name, spec.name, "feature {i} renamed");
                assert_eq!(
                    feature.coverage.to_bits(),
                    coverage[i].to_bits(),
                    "feature {i}"
                );
                match feature.value {
                    None => assert!(values[i].is_nan(), "feature {i}: {} lost", values[i]),
                    Some(v) => assert!(v.is_finite() && v.to_bits() == values[i].to_bits()),
                }
            }
        }
        Err(message) => {
            assert!(!acceptable, "refused {values:?} / {coverage:?}: {message}");
            assert!(!message.trim().is_empty());
        }
    }
}

fn check_proposals(
    raw: Vec<RawProposal>,
    descriptor: &PluginDescriptor,
    current: &Resources,
    bounds: &Bounds,
) {
    let undeclared = raw.iter().any(|p| !descriptor.actions.contains(&p.action));
    let raw: Vec<wit::Proposal> = raw.into_iter().map(wit_proposal).collect();
    let proposals = match fuzzing::proposals(&LIMITS, raw, descriptor, current, bounds) {
        Ok(proposals) => proposals,
        Err(message) => {
            assert!(!message.trim().is_empty());
            return;
        }
    };
    assert!(!undeclared, "an undeclared action accepted");
    assert!(proposals.len() <= LIMITS.max_items);
    let kinds: BTreeSet<ActionKind> = proposals.iter().map(|p| p.action).collect();
    assert_eq!(kinds.len(), proposals.len(), "two proposals of one kind");
    for p in &proposals {
        let kind = p.action;
        assert!(!p.summary.trim().is_empty(), "{kind}: no summary");
        assert!(
            p.summary.len() <= LIMITS.max_line_bytes,
            "{kind}: summary too long"
        );
        assert!(
            p.rationale.len() <= LIMITS.max_text_bytes,
            "{kind}: rationale too long"
        );
        assert!(!p.operations.is_empty(), "{kind}: no operations");
        assert_eq!(&p.before, current, "{kind}: before is not the current size");
        assert!(
            p.after.cpu_millicores > 0 && p.after.memory_bytes > 0 && p.after.replicas > 0,
            "{kind}: sized to zero"
        );
        let mut after = current.clone();
        for op in &p.operations {
            match op {
                Operation::Resize {
                    cpu_millicores,
                    memory_bytes,
                } => {
                    after.cpu_millicores = *cpu_millicores;
                    after.memory_bytes = *memory_bytes;
                }
                Operation::SetParameter { name, value, .. } => {
                    after.parameters.insert(name.clone(), value.clone());
                }
                Operation::SetReplicas { replicas } => after.replicas = *replicas,
                Operation::Restart { .. } | Operation::Rebalance { .. } => {}
            }
        }
        assert_eq!(
            p.after, after,
            "{kind}: `after` is not what the operations make"
        );
        assert!(
            (bounds.min_cpu_millicores..=bounds.max_cpu_millicores).contains(&after.cpu_millicores)
                && (bounds.min_memory_bytes..=bounds.max_memory_bytes)
                    .contains(&after.memory_bytes),
            "{kind}: outside the bounds"
        );
        if let Err(problem) = p.check(current, bounds) {
            panic!("{kind}: accepted, yet {problem}");
        }
    }
}

/// Runs one input through the target's checks; panics when one does not hold.
pub fn check(data: &[u8]) {
    let Ok(answer) = serde_json::from_slice::<Answer>(data) else {
        return;
    };
    let descriptor = PluginDescriptor {
        name: "fuzz".to_string(),
        version: "0.0.0".to_string(),
        technology: "postgres".to_string(),
        metrics: Vec::new(),
        features: answer
            .schema
            .iter()
            .map(|name| FeatureSpec {
                name: name.clone(),
                description: String::new(),
            })
            .collect(),
        actions: answer.actions.clone(),
        abi_version: String::new(),
        scenarios: Vec::new(),
    };
    if let Some(features) = answer.features {
        check_features(features, &descriptor);
    }
    if let Some(proposals) = answer.proposals {
        check_proposals(proposals, &descriptor, &answer.current, &answer.bounds);
    }
}
