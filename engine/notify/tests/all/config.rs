use std::io::Write;
use std::time::Duration;

use setpoint_notify::{Notifier, NotifyConfig, NotifyError, Security};

fn parse(yaml: &str) -> Result<NotifyConfig, String> {
    serde_yaml::from_str(yaml).map_err(|e| e.to_string())
}

/// The problems `Notifier::new` finds, or a panic if it finds none.
fn problems(config: &NotifyConfig) -> Vec<String> {
    match Notifier::new(config) {
        Err(NotifyError::Invalid { problems }) => problems,
        other => panic!("expected problems, got {other:?}"),
    }
}

#[test]
fn the_documented_example_parses_and_builds() {
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("smtp-password");
    let webhook = dir.path().join("slack-webhook");
    std::fs::write(&password, "hunter2\n").unwrap();
    std::fs::write(&webhook, "https://hooks.slack.example/services/T/B/x\n").unwrap();
    // The example of the crate documentation, with the secret files in the temporary directory.
    let yaml = format!(
        r#"
email:
  smtp: smtp.example.com:587
  security: starttls
  username: setpoint@example.com
  password_file: {}
  from: "setpoint <setpoint@example.com>"
  to: [sre@example.com, dba@example.com]
  subject_prefix: "[setpoint]"
  timeout: 10s
slack:
  webhook_url_file: {}
  timeout: 10s
  retries: 3
  backoff: 800ms
  max_backoff: 30s
"#,
        password.display(),
        webhook.display()
    );
    let config = parse(&yaml).unwrap();
    let email = config.email.as_ref().unwrap();
    assert_eq!(email.security, Security::StartTls);
    assert_eq!(email.to.len(), 2);
    let slack = config.slack.as_ref().unwrap();
    assert_eq!(slack.backoff, Duration::from_millis(800));
    let notifier = Notifier::new(&config).unwrap();
    assert_eq!(notifier.channels().len(), 2);
    let debug = format!("{notifier:?} {config:?}");
    assert!(
        !debug.contains("hunter2") && !debug.contains("/services/"),
        "{debug}"
    );
}

#[test]
fn defaults_fill_what_is_left_out() {
    let config = parse(
        "email: {smtp: mail.example.com, from: a@example.com, to: b@example.com}\n\
         slack: {webhook_url: 'https://hooks.example/x'}",
    )
    .unwrap();
    let email = config.email.unwrap();
    assert_eq!(email.security, Security::StartTls);
    assert_eq!(
        email.to,
        ["b@example.com"],
        "a single address is a list of one"
    );
    assert_eq!(email.subject_prefix, "[setpoint]");
    assert_eq!(email.timeout, Duration::from_secs(10));
    let slack = config.slack.unwrap();
    assert_eq!(slack.retries, 3);
    assert_eq!(slack.backoff, Duration::from_millis(800));
    assert_eq!(slack.max_backoff, Duration::from_secs(30));
    assert_eq!(slack.timeout, Duration::from_secs(10));
}

#[test]
fn unknown_fields_are_refused() {
    for yaml in [
        "emails: {}",
        "email: {smtp: h, from: a@example.com, to: b@example.com, pasword_file: /x}",
        "slack: {webhook_url: 'https://h/x', retry: 3}",
    ] {
        let error = parse(yaml).unwrap_err();
        assert!(error.contains("unknown field"), "{yaml}: {error}");
    }
    let error = parse("email: {smtp: h, from: a@example.com, to: b@example.com, security: ssl}")
        .unwrap_err();
    assert!(error.contains("unknown variant `ssl`"), "{error}");
    let error = parse("slack: {webhook_url: 'https://h/x', timeout: soon}").unwrap_err();
    assert!(error.contains("invalid duration \"soon\""), "{error}");
}

#[test]
fn both_webhook_url_and_webhook_url_file_are_refused() {
    let config =
        parse("slack: {webhook_url: 'https://h/x', webhook_url_file: /run/secrets/hook}").unwrap();
    assert_eq!(
        problems(&config),
        ["notify.slack: set only one of webhook_url and webhook_url_file"]
    );
    let config = parse("slack: {retries: 1}").unwrap();
    assert_eq!(
        problems(&config),
        ["notify.slack: webhook_url_file or webhook_url is required"]
    );
}

#[test]
fn a_webhook_must_be_http_and_its_url_is_not_shown() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "ftp://hooks.example/services/secret").unwrap();
    let yaml = format!("slack: {{webhook_url_file: {}}}", file.path().display());
    let problems = problems(&parse(&yaml).unwrap());
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0]
            .starts_with("notify.slack.webhook_url_file: must be an http:// or https:// URL"),
        "{problems:?}"
    );
    assert!(!problems[0].contains("secret"), "{problems:?}");

    let config = parse("slack: {webhook_url: 'not a url/secret'}").unwrap();
    let problems = self::problems(&config);
    assert!(
        problems[0].starts_with("notify.slack.webhook_url: not a URL"),
        "{problems:?}"
    );
    assert!(!problems[0].contains("secret"), "{problems:?}");
}

#[test]
fn a_missing_password_file_is_named() {
    let config = parse(
        "email: {smtp: h, from: a@example.com, to: b@example.com, \
         username: u, password_file: /nonexistent/smtp-password}",
    )
    .unwrap();
    let problems = problems(&config);
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0]
            .starts_with("notify.email.password_file: cannot read /nonexistent/smtp-password: "),
        "{problems:?}"
    );
    let error = Notifier::new(&config).unwrap_err().to_string();
    assert!(
        error.starts_with("invalid notify configuration: notify.email.password_file"),
        "{error}"
    );
}

#[test]
fn every_email_problem_is_reported_at_once_with_its_setting() {
    let config = parse(
        "email: {smtp: 'h:99999', from: not-an-address, to: [b@example.com, 'x@'], username: u}",
    )
    .unwrap();
    let problems = problems(&config);
    let settings: Vec<&str> = problems
        .iter()
        .map(|p| p.split(':').next().unwrap())
        .collect();
    assert_eq!(
        settings,
        [
            "notify.email.smtp",
            "notify.email.from",
            "notify.email.to[1]",
            "notify.email.password_file"
        ],
        "{problems:?}"
    );
    assert!(
        problems[3].contains("required with username"),
        "{problems:?}"
    );

    let config = parse("email: {smtp: h, from: a@example.com, to: [], password_file: /x}").unwrap();
    let problems = self::problems(&config);
    assert_eq!(
        problems,
        [
            "notify.email.to: at least one recipient is required",
            "notify.email.username: required with password_file"
        ]
    );
}
