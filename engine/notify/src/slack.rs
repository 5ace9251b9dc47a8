//! A Slack-compatible incoming webhook: one POST of `{"text": …}`, which Slack, Mattermost and
//! Rocket.Chat all accept.
//!
//! The webhook URL is the only credential (anyone who has it can post to the channel), so it is
//! read from a file and messages show only its origin: reqwest's errors carry the URL, they are
//! stripped of it, and anything else the receiver echoes back is redacted.
//!
//! Transport errors, 429 and 5xx are retried with jittered exponential backoff; any other
//! answer but 2xx (Slack's `invalid_payload`, `no_service`, `channel_is_archived`…) fails at
//! once, since sending the same body again cannot help.

use reqwest::StatusCode;
use serde_json::json;
use setpoint_retry::RetryPolicy;

use crate::config::{SlackConfig, read_secret};
use crate::{Message, NotifyError, Result, error_chain, excerpt};

/// The most characters [`slack_text`] produces. Slack truncates `text` past 40,000 characters;
/// the margin leaves room for the receiver's own additions.
pub const SLACK_TEXT_LIMIT: usize = 38_000;

/// The longest subject shown, in characters: it is a heading, not a second report.
const SUBJECT_LIMIT: usize = 250;

/// The webhook channel, its URL read and checked.
pub(crate) struct Slack {
    url: reqwest::Url,
    /// `scheme://host[:port]`, for messages.
    server: String,
    client: reqwest::Client,
    /// `retries`, `backoff` and `max_backoff` of the config.
    retry: RetryPolicy,
}

impl std::fmt::Debug for Slack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL is the secret; only its origin is shown.
        f.debug_struct("Slack")
            .field("server", &self.server)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Slack {
    /// Checks `config`, adding each problem to `problems`; `None` when there was one.
    pub(crate) fn new(config: &SlackConfig, problems: &mut Vec<String>) -> Option<Slack> {
        let (setting, text) = match (&config.webhook_url, &config.webhook_url_file) {
            (Some(_), Some(_)) => {
                problems
                    .push("notify.slack: set only one of webhook_url and webhook_url_file".into());
                return None;
            }
            (None, None) => {
                problems.push("notify.slack: webhook_url_file or webhook_url is required".into());
                return None;
            }
            (Some(url), None) => ("webhook_url", url.expose().trim().to_string()),
            (None, Some(path)) => match read_secret("webhook_url_file", path) {
                Ok(url) => ("webhook_url_file", url.trim().to_string()),
                Err(e) => {
                    problems.push(format!("notify.slack.{e}"));
                    return None;
                }
            },
        };
        // The messages below leave the URL out: it is the secret.
        let url = match reqwest::Url::parse(&text) {
            Ok(url) => url,
            Err(e) => {
                problems.push(format!("notify.slack.{setting}: not a URL: {e}"));
                return None;
            }
        };
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            problems.push(format!(
                "notify.slack.{setting}: must be an http:// or https:// URL with a host (the scheme is {:?})",
                url.scheme()
            ));
            return None;
        }
        // No proxy from the environment, as for every HTTP client of the engine: it talks to
        // exactly the address it is given. No redirects: a POST that is redirected is a
        // misconfigured URL, better reported than followed with the body.
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build();
        let client = match client {
            Ok(client) => client,
            Err(e) => {
                problems.push(format!(
                    "notify.slack: cannot build the HTTP client: {}",
                    error_chain(&e.without_url())
                ));
                return None;
            }
        };
        Some(Slack {
            server: url.origin().ascii_serialization(),
            url,
            client,
            retry: RetryPolicy::new(config.backoff, config.max_backoff, 1)
                .with_retries(config.retries),
        })
    }

    /// Posts `message`, retrying what may pass on a second try.
    pub(crate) async fn send(&self, message: &Message) -> Result<String> {
        let failed = |message: String| NotifyError::Slack {
            server: self.server.clone(),
            message,
        };
        let body = json!({ "text": slack_text(message) }).to_string();
        let what = format!("Slack post to {}", self.server);
        let outcome = self
            .retry
            .run(
                &what,
                || self.post(&body),
                |refused: &Refused| refused.retryable,
            )
            .await;
        match outcome {
            Ok(((), attempts)) => Ok(format!("accepted by {} (attempt {attempts})", self.server)),
            Err(setpoint_retry::Error::Failed { error, attempts }) => {
                Err(failed(if error.retryable && attempts > 1 {
                    format!("gave up after {attempts} attempts: {}", error.message)
                } else {
                    error.message
                }))
            }
            Err(deadline @ setpoint_retry::Error::DeadlineExceeded { .. }) => {
                Err(failed(deadline.to_string()))
            }
        }
    }

    /// One POST of `body`.
    async fn post(&self, body: &str) -> std::result::Result<(), Refused> {
        let sent = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await;
        let (message, retryable) = match sent {
            Ok(response) if response.status().is_success() => return Ok(()),
            Ok(response) => {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                let retryable = status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS;
                (format!("HTTP {status}: {}", excerpt(&text)), retryable)
            }
            Err(e) => (error_chain(&e.without_url()), true),
        };
        Err(Refused {
            // Redacted here, as the retry warnings show it too.
            message: self.redact(&message),
            retryable,
        })
    }

    /// `text` without the URL's secret parts, should the receiver or a library have echoed them.
    fn redact(&self, text: &str) -> String {
        let mut text = text.replace(self.url.as_str(), &self.server);
        let path = self.url.path();
        if path.len() > 1 {
            text = text.replace(path, "/…");
        }
        if let Some(query) = self.url.query().filter(|q| !q.is_empty()) {
            text = text.replace(query, "…");
        }
        text
    }
}

/// A POST that failed: what the receiver or the transport said, redacted, and whether it may
/// pass on a second try.
struct Refused {
    message: String,
    retryable: bool,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The webhook's `text` for `message`: the subject in bold, then the plain-text report in a
/// code block (reports are aligned tables), cut at whole lines to at most [`SLACK_TEXT_LIMIT`]
/// characters with a note saying how many lines were left out.
pub fn slack_text(message: &Message) -> String {
    let subject = escape(message.subject.trim());
    let subject: String = match subject.char_indices().nth(SUBJECT_LIMIT) {
        Some((cut, _)) => format!("{}…", &subject[..cut]),
        None => subject,
    };
    let head = if subject.is_empty() {
        "```\n".to_string()
    } else {
        format!("*{subject}*\n```\n")
    };
    const FOOT: &str = "\n```";
    // A fence inside the report would end the code block early; a zero-width space between
    // the backticks keeps it on screen but breaks the fence.
    let body = escape(&message.text).replace("```", "``\u{200b}`");
    let body = body.trim_end_matches('\n');

    let chars = |s: &str| s.chars().count();
    if chars(&head) + chars(body) + chars(FOOT) <= SLACK_TEXT_LIMIT {
        return format!("{head}{body}{FOOT}");
    }
    // Room for the note, whose line count has at most a few digits.
    const NOTE_ROOM: usize = 64;
    let budget = SLACK_TEXT_LIMIT.saturating_sub(chars(&head) + chars(FOOT) + NOTE_ROOM);
    let lines: Vec<&str> = body.split('\n').collect();
    let mut kept = Vec::new();
    let mut used = 0;
    for line in &lines {
        let cost = chars(line) + 1;
        if used + cost > budget {
            break;
        }
        kept.push(line.to_string());
        used += cost;
    }
    let whole = kept.len();
    if whole == 0 {
        // One line longer than the budget: show its start rather than nothing.
        kept.push(lines.first().unwrap_or(&"").chars().take(budget).collect());
    }
    let more = lines.len() - whole;
    let unit = if more == 1 { "line" } else { "lines" };
    format!(
        "{head}{}{FOOT}\n_… (truncated, {more} more {unit})_",
        kept.join("\n")
    )
}

/// Slack's escaping: `&`, `<` and `>` are its control characters (`<!channel>` notifies a whole
/// channel, `<url|text>` is a link), so a report never triggers either.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(subject: &str, text: &str) -> Message {
        Message {
            subject: subject.into(),
            text: text.into(),
            html: None,
        }
    }

    #[test]
    fn the_text_is_the_bold_subject_and_the_report_in_a_code_block() {
        assert_eq!(
            slack_text(&message("Weekly report", "a  1\nb  2\n")),
            "*Weekly report*\n```\na  1\nb  2\n```"
        );
    }

    #[test]
    fn control_characters_and_fences_are_neutralised() {
        let text = slack_text(&message("p95 < 5ms & more", "<!channel>\n```\nx > y"));
        assert_eq!(
            text,
            "*p95 &lt; 5ms &amp; more*\n```\n&lt;!channel&gt;\n``\u{200b}`\nx &gt; y\n```"
        );
    }

    #[test]
    fn a_long_report_is_cut_at_whole_lines_with_a_note() {
        let report: String = (0..2_000)
            .map(|i| format!("row {i:05} {}\n", "x".repeat(40)))
            .collect();
        let text = slack_text(&message("Weekly", &report));
        assert!(
            text.chars().count() <= SLACK_TEXT_LIMIT,
            "{}",
            text.chars().count()
        );
        let kept = text.lines().filter(|l| l.starts_with("row ")).count();
        assert!(kept > 700, "{kept}");
        let note = format!("\n```\n_… (truncated, {} more lines)_", 2_000 - kept);
        assert!(text.ends_with(&note), "{}", &text[text.len() - 80..]);
        // Each kept line is whole.
        assert!(
            text.lines()
                .filter(|l| l.starts_with("row "))
                .all(|l| l.len() == 50)
        );
    }

    #[test]
    fn one_huge_line_is_cut_inside() {
        let text = slack_text(&message("Weekly", &"y".repeat(100_000)));
        assert!(text.chars().count() <= SLACK_TEXT_LIMIT);
        assert!(text.ends_with("\n```\n_… (truncated, 1 more line)_"));
        assert!(text.contains(&"y".repeat(30_000)));
    }
}
