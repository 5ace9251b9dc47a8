//! Unit tests against a scripted HTTP server on 127.0.0.1 that records every request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use setpoint_test_support::{HttpFake, Request as Seen, Response, closed_port};

use super::*;
use crate::client::proxied_artifact_path;

/// The method and path a request came with.
fn line(seen: &Seen) -> String {
    format!("{} {}", seen.method, seen.path())
}

/// Answers each request with `handler` (as `application/json`, whatever the body holds).
struct Scripted {
    uri: String,
    fake: HttpFake,
}

impl Scripted {
    fn start(handler: impl Fn(&Seen) -> (u16, String) + Send + Sync + 'static) -> Self {
        let fake = HttpFake::start(move |request| {
            let (status, body) = handler(request);
            Response::raw(status, "application/json", body)
        });
        Self {
            uri: fake.url().to_string(),
            fake,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.fake.requests()
    }

    fn lines(&self) -> Vec<String> {
        self.seen().iter().map(line).collect()
    }

    fn config(&self) -> MlflowConfig {
        let mut config = MlflowConfig::new(&self.uri);
        config.experiment = "exp".into();
        config.registered_model = "clf".into();
        config.timeout = Duration::from_secs(5);
        config.retries = 0;
        config
    }
}

fn not_found(what: &str) -> (u16, String) {
    (
        404,
        json!({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": format!("{what} not found")})
            .to_string(),
    )
}

fn ok(body: Value) -> (u16, String) {
    (200, body.to_string())
}

const RUN_ID: &str = "0123abcd";

/// A server that knows no experiment or model yet and accepts everything; `overrides` answers
/// first when it returns `Some`.
fn mlflow(
    artifact_uri: &'static str,
    overrides: impl Fn(&Seen) -> Option<(u16, String)> + Send + Sync + 'static,
) -> Scripted {
    let created = Arc::new(Mutex::new(false));
    Scripted::start(move |req| {
        if let Some(answer) = overrides(req) {
            return answer;
        }
        match (req.method.as_str(), req.path()) {
            ("GET", "/api/2.0/mlflow/experiments/get-by-name") => {
                if *created.lock().unwrap() {
                    ok(
                        json!({"experiment": {"experiment_id": "7", "name": "exp", "lifecycle_stage": "active"}}),
                    )
                } else {
                    not_found("experiment")
                }
            }
            ("POST", "/api/2.0/mlflow/experiments/create") => {
                *created.lock().unwrap() = true;
                ok(json!({"experiment_id": "7"}))
            }
            ("POST", "/api/2.0/mlflow/runs/create") => ok(json!({"run": {"info": {
                "run_id": RUN_ID, "experiment_id": "7", "status": "RUNNING",
                "artifact_uri": artifact_uri}, "data": {}}})),
            ("GET", "/api/2.0/mlflow/registered-models/get") => not_found("model"),
            ("POST", "/api/2.0/mlflow/model-versions/create") => {
                let body = req.json();
                ok(
                    json!({"model_version": {"name": body["name"], "version": "4",
                    "source": body["source"], "run_id": body["run_id"], "status": "READY"}}),
                )
            }
            _ => ok(json!({})),
        }
    })
}

fn training() -> TrainingRun {
    let mut run = TrainingRun {
        run_name: Some("weekly-2026-11".into()),
        model_path: "model".into(),
        model_hash: "sha256:ABCDEF0123456789abcdef0123456789abcdef0123456789".into(),
        artifacts: vec![
            Artifact::new("model/model.json", br#"{"trees":[]}"#.to_vec()),
            Artifact::new("report/metrics report.json", b"{}".to_vec()),
        ],
        ..TrainingRun::default()
    };
    run.params.insert("learning_rate".into(), "0.1".into());
    run.params.insert("max_depth".into(), "4".into());
    run.tags.insert("loop".into(), "weekly".into());
    run.metric("f1", 0.91).metric("loss", f64::NAN);
    run
}

#[tokio::test]
async fn logs_a_run_and_registers_its_model() {
    let server = mlflow("mlflow-artifacts:/7/0123abcd/artifacts", |_| None);
    let mut config = server.config();
    config.username = Some("alice".into());
    config.password = Some("s3cret".into());

    let logged = log_training(&config, &training()).await.unwrap();

    assert_eq!(
        logged,
        LoggedRun {
            experiment_id: "7".into(),
            run_id: RUN_ID.into(),
            registered_model: "clf".into(),
            model_version: "4".into(),
            alias: "setpoint-abcdef0123456789abcdef0123456789".into(),
            source: "mlflow-artifacts:/7/0123abcd/artifacts/model".into(),
            run_url: format!("{}/#/experiments/7/runs/{RUN_ID}", server.uri),
        }
    );
    assert_eq!(
        server.lines(),
        [
            "GET /api/2.0/mlflow/experiments/get-by-name",
            "POST /api/2.0/mlflow/experiments/create",
            "GET /api/2.0/mlflow/experiments/get-by-name",
            "POST /api/2.0/mlflow/runs/create",
            "POST /api/2.0/mlflow/runs/log-batch",
            "PUT /api/2.0/mlflow-artifacts/artifacts/7/0123abcd/artifacts/model/model.json",
            "PUT /api/2.0/mlflow-artifacts/artifacts/7/0123abcd/artifacts/report/metrics%20report.json",
            "GET /api/2.0/mlflow/registered-models/get",
            "POST /api/2.0/mlflow/registered-models/create",
            "POST /api/2.0/mlflow/model-versions/create",
            "POST /api/2.0/mlflow/registered-models/alias",
            "POST /api/2.0/mlflow/runs/update",
        ]
    );
    let seen = server.seen();
    // "alice:s3cret" in base64.
    assert!(
        seen.iter()
            .all(|r| r.header("authorization") == Some("Basic YWxpY2U6czNjcmV0")),
        "{seen:?}"
    );
    assert_eq!(
        seen[0].target.split_once('?').unwrap().1,
        "experiment_name=exp"
    );
    assert_eq!(seen[1].json(), json!({"name": "exp"}));

    let create = seen[3].json();
    assert_eq!(create["experiment_id"], "7");
    assert_eq!(create["run_name"], "weekly-2026-11");
    let tags = &create["tags"];
    assert!(
        tags.as_array()
            .unwrap()
            .contains(&json!({"key": "loop", "value": "weekly"}))
    );
    assert!(tags.as_array().unwrap().contains(
        &json!({"key": MODEL_HASH_TAG, "value": "sha256:ABCDEF0123456789abcdef0123456789abcdef0123456789"})
    ));

    let batch = seen[4].json();
    assert_eq!(batch["run_id"], RUN_ID);
    assert_eq!(
        batch["params"],
        json!([{"key": "learning_rate", "value": "0.1"}, {"key": "max_depth", "value": "4"}])
    );
    assert_eq!(batch["metrics"][0]["key"], "f1");
    assert_eq!(batch["metrics"][0]["value"], 0.91);
    assert!(batch["metrics"][0]["timestamp"].as_i64().unwrap() > 0);
    // serde_json would write NaN as null, which MLflow rejects.
    assert_eq!(batch["metrics"][1]["value"], "NaN");

    assert_eq!(seen[5].body, br#"{"trees":[]}"#);
    assert_eq!(
        seen[5].header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(seen[7].target.split_once('?').unwrap().1, "name=clf");
    assert_eq!(
        seen[9].json(),
        json!({"name": "clf", "source": "mlflow-artifacts:/7/0123abcd/artifacts/model",
               "run_id": RUN_ID, "tags": [{"key": MODEL_HASH_TAG,
               "value": "sha256:ABCDEF0123456789abcdef0123456789abcdef0123456789"}]})
    );
    assert_eq!(
        seen[10].json(),
        json!({"name": "clf", "alias": "setpoint-abcdef0123456789abcdef0123456789", "version": "4"})
    );
    let update = seen[11].json();
    assert_eq!(update["status"], "FINISHED");
    assert!(update["end_time"].as_i64().unwrap() > 0);
}

#[tokio::test]
async fn a_failed_upload_marks_the_run_failed_after_retrying() {
    let server = mlflow("mlflow-artifacts:/7/0123abcd/artifacts", |req| {
        (req.method == "PUT").then(|| {
            (
                503,
                json!({"error_code": "TEMPORARILY_UNAVAILABLE", "message": "disk full"})
                    .to_string(),
            )
        })
    });
    let mut config = server.config();
    config.retries = 1;

    let err = log_training(&config, &training()).await.unwrap_err();

    let MlflowError::RunFailed {
        run_id,
        step,
        source,
        mark_failed_error,
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(run_id, RUN_ID);
    assert_eq!(step, "uploading model/model.json");
    assert!(mark_failed_error.is_none());
    assert_eq!(err.error_code(), Some("TEMPORARILY_UNAVAILABLE"));
    let MlflowError::Api {
        method,
        url,
        status,
        message,
        ..
    } = source.as_ref()
    else {
        panic!("{source:?}")
    };
    assert_eq!(
        (*method, *status, message.as_str()),
        ("PUT", 503, "disk full")
    );
    assert_eq!(
        url,
        &format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/7/0123abcd/artifacts/model/model.json",
            server.uri
        )
    );
    let text = err.to_string();
    assert!(
        text.contains("TEMPORARILY_UNAVAILABLE: disk full"),
        "{text}"
    );
    assert!(text.contains(&server.uri), "{text}");

    let lines = server.lines();
    let puts = lines.iter().filter(|l| l.starts_with("PUT")).count();
    assert_eq!(puts, 2, "one retry of a 503: {lines:?}");
    assert!(
        !lines.iter().any(|l| l.contains("model-versions")),
        "{lines:?}"
    );
    let last = server.seen().pop().unwrap();
    assert_eq!(line(&last), "POST /api/2.0/mlflow/runs/update");
    assert_eq!(last.json()["status"], "FAILED");
}

#[tokio::test]
async fn artifacts_outside_the_proxy_fail_the_run() {
    let server = mlflow("s3://bucket/7/0123abcd/artifacts", |_| None);
    let err = log_training(&server.config(), &training())
        .await
        .unwrap_err();
    let MlflowError::RunFailed { source, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(
        matches!(source.as_ref(), MlflowError::ArtifactsNotProxied { artifact_uri, .. } if artifact_uri.starts_with("s3://")),
        "{source:?}"
    );
    let last = server.seen().pop().unwrap();
    assert_eq!(last.json()["status"], "FAILED");
}

#[tokio::test]
async fn a_failure_to_mark_the_run_failed_is_reported_too() {
    let server = mlflow("mlflow-artifacts:/7/0123abcd/artifacts", |req| {
        match req.path() {
            "/api/2.0/mlflow/runs/log-batch" => Some((
                400,
                json!({"error_code": "INVALID_PARAMETER_VALUE", "message": "bad metric"})
                    .to_string(),
            )),
            "/api/2.0/mlflow/runs/update" => Some((500, "<html>oops</html>".into())),
            _ => None,
        }
    });
    let err = log_training(&server.config(), &training())
        .await
        .unwrap_err();
    let MlflowError::RunFailed {
        step,
        mark_failed_error: Some(mark),
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(step, "logging batch 1 of 1");
    assert_eq!(err.error_code(), Some("INVALID_PARAMETER_VALUE"));
    assert_eq!(mark.error_code(), Some("HTTP_ERROR"));
    assert!(err.to_string().contains("<html>oops</html>"), "{err}");
}

#[tokio::test]
async fn a_concurrently_created_experiment_is_used() {
    let taken = Arc::new(Mutex::new(false));
    let server = mlflow(
        "mlflow-artifacts:/7/0123abcd/artifacts",
        move |req| match req.path() {
            "/api/2.0/mlflow/experiments/create" => {
                *taken.lock().unwrap() = true;
                Some((
                    400,
                    json!({"error_code": "RESOURCE_ALREADY_EXISTS", "message": "exists"})
                        .to_string(),
                ))
            }
            "/api/2.0/mlflow/experiments/get-by-name" if *taken.lock().unwrap() => Some(ok(
                json!({"experiment": {"experiment_id": "9", "name": "exp"}}),
            )),
            _ => None,
        },
    );
    let client = MlflowClient::new(&server.config(), Credentials::None).unwrap();
    let experiment = client.get_or_create_experiment("exp").await.unwrap();
    assert_eq!(experiment.experiment_id, "9");
}

#[tokio::test]
async fn a_refused_experiment_creation_keeps_mlflows_reason() {
    let server = mlflow("mlflow-artifacts:/7/0123abcd/artifacts", |req| {
        (req.path() == "/api/2.0/mlflow/experiments/create").then(|| {
            (
                403,
                json!({"error_code": "PERMISSION_DENIED", "message": "no create"}).to_string(),
            )
        })
    });
    let err = log_training(&server.config(), &training())
        .await
        .unwrap_err();
    assert_eq!(err.error_code(), Some("PERMISSION_DENIED"), "{err}");
    assert!(err.to_string().contains("experiments/create"), "{err}");
    assert_eq!(server.lines().len(), 2);
}

#[tokio::test]
async fn a_deleted_experiment_is_refused() {
    let server = Scripted::start(|_| {
        ok(
            json!({"experiment": {"experiment_id": "3", "name": "exp", "lifecycle_stage": "deleted"}}),
        )
    });
    let err = log_training(&server.config(), &training())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is deleted"), "{err}");
    assert_eq!(server.lines().len(), 1);
}

#[tokio::test]
async fn bearer_token_and_non_json_errors() {
    let server = Scripted::start(|_| (502, "Bad Gateway".into()));
    let client = MlflowClient::new(
        &server.config(),
        Credentials::Bearer {
            token: "t0k".into(),
        },
    )
    .unwrap();
    let err = client.get_run("r1").await.unwrap_err();
    let MlflowError::Api {
        method,
        url,
        status,
        error_code,
        message,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        (*method, *status, error_code.as_str(), message.as_str()),
        ("GET", 502, "HTTP_ERROR", "Bad Gateway")
    );
    assert_eq!(
        url,
        &format!("{}/api/2.0/mlflow/runs/get?run_id=r1", server.uri)
    );
    assert_eq!(server.seen()[0].header("authorization"), Some("Bearer t0k"));
}

#[tokio::test]
async fn an_unexpected_body_names_the_endpoint() {
    let server = Scripted::start(|_| ok(json!({"nope": 1})));
    let client = MlflowClient::new(&server.config(), Credentials::None).unwrap();
    let err = client.create_experiment("exp").await.unwrap_err();
    assert!(
        matches!(&err, MlflowError::UnexpectedResponse { method: "POST", url, .. } if url.ends_with("/api/2.0/mlflow/experiments/create")),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_unreachable_server_is_a_transport_error() {
    let port = closed_port().port();
    let mut config = MlflowConfig::new(format!("http://127.0.0.1:{port}/prefix/"));
    config.retries = 0;
    let client = MlflowClient::new(&config, Credentials::None).unwrap();
    let err = client.get_experiment_by_name("exp").await.unwrap_err();
    let MlflowError::Transport { method, url, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*method, "GET");
    assert_eq!(
        url,
        &format!(
            "http://127.0.0.1:{port}/prefix/api/2.0/mlflow/experiments/get-by-name?experiment_name=exp"
        )
    );
}

#[tokio::test]
async fn an_invalid_run_sends_nothing() {
    let server = Scripted::start(|_| ok(json!({})));
    let mut run = training();
    run.params.insert("bad key!".into(), "1".into());
    run.params.insert("a//b".into(), "1".into());
    run.tags.insert("mlflow.user".into(), "x".into());
    run.artifacts.push(Artifact::new("../escape", Vec::new()));
    run.model_path = "models".into();
    run.model_hash = "::".into();
    let err = log_training(&server.config(), &run).await.unwrap_err();
    let MlflowError::InvalidRun { problems } = &err else {
        panic!("{err:?}")
    };
    let joined = problems.join("\n");
    for expected in [
        "\"a//b\" is not a normalised path",
        "\"bad key!\" has '!'",
        "\"mlflow.user\" is reserved",
        "\"../escape\" must not have empty, . or .. parts",
        "model_path: \"models\" is none of the artifacts",
        "model_hash: \"::\" has no letters or digits",
    ] {
        assert!(joined.contains(expected), "{expected} in {joined}");
    }
    assert!(server.seen().is_empty());
}

#[test]
fn long_values_are_cut_to_mlflows_limits() {
    let mut run = training();
    run.params.insert("long".into(), "é".repeat(7000));
    run.tags.insert("note".into(), "x".repeat(9000));
    let prepared = prepare(&run).unwrap();
    let long = prepared.params.iter().find(|p| p.key == "long").unwrap();
    assert_eq!(long.value.chars().count(), MAX_PARAM_VALUE_LENGTH);
    let note = prepared.tags.iter().find(|t| t.key == "note").unwrap();
    assert_eq!(note.value.len(), MAX_TAG_VALUE_LENGTH);
}

#[test]
fn batches_respect_mlflows_limits() {
    let params: Vec<KeyValue> = (0..250)
        .map(|i| KeyValue::new(format!("p{i}"), "v"))
        .collect();
    let metrics: Vec<Metric> = (0..2500)
        .map(|i| Metric {
            key: "loss".into(),
            value: 1.0,
            timestamp: 1,
            step: i,
        })
        .collect();
    let sizes: Vec<(usize, usize)> = log_batches(&params, &metrics)
        .iter()
        .map(|b| (b.params.len(), b.metrics.len()))
        .collect();
    assert_eq!(sizes, [(100, 900), (100, 900), (50, 700)]);
    let steps: Vec<i64> = log_batches(&params, &metrics)
        .iter()
        .flat_map(|b| b.metrics.iter().map(|m| m.step))
        .collect();
    assert_eq!(steps, (0..2500).collect::<Vec<_>>());
    assert_eq!(log_batches(&[], &[]), []);
    assert_eq!(log_batches(&params[..3], &[]).len(), 1);
}

#[test]
fn proxied_artifact_paths() {
    assert_eq!(
        proxied_artifact_path("mlflow-artifacts:/1/abc/artifacts"),
        Some("1/abc/artifacts")
    );
    assert_eq!(
        proxied_artifact_path("mlflow-artifacts://host:5000/1/abc/artifacts/"),
        Some("1/abc/artifacts")
    );
    assert_eq!(proxied_artifact_path("s3://bucket/1"), None);
    assert_eq!(proxied_artifact_path("file:///tmp/mlruns/1"), None);
}

#[test]
fn aliases_from_hashes() {
    assert_eq!(prepared_alias("sha256:ABCdef12"), "setpoint-abcdef12");
    assert_eq!(
        prepared_alias(&"f".repeat(64)),
        format!("setpoint-{}", "f".repeat(32))
    );
}
