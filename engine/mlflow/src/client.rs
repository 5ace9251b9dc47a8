//! One method per MLflow REST endpoint that setpoint uses, and the wire types they carry.
//!
//! The methods are thin on purpose: [`crate::log_training`] composes them, and a caller with
//! other needs (reading back which version an alias points at, say) can use them directly.

use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Value, json};
use setpoint_retry::RetryPolicy;

use crate::config::{Credentials, MlflowConfig};
use crate::error::{MlflowError, Result};

/// An experiment.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Experiment {
    /// Its id (a decimal string on the open-source server).
    pub experiment_id: String,
    /// Its name.
    pub name: String,
    /// Where its runs' artifacts go, e.g. `mlflow-artifacts:/1`.
    #[serde(default)]
    pub artifact_location: String,
    /// `active` or `deleted`.
    #[serde(default)]
    pub lifecycle_stage: String,
}

/// A run's identity and state.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RunInfo {
    /// Its id.
    pub run_id: String,
    /// Its experiment.
    pub experiment_id: String,
    /// Its display name.
    #[serde(default)]
    pub run_name: String,
    /// `RUNNING`, `FINISHED`, `FAILED`, …
    #[serde(default)]
    pub status: String,
    /// Root of its artifacts, e.g. `mlflow-artifacts:/1/<run_id>/artifacts`.
    #[serde(default)]
    pub artifact_uri: String,
}

/// A run with what was logged to it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Run {
    /// Identity and state.
    pub info: RunInfo,
    /// Params, latest metrics and tags.
    #[serde(default)]
    pub data: RunData,
}

/// What was logged to a run.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct RunData {
    /// The latest value of each metric.
    #[serde(default)]
    pub metrics: Vec<Metric>,
    /// Parameters.
    #[serde(default)]
    pub params: Vec<KeyValue>,
    /// Tags, MLflow's own (`mlflow.*`) included.
    #[serde(default)]
    pub tags: Vec<KeyValue>,
}

impl RunData {
    /// The value of parameter `key`.
    pub fn param(&self, key: &str) -> Option<&str> {
        find(&self.params, key)
    }

    /// The value of tag `key`.
    pub fn tag(&self, key: &str) -> Option<&str> {
        find(&self.tags, key)
    }

    /// The latest value of metric `key`.
    pub fn metric(&self, key: &str) -> Option<f64> {
        self.metrics.iter().find(|m| m.key == key).map(|m| m.value)
    }
}

fn find<'a>(pairs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|p| p.key == key)
        .map(|p| p.value.as_str())
}

/// A parameter or tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    /// Its key.
    pub key: String,
    /// Its value.
    #[serde(default)]
    pub value: String,
}

impl KeyValue {
    /// A pair.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// One metric value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    /// Its key.
    pub key: String,
    /// Its value; NaN and infinities travel as protobuf's JSON strings.
    #[serde(serialize_with = "ser_f64", deserialize_with = "de_f64")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[serde(default, deserialize_with = "de_i64")]
    pub timestamp: i64,
    /// Training step (boosting round, epoch); 0 for a final metric.
    #[serde(default, deserialize_with = "de_i64")]
    pub step: i64,
}

/// An artifact in a run's listing.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FileInfo {
    /// Path relative to the run's artifact root.
    pub path: String,
    /// Whether it is a directory.
    #[serde(default)]
    pub is_dir: bool,
    /// Size in bytes (absent for directories).
    #[serde(default, deserialize_with = "de_opt_i64")]
    pub file_size: Option<i64>,
}

/// A registered model version.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ModelVersion {
    /// The registered model.
    pub name: String,
    /// The version, a decimal string (`"3"`).
    pub version: String,
    /// Where its files are.
    #[serde(default)]
    pub source: String,
    /// The run that produced it.
    #[serde(default)]
    pub run_id: String,
    /// `READY`, `PENDING_REGISTRATION` or `FAILED_REGISTRATION`.
    #[serde(default)]
    pub status: String,
    /// Its tags.
    #[serde(default)]
    pub tags: Vec<KeyValue>,
    /// Aliases that point at it.
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Everything was logged.
    Finished,
    /// Something failed part-way.
    Failed,
}

impl RunStatus {
    fn as_str(self) -> &'static str {
        match self {
            RunStatus::Finished => "FINISHED",
            RunStatus::Failed => "FAILED",
        }
    }
}

// Protobuf's JSON mapping spells non-finite doubles as strings; serde_json would write `null`.
fn ser_f64<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    if value.is_nan() {
        serializer.serialize_str("NaN")
    } else if *value == f64::INFINITY {
        serializer.serialize_str("Infinity")
    } else if *value == f64::NEG_INFINITY {
        serializer.serialize_str("-Infinity")
    } else {
        serializer.serialize_f64(*value)
    }
}

fn de_f64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| serde::de::Error::custom("number out of range")),
        Value::String(s) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            other => other.parse().map_err(serde::de::Error::custom),
        },
        other => Err(serde::de::Error::custom(format!(
            "expected a number, got {other}"
        ))),
    }
}

// Protobuf's JSON mapping may spell int64 as a string; MLflow's server writes numbers.
fn de_opt_i64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom("expected an integer")),
        Value::String(s) => s.parse().map(Some).map_err(serde::de::Error::custom),
        other => Err(serde::de::Error::custom(format!(
            "expected an integer, got {other}"
        ))),
    }
}

fn de_i64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    de_opt_i64(deserializer).map(Option::unwrap_or_default)
}

/// MLflow's JSON error body.
#[derive(Debug, Deserialize)]
struct ApiErrorBody {
    error_code: String,
    #[serde(default)]
    message: String,
}

/// Whether a failed request may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Idempotent: reads, uploads to a fixed path, status updates.
    Safe,
    /// Creates something: a repeat after a lost answer would create it twice.
    Never,
}

/// How a request that is safe to repeat is retried: backoff doubling from 200 ms up to 5 s,
/// `retries` retries, and a deadline of what those attempts and waits may take at most.
fn retry_policy(config: &MlflowConfig) -> RetryPolicy {
    RetryPolicy::new(Duration::from_millis(200), Duration::from_secs(5), 1)
        .with_retries(config.retries)
        .with_request_deadline(config.timeout)
}

/// A failed attempt, and whether another attempt may help.
struct Failed {
    error: MlflowError,
    transient: bool,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

/// A client of one MLflow tracking server.
#[derive(Debug, Clone)]
pub struct MlflowClient {
    base: String,
    http: reqwest::Client,
    credentials: Credentials,
    /// How a request that is safe to repeat is retried.
    retry: RetryPolicy,
}

impl MlflowClient {
    /// A client for `config` that authenticates with `credentials` (see
    /// [`MlflowConfig::credentials`]); fails on an invalid config.
    pub fn new(config: &MlflowConfig, credentials: Credentials) -> Result<Self> {
        config.validate()?;
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| MlflowError::InvalidConfig {
                problems: vec![format!("cannot build the HTTP client: {e}")],
            })?;
        Ok(Self {
            // Credentials in the URI are in `credentials`: the base never shows them.
            base: setpoint_secret::split_url_credentials(config.tracking_uri.trim())
                .0
                .trim_end_matches('/')
                .to_string(),
            http,
            credentials,
            retry: retry_policy(config),
        })
    }

    /// The tracking server's base URL, without a trailing slash.
    pub fn tracking_uri(&self) -> &str {
        &self.base
    }

    /// The run's page in the MLflow UI.
    pub fn run_url(&self, experiment_id: &str, run_id: &str) -> String {
        format!("{}/#/experiments/{experiment_id}/runs/{run_id}", self.base)
    }

    /// The experiment called `name`, if there is one.
    pub async fn get_experiment_by_name(&self, name: &str) -> Result<Option<Experiment>> {
        #[derive(Deserialize)]
        struct Answer {
            experiment: Experiment,
        }
        let url = self.url(
            &["mlflow", "experiments", "get-by-name"],
            &[("experiment_name", name)],
        )?;
        match self
            .call::<Answer>(Method::GET, url, None, Retry::Safe)
            .await
        {
            Ok(answer) => Ok(Some(answer.experiment)),
            Err(e) if e.error_code() == Some("RESOURCE_DOES_NOT_EXIST") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates the experiment `name`; returns its id.
    pub async fn create_experiment(&self, name: &str) -> Result<String> {
        #[derive(Deserialize)]
        struct Answer {
            experiment_id: String,
        }
        let url = self.url(&["mlflow", "experiments", "create"], &[])?;
        let answer: Answer = self
            .call(
                Method::POST,
                url,
                Some(json!({ "name": name })),
                Retry::Never,
            )
            .await?;
        Ok(answer.experiment_id)
    }

    /// The experiment called `name`, created if absent (a concurrent creation is tolerated).
    pub async fn get_or_create_experiment(&self, name: &str) -> Result<Experiment> {
        if let Some(experiment) = self.get_experiment_by_name(name).await? {
            return self.usable(experiment);
        }
        match self.create_experiment(name).await {
            Ok(_) => {}
            Err(e) if e.error_code() == Some("RESOURCE_ALREADY_EXISTS") => {}
            Err(e) => return Err(e),
        }
        // Read back rather than trust the creation: another trainer may have won the race
        // (RESOURCE_ALREADY_EXISTS), and the read gives the artifact location either way.
        match self.get_experiment_by_name(name).await? {
            Some(experiment) => self.usable(experiment),
            None => Err(MlflowError::UnexpectedResponse {
                method: "GET",
                url: format!("{}/api/2.0/mlflow/experiments/get-by-name", self.base),
                message: format!("experiment {name:?} is still absent after creating it"),
            }),
        }
    }

    fn usable(&self, experiment: Experiment) -> Result<Experiment> {
        if experiment.lifecycle_stage == "deleted" {
            // MLflow keeps a deleted experiment's name reserved; logging to it would fail later
            // with a less helpful message.
            return Err(MlflowError::InvalidConfig {
                problems: vec![format!(
                    "mlflow.experiment: {:?} (id {}) is deleted; restore it or choose another name",
                    experiment.name, experiment.experiment_id
                )],
            });
        }
        Ok(experiment)
    }

    /// Starts a run in `experiment_id`.
    pub async fn create_run(
        &self,
        experiment_id: &str,
        run_name: Option<&str>,
        start_time_ms: i64,
        tags: &[KeyValue],
    ) -> Result<RunInfo> {
        #[derive(Deserialize)]
        struct Answer {
            run: Run,
        }
        let url = self.url(&["mlflow", "runs", "create"], &[])?;
        let mut body = json!({
            "experiment_id": experiment_id,
            "start_time": start_time_ms,
            "tags": tags,
        });
        if let Some(name) = run_name {
            body["run_name"] = json!(name);
        }
        let answer: Answer = self
            .call(Method::POST, url, Some(body), Retry::Never)
            .await?;
        Ok(answer.run.info)
    }

    /// Logs one batch as it is; the caller keeps within MLflow's per-request limits (see
    /// [`crate::log_batches`], which splits for them).
    pub async fn log_batch(
        &self,
        run_id: &str,
        params: &[KeyValue],
        metrics: &[Metric],
        tags: &[KeyValue],
    ) -> Result<()> {
        let url = self.url(&["mlflow", "runs", "log-batch"], &[])?;
        let body = json!({ "run_id": run_id, "params": params, "metrics": metrics, "tags": tags });
        // Repeating a batch is harmless: an equal param is accepted again, a metric point is
        // keyed by (key, timestamp, step, value).
        self.call::<Value>(Method::POST, url, Some(body), Retry::Safe)
            .await
            .map(drop)
    }

    /// Uploads `bytes` to `path` under the run's artifact root, through the tracking server's
    /// artifact proxy.
    pub async fn upload_artifact(&self, run: &RunInfo, path: &str, bytes: Vec<u8>) -> Result<()> {
        let root = proxied_artifact_path(&run.artifact_uri).ok_or_else(|| {
            MlflowError::ArtifactsNotProxied {
                run_id: run.run_id.clone(),
                artifact_uri: run.artifact_uri.clone(),
            }
        })?;
        let mut segments = vec!["mlflow-artifacts", "artifacts"];
        segments.extend(root.split('/').filter(|s| !s.is_empty()));
        segments.extend(path.split('/'));
        let url = self.url(&segments, &[])?;
        self.send(Method::PUT, url, Payload::Bytes(bytes), Retry::Safe)
            .await
            .map(drop)
    }

    /// Ends the run with `status`.
    pub async fn update_run(
        &self,
        run_id: &str,
        status: RunStatus,
        end_time_ms: i64,
    ) -> Result<()> {
        let url = self.url(&["mlflow", "runs", "update"], &[])?;
        let body = json!({ "run_id": run_id, "status": status.as_str(), "end_time": end_time_ms });
        self.call::<Value>(Method::POST, url, Some(body), Retry::Safe)
            .await
            .map(drop)
    }

    /// The run with its params, latest metrics and tags.
    pub async fn get_run(&self, run_id: &str) -> Result<Run> {
        #[derive(Deserialize)]
        struct Answer {
            run: Run,
        }
        let url = self.url(&["mlflow", "runs", "get"], &[("run_id", run_id)])?;
        let answer: Answer = self.call(Method::GET, url, None, Retry::Safe).await?;
        Ok(answer.run)
    }

    /// The artifacts directly under `path` (the root when `None`).
    pub async fn list_artifacts(&self, run_id: &str, path: Option<&str>) -> Result<Vec<FileInfo>> {
        #[derive(Deserialize)]
        struct Answer {
            #[serde(default)]
            files: Vec<FileInfo>,
        }
        let mut query = vec![("run_id", run_id)];
        if let Some(path) = path {
            query.push(("path", path));
        }
        let url = self.url(&["mlflow", "artifacts", "list"], &query)?;
        let answer: Answer = self.call(Method::GET, url, None, Retry::Safe).await?;
        Ok(answer.files)
    }

    /// Creates the registered model `name` unless it exists.
    pub async fn ensure_registered_model(&self, name: &str) -> Result<()> {
        let url = self.url(&["mlflow", "registered-models", "get"], &[("name", name)])?;
        match self
            .call::<Value>(Method::GET, url, None, Retry::Safe)
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if e.error_code() == Some("RESOURCE_DOES_NOT_EXIST") => {}
            Err(e) => return Err(e),
        }
        let url = self.url(&["mlflow", "registered-models", "create"], &[])?;
        let body = json!({ "name": name, "description": "Registered by setpoint." });
        match self
            .call::<Value>(Method::POST, url, Some(body), Retry::Never)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.error_code() == Some("RESOURCE_ALREADY_EXISTS") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Registers a new version of `name` from `source`, produced by `run_id`.
    pub async fn create_model_version(
        &self,
        name: &str,
        source: &str,
        run_id: &str,
        tags: &[KeyValue],
    ) -> Result<ModelVersion> {
        #[derive(Deserialize)]
        struct Answer {
            model_version: ModelVersion,
        }
        let url = self.url(&["mlflow", "model-versions", "create"], &[])?;
        let body = json!({ "name": name, "source": source, "run_id": run_id, "tags": tags });
        let answer: Answer = self
            .call(Method::POST, url, Some(body), Retry::Never)
            .await?;
        Ok(answer.model_version)
    }

    /// Points `alias` of `name` at `version` (moving it from any other version).
    pub async fn set_alias(&self, name: &str, alias: &str, version: &str) -> Result<()> {
        let url = self.url(&["mlflow", "registered-models", "alias"], &[])?;
        let body = json!({ "name": name, "alias": alias, "version": version });
        self.call::<Value>(Method::POST, url, Some(body), Retry::Safe)
            .await
            .map(drop)
    }

    /// The version of `name` that `alias` points at.
    pub async fn get_model_version_by_alias(
        &self,
        name: &str,
        alias: &str,
    ) -> Result<ModelVersion> {
        #[derive(Deserialize)]
        struct Answer {
            model_version: ModelVersion,
        }
        let url = self.url(
            &["mlflow", "registered-models", "alias"],
            &[("name", name), ("alias", alias)],
        )?;
        let answer: Answer = self.call(Method::GET, url, None, Retry::Safe).await?;
        Ok(answer.model_version)
    }

    /// `<base>/api/2.0/<segments…>?<query>`, each segment percent-encoded.
    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<Url> {
        let text = format!("{}/api/2.0", self.base);
        let mut url = Url::parse(&text).map_err(|e| MlflowError::InvalidConfig {
            problems: vec![format!("mlflow.tracking_uri: {text:?} is not a URL: {e}")],
        })?;
        url.path_segments_mut()
            .map_err(|()| MlflowError::InvalidConfig {
                problems: vec![format!("mlflow.tracking_uri: {text:?} cannot have a path")],
            })?
            .extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<Value>,
        retry: Retry,
    ) -> Result<T> {
        let payload = match body {
            Some(body) => Payload::Json(body),
            None => Payload::None,
        };
        let method_name = method_name(&method);
        let url_text = url.to_string();
        let text = self.send(method, url, payload, retry).await?;
        serde_json::from_str(&text).map_err(|e| MlflowError::UnexpectedResponse {
            method: method_name,
            url: url_text,
            message: format!("{e} in {}", excerpt(&text)),
        })
    }

    /// Sends with retries of transient failures; returns the body of a success.
    async fn send(
        &self,
        method: Method,
        url: Url,
        payload: Payload,
        retry: Retry,
    ) -> Result<String> {
        let policy = match retry {
            Retry::Safe => self.retry,
            Retry::Never => self.retry.with_retries(0),
        };
        let what = format!("MLflow {} {url}", method_name(&method));
        let outcome = policy
            .run(
                &what,
                || self.send_once(method.clone(), url.clone(), &payload),
                |failed: &Failed| failed.transient,
            )
            .await;
        match outcome {
            Ok((text, _)) => Ok(text),
            Err(setpoint_retry::Error::Failed { error, .. }) => Err(error.error),
            Err(setpoint_retry::Error::DeadlineExceeded { deadline, .. }) => {
                Err(MlflowError::Deadline {
                    method: method_name(&method),
                    url: url.to_string(),
                    deadline,
                })
            }
        }
    }

    /// One attempt; an error comes with whether it is transient.
    async fn send_once(
        &self,
        method: Method,
        url: Url,
        payload: &Payload,
    ) -> Result<String, Failed> {
        let method_name = method_name(&method);
        let url_text = url.to_string();
        let mut request = self.http.request(method, url);
        request = match &self.credentials {
            Credentials::None => request,
            Credentials::Basic { username, password } => {
                request.basic_auth(username, Some(password))
            }
            Credentials::Bearer { token } => request.bearer_auth(token),
        };
        request = match payload {
            Payload::None => request,
            Payload::Json(body) => request.json(body),
            Payload::Bytes(bytes) => request
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(bytes.clone()),
        };
        let transport = |source: reqwest::Error| {
            let transient = source.is_timeout() || source.is_connect() || source.is_request();
            let error = MlflowError::Transport {
                method: method_name,
                url: url_text.clone(),
                message: error_chain(&source),
                source,
            };
            Failed { error, transient }
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let text = response.text().await.map_err(transport)?;
        if status.is_success() {
            return Ok(text);
        }
        let transient = status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
        let (error_code, message) = match serde_json::from_str::<ApiErrorBody>(&text) {
            Ok(body) => (body.error_code, body.message),
            Err(_) => ("HTTP_ERROR".to_string(), excerpt(&text)),
        };
        Err(Failed {
            error: MlflowError::Api {
                method: method_name,
                url: url_text,
                status: status.as_u16(),
                error_code,
                message,
            },
            transient,
        })
    }
}

enum Payload {
    None,
    Json(Value),
    Bytes(Vec<u8>),
}

fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        _ => "HTTP",
    }
}

/// The path behind the artifact proxy for an `mlflow-artifacts:` URI: `mlflow-artifacts:/1/abc`
/// and `mlflow-artifacts://host:5000/1/abc` both give `1/abc`.
pub(crate) fn proxied_artifact_path(artifact_uri: &str) -> Option<&str> {
    let rest = artifact_uri.strip_prefix("mlflow-artifacts:")?;
    let path = match rest.strip_prefix("//") {
        // An authority names the server; this client already talks to it.
        Some(with_host) => with_host.find('/').map(|i| &with_host[i..])?,
        None => rest,
    };
    Some(path.trim_matches('/'))
}

/// The start of a response body, for error messages.
fn excerpt(text: &str) -> String {
    const MAX: usize = 300;
    let trimmed = text.trim();
    if trimmed.len() <= MAX {
        return trimmed.to_string();
    }
    let mut end = MAX;
    while !trimmed.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &trimmed[..end])
}

/// An error with its causes, each once (reqwest's top-level message is terse).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}
