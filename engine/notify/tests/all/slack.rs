use std::io::Write;
use std::time::Duration;

use setpoint_notify::{
    Channel, EmailConfig, Message, Notifier, NotifyConfig, NotifyError, Security, SlackConfig,
};

use setpoint_test_support::{HttpFake, Response, SmtpSink, closed_port, slack_webhook};

/// The secret part of the webhook URLs in these tests.
const SECRET: &str = "/services/T000/B000/XXXXsecretXXXX";

fn report() -> Message {
    Message {
        subject: "Weekly report 2026-W18".into(),
        text: "target     proposals  applied\npg-main    2          1\n".into(),
        html: Some("<p>ignored by Slack</p>".into()),
    }
}

/// A config with the URL `base + SECRET` in a file, fast retries; the file lives as long as
/// the returned handle.
fn slack_config(base: &str) -> (SlackConfig, tempfile::NamedTempFile) {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "{base}{SECRET}").unwrap();
    let mut config = SlackConfig::new(file.path());
    config.timeout = Duration::from_secs(5);
    config.backoff = Duration::from_millis(10);
    config.max_backoff = Duration::from_millis(40);
    (config, file)
}

fn notifier(slack: SlackConfig) -> Notifier {
    Notifier::new(&NotifyConfig {
        email: None,
        slack: Some(slack),
    })
    .unwrap()
}

/// Checks that an error names the receiver and not the secret path.
fn assert_no_secret(error: &NotifyError, origin: &str) {
    let text = error.to_string();
    assert!(
        text.starts_with(&format!("slack webhook at {origin}: ")),
        "{text}"
    );
    assert!(
        !text.contains("secret") && !text.contains("/services"),
        "{text}"
    );
    assert!(!format!("{error:?}").contains("secret"), "{error:?}");
}

#[tokio::test]
async fn the_report_is_posted_as_json_text_with_the_bold_subject_and_the_report() {
    let receiver = slack_webhook();
    let (config, _file) = slack_config(receiver.url());
    let deliveries = notifier(config).send(&report()).await;

    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].channel, Channel::Slack);
    let detail = deliveries[0].result.as_ref().unwrap();
    assert_eq!(
        detail,
        &format!("accepted by {} (attempt 1)", receiver.url())
    );

    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.target, SECRET, "the URL is the file's first line");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(
        request.json(),
        serde_json::json!({
            "text": "*Weekly report 2026-W18*\n```\ntarget     proposals  applied\npg-main    2          1\n```"
        })
    );
}

#[tokio::test]
async fn a_500_is_retried_then_accepted() {
    let receiver = HttpFake::start(|r| match r.index {
        0 => Response::text(500, "internal error"),
        _ => Response::text(200, "ok"),
    });
    let (config, _file) = slack_config(receiver.url());
    let deliveries = notifier(config).send(&report()).await;

    let detail = deliveries[0].result.as_ref().unwrap();
    assert!(detail.ends_with("(attempt 2)"), "{detail}");
    let requests = receiver.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].body, requests[1].body, "the same message again");
}

#[tokio::test]
async fn retries_stop_after_the_configured_number_and_the_error_keeps_the_secret() {
    // The receiver echoes the path, as some proxies do in their error pages.
    let receiver =
        HttpFake::start(|r| Response::text(503, format!("no upstream for {}", r.target)));
    let (mut config, _file) = slack_config(receiver.url());
    config.retries = 2;
    let deliveries = notifier(config).send(&report()).await;

    assert_eq!(receiver.requests().len(), 3, "one try and two retries");
    let error = deliveries[0].result.clone().unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("gave up after 3 attempts: HTTP 503"),
        "{text}"
    );
    assert!(text.contains("no upstream for /…"), "{text}");
    assert_no_secret(&error, receiver.url());
}

#[tokio::test]
async fn a_400_is_not_retried_and_is_reported() {
    let receiver = HttpFake::answering(Response::text(400, "invalid_payload"));
    let (config, _file) = slack_config(receiver.url());
    let deliveries = notifier(config).send(&report()).await;

    assert_eq!(receiver.requests().len(), 1);
    let error = deliveries[0].result.clone().unwrap_err();
    let NotifyError::Slack { server, message } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(server, receiver.url());
    assert_eq!(message, "HTTP 400 Bad Request: invalid_payload");
    assert_no_secret(&error, receiver.url());
}

#[tokio::test]
async fn an_unreachable_webhook_is_named_without_its_secret_path() {
    let address = closed_port();
    let origin = format!("http://{address}");
    let (mut config, _file) = slack_config(&origin);
    config.retries = 1;
    let deliveries = notifier(config).send(&report()).await;

    let error = deliveries[0].result.clone().unwrap_err();
    let text = error.to_string();
    assert!(text.contains("gave up after 2 attempts"), "{text}");
    assert_no_secret(&error, &origin);
}

#[tokio::test]
async fn one_failing_channel_does_not_stop_the_other() {
    let receiver = slack_webhook();
    let (slack, _file) = slack_config(receiver.url());
    let mut email = EmailConfig::new(
        closed_port().to_string(),
        "setpoint@example.com",
        vec!["sre@example.com".into()],
    );
    email.security = Security::None;
    let notifier = Notifier::new(&NotifyConfig {
        email: Some(email),
        slack: Some(slack),
    })
    .unwrap();
    assert_eq!(notifier.channels(), [Channel::Email, Channel::Slack]);

    let deliveries = notifier.send(&report()).await;
    assert_eq!(deliveries.len(), 2);
    assert_eq!(deliveries[0].channel, Channel::Email);
    assert!(!deliveries[0].is_ok());
    assert_eq!(deliveries[1].channel, Channel::Slack);
    assert!(deliveries[1].is_ok(), "{deliveries:?}");
    assert_eq!(receiver.requests().len(), 1);

    // And the other way round: the email goes out when the webhook fails.
    let sink = SmtpSink::start(false);
    let failing = HttpFake::answering(Response::text(404, "no_service"));
    let (slack, _file) = slack_config(failing.url());
    let mut email = EmailConfig::new(
        sink.server(),
        "setpoint@example.com",
        vec!["sre@example.com".into()],
    );
    email.security = Security::None;
    let deliveries = Notifier::new(&NotifyConfig {
        email: Some(email),
        slack: Some(slack),
    })
    .unwrap()
    .send(&report())
    .await;
    assert!(deliveries[0].is_ok(), "{deliveries:?}");
    assert!(!deliveries[1].is_ok());
    assert_eq!(sink.mails().len(), 1);
}

#[tokio::test]
async fn no_channel_sends_nothing() {
    let notifier = Notifier::new(&NotifyConfig::default()).unwrap();
    assert!(notifier.channels().is_empty());
    assert!(notifier.send(&report()).await.is_empty());
}
