use std::path::Path;

use crate::setpoint_binary;

use chrono::{DateTime, Utc};
use setpoint_runtime::{Config, Runtime, Shutdown};

fn config_text(state: &Path) -> String {
    format!(
        r#"state_dir: {state}
loops:
  - name: postgres
  - name: trap
    plugin: {trap}
  - name: spin
    plugin: {spin}
    limits: {{ fuel: 50000000 }}
  - name: hog
    plugin: {hog}
    limits: {{ memory_mib: 16 }}
"#,
        state = state.display(),
        trap = env!("SETPOINT_GUEST_TRAP"),
        spin = env!("SETPOINT_GUEST_SPIN"),
        hog = env!("SETPOINT_GUEST_HOG"),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn each_broken_plugin_fails_only_its_own_targets() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::parse(&config_text(&dir.path().join("state")), "test.yaml").unwrap();
    let runtime = Runtime::new(config).unwrap();
    let now = DateTime::parse_from_rfc3339("2026-11-23T06:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let reports = runtime.run_once(now, None, &Shutdown::new()).await.unwrap();
    assert_eq!(reports.len(), 4);

    let healthy = &reports[0];
    assert_eq!(healthy.failed(), 0);
    assert!(healthy.rows.iter().any(|r| r.verdict.is_some()));

    let trap = &reports[1];
    for row in &trap.rows {
        let odd = row.target.ends_with(['1', '3', '5', '7', '9']);
        match &row.error {
            Some(error) => {
                assert!(odd, "{}: {error}", row.target);
                assert!(error.contains("panicked: "), "{error}");
                assert!(error.contains(&row.target), "{error}");
            }
            None => {
                assert!(!odd, "{} should have failed", row.target);
                // Too few features for the heuristics: nothing changes — unless the safety
                // floor, from the observed weeks alone, projects a dimension to saturate.
                assert!(
                    matches!(
                        row.class_reason.as_deref(),
                        Some("insufficient_data" | "projected_saturation")
                    ),
                    "{}: {:?}",
                    row.target,
                    row.class_reason
                );
            }
        }
    }
    assert!(trap.failed() > 0 && trap.failed() < trap.rows.len());

    for (report, needle) in [(&reports[2], "CPU budget"), (&reports[3], "memory limit")] {
        assert_eq!(report.failed(), report.rows.len(), "{}", report.loop_name);
        for row in &report.rows {
            let error = row.error.as_deref().unwrap();
            assert!(error.contains(needle), "{error}");
            assert!(error.contains(&format!("{:?}", row.target)), "{error}");
            assert!(row.verdict.is_none());
        }
    }

    // Failures are journalled with the stage that failed.
    let store = setpoint_state::Store::open(&dir.path().join("state")).unwrap();
    let entry = store
        .entries("pg-reporting-01")
        .unwrap()
        .into_iter()
        .find(|e| e.loop_name == "spin")
        .unwrap();
    let error = entry.error.unwrap();
    assert_eq!(error.stage, setpoint_core::StageName::Features);
}

#[test]
fn the_run_completes_and_its_exit_status_says_targets_failed() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("setpoint.yaml");
    std::fs::write(&config, config_text(&dir.path().join("state"))).unwrap();
    let output = std::process::Command::new(setpoint_binary())
        .arg("--config")
        .arg(&config)
        .args(["run", "--once", "--now", "2026-11-23T06:00:00Z"])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Every loop's report is printed, the healthy one included.
    for lp in ["loop postgres", "loop trap", "loop spin", "loop hog"] {
        assert!(stdout.contains(lp), "{lp} missing:\n{stdout}");
    }
    assert!(
        stdout.contains("8 vCPU / 32 GiB → 4 vCPU / 24 GiB"),
        "{stdout}"
    );
    assert!(stdout.contains("target(s) failed:"), "{stdout}");
    assert!(
        stdout.contains("exceeded its memory limit of 16 MiB"),
        "{stdout}"
    );
    assert!(stderr.contains("target(s) failed"), "{stderr}");
}
