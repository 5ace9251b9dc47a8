//! End to end against a real MLflow tracking server from PyPI, on 127.0.0.1.
//!
//! `scripts/mlflow-venv.sh` makes (or reuses) the venv; the server runs on a free port with a
//! SQLite store and artifact serving in a temporary directory, in its own process group so that
//! the guard can stop it and its workers by PID even when an assertion fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/server.rs"]
mod server;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use serde_json::Value;
use server::{Server, mlflow_executable};
use setpoint_mlflow::{
    Artifact, Credentials, MODEL_HASH_TAG, Metric, MlflowClient, MlflowConfig, TrainingRun,
    log_training,
};

fn training(hash: &str, model: &[u8]) -> TrainingRun {
    let mut run = TrainingRun {
        run_name: Some("weekly e2e".into()),
        model_path: "model".into(),
        model_hash: hash.into(),
        artifacts: vec![
            Artifact::new("model/model.json", model.to_vec()),
            Artifact::new("report/metrics.json", br#"{"f1":0.9}"#.to_vec()),
        ],
        ..TrainingRun::default()
    };
    // More than one log-batch request's worth of each.
    for i in 0..150 {
        run.params
            .insert(format!("feature.{i:03}"), format!("w{i}"));
    }
    run.params.insert("learning_rate".into(), "0.1".into());
    run.tags.insert("setpoint.loop".into(), "weekly".into());
    for step in 0..1200 {
        run.metrics.push(Metric {
            key: "train_loss".into(),
            value: 1.0 / (step as f64 + 1.0),
            timestamp: 0,
            step,
        });
    }
    run.metric("f1", 0.9).metric("auc", f64::NAN);
    run
}

async fn get_json(http: &reqwest::Client, url: String, server: &Server) -> Value {
    let response = http
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}\n{}", server.tail()));
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(
        status.is_success(),
        "GET {url}: {status} {text}\n{}",
        server.tail()
    );
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn logs_and_registers_against_a_real_mlflow_server() {
    let mlflow = mlflow_executable(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."));
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&mlflow, dir.path());
    let started = Instant::now();
    server.wait_ready().await;
    eprintln!("mlflow server ready in {:?}", started.elapsed());

    let mut config = MlflowConfig::new(&server.uri);
    config.experiment = "setpoint-e2e".into();
    config.registered_model = "setpoint-e2e-classifier".into();
    config.retries = 0;
    let model = br#"{"kind":"gbdt","trees":[[0,1,2]]}"#;
    let hash = "sha256:0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";

    let logged = log_training(&config, &training(hash, model))
        .await
        .unwrap_or_else(|e| panic!("log_training: {e}\n{}", server.tail()));
    assert_eq!(logged.model_version, "1");
    assert_eq!(logged.alias, "setpoint-0a1b2c3d4e5f60718293a4b5c6d7e8f9");
    assert!(logged.run_url.starts_with(&server.uri), "{logged:?}");

    let client = MlflowClient::new(&config, Credentials::None).unwrap();
    let run = client.get_run(&logged.run_id).await.unwrap();
    assert_eq!(run.info.status, "FINISHED");
    assert_eq!(run.info.experiment_id, logged.experiment_id);
    assert_eq!(run.info.run_name, "weekly e2e");
    assert_eq!(run.data.params.len(), 151);
    assert_eq!(run.data.param("feature.149"), Some("w149"));
    assert_eq!(run.data.param("learning_rate"), Some("0.1"));
    assert_eq!(run.data.metric("f1"), Some(0.9));
    assert!(
        run.data.metric("auc").is_some_and(f64::is_nan),
        "{:?}",
        run.data.metrics
    );
    assert_eq!(run.data.metric("train_loss"), Some(1.0 / 1200.0));
    assert_eq!(run.data.tag(MODEL_HASH_TAG), Some(hash));
    assert_eq!(run.data.tag("setpoint.loop"), Some("weekly"));
    assert_eq!(run.data.tag("mlflow.source.name"), Some("setpoint"));

    let http = reqwest::Client::new();
    let history = get_json(
        &http,
        format!(
            "{}/api/2.0/mlflow/metrics/get-history?run_id={}&metric_key=train_loss&max_results=5000",
            server.uri, logged.run_id
        ),
        &server,
    )
    .await;
    assert_eq!(history["metrics"].as_array().map(Vec::len), Some(1200));

    let root: Vec<(String, bool)> = client
        .list_artifacts(&logged.run_id, None)
        .await
        .unwrap()
        .into_iter()
        .map(|f| (f.path, f.is_dir))
        .collect();
    assert_eq!(
        root,
        [("model".to_string(), true), ("report".to_string(), true)]
    );
    let files = client
        .list_artifacts(&logged.run_id, Some("model"))
        .await
        .unwrap();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0].path, "model/model.json");
    assert_eq!(files[0].file_size, Some(model.len() as i64));
    let stored = std::fs::read(
        dir.path()
            .join("artifacts")
            .join(&logged.experiment_id)
            .join(&logged.run_id)
            .join("artifacts/model/model.json"),
    )
    .unwrap();
    assert_eq!(stored, model);

    let version = client
        .get_model_version_by_alias(&config.registered_model, &logged.alias)
        .await
        .unwrap();
    assert_eq!(version.version, "1");
    assert_eq!(version.run_id, logged.run_id);
    assert_eq!(version.source, logged.source);
    assert!(version.source.ends_with("/artifacts/model"), "{version:?}");
    let tags: BTreeMap<&str, &str> = version
        .tags
        .iter()
        .map(|t| (t.key.as_str(), t.value.as_str()))
        .collect();
    assert_eq!(tags.get(MODEL_HASH_TAG), Some(&hash));

    // A retrain finds the experiment and the registered model already there.
    let second = log_training(&config, &training("sha256:ffee", b"{}"))
        .await
        .unwrap_or_else(|e| panic!("second log_training: {e}\n{}", server.tail()));
    assert_eq!(second.experiment_id, logged.experiment_id);
    assert_ne!(second.run_id, logged.run_id);
    assert_eq!(second.model_version, "2");
    let versions = get_json(
        &http,
        format!(
            "{}/api/2.0/mlflow/registered-models/get?name={}",
            server.uri, config.registered_model
        ),
        &server,
    )
    .await;
    let aliases = versions["registered_model"]["aliases"].to_string();
    assert!(aliases.contains("setpoint-ffee"), "{aliases}");
    assert!(aliases.contains(&logged.alias), "{aliases}");

    eprintln!(
        "e2e done {:?} after the server was started",
        started.elapsed()
    );
}
