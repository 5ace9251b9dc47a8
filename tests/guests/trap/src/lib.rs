//! A plugin that panics in `features()` for targets whose id ends in an odd digit, and works
//! for the others — so a test can show that one target's trap does not poison the next.

use setpoint_sdk::types::{
    ActionKind, Aggregation, Descriptor, FeatureSpec, FeatureVector, MetricSpec, PluginError,
    Proposal, ProposeRequest, Series, Target, Window,
};
use setpoint_sdk::{ABI_VERSION, Adapter};

/// A valid description, so the plugin loads and fails only when called for a target.
fn descriptor(name: &str) -> Descriptor {
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
            name: "cpu_w1".to_string(),
            description: "cpu".to_string(),
        }],
        actions: vec![ActionKind::ScaleDown],
        scenarios: vec![],
    }
}

/// The adapter.
pub struct Trap;

impl Adapter for Trap {
    fn describe() -> Descriptor {
        descriptor("trap")
    }

    fn features(target: Target, _: Window, _: Vec<Series>) -> Result<FeatureVector, PluginError> {
        let odd = target
            .id
            .chars()
            .last()
            .and_then(|c| c.to_digit(10))
            .is_some_and(|d| d % 2 == 1);
        if odd {
            panic!("deliberate panic for target {}", target.id);
        }
        Ok(FeatureVector {
            values: vec![0.5],
            coverage: vec![1.0],
        })
    }

    fn propose(_: ProposeRequest) -> Result<Vec<Proposal>, PluginError> {
        Ok(vec![])
    }
}

setpoint_sdk::export_adapter!(Trap);
