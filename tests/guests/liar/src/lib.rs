//! A plugin that returns well-typed output with values that break the contract, chosen by the
//! target id, so each of the host's checks can be shown to reject its case. Any target not
//! named below gets features that are fine and a proposal above the bounds it was given.

use setpoint_guest_common as common;
use setpoint_sdk::Adapter;
use setpoint_sdk::types::{
    ActionKind, Descriptor, FeatureVector, Operation, ParameterOp, PluginError, Proposal,
    ProposeRequest, ReplicasOp, ResizeOp, Series, Target, Window,
};

/// The adapter.
pub struct Liar;

fn resize(cpu_millicores: u64, memory_bytes: u64) -> Operation {
    Operation::Resize(ResizeOp {
        cpu_millicores,
        memory_bytes,
    })
}

impl Adapter for Liar {
    fn describe() -> Descriptor {
        common::descriptor("liar", vec![ActionKind::ScaleDown])
    }

    fn features(target: Target, _: Window, _: Vec<Series>) -> Result<FeatureVector, PluginError> {
        let mut features = common::features();
        match target.id.as_str() {
            "infinite-value" => features.values[0] = f64::INFINITY,
            "nan-coverage" => features.coverage[0] = f64::NAN,
            "coverage-above-one" => features.coverage[0] = 1.5,
            "negative-coverage" => features.coverage[0] = -0.1,
            "no-features" => {
                features.values.clear();
                features.coverage.clear();
            }
            "extra-feature" => {
                features.values.push(0.5);
                features.coverage.push(1.0);
            }
            "short-coverage" => features.coverage.clear(),
            _ => {}
        }
        Ok(features)
    }

    fn propose(request: ProposeRequest) -> Result<Vec<Proposal>, PluginError> {
        let mut proposal = common::proposal(&request);
        let bounds = &request.bounds;
        let current = &request.target.resources;
        match request.target.id.as_str() {
            "zero-memory" => proposal.operations = vec![resize(current.cpu_millicores / 2, 0)],
            "zero-cpu" => proposal.operations = vec![resize(0, current.memory_bytes / 2)],
            "zero-replicas" => {
                proposal.operations = vec![Operation::SetReplicas(ReplicasOp { replicas: 0 })]
            }
            "empty-summary" => proposal.summary = " ".to_string(),
            "undeclared-action" => proposal.action = ActionKind::ScaleUp,
            "twice" => return Ok(vec![proposal.clone(), proposal]),
            "no-operations" => proposal.operations.clear(),
            // Plans whose sizes or operations break the contract.
            "below-min" => {
                proposal.operations = vec![resize(
                    bounds.min_cpu_millicores / 2 + 1,
                    current.memory_bytes / 2,
                )]
            }
            "grows-on-scale-down" => {
                proposal.operations =
                    vec![resize(current.cpu_millicores * 2, current.memory_bytes * 2)]
            }
            "two-resizes" => {
                let first = resize(current.cpu_millicores / 4, current.memory_bytes / 4);
                proposal.operations.insert(0, first);
            }
            "empty-parameter" => proposal
                .operations
                .push(Operation::SetParameter(ParameterOp {
                    name: String::new(),
                    value: String::new(),
                    requires_restart: false,
                })),
            _ => {
                proposal.operations = vec![resize(
                    bounds.max_cpu_millicores.saturating_mul(2),
                    bounds.max_memory_bytes.saturating_mul(2),
                )]
            }
        }
        Ok(vec![proposal])
    }
}

setpoint_sdk::export_adapter!(Liar);
