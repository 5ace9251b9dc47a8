//! Sends the engine's weekly report to people: by email through an SMTP server, and to a
//! Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat).
//!
//! The report is a [`Message`]: a subject, a plain-text body that every channel gets, and an
//! optional HTML alternative that only email uses (as `multipart/alternative`). A [`Notifier`]
//! is built once from a [`NotifyConfig`]; building it checks every setting and reads the secret
//! files (the SMTP password, the webhook URL), so a broken configuration is found at start-up
//! and not on the first Monday morning. [`Notifier::send`] then delivers to every configured
//! channel independently — one failing channel does not keep the report from the other — and
//! returns one [`Delivery`] per channel, for the caller to log.
//!
//! Secrets stay out of messages: errors name the channel and the server (`host:port` for SMTP,
//! `scheme://host[:port]` for the webhook, whose path is the secret), never the webhook path or
//! the password.
//!
//! # Configuration
//!
//! [`NotifyConfig`] is what users write under `notify:`; both channels are optional:
//!
//! ```yaml
//! notify:
//!   email:
//!     smtp: smtp.example.com:587        # host[:port]; port 587, or 465 with security: tls
//!     security: starttls                # none | starttls | tls
//!     username: setpoint@example.com    # with password_file, or neither
//!     password_file: /run/secrets/smtp-password
//!     from: "setpoint <setpoint@example.com>"
//!     to: [sre@example.com, dba@example.com]   # or a single address
//!     subject_prefix: "[setpoint]"
//!     timeout: 10s
//!   slack:
//!     webhook_url_file: /run/secrets/slack-webhook   # or webhook_url, not both
//!     timeout: 10s
//!     retries: 3                        # after a transport error, 429 or 5xx
//!     backoff: 800ms                    # doubles on each retry…
//!     max_backoff: 30s                  # …up to this
//! ```

mod config;
mod email;
mod slack;

use std::fmt;

pub use config::{EmailConfig, NotifyConfig, Security, SlackConfig};
pub use slack::{SLACK_TEXT_LIMIT, slack_text};

/// Result with this crate's error.
pub type Result<T, E = NotifyError> = std::result::Result<T, E>;

/// What can go wrong while building a [`Notifier`] or delivering a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    /// The configuration is unusable; found when the notifier is built, before anything is sent.
    #[error("invalid notify configuration: {}", problems.join("; "))]
    Invalid {
        /// Every problem found, each starting with the setting's path
        /// (`notify.email.password_file: …`).
        problems: Vec<String>,
    },
    /// The email could not be built or the SMTP server did not accept it.
    #[error("email via SMTP server {server}: {message}")]
    Email {
        /// The SMTP server, `host:port`.
        server: String,
        /// What went wrong, with the server's answer when there was one.
        message: String,
    },
    /// The webhook did not accept the message.
    #[error("slack webhook at {server}: {message}")]
    Slack {
        /// The webhook's origin, `scheme://host[:port]` (its path is a secret).
        server: String,
        /// What went wrong, with the receiver's answer when there was one.
        message: String,
    },
}

/// One message to send: the weekly report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The subject (email: after the configured prefix; Slack: in bold above the report).
    pub subject: String,
    /// The report as plain text; every channel gets it.
    pub text: String,
    /// The same report as HTML, sent by email as an alternative to the text.
    pub html: Option<String>,
}

/// A delivery channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    /// Email through SMTP.
    Email,
    /// A Slack-compatible incoming webhook.
    Slack,
}

impl Channel {
    /// The channel's name in logs and configs: `email` or `slack`.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Slack => "slack",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened on one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The channel.
    pub channel: Channel,
    /// On success, who accepted the message (`accepted by smtp.example.com:587: 250 …`); else
    /// why it was not delivered.
    pub result: Result<String>,
}

impl Delivery {
    /// Whether the channel accepted the message.
    pub fn is_ok(&self) -> bool {
        self.result.is_ok()
    }
}

/// Sends messages to the configured channels; built once, used for every report.
#[derive(Debug)]
pub struct Notifier {
    email: Option<email::Email>,
    slack: Option<slack::Slack>,
}

impl Notifier {
    /// Checks the configuration and reads the secret files; reports every problem at once.
    pub fn new(config: &NotifyConfig) -> Result<Notifier> {
        let mut problems = Vec::new();
        let email = config
            .email
            .as_ref()
            .and_then(|c| email::Email::new(c, &mut problems));
        let slack = config
            .slack
            .as_ref()
            .and_then(|c| slack::Slack::new(c, &mut problems));
        if !problems.is_empty() {
            return Err(NotifyError::Invalid { problems });
        }
        Ok(Notifier { email, slack })
    }

    /// The configured channels, in the order [`Notifier::send`] reports them.
    pub fn channels(&self) -> Vec<Channel> {
        let mut channels = Vec::new();
        if self.email.is_some() {
            channels.push(Channel::Email);
        }
        if self.slack.is_some() {
            channels.push(Channel::Slack);
        }
        channels
    }

    /// Sends `message` to every configured channel at the same time and reports each: a channel
    /// that fails does not stop the others. Empty when no channel is configured.
    pub async fn send(&self, message: &Message) -> Vec<Delivery> {
        let email = async {
            match &self.email {
                Some(email) => Some(Delivery {
                    channel: Channel::Email,
                    result: email.send(message).await,
                }),
                None => None,
            }
        };
        let slack = async {
            match &self.slack {
                Some(slack) => Some(Delivery {
                    channel: Channel::Slack,
                    result: slack.send(message).await,
                }),
                None => None,
            }
        };
        let (email, slack) = tokio::join!(email, slack);
        email.into_iter().chain(slack).collect()
    }
}

/// An error with its causes, each once (top-level messages of reqwest and lettre are terse).
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

/// The start of a server's answer for an error message (servers can answer with whole pages).
fn excerpt(body: &str) -> String {
    const MAX: usize = 300;
    let body = body.trim();
    match body.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &body[..cut]),
        None => body.to_string(),
    }
}
