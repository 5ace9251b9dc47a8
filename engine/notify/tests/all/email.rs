use std::io::Write;
use std::time::Duration;

use setpoint_notify::{
    Channel, EmailConfig, Message, Notifier, NotifyConfig, NotifyError, Security,
};

use setpoint_test_support::{SmtpSink, closed_port};

fn report(html: Option<&str>) -> Message {
    Message {
        subject: "Weekly report 2026-W18".into(),
        text: "target     proposals  applied\npg-main    2          1\nredis-eu   0          0\n"
            .into(),
        html: html.map(String::from),
    }
}

fn email_config(server: &str) -> EmailConfig {
    let mut config = EmailConfig::new(
        server,
        "setpoint <setpoint@example.com>",
        vec![
            "sre@example.com".into(),
            "DBA Team <dba@example.com>".into(),
        ],
    );
    // The sink speaks no TLS.
    config.security = Security::None;
    config.timeout = Duration::from_secs(5);
    config
}

fn notifier(email: EmailConfig) -> Notifier {
    Notifier::new(&NotifyConfig {
        email: Some(email),
        slack: None,
    })
    .unwrap()
}

#[tokio::test]
async fn the_email_arrives_with_its_envelope_subject_and_text() {
    let sink = SmtpSink::start(false);
    let deliveries = notifier(email_config(sink.server()))
        .send(&report(None))
        .await;

    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].channel, Channel::Email);
    let detail = deliveries[0].result.as_ref().unwrap();
    assert!(
        detail.contains(sink.server()) && detail.contains("250"),
        "{detail}"
    );

    let mails = sink.mails();
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert_eq!(mail.from, "setpoint@example.com");
    assert_eq!(mail.to, ["sre@example.com", "dba@example.com"]);
    assert_eq!(mail.auth, None, "no login without credentials");
    let data = &mail.data;
    assert!(
        data.contains("\r\nSubject: [setpoint] Weekly report 2026-W18\r\n"),
        "{data}"
    );
    assert!(
        data.contains("From: setpoint <setpoint@example.com>\r\n"),
        "{data}"
    );
    assert!(
        data.contains("To: sre@example.com, \"DBA Team\" <dba@example.com>\r\n"),
        "{data}"
    );
    assert!(data.contains("Message-ID: <setpoint."), "{data}");
    assert!(
        data.contains("Content-Type: text/plain; charset=utf-8"),
        "{data}"
    );
    assert!(!data.contains("multipart"), "{data}");
    assert!(
        data.contains("\r\ntarget     proposals  applied\r\npg-main    2          1\r\n"),
        "{data}"
    );
}

#[tokio::test]
async fn the_html_alternative_is_sent_with_the_text_as_multipart_alternative() {
    let sink = SmtpSink::start(false);
    let html = "<table><tr><td>pg-main</td><td>2</td></tr></table>";
    let mut config = email_config(sink.server());
    config.subject_prefix = String::new();
    let deliveries = notifier(config).send(&report(Some(html))).await;
    assert!(deliveries[0].is_ok(), "{deliveries:?}");

    let data = &sink.mails()[0].data;
    assert!(
        data.contains("\r\nSubject: Weekly report 2026-W18\r\n"),
        "no prefix: {data}"
    );
    assert!(
        data.contains("Content-Type: multipart/alternative;"),
        "{data}"
    );
    let text = data.find("Content-Type: text/plain").expect("a text part");
    let html_part = data.find("Content-Type: text/html").expect("an html part");
    // The preferred alternative comes last: clients that can show HTML take it.
    assert!(text < html_part, "{data}");
    assert!(data.contains("pg-main    2          1"), "{data}");
    assert!(data.contains(html), "{data}");
}

#[tokio::test]
async fn credentials_come_from_the_password_file() {
    let sink = SmtpSink::start(false);
    let mut password = tempfile::NamedTempFile::new().unwrap();
    writeln!(password, "s3cret pass\nignored second line").unwrap();
    let mut config = email_config(sink.server());
    config.username = Some("setpoint@example.com".into());
    config.password_file = Some(password.path().to_path_buf());

    let deliveries = notifier(config).send(&report(None)).await;
    assert!(deliveries[0].is_ok(), "{deliveries:?}");
    assert_eq!(
        sink.mails()[0].auth,
        Some(("setpoint@example.com".into(), "s3cret pass".into()))
    );
}

#[tokio::test]
async fn a_rejected_recipient_is_reported_with_the_server() {
    let sink = SmtpSink::start(true);
    let deliveries = notifier(email_config(sink.server()))
        .send(&report(None))
        .await;

    assert_eq!(deliveries[0].channel, Channel::Email);
    let error = deliveries[0].result.clone().unwrap_err();
    let NotifyError::Email { server, message } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(server, sink.server());
    assert!(message.contains("550"), "{message}");
    assert!(message.contains("User unknown"), "{message}");
    let text = error.to_string();
    assert!(
        text.starts_with(&format!("email via SMTP server {}: ", sink.server())),
        "{text}"
    );
    assert!(sink.mails().is_empty());
}

#[tokio::test]
async fn an_unreachable_server_is_named_with_host_and_port() {
    let address = closed_port();
    let mut config = email_config(&address.to_string());
    config.timeout = Duration::from_secs(2);
    let deliveries = notifier(config).send(&report(None)).await;

    let error = deliveries[0].result.clone().unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains(&format!("127.0.0.1:{}", address.port())),
        "{text}"
    );
    assert!(text.to_lowercase().contains("connection refused"), "{text}");
}
