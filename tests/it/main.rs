//! Integration tests across crates: one binary, one module per concern.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// The whole loop over the embedded simulated fleet, through the runtime library.
mod whole_loop;

/// The plugin sandbox: the real plugin through it, and deliberately broken guests.
mod sandbox;

/// Broken plugins inside whole cycles, through the runtime and the binary.
mod broken_plugins;

/// End to end against Prometheus and VictoriaMetrics on loopback.
mod real_stack;

/// The binary built by the same `cargo test` run (the CLI package's integration tests make
/// cargo build it), next to this test's executable.
pub(crate) fn setpoint_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(std::path::Path::parent).unwrap();
    let binary = dir.join("setpoint");
    assert!(
        binary.exists(),
        "{} is missing: run the whole suite (cargo test --workspace) or cargo build -p setpoint",
        binary.display()
    );
    binary
}
