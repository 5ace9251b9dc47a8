//! A plugin that imports a capability the sandbox does not give: `wasi:filesystem/preopens`
//! (declared here in a cut-down form; the name is what the host refuses). Componentized, the
//! component imports that interface beside `setpoint:plugin/host`, so it must fail at load.

use setpoint_guest_common as common;
use setpoint_sdk::Adapter;
use setpoint_sdk::types::{
    ActionKind, Descriptor, FeatureVector, PluginError, Proposal, ProposeRequest, Series, Target,
    Window,
};

#[allow(missing_docs, unsafe_code)]
mod capability {
    wit_bindgen::generate!({
        inline: "
            package wasi:filesystem@0.2.6;

            interface preopens {
                get-directories: func() -> list<string>;
            }

            world capability {
                import preopens;
            }
        ",
        world: "capability",
    });
}

/// The adapter.
pub struct Caps;

impl Adapter for Caps {
    fn describe() -> Descriptor {
        common::descriptor("caps", vec![ActionKind::ScaleDown])
    }

    fn features(_: Target, _: Window, _: Vec<Series>) -> Result<FeatureVector, PluginError> {
        // Calling the import keeps it in the module: an unused import would be optimised away.
        let directories = capability::wasi::filesystem::preopens::get_directories();
        let mut features = common::features();
        features.values[0] = directories.len() as f64;
        Ok(features)
    }

    fn propose(request: ProposeRequest) -> Result<Vec<Proposal>, PluginError> {
        Ok(vec![common::proposal(&request)])
    }
}

setpoint_sdk::export_adapter!(Caps);
