//! The webhook actuator: POSTs the decision to a team's own automation, which applies it in its
//! own way (a pipeline, a GitOps commit, a ticket).
//!
//! The URL must be in the configured allow-list, checked before any request: the URL may come
//! from a target's labels, which discovery fills from data setpoint does not control. The body
//! is signed with HMAC-SHA256 over `<timestamp>.<body>` so that a receiver can check both that
//! setpoint sent it and that it is recent (a captured request replayed later carries an old
//! timestamp, and changing the timestamp breaks the signature):
//!
//! ```text
//! X-Setpoint-Timestamp: 1795442400
//! X-Setpoint-Signature: sha256=<hex of HMAC-SHA256(secret, "1795442400." + body)>
//! Idempotency-Key: <the intent's key>
//! ```
//!
//! Transport errors, 429 and 5xx are retried with jittered exponential backoff; any other
//! answer but 2xx fails at once. A 2xx means delivered: what the receiver then does is its
//! business.

use std::path::PathBuf;
use std::time::Duration;

use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use setpoint_core::{Operation, Target};
use setpoint_retry::RetryPolicy;
use sha2::Sha256;

use crate::http::{self, error_chain, excerpt};
use crate::{ActError, Actuator, BoxFuture, Execution, OpStatus, OperationResult, Result, Site};

/// The actuator's name in traces, errors and results.
pub const NAME: &str = "webhook";

impl crate::ActuatorSpec for WebhookConfig {
    const NAME: &'static str = NAME;

    fn paths_mut(&mut self) -> Vec<&mut std::path::PathBuf> {
        std::iter::once(&mut self.secret_file)
            .chain(self.ca_file.as_mut())
            .collect()
    }

    fn build(&self) -> Result<std::sync::Arc<dyn Actuator>> {
        Ok(std::sync::Arc::new(Webhook::new(self.clone())?))
    }
}

/// Header with the signature.
pub const SIGNATURE_HEADER: &str = "X-Setpoint-Signature";
/// Header with the Unix time (seconds) that the signature covers.
pub const TIMESTAMP_HEADER: &str = "X-Setpoint-Timestamp";
/// Header with the intent's idempotency key.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// Configuration of the webhook actuator (one per loop).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where to POST when the target has no `url_label` label; `{target}` is replaced by the
    /// target id.
    #[serde(default)]
    pub url: Option<String>,
    /// The target label that holds its webhook URL (wins over `url`).
    #[serde(default = "default_url_label")]
    pub url_label: String,
    /// URL prefixes a webhook may go to (scheme, host, port, then a path prefix), e.g.
    /// `https://deploy.internal/hooks/`. Empty allows nothing.
    pub allow: Vec<String>,
    /// File holding the shared HMAC secret (its first line).
    pub secret_file: PathBuf,
    /// PEM CA certificates to trust for https.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Timeout of one request.
    #[serde(default = "default_timeout", with = "http::duration")]
    pub timeout: Duration,
    /// Retries after a transport error, 429 or 5xx.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// The first backoff; it doubles on each retry, up to `max_backoff`. Each wait is drawn
    /// at random from the upper half of that value, so that retries do not arrive in step.
    #[serde(default = "default_backoff", with = "http::duration")]
    pub backoff: Duration,
    /// The longest backoff.
    #[serde(default = "default_max_backoff", with = "http::duration")]
    pub max_backoff: Duration,
}

fn default_url_label() -> String {
    "webhook_url".into()
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_retries() -> u32 {
    3
}
fn default_backoff() -> Duration {
    Duration::from_millis(800)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}

impl WebhookConfig {
    /// Every default, posting to `url` (allowed) with the secret in `secret_file`.
    pub fn new(url: impl Into<String>, secret_file: impl Into<PathBuf>) -> Self {
        let url = url.into();
        Self {
            allow: vec![url.clone()],
            url: Some(url),
            url_label: default_url_label(),
            secret_file: secret_file.into(),
            ca_file: None,
            timeout: default_timeout(),
            retries: default_retries(),
            backoff: default_backoff(),
            max_backoff: default_max_backoff(),
        }
    }
}

/// The signature header's value for `body` sent at `timestamp` (Unix seconds): what a receiver
/// recomputes to check a request.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", crate::hex(&mac.finalize().into_bytes()))
}

/// Whether `url` lies under one of the allowed prefixes: same scheme, host and port, and a
/// path under the prefix's path (at a `/` boundary, so `/hooks` does not allow `/hooks-evil`).
pub fn allowed(url: &str, allow: &[String]) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else {
        return false;
    };
    if !url.username().is_empty() || url.password().is_some() {
        return false;
    }
    allow.iter().any(|prefix| {
        let Ok(prefix) = reqwest::Url::parse(prefix) else {
            return false;
        };
        let same_origin = url.scheme() == prefix.scheme()
            && url.host_str() == prefix.host_str()
            && url.port_or_known_default() == prefix.port_or_known_default();
        let base = prefix.path();
        let path = url.path();
        same_origin
            && (path == base
                || base.ends_with('/') && path.starts_with(base)
                || path.starts_with(&format!("{base}/")))
    })
}

/// The webhook actuator.
pub struct Webhook {
    config: WebhookConfig,
    secret: Vec<u8>,
    client: reqwest::Client,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret stays out of logs.
        f.debug_struct("Webhook")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// Checks the configuration and reads the secret.
    pub fn new(config: WebhookConfig) -> Result<Self> {
        let error = |message: String| ActError::Config {
            actuator: NAME.into(),
            message,
        };
        for (i, prefix) in config.allow.iter().enumerate() {
            http::base_url(prefix).map_err(|e| error(format!("allow[{i}]: {e}")))?;
        }
        let text = http::read_file("secret_file", &config.secret_file).map_err(error)?;
        let secret = text
            .split(|b| *b == b'\n')
            .next()
            .unwrap_or_default()
            .to_vec();
        if secret.is_empty() {
            return Err(error("secret_file: the secret is empty".into()));
        }
        let mut tls = http::Tls::default();
        if let Some(path) = &config.ca_file {
            tls.ca_pem = Some(http::read_file("ca_file", path).map_err(error)?);
        }
        let client = http::client(config.timeout, tls).map_err(error)?;
        Ok(Self {
            config,
            secret,
            client,
        })
    }

    /// The URL for a target: its label, else the configured `url`.
    pub fn url(&self, target: &Target) -> Option<String> {
        target
            .labels
            .get(&self.config.url_label)
            .cloned()
            .or_else(|| {
                self.config
                    .url
                    .as_ref()
                    .map(|u| u.replace("{target}", &target.id))
            })
    }

    async fn run(&self, execution: &Execution<'_>) -> Result<Vec<OperationResult>> {
        let target = execution.target;
        let operation = execution
            .operations
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        let failed = |url: &str, message: String| ActError::Failed {
            site: Site::new(NAME, &target.id, url, operation.clone()),
            message,
        };
        let url = self.url(target).ok_or_else(|| ActError::Unusable {
            site: Site::new(NAME, &target.id, "(no URL)", operation.clone()),
            message: format!(
                "the target has no {:?} label and no url is configured",
                self.config.url_label
            ),
        })?;
        if !allowed(&url, &self.config.allow) {
            return Err(ActError::NotAllowed {
                site: Site::new(NAME, &target.id, url, operation),
            });
        }
        let body = json!({
            "target": target,
            "verdict": execution.decision.verdict,
            "decision": execution.decision,
            "proposal": execution.proposal,
            "operations": execution.operations,
            "idempotency_key": execution.key,
            "trace_id": execution.trace_id,
            "dry_run": execution.dry_run,
            "decided_at": execution.now,
        })
        .to_string();
        let timestamp = execution.now.timestamp();
        let signature = signature(&self.secret, timestamp, body.as_bytes());

        let post = || async {
            let sent = self
                .client
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(TIMESTAMP_HEADER, timestamp.to_string())
                .header(SIGNATURE_HEADER, &signature)
                .header(IDEMPOTENCY_HEADER, execution.key)
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(response) if response.status().is_success() => Ok(()),
                Ok(response) => {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    let message = format!("HTTP {status}: {}", excerpt(&text));
                    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                        Err(Undelivered::Transient(message))
                    } else {
                        Err(Undelivered::Refused(ActError::from_status(
                            Site::new(NAME, &target.id, &url, operation.clone()),
                            status,
                            message,
                        )))
                    }
                }
                Err(e) => Err(Undelivered::Transient(error_chain(&e))),
            }
        };
        let policy = RetryPolicy::new(self.config.backoff, self.config.max_backoff, 1)
            .with_retries(self.config.retries);
        let what = format!("webhook delivery to {url}");
        let attempts = match policy
            .run(&what, post, |failed| {
                matches!(failed, Undelivered::Transient(_))
            })
            .await
        {
            Ok(((), attempts)) => attempts,
            Err(setpoint_retry::Error::Failed {
                error: Undelivered::Refused(error),
                ..
            }) => return Err(error),
            Err(setpoint_retry::Error::Failed {
                error: Undelivered::Transient(message),
                attempts,
            }) => {
                return Err(failed(
                    &url,
                    format!("gave up after {attempts} attempts: {message}"),
                ));
            }
            Err(deadline @ setpoint_retry::Error::DeadlineExceeded { .. }) => {
                return Err(failed(&url, deadline.to_string()));
            }
        };
        let status = if execution.dry_run {
            OpStatus::DryRun
        } else {
            OpStatus::Delivered
        };
        Ok(execution
            .operations
            .iter()
            .map(|op: &Operation| OperationResult {
                operation: op.clone(),
                actuator: NAME.into(),
                object: url.clone(),
                status: status.clone(),
                detail: format!("accepted by {url} (attempt {attempts})"),
            })
            .collect())
    }
}

/// A delivery that failed.
enum Undelivered {
    /// What the transport or the receiver said, when another try may pass.
    Transient(String),
    /// The receiver's answer, final.
    Refused(ActError),
}

impl std::fmt::Display for Undelivered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Undelivered::Transient(message) => f.write_str(message),
            Undelivered::Refused(error) => error.fmt(f),
        }
    }
}

impl Actuator for Webhook {
    fn name(&self) -> &str {
        NAME
    }

    /// Every operation: the receiver decides what it can do. List the webhook last when a loop
    /// has other actuators, as the catch-all.
    fn supports(&self, _target: &Target, _operation: &Operation) -> bool {
        true
    }

    fn execute<'a>(
        &'a self,
        execution: &'a Execution<'a>,
    ) -> BoxFuture<'a, Result<Vec<OperationResult>>> {
        Box::pin(self.run(execution))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allow_list_matches_origin_and_path_prefix() {
        let allow = vec![
            "https://deploy.internal/hooks/".to_string(),
            "http://127.0.0.1:9000/setpoint".to_string(),
        ];
        assert!(allowed("https://deploy.internal/hooks/pg", &allow));
        assert!(allowed("https://deploy.internal:443/hooks/pg", &allow));
        assert!(allowed("http://127.0.0.1:9000/setpoint", &allow));
        assert!(allowed("http://127.0.0.1:9000/setpoint/x", &allow));
        assert!(!allowed("http://127.0.0.1:9000/setpoint-evil", &allow));
        assert!(!allowed("http://127.0.0.1:9001/setpoint", &allow));
        assert!(!allowed("http://deploy.internal/hooks/pg", &allow));
        assert!(!allowed("https://deploy.internal.evil/hooks/pg", &allow));
        assert!(!allowed("https://user@deploy.internal/hooks/pg", &allow));
        assert!(!allowed("not a url", &allow));
        assert!(!allowed("https://deploy.internal/hooks/pg", &[]));
    }

    #[test]
    fn the_signature_is_hmac_sha256_over_timestamp_and_body() {
        // Computed independently: python3 hmac.new(b"Jefe", b'1795442400.{"a":1}', sha256).
        assert_eq!(
            signature(b"Jefe", 1_795_442_400, br#"{"a":1}"#),
            "sha256=ad380f6b3cff8b5b561520166f007e2f9b391a64cdfc5b88f1c0a30e125d551b"
        );
        assert_ne!(signature(b"k", 1, b"x"), signature(b"k", 2, b"x"));
    }
}
