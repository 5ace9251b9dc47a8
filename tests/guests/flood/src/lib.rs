//! A plugin whose outputs are far larger than any plugin needs, each within the sandbox's
//! memory limit, chosen by the target id:
//!
//! - `features()`: `over-schema` returns 2,000 tiny features; `aliased` returns 100,000
//!   features whose names all point at the same 1 MiB string in linear memory (30 MB of guest
//!   memory that would become 100 GB if the host copied every name); any other target gets
//!   400,000 distinct features (about 16 MB of guest memory).
//! - `propose()`: `long-summary` returns a 64 KiB summary, `many-operations` 5,000
//!   operations, `fine` a proposal within every bound, any other target an 8 MiB summary.
#![allow(unsafe_code)]

use setpoint_guest_common as common;
use setpoint_sdk::Adapter;
use setpoint_sdk::types::{
    ActionKind, Descriptor, Feature, Operation, PluginError, Proposal, ProposeRequest, RestartOp,
    Series, Target, Window,
};

/// Features whose names share one buffer. The canonical ABI lowers each name as a pointer and a
/// length, so the guest pays for the string once while the host would pay for it every time.
fn aliased(count: usize) -> Vec<Feature> {
    let name = std::mem::ManuallyDrop::new("x".repeat(1 << 20));
    (0..count)
        .map(|_| Feature {
            // SAFETY: deliberately unsound — every String owns the same buffer. The call fails
            // at the host before the guest could free any of them, and the instance is
            // discarded with its memory.
            name: unsafe {
                String::from_raw_parts(name.as_ptr().cast_mut(), name.len(), name.capacity())
            },
            value: None,
            coverage: 0.0,
        })
        .collect()
}

/// The adapter.
pub struct Flood;

impl Adapter for Flood {
    fn describe() -> Descriptor {
        common::descriptor("flood", vec![ActionKind::ScaleDown])
    }

    fn features(target: Target, _: Window, _: Vec<Series>) -> Result<Vec<Feature>, PluginError> {
        let feature = |name: String| Feature {
            name,
            value: Some(1.0),
            coverage: 1.0,
        };
        Ok(match target.id.as_str() {
            "over-schema" => (0..2_000)
                .map(|_| feature(common::FEATURE.to_string()))
                .collect(),
            "aliased" => aliased(100_000),
            _ => (0..400_000).map(|i| feature(format!("f{i}"))).collect(),
        })
    }

    fn propose(request: ProposeRequest) -> Result<Vec<Proposal>, PluginError> {
        let mut proposal = common::proposal(&request);
        match request.target.id.as_str() {
            "fine" => {}
            "long-summary" => proposal.summary = "s".repeat(64 << 10),
            "many-operations" => {
                proposal.operations = (0..5_000)
                    .map(|_| {
                        Operation::Restart(RestartOp {
                            reason: "again".to_string(),
                        })
                    })
                    .collect();
            }
            _ => proposal.summary = "s".repeat(8 << 20),
        }
        Ok(vec![proposal])
    }
}

setpoint_sdk::export_adapter!(Flood);
