//! The stack's own PostgreSQL under a short pgbench load, read through postgres_exporter →
//! Prometheus → setpoint with the plugin's real PromQL: the active-connection feature of the
//! live target moves by what the load adds, no more, no less.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use setpoint_runtime::Config;
use setpoint_runtime::config::HumanDuration;

use crate::stack::{self, Guarded, LIVE, Stack, setpoint, setpoint_json, write_config};

/// Evaluation step of the test's loop: the shortest the config allows, so that a load of
/// seconds spans several evaluation points.
const STEP_SECONDS: i64 = 15;

/// pgbench clients, each holding an active statement for the whole run.
const CLIENTS: u32 = 20;

/// How long the load runs.
const LOAD_SECONDS: u32 = 40;

/// max_connections of the stack's PostgreSQL.
const MAX_CONNECTIONS: f64 = 100.0;

fn pgbench() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin/pgbench"))
        .filter(|p| p.exists())
        .collect();
    // Directory names are major versions: the numerically newest wins.
    found.sort_by_key(|p| {
        p.components()
            .nth(4)
            .and_then(|c| c.as_os_str().to_str()?.parse::<u32>().ok())
    });
    found
        .pop()
        .expect("no pgbench under /usr/lib/postgresql/*/bin")
}

/// Four quiet days for the live database's identity, ending ten minutes before the stack
/// started: one active connection (the exporter's own query) out of 100.
///
/// Weekly features need half a week of samples; a stack minutes old has far less. The history
/// ends well before the first real scrape so no evaluation sees both, and its labels are the
/// exporter's own.
fn quiet_history(path: &Path, stack: &Stack, started: DateTime<Utc>) {
    let end = (started - TimeDelta::minutes(10))
        .duration_trunc(TimeDelta::minutes(1))
        .unwrap()
        .timestamp();
    let start = end - 4 * 24 * 3600;
    let server = format!("127.0.0.1:{}", stack.port("PG_PORT"));
    let mut text = String::new();
    for (name, labels, value) in [
        (
            "pg_stat_activity_count",
            format!(
                r#"datname="postgres",instance="{LIVE}",job="postgres",server="{server}",state="active""#
            ),
            1.0,
        ),
        (
            "pg_settings_max_connections",
            format!(r#"instance="{LIVE}",job="postgres",server="{server}""#),
            MAX_CONNECTIONS,
        ),
    ] {
        for t in (start..end).step_by(60) {
            text.push_str(&format!("{name}{{{labels}}} {value} {t}\n"));
        }
    }
    text.push_str("# EOF\n");
    std::fs::write(path, text).unwrap();
}

/// A feature of the live target after the last cycle: (value, coverage).
fn feature(config: &Path, name: &str) -> (Option<f64>, f64) {
    let entry = setpoint_json(
        &[
            "--config",
            config.to_str().unwrap(),
            "explain",
            LIVE,
            "--output",
            "json",
        ],
        0,
    );
    let feature = entry["features"]["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {entry:#}"))
        .clone();
    (
        feature["value"].as_f64(),
        feature["coverage"].as_f64().unwrap(),
    )
}

fn connections_w1(config: &Path) -> (f64, f64) {
    let (value, coverage) = feature(config, "connections_w1");
    let value = value.unwrap_or_else(|| panic!("connections_w1 is missing ({coverage})"));
    (value, coverage)
}

fn cycle(config: &Path) {
    let out = setpoint(&[
        "--config",
        config.to_str().unwrap(),
        "run",
        "--once",
        "--output",
        "json",
    ]);
    // Degraded (4) is expected: this stack has no history for the example's backfilled
    // targets, and the host's series may start after the window's end right after a restart.
    assert!(
        matches!(out.status.code(), Some(0 | 4)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Four metrics, and the p99, busiest hour and time near saturation of each (the safety
    // floor's and the classifier's peak features).
    assert_eq!(reports[0]["queries"], 16);
}

/// Evaluation points (multiples of the step) in `[from, to]`.
fn points_between(from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
    let step = STEP_SECONDS * 1000;
    let first = from.timestamp_millis().div_euclid(step) * step
        + if from.timestamp_millis().rem_euclid(step) == 0 {
            0
        } else {
            step
        };
    let last = to.timestamp_millis();
    if first > last {
        0
    } else {
        (last - first) / step + 1
    }
}

/// What Prometheus holds around the load, for failure messages.
fn prometheus_view(stack: &Stack, from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    let out = Command::new("curl")
        .args(["-sg", "--max-time", "5"])
        .arg(format!(
            "http://127.0.0.1:{}/api/v1/query_range",
            stack.port("PROM_PORT")
        ))
        .args([
            "--data-urlencode",
            r#"query=sum by (instance) (pg_stat_activity_count{state="active"})"#,
        ])
        .arg("--data-urlencode")
        .arg(format!("start={}", from.timestamp()))
        .arg("--data-urlencode")
        .arg(format!("end={}", to.timestamp()))
        .args(["--data-urlencode", &format!("step={STEP_SECONDS}")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_pgbench_load_moves_the_live_databases_connection_feature() {
    let _exclusive = stack::exclusive_blocking();
    let dir = tempfile::tempdir().unwrap();
    let started = Utc::now();
    let stack = Stack::start(&dir.path().join("stack"));
    let history = dir.path().join("live-history.om");
    quiet_history(&history, &stack, started);
    stack.import(&history);

    // The example config, evaluated every 15 s so that the load lands on several points.
    let mut config = Config::load(&stack.config_path("prometheus")).unwrap();
    config.state_dir = dir.path().join("state-live");
    config.loops[0].window.step = HumanDuration(Duration::from_secs(STEP_SECONDS as u64));
    let config_path = dir.path().join("setpoint-live.yaml");
    write_config(&config, &config_path);

    cycle(&config_path);
    let (before, coverage_before) = connections_w1(&config_path);
    assert!(coverage_before >= 0.5, "{coverage_before}");
    assert!(
        (before - 1.0 / MAX_CONNECTIONS).abs() < 1e-4,
        "before the load the database is quiet: {before}"
    );

    // Each client sleeps inside its statement, so it counts as active for the whole run (a
    // TPC-B client spends much of its time idle between statements, which would make the
    // expected count guesswork).
    let script = dir.path().join("sleep.sql");
    std::fs::write(&script, "SELECT pg_sleep(0.5);\n").unwrap();
    let load_start = Utc::now();
    let mut load = Guarded::spawn(
        Command::new(pgbench())
            .args(["-n", "-j", "2", "-h", "127.0.0.1", "-U", "postgres"])
            .arg("-p")
            .arg(stack.port("PG_PORT"))
            .arg("-c")
            .arg(CLIENTS.to_string())
            .arg("-T")
            .arg(LOAD_SECONDS.to_string())
            .arg("-f")
            .arg(&script)
            .arg("postgres")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("pgbench.log")).unwrap()),
    );
    let status = load
        .wait_timeout(Duration::from_secs(u64::from(LOAD_SECONDS) + 30))
        .expect("pgbench did not finish");
    let load_end = Utc::now();
    assert!(
        status.success(),
        "pgbench: {status}; {}",
        std::fs::read_to_string(dir.path().join("pgbench.log")).unwrap_or_default()
    );

    // The window ends at the last whole step: wait until every point the load touched is in.
    let settled = load_end + TimeDelta::seconds(STEP_SECONDS + 3);
    std::thread::sleep((settled - Utc::now()).to_std().unwrap_or_default());
    cycle(&config_path);
    let (after, coverage_after) = connections_w1(&config_path);
    // The host's series (node_exporter, instance pg-live-host) joined the database's through
    // the config's alias: the live target has CPU samples too.
    let (_, cpu_coverage) = feature(&config_path, "cpu_w1");
    assert!(cpu_coverage > 0.0, "no host CPU samples for {LIVE}");

    // The new mean differs from the old by what the added points hold above it:
    // after − before = Σ (added − before) / samples, and samples = coverage × expected.
    let expected_per_week = (7 * 24 * 3600 / STEP_SECONDS) as f64;
    let samples = (coverage_after * expected_per_week).round();
    assert!(coverage_after > coverage_before);
    let added_connections = (after - before) * samples * MAX_CONNECTIONS;
    // Points well inside the load saw every client (the scrape runs every second); points at
    // its edges may have seen some of them; quiet points add nothing above the quiet mean.
    let inside = points_between(
        load_start + TimeDelta::seconds(5),
        load_end - TimeDelta::seconds(2),
    );
    let touched = points_between(load_start, load_end + TimeDelta::seconds(2));
    assert!(inside >= 2, "a {LOAD_SECONDS} s load spans two 15 s points");
    eprintln!(
        "connections_w1 {before} → {after} over {samples} samples: {added_connections:.2} active \
         connections added at {inside} to {touched} points of the load"
    );
    let low = inside as f64 * f64::from(CLIENTS) * 0.9;
    // (plus a rounding allowance: the figure is rebuilt from a mean, in floating point)
    let high = touched as f64 * (f64::from(CLIENTS) + 1.0) + 1e-6;
    assert!(
        (low..=high).contains(&added_connections),
        "connections_w1 went {before} → {after} over {samples} samples: {added_connections:.2} \
         active connections added, expected {low}..={high} ({inside} to {touched} points of \
         {CLIENTS} clients); Prometheus: {}",
        prometheus_view(
            &stack,
            load_start - TimeDelta::seconds(30),
            load_end + TimeDelta::seconds(30)
        )
    );
}
