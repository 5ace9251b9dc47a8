//! `setpoint forecast` through the binary: backtests on the quickstart's simulated fleet, on a
//! CSV file and on a real Prometheus, the capacity report, and what bad input gets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The instant every test runs at (a Monday, 00:00 UTC): the quickstart's fleet and the
/// files end here.
const NOW: &str = "2026-11-23T00:00:00Z";
const NOW_SECONDS: i64 = 1_795_392_000;

fn setpoint(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_setpoint"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("SETPOINT_CONFIG")
        .env_remove("SETPOINT_NOW")
        .env_remove("SETPOINT_STATE_DIR")
        .output()
        .unwrap()
}

/// `setpoint --state-dir STATE --now NOW forecast ARGS…`
fn forecast(state: &Path, args: &[&str]) -> Output {
    let state = state.display().to_string();
    let mut all = vec!["--state-dir", &state, "--now", NOW, "forecast"];
    all.extend_from_slice(args);
    setpoint(&all)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}\n{}",
        stdout(output),
        stderr(output)
    );
    stdout(output)
}

fn json(output: &Output) -> Value {
    serde_json::from_str(&succeeded(output)).unwrap()
}

/// A series of `days` days every 5 minutes to NOW: 100 + 40 sin(2π · time of day), a daily
/// period peaking at 06:00, with ±2 of deterministic noise.
fn sine_csv(dir: &Path, days: i64) -> PathBuf {
    let path = dir.join("requests.csv");
    let mut text = String::from("timestamp,value\n");
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let step = 300;
    let start = NOW_SECONDS - days * 86_400;
    for t in (start..NOW_SECONDS).step_by(step) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let noise = (state % 4001) as f64 / 1000.0 - 2.0;
        let phase = (t % 86_400) as f64 / 86_400.0 * std::f64::consts::TAU;
        text.push_str(&format!("{t},{:.3}\n", 100.0 + 40.0 * phase.sin() + noise));
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn summary_at(series: &Value, horizon_seconds: i64) -> &Value {
    series["summary"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["horizon_seconds"] == horizon_seconds)
        .unwrap()
}

/// The row fields `--help` documents, in the CSV's order.
const ROW_FIELDS: [&str; 15] = [
    "series",
    "origin",
    "horizon",
    "horizon_seconds",
    "at",
    "forecast",
    "lower",
    "upper",
    "actual",
    "persistence",
    "seasonal_naive",
    "abs_error",
    "abs_error_persistence",
    "abs_error_seasonal_naive",
    "reason",
];

const SUMMARY_FIELDS: [&str; 11] = [
    "horizon",
    "horizon_seconds",
    "count",
    "mae",
    "mae_persistence",
    "mae_seasonal_naive",
    "ratio_persistence",
    "ratio_seasonal_naive",
    "mape",
    "mase",
    "coverage",
];

#[test]
fn a_backtest_on_the_quickstart_fleet_as_a_table_json_and_csv() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let args = ["pg-spiky-01/cpu", "--from", "now-3h", "--to", "now"];

    let table = succeeded(&forecast(&state, &args));
    for needle in [
        "source simulated(seed=42)",
        "loop weekly-rightsizing",
        "series pg-spiky-01/cpu",
        "pg-spiky-01 · 12 forecasts",
        "FORECAST",
        "INTERVAL",
        "ACTUAL",
        "PERSIST.",
        "S.NAIVE",
        "|ERR| P.",
        "|ERR| SN",
        "summary",
        "MAE PERS.",
        "MAE S.NAIVE",
        "×PERS.",
        "×S.NAIVE",
        "MAPE",
        "MASE",
        "COVERAGE",
    ] {
        assert!(table.contains(needle), "{needle:?} missing:\n{table}");
    }

    let doc = json(&forecast(&state, &[&args[..], &["-o", "json"]].concat()));
    assert_eq!(doc["kind"], "backtest");
    assert_eq!(doc["loop"], "weekly-rightsizing");
    assert_eq!(doc["by"], "instance");
    assert_eq!(doc["step_seconds"], 300);
    assert_eq!(doc["horizons_seconds"], serde_json::json!([900, 3600]));
    assert_eq!(doc["from"], "2026-11-22T21:00:00Z");
    let series = doc["series"].as_array().unwrap();
    assert_eq!(series.len(), 1);
    assert_eq!(series[0]["name"], "pg-spiky-01");
    assert_eq!(series[0]["error"], Value::Null);
    let rows = series[0]["rows"].as_array().unwrap();
    // Six origins (every 30 minutes over 3 hours), two horizons each.
    assert_eq!(rows.len(), 12);
    for row in rows {
        for field in &ROW_FIELDS[1..] {
            assert!(row.get(field).is_some(), "{field} missing from {row}");
        }
        assert!(row["forecast"].is_f64(), "{row}");
        assert!(row["lower"].as_f64() <= row["forecast"].as_f64());
        assert!(row["forecast"].as_f64() <= row["upper"].as_f64());
        assert!(row["persistence"].is_f64() && row["seasonal_naive"].is_f64());
        // Only the past was seen: the origin is on the step grid and before the target.
        assert!(row["origin"].as_str().unwrap() < row["at"].as_str().unwrap());
    }
    for horizon in [900, 3600] {
        let summary = summary_at(&series[0], horizon);
        for field in SUMMARY_FIELDS {
            assert!(
                summary.get(field).is_some(),
                "{field} missing from {summary}"
            );
        }
        assert_eq!(summary["count"], 6);
        assert!(summary["mae"].as_f64().unwrap() > 0.0);
        assert!(summary["coverage"].as_f64().unwrap() <= 1.0);
    }
    assert_eq!(doc["overall"].as_array().unwrap().len(), 2);

    let csv = succeeded(&forecast(&state, &[&args[..], &["-o", "csv"]].concat()));
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], ROW_FIELDS.join(","));
    assert_eq!(lines.len(), 1 + rows.len(), "{csv}");
    assert!(lines[1..].iter().all(|l| l.starts_with("pg-spiky-01,")));
    assert!(lines[1].contains("2026-11-22T21:00:00Z,15m,900,2026-11-22T21:15:00Z"));

    // A PromQL expression the simulated source cannot answer: a source error, exit 1.
    let output = forecast(
        &state,
        &["up{job=\"x\"}", "--from", "now-1h", "--to", "now"],
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        stderr(&output).contains("unknown metric"),
        "{}",
        stderr(&output)
    );

    // A target the source has no series for.
    let output = forecast(
        &state,
        &["pg-nosuch-01/cpu", "--from", "now-1h", "--to", "now"],
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        stderr(&output).contains("no cpu series for target \"pg-nosuch-01\""),
        "{}",
        stderr(&output)
    );

    // A target whose exporter went silent 11 days ago: the rows say why, exit 1.
    let output = forecast(
        &state,
        &["pg-gap-01/cpu", "--from", "now-1h", "--to", "now"],
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        stdout(&output).contains("pg-gap-01: no forecast: history too gappy to fit"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn a_csv_file_with_a_daily_sine_beats_persistence_an_hour_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let file = sine_csv(dir.path(), 21);
    let file = file.display().to_string();
    let doc = json(&forecast(
        dir.path(),
        &[
            "--file", &file, "--from", "now-1d", "--to", "now", "-o", "json",
        ],
    ));
    assert_eq!(doc["source"], format!("file {file}"));
    assert_eq!(doc["step_seconds"], 300, "the file's spacing");
    let series = &doc["series"][0];
    assert_eq!(series["name"], "requests");
    assert_eq!(series["error"], Value::Null);
    let hour = summary_at(series, 3600);
    // 48 origins, the last hour's without what followed.
    assert!(hour["count"].as_u64().unwrap() >= 40, "{hour}");
    assert!(
        hour["ratio_persistence"].as_f64().unwrap() < 0.7,
        "the daily pattern is worth more than the last value an hour out: {hour}"
    );
    assert!(hour["mae"].as_f64().unwrap() < hour["mae_persistence"].as_f64().unwrap());
    let coverage = hour["coverage"].as_f64().unwrap();
    assert!((0.5..=1.0).contains(&coverage), "{hour}");

    // The table says the same.
    let table = succeeded(&forecast(
        dir.path(),
        &["--file", &file, "--from", "now-6h", "--to", "now"],
    ));
    assert!(table.contains("requests · 24 forecasts"), "{table}");
}

#[test]
fn the_capacity_report_says_when_the_forecast_and_its_upper_bound_cross() {
    let dir = tempfile::tempdir().unwrap();
    let file = sine_csv(dir.path(), 21).display().to_string();
    // At midnight the sine rises from 100 by about 10 an hour: 108 is reached after ~46 min.
    let args = ["--file", &file, "--at", "now", "--threshold", "108"];
    let doc = json(&forecast(
        dir.path(),
        &[&args[..], &["-o", "json"]].concat(),
    ));
    assert_eq!(doc["kind"], "capacity");
    assert_eq!(doc["at"], NOW);
    assert_eq!(doc["threshold"], 108.0);
    let series = &doc["series"][0];
    assert_eq!(series["error"], Value::Null);
    let forecasts = series["forecasts"].as_array().unwrap();
    assert_eq!(forecasts.len(), 2);
    for f in forecasts {
        for field in [
            "horizon",
            "horizon_seconds",
            "at",
            "forecast",
            "lower",
            "upper",
            "reason",
        ] {
            assert!(f.get(field).is_some(), "{field} missing from {f}");
        }
    }
    let crossing = &series["crossing"];
    assert_eq!(crossing["already_above"], false);
    assert_eq!(crossing["within_seconds"], 3600);
    let point = crossing["forecast_crosses_in_seconds"].as_i64().unwrap();
    let upper = crossing["upper_crosses_in_seconds"].as_i64().unwrap();
    assert!((35 * 60..=55 * 60).contains(&point), "{crossing}");
    assert!(upper <= point, "{crossing}");
    assert_eq!(
        crossing["upper_crosses_at"],
        chrono::DateTime::from_timestamp(NOW_SECONDS + upper, 0)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );

    let table = succeeded(&forecast(dir.path(), &args));
    assert!(
        table.contains(&format!(
            "upper bound crosses 108 in {} min, forecast in {} min",
            upper / 60,
            point / 60
        )) || table.contains("forecast and upper bound cross 108 in"),
        "{table}"
    );

    // A level never reached within the hour.
    let high = json(&forecast(
        dir.path(),
        &[
            "--file",
            &file,
            "--at",
            "now",
            "--threshold",
            "1500",
            "-o",
            "json",
        ],
    ));
    let crossing = &high["series"][0]["crossing"];
    assert_eq!(crossing["upper_crosses_at"], Value::Null);
    assert_eq!(crossing["forecast_crosses_at"], Value::Null);
}

#[test]
fn bad_input_gets_a_clear_message_and_its_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let expect = |output: Output, code: i32, needle: &str| {
        assert_eq!(output.status.code(), Some(code), "{output:?}");
        let text = format!("{}{}", stdout(&output), stderr(&output));
        assert!(text.contains(needle), "{needle:?} missing:\n{text}");
    };

    expect(
        forecast(
            &state,
            &["x/cpu", "--loop", "nope", "--from", "now-1h", "--to", "now"],
        ),
        1,
        "no loop named \"nope\"; loops: weekly-rightsizing",
    );
    expect(
        forecast(&state, &["x/cpu", "--from", "now", "--to", "now-1h"]),
        1,
        "is not before --to",
    );
    expect(
        forecast(
            &state,
            &[
                "x/cpu",
                "--from",
                "now-1h",
                "--to",
                "now",
                "--horizon",
                "2h",
            ],
        ),
        1,
        "--horizon 2h: longer than the forecaster's maximum of 1h",
    );

    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "timestamp,value\n2026-11-22T00:00:00Z,1\n2026-11-22T00:05:00Z,oops\n",
    )
    .unwrap();
    let bad = bad.display().to_string();
    expect(
        forecast(&state, &["--file", &bad, "--from", "now-1h", "--to", "now"]),
        1,
        &format!("{bad}:3: value \"oops\" is not a number"),
    );

    // Two days are not enough history: no crash, the rows say why, exit 1.
    let short = sine_csv(dir.path(), 2).display().to_string();
    let output = forecast(
        &state,
        &[
            "--file", &short, "--from", "now-1h", "--to", "now", "-o", "json",
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let doc: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let reason = doc["series"][0]["rows"][0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("history too short to fit: 1d23h observed, 14d needed"),
        "{reason}"
    );
    assert!(stderr(&output).contains("no forecast for requests"));

    // Usage errors are clap's: exit 2.
    for args in [
        &["x/cpu", "--at", "now"][..],
        &["x/cpu", "--from", "yesterday", "--to", "now"],
        &["x/cpu", "--from", "now-1h", "--to", "now", "--level", "1.5"],
        &["--from", "now-1h", "--to", "now"],
        &[
            "x/cpu", "--file", "a.csv", "--from", "now-1h", "--to", "now",
        ],
    ] {
        let output = forecast(&state, args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
    }

    // A source that cannot be reached.
    let config = dir.path().join("setpoint.yaml");
    std::fs::write(
        &config,
        format!(
            "state_dir: {}\nloops:\n  - name: api\n    plugin: builtin:postgres\n    source: {{ kind: prometheus, url: \"http://{}\", timeout: 2s, retries: 0 }}\n",
            state.display(),
            closed_port()
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let output = setpoint(&[
        "--config",
        &config,
        "--now",
        NOW,
        "forecast",
        "rate(http_requests_total[5m])",
        "--from",
        "now-1h",
        "--to",
        "now",
    ]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        stderr(&output).contains("unreachable"),
        "{}",
        stderr(&output)
    );
}

/// An address nothing listens on: a 127.0.0.1 port that was free a moment ago.
fn closed_port() -> std::net::SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A Prometheus on a free 127.0.0.1 port over a directory of backfilled blocks; killed when
/// dropped.
struct Prometheus {
    child: Child,
    url: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ready(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /-/ready HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200")
}

/// Backfills `openmetrics` with promtool and serves it.
fn prometheus(dir: &Path, openmetrics: &str) -> Prometheus {
    let file = dir.join("series.om");
    std::fs::write(&file, openmetrics).unwrap();
    let data = dir.join("prometheus");
    let status = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg("--max-block-duration=168h")
        .arg(&file)
        .arg(&data)
        .stdout(Stdio::null())
        .status()
        .expect("promtool (scripts/setup.sh --stack installs it)");
    assert!(status.success());
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1m\n").unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg("--storage.tsdb.retention.time=400d")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("prometheus (scripts/setup.sh --stack installs it)");
    let server = Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready(port) {
        assert!(
            Instant::now() < deadline,
            "prometheus did not start; see {}",
            dir.join("prometheus.log").display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    server
}

#[test]
fn a_backtest_against_a_real_prometheus_forecasts_every_series_of_the_query() {
    let dir = tempfile::tempdir().unwrap();
    // Three weeks of two services' request rates every 5 minutes: daily sines of their own
    // sizes, the same as the CSV test's.
    let mut om = String::from("# TYPE demo_requests gauge\n");
    for (service, scale) in [("web-1", 1.0), ("web-2", 3.0)] {
        let csv = std::fs::read_to_string(sine_csv(dir.path(), 21)).unwrap();
        for line in csv.lines().skip(1) {
            let (t, v) = line.split_once(',').unwrap();
            let v: f64 = v.parse().unwrap();
            om.push_str(&format!(
                "demo_requests{{service=\"{service}\"}} {} {t}\n",
                v * scale
            ));
        }
    }
    om.push_str("# EOF\n");
    let server = prometheus(dir.path(), &om);
    let config = dir.path().join("setpoint.yaml");
    std::fs::write(
        &config,
        format!(
            "state_dir: {}\nloops:\n  - name: api\n    plugin: builtin:postgres\n    window: {{ step: 5m }}\n    source: {{ kind: prometheus, url: \"{}\" }}\n",
            dir.path().join("state").display(),
            server.url
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let output = setpoint(&[
        "--config",
        &config,
        "--now",
        NOW,
        "forecast",
        "demo_requests",
        "--loop",
        "api",
        "--by",
        "service",
        "--from",
        "now-12h",
        "--to",
        "now",
        "--horizon",
        "60m",
        "-o",
        "json",
    ]);
    let doc = json(&output);
    assert_eq!(doc["query"], "demo_requests");
    assert_eq!(doc["by"], "service");
    let series = doc["series"].as_array().unwrap();
    let names: Vec<&str> = series.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["web-1", "web-2"]);
    for s in series {
        assert_eq!(s["error"], Value::Null, "{s}");
        let hour = summary_at(s, 3600);
        assert!(hour["count"].as_u64().unwrap() >= 20, "{hour}");
        assert!(hour["ratio_persistence"].as_f64().unwrap() < 0.7, "{hour}");
    }
}
