//! Decision quality on telemetry setpoint has never seen: `scripts/decision-quality.sh` makes a
//! PostgreSQL fleet with `tests/fleetgen` (its own code, parameters and ground truth), loads it
//! into a real VictoriaMetrics, or a real Prometheus backfilled by promtool, on 127.0.0.1 and
//! scores one cycle per classifier: the bootstrap heuristics, the model trained on the embedded
//! simulator, and a model trained from the TSDB's own 13 weeks (`setpoint train
//! --from-source`). This is the CI smoke of that benchmark (40 targets; the 200- and
//! 1,000-target figures are in docs/decision-quality.md).

use std::path::Path;
use std::process::Command;

use crate::setpoint_binary;

/// Runs `scripts/decision-quality.sh` on the CI smoke fleet (40 targets, 13 weeks, seed 7)
/// with `args`, and returns its work directory, which holds one score per backend and
/// classifier.
fn benchmark(args: &[&str]) -> tempfile::TempDir {
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
        .args(args)
        .arg("--workdir")
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
    work
}

fn score(work: &tempfile::TempDir, name: &str) -> serde_json::Value {
    let file = work.path().join(format!("score-{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap()
}

/// Every generated target was decided (none lost between the TSDB and the report), and the
/// safety floor held: no shrink below a peak the target reached, none on a data gap.
fn assert_all_decided_within_seen_need(name: &str, score: &serde_json::Value) {
    assert_eq!(score["targets"], 40, "{name}: {score:#}");
    assert_eq!(score["rows"], 40, "{name}");
    assert_eq!(
        score["missing_or_failed"].as_array().map(Vec::len),
        Some(0),
        "{name}"
    );
    assert_eq!(
        score["below_seen_need"], 0,
        "{name}: {:#}",
        score["below_seen_need_list"]
    );
}

/// Trained from the TSDB: no scale-down followed by saturation, every target that saturates
/// two to four weeks after the end flagged now, and every saturated one too.
fn assert_trained_from_source_is_safe(name: &str, score: &serde_json::Value) {
    assert_eq!(
        score["unsafe_shrinks"], 0,
        "{name}: {:#}",
        score["unsafe_shrink_list"]
    );
    let ahead = &score["saturations_flagged_2w_ahead"];
    assert!(ahead["targets"].as_u64().unwrap() > 0, "{name}: {score:#}");
    assert_eq!(
        ahead["classed_scale_up"], ahead["targets"],
        "{name}: {ahead:#}"
    );
    let now = &score["saturated_now_flagged"];
    assert_eq!(now["classed_scale_up"], now["targets"], "{name}: {now:#}");
}

#[test]
fn no_scale_down_leaves_less_than_an_unseen_fleet_was_seen_to_need() {
    let work = benchmark(&["--classifier", "bootstrap,model,source"]);
    for classifier in ["bootstrap", "model", "source"] {
        let name = format!("victoria-{classifier}");
        assert_all_decided_within_seen_need(&name, &score(&work, &name));
    }
    assert_trained_from_source_is_safe("victoria-source", &score(&work, "victoria-source"));
}

/// The same fleet backfilled into a real Prometheus by promtool: training from Prometheus's
/// own history and one cycle on it hold to the same rules.
#[test]
fn a_model_trained_from_prometheus_history_is_as_safe() {
    let work = benchmark(&["--classifier", "source", "--no-victoria", "--prometheus"]);
    let score = score(&work, "prometheus-source");
    assert_all_decided_within_seen_need("prometheus-source", &score);
    assert_trained_from_source_is_safe("prometheus-source", &score);
}
