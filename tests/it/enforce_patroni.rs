//! Enforce mode end to end against a real etcd + Patroni + PostgreSQL on 127.0.0.1: a weekly
//! cycle proposes scaling `pg-reporting-01` down, including a `work_mem` change; the plan waits
//! in review; `setpoint review approve` re-checks it and applies it — `SHOW work_mem` in
//! PostgreSQL returns the new value, and the `shared_buffers` change shows up as a restart
//! scheduled in the maintenance window that Patroni reports. The resize goes to the team's own
//! automation through the webhook actuator (a receiver inside the test).

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use serde_json::{Value, json};
use setpoint_core::{IntentStatus, Operation};

use crate::patroni_stack::{Stack, USER, get, wait_for};
use crate::{ok, setpoint_binary};
use setpoint_test_support::HttpFake;

fn setpoint(config: &Path, args: &[&str]) -> Output {
    std::process::Command::new(setpoint_binary())
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove(setpoint_runtime::enforce::PAUSE_AT_ENV)
        .output()
        .unwrap()
}

#[tokio::test]
async fn a_reviewed_work_mem_change_reaches_postgresql_and_the_restart_is_scheduled() {
    let started = Instant::now();
    let (stack, client) = Stack::start_ready().await;
    assert_eq!(stack.sql("SHOW work_mem"), "4MB");

    let hooks = HttpFake::start(|_| (200, json!({"accepted": true})));
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("hook.secret");
    std::fs::write(&secret, "hook-secret\n").unwrap();
    // The window opens two hours from now, so the restart stays scheduled during the test.
    let opens = (Utc::now() + TimeDelta::hours(2)).format("%H:%M");
    let config = dir.path().join("setpoint.yaml");
    std::fs::write(
        &config,
        format!(
            r#"state_dir: ./state
loops:
  - name: weekly
    plugin: builtin:postgres
    source: {{ kind: simulated, seed: 42 }}
    classifier: {{ kind: bootstrap }}
    mode: enforce
    actuators:
      - patroni:
          username: {USER}
          password_file: {password}
          maintenance_window: {{ start: "{opens}", duration: 1h }}
      - webhook:
          url: {hooks}/resize
          allow: ["{hooks}/"]
          secret_file: ./hook.secret
    targets:
      - id: pg-reporting-01
        labels: {{ patroni_url: "{rest}" }}
        resources:
          cpu: 8
          memory_gib: 32
          parameters: {{ shared_buffers: 8GB, work_mem: 64MB, max_connections: "200" }}
"#,
            password = stack.dir.path().join("password").display(),
            hooks = hooks.url(),
            rest = stack.rest,
        ),
    )
    .unwrap();

    // The weekly cycle: the scale-down waits in review; nothing reaches Patroni or the hook.
    let report = ok(setpoint(&config, &["run", "--once"]));
    assert!(report.contains("enforce: 0 plan(s) executed"), "{report}");
    assert!(hooks.requests().is_empty());
    let list: Value = serde_json::from_str(&ok(setpoint(
        &config,
        &["review", "list", "--output", "json"],
    )))
    .unwrap();
    let review = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["target"] == "pg-reporting-01")
        .unwrap_or_else(|| panic!("no review for pg-reporting-01: {list}"))
        .clone();
    let operations: Vec<Operation> =
        serde_json::from_value(review["proposal"]["operations"].clone()).unwrap();
    let work_mem = operations
        .iter()
        .find_map(|op| match op {
            Operation::SetParameter { name, value, .. } if name == "work_mem" => {
                Some(value.clone())
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("the plan changes no work_mem: {operations:?}"));
    assert_ne!(work_mem, "4MB");
    assert_eq!(stack.sql("SHOW work_mem"), "4MB", "nothing before approval");

    // Approved: re-checked on fresh data and executed.
    let id = review["id"].to_string();
    let approved = Instant::now();
    let out = ok(setpoint(
        &config,
        &["review", "approve", &id, "--comment", "idle reporting DB"],
    ));
    let applied_in = approved.elapsed();
    assert!(out.contains("pg-reporting-01: executed"), "{out}");
    assert!(out.contains("patroni"), "{out}");
    wait_for(
        "SHOW work_mem = the plan's value",
        &stack,
        Duration::from_secs(15),
        async || stack.sql("SHOW work_mem") == work_mem,
    )
    .await;

    // shared_buffers: stored, the restart scheduled in the window and reported by Patroni.
    wait_for(
        "pending_restart",
        &stack,
        Duration::from_secs(10),
        async || {
            get(&client, &format!("{}/patroni", stack.rest))
                .await
                .is_some_and(|s| s["pending_restart"] == true)
        },
    )
    .await;
    let status = get(&client, &format!("{}/patroni", stack.rest))
        .await
        .unwrap();
    assert_eq!(
        status["scheduled_restart"]["restart_pending"], true,
        "{status}"
    );
    let scheduled = status["scheduled_restart"]["schedule"].as_str().unwrap();
    assert!(
        scheduled.contains(&format!("T{opens}")),
        "{scheduled} is not at the window's opening {opens}"
    );
    assert_eq!(
        stack.sql("SHOW shared_buffers"),
        "128MB",
        "not restarted yet"
    );
    let config_now = get(&client, &format!("{}/config", stack.rest))
        .await
        .unwrap();
    assert_eq!(
        config_now["postgresql"]["parameters"]["shared_buffers"], "6GB",
        "{config_now}"
    );

    // The resize went to the team's automation, once, signed and with the intent's key.
    let posts = hooks.requests();
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert!(posts[0].header("idempotency-key").is_some());
    let body = posts[0].json();
    assert_eq!(body["operations"][0]["op"], "resize", "{body}");
    assert_eq!(body["operations"][0]["cpu_millicores"], 4000, "{body}");

    // The journal has the intent done, with each operation's result, and the review applied.
    let store = setpoint_state::Store::open(&dir.path().join("state")).unwrap();
    let intents = store.intents().unwrap();
    assert_eq!(intents.len(), 1);
    assert_eq!(intents[0].status, IntentStatus::Done, "{:?}", intents[0]);
    assert_eq!(intents[0].results.len(), operations.len());
    assert_eq!(
        store.review(id.parse().unwrap()).unwrap().status,
        setpoint_core::ReviewStatus::Applied
    );
    drop(store);
    eprintln!(
        "enforce through Patroni: approval re-checked and applied in {applied_in:.1?}; total {:.1?}",
        started.elapsed()
    );
}
