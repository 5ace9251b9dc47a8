//! A plugin that returns well-typed output with values that break the contract, chosen by the
//! target id, so each of the host's checks can be shown to reject its case. Any target not
//! named below gets features that are fine and a proposal above the bounds it was given.

use setpoint_guest_common as common;
use setpoint_sdk::Adapter;
use setpoint_sdk::types::{
    ActionKind, Descriptor, Feature, Operation, ParameterOp, PluginError, Proposal, ProposeRequest,
    ResizeOp, Series, Target, Window,
};

/// The adapter.
pub struct Liar;

impl Adapter for Liar {
    fn describe() -> Descriptor {
        common::descriptor("liar", vec![ActionKind::ScaleDown])
    }

    fn features(target: Target, _: Window, _: Vec<Series>) -> Result<Vec<Feature>, PluginError> {
        let mut features = common::features();
        let first = &mut features[0];
        match target.id.as_str() {
            "nan-value" => first.value = Some(f64::NAN),
            "infinite-value" => first.value = Some(f64::INFINITY),
            "nan-coverage" => first.coverage = f64::NAN,
            "coverage-above-one" => first.coverage = 1.5,
            "negative-coverage" => first.coverage = -0.1,
            "wrong-name" => first.name = "memory_w1".to_string(),
            "no-features" => features.clear(),
            "extra-feature" => features.push(common::features().remove(0)),
            _ => {}
        }
        Ok(features)
    }

    fn propose(request: ProposeRequest) -> Result<Vec<Proposal>, PluginError> {
        let mut proposal = common::proposal(&request);
        let bounds = &request.bounds;
        match request.target.id.as_str() {
            "zero-memory" => proposal.after.memory_bytes = 0,
            "zero-cpu" => proposal.after.cpu_millicores = 0,
            "empty-summary" => proposal.summary = " ".to_string(),
            "undeclared-action" => proposal.action = ActionKind::ScaleUp,
            "twice" => return Ok(vec![proposal.clone(), proposal]),
            // Plans whose sizes or operations break the contract.
            "below-min" => proposal.after.cpu_millicores = bounds.min_cpu_millicores / 2 + 1,
            "grows-on-scale-down" => {
                proposal.after.cpu_millicores = proposal.before.cpu_millicores * 2;
                proposal.after.memory_bytes = proposal.before.memory_bytes * 2;
            }
            "before-mismatch" => proposal.before.cpu_millicores += 1,
            "zero-resize" => {
                proposal.operations = vec![Operation::Resize(ResizeOp {
                    cpu_millicores: 0,
                    memory_bytes: 0,
                })]
            }
            "empty-parameter" => {
                proposal.operations = vec![Operation::SetParameter(ParameterOp {
                    name: String::new(),
                    value: String::new(),
                    requires_restart: false,
                })]
            }
            _ => {
                proposal.after.cpu_millicores = bounds.max_cpu_millicores.saturating_mul(2);
                proposal.after.memory_bytes = bounds.max_memory_bytes.saturating_mul(2);
            }
        }
        Ok(vec![proposal])
    }
}

setpoint_sdk::export_adapter!(Liar);
