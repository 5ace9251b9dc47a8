//! End to end against a real stack on loopback: PostgreSQL and exporters scraped by Prometheus
//! and VictoriaMetrics, with simulated history backfilled into both, read through the example
//! config `examples/stack/setpoint.yaml` as `stack.sh` points it at the stack.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use setpoint_core::{Class, Verdict};
use setpoint_runtime::config::SourceConfig;
use setpoint_runtime::{Config, CycleReport, Runtime, Shutdown};

use crate::setpoint_binary;
use crate::stack::{
    self, BACKFILLED, Guarded, LIVE, Stack, lines_of, setpoint, setpoint_json, write_config,
};

type Classes = BTreeMap<String, (Option<Class>, Option<String>)>;

async fn run(config: Config, now: DateTime<Utc>) -> CycleReport {
    let runtime = Runtime::new(config).unwrap();
    let mut reports = runtime.run_once(now, None, &Shutdown::new()).await.unwrap();
    reports.remove(0)
}

/// The weekly features recorded for a target in a state directory.
fn features_of(state_dir: &Path, id: &str) -> Vec<(String, Option<f64>)> {
    let store = setpoint_state::Store::open(state_dir).unwrap();
    let entry = store.last_entry(id).unwrap().unwrap();
    entry
        .features
        .features
        .into_iter()
        .map(|f| (f.name, f.value))
        .collect()
}

fn classes(report: &CycleReport) -> Classes {
    report
        .rows
        .iter()
        .map(|r| (r.target.clone(), (r.class, r.class_reason.clone())))
        .collect()
}

fn row<'a>(report: &'a CycleReport, target: &str) -> &'a setpoint_runtime::TargetRow {
    report
        .rows
        .iter()
        .find(|r| r.target == target)
        .unwrap_or_else(|| panic!("no row for {target}: {:#?}", report.rows))
}

/// The sizes in the example config are the simulator's, or proposals would start from sizes
/// the backfilled history was never generated for.
#[test]
fn the_example_config_declares_the_backfilled_targets_with_the_simulators_sizes() {
    let config = Config::load(&stack::example_config()).unwrap();
    assert_eq!(config.loops.len(), 1);
    let lp = &config.loops[0];
    assert!(matches!(lp.source, SourceConfig::Prometheus(_)));
    let ids: Vec<&str> = lp.targets.iter().map(|t| t.id.as_str()).collect();
    let mut wanted = BACKFILLED.to_vec();
    wanted.push(LIVE);
    assert_eq!(ids, wanted);

    let fleet = setpoint_runtime::builtin_fleet(42, "postgres").unwrap();
    for declared in lp.targets.iter().filter(|t| t.id != LIVE) {
        let simulated = fleet
            .targets()
            .iter()
            .find(|t| t.id == declared.id)
            .unwrap();
        let resources = declared.resources.as_ref().unwrap().resolve();
        assert_eq!(resources, simulated.resources, "{}", declared.id);
        assert_eq!(
            declared.labels.get("scenario"),
            simulated.labels.get("scenario"),
            "{}",
            declared.id
        );
    }
    let live = lp.targets.iter().find(|t| t.id == LIVE).unwrap();
    assert_eq!(live.aliases, vec!["pg-live-host".to_string()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn backfilled_history_classifies_as_on_the_simulator_through_both_tsdbs() {
    let _exclusive = stack::exclusive().await;
    let dir = tempfile::tempdir().unwrap();
    let stack = Stack::start(&dir.path().join("stack"));
    let now = (Utc::now() - TimeDelta::hours(1))
        .duration_trunc(TimeDelta::hours(1))
        .unwrap();
    stack.backfill(now);

    // The data path is under test, not the classifier: the simulator's run uses the bootstrap
    // heuristics, as the stack's loops do until a model is promoted for them.
    let mut simulated = Config {
        state_dir: dir.path().join("state-sim"),
        ..Config::default()
    };
    for lp in &mut simulated.loops {
        lp.classifier = setpoint_runtime::config::ClassifierConfig::Bootstrap {
            thresholds: Default::default(),
        };
    }
    let simulated = run(simulated, now).await;
    let expected = classes(&simulated);

    // Through the library, at the backfill's end: every scenario as on the simulator.
    for tsdb in ["prometheus", "victoria"] {
        let mut config = Config::load(&stack.config_path(tsdb)).unwrap();
        config.state_dir = dir.path().join(format!("state-lib-{tsdb}"));
        let report = run(config, now).await;
        assert_eq!(
            report.queries, 16,
            "{tsdb}: one range query per metric, and three weekly peak statistics of each"
        );
        assert_eq!(report.failed(), 0, "{tsdb}: {:#?}", report.rows);
        // At the backfill's end the live database had not started: it alone has no series.
        assert!(
            report
                .degraded
                .iter()
                .all(|d| d.starts_with(&format!("{LIVE}: "))),
            "{tsdb}: {:?}",
            report.degraded
        );
        let got = classes(&report);
        for id in BACKFILLED {
            assert_eq!(got.get(id), expected.get(id), "{tsdb}: {id}");
        }
        // Summarised in the TSDB, the weekly features are the simulator's numbers: the export
        // samples every 150 s with its own noise and CPU goes through rate(), so they agree to
        // within half a percentage point, not bit for bit.
        let mut widest = 0.0_f64;
        for id in BACKFILLED {
            let want = features_of(&dir.path().join("state-sim"), id);
            let have = features_of(&dir.path().join(format!("state-lib-{tsdb}")), id);
            assert_eq!(want.len(), have.len(), "{tsdb}: {id}");
            for ((feature, a), (_, b)) in want.iter().zip(&have) {
                // The engine's peak features are order statistics and projections of samples
                // taken at other instants: both present, not the same to the point.
                let weekly = feature
                    .rsplit_once("_w")
                    .is_some_and(|(_, week)| week.parse::<u8>().is_ok());
                if !weekly {
                    assert!(
                        a.is_some() && b.is_some(),
                        "{tsdb}: {id} {feature}: {a:?} {b:?}"
                    );
                    continue;
                }
                let same = match (a, b) {
                    (Some(a), Some(b)) => {
                        widest = widest.max((a - b).abs());
                        (a - b).abs() < 0.005
                    }
                    (None, None) => true,
                    _ => false,
                };
                assert!(same, "{tsdb}: {id} {feature}: simulator {a:?}, TSDB {b:?}");
            }
        }
        eprintln!("{tsdb}: widest feature difference from the simulator {widest:.5}");
        // The live database was discovered and joined across its two exporters; it has
        // seconds of history, so it stays put.
        let live = row(&report, LIVE);
        assert_eq!(
            live.class_reason.as_deref(),
            Some("insufficient_data"),
            "{tsdb}"
        );
        assert_eq!(live.verdict, Some(Verdict::Hold), "{tsdb}");
        assert_eq!(
            row(&report, "pg-reporting-01").change.as_deref(),
            Some("8 vCPU / 32 GiB → 4 vCPU / 24 GiB, shared_buffers 8GB → 6GB"),
            "{tsdb}"
        );
    }

    // Through the binary, exactly as examples/stack/README.md runs it: the config stack.sh
    // wrote, no --now.
    for tsdb in ["prometheus", "victoria"] {
        let config = stack.config_path(tsdb);
        let config = config.to_str().unwrap();
        if tsdb == "prometheus" {
            let table = setpoint(&["--config", config, "run", "--once"]);
            let text = String::from_utf8_lossy(&table.stdout);
            // 4 when the live database's series are younger than the window's end (the
            // backfill restarted Prometheus moments ago): it alone is then degraded.
            assert!(
                matches!(table.status.code(), Some(0 | 4)),
                "{text}\n{}",
                String::from_utf8_lossy(&table.stderr)
            );
            for id in BACKFILLED.iter().chain([&LIVE]) {
                assert!(text.contains(id), "{id} missing from\n{text}");
            }
        }
        let out = setpoint(&["--config", config, "run", "--once", "--output", "json"]);
        assert!(
            matches!(out.status.code(), Some(0 | 4)),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let reports: Vec<CycleReport> = serde_json::from_slice(&out.stdout).unwrap();
        let report = &reports[0];
        assert_eq!(report.rows.len(), BACKFILLED.len() + 1, "{tsdb}");
        assert!(
            report
                .degraded
                .iter()
                .all(|d| d.starts_with(&format!("{LIVE}: "))),
            "{tsdb}: only the live database may lack data: {:?}",
            report.degraded
        );
        assert_eq!(
            out.status.code(),
            Some(
                if report.degraded.is_empty() && report.targets_without_series.is_empty() {
                    0
                } else {
                    4
                }
            ),
            "{tsdb}: degraded {:?}, without series {:?}",
            report.degraded,
            report.targets_without_series
        );
        for id in ["pg-reporting-01", "pg-transactional-01"] {
            let got = row(report, id);
            assert_eq!(
                Some(&(got.class, got.class_reason.clone())),
                expected.get(id),
                "{tsdb}: {id}"
            );
        }
        assert_eq!(
            row(report, LIVE).class_reason.as_deref(),
            Some("insufficient_data"),
            "{tsdb}"
        );
    }

    prometheus_stops_under_a_running_setpoint(&stack, dir.path(), &expected);

    // The TSDB is gone: a one-off cycle still completes, says what was degraded, and nothing
    // shrinks — every target holds on missing data.
    let mut config = Config::load(&stack.config_path("prometheus")).unwrap();
    config.state_dir = dir.path().join("state-lib-prometheus");
    if let SourceConfig::Prometheus(settings) = &mut config.loops[0].source {
        settings.retries = 1;
    }
    let report = run(config, now + TimeDelta::weeks(1)).await;
    assert_eq!(report.degraded.len(), 5, "{:?}", report.degraded);
    assert!(
        report.degraded[0].starts_with("discovery:"),
        "{:?}",
        report.degraded
    );
    assert!(
        report.degraded.iter().all(|d| d.contains("unreachable")),
        "{:?}",
        report.degraded
    );
    assert_eq!(report.rows.len(), BACKFILLED.len() + 1);
    for row in &report.rows {
        assert_eq!(
            row.class_reason.as_deref(),
            Some("insufficient_data"),
            "{row:?}"
        );
        assert_eq!(row.verdict, Some(Verdict::Hold), "{row:?}");
    }
}

/// `setpoint run` on a schedule: one cycle with real classifications, then Prometheus is
/// stopped under it; the next cycle completes degraded, everything holds, and setpoint keeps
/// running until told to stop.
fn prometheus_stops_under_a_running_setpoint(stack: &Stack, dir: &Path, expected: &Classes) {
    let mut config = Config::load(&stack.config_path("prometheus")).unwrap();
    config.state_dir = dir.join("state-loop");
    config.loops[0].schedule = "*/5 * * * * *".parse().unwrap();
    let path = dir.join("setpoint-loop.yaml");
    write_config(&config, &path);
    let stderr_path = dir.join("setpoint-loop.stderr");
    let mut setpoint = Guarded::spawn(
        Command::new(setpoint_binary())
            .arg("--config")
            .arg(&path)
            .args(["run", "--output", "json"])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap()),
    );
    let lines = lines_of(&mut setpoint.child);
    let stderr = || std::fs::read_to_string(&stderr_path).unwrap_or_default();
    // The next cycle report whose cycle started after `after`.
    let next_report = |after: DateTime<Utc>| -> CycleReport {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no cycle report ({e}); stderr:\n{}", stderr()));
            let report: CycleReport = serde_json::from_str(&line).unwrap();
            if report.now > after {
                return report;
            }
        }
    };

    let healthy = next_report(Utc::now() - TimeDelta::minutes(1));
    // The live database's series may start after the window's end (Prometheus restarted
    // moments ago); every other target has its history.
    assert!(
        healthy
            .degraded
            .iter()
            .all(|d| d.starts_with(&format!("{LIVE}: "))),
        "{:?}",
        healthy.degraded
    );
    assert_eq!(healthy.failed(), 0, "{:#?}", healthy.rows);
    let reporting = row(&healthy, "pg-reporting-01");
    assert_eq!(
        Some(&(reporting.class, reporting.class_reason.clone())),
        expected.get("pg-reporting-01")
    );
    assert_eq!(reporting.class, Some(Class::ScaleDown));

    stack.kill("prometheus");
    let killed = Utc::now();
    // A cycle that started while Prometheus was shutting down may have half its answers;
    // the first one scheduled after it was gone has none.
    let outage = next_report(killed);
    let source = format!("prometheus(http://127.0.0.1:{})", stack.port("PROM_PORT"));
    assert_eq!(outage.source, source);
    assert_eq!(outage.degraded.len(), 5, "{:?}", outage.degraded);
    assert!(
        outage.degraded[0].starts_with("discovery:"),
        "{:?}",
        outage.degraded
    );
    for degraded in &outage.degraded {
        assert!(
            degraded.contains(&source) && degraded.contains("unreachable"),
            "{degraded}"
        );
    }
    // Discovery failed, yet every declared target is decided: held, never shrunk.
    assert_eq!(outage.rows.len(), BACKFILLED.len() + 1);
    for row in &outage.rows {
        assert_eq!(row.error, None, "{row:?}");
        assert_eq!(row.class, Some(Class::Remain), "{row:?}");
        assert_eq!(
            row.class_reason.as_deref(),
            Some("insufficient_data"),
            "{row:?}"
        );
        assert_eq!(row.verdict, Some(Verdict::Hold), "{row:?}");
        assert_eq!(row.change, None, "{row:?}");
    }
    assert!(
        setpoint.child.try_wait().unwrap().is_none(),
        "setpoint exited on the outage; stderr:\n{}",
        stderr()
    );

    setpoint.signal("TERM");
    let status = setpoint
        .wait_timeout(Duration::from_secs(30))
        .expect("setpoint did not stop on SIGTERM");
    assert!(status.success(), "{status}; stderr:\n{}", stderr());
    assert!(stderr().contains("setpoint: stopped"), "{}", stderr());

    // The state agrees with what was printed: the last decision for the reporting database
    // is the outage's hold, not the scale-down before it.
    let explained = setpoint_json(
        &[
            "--config",
            path.to_str().unwrap(),
            "explain",
            "pg-reporting-01",
            "--output",
            "json",
        ],
        0,
    );
    assert!(explained["cycle"].as_u64().unwrap() >= outage.cycle);
    assert_eq!(
        explained["classification"]["explanation"]["code"],
        "insufficient_data"
    );
    assert_eq!(explained["decision"]["verdict"], "hold");
}
