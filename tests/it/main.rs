//! Integration tests across crates: one binary, one module per concern.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// The whole loop over the embedded simulated fleet, through the runtime library.
mod whole_loop;

/// The bootstrap heuristics over the whole simulated fleet.
mod classify_fleet;

/// Decisions on an independently generated fleet served by a real VictoriaMetrics.
mod decision_quality;

/// The simulator playing the PostgreSQL plugin's scenarios.
mod simulator;

/// A third-party plugin built out of tree and shown in the quickstart.
mod custom_plugin;

/// The plugin sandbox: the real plugin through it, and deliberately broken guests.
mod sandbox;

/// Hostile guests: recursion, panics, huge outputs, invalid values, forbidden imports.
mod hostile;

/// The compiled-plugin cache.
mod plugin_cache;

/// `setpoint plugin inspect` and `setpoint plugin validate`.
mod plugin_cli;

/// `setpoint config check` and `setpoint policy test`: undefined policy functions, and errors
/// that name their field and line.
mod config_cli;

/// `setpoint train`, `evaluate` and `models`: the learned classifier and its registry.
mod models_cli;

/// `setpoint review`: the queue, approvals re-checked by the policy, rejections.
mod review_cli;

/// A real etcd + Patroni + PostgreSQL on loopback, for the tests below.
mod patroni_stack;

/// The Patroni actuator against the real stack.
mod patroni;

/// Enforce mode end to end through Patroni: a reviewed work_mem change reaches PostgreSQL.
mod enforce_patroni;

/// Enforce mode through the binary: approvals executed once, crashes, kill switches, dry-run.
mod enforce;

/// Every fuzz target's seeds through its checks: the suite's fuzzing smoke.
mod fuzz_seeds;

/// A fast loop in enforce mode through the binary: scale writes journalled, validated in
/// dry-run, never repeated after a crash, stopped by a kill switch.
mod fast_enforce;

/// The weekly report by email (a local SMTP sink) and to a Slack-compatible webhook.
mod notify_cli;

/// OpenTelemetry traces of `setpoint run --once` delivered to OTLP/HTTP and OTLP/gRPC receivers
/// in the test.
mod otel;

/// Broken plugins inside whole cycles, through the runtime and the binary.
mod broken_plugins;

/// The loopback stack of `examples/stack`, started and stopped for the tests below.
mod stack;

/// End to end against Prometheus and VictoriaMetrics on loopback, through the example config;
/// the TSDB stopped under a running `setpoint run`.
mod real_stack;

/// A misbehaving Prometheus-compatible source: every failure completes the cycle and holds.
mod tsdb_failures;

/// A read-only state directory and a disk that fills during a cycle.
mod state_faults;

/// The stack's own PostgreSQL under a pgbench load, seen through the whole pipeline.
mod live_load;

/// A short soak: enforce cycles with random faults, the journal chain, no duplicate or lost action.
mod soak;

/// `setpoint serve`: the engine's metrics, approvals over HTTP with viewers and approvers,
/// and the review page in headless Chromium (screenshots in target/screenshots/).
mod serve;

// The forecaster on real public series (tests/data/public-series) against its two baselines.
mod forecast_public;

/// `setpoint --config <config> <args>`, with no log filter nor test pause point inherited from
/// the environment: each test sets what it needs.
pub(crate) fn setpoint_with_config(
    config: &std::path::Path,
    args: &[&str],
) -> std::process::Command {
    let mut command = std::process::Command::new(setpoint_binary());
    command
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove(setpoint_runtime::enforce::PAUSE_AT_ENV);
    command
}

/// The binary built by the same `cargo test` run (the CLI package's integration tests make
/// cargo build it), next to this test's executable.
/// `SETPOINT_BIN` names another build of it (e.g. a release build) to test instead.
pub(crate) fn setpoint_binary() -> std::path::PathBuf {
    if let Some(binary) = std::env::var_os("SETPOINT_BIN") {
        return binary.into();
    }
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

/// The standard output of a command that must have succeeded (else both outputs, in the panic).
pub(crate) fn ok(output: std::process::Output) -> String {
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).to_string()
}
