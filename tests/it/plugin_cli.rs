//! `setpoint plugin inspect` and `setpoint plugin validate`, through the binary.

use std::process::Output;

use crate::hostile::guest_path;
use crate::setpoint_binary;

fn setpoint(args: &[&str]) -> Output {
    std::process::Command::new(setpoint_binary())
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// The bundled PostgreSQL plugin as a file, as an operator would have it.
fn postgres_file(dir: &tempfile::TempDir) -> String {
    let path = dir.path().join("postgres.wasm");
    std::fs::write(&path, setpoint_plugins_bundled::postgres()).unwrap();
    path.display().to_string()
}

#[test]
fn inspect_prints_what_the_postgres_plugin_declares() {
    let dir = tempfile::tempdir().unwrap();
    let file = postgres_file(&dir);
    let output = setpoint(&["plugin", "inspect", &file]);
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    for needle in [
        "plugin      postgres",
        "technology  postgres",
        "abi         0.5.0",
        "actions     scale_down, scale_up",
        "metrics (4):",
        "cpu  [mean, ratio]  host CPU utilisation",
        "node_cpu_seconds_total",
        "features (16):",
        "cpu_w4",
        "iops_w1",
    ] {
        assert!(text.contains(needle), "{needle:?} missing:\n{text}");
    }

    let output = setpoint(&["plugin", "inspect", "builtin:postgres", "--output", "json"]);
    assert!(output.status.success(), "{output:?}");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["name"], "postgres");
    assert_eq!(json["technology"], "postgres");
    assert_eq!(json["abi_version"], "0.5.0");
    assert_eq!(json["metrics"].as_array().unwrap().len(), 4);
    assert_eq!(json["metrics"][0]["aggregation"], "mean");
    assert!(
        json["metrics"][0]["query"]
            .as_str()
            .unwrap()
            .contains("node_cpu_seconds_total")
    );
    assert_eq!(json["features"].as_array().unwrap().len(), 16);
    assert_eq!(
        json["actions"],
        serde_json::json!(["scale_down", "scale_up"])
    );
}

#[test]
fn inspect_of_a_forbidden_plugin_fails_naming_the_import() {
    let output = setpoint(&["plugin", "inspect", guest_path("caps")]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("wasi:filesystem/preopens@0.2.6"),
        "{stderr}"
    );
}

fn validate(plugin: &str) -> (Option<i32>, serde_json::Value) {
    let output = setpoint(&["plugin", "validate", plugin, "--output", "json"]);
    let json = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {output:?}"));
    (output.status.code(), json)
}

#[test]
fn validate_passes_on_the_bundled_postgres_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let file = postgres_file(&dir);
    let output = setpoint(&["plugin", "validate", &file]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}\n{output:?}");
    assert!(!text.contains("FAIL"), "{text}");
    for check in [
        "pass  loads under the sandbox limits: postgres",
        "pass  features from raw samples: 16 features in schema order, 16 with values",
        "pass  features from weekly summaries: 16 features in schema order, 16 with values",
        "pass  raw samples and weekly summaries agree",
        "pass  features from no samples: 16 features, every value none",
        "pass  proposals within bounds",
        "pass  deterministic",
        "pass  within the sandbox limits",
        "pass  a batch answers each target as a call of its own: features() and propose() of 3 targets in one batch match 3 single calls",
        "9 passed, 0 failed",
    ] {
        assert!(text.contains(check), "{check:?} missing:\n{text}");
    }

    let (code, json) = validate("builtin:postgres");
    assert_eq!(code, Some(0), "{json:#}");
    assert_eq!(json["passed"], true);
    assert_eq!(json["plugin"], "postgres");
}

#[test]
fn validate_passes_on_every_shipped_plugin() {
    for (name, _) in setpoint_plugins_bundled::all() {
        let (code, json) = validate(&format!("builtin:{name}"));
        assert_eq!(code, Some(0), "{name}: {json:#}");
        assert_eq!(json["passed"], true, "{name}: {json:#}");
        assert_eq!(json["plugin"], *name);
    }
    assert_eq!(setpoint_plugins_bundled::all().len(), 4);
}

#[test]
fn validate_fails_on_each_hostile_guest_with_its_reason() {
    for (guest, check, reason) in [
        (
            "trap",
            "features from raw samples",
            "deliberate panic for target synthetic-1",
        ),
        (
            "spin",
            "within the sandbox limits",
            "ran out of its CPU budget",
        ),
        (
            "hog",
            "features from raw samples",
            "exceeded its memory limit of 64 MiB",
        ),
        (
            "recurse",
            "features from raw samples",
            "overflowed its call stack",
        ),
        (
            "panic",
            "proposals within bounds",
            "deliberate panic in propose for synthetic-1",
        ),
        (
            "flood",
            "features from raw samples",
            "returned output too large",
        ),
        (
            "liar",
            "proposals within bounds",
            "millicores, outside the bounds",
        ),
        ("liar", "features from no samples", "without any sample"),
        (
            "caps",
            "loads under the sandbox limits",
            "imports wasi:filesystem/preopens@0.2.6",
        ),
    ] {
        let (code, json) = validate(guest_path(guest));
        assert_eq!(code, Some(1), "{guest}: {json:#}");
        assert_eq!(json["passed"], false, "{guest}");
        let found = json["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == check)
            .unwrap_or_else(|| panic!("{guest}: no check {check:?}: {json:#}"));
        assert_eq!(found["passed"], false, "{guest}: {found:#}");
        let text = found["reason"].as_str().unwrap();
        assert!(text.contains(reason), "{guest}: {check}: {text}");
        if check != "loads under the sandbox limits" && check != "within the sandbox limits" {
            // A call failure names the plugin and the synthetic target.
            assert!(
                !text.contains("plugin \"") || text.contains("\"synthetic-1\""),
                "{guest}: {text}"
            );
        }
    }
}

/// A loop pinned to its plugin's digest: `plugin inspect` prints the digest to pin; the pinned
/// file runs; the same path with another component behind it (a Redis plugin where the
/// PostgreSQL one was) is refused at load, naming both digests, and nothing runs.
#[test]
fn a_pinned_plugin_swapped_behind_its_loop_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let file = postgres_file(&dir);
    let output = setpoint(&["plugin", "inspect", &file, "--output", "json"]);
    assert!(output.status.success(), "{output:?}");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let pinned = json["sha256"].as_str().unwrap().to_string();
    assert_eq!(pinned.len(), 64);
    let table = setpoint(&["plugin", "inspect", &file]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains(&format!("plugin: {{ path: {file}, sha256: {pinned} }}")),
        "{text}"
    );

    let config = dir.path().join("setpoint.yaml");
    std::fs::write(
        &config,
        format!(
            "state_dir: {}\nloops:\n  - name: pinned\n    source: {{ kind: simulated }}\n    plugin: {{ path: {file}, sha256: {} }}\n",
            dir.path().join("state").display(),
            pinned.to_uppercase()
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let run = |args: &[&str]| {
        let mut all = vec!["--config", config.as_str()];
        all.extend_from_slice(args);
        setpoint(&all)
    };
    let ok = run(&["run", "--once", "--now", "2026-11-23T06:00:00Z"]);
    assert!(ok.status.success(), "{ok:?}");

    std::fs::write(&file, setpoint_plugins_bundled::redis()).unwrap();
    let swapped = setpoint_plugin_host::digest(setpoint_plugins_bundled::redis());
    for args in [
        &["config", "check"][..],
        &["run", "--once", "--now", "2026-11-30T06:00:00Z"][..],
    ] {
        let refused = run(args);
        assert!(!refused.status.success(), "{args:?}: {refused:?}");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            stderr.contains("is not the pinned one")
                && stderr.contains(&swapped)
                && stderr.contains(&pinned),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn a_malformed_pin_is_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = postgres_file(&dir);
    let config = dir.path().join("setpoint.yaml");
    for (plugin, needle) in [
        (
            format!("{{ path: {file}, sha256: abc }}"),
            "plugin.sha256: \"abc\" is not a SHA-256 digest",
        ),
        (
            format!("{{ path: {file}, sha: {} }}", "0".repeat(64)),
            "unknown field `sha`",
        ),
        (
            format!("{{ path: builtin:postgres, sha256: {} }}", "0".repeat(64)),
            "a builtin plugin is part of setpoint's binary",
        ),
    ] {
        std::fs::write(
            &config,
            format!("loops:\n  - name: pinned\n    source: {{ kind: simulated }}\n    plugin: {plugin}\n"),
        )
        .unwrap();
        let output = setpoint(&["--config", &config.display().to_string(), "config", "check"]);
        assert_eq!(output.status.code(), Some(1), "{plugin}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(needle), "{plugin}: {stderr}");
        assert!(stderr.contains("setpoint.yaml"), "names the file: {stderr}");
    }
}
