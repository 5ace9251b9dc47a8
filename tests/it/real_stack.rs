//! End to end against a real stack on loopback: PostgreSQL and exporters scraped by Prometheus
//! and VictoriaMetrics, with simulated history backfilled into both. The stack is started by
//! `examples/stack/stack.sh` on free ports and stopped by PID when the test ends, pass or fail.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use setpoint_observe::SimulatedFleet;
use setpoint_runtime::config::{ResourcesConfig, SourceConfig, StaticTarget};
use setpoint_runtime::{Config, CycleReport, Runtime, Shutdown};

use crate::setpoint_binary;

const BACKFILLED: [&str; 7] = [
    "pg-reporting-01",
    "pg-transactional-01",
    "pg-saturated-01",
    "pg-connections-01",
    "pg-gap-01",
    "pg-steady-01",
    "pg-spiky-01",
];

fn stack_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/stack/stack.sh")
}

/// Stops the stack when dropped, so a failing assertion never leaves servers behind.
struct Stack {
    dir: PathBuf,
    ports: BTreeMap<String, String>,
}

impl Stack {
    fn start(dir: &Path) -> Stack {
        let status = Command::new("bash")
            .arg(stack_script())
            .arg("start")
            .arg(dir)
            .status()
            .unwrap();
        let mut stack = Stack {
            dir: dir.to_path_buf(),
            ports: BTreeMap::new(),
        };
        assert!(
            status.success(),
            "the stack did not start; logs in {}",
            dir.display()
        );
        let env = std::fs::read_to_string(dir.join("ports.env")).unwrap();
        stack.ports = env
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        stack
    }

    fn port(&self, name: &str) -> &str {
        &self.ports[name]
    }

    fn backfill(&self, end: DateTime<Utc>) {
        let status = Command::new("bash")
            .arg(stack_script())
            .arg("backfill")
            .arg(&self.dir)
            .args(BACKFILLED)
            .env("SETPOINT", setpoint_binary())
            .env("BACKFILL_END", end.to_rfc3339())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "backfill failed; logs in {}",
            self.dir.display()
        );
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(stack_script())
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

fn declared_targets(stack: &Stack) -> Vec<StaticTarget> {
    let fleet = SimulatedFleet::quickstart(42);
    let mut out: Vec<StaticTarget> = fleet
        .targets()
        .iter()
        .filter(|t| BACKFILLED.contains(&t.id.as_str()))
        .map(|t| StaticTarget {
            id: t.id.clone(),
            aliases: vec![],
            resources: Some(ResourcesConfig {
                cpu: t.resources.cpu_millicores as f64 / 1000.0,
                memory_gib: t.resources.memory_bytes as f64 / (1u64 << 30) as f64,
                parameters: t.resources.parameters.clone(),
            }),
            labels: BTreeMap::new(),
        })
        .collect();
    // The live database: postgres_exporter and node_exporter each name it by their own address.
    out.push(StaticTarget {
        id: "pg-live".into(),
        aliases: vec![
            format!("127.0.0.1:{}", stack.port("PG_EXPORTER_PORT")),
            format!("127.0.0.1:{}", stack.port("NODE_PORT")),
        ],
        resources: Some(ResourcesConfig {
            cpu: 2.0,
            memory_gib: 8.0,
            parameters: BTreeMap::from([("shared_buffers".into(), "2GB".into())]),
        }),
        labels: BTreeMap::new(),
    });
    out
}

async fn run(config: Config, now: DateTime<Utc>) -> CycleReport {
    let runtime = Runtime::new(config).unwrap();
    let mut reports = runtime.run_once(now, None, &Shutdown::new()).await.unwrap();
    reports.remove(0)
}

fn classes(report: &CycleReport) -> BTreeMap<String, (Option<String>, Option<String>)> {
    report
        .rows
        .iter()
        .map(|r| {
            (
                r.target.clone(),
                (r.class.map(|c| c.to_string()), r.class_reason.clone()),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn backfilled_history_classifies_as_on_the_simulator_through_both_tsdbs() {
    let dir = tempfile::tempdir().unwrap();
    let stack = Stack::start(&dir.path().join("stack"));
    let now = (Utc::now() - TimeDelta::hours(1))
        .duration_trunc(TimeDelta::hours(1))
        .unwrap();
    stack.backfill(now);

    let simulated = run(
        Config {
            state_dir: dir.path().join("state-sim"),
            ..Config::default()
        },
        now,
    )
    .await;
    let expected = classes(&simulated);

    for (name, port) in [
        ("prometheus", stack.port("PROM_PORT")),
        ("victoria-metrics", stack.port("VM_PORT")),
    ] {
        let mut config = Config {
            state_dir: dir.path().join(format!("state-{name}")),
            ..Config::default()
        };
        let mut settings =
            setpoint_observe::PrometheusConfig::new(format!("http://127.0.0.1:{port}"));
        if name == "victoria-metrics" {
            settings.max_points_per_series = 30_000;
        }
        config.loops[0].source = SourceConfig::Prometheus(settings);
        config.loops[0].targets = declared_targets(&stack);
        let report = run(config, now).await;
        assert_eq!(report.queries, 4, "{name}: one range query per metric");
        assert_eq!(report.failed(), 0, "{name}: {:#?}", report.rows);
        let got = classes(&report);
        for id in BACKFILLED {
            assert_eq!(got.get(id), expected.get(id), "{name}: {id}");
        }
        // The live database was discovered and joined across exporters; it has seconds of
        // history, so it stays put.
        let live = report.rows.iter().find(|r| r.target == "pg-live").unwrap();
        assert_eq!(
            live.class_reason.as_deref(),
            Some("insufficient_data"),
            "{name}"
        );
        let reporting = report
            .rows
            .iter()
            .find(|r| r.target == "pg-reporting-01")
            .unwrap();
        assert_eq!(
            reporting.change.as_deref(),
            Some("8 vCPU / 32 GiB → 4 vCPU / 16 GiB, shared_buffers 8GB → 4GB"),
            "{name}"
        );
    }
}
