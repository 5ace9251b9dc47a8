//! What the hostile test guests share, so each guest's source shows only its misbehaviour: a
//! descriptor the host accepts, a well-formed feature vector and a proposal within bounds.
//!
//! A guest decides how to misbehave from the target id it is called for (`nan-value`,
//! `huge-summary`, …), so one guest covers several cases and a test names the case it wants.

use setpoint_sdk::ABI_VERSION;
use setpoint_sdk::types::{
    ActionKind, Aggregation, Descriptor, FeatureSpec, FeatureVector, MetricSpec, Operation,
    Proposal, ProposeRequest, ResizeOp, Risk,
};

/// The one feature every hostile guest declares.
pub const FEATURE: &str = "cpu_w1";

/// A valid descriptor declaring one metric, the feature [`FEATURE`] and `actions`.
pub fn descriptor(name: &str, actions: Vec<ActionKind>) -> Descriptor {
    Descriptor {
        name: name.to_string(),
        version: "0.0.1".to_string(),
        technology: "postgres".to_string(),
        abi_version: ABI_VERSION.to_string(),
        metrics: vec![MetricSpec {
            name: "cpu".to_string(),
            query: "up".to_string(),
            aggregation: Aggregation::Mean,
            unit: "ratio".to_string(),
            description: "cpu".to_string(),
            capacity: None,
            fallback_query: None,
        }],
        features: vec![FeatureSpec {
            name: FEATURE.to_string(),
            description: "cpu".to_string(),
        }],
        actions,
        scenarios: vec![],
    }
}

/// A feature vector matching [`descriptor`]'s schema.
pub fn features() -> FeatureVector {
    FeatureVector {
        values: vec![0.5],
        coverage: vec![1.0],
    }
}

/// A well-formed scale-down proposal: half the target's size, clamped to the request's bounds.
pub fn proposal(request: &ProposeRequest) -> Proposal {
    let before = &request.target.resources;
    let bounds = &request.bounds;
    let cpu =
        (before.cpu_millicores / 2).clamp(bounds.min_cpu_millicores, bounds.max_cpu_millicores);
    let memory = (before.memory_bytes / 2).clamp(bounds.min_memory_bytes, bounds.max_memory_bytes);
    Proposal {
        action: ActionKind::ScaleDown,
        summary: format!("{} m → {cpu} m", before.cpu_millicores),
        operations: vec![Operation::Resize(ResizeOp {
            cpu_millicores: cpu,
            memory_bytes: memory,
        })],
        risk: Risk::Low,
        rationale: "half the size".to_string(),
    }
}
