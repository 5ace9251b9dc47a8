//! A third-party plugin, built out of tree against the SDK alone (`examples/custom-plugin`,
//! MongoDB), dropped in the plugins directory: the quickstart runs it over the simulator with
//! the scenarios it ships, next to the bundled plugins.

use std::path::Path;
use std::process::Command;

use crate::setpoint_binary;

#[test]
fn the_custom_plugin_builds_and_shows_in_the_quickstart() {
    let dir = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/custom-plugin");
    let out = Command::new(setpoint_binary())
        .args(["plugin", "build"])
        .arg(&example)
        .arg("--out")
        .arg(dir.path().join("plugins.d/mongodb.wasm"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("plugin mongodb 0.1.0 for mongodb"),
        "{stderr}"
    );

    // No configuration: the quickstart, run where plugins.d is.
    let out = Command::new(setpoint_binary())
        .current_dir(dir.path())
        .args([
            "run",
            "--once",
            "--output",
            "json",
            "--now",
            "2026-11-23T06:00:00Z",
        ])
        .env_remove("SETPOINT_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let loops: Vec<&str> = reports
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["loop_name"].as_str().unwrap())
        .collect();
    assert!(loops.contains(&"weekly-rightsizing"), "{loops:?}");
    let mongo = reports
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["loop_name"] == "mongodb-rightsizing")
        .unwrap_or_else(|| panic!("no mongodb loop in {loops:?}"));
    assert_eq!(mongo["plugin"], "mongodb 0.1.0");
    let row = |id: &str| {
        mongo["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["target"] == id)
            .unwrap()
            .clone()
    };
    let archive = row("mongo-archive-01");
    assert_eq!(archive["class"], "scale_down");
    assert_eq!(
        archive["change"],
        "8 vCPU / 32 GiB → 4 vCPU / 20 GiB, wiredTigerCacheSizeGB 15.5 → 9.5"
    );
    assert_eq!(row("mongo-events-01")["class"], "scale_up");
    assert_eq!(row("mongo-catalog-01")["class"], "remain");
}
