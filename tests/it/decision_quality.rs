//! Decision quality on telemetry setpoint has never seen: `scripts/decision-quality.sh` makes a
//! PostgreSQL fleet with `tests/fleetgen` (its own code, parameters and ground truth), loads it
//! into a real VictoriaMetrics on 127.0.0.1 and scores one cycle per classifier: the bootstrap
//! heuristics, the model trained on the embedded simulator, and a model trained from the TSDB's
//! own 13 weeks (`setpoint train --from-source`). This is the CI smoke of that benchmark (40
//! targets; the 200-target figures are in docs/decision-quality.md).

use std::path::Path;
use std::process::Command;

use crate::setpoint_binary;

#[test]
fn no_scale_down_leaves_less_than_an_unseen_fleet_was_seen_to_need() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let work = tempfile::tempdir().unwrap();
    let output = Command::new("bash")
        .arg(root.join("scripts/decision-quality.sh"))
        .args([
            "--targets",
            "40",
            "--seed",
            "7",
            "--end",
            "2026-11-30T06:00:00Z",
        ])
        .args(["--classifier", "bootstrap,model,source", "--workdir"])
        .arg(work.path())
        .env("SETPOINT", setpoint_binary())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for classifier in ["bootstrap", "model", "source"] {
        let file = work
            .path()
            .join(format!("score-victoria-{classifier}.json"));
        let score: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        // Every generated target was decided: none lost between the TSDB and the report.
        assert_eq!(score["targets"], 40, "{classifier}: {score:#}");
        assert_eq!(score["rows"], 40, "{classifier}");
        assert_eq!(
            score["missing_or_failed"].as_array().map(Vec::len),
            Some(0),
            "{classifier}"
        );
        // The safety floor: no shrink below a peak the target reached, none on a data gap.
        assert_eq!(
            score["below_seen_need"], 0,
            "{classifier}: {:#}",
            score["below_seen_need_list"]
        );
    }
    // Trained from the TSDB: no scale-down followed by saturation, and every target that
    // saturates two to four weeks after the end flagged now.
    let file = work.path().join("score-victoria-source.json");
    let score: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(
        score["unsafe_shrinks"], 0,
        "{:#}",
        score["unsafe_shrink_list"]
    );
    let ahead = &score["saturations_flagged_2w_ahead"];
    assert!(ahead["targets"].as_u64().unwrap() > 0, "{score:#}");
    assert_eq!(ahead["classed_scale_up"], ahead["targets"], "{ahead:#}");
    let now = &score["saturated_now_flagged"];
    assert_eq!(now["classed_scale_up"], now["targets"], "{now:#}");
}
