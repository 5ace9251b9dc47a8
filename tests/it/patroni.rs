//! The Patroni actuator against a real etcd + Patroni + PostgreSQL on 127.0.0.1 (see
//! [`crate::patroni_stack`]).
//!
//! Checks: a live parameter (`work_mem`) set through `PATCH /config` is what `SHOW work_mem`
//! returns in PostgreSQL; running the intent again reports it already applied; a
//! restart-requiring one (`shared_buffers`) ends as a restart scheduled in the maintenance
//! window, which `GET /patroni` reports with `pending_restart`; a dry run changes nothing;
//! basic auth is used (and its absence is refused by Patroni with a clear error).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use setpoint_act::patroni::{MaintenanceWindow, Patroni, PatroniConfig};
use setpoint_act::{ActError, Actuator, Execution, OpStatus, OperationResult};
use setpoint_core::{
    ActionKind, Decision, Operation, Proposal, Reason, Resources, Risk, Target, Verdict,
};

use crate::patroni_stack::{Stack, USER, get, wait_for};

fn target(rest: &str) -> Target {
    Target {
        id: "pg-live".into(),
        technology: "postgres".into(),
        labels: BTreeMap::from([("patroni_url".to_string(), rest.to_string())]),
        resources: Resources {
            cpu_millicores: 2000,
            memory_bytes: 4 << 30,
            replicas: 1,
            parameters: BTreeMap::new(),
        },
    }
}

async fn run(
    actuator: &Patroni,
    target: &Target,
    operations: &[Operation],
    dry_run: bool,
    now: DateTime<Utc>,
) -> Result<Vec<OperationResult>, ActError> {
    let decision = Decision {
        verdict: Verdict::Act,
        proposal: Some(ActionKind::ScaleUp),
        reasons: vec![Reason::new("test", "test")],
    };
    let proposal = Proposal {
        action: ActionKind::ScaleUp,
        summary: "test".into(),
        before: target.resources.clone(),
        after: target.resources.clone(),
        operations: operations.to_vec(),
        risk: Risk::Medium,
        rationale: String::new(),
    };
    actuator
        .execute(&Execution {
            target,
            decision: &decision,
            proposal: &proposal,
            operations,
            key: "patroni-test",
            trace_id: None,
            dry_run,
            now,
        })
        .await
}

fn set(name: &str, value: &str, requires_restart: bool) -> Operation {
    Operation::SetParameter {
        name: name.into(),
        value: value.into(),
        requires_restart,
    }
}

#[tokio::test]
async fn parameters_reach_postgresql_and_restarts_are_scheduled_in_the_window() {
    let started = Instant::now();
    let (stack, client) = Stack::start_ready().await;
    let ready = started.elapsed();
    assert_eq!(stack.sql("SHOW work_mem"), "4MB");

    // The maintenance window opens two hours from now, so the restart stays scheduled.
    let now = Utc::now();
    let opens = now + TimeDelta::hours(2);
    let mut config = PatroniConfig {
        url: None,
        username: Some(USER.into()),
        password_file: Some(stack.dir.path().join("password")),
        maintenance_window: MaintenanceWindow {
            start: opens.format("%H:%M").to_string(),
            duration: Duration::from_secs(3600),
            ..MaintenanceWindow::default()
        },
        ..PatroniConfig::new("http://unused")
    };
    let actuator = Patroni::new(config.clone()).unwrap();
    let target = target(&stack.rest);

    // A live parameter: in /config, then in PostgreSQL.
    let t = Instant::now();
    let results = run(
        &actuator,
        &target,
        &[set("work_mem", "8MB", false)],
        false,
        now,
    )
    .await
    .unwrap();
    assert_eq!(results[0].status, OpStatus::Applied, "{results:?}");
    assert_eq!(results[0].object, format!("{}/config", stack.rest));
    let applied = t.elapsed();
    wait_for(
        "SHOW work_mem = 8MB",
        &stack,
        Duration::from_secs(15),
        async || stack.sql("SHOW work_mem") == "8MB",
    )
    .await;
    let visible = t.elapsed();

    // The same intent again changes nothing.
    let again = run(
        &actuator,
        &target,
        &[set("work_mem", "8MB", false)],
        false,
        now,
    )
    .await
    .unwrap();
    assert_eq!(again[0].status, OpStatus::AlreadyApplied);

    // A dry run reads and compares only.
    let dry = run(
        &actuator,
        &target,
        &[set("work_mem", "16MB", false)],
        true,
        now,
    )
    .await
    .unwrap();
    assert_eq!(dry[0].status, OpStatus::DryRun);
    assert!(
        dry[0].detail.contains("from 8MB to 16MB"),
        "{}",
        dry[0].detail
    );
    assert_eq!(stack.sql("SHOW work_mem"), "8MB");

    // A restart-requiring parameter: stored, and a restart scheduled in the window.
    let t = Instant::now();
    let operations = [
        set("shared_buffers", "256MB", true),
        Operation::Restart {
            reason: "shared_buffers".into(),
        },
    ];
    let results = run(&actuator, &target, &operations, false, now)
        .await
        .unwrap();
    let scheduled_in = t.elapsed();
    let OpStatus::Scheduled { at: Some(at) } = results[0].status.clone() else {
        panic!("not scheduled: {results:?}");
    };
    assert_eq!(results[1].status, OpStatus::Scheduled { at: Some(at) });
    let slot = config.maintenance_window.next_slot(now).unwrap();
    assert_eq!(at, slot);
    assert!(
        at > now + TimeDelta::minutes(100),
        "{at} is not in the window"
    );
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
    let reported =
        DateTime::parse_from_rfc3339(status["scheduled_restart"]["schedule"].as_str().unwrap())
            .unwrap();
    assert_eq!(reported, at);
    assert_eq!(status["scheduled_restart"]["restart_pending"], true);
    // Not restarted yet: PostgreSQL still runs the old value.
    assert_eq!(stack.sql("SHOW shared_buffers"), "128MB");

    // Again: the scheduled restart is found, not scheduled twice (Patroni would answer 409).
    let again = run(&actuator, &target, &operations, false, now)
        .await
        .unwrap();
    assert_eq!(again[0].status, OpStatus::Scheduled { at: Some(at) });

    // Sizes are not Patroni's.
    let error = run(
        &actuator,
        &target,
        &[Operation::Resize {
            cpu_millicores: 4000,
            memory_bytes: 8 << 30,
        }],
        false,
        now,
    )
    .await
    .unwrap_err();
    assert!(matches!(error, ActError::Unsupported { .. }), "{error}");

    // Without credentials Patroni refuses the change; the error names the URL.
    config.username = None;
    config.password_file = None;
    let anonymous = Patroni::new(config).unwrap();
    let error = run(
        &anonymous,
        &target,
        &[set("work_mem", "12MB", false)],
        false,
        now,
    )
    .await
    .unwrap_err();
    let message = error.to_string();
    assert!(message.contains("401"), "{message}");
    assert!(
        message.contains(&format!("{}/config", stack.rest)),
        "{message}"
    );

    let stopping = Instant::now();
    drop(stack);
    eprintln!(
        "patroni test timings: stack ready {ready:.1?}; work_mem applied and verified in \
         {applied:.2?}, visible in SHOW after {visible:.2?}; shared_buffers restart scheduled \
         and verified in {scheduled_in:.2?}; stop {:.1?}; total {:.1?}",
        stopping.elapsed(),
        started.elapsed()
    );
}
