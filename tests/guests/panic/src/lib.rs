//! A plugin that computes features (except for a target named `panic-in-features`) but panics
//! in `propose()`: with a short message naming the target; for a target named `long`, with a message of 256 KiB, which the host must cut before
//! it reaches a report; for `huge`, with one of 2 MiB, more than the host copies out of a call.

use setpoint_guest_common as common;
use setpoint_sdk::Adapter;
use setpoint_sdk::types::{
    ActionKind, Descriptor, FeatureVector, PluginError, Proposal, ProposeRequest, Series, Target,
    Window,
};

/// The adapter.
pub struct Panic;

impl Adapter for Panic {
    fn describe() -> Descriptor {
        common::descriptor("panic", vec![ActionKind::ScaleDown])
    }

    fn features(target: Target, _: Window, _: Vec<Series>) -> Result<FeatureVector, PluginError> {
        if target.id == "panic-in-features" {
            panic!("deliberate panic in features for {}", target.id);
        }
        Ok(common::features())
    }

    fn propose(request: ProposeRequest) -> Result<Vec<Proposal>, PluginError> {
        match request.target.id.as_str() {
            "long" => panic!("{}", "a".repeat(256 << 10)),
            "huge" => panic!("{}", "a".repeat(2 << 20)),
            _ => {}
        }
        panic!("deliberate panic in propose for {}", request.target.id);
    }
}

setpoint_sdk::export_adapter!(Panic);
