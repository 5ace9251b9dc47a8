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

/// The quickstart's loops, one per bundled technology, in this order.
const QUICKSTART_LOOPS: [(&str, &str); 4] = [
    ("weekly-rightsizing", "postgres"),
    ("redis-rightsizing", "redis"),
    ("kafka-rightsizing", "kafka"),
    ("elasticsearch-rightsizing", "elasticsearch"),
];

async fn run_all(config: Config, at: DateTime<Utc>) -> Vec<CycleReport> {
    let runtime = Runtime::new(config).unwrap();
    let reports = runtime.run_once(at, None, &Shutdown::new()).await.unwrap();
    let names: Vec<&str> = reports.iter().map(|r| r.loop_name.as_str()).collect();
    assert_eq!(names, QUICKSTART_LOOPS.map(|(name, _)| name));
    reports
}

/// The PostgreSQL loop's report.
async fn run_once(config: Config, at: DateTime<Utc>) -> CycleReport {
    run_all(config, at).await.remove(0)
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
    // One range query per metric of the plugin, whatever the fleet size, and three weekly
    // peak statistics (p99, busiest hour, time near saturation) of each ratio metric.
    assert_eq!(report.queries, 16);

    let reporting = row(&report, "pg-reporting-01");
    assert_eq!(reporting.class, Some(Class::ScaleDown));
    assert_eq!(
        reporting.change.as_deref(),
        Some("8 vCPU / 32 GiB → 4 vCPU / 24 GiB, shared_buffers 8GB → 6GB")
    );
    assert_eq!(reporting.verdict, Some(Verdict::Review));

    // Instance B crosses no threshold of the bootstrap heuristics, but every dimension climbs:
    // the model trained on the simulator's outcomes at this first run scales it up, and says
    // which dimensions rise.
    let transactional = row(&report, "pg-transactional-01");
    assert_eq!(transactional.class, Some(Class::ScaleUp));
    assert!(
        transactional.confidence.unwrap() >= 0.8,
        "{transactional:#?}"
    );
    assert_eq!(transactional.verdict, Some(Verdict::Review));
    let store = setpoint_state::Store::open(state.path()).unwrap();
    let entry = store.last_entry("pg-transactional-01").unwrap().unwrap();
    let classification = entry.classification.unwrap();
    assert_eq!(classification.model, "gradient-boosting");
    let promoted = store.promoted_model("weekly-rightsizing").unwrap().unwrap();
    assert_eq!(classification.model_version, promoted.version);
    let rule = &classification.explanation.rule;
    for dimension in ["cpu +", "memory +", "connections +", "iops +"] {
        assert!(
            rule.contains("rising together") && rule.contains(dimension),
            "{rule}"
        );
    }
    assert!(rule.contains("surrogate rule: if "), "{rule}");
    assert!(!classification.explanation.evidence.is_empty());
    drop(store);

    let saturated = row(&report, "pg-saturated-01");
    assert_eq!(saturated.class, Some(Class::ScaleUp));
    assert_eq!(saturated.verdict, Some(Verdict::Review));

    let connections = row(&report, "pg-connections-01");
    assert_eq!(connections.class, Some(Class::ScaleUp));

    let gap = row(&report, "pg-gap-01");
    assert_eq!(gap.class, Some(Class::Remain));
    // Two of four weeks are enough to classify, never to shrink.
    assert_eq!(gap.class_reason.as_deref(), Some("missing_dimension"));

    // First 60 days: every proposed action the classifier is sure of waits for a human; an
    // unsure one is held.
    for r in &report.rows {
        if r.class != Some(Class::Remain) && r.confidence.unwrap() >= 0.8 {
            assert_eq!(r.verdict, Some(Verdict::Review), "{r:#?}");
        } else if r.class != Some(Class::Remain) {
            assert_eq!(r.verdict, Some(Verdict::Hold), "{r:#?}");
            assert_eq!(r.reason.as_ref().unwrap().code, "low_confidence", "{r:#?}");
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

/// Classes per scenario (target id prefix) in the quickstart, for every technology.
const INTENDED: [(&str, Class, usize); 20] = [
    ("pg-reporting-", Class::ScaleDown, 10),
    ("pg-transactional-", Class::ScaleUp, 8),
    ("pg-steady-", Class::Remain, 14),
    ("pg-spiky-", Class::Remain, 8),
    ("pg-saturated-", Class::ScaleUp, 5),
    ("pg-connections-", Class::ScaleUp, 5),
    ("pg-gap-", Class::Remain, 4),
    ("redis-idle-", Class::ScaleDown, 5),
    ("redis-steady-", Class::Remain, 6),
    ("redis-evicting-", Class::ScaleUp, 3),
    ("redis-hot-", Class::ScaleUp, 3),
    ("redis-clients-", Class::ScaleUp, 3),
    ("kafka-idle-", Class::ScaleDown, 4),
    ("kafka-urp-", Class::ScaleDown, 3),
    ("kafka-steady-", Class::Remain, 5),
    ("kafka-lagging-", Class::ScaleUp, 3),
    ("es-idle-", Class::ScaleDown, 4),
    ("es-unassigned-", Class::ScaleDown, 3),
    ("es-steady-", Class::Remain, 5),
    ("es-search-", Class::ScaleUp, 3),
];

fn class_counts(report: &CycleReport) -> [usize; 3] {
    let count = |class| {
        report
            .rows
            .iter()
            .filter(|r| r.class == Some(class))
            .count()
    };
    [
        count(Class::Remain),
        count(Class::ScaleDown),
        count(Class::ScaleUp),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn quickstart_shows_every_technology_classified_as_intended() {
    let state = tempfile::tempdir().unwrap();
    let reports = run_all(quickstart(state.path()), now()).await;
    for (report, (_, technology)) in reports.iter().zip(QUICKSTART_LOOPS) {
        assert_eq!(report.failed(), 0, "{technology}: {:#?}", report.rows);
        assert!(report.rows.iter().all(|r| r.technology == technology));
    }
    // (targets, [remain, scale_down, scale_up]) per technology, with the models trained on the
    // simulator's history at this first run (PostgreSQL's transactional instances are the 8
    // scale-ups the bootstrap heuristics missed).
    let figures: Vec<(usize, [usize; 3])> = reports
        .iter()
        .map(|r| (r.rows.len(), class_counts(r)))
        .collect();
    assert_eq!(
        figures,
        vec![
            (54, [26, 10, 18]),
            (20, [6, 5, 9]),
            (15, [5, 7, 3]),
            (15, [5, 7, 3]),
        ]
    );
    let rows: Vec<&TargetRow> = reports.iter().flat_map(|r| &r.rows).collect();
    for (prefix, class, count) in INTENDED {
        let matching: Vec<&&TargetRow> = rows
            .iter()
            .filter(|r| r.target.starts_with(prefix))
            .collect();
        assert_eq!(matching.len(), count, "{prefix}");
        for r in matching {
            assert_eq!(r.class, Some(class), "{r:#?}");
        }
    }

    let pg = row(&reports[0], "pg-reporting-01");
    assert_eq!(
        pg.change.as_deref(),
        Some("8 vCPU / 32 GiB → 4 vCPU / 24 GiB, shared_buffers 8GB → 6GB")
    );
    assert_eq!(
        row(&reports[1], "redis-idle-01").change.as_deref(),
        Some("4 vCPU / 16 GiB → 2 vCPU / 8 GiB, maxmemory 11468mb → 5734mb")
    );
    assert_eq!(
        row(&reports[2], "kafka-idle-01").change.as_deref(),
        Some("6 brokers → 5 brokers")
    );
    assert_eq!(
        row(&reports[3], "es-search-01").change.as_deref(),
        Some("5 data nodes → 6 data nodes")
    );
    // Full and evicting: scaled up (the model learned what the bootstrap calls memory
    // pressure), and the plan grows the container and maxmemory together.
    for r in rows
        .iter()
        .filter(|r| r.target.starts_with("redis-evicting-"))
    {
        assert_eq!(r.class, Some(Class::ScaleUp), "{r:#?}");
        let change = r.change.as_deref().unwrap_or_default();
        assert!(change.contains("maxmemory"), "{r:#?}");
        assert_ne!(r.verdict, Some(Verdict::Act), "{r:#?}");
    }
    // Idle but unsafe to shrink: classified scale_down, nothing proposed to do it.
    for prefix in ["kafka-urp-", "es-unassigned-"] {
        for r in rows.iter().filter(|r| r.target.starts_with(prefix)) {
            assert_eq!(r.change, None, "{r:#?}");
            assert_ne!(r.verdict, Some(Verdict::Act), "{r:#?}");
        }
    }
}

/// Kafka never scales in with under-replicated partitions in the window, Elasticsearch never
/// with unassigned shards, Redis never while evicting: checked on every proposal the plugins
/// made, from the journal, against the features they were given.
#[tokio::test(flavor = "multi_thread")]
async fn no_scale_in_is_ever_proposed_against_the_guards() {
    let state = tempfile::tempdir().unwrap();
    let reports = run_all(quickstart(state.path()), now()).await;
    let store = setpoint_state::Store::open(state.path()).unwrap();
    let mut guarded = 0;
    for (report, family) in [
        (&reports[1], "evictions"),
        (&reports[2], "under_replicated"),
        (&reports[3], "unassigned"),
    ] {
        for r in &report.rows {
            let entry = store.entries(&r.target).unwrap().pop().unwrap();
            let worst = entry
                .features
                .features
                .iter()
                .filter(|f| f.name.starts_with(&format!("{family}_w")))
                .map(|f| f.value.unwrap_or(f64::INFINITY))
                .fold(0.0, f64::max);
            let scale_in = entry
                .proposals
                .iter()
                .any(|p| p.action == ActionKind::ScaleDown);
            if worst > 0.0 {
                guarded += 1;
                assert!(
                    !scale_in,
                    "{}: {family} {worst}: {:#?}",
                    r.target, entry.proposals
                );
            }
        }
    }
    // The evicting, under-replicated and unassigned-shards scenarios.
    assert_eq!(guarded, 9);
    // And where the guards are clear, scale-in is proposed.
    let idle = store.entries("kafka-idle-01").unwrap().pop().unwrap();
    assert!(
        idle.proposals
            .iter()
            .any(|p| p.action == ActionKind::ScaleDown)
    );
}

/// Hysteresis counts periods of the loop's schedule (Mondays 06:00), not invocations: three
/// cycles within minutes count once, a cycle run early counts for the period it falls in, and
/// replays a week apart count one each.
#[tokio::test(flavor = "multi_thread")]
async fn stable_cycles_count_schedule_periods_not_invocations() {
    let state = tempfile::tempdir().unwrap();
    let stable = |report: &CycleReport| row(report, "pg-reporting-01").stable_cycles;
    let mut cycles = Vec::new();
    for minutes in [0, 1, 3] {
        let report = run_once(quickstart(state.path()), now() + Duration::minutes(minutes)).await;
        cycles.push(report.cycle);
        assert_eq!(stable(&report), 1, "{minutes} min after the first");
    }
    assert_eq!(
        cycles,
        [1, 2, 3],
        "every cycle still ran and was journalled"
    );
    // Sunday night, before the next Monday 06:00: still the first period.
    let early = run_once(
        quickstart(state.path()),
        now() + Duration::days(6) + Duration::hours(17),
    )
    .await;
    assert_eq!(stable(&early), 1);
    let next = run_once(quickstart(state.path()), now() + Duration::days(7)).await;
    assert_eq!(stable(&next), 2);
    let after = run_once(quickstart(state.path()), now() + Duration::days(14)).await;
    assert_eq!(stable(&after), 3);
    let store = setpoint_state::Store::open(state.path()).unwrap();
    let history = store
        .history("weekly-rightsizing", "pg-reporting-01")
        .unwrap()
        .unwrap();
    assert_eq!(history.classes.len(), 3, "one class per period");
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
    // The plugin's 16-dim fingerprint, then the engine's six peak features per metric.
    assert_eq!(last.features.features.len(), 16 + 4 * 6);
    assert_eq!(last.features.features[16].name, "connections_p99");
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

/// Whatever the classifier says and whatever the plugin plans, no scale-down leaves CPU or
/// memory below what the target has been seen to need (its weekly peaks projected by their
/// trend, plus headroom), and a target with a week of thin data keeps its size.
#[tokio::test(flavor = "multi_thread")]
async fn no_scale_down_goes_below_the_safety_floor() {
    let state = tempfile::tempdir().unwrap();
    let report = run_once(quickstart(state.path()), now()).await;
    let store = setpoint_state::Store::open(state.path()).unwrap();
    let (mut downs, mut resized) = (0, 0);
    for row in &report.rows {
        let entry = store.last_entry(&row.target).unwrap().unwrap();
        let floor = entry
            .floor
            .as_ref()
            .expect("every observed target has a floor");
        for p in entry
            .proposals
            .iter()
            .filter(|p| p.action == ActionKind::ScaleDown)
        {
            downs += 1;
            assert!(
                floor.violations(&p.after).is_empty(),
                "{}: {} is below its floor {floor:#?}",
                row.target,
                p.summary
            );
            resized += usize::from(p.rationale.contains("resized to the safety floor"));
        }
        if row.target.starts_with("pg-gap-") {
            assert!(!floor.allows_any_shrink(), "{}: {floor:#?}", row.target);
            assert!(
                entry
                    .proposals
                    .iter()
                    .all(|p| p.action != ActionKind::ScaleDown),
                "{}: {:#?}",
                row.target,
                entry.proposals
            );
        }
    }
    // The reporting instances idle on CPU but hold most of their memory: halving is resized to
    // the floor rather than taken whole.
    assert!(
        downs > 0 && resized > 0,
        "{downs} scale-downs, {resized} resized"
    );
}
