//! The weekly report sent after `setpoint run --once` by email through a local SMTP sink and to
//! a Slack-compatible webhook (a receiver inside the test): targets, classes, verdicts,
//! proposals and what awaits review, in both.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::json;

use crate::http_fake::HttpFake;
use crate::setpoint_binary;

/// What the SMTP sink received.
#[derive(Debug, Default, Clone)]
struct Mail {
    from: String,
    to: Vec<String>,
    data: String,
}

/// A minimal SMTP server on 127.0.0.1 that accepts every message (no TLS, no auth).
fn smtp_sink() -> (u16, Arc<Mutex<Vec<Mail>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mails = Arc::new(Mutex::new(Vec::new()));
    let received = mails.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut mail = Mail::default();
            let _ = stream.write_all(b"220 sink ESMTP\r\n");
            let mut line = String::new();
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let command = line.trim_end().to_string();
                let upper = command.to_ascii_uppercase();
                let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                    b"250-sink\r\n250 8BITMIME\r\n"
                } else if let Some(from) = upper.strip_prefix("MAIL FROM:") {
                    mail.from = command[command.len() - from.len()..].to_string();
                    b"250 ok\r\n"
                } else if let Some(to) = upper.strip_prefix("RCPT TO:") {
                    mail.to
                        .push(command[command.len() - to.len()..].to_string());
                    b"250 ok\r\n"
                } else if upper == "DATA" {
                    let _ = stream.write_all(b"354 go ahead\r\n");
                    let mut data = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == ".\r\n" {
                            break;
                        }
                        data.push_str(&line);
                    }
                    mail.data = data;
                    received.lock().unwrap().push(mail.clone());
                    b"250 queued\r\n"
                } else if upper == "QUIT" {
                    let _ = stream.write_all(b"221 bye\r\n");
                    break;
                } else {
                    b"250 ok\r\n"
                };
                let _ = stream.write_all(reply);
            }
        }
    });
    (port, mails)
}

#[test]
fn the_weekly_report_goes_out_by_email_and_to_slack() {
    let (smtp_port, mails) = smtp_sink();
    let slack = HttpFake::start(|_| (200, json!("ok")));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("slack-webhook"),
        format!("{}/services/T000/B000/secret-token\n", slack.url),
    )
    .unwrap();
    let config = dir.path().join("setpoint.yaml");
    std::fs::write(
        &config,
        format!(
            "state_dir: ./state\n\
             loops:\n  - name: weekly-rightsizing\n    plugin: builtin:postgres\n\
             \x20   source: {{ kind: simulated, seed: 42 }}\n\
             \x20   classifier: {{ kind: bootstrap }}\n\
             notify:\n  email:\n    smtp: 127.0.0.1:{smtp_port}\n    security: none\n\
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

    let mails = mails.lock().unwrap().clone();
    assert_eq!(mails.len(), 1, "{mails:?}");
    let mail = &mails[0];
    assert!(mail.from.contains("setpoint@example.com"), "{mail:?}");
    assert_eq!(mail.to.len(), 2, "{mail:?}");
    let body = mail.data.replace("=\r\n", "");
    for needle in [
        "Subject: [setpoint] weekly report",
        "awaiting review",
        "classes: remain 34, scale_down 10, scale_up 10",
        "verdicts: hold 36, review 18",
        "pg-reporting-01",
    ] {
        assert!(body.contains(needle), "{needle:?} not in the mail:\n{body}");
    }

    let posts = slack.requests();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].path(), "/services/T000/B000/secret-token");
    let text = posts[0].json()["text"].as_str().unwrap().to_string();
    assert!(text.contains("weekly report"), "{text}");
    assert!(text.contains("18 awaiting review"), "{text}");
    assert!(text.contains("#1 pg-"), "{text}");
    assert!(text.contains("verdicts: hold 36, review 18"), "{text}");

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
