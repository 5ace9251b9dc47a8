//! The SDK for setpoint adapter plugins.
//!
//! A plugin is a WASM component implementing the `adapter` world of `sdk/wit/setpoint.wit`. With
//! this crate a plugin author writes plain Rust:
//!
//! ```ignore
//! use setpoint_sdk::{Adapter, types::*};
//!
//! struct MyAdapter;
//!
//! impl Adapter for MyAdapter {
//!     fn describe() -> Descriptor { /* … */ }
//!     fn features(target: Target, window: Window, series: Vec<Series>)
//!         -> Result<FeatureVector, PluginError> { /* … */ }
//!     fn propose(request: ProposeRequest) -> Result<Vec<Proposal>, PluginError> { /* … */ }
//! }
//!
//! setpoint_sdk::export_adapter!(MyAdapter);
//! ```
//!
//! and builds it with `cargo build --target wasm32-unknown-unknown` followed by componentizing
//! (setpoint's build does both for the bundled plugins). The SDK also carries what every adapter
//! needs and none should rewrite: weekly aggregation of samples with data coverage
//! ([`weekly`]), the weekly fingerprint built from declared metrics ([`fingerprint`]), a
//! ladder of standard sizes with bounds ([`size`]), proposal building ([`proposal`]),
//! simulator scenarios ([`scenario`]), and a panic hook that reports a plugin's panic message to the host (a plugin
//! has no stderr).

extern crate self as setpoint_sdk;

/// The generated bindings of the WIT contract.
#[allow(missing_docs, unsafe_code, clippy::too_many_arguments)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "adapter",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "export_bindings",
        default_bindings_module: "setpoint_sdk::bindings",
        runtime_path: "setpoint_sdk::wit_bindgen::rt",
        // The per-target shapes a batch is decoded into (target, series, propose-request)
        // cross no boundary but are what a plugin implements against.
        generate_unused_types: true,
    });
}

pub mod arena;
pub mod batch;
pub mod fingerprint;
pub mod proposal;
pub mod scenario;
pub mod size;
pub mod weekly;

#[doc(hidden)]
pub use wit_bindgen;

/// The contract's types: descriptor, target, series, feature, proposal, …
pub mod types {
    pub use crate::bindings::setpoint::plugin::types::*;
}

/// The contract version this SDK builds plugins for: the WIT package version. The host accepts
/// a plugin of the same major version (for 0.x, the same minor) no newer than its own.
pub const ABI_VERSION: &str = "0.5.0";

use types::{
    Descriptor, FeatureVector, PluginError, Proposal, ProposeRequest, Series, Target, Window,
};

/// What a plugin implements, one target at a time (the host's batches are decoded by
/// [`batch`] and fed to these once per target). Every method is pure: the plugin has no I/O of
/// any kind, and a target's answer depends on that target's inputs alone.
pub trait Adapter {
    /// Describes the plugin: name, version, technology, metrics, feature schema, action kinds.
    fn describe() -> Descriptor;
    /// Turns one target's raw samples into its feature vector, in schema order (NaN for a
    /// value too little data supports).
    fn features(
        target: Target,
        window: Window,
        series: Vec<Series>,
    ) -> Result<FeatureVector, PluginError>;
    /// Proposes one concrete plan per feasible action kind.
    fn propose(request: ProposeRequest) -> Result<Vec<Proposal>, PluginError>;
}

/// Writes a line to the host's log.
pub fn log(level: bindings::setpoint::plugin::host::Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    bindings::setpoint::plugin::host::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    {
        // Native builds (unit tests) have no host; the message goes nowhere.
        let _ = (level, message);
    }
}

/// The prefix the host looks for to recognise a panic report.
pub const PANIC_PREFIX: &str = "panic: ";

/// Installs, once, a panic hook that sends the panic message to the host's log, so a trap
/// caused by a panic is reported with its message rather than as a bare `unreachable`.
pub fn install_panic_hook() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        arena::persistent(|| {
            std::panic::set_hook(Box::new(|info| {
                log(
                    bindings::setpoint::plugin::host::Level::Error,
                    &format!("{PANIC_PREFIX}{info}"),
                );
            }));
        });
    });
}

/// Builds a [`PluginError`].
pub fn error(code: &str, message: impl Into<String>) -> PluginError {
    PluginError {
        code: code.to_string(),
        message: message.into(),
    }
}

/// Exports a type implementing [`Adapter`] as the plugin's component exports: the batch calls
/// of the contract, decoded into one [`Adapter`] call per target, with the panic hook installed
/// before every call.
#[macro_export]
macro_rules! export_adapter {
    ($adapter:ty) => {
        struct __SetpointAdapterExport;

        impl $crate::bindings::Guest for __SetpointAdapterExport {
            fn describe() -> $crate::types::Descriptor {
                $crate::install_panic_hook();
                <$adapter as $crate::Adapter>::describe()
            }

            fn features(
                batch: $crate::types::FeaturesBatch,
            ) -> ::std::vec::Vec<
                ::core::result::Result<$crate::types::FeatureVector, $crate::types::PluginError>,
            > {
                $crate::install_panic_hook();
                $crate::batch::features::<$adapter>(batch)
            }

            fn propose(
                batch: $crate::types::ProposeBatch,
            ) -> ::std::vec::Vec<
                ::core::result::Result<
                    ::std::vec::Vec<$crate::types::Proposal>,
                    $crate::types::PluginError,
                >,
            > {
                $crate::install_panic_hook();
                $crate::batch::propose::<$adapter>(batch)
            }
        }

        $crate::bindings::export_bindings!(__SetpointAdapterExport with_types_in $crate::bindings);
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_abi_version_is_the_wit_package_version() {
        let wit = include_str!("../wit/setpoint.wit");
        assert!(wit.contains(&format!("package setpoint:plugin@{};", super::ABI_VERSION)));
    }
}
