//! Where the MLflow tracking server is and how to reach it.

use setpoint_secret::Secret;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{MlflowError, Result};

/// Environment variable with the basic-auth user name, as MLflow's own clients read it.
pub const ENV_USERNAME: &str = "MLFLOW_TRACKING_USERNAME";
/// Environment variable with the basic-auth password, as MLflow's own clients read it.
pub const ENV_PASSWORD: &str = "MLFLOW_TRACKING_PASSWORD";
/// Environment variable with a bearer token, as MLflow's own clients read it.
pub const ENV_TOKEN: &str = "MLFLOW_TRACKING_TOKEN";

/// The `mlflow:` section of the engine's configuration.
///
/// ```yaml
/// tracking_uri: http://127.0.0.1:5000
/// experiment: setpoint-rightsizing
/// registered_model: setpoint-weekly-classifier
/// timeout: 30s
/// ```
///
/// Credentials are best left to the environment (`MLFLOW_TRACKING_USERNAME`,
/// `MLFLOW_TRACKING_PASSWORD`, `MLFLOW_TRACKING_TOKEN`), read by [`MlflowConfig::credentials`];
/// a value set here wins over the environment.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlflowConfig {
    /// Base URL of the tracking server, e.g. `http://127.0.0.1:5000` (a path prefix behind a
    /// reverse proxy is kept: `https://ml.example.com/mlflow`). A password in it
    /// (`https://user:pass@host`) is used as basic authentication and never shown.
    #[serde(serialize_with = "show_uri")]
    pub tracking_uri: String,
    /// Experiment the runs go to; created if absent.
    #[serde(default = "default_experiment")]
    pub experiment: String,
    /// Registered model the model versions go to; created if absent.
    #[serde(default = "default_registered_model")]
    pub registered_model: String,
    /// Basic-auth user name (default: `MLFLOW_TRACKING_USERNAME`).
    #[serde(default)]
    pub username: Option<String>,
    /// Basic-auth password (default: `MLFLOW_TRACKING_PASSWORD`).
    #[serde(default)]
    pub password: Option<Secret>,
    /// Bearer token (default: `MLFLOW_TRACKING_TOKEN`); used when there is no user name.
    #[serde(default)]
    pub token: Option<Secret>,
    /// Timeout of one HTTP request, artifact uploads included. A request with its retries is
    /// given at most `(timeout + 100ms) × (retries + 1)` plus the backoffs between them (200 ms
    /// doubling up to 5 s).
    #[serde(
        default = "default_timeout",
        deserialize_with = "duration",
        serialize_with = "show_duration"
    )]
    pub timeout: Duration,
    /// Retries of a transient failure (connection, timeout, 429, 5xx) of a request that is safe
    /// to repeat; creating a run or a model version is never repeated.
    #[serde(default = "default_retries")]
    pub retries: u32,
}

// Secrets stay out of logs and error reports that print the config.
impl fmt::Debug for MlflowConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MlflowConfig")
            .field(
                "tracking_uri",
                &setpoint_secret::redact_url(&self.tracking_uri),
            )
            .field("experiment", &self.experiment)
            .field("registered_model", &self.registered_model)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .finish()
    }
}

fn default_experiment() -> String {
    "setpoint".to_string()
}

fn default_registered_model() -> String {
    "setpoint-classifier".to_string()
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_retries() -> u32 {
    3
}

fn show_uri<S: serde::Serializer>(uri: &str, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&setpoint_secret::redact_url(uri))
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text)
        .map_err(|e| serde::de::Error::custom(format!("invalid duration {text:?}: {e}")))
}

fn show_duration<S: serde::Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&humantime::format_duration(*value).to_string())
}

/// How requests authenticate, resolved from the config and the environment.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum Credentials {
    /// No `Authorization` header.
    #[default]
    None,
    /// HTTP basic authentication.
    Basic {
        /// User name.
        username: String,
        /// Password (may be empty).
        password: String,
    },
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token.
        token: String,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credentials::Bearer { .. } => f
                .debug_struct("Bearer")
                .field("token", &"<redacted>")
                .finish(),
        }
    }
}

impl MlflowConfig {
    /// Settings for `tracking_uri` with every default.
    pub fn new(tracking_uri: impl Into<String>) -> Self {
        Self {
            tracking_uri: tracking_uri.into(),
            experiment: default_experiment(),
            registered_model: default_registered_model(),
            username: None,
            password: None,
            token: None,
            timeout: default_timeout(),
            retries: default_retries(),
        }
    }

    /// Every problem with the settings, each prefixed with `prefix` and its field
    /// (`mlflow.tracking_uri: …`); empty when they are usable.
    pub fn problems(&self, prefix: &str) -> Vec<String> {
        let mut problems = Vec::new();
        let uri = self.tracking_uri.trim();
        let shown = setpoint_secret::redact_url(uri);
        if !(uri.starts_with("http://") || uri.starts_with("https://")) {
            problems.push(format!(
                "{prefix}tracking_uri: {shown:?} must start with http:// or https:// \
                 (a file or database store cannot be reached over REST)"
            ));
        } else if let Err(e) = reqwest::Url::parse(uri) {
            problems.push(format!("{prefix}tracking_uri: {shown:?} is not a URL: {e}"));
        }
        if setpoint_secret::split_url_credentials(uri).1.is_some()
            && (self.username.is_some() || self.token.is_some())
        {
            problems.push(format!(
                "{prefix}tracking_uri: carries credentials and username or token is set too: keep one"
            ));
        }
        if self.experiment.trim().is_empty() {
            problems.push(format!("{prefix}experiment: must not be empty"));
        }
        let model = self.registered_model.trim();
        if model.is_empty() {
            problems.push(format!("{prefix}registered_model: must not be empty"));
        } else if model.contains('/') || model.contains(':') {
            // MLflow rejects both: they would make `models:/<name>/<version>` URIs ambiguous.
            problems.push(format!(
                "{prefix}registered_model: {:?} must not contain '/' or ':'",
                self.registered_model
            ));
        }
        if self.password.is_some() && self.username.is_none() {
            problems.push(format!("{prefix}password: set without username"));
        }
        if self.timeout.is_zero() {
            problems.push(format!("{prefix}timeout: must be more than zero"));
        }
        problems
    }

    /// `Ok` when the settings are usable, else every problem in one error.
    pub fn validate(&self) -> Result<()> {
        let problems = self.problems("mlflow.");
        if problems.is_empty() {
            Ok(())
        } else {
            Err(MlflowError::InvalidConfig { problems })
        }
    }

    /// The credentials to send: this config's, else those of the environment that `env` reads
    /// (pass `|name| std::env::var(name).ok()` for the process environment). A user name wins
    /// over a token, as in MLflow's own clients.
    pub fn credentials(&self, env: impl Fn(&str) -> Option<String>) -> Credentials {
        let non_empty = |value: Option<String>| value.filter(|v| !v.is_empty());
        if let (_, Some((username, password))) =
            setpoint_secret::split_url_credentials(self.tracking_uri.trim())
        {
            return Credentials::Basic {
                username,
                password: password.expose().to_string(),
            };
        }
        let username = non_empty(self.username.clone()).or_else(|| non_empty(env(ENV_USERNAME)));
        if let Some(username) = username {
            let password = self
                .password
                .as_ref()
                .map(|p| p.expose().to_string())
                .or_else(|| env(ENV_PASSWORD))
                .unwrap_or_default();
            return Credentials::Basic { username, password };
        }
        let token = self.token.as_ref().map(|t| t.expose().to_string());
        match non_empty(token).or_else(|| non_empty(env(ENV_TOKEN))) {
            Some(token) => Credentials::Bearer { token },
            None => Credentials::None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn yaml_with_defaults_and_unknown_fields() {
        let config: MlflowConfig =
            serde_yaml::from_str("tracking_uri: http://127.0.0.1:5000\ntimeout: 5s\n").unwrap();
        assert_eq!(config.experiment, "setpoint");
        assert_eq!(config.registered_model, "setpoint-classifier");
        assert_eq!(config.timeout, Duration::from_secs(5));
        assert!(config.validate().is_ok());

        let err = serde_yaml::from_str::<MlflowConfig>("tracking_uri: http://x\nexperment: a\n")
            .unwrap_err();
        assert!(
            err.to_string().contains("unknown field `experment`"),
            "{err}"
        );
    }

    #[test]
    fn validate_names_every_problem() {
        let mut config = MlflowConfig::new("sqlite:///mlflow.db");
        config.experiment = " ".into();
        config.registered_model = "a/b".into();
        config.password = Some("p".into());
        config.timeout = Duration::ZERO;
        let problems = config.problems("mlflow.");
        let fields: Vec<&str> = problems
            .iter()
            .map(|p| p.split(':').next().unwrap_or_default())
            .collect();
        assert_eq!(
            fields,
            [
                "mlflow.tracking_uri",
                "mlflow.experiment",
                "mlflow.registered_model",
                "mlflow.password",
                "mlflow.timeout"
            ]
        );
    }

    #[test]
    fn credentials_in_the_uri_are_used_and_never_shown() {
        let config = MlflowConfig::new("https://ml:uri-pw-4711@mlflow.example/prefix");
        assert!(config.problems("mlflow.").is_empty());
        match config.credentials(|_| Some("from-env".into())) {
            Credentials::Basic { username, password } => {
                assert_eq!(
                    (username.as_str(), password.as_str()),
                    ("ml", "uri-pw-4711")
                );
            }
            other => panic!("{other:?}"),
        }
        let shown = format!("{config:?} {}", serde_yaml::to_string(&config).unwrap());
        assert!(!shown.contains("uri-pw-4711"), "{shown}");
        assert!(
            shown.contains("https://ml:(redacted)@mlflow.example/prefix"),
            "{shown}"
        );
        let client = crate::MlflowClient::new(&config, config.credentials(|_| None)).unwrap();
        assert_eq!(client.tracking_uri(), "https://mlflow.example/prefix");
        // Credentials in the URI and a user or token too: which one is meant is not guessed.
        let both = MlflowConfig {
            token: Some("t".into()),
            ..config
        };
        let problems = both.problems("mlflow.").join("; ");
        assert!(problems.contains("carries credentials"), "{problems}");
        assert!(!problems.contains("uri-pw-4711"), "{problems}");
    }

    #[test]
    fn credentials_config_wins_over_env_and_user_over_token() {
        let env = |name: &str| match name {
            ENV_USERNAME => Some("env-user".to_string()),
            ENV_PASSWORD => Some("env-pass".to_string()),
            ENV_TOKEN => Some("env-token".to_string()),
            _ => None,
        };
        let mut config = MlflowConfig::new("http://127.0.0.1:1");
        assert_eq!(
            config.credentials(env),
            Credentials::Basic {
                username: "env-user".into(),
                password: "env-pass".into()
            }
        );
        config.username = Some("alice".into());
        config.password = Some("secret".into());
        assert_eq!(
            config.credentials(env),
            Credentials::Basic {
                username: "alice".into(),
                password: "secret".into()
            }
        );
        let token_only = |name: &str| (name == ENV_TOKEN).then(|| "t0k".to_string());
        assert_eq!(
            MlflowConfig::new("http://x").credentials(token_only),
            Credentials::Bearer {
                token: "t0k".into()
            }
        );
        assert_eq!(
            MlflowConfig::new("http://x").credentials(|_| None),
            Credentials::None
        );
        let debug = format!("{:?} {:?}", config, config.credentials(env));
        assert!(!debug.contains("secret"), "{debug}");
    }
}
