//! Logs setpoint's training runs to MLflow and registers the trained model as a model version.
//!
//! Teams that already run MLflow for their model lifecycle see setpoint's classifiers next to
//! their other models: each `setpoint train` becomes an MLflow run (parameters, metrics, the
//! model file and its report as artifacts) and a new version of a registered model, aliased by
//! the model's content hash so a deployed model can be traced back to its run.
//!
//! Only MLflow's REST API is used (no Python, no MLflow client library): the tracking server
//! must serve artifacts itself (`mlflow server` does by default since 2.0, with
//! `--artifacts-destination` choosing where they land), because uploads go through its
//! artifact proxy rather than to a bucket this engine would need credentials for.
//!
//! [`log_training`] does everything in one call; [`MlflowClient`] has one method per endpoint
//! for callers that need less or more.
//!
//! # Configuration
//!
//! [`MlflowConfig`] is the `mlflow:` section of the engine's YAML config:
//!
//! ```yaml
//! mlflow:
//!   tracking_uri: http://127.0.0.1:5000   # required; http(s) only
//!   experiment: setpoint                  # default; created if absent
//!   registered_model: setpoint-classifier # default; created if absent
//!   timeout: 30s                          # per request, uploads included
//!   retries: 3                            # of idempotent requests only
//! ```
//!
//! Credentials come, as in MLflow's own clients, from `MLFLOW_TRACKING_USERNAME` and
//! `MLFLOW_TRACKING_PASSWORD` (basic auth) or `MLFLOW_TRACKING_TOKEN` (bearer); `username`,
//! `password` and `token` in the config win over them.
//!
//! # What a run holds
//!
//! - tags: `mlflow.source.name = setpoint`, `mlflow.source.type = JOB`,
//!   `setpoint.model_hash = <hash>`, plus the run's own;
//! - params and metrics, sent in batches within MLflow's limits (100 params and 1,000 metrics per
//!   request); a param value longer than 6,000 characters or a tag value longer than 8,000 is
//!   cut to that length, as MLflow's own clients do;
//! - artifacts at their paths under the run's artifact root;
//! - status `FINISHED`, or `FAILED` if any step after the run's creation failed (the error says
//!   which step, and the run is never left `RUNNING` unless marking it failed failed too).
//!
//! The model version's source is the run's artifact URI of `model_path`; it is tagged
//! `setpoint.model_hash`, and the alias `setpoint-<hash>` (its first 32 alphanumerics) points at it.

mod client;
mod config;
mod error;

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

pub use client::{
    Experiment, FileInfo, KeyValue, Metric, MlflowClient, ModelVersion, Run, RunData, RunInfo,
    RunStatus,
};
pub use config::{Credentials, ENV_PASSWORD, ENV_TOKEN, ENV_USERNAME, MlflowConfig};
pub use error::{MlflowError, Result};

/// Most params in one `log-batch` request.
pub const MAX_PARAMS_PER_BATCH: usize = 100;
/// Most metrics in one `log-batch` request.
pub const MAX_METRICS_PER_BATCH: usize = 1000;
/// Most params, metrics and tags together in one `log-batch` request.
pub const MAX_ENTITIES_PER_BATCH: usize = 1000;
/// Longest param value, in characters; longer ones are cut.
pub const MAX_PARAM_VALUE_LENGTH: usize = 6000;
/// Longest run tag value, in characters; longer ones are cut.
pub const MAX_TAG_VALUE_LENGTH: usize = 8000;
/// Longest param, metric or tag key, in characters.
pub const MAX_KEY_LENGTH: usize = 250;

/// The tag, on the run and on the model version, holding the model's content hash.
pub const MODEL_HASH_TAG: &str = "setpoint.model_hash";

/// A file to store with the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// Path under the run's artifact root, `/`-separated (`model/model.json`).
    pub path: String,
    /// Its content.
    pub bytes: Vec<u8>,
}

impl Artifact {
    /// An artifact at `path`.
    pub fn new(path: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            path: path.into(),
            bytes: bytes.into(),
        }
    }
}

/// What one training produced, to log as one MLflow run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrainingRun {
    /// The run's display name (MLflow makes one up when `None`).
    pub run_name: Option<String>,
    /// Hyper-parameters and data facts (training window, row count).
    pub params: BTreeMap<String, String>,
    /// Metrics; several values of one key at different steps make a curve.
    pub metrics: Vec<Metric>,
    /// Files to upload: the model, its report.
    pub artifacts: Vec<Artifact>,
    /// The artifact (or artifact directory) that is the model: the model version points at it.
    pub model_path: String,
    /// The model's content hash (e.g. the hex SHA-256 of its JSON), for the tag and the alias.
    pub model_hash: String,
    /// Extra run tags.
    pub tags: BTreeMap<String, String>,
}

impl TrainingRun {
    /// Adds a final metric (step 0), timestamped when logged.
    pub fn metric(&mut self, key: impl Into<String>, value: f64) -> &mut Self {
        self.metrics.push(Metric {
            key: key.into(),
            value,
            timestamp: 0,
            step: 0,
        });
        self
    }
}

/// Where a training run went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRun {
    /// The experiment.
    pub experiment_id: String,
    /// The run.
    pub run_id: String,
    /// The registered model.
    pub registered_model: String,
    /// The new model version (`"3"`).
    pub model_version: String,
    /// The alias that points at it.
    pub alias: String,
    /// The model version's source (the model's artifact URI).
    pub source: String,
    /// The run's page in the MLflow UI.
    pub run_url: String,
}

/// Logs `run` to the tracking server of `config` and registers its model; credentials come from
/// the config, else from the process environment (see [`MlflowConfig::credentials`]).
pub async fn log_training(config: &MlflowConfig, run: &TrainingRun) -> Result<LoggedRun> {
    let credentials = config.credentials(|name| std::env::var(name).ok());
    let client = MlflowClient::new(config, credentials)?;
    log_training_with(&client, config, run).await
}

/// [`log_training`] with a client of the caller's.
pub async fn log_training_with(
    client: &MlflowClient,
    config: &MlflowConfig,
    run: &TrainingRun,
) -> Result<LoggedRun> {
    // Checked before anything is created, so a bad run leaves no trace on the server.
    let prepared = prepare(run)?;
    let experiment = client.get_or_create_experiment(&config.experiment).await?;
    let info = client
        .create_run(
            &experiment.experiment_id,
            run.run_name.as_deref(),
            now_ms(),
            &prepared.tags,
        )
        .await?;
    let run_url = client.run_url(&experiment.experiment_id, &info.run_id);
    tracing::info!(run_id = %info.run_id, %run_url, "MLflow run created");

    match fill_and_register(client, config, &info, run, prepared).await {
        Ok((version, source)) => {
            // Ended last: a FINISHED run always has its registered version.
            client
                .update_run(&info.run_id, RunStatus::Finished, now_ms())
                .await
                .map_err(|e| MlflowError::RunFailed {
                    run_id: info.run_id.clone(),
                    run_url: run_url.clone(),
                    step: "marking the run FINISHED".into(),
                    source: Box::new(e),
                    mark_failed_error: None,
                })?;
            Ok(LoggedRun {
                experiment_id: experiment.experiment_id,
                run_id: info.run_id,
                registered_model: config.registered_model.clone(),
                model_version: version,
                alias: prepared_alias(&run.model_hash),
                source,
                run_url,
            })
        }
        Err((step, error)) => {
            let mark_failed_error = client
                .update_run(&info.run_id, RunStatus::Failed, now_ms())
                .await
                .err()
                .map(Box::new);
            Err(MlflowError::RunFailed {
                run_id: info.run_id,
                run_url,
                step,
                source: Box::new(error),
                mark_failed_error,
            })
        }
    }
}

/// Everything after the run's creation; an error comes with the step that failed.
async fn fill_and_register(
    client: &MlflowClient,
    config: &MlflowConfig,
    info: &RunInfo,
    run: &TrainingRun,
    prepared: Prepared,
) -> std::result::Result<(String, String), (String, MlflowError)> {
    let batches = log_batches(&prepared.params, &prepared.metrics);
    let count = batches.len();
    for (i, batch) in batches.into_iter().enumerate() {
        client
            .log_batch(&info.run_id, batch.params, batch.metrics, &[])
            .await
            .map_err(|e| (format!("logging batch {} of {count}", i + 1), e))?;
    }
    for artifact in &run.artifacts {
        client
            .upload_artifact(info, &artifact.path, artifact.bytes.clone())
            .await
            .map_err(|e| (format!("uploading {}", artifact.path), e))?;
    }

    let model = &config.registered_model;
    client
        .ensure_registered_model(model)
        .await
        .map_err(|e| (format!("creating registered model {model}"), e))?;
    let source = format!(
        "{}/{}",
        info.artifact_uri.trim_end_matches('/'),
        run.model_path.trim_end_matches('/')
    );
    let tags = [KeyValue::new(MODEL_HASH_TAG, run.model_hash.as_str())];
    let version = client
        .create_model_version(model, &source, &info.run_id, &tags)
        .await
        .map_err(|e| (format!("creating a version of {model}"), e))?;
    let alias = prepared_alias(&run.model_hash);
    client
        .set_alias(model, &alias, &version.version)
        .await
        .map_err(|e| {
            (
                format!("setting alias {alias} on {model} v{}", version.version),
                e,
            )
        })?;
    Ok((version.version, source))
}

/// The run, checked and cut to MLflow's limits.
#[derive(Debug)]
struct Prepared {
    params: Vec<KeyValue>,
    metrics: Vec<Metric>,
    tags: Vec<KeyValue>,
}

fn prepare(run: &TrainingRun) -> Result<Prepared> {
    let mut problems = Vec::new();
    let now = now_ms();

    for key in run.params.keys() {
        check_key("params", key, &mut problems);
    }
    for metric in &run.metrics {
        check_key("metrics", &metric.key, &mut problems);
    }
    for key in run.tags.keys() {
        check_key("tags", key, &mut problems);
        if key.starts_with("mlflow.") || key == MODEL_HASH_TAG {
            problems.push(format!("tags: {key:?} is reserved"));
        }
    }
    if run.artifacts.is_empty() {
        problems.push("artifacts: none; the model at least is needed".into());
    }
    for artifact in &run.artifacts {
        if let Err(why) = check_path(&artifact.path) {
            problems.push(format!("artifacts: {:?} {why}", artifact.path));
        }
    }
    let model_path = run.model_path.trim_end_matches('/');
    match check_path(model_path) {
        Err(why) => problems.push(format!("model_path: {:?} {why}", run.model_path)),
        Ok(()) => {
            let dir = format!("{model_path}/");
            if !run
                .artifacts
                .iter()
                .any(|a| a.path == model_path || a.path.starts_with(&dir))
            {
                problems.push(format!(
                    "model_path: {:?} is none of the artifacts, nor a directory of them",
                    run.model_path
                ));
            }
        }
    }
    if run.model_hash.trim().is_empty() {
        problems.push("model_hash: must not be empty".into());
    } else if alias_suffix(&run.model_hash).is_empty() {
        problems.push(format!(
            "model_hash: {:?} has no letters or digits for the alias",
            run.model_hash
        ));
    }
    if !problems.is_empty() {
        return Err(MlflowError::InvalidRun { problems });
    }

    let params = run
        .params
        .iter()
        .map(|(k, v)| KeyValue::new(k, cut("param", k, v, MAX_PARAM_VALUE_LENGTH)))
        .collect();
    let metrics = run
        .metrics
        .iter()
        .map(|m| Metric {
            timestamp: if m.timestamp == 0 { now } else { m.timestamp },
            ..m.clone()
        })
        .collect();
    let mut tags = vec![
        KeyValue::new("mlflow.source.name", "setpoint"),
        KeyValue::new("mlflow.source.type", "JOB"),
        KeyValue::new(
            MODEL_HASH_TAG,
            cut("tag", MODEL_HASH_TAG, &run.model_hash, MAX_TAG_VALUE_LENGTH),
        ),
    ];
    tags.extend(
        run.tags
            .iter()
            .map(|(k, v)| KeyValue::new(k, cut("tag", k, v, MAX_TAG_VALUE_LENGTH))),
    );
    Ok(Prepared {
        params,
        metrics,
        tags,
    })
}

/// MLflow's rule for param, metric and tag keys: letters, digits, `_ - . : / ` and space, at
/// most 250 characters, and already a normal path (`a//b`, `./a`, `a/` are refused).
fn check_key(what: &str, key: &str, problems: &mut Vec<String>) {
    if key.is_empty() {
        problems.push(format!("{what}: an empty key"));
    } else if key.chars().count() > MAX_KEY_LENGTH {
        problems.push(format!(
            "{what}: {key:?} is longer than {MAX_KEY_LENGTH} characters"
        ));
    } else if let Some(c) = key
        .chars()
        .find(|c| !(c.is_alphanumeric() || "_-.:/ ".contains(*c)))
    {
        problems.push(format!(
            "{what}: {key:?} has {c:?}; keys may only hold letters, digits, and _ - . : / space"
        ));
    } else if key.split('/').enumerate().any(|(i, part)| {
        part == "." || part == ".." || (part.is_empty() && !(i == 0 && key.len() > 1))
    }) {
        problems.push(format!("{what}: {key:?} is not a normalised path"));
    }
}

/// An artifact path must stay inside the run's artifact root.
fn check_path(path: &str) -> std::result::Result<(), &'static str> {
    if path.is_empty() {
        return Err("is empty");
    }
    if path.starts_with('/') || path.contains('\\') {
        return Err("must be relative and /-separated");
    }
    if path
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err("must not have empty, . or .. parts");
    }
    Ok(())
}

/// `value`, cut to `max` characters (with a warning), as MLflow's clients do.
fn cut(what: &str, key: &str, value: &str, max: usize) -> String {
    match value.char_indices().nth(max) {
        None => value.to_string(),
        Some((end, _)) => {
            tracing::warn!(
                key,
                length = value.chars().count(),
                "MLflow {what} value cut to {max} characters"
            );
            value[..end].to_string()
        }
    }
}

/// The hash's alphanumerics, at most 32: aliases allow only `[A-Za-z0-9_-]`, and 128 bits
/// identify a model well enough.
fn alias_suffix(hash: &str) -> String {
    hash.rsplit(':')
        .next()
        .unwrap_or(hash)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(32)
        .collect::<String>()
        .to_ascii_lowercase()
}

fn prepared_alias(hash: &str) -> String {
    format!("setpoint-{}", alias_suffix(hash))
}

/// One `log-batch` request's share of the params and metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Batch<'a> {
    /// Its params (at most [`MAX_PARAMS_PER_BATCH`]).
    pub params: &'a [KeyValue],
    /// Its metrics (at most [`MAX_METRICS_PER_BATCH`], and with the params at most
    /// [`MAX_ENTITIES_PER_BATCH`]).
    pub metrics: &'a [Metric],
}

/// Splits params and metrics into as few `log-batch` requests as MLflow's limits allow, in
/// order (a metric's curve keeps its order across requests).
pub fn log_batches<'a>(params: &'a [KeyValue], metrics: &'a [Metric]) -> Vec<Batch<'a>> {
    let mut batches = Vec::new();
    let (mut params, mut metrics) = (params, metrics);
    while !params.is_empty() || !metrics.is_empty() {
        let p = params.len().min(MAX_PARAMS_PER_BATCH);
        let m = metrics
            .len()
            .min(MAX_METRICS_PER_BATCH)
            .min(MAX_ENTITIES_PER_BATCH - p);
        let (batch_params, rest_params) = params.split_at(p);
        let (batch_metrics, rest_metrics) = metrics.split_at(m);
        batches.push(Batch {
            params: batch_params,
            metrics: batch_metrics,
        });
        params = rest_params;
        metrics = rest_metrics;
    }
    batches
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
