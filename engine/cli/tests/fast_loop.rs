//! A loop of `kind: fast` as a user runs it: `run --once` over the simulated service fleet,
//! `explain <service>` and `explain <service> --at`, and the configuration's errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn setpoint(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_setpoint"))
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn policy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/fast/examples/predictive")
}

fn config(dir: &Path, fast: &str) -> PathBuf {
    let file = dir.join("setpoint.yaml");
    std::fs::write(
        &file,
        format!(
            "state_dir: {state}\nloops:\n  - name: services\n    kind: fast\n    source: {{kind: simulated_services, seed: 7, services: 4}}\n    policies: {policies}\n{fast}",
            state = dir.join("state").display(),
            policies = policy_dir().display(),
        ),
    )
    .unwrap();
    file
}

#[test]
fn a_fast_loop_ticks_once_journals_its_decisions_and_explains_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = config(
        dir.path(),
        "    fast:\n      regions: [primary, secondary]\n      limits:\n        default: {min_replicas: 2, max_replicas: 40}\n",
    );
    let file = file.to_str().unwrap();
    let out = setpoint(&[
        "run",
        "--once",
        "--config",
        file,
        "--now",
        "2026-11-24T09:00:00Z",
    ]);
    let report = text(&out);
    assert!(out.status.success(), "{report}");
    for service in ["svc-0001", "svc-0002", "svc-0003", "svc-0004"] {
        assert!(report.contains(service), "{report}");
    }
    assert!(report.contains("dry-run: nothing was executed"), "{report}");
    assert!(!report.contains("failed"), "{report}");

    // The first tick journals every service; explain reads it back with its forecast.
    let out = setpoint(&["explain", "svc-0001", "--config", file]);
    let explained = text(&out);
    assert!(out.status.success(), "{explained}");
    assert!(
        explained.contains("loop services · tick 1 · 2026-11-24 09:00:00 UTC"),
        "{explained}"
    );
    assert!(explained.contains("request_rate"), "{explained}");
    assert!(explained.contains("weights primary"), "{explained}");
    let json = setpoint(&["explain", "svc-0001", "--config", file, "--output", "json"]);
    let record: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(record["input"]["service"], "svc-0001");
    assert!(
        record["input"]["forecast"]["request_rate"]
            .as_f64()
            .unwrap()
            > 0.0,
        "{record}"
    );
    assert!(
        record["input"]["current"]["replicas"].as_u64().unwrap() >= 2,
        "{record}"
    );

    // --at finds the tick at or before it, and says so when there is none.
    let out = setpoint(&[
        "explain",
        "svc-0001",
        "--config",
        file,
        "--at",
        "2026-11-24T09:05:00Z",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let out = setpoint(&[
        "explain",
        "svc-0001",
        "--config",
        file,
        "--at",
        "2026-11-24T08:59:59Z",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("no fast-loop decision recorded for \"svc-0001\""),
        "{}",
        text(&out)
    );
}

#[test]
fn fast_settings_are_checked_with_their_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = config(
        dir.path(),
        "    fast:\n      horizon: 2h\n      metrics: {request_rte: up}\n      limits:\n        default: {min_replicas: 5, max_replicas: 2}\n        services:\n          search: {min_replicas: 2, max_replicas: 9, region: {primary: {min_replicas: 4, max_replicas: 3}}}\n",
    );
    let out = setpoint(&["config", "check", "--config", file.to_str().unwrap()]);
    let message = text(&out);
    assert!(!out.status.success(), "{message}");
    for expected in [
        "loops[0].fast.horizon: must be more than 0 and at most 1h",
        "loops[0].fast.metrics.request_rte: no such series",
        "loops[0].fast.limits.default: min_replicas (5) is above max_replicas (2)",
        "loops[0].fast.limits.services.search.region.primary: min_replicas (4) is above max_replicas (3)",
    ] {
        assert!(message.contains(expected), "{expected}\n{message}");
    }

    // A weekly loop has no fast section.
    let weekly = dir.path().join("weekly.yaml");
    std::fs::write(
        &weekly,
        "loops:\n  - name: weekly\n    fast: {horizon: 15m}\n",
    )
    .unwrap();
    let out = setpoint(&["config", "check", "--config", weekly.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("loops[0].fast: only a loop of kind fast has this section"),
        "{}",
        text(&out)
    );
}

#[test]
fn an_unreachable_source_degrades_the_tick_and_names_each_query_never_a_decision_to_shrink() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let file = dir.path().join("setpoint.yaml");
    std::fs::write(
        &file,
        format!(
            "state_dir: {state}\nloops:\n  - name: services\n    kind: fast\n    source: {{kind: prometheus, url: \"http://127.0.0.1:{port}\", retries: 0}}\n    policies: {policies}\n",
            state = dir.path().join("state").display(),
            policies = policy_dir().display(),
        ),
    )
    .unwrap();
    let out = setpoint(&[
        "run",
        "--once",
        "--config",
        file.to_str().unwrap(),
        "--now",
        "2026-11-24T09:00:00Z",
        "--no-notify",
    ]);
    let report = text(&out);
    assert_eq!(out.status.code(), Some(4), "{report}");
    assert!(report.contains("history request_rate"), "{report}");
    assert!(!report.contains("act "), "{report}");
}
