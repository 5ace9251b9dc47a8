//! Integration tests across crates: one binary, one module per concern.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// The whole loop over the embedded simulated fleet, through the runtime library.
mod whole_loop;

/// The plugin sandbox: the real plugin through it, and deliberately broken guests.
mod sandbox;

/// Broken plugins inside whole cycles, through the runtime and the binary.
mod broken_plugins;
