//! The webhook actuator against a receiver on 127.0.0.1 that checks the HMAC signature the way
//! a team's automation would: recomputed over `<timestamp>.<body>` with the shared secret.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use setpoint_act::webhook::{
    IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, Webhook, WebhookConfig, signature,
};
use setpoint_act::{ActError, Actuator, Execution, OpStatus, OperationResult};
use setpoint_core::{
    ActionKind, Decision, Operation, Proposal, Reason, Resources, Risk, Target, Verdict,
};
use setpoint_test_support::{HttpFake, Request, Response};

const SECRET: &str = "shared-secret";

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-23T14:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// What the receiver checks; `Err` is the reason it refuses.
fn verify(request: &Request) -> Result<(), String> {
    let timestamp: i64 = request
        .header(TIMESTAMP_HEADER)
        .ok_or("no timestamp")?
        .parse()
        .map_err(|_| "bad timestamp")?;
    let expected = signature(SECRET.as_bytes(), timestamp, &request.body);
    if request.header(SIGNATURE_HEADER) != Some(expected.as_str()) {
        return Err("bad signature".into());
    }
    if (now().timestamp() - timestamp).abs() > 300 {
        return Err("stale".into());
    }
    Ok(())
}

fn config(url: &str, dir: &tempfile::TempDir) -> WebhookConfig {
    let secret = dir.path().join("secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    WebhookConfig {
        backoff: Duration::from_millis(10),
        ..WebhookConfig::new(url, secret)
    }
}

fn target(labels: &[(&str, &str)]) -> Target {
    Target {
        id: "pg-main".into(),
        technology: "postgres".into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        resources: Resources {
            cpu_millicores: 8000,
            memory_bytes: 32 << 30,
            replicas: 1,
            parameters: BTreeMap::new(),
        },
    }
}

fn operations() -> Vec<Operation> {
    vec![
        Operation::Resize {
            cpu_millicores: 4000,
            memory_bytes: 16 << 30,
        },
        Operation::SetParameter {
            name: "shared_buffers".into(),
            value: "4GB".into(),
            requires_restart: true,
        },
    ]
}

async fn run(
    actuator: &Webhook,
    target: &Target,
    dry_run: bool,
) -> Result<Vec<OperationResult>, ActError> {
    let operations = operations();
    let decision = Decision {
        verdict: Verdict::Act,
        proposal: Some(ActionKind::ScaleDown),
        reasons: vec![Reason::new("low_utilisation", "idle for four weeks")],
    };
    let proposal = Proposal {
        action: ActionKind::ScaleDown,
        summary: "8 vCPU / 32 GiB → 4 vCPU / 16 GiB".into(),
        before: target.resources.clone(),
        after: target.resources.clone(),
        operations: operations.clone(),
        risk: Risk::Medium,
        rationale: String::new(),
    };
    let execution = Execution {
        target,
        decision: &decision,
        proposal: &proposal,
        operations: &operations,
        key: "intent-1",
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736"),
        dry_run,
        now: now(),
    };
    actuator.execute(&execution).await
}

#[tokio::test]
async fn the_decision_is_delivered_signed() {
    let server = HttpFake::start(|request| match verify(request) {
        Ok(()) => Response::json(200, &json!({"ok": true})),
        Err(why) => Response::json(401, &json!({"error": why})),
    });
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{}/hooks/setpoint", server.url());
    let actuator = Webhook::new(config(&url, &dir)).unwrap();
    let results = run(&actuator, &target(&[]), false).await.unwrap();
    assert!(results.iter().all(|r| r.status == OpStatus::Delivered));
    assert_eq!(results[0].object, url);

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path(), "/hooks/setpoint");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header(IDEMPOTENCY_HEADER), Some("intent-1"));
    assert_eq!(
        request.header(TIMESTAMP_HEADER),
        Some(now().timestamp().to_string().as_str())
    );
    let body = request.json();
    assert_eq!(body["target"]["id"], "pg-main");
    assert_eq!(body["verdict"], "act");
    assert_eq!(body["decision"]["reasons"][0]["code"], "low_utilisation");
    assert_eq!(body["proposal"]["action"], "scale_down");
    assert_eq!(body["operations"][1]["name"], "shared_buffers");
    assert_eq!(body["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(body["idempotency_key"], "intent-1");
    assert_eq!(body["dry_run"], false);
}

#[tokio::test]
async fn a_wrong_secret_is_what_the_receiver_refuses_and_it_is_not_retried() {
    let server = HttpFake::start(|request| match verify(request) {
        Ok(()) => Response::json(200, &json!({})),
        Err(why) => Response::json(401, &json!({"error": why})),
    });
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(server.url(), &dir);
    std::fs::write(&config.secret_file, "another secret").unwrap();
    config.retries = 3;
    let actuator = Webhook::new(config).unwrap();
    let error = run(&actuator, &target(&[]), false).await.unwrap_err();
    assert!(error.to_string().contains("401"), "{error}");
    assert!(error.to_string().contains("bad signature"), "{error}");
    assert_eq!(server.requests().len(), 1, "a 4xx is final");
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff_and_the_same_signature() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let server = HttpFake::start(move |_| {
        if counter.fetch_add(1, Ordering::SeqCst) < 2 {
            Response::json(503, &json!({"error": "busy"}))
        } else {
            Response::json(202, &json!({}))
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let actuator = Webhook::new(config(server.url(), &dir)).unwrap();
    let started = std::time::Instant::now();
    let results = run(&actuator, &target(&[]), true).await.unwrap();
    assert!(results.iter().all(|r| r.status == OpStatus::DryRun));
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    assert!(requests.iter().all(|r| verify(r).is_ok()));
    assert_eq!(requests[0].json()["dry_run"], true);
    // Backoff 10 ms then 20 ms, each jittered to between half and all of it: 15 ms at least.
    assert!(started.elapsed() >= Duration::from_millis(15));

    // Always failing: gives up after the configured retries.
    let failing = HttpFake::start(|_| Response::json(500, &json!({})));
    let dir = tempfile::tempdir().unwrap();
    let actuator = Webhook::new(WebhookConfig {
        retries: 2,
        ..config(failing.url(), &dir)
    })
    .unwrap();
    let error = run(&actuator, &target(&[]), false).await.unwrap_err();
    assert!(
        error.to_string().contains("gave up after 3 attempts"),
        "{error}"
    );
    assert_eq!(failing.requests().len(), 3);
}

#[tokio::test]
async fn a_url_outside_the_allow_list_is_refused_before_any_request() {
    let allowed = HttpFake::start(|_| Response::json(200, &json!({})));
    let other = HttpFake::start(|_| Response::json(200, &json!({})));
    let dir = tempfile::tempdir().unwrap();
    let actuator = Webhook::new(config(&format!("{}/hooks", allowed.url()), &dir)).unwrap();
    // A target whose discovered labels point elsewhere.
    let redirected = target(&[("webhook_url", &format!("{}/hooks", other.url()))]);
    let error = run(&actuator, &redirected, false).await.unwrap_err();
    let ActError::NotAllowed { site } = &error else {
        panic!("not refused: {error}");
    };
    assert_eq!(site.object, format!("{}/hooks", other.url()));
    assert_eq!(site.target, "pg-main");
    // A path that merely starts like the allowed one.
    let sneaky = target(&[("webhook_url", &format!("{}/hooks-evil", allowed.url()))]);
    assert!(matches!(
        run(&actuator, &sneaky, false).await,
        Err(ActError::NotAllowed { .. })
    ));
    assert!(other.requests().is_empty());
    assert!(allowed.requests().is_empty());
    // Under the allowed prefix, from a label: delivered.
    let labelled = target(&[("webhook_url", &format!("{}/hooks/pg", allowed.url()))]);
    run(&actuator, &labelled, false).await.unwrap();
    assert_eq!(allowed.requests()[0].path(), "/hooks/pg");
}

#[tokio::test]
async fn a_target_without_a_url_is_unusable_and_not_worth_retrying() {
    let receiver = HttpFake::start(|_| Response::json(200, &json!({})));
    let dir = tempfile::tempdir().unwrap();
    let actuator = Webhook::new(WebhookConfig {
        url: None,
        ..config(receiver.url(), &dir)
    })
    .unwrap();
    let error = run(&actuator, &target(&[]), false).await.unwrap_err();
    let ActError::Unusable { site, message } = &error else {
        panic!("not unusable: {error}");
    };
    assert_eq!(site.object, "(no URL)");
    assert!(message.contains("webhook_url"), "{message}");
    assert!(!error.is_transient(), "retrying cannot give it a URL");
    assert!(receiver.requests().is_empty());
}
