use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use setpoint_core::{ActionKind, Class, Verdict};
use setpoint_runtime::config::PolicyRef;
use setpoint_runtime::{Config, CycleReport, Runtime, Shutdown, TargetRow};
use setpoint_state::KillSwitchScope;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-23T06:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn quickstart(state: &Path) -> Config {
    Config {
        state_dir: state.to_path_buf(),
        ..Config::default()
    }
}

async fn run_once(config: Config, at: DateTime<Utc>) -> CycleReport {
    let runtime = Runtime::new(config).unwrap();
    let mut reports = runtime.run_once(at, None, &Shutdown::new()).await.unwrap();
    assert_eq!(reports.len(), 1);
    reports.remove(0)
}

fn row<'a>(report: &'a CycleReport, target: &str) -> &'a TargetRow {
    report
        .rows
        .iter()
        .find(|r| r.target == target)
        .unwrap_or_else(|| panic!("no row for {target}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn quickstart_classifies_proposes_and_gates_every_action() {
    let state = tempfile::tempdir().unwrap();
    let report = run_once(quickstart(state.path()), now()).await;

    assert!(report.rows.len() >= 50, "{} targets", report.rows.len());
    assert_eq!(report.failed(), 0, "{:#?}", report.rows);
    // One range query per metric of the plugin, whatever the fleet size.
    assert_eq!(report.queries, 4);

    let reporting = row(&report, "pg-reporting-01");
    assert_eq!(reporting.class, Some(Class::ScaleDown));
    assert_eq!(
        reporting.change.as_deref(),
        Some("8 vCPU / 32 GiB → 4 vCPU / 16 GiB, shared_buffers 8GB → 4GB")
    );
    assert_eq!(reporting.verdict, Some(Verdict::Review));

    let transactional = row(&report, "pg-transactional-01");
    assert_eq!(transactional.class, Some(Class::Remain));
    assert_eq!(
        transactional.class_reason.as_deref(),
        Some("no_threshold_crossed")
    );

    let saturated = row(&report, "pg-saturated-01");
    assert_eq!(saturated.class, Some(Class::ScaleUp));
    assert_eq!(saturated.verdict, Some(Verdict::Review));

    let connections = row(&report, "pg-connections-01");
    assert_eq!(connections.class, Some(Class::ScaleUp));

    let gap = row(&report, "pg-gap-01");
    assert_eq!(gap.class, Some(Class::Remain));
    assert_eq!(gap.class_reason.as_deref(), Some("insufficient_data"));

    // First 60 days: every proposed action waits for a human.
    for r in &report.rows {
        if r.class != Some(Class::Remain) {
            assert_eq!(r.verdict, Some(Verdict::Review), "{r:#?}");
        } else {
            assert_ne!(r.verdict, Some(Verdict::Act), "{r:#?}");
        }
    }
    // Missing data never shrinks anything.
    for r in &report.rows {
        if r.class_reason.as_deref() == Some("insufficient_data") {
            assert_ne!(r.class, Some(Class::ScaleDown));
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn history_advances_and_is_journalled() {
    let state = tempfile::tempdir().unwrap();
    let first = run_once(quickstart(state.path()), now()).await;
    let second = run_once(quickstart(state.path()), now() + Duration::days(7)).await;
    assert_eq!(first.cycle, 1);
    assert_eq!(second.cycle, 2);
    assert_eq!(row(&first, "pg-reporting-01").stable_cycles, 1);
    assert_eq!(row(&second, "pg-reporting-01").stable_cycles, 2);

    let store = setpoint_state::Store::open(state.path()).unwrap();
    let entries = store.entries("pg-reporting-01").unwrap();
    assert_eq!(entries.len(), 2);
    let last = entries.last().unwrap();
    assert_eq!(last.stable_cycles, 2);
    assert_eq!(last.features.features.len(), 16);
    let input = last.policy_input.as_ref().unwrap();
    assert_eq!(input["history"]["stable_cycles"], 2);
    assert_eq!(input["now"], "2026-11-30T06:00:00Z");
    assert_eq!(
        last.decision.as_ref().unwrap().proposal,
        Some(ActionKind::ScaleDown)
    );
    // Dry-run records the plan, never executes it.
    assert!(!last.plan.is_empty());
    assert!(!last.executed);
    let history = store
        .history("weekly-rightsizing", "pg-reporting-01")
        .unwrap()
        .unwrap();
    assert_eq!(history.first_managed_at, now());
    assert!(history.last_action.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_switches_block_everything_in_scope_and_release() {
    let state = tempfile::tempdir().unwrap();
    setpoint_state::set_kill_switch(state.path(), &KillSwitchScope::Global, true).unwrap();
    let blocked = run_once(quickstart(state.path()), now()).await;
    for r in &blocked.rows {
        assert_eq!(r.verdict, Some(Verdict::Block), "{r:#?}");
        assert_eq!(r.reason.as_ref().unwrap().code, "kill_switch");
    }

    setpoint_state::set_kill_switch(state.path(), &KillSwitchScope::Global, false).unwrap();
    setpoint_state::set_kill_switch(
        state.path(),
        &KillSwitchScope::Target("pg-saturated-01".into()),
        true,
    )
    .unwrap();
    let released = run_once(quickstart(state.path()), now() + Duration::days(7)).await;
    assert_eq!(
        row(&released, "pg-reporting-01").verdict,
        Some(Verdict::Review)
    );
    assert_eq!(
        row(&released, "pg-saturated-01").verdict,
        Some(Verdict::Block)
    );

    setpoint_state::set_kill_switch(
        state.path(),
        &KillSwitchScope::Loop("weekly-rightsizing".into()),
        true,
    )
    .unwrap();
    let per_loop = run_once(quickstart(state.path()), now() + Duration::days(14)).await;
    assert!(
        per_loop
            .rows
            .iter()
            .all(|r| r.verdict == Some(Verdict::Block))
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

fn policies_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

#[test]
fn a_policy_syntax_error_refuses_to_start_and_names_the_position() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("policies");
    copy_dir(&policies_dir(), &bundle);
    std::fs::write(
        bundle.join("broken.rego"),
        "package setpoint.broken\n\nimport rego.v1\n\nbad_rule if {\n    input.x ==\n}\n",
    )
    .unwrap();
    let mut config = quickstart(&dir.path().join("state"));
    config.loops[0].policies = PolicyRef::Dir(bundle.clone());
    let error = Runtime::new(config).err().expect("must refuse to start");
    let message = error.to_string();
    assert!(message.contains("broken.rego:"), "{message}");
    // file:line:col
    let after = message.split("broken.rego:").nth(1).unwrap();
    let mut parts = after.split(':');
    assert!(parts.next().unwrap().parse::<u32>().is_ok(), "{message}");
    assert!(
        parts.next().unwrap().trim().parse::<u32>().is_ok(),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_runtime_error_holds_only_the_targets_it_hits() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("policies");
    std::fs::create_dir_all(&bundle).unwrap();
    // A policy that errors (strict to_number) for targets whose scenario label is not numeric,
    // but only for the telemetry-gap scenario; every other target gets a plain decision.
    std::fs::write(
        bundle.join("decision.rego"),
        r#"package setpoint

import rego.v1

weight := to_number(input.target.labels.scenario) if input.target.labels.scenario == "telemetry-gap"
weight := 1 if input.target.labels.scenario != "telemetry-gap"

decision := {
    "verdict": "hold",
    "proposal": null,
    "reasons": [{"code": "test_hold", "message": sprintf("weight %v", [weight])}],
}
"#,
    )
    .unwrap();
    std::fs::write(bundle.join("data.json"), "{}").unwrap();
    let mut config = quickstart(&dir.path().join("state"));
    config.loops[0].policies = PolicyRef::Dir(bundle);
    let report = run_once(config, now()).await;
    let gap = row(&report, "pg-gap-01");
    assert_eq!(gap.verdict, Some(Verdict::Hold));
    assert_eq!(gap.reason.as_ref().unwrap().code, "policy_error");
    let reporting = row(&report, "pg-reporting-01");
    assert_eq!(reporting.verdict, Some(Verdict::Hold));
    assert_eq!(reporting.reason.as_ref().unwrap().code, "test_hold");
}
