//! `setpoint train`, `setpoint evaluate` and `setpoint models`, through the binary: training is
//! deterministic, the registry survives restarts, rollback restores the previous version, and
//! the model beats the bootstrap heuristics on a history it has not seen.

use std::path::Path;
use std::process::Output;

use crate::setpoint_binary;

fn setpoint(state: &Path, args: &[&str]) -> Output {
    std::process::Command::new(setpoint_binary())
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .env_remove("RUST_LOG")
        .env_remove("SETPOINT_CONFIG")
        .env("USER", "alice")
        .output()
        .unwrap()
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_str(&crate::ok(output.clone())).unwrap()
}

/// A small history: enough to learn from, quick in a debug build.
const SMALL: [&str; 6] = [
    "--targets-per-scenario",
    "8",
    "--fresh-targets",
    "40",
    "--folds",
    "0",
];

fn train(state: &Path, seed: &str) -> serde_json::Value {
    let mut args = vec![
        "train",
        "--loop",
        "weekly-rightsizing",
        "--seed",
        seed,
        "--output",
        "json",
    ];
    args.extend(SMALL);
    json(&setpoint(state, &args))[0].clone()
}

fn artifact(state: &Path, version: &str) -> String {
    let store = setpoint_state::Store::open(state).unwrap();
    store.model("weekly-rightsizing", version).unwrap().artifact
}

#[test]
fn the_same_seed_and_data_give_a_byte_identical_model() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let first = train(a.path(), "7");
    let second = train(b.path(), "7");
    let version = first["version"].as_str().unwrap();
    assert_eq!(version.len(), 64, "a SHA-256 content hash: {first}");
    assert_eq!(first["version"], second["version"]);
    assert_eq!(first["registered"], true);
    assert_eq!(
        artifact(a.path(), version),
        artifact(b.path(), version),
        "byte-identical artifacts"
    );
    // Registering the same model again is one record.
    let again = train(a.path(), "7");
    assert_eq!(again["registered"], false);
    // Another seed is another model.
    let other = train(a.path(), "8");
    assert_ne!(other["version"], first["version"]);
    let list = json(&setpoint(a.path(), &["models", "list", "--output", "json"]));
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
}

#[test]
fn promotion_survives_a_restart_and_rollback_restores_the_previous_version() {
    let state = tempfile::tempdir().unwrap();
    let first = train(state.path(), "7")["version"]
        .as_str()
        .unwrap()
        .to_string();
    let second = train(state.path(), "8")["version"]
        .as_str()
        .unwrap()
        .to_string();

    let promote = |version: &str| {
        setpoint(
            state.path(),
            &[
                "models",
                "promote",
                &version[..12],
                "--loop",
                "weekly-rightsizing",
                "--reason",
                "better recall",
            ],
        )
    };
    assert!(promote(&first).status.success());
    assert!(promote(&second).status.success());
    // Each command is a process of its own: the promotion was persisted.
    let show = json(&setpoint(
        state.path(),
        &["models", "show", &second[..12], "--output", "json"],
    ));
    assert_eq!(show["promoted"], true, "{show}");
    assert_eq!(show["promotions"].as_array().unwrap().len(), 2);
    assert_eq!(show["promotions"][1]["by"], "alice");
    assert_eq!(show["promotions"][1]["reason"], "better recall");
    assert!(!show["surrogate_rules"].as_array().unwrap().is_empty());
    assert_eq!(show["features"].as_array().unwrap().len(), 24);

    // A cycle classifies with the promoted version and records it.
    let run = setpoint(
        state.path(),
        &["run", "--once", "--loop", "weekly-rightsizing"],
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let store = setpoint_state::Store::open(state.path()).unwrap();
    let entry = store.last_entry("pg-reporting-01").unwrap().unwrap();
    assert_eq!(entry.classification.unwrap().model_version, second);
    drop(store);

    let rollback = setpoint(
        state.path(),
        &["models", "rollback", "--loop", "weekly-rightsizing"],
    );
    assert!(rollback.status.success(), "{rollback:?}");
    assert!(String::from_utf8_lossy(&rollback.stdout).contains(&first));
    let store = setpoint_state::Store::open(state.path()).unwrap();
    assert_eq!(
        store
            .promoted_model("weekly-rightsizing")
            .unwrap()
            .unwrap()
            .version,
        first
    );
    drop(store);

    // Bad input is refused by name, and changes nothing.
    let unknown = setpoint(
        state.path(),
        &[
            "models",
            "promote",
            "ffffffff",
            "--loop",
            "weekly-rightsizing",
        ],
    );
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("ffffffff"));
    let short = setpoint(
        state.path(),
        &["models", "promote", "abc", "--loop", "weekly-rightsizing"],
    );
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least 6 characters"));
    let store = setpoint_state::Store::open(state.path()).unwrap();
    assert_eq!(store.promotions("weekly-rightsizing").unwrap().len(), 3);
}

#[test]
fn evaluate_on_an_unseen_history_beats_the_bootstrap_heuristics() {
    let state = tempfile::tempdir().unwrap();
    let trained = json(&setpoint(
        state.path(),
        &[
            "train",
            "--loop",
            "weekly-rightsizing",
            "--seed",
            "3",
            "--folds",
            "3",
            "--promote",
            "--output",
            "json",
        ],
    ));
    let cv = &trained[0]["metrics"];
    assert!(cv["model"]["macro_f1"].as_f64().unwrap() >= 0.9, "{cv}");
    let confusion = cv["model"]["confusion"].as_array().unwrap();
    assert_eq!(confusion.len(), 3);

    // The training seed is refused: that history is not held out.
    let same = setpoint(state.path(), &["evaluate", "--seed", "3"]);
    assert!(!same.status.success());
    assert!(String::from_utf8_lossy(&same.stderr).contains("trained with"));

    let report = json(&setpoint(
        state.path(),
        &["evaluate", "--seed", "1234", "--output", "json"],
    ));
    let held_out = &report[0]["held_out"];
    let model = held_out["model"]["classes"]["macro_f1"].as_f64().unwrap();
    let bootstrap = held_out["bootstrap"]["classes"]["macro_f1"]
        .as_f64()
        .unwrap();
    assert!(model >= 0.9, "model macro-F1 {model}");
    assert!(model > bootstrap, "model {model} vs bootstrap {bootstrap}");
    let flagged = held_out["model"]["flagged"].as_u64().unwrap();
    let bootstrap_flagged = held_out["bootstrap"]["flagged"].as_u64().unwrap();
    assert!(flagged > bootstrap_flagged, "{held_out}");
    assert!(
        held_out["model"]["regretted"].as_u64().unwrap()
            <= held_out["bootstrap"]["regretted"].as_u64().unwrap()
    );
    // Calibrated on the cross-validation's out-of-fold predictions, the probabilities score
    // better than the raw ones on the unseen history, and 0.8 means at least 80 %.
    assert!(
        trained[0]["calibration"]["source"]
            .as_str()
            .unwrap()
            .contains("out-of-fold"),
        "{}",
        trained[0]["calibration"]
    );
    let probabilities = &held_out["probabilities"];
    let brier = |set: &str| probabilities[set]["brier"].as_f64().unwrap();
    assert!(brier("calibrated") < brier("raw"), "{probabilities}");
    let at_threshold = &probabilities["calibrated"]["at_threshold"];
    assert_eq!(at_threshold["threshold"].as_f64(), Some(0.8));
    assert!(
        at_threshold["accuracy"].as_f64().unwrap() >= 0.8,
        "{probabilities}"
    );
}

/// `kind: model` with no promoted model stops the cycle and says how to fix it; only an explicit
/// `fallback: bootstrap` lets the heuristics decide, and then every row says so.
/// Writes `dir/setpoint.yaml`: one loop `pg` (the quickstart's plugin and source) with this
/// classifier, its store in `dir/state`.
fn write_pg_loop(dir: &Path, classifier: &str) {
    std::fs::write(
        dir.join("setpoint.yaml"),
        format!(
            "state_dir: {}\nloops:\n  - name: pg\n    classifier: {classifier}\n",
            dir.join("state").display()
        ),
    )
    .unwrap();
}

#[test]
fn a_loop_without_a_model_fails_unless_it_names_a_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("setpoint.yaml");
    let write = |classifier: &str| write_pg_loop(dir.path(), classifier);
    let run = || {
        std::process::Command::new(setpoint_binary())
            .args(["--config"])
            .arg(&config)
            .args(["run", "--once"])
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    };

    write("{ kind: model }");
    let output = run();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    for needle in [
        "loop pg: classifier kind model: no model is promoted",
        "setpoint train --promote",
        "classifier.fallback: bootstrap",
    ] {
        assert!(stderr.contains(needle), "{needle}: {stderr}");
    }
    let store = setpoint_state::Store::open(&dir.path().join("state")).unwrap();
    assert!(
        store.last_entry("pg-reporting-01").unwrap().is_none(),
        "nothing decided"
    );
    drop(store);

    write("{ kind: model, fallback: bootstrap }");
    let output = run();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("(fallback: bootstrap)"), "{stdout}");
    let store = setpoint_state::Store::open(&dir.path().join("state")).unwrap();
    let entry = store.last_entry("pg-reporting-01").unwrap().unwrap();
    let classification = entry.classification.unwrap();
    assert_eq!(classification.model, "bootstrap-heuristics");
    let fallback = entry.classifier_fallback.unwrap_or_default();
    assert!(
        fallback.contains("no model is promoted") && fallback.contains("fallback: bootstrap"),
        "{fallback}"
    );
    assert!(
        classification.explanation.rule.contains(&fallback),
        "{}",
        classification.explanation.rule
    );
    assert!(store.models("pg").unwrap().is_empty(), "nothing trained");
}

#[test]
fn a_clock_jump_past_max_age_makes_the_promoted_model_stale() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("setpoint.yaml");
    let write = |classifier: &str| write_pg_loop(dir.path(), classifier);
    let at = |now: &str, args: &[&str]| {
        std::process::Command::new(setpoint_binary())
            .arg("--config")
            .arg(&config)
            .args(["--now", now])
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("SETPOINT_CONFIG")
            .output()
            .unwrap()
    };
    write("{ kind: model, max_age_days: 30 }");
    let mut train = vec!["train", "--loop", "pg", "--seed", "7", "--promote"];
    train.extend(SMALL);
    crate::ok(at("2026-03-01T00:00:00Z", &train));
    // A day later the model decides.
    let report = crate::ok(at("2026-03-02T00:00:00Z", &["run", "--once"]));
    assert!(!report.contains("fallback"), "{report}");
    // The clock jumps 40 days ahead: the model is stale, and the loop says so and stops.
    let output = at("2026-04-11T00:00:00Z", &["run", "--once"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("days old, over classifier.max_age_days (30)"),
        "{stderr}"
    );
    // With a fallback, the heuristics decide and every row says why.
    write("{ kind: model, max_age_days: 30, fallback: bootstrap }");
    let report = crate::ok(at("2026-04-11T00:00:00Z", &["run", "--once"]));
    assert!(report.contains("(fallback: bootstrap)"), "{report}");
    let store = setpoint_state::Store::open(&dir.path().join("state")).unwrap();
    let entry = store.last_entry("pg-reporting-01").unwrap().unwrap();
    assert_eq!(entry.classification.unwrap().model, "bootstrap-heuristics");
    assert!(
        entry
            .classifier_fallback
            .unwrap_or_default()
            .contains("days old"),
    );
}

#[path = "../../engine/mlflow/tests/support/server.rs"]
mod mlflow_server;

/// With an `mlflow:` section, `setpoint train` logs the run and registers the model version in
/// a real MLflow tracking server (from PyPI, on 127.0.0.1), and the local registry records
/// where.
#[tokio::test(flavor = "multi_thread")]
async fn train_logs_the_run_and_registers_the_model_in_mlflow() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mlflow = mlflow_server::mlflow_executable(&root);
    let server_dir = dir.path().join("mlflow");
    std::fs::create_dir_all(&server_dir).unwrap();
    let mut server = mlflow_server::Server::start(&mlflow, &server_dir);
    server.wait_ready().await;

    let config = dir.path().join("setpoint.yaml");
    std::fs::write(
        &config,
        format!(
            "state_dir: {}\nmlflow:\n  tracking_uri: {}\n  experiment: setpoint-e2e\n  registered_model: weekly-classifier\n",
            dir.path().join("state").display(),
            server.uri
        ),
    )
    .unwrap();
    let mut args = vec![
        "--config".to_string(),
        config.display().to_string(),
        "train".into(),
        "--loop".into(),
        "weekly-rightsizing".into(),
        "--folds".into(),
        "2".into(),
        "--output".into(),
        "json".into(),
    ];
    args.extend(SMALL[..4].iter().map(ToString::to_string));
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(setpoint_binary())
            .args(&args)
            .env_remove("RUST_LOG")
            .env_remove("MLFLOW_TRACKING_URI")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        server.tail()
    );
    let trained: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let trained = &trained[0];
    let version = trained["version"].as_str().unwrap();
    let tags = &trained["tags"];
    let run_id = tags["mlflow.run_id"].as_str().unwrap();
    let alias = tags["mlflow.alias"].as_str().unwrap();

    // The local registry keeps where the model went.
    let store = setpoint_state::Store::open(&dir.path().join("state")).unwrap();
    let record = store.model("weekly-rightsizing", version).unwrap();
    assert_eq!(record.tags["mlflow.run_id"], run_id);
    drop(store);

    // MLflow has the run with its parameters, metrics and artifacts, and the model version.
    let client = setpoint_mlflow::MlflowClient::new(
        &setpoint_mlflow::MlflowConfig::new(&server.uri),
        setpoint_mlflow::Credentials::None,
    )
    .unwrap();
    let run = client.get_run(run_id).await.unwrap();
    let param = |key: &str| {
        run.data
            .params
            .iter()
            .find(|p| p.key == key)
            .map(|p| p.value.clone())
    };
    assert_eq!(param("seed").as_deref(), Some("1"));
    assert_eq!(param("labels").as_deref(), Some("outcomes"));
    let metric = |key: &str| {
        run.data
            .metrics
            .iter()
            .find(|m| m.key == key)
            .map(|m| m.value)
    };
    assert!(
        metric("cv_macro_f1").unwrap() > 0.8,
        "{:?}",
        run.data.metrics
    );
    let artifacts = client.list_artifacts(run_id, Some("model")).await.unwrap();
    assert!(
        artifacts.iter().any(|f| f.path == "model/model.json"),
        "{artifacts:?}"
    );
    let registered = client
        .get_model_version_by_alias("weekly-classifier", alias)
        .await
        .unwrap();
    assert_eq!(registered.run_id, run_id);
    assert!(
        registered
            .tags
            .iter()
            .any(|t| t.key == setpoint_mlflow::MODEL_HASH_TAG && t.value == version),
        "{registered:?}"
    );
    drop(server);
}

#[test]
fn trains_and_evaluates_from_the_loops_own_source() {
    let state = tempfile::tempdir().unwrap();
    let now = ["--now", "2026-11-30T06:00:00Z"];
    let mut args = vec!["train", "--loop", "weekly-rightsizing", "--from-source"];
    args.extend(["--folds", "0", "--output", "json"]);
    args.extend(now);
    let trained = json(&setpoint(state.path(), &args))[0].clone();
    let parameters = &trained["parameters"];
    // The registry records where the data came from, its range and the labels per class.
    assert!(
        parameters["source"]
            .as_str()
            .unwrap()
            .starts_with("simulated"),
        "{parameters}"
    );
    assert_eq!(parameters["history_start"], "2026-08-31T06:00:00+00:00");
    assert_eq!(parameters["history_end"], "2026-11-30T06:00:00+00:00");
    assert_eq!(parameters["history_weeks"], "13");
    for class in ["scale_down", "remain", "scale_up"] {
        let n: usize = parameters[format!("label_count_{class}")]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(n > 0, "{class}: {parameters}");
    }
    // The peak features' schema.
    let version = trained["version"].as_str().unwrap();
    assert!(
        artifact(state.path(), version).contains("cpu_weeks_to_saturation"),
        "the model's schema has the peak features"
    );
    let list = json(&setpoint(
        state.path(),
        &["models", "list", "--output", "json"],
    ));
    assert_eq!(list[0]["schema_version"], "setpoint-learn/features/2");

    // A time split: trained on what was known by the split, scored on what followed.
    let mut args = vec!["evaluate", "--loop", "weekly-rightsizing", "--from-source"];
    args.extend(["--output", "json"]);
    args.extend(now);
    let evaluated = json(&setpoint(state.path(), &args))[0].clone();
    let split = &evaluated["split"];
    assert_eq!(split["split_week"], 7, "{split}");
    let scored: u64 = split["test_counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(split["held_out"]["windows"].as_u64(), Some(scored));
    let model = &split["held_out"]["model"];
    for key in ["regretted", "flagged_two_weeks_ahead", "degradations"] {
        assert!(model[key].is_u64(), "{key}: {model}");
    }

    // Too short a history, or a split that leaves nothing to score: said, nothing registered.
    let before = json(&setpoint(
        state.path(),
        &["models", "list", "--output", "json"],
    ));
    let out = setpoint(
        state.path(),
        &[
            "train",
            "--from-source",
            "--history-weeks",
            "8",
            "--now",
            now[1],
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("at least 12"), "{stderr}");
    let out = setpoint(
        state.path(),
        &[
            "evaluate",
            "--from-source",
            "--split-week",
            "9",
            "--now",
            now[1],
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pick a split between"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = json(&setpoint(
        state.path(),
        &["models", "list", "--output", "json"],
    ));
    assert_eq!(before, after);
}

#[test]
fn a_malformed_incident_file_is_refused_with_its_line_and_nothing_is_registered() {
    let state = tempfile::tempdir().unwrap();
    let incidents = state.path().join("incidents.csv");
    std::fs::write(
        &incidents,
        "target,time,kind\npg-transactional-001,2026-10-05T10:00:00Z,latency_spike\npg-reporting-001,yesterday,oom_kill\n",
    )
    .unwrap();
    let out = setpoint(
        state.path(),
        &[
            "train",
            "--loop",
            "weekly-rightsizing",
            "--from-source",
            "--incidents",
            incidents.to_str().unwrap(),
            "--now",
            "2026-11-30T06:00:00Z",
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("incidents.csv:3:"), "{stderr}");
    let list = json(&setpoint(
        state.path(),
        &["models", "list", "--output", "json"],
    ));
    assert_eq!(list.as_array().map(Vec::len), Some(0), "{list}");
}
