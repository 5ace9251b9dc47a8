//! The harness itself: what it records, how it answers, and that it is gone once stopped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use setpoint_test_support::{HttpFake, Response};

#[tokio::test]
async fn every_request_is_recorded_in_order_and_answered_by_the_handler() {
    let fake = HttpFake::start(|r| match r.index {
        0 => Response::json(201, &json!({"first": true})),
        _ => Response::text(503, "busy"),
    });
    let client = reqwest::Client::new();
    let first = client
        .patch(format!("{}/a/b?dryRun=All&x=1", fake.url()))
        .header("X-Token", "t")
        .json(&json!({"k": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 201);
    assert_eq!(first.headers()["connection"], "close");
    assert_eq!(first.headers()["content-type"], "application/json");
    assert_eq!(first.text().await.unwrap(), r#"{"first":true}"#);
    let second = client
        .get(format!("{}/c", fake.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 503);
    assert_eq!(second.text().await.unwrap(), "busy");

    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    let patch = &requests[0];
    assert_eq!((patch.index, patch.method.as_str()), (0, "PATCH"));
    assert_eq!(patch.target, "/a/b?dryRun=All&x=1");
    assert_eq!(patch.path(), "/a/b");
    assert_eq!(patch.params(), ["dryRun=All", "x=1"]);
    assert_eq!(patch.header("x-token"), Some("t"));
    assert_eq!(patch.json(), json!({"k": 1}));
    assert_eq!((requests[1].index, requests[1].target.as_str()), (1, "/c"));
}

#[tokio::test]
async fn a_stopped_fake_refuses_connections() {
    let fake = HttpFake::answering(Response::text(200, "ok"));
    let url = fake.url().to_string();
    reqwest::get(&url).await.unwrap();
    fake.stop();
    let error = reqwest::get(&url).await.unwrap_err();
    assert!(error.is_connect(), "{error}");
}

#[tokio::test]
async fn a_hanging_answer_times_the_client_out() {
    let fake = HttpFake::answering(Response::hang());
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(200))
        .build()
        .unwrap();
    let error = client.get(fake.url()).send().await.unwrap_err();
    assert!(error.is_timeout(), "{error}");
    assert_eq!(fake.requests().len(), 1);
}
