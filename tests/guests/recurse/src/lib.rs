//! A plugin whose `features()` recurses without end. For a target named `frames` each call
//! keeps a 4 KiB buffer on the shadow stack in linear memory, which runs out first; for any
//! other target the frames are tiny and the engine's own call stack runs out.

use setpoint_guest_common as common;
use setpoint_sdk::Adapter;
use setpoint_sdk::types::{
    ActionKind, Descriptor, FeatureVector, PluginError, Proposal, ProposeRequest, Series, Target,
    Window,
};

/// Tiny frames: the engine's stack overflows.
fn deep(n: u64) -> u64 {
    let n = std::hint::black_box(n);
    if n == u64::MAX {
        return 0;
    }
    // Not a tail call, so the optimiser cannot turn it into a loop.
    deep(n + 1).wrapping_add(n)
}

/// Large frames in linear memory: the shadow stack overflows.
fn wide(n: u64) -> u64 {
    let mut buffer = [0u8; 4096];
    buffer[(n % 4096) as usize] = n as u8;
    std::hint::black_box(&mut buffer);
    if n == u64::MAX {
        return 0;
    }
    wide(n + 1).wrapping_add(u64::from(buffer[7]))
}

/// The adapter.
pub struct Recurse;

impl Adapter for Recurse {
    fn describe() -> Descriptor {
        common::descriptor("recurse", vec![ActionKind::ScaleDown])
    }

    fn features(target: Target, _: Window, _: Vec<Series>) -> Result<FeatureVector, PluginError> {
        let depth = if target.id == "frames" {
            wide(target.id.len() as u64)
        } else {
            deep(target.id.len() as u64)
        };
        let mut features = common::features();
        features.values[0] = depth as f64;
        Ok(features)
    }

    fn propose(request: ProposeRequest) -> Result<Vec<Proposal>, PluginError> {
        Ok(vec![common::proposal(&request)])
    }
}

setpoint_sdk::export_adapter!(Recurse);
