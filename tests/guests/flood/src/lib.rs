//! A plugin whose outputs are far larger than any plugin needs, each within the sandbox's
//! memory limit, chosen by the target id:
//!
//! - `features()`: `over-schema` returns 2,000 features; any other target 400,000 (about 6 MB
//!   of guest memory).
//! - `propose()`: `long-summary` returns a 64 KiB summary, `many-operations` 5,000
//!   operations, `aliased` 100,000 restart operations whose reasons all point at the same
//!   1 MiB string in linear memory (a few MB of guest memory that would become 100 GB if the
//!   host copied every reason), `fine` a proposal within every bound, any other target an
//!   8 MiB summary.
#![allow(unsafe_code)]

use setpoint_guest_common as common;
use setpoint_sdk::Adapter;
use setpoint_sdk::types::{
    ActionKind, Descriptor, FeatureVector, Operation, PluginError, Proposal, ProposeRequest,
    RestartOp, Series, Target, Window,
};

/// Operations whose reasons share one buffer. The canonical ABI lowers each string as a pointer
/// and a length, so the guest pays for the string once while the host would pay for it every
/// time.
fn aliased(count: usize) -> Vec<Operation> {
    let reason = std::mem::ManuallyDrop::new("x".repeat(1 << 20));
    (0..count)
        .map(|_| {
            Operation::Restart(RestartOp {
                // SAFETY: deliberately unsound — every String owns the same buffer. The call
                // fails at the host before the guest could free any of them, and the instance
                // is discarded with its memory.
                reason: unsafe {
                    String::from_raw_parts(
                        reason.as_ptr().cast_mut(),
                        reason.len(),
                        reason.capacity(),
                    )
                },
            })
        })
        .collect()
}

/// The adapter.
pub struct Flood;

impl Adapter for Flood {
    fn describe() -> Descriptor {
        common::descriptor("flood", vec![ActionKind::ScaleDown])
    }

    fn features(target: Target, _: Window, _: Vec<Series>) -> Result<FeatureVector, PluginError> {
        let count = match target.id.as_str() {
            "over-schema" => 2_000,
            _ => 400_000,
        };
        Ok(FeatureVector {
            values: vec![1.0; count],
            coverage: vec![1.0; count],
        })
    }

    fn propose(request: ProposeRequest) -> Result<Vec<Proposal>, PluginError> {
        let mut proposal = common::proposal(&request);
        match request.target.id.as_str() {
            "fine" => {}
            "aliased" => proposal.operations = aliased(100_000),
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
