//! A plugin that allocates without bound in `features()`.

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
pub struct Hog;

impl Adapter for Hog {
    fn describe() -> Descriptor {
        descriptor("hog")
    }

    fn features(target: Target, _: Window, _: Vec<Series>) -> Result<FeatureVector, PluginError> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            // Touch every page so nothing is optimised away.
            hoard.push(std::hint::black_box(vec![target.id.len() as u8; 1 << 20]));
        }
    }

    fn propose(_: ProposeRequest) -> Result<Vec<Proposal>, PluginError> {
        Ok(vec![])
    }
}

setpoint_sdk::export_adapter!(Hog);
