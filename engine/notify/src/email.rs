//! Email through SMTP with lettre. One connection per message: a weekly report does not need a
//! pool, and a fresh connection picks up a server that moved or restarted since the last week.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::config::{EmailConfig, Security, read_secret};
use crate::{Message, NotifyError, Result, error_chain};

/// The email channel, its settings checked and its password read.
pub(crate) struct Email {
    /// `host:port`, for messages.
    server: String,
    from: Mailbox,
    to: Vec<Mailbox>,
    subject_prefix: String,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl std::fmt::Debug for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The transport holds the credentials: keep them out of logs.
        f.debug_struct("Email")
            .field("server", &self.server)
            .field("from", &self.from)
            .field("to", &self.to)
            .finish_non_exhaustive()
    }
}

impl Email {
    /// Checks `config`, adding each problem to `problems`; `None` when there was one.
    pub(crate) fn new(config: &EmailConfig, problems: &mut Vec<String>) -> Option<Email> {
        let before = problems.len();
        let mut problem = |message: String| problems.push(format!("notify.email.{message}"));

        let default_port = match config.security {
            Security::Tls => 465,
            Security::None | Security::StartTls => 587,
        };
        let server = parse_server(&config.smtp, default_port)
            .map_err(|e| problem(format!("smtp: {e}")))
            .ok();

        let from = config
            .from
            .parse::<Mailbox>()
            .map_err(|e| {
                problem(format!(
                    "from: {:?} is not an email address: {e}",
                    config.from
                ))
            })
            .ok();
        if config.to.is_empty() {
            problem("to: at least one recipient is required".into());
        }
        let to: Vec<Mailbox> = config
            .to
            .iter()
            .enumerate()
            .filter_map(|(i, address)| {
                address
                    .parse::<Mailbox>()
                    .map_err(|e| {
                        problem(format!("to[{i}]: {address:?} is not an email address: {e}"))
                    })
                    .ok()
            })
            .collect();

        let credentials = match (&config.username, &config.password_file) {
            (Some(username), Some(path)) => {
                if username.is_empty() {
                    problem("username: is empty".into());
                }
                match read_secret("password_file", path) {
                    Ok(password) => Some(Credentials::new(username.clone(), password)),
                    Err(e) => {
                        problem(e);
                        None
                    }
                }
            }
            (Some(_), None) => {
                problem("password_file: required with username".into());
                None
            }
            (None, Some(_)) => {
                problem("username: required with password_file".into());
                None
            }
            (None, None) => None,
        };

        let (server, from) = (server?, from?);
        let (host, port) = server;
        let tls = match config.security {
            Security::None => Tls::None,
            Security::StartTls | Security::Tls => match TlsParameters::new(host.clone()) {
                Ok(parameters) if config.security == Security::Tls => Tls::Wrapper(parameters),
                Ok(parameters) => Tls::Required(parameters),
                Err(e) => {
                    problem(format!("security: cannot set up TLS: {}", error_chain(&e)));
                    return None;
                }
            },
        };
        if problems.len() > before {
            return None;
        }
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.clone())
            .port(port)
            .tls(tls)
            .timeout(Some(config.timeout));
        if let Some(credentials) = credentials {
            builder = builder.credentials(credentials);
        }
        Some(Email {
            server: format_server(&host, port),
            from,
            to,
            subject_prefix: config.subject_prefix.clone(),
            transport: builder.build(),
        })
    }

    /// Sends `message` to every recipient; the detail names the server and its answer.
    pub(crate) async fn send(&self, message: &Message) -> Result<String> {
        let failed = |message: String| NotifyError::Email {
            server: self.server.clone(),
            message,
        };
        let email = self
            .compose(message)
            .map_err(|e| failed(format!("cannot build the message: {}", error_chain(&e))))?;
        let response = self
            .transport
            .send(email)
            .await
            .map_err(|e| failed(error_chain(&e)))?;
        Ok(format!(
            "accepted by {} for {} recipient(s): {} {}",
            self.server,
            self.to.len(),
            response.code(),
            response.message().collect::<Vec<_>>().join(" ")
        ))
    }

    fn compose(&self, message: &Message) -> Result<lettre::Message, lettre::error::Error> {
        let subject = if self.subject_prefix.is_empty() {
            message.subject.clone()
        } else {
            format!("{} {}", self.subject_prefix, message.subject)
        };
        let mut builder = lettre::Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .message_id(Some(message_id(self.from.email.domain())));
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        match &message.html {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(
                message.text.clone(),
                html.clone(),
            )),
            None => builder.singlepart(SinglePart::plain(message.text.clone())),
        }
    }
}

/// A unique Message-ID in the sender's domain (lettre would use `localhost` without its
/// `hostname` feature, which some spam filters count against a message).
fn message_id(domain: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("<setpoint.{nanos}.{}.{n}@{domain}>", std::process::id())
}

/// Splits `host:port`, `host`, `[v6]:port` or `[v6]`.
fn parse_server(text: &str, default_port: u16) -> Result<(String, u16), String> {
    let text = text.trim();
    let bad = || format!("{text:?} is not host:port");
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else {
        match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if host.is_empty() || host.contains(['/', ' ', '@']) {
        return Err(bad());
    }
    let port = match port {
        Some(port) => match port.parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => return Err(format!("{text:?}: {port:?} is not a port")),
        },
        None => default_port,
    };
    Ok((host.to_string(), port))
}

fn format_server(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_parse_with_and_without_port() {
        assert_eq!(
            parse_server("smtp.example.com:25", 587),
            Ok(("smtp.example.com".into(), 25))
        );
        assert_eq!(
            parse_server("smtp.example.com", 465),
            Ok(("smtp.example.com".into(), 465))
        );
        assert_eq!(parse_server("[::1]:2525", 587), Ok(("::1".into(), 2525)));
        assert_eq!(parse_server("[::1]", 587), Ok(("::1".into(), 587)));
        assert!(parse_server("smtp.example.com:x", 587).is_err());
        assert!(parse_server("smtp.example.com:0", 587).is_err());
        assert!(parse_server(":25", 587).is_err());
        assert!(parse_server("smtp://example.com", 587).is_err());
        assert!(parse_server("::1:25", 587).is_err());
    }

    #[test]
    fn message_ids_are_unique_and_in_the_domain() {
        let (a, b) = (message_id("example.com"), message_id("example.com"));
        assert_ne!(a, b);
        assert!(
            a.starts_with("<setpoint.") && a.ends_with("@example.com>"),
            "{a}"
        );
    }
}
