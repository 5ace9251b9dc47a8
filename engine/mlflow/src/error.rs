//! The crate's one error type.

/// Everything that can go wrong talking to MLflow.
///
/// Every variant that comes from a request names the method and URL; an answer from MLflow also
/// carries its `error_code` and `message`, so a failed training run says what the server said.
#[derive(Debug, thiserror::Error)]
pub enum MlflowError {
    /// The configuration cannot be used; each problem names its field.
    #[error("invalid MLflow configuration: {}", .problems.join("; "))]
    InvalidConfig {
        /// One line per problem, each starting with the field's path.
        problems: Vec<String>,
    },
    /// The training run breaks one of MLflow's limits or naming rules; nothing was sent.
    #[error("training run cannot be logged to MLflow: {}", .problems.join("; "))]
    InvalidRun {
        /// One line per problem.
        problems: Vec<String>,
    },
    /// The request did not get an HTTP answer (connection refused, timeout, TLS).
    #[error("{method} {url}: {message}")]
    Transport {
        /// HTTP method.
        method: &'static str,
        /// The URL requested.
        url: String,
        /// The transport error with its causes.
        message: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// The request with its retries took longer than their deadline (see
    /// [`crate::MlflowConfig::timeout`]).
    #[error("{method} {url}: no answer within {deadline:?}, retries included")]
    Deadline {
        /// HTTP method.
        method: &'static str,
        /// The URL requested.
        url: String,
        /// The deadline.
        deadline: std::time::Duration,
    },
    /// MLflow answered with an error status.
    #[error("{method} {url}: HTTP {status} {error_code}: {message}")]
    Api {
        /// HTTP method.
        method: &'static str,
        /// The URL requested.
        url: String,
        /// HTTP status code.
        status: u16,
        /// MLflow's `error_code` (e.g. `RESOURCE_DOES_NOT_EXIST`), or `HTTP_ERROR` when the body
        /// was not MLflow's JSON error (a proxy's HTML page, say).
        error_code: String,
        /// MLflow's `message`, or the start of the body.
        message: String,
    },
    /// A success status whose body is not what the API documents.
    #[error("{method} {url}: unexpected response: {message}")]
    UnexpectedResponse {
        /// HTTP method.
        method: &'static str,
        /// The URL requested.
        url: String,
        /// What was wrong with it.
        message: String,
    },
    /// The run's artifact location is not served by the tracking server's artifact proxy
    /// (`mlflow-artifacts:`), so this client cannot upload to it.
    #[error(
        "run {run_id}: artifact location {artifact_uri:?} is not served by the tracking server \
         (start `mlflow server` with artifact serving, or use an experiment whose artifact \
         location is `mlflow-artifacts:`)"
    )]
    ArtifactsNotProxied {
        /// The run.
        run_id: String,
        /// The run's `artifact_uri`.
        artifact_uri: String,
    },
    /// A step failed after the run was created; the run was then marked `FAILED` (unless that
    /// failed too: see `mark_failed_error`).
    #[error("MLflow run {run_id} ({run_url}) failed while {step}: {source}{}",
        .mark_failed_error.as_ref().map(|e| format!(" (and marking it FAILED failed too: {e})")).unwrap_or_default())]
    RunFailed {
        /// The run.
        run_id: String,
        /// The run's page in the MLflow UI.
        run_url: String,
        /// What was being done (`uploading model/model.json`, say).
        step: String,
        /// What went wrong.
        #[source]
        source: Box<MlflowError>,
        /// Why the run could not be marked `FAILED`, if it could not: it is then left `RUNNING`.
        mark_failed_error: Option<Box<MlflowError>>,
    },
}

impl MlflowError {
    /// MLflow's `error_code`, if the server answered with one (looking through `RunFailed`).
    pub fn error_code(&self) -> Option<&str> {
        match self {
            MlflowError::Api { error_code, .. } => Some(error_code),
            MlflowError::RunFailed { source, .. } => source.error_code(),
            _ => None,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = MlflowError> = std::result::Result<T, E>;
