//! The `notify:` section of the configuration, as users write it. Parsing is strict (unknown
//! keys are refused, durations are checked as they are read); what needs files or more than one
//! setting is checked when the [`Notifier`](crate::Notifier) is built.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// Where to send the weekly report; each channel is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Send the report by email through an SMTP server.
    #[serde(default)]
    pub email: Option<EmailConfig>,
    /// Post the report to a Slack-compatible incoming webhook.
    #[serde(default)]
    pub slack: Option<SlackConfig>,
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Plain text all the way: only for a relay on the same host or a trusted network.
    None,
    /// Connect in plain text, then upgrade with STARTTLS; refuse to go on if the server does
    /// not offer it (the usual submission port, 587).
    #[default]
    StartTls,
    /// TLS from the first byte (implicit TLS, port 465).
    Tls,
}

/// Email through SMTP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// The SMTP server, `host:port` or `host` (then port 587, or 465 with `security: tls`).
    pub smtp: String,
    /// `none`, `starttls` or `tls`.
    #[serde(default)]
    pub security: Security,
    /// The user to log in as; requires `password_file`. Without both, no login.
    #[serde(default)]
    pub username: Option<String>,
    /// File holding the SMTP password (its first line); requires `username`.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The sender, `setpoint@example.com` or `setpoint <setpoint@example.com>`.
    pub from: String,
    /// The recipients: one address or a list.
    #[serde(deserialize_with = "one_or_more")]
    pub to: Vec<String>,
    /// Put before every subject, followed by a space; empty for none.
    #[serde(default = "default_subject_prefix")]
    pub subject_prefix: String,
    /// Timeout of connecting and of each SMTP command.
    #[serde(
        default = "default_timeout",
        deserialize_with = "duration",
        serialize_with = "human"
    )]
    pub timeout: Duration,
}

/// A Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// File holding the webhook URL (its first line). Preferred: the URL is a secret, anyone
    /// who has it can post to the channel.
    #[serde(default)]
    pub webhook_url_file: Option<PathBuf>,
    /// The webhook URL itself, when it need not be kept out of the config file. Exactly one of
    /// `webhook_url` and `webhook_url_file`.
    #[serde(default)]
    pub webhook_url: Option<setpoint_secret::Secret>,
    /// Timeout of one request.
    #[serde(
        default = "default_timeout",
        deserialize_with = "duration",
        serialize_with = "human"
    )]
    pub timeout: Duration,
    /// Retries after a transport error, 429 or 5xx.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// The first backoff; it doubles on each retry, up to `max_backoff`. Each wait is drawn at
    /// random from the upper half of that value, so that retries do not arrive in step.
    #[serde(
        default = "default_backoff",
        deserialize_with = "duration",
        serialize_with = "human"
    )]
    pub backoff: Duration,
    /// The longest backoff.
    #[serde(
        default = "default_max_backoff",
        deserialize_with = "duration",
        serialize_with = "human"
    )]
    pub max_backoff: Duration,
}

impl fmt::Debug for SlackConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // An inline webhook URL is a secret too: keep it out of logs.
        f.debug_struct("SlackConfig")
            .field("webhook_url_file", &self.webhook_url_file)
            .field(
                "webhook_url",
                &self.webhook_url.as_ref().map(|_| "(redacted)"),
            )
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("backoff", &self.backoff)
            .field("max_backoff", &self.max_backoff)
            .finish()
    }
}

impl EmailConfig {
    /// Every default: STARTTLS to `smtp`, no login, from `from` to `to`.
    pub fn new(smtp: impl Into<String>, from: impl Into<String>, to: Vec<String>) -> Self {
        Self {
            smtp: smtp.into(),
            security: Security::default(),
            username: None,
            password_file: None,
            from: from.into(),
            to,
            subject_prefix: default_subject_prefix(),
            timeout: default_timeout(),
        }
    }
}

impl SlackConfig {
    /// Every default, with the webhook URL in `webhook_url_file`.
    pub fn new(webhook_url_file: impl Into<PathBuf>) -> Self {
        Self {
            webhook_url_file: Some(webhook_url_file.into()),
            webhook_url: None,
            timeout: default_timeout(),
            retries: default_retries(),
            backoff: default_backoff(),
            max_backoff: default_max_backoff(),
        }
    }
}

fn default_subject_prefix() -> String {
    "[setpoint]".into()
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

/// Deserialises a duration written like `10s` or `800ms`.
/// Writes a duration the way it is read (`10s`), so a printed config reads back.
fn human<S: serde::Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&humantime::format_duration(*value).to_string())
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text)
        .map_err(|e| de::Error::custom(format!("invalid duration {text:?}: {e}")))
}

/// Deserialises one string or a list of them; a single recipient is the common case.
fn one_or_more<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    struct OneOrMore;

    impl<'de> Visitor<'de> for OneOrMore {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an address or a list of addresses")
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
            Ok(vec![value.to_string()])
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut values = Vec::new();
            while let Some(value) = seq.next_element::<String>()? {
                values.push(value);
            }
            Ok(values)
        }
    }

    deserializer.deserialize_any(OneOrMore)
}

/// Reads the secret in the first line of a file named by `setting`; the error names both.
pub(crate) fn read_secret(setting: &str, path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{setting}: cannot read {}: {e}", path.display()))?;
    // Only the first line: editors add a final newline. `lines` drops a `\r\n` but not a
    // lone `\r` at the end of the file.
    let secret = text
        .lines()
        .next()
        .unwrap_or_default()
        .trim_end_matches('\r');
    if secret.is_empty() {
        return Err(format!(
            "{setting}: the first line of {} is empty",
            path.display()
        ));
    }
    Ok(secret.to_string())
}
