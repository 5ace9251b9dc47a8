//! The weekly report sent after `setpoint run --once` by email through a local SMTP sink and to
//! a Slack-compatible webhook (a receiver inside the test): targets, classes, verdicts,
//! proposals and what awaits review, in both.

use setpoint_test_support::{SmtpSink, slack_webhook};

use crate::setpoint_binary;

#[test]
fn the_weekly_report_goes_out_by_email_and_to_slack() {
    let smtp = SmtpSink::start(false);
    let slack = slack_webhook();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("slack-webhook"),
        format!("{}/services/T000/B000/secret-token\n", slack.url()),
    )
    .unwrap();
    let config = dir.path().join("setpoint.yaml");
    let smtp_server = smtp.server();
    std::fs::write(
        &config,
        format!(
            "state_dir: ./state\n\
             loops:\n  - name: weekly-rightsizing\n    plugin: builtin:postgres\n\
             \x20   source: {{ kind: simulated, seed: 42 }}\n\
             \x20   classifier: {{ kind: bootstrap }}\n\
             notify:\n  email:\n    smtp: {smtp_server}\n    security: none\n\
             \x20   from: setpoint@example.com\n    to: [sre@example.com, dba@example.com]\n\
             \x20 slack:\n    webhook_url_file: ./slack-webhook\n"
        ),
    )
    .unwrap();
    let output = std::process::Command::new(setpoint_binary())
        .arg("--config")
        .arg(&config)
        .args(["run", "--once", "--now", "2026-11-23T06:00:00Z"])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("notify:"), "{stderr}");

    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    let mail = &mails[0];
    assert!(mail.from.contains("setpoint@example.com"), "{mail:?}");
    assert_eq!(mail.to.len(), 2, "{mail:?}");
    let body = mail.data.replace("=\r\n", "");
    for needle in [
        "Subject: [setpoint] weekly report",
        "awaiting review",
        "classes: remain 26, scale_down 10, scale_up 18",
        "verdicts: hold 28, review 26",
        "pg-reporting-01",
    ] {
        assert!(body.contains(needle), "{needle:?} not in the mail:\n{body}");
    }

    let posts = slack.requests();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].path(), "/services/T000/B000/secret-token");
    let text = posts[0].json()["text"].as_str().unwrap().to_string();
    assert!(text.contains("weekly report"), "{text}");
    assert!(text.contains("26 awaiting review"), "{text}");
    assert!(text.contains("#1 pg-"), "{text}");
    assert!(text.contains("verdicts: hold 28, review 26"), "{text}");

    // --no-notify sends nothing.
    let quiet = std::process::Command::new(setpoint_binary())
        .arg("--config")
        .arg(&config)
        .args(["run", "--once", "--no-notify"])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(quiet.status.success());
    assert_eq!(slack.requests().len(), 1);
}
