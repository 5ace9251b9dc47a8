//! How a cycle behaves when its Prometheus-compatible source misbehaves, through the binary and a
//! scripted server on 127.0.0.1: one range query per metric whatever the fleet size; and for
//! every failure (HTTP 4xx/5xx, malformed JSON, a query error, a timeout, NaN/Inf, a target
//! missing from an answer, one metric failing) the cycle completes, the affected targets hold
//! with a reason naming the cause, the exit status is 4, and nothing is ever scaled down.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use setpoint_test_support::{HttpFake, Response};

use crate::setpoint_binary;

/// The PostgreSQL plugin's metrics, by a fragment of their PromQL that identifies them.
const METRICS: [(&str, &str); 4] = [
    ("cpu", "node_cpu_seconds_total"),
    ("memory", "node_memory_MemAvailable_bytes"),
    ("connections", "pg_stat_activity_count"),
    ("iops", "node_disk_io_time_seconds_total"),
];

/// A value every healthy metric reports: low enough that a complete fingerprint scales down.
const LOW: &str = "0.1";

/// What the server does for one metric.
#[derive(Clone)]
enum Behaviour {
    /// Answers for these targets with `value` for each (None: every target).
    Answer {
        only: Option<Vec<String>>,
        values: BTreeMap<String, String>,
    },
    /// Answers with this HTTP status and body.
    Reply(u16, String),
    /// Never answers.
    Silent,
    /// Answers healthily, one byte of the body every `pause`.
    Trickle(Duration),
}

fn healthy() -> Behaviour {
    Behaviour::Answer {
        only: None,
        values: BTreeMap::new(),
    }
}

/// A scripted Prometheus API. Stops when dropped.
struct Server {
    fake: HttpFake,
}

impl Server {
    fn url(&self) -> &str {
        self.fake.url()
    }

    /// The PromQL of every range query so far.
    fn range_requests(&self) -> Vec<String> {
        self.fake
            .requests()
            .iter()
            .filter(|r| r.path().contains("/api/v1/query_range"))
            .map(|r| form(&r.text()).get("query").cloned().unwrap_or_default())
            .collect()
    }
}

fn decode(text: &str) -> String {
    let text = text.replace('+', " ");
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}

fn form(body: &str) -> BTreeMap<String, String> {
    body.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), decode(v)))
        .collect()
}

/// The `query_range` answer for `targets`: a weekly summary (aggregate and count per week)
/// when the query asks for one, raw samples otherwise.
fn matrix(request: &BTreeMap<String, String>, targets: &[(String, String)]) -> String {
    let start: f64 = request["start"].parse().unwrap();
    let end: f64 = request["end"].parse().unwrap();
    let step: f64 = request["step"].parse().unwrap();
    let times: Vec<f64> = (0..)
        .map(|i| start + f64::from(i) * step)
        .take_while(|t| *t <= end + 1e-6)
        .collect();
    let weekly = request["query"].contains("setpoint_stat");
    let mut result = Vec::new();
    for (id, value) in targets {
        let points = |v: &str| {
            times
                .iter()
                .map(|t| format!("[{t:.3},\"{v}\"]"))
                .collect::<Vec<_>>()
                .join(",")
        };
        if weekly {
            result.push(format!(
                r#"{{"metric":{{"instance":"{id}","setpoint_stat":"value"}},"values":[{}]}}"#,
                points(value)
            ));
            result.push(format!(
                r#"{{"metric":{{"instance":"{id}","setpoint_stat":"count"}},"values":[{}]}}"#,
                points("2016")
            ));
        } else {
            result.push(format!(
                r#"{{"metric":{{"instance":"{id}"}},"values":[{}]}}"#,
                points(value)
            ));
        }
    }
    format!(
        r#"{{"status":"success","data":{{"resultType":"matrix","result":[{}]}}}}"#,
        result.join(",")
    )
}

fn serve(targets: Vec<String>, behaviours: BTreeMap<&'static str, Behaviour>) -> Server {
    let json = |status, body: &str| Response::raw(status, "application/json", body);
    let fake = HttpFake::start(move |request| {
        let form = form(&request.text());
        let query = form.get("query").cloned().unwrap_or_default();
        if request.path().contains("/api/v1/query_range") {
            let metric = METRICS
                .iter()
                .find(|(_, fragment)| query.contains(fragment))
                .map(|(name, _)| *name)
                .unwrap_or("unknown");
            match behaviours.get(metric).cloned().unwrap_or_else(healthy) {
                Behaviour::Answer { only, values } => {
                    let answering: Vec<(String, String)> = targets
                        .iter()
                        .filter(|t| only.as_ref().is_none_or(|o| o.contains(t)))
                        .map(|t| {
                            let v = values.get(t).cloned().unwrap_or(LOW.to_string());
                            (t.clone(), v)
                        })
                        .collect();
                    json(200, &matrix(&form, &answering))
                }
                Behaviour::Reply(status, body) => json(status, &body),
                Behaviour::Silent => Response::hang(),
                Behaviour::Trickle(pause) => {
                    let answering: Vec<(String, String)> = targets
                        .iter()
                        .map(|t| (t.clone(), LOW.to_string()))
                        .collect();
                    json(200, &matrix(&form, &answering)).trickled(pause)
                }
            }
        } else if request.path().contains("/api/v1/query") {
            let result: Vec<String> = targets
                .iter()
                .map(|t| {
                    format!(
                        r#"{{"metric":{{"__name__":"pg_up","instance":"{t}"}},"value":[1795413600,"1"]}}"#
                    )
                })
                .collect();
            json(
                200,
                &format!(
                    r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#,
                    result.join(",")
                ),
            )
        } else {
            json(404, "not found")
        }
    });
    Server { fake }
}

fn ids(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("db-{i:03}")).collect()
}

/// What one run of the binary gave.
struct Run {
    status: Option<i32>,
    stderr: String,
    report: Value,
}

impl Run {
    fn row(&self, target: &str) -> &Value {
        self.report["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["target"] == target)
            .unwrap_or_else(|| panic!("no row for {target}: {}", self.report))
    }

    fn degraded(&self) -> Vec<String> {
        self.report["degraded"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap().to_string())
            .collect()
    }

    /// Every row missing data: never a scale-down that could go ahead.
    fn assert_nothing_shrinks(&self) {
        for row in self.report["rows"].as_array().unwrap() {
            let missing_data = row["observe_issues"]
                .as_array()
                .is_some_and(|i| !i.is_empty())
                || row["class_reason"] == "insufficient_data";
            if !missing_data {
                continue;
            }
            let approved_or_queued = row["verdict"] == "act" || row["verdict"] == "review";
            let shrinking = row["change"].as_str().is_some_and(|c| c.contains("→"))
                && row["class"] == "scale_down";
            assert!(
                !(approved_or_queued && shrinking),
                "a target would shrink on missing data: {row}"
            );
        }
    }

    /// The target holds on missing data, with a reason that names `cause`.
    fn assert_holds_because(&self, target: &str, cause: &str) {
        let row = self.row(target);
        assert_eq!(row["verdict"], "hold", "{row}");
        assert_ne!(row["class"], "scale_down", "{row}");
        let issues = row["observe_issues"].to_string();
        assert!(
            issues.contains(cause),
            "{target}: {cause:?} not in {issues}"
        );
    }
}

/// A config file in `dir` with one loop over `targets` on `server`: `source` is added to the
/// source's settings (`, key: value`), `lines` to the loop's (whole lines) and the file's top.
fn write_config(
    dir: &Path,
    server: &Server,
    targets: &[String],
    source: &str,
    lines: &str,
) -> PathBuf {
    let mut yaml = format!(
        "state_dir: {}\n{lines}loops:\n  - name: w\n    source: {{ kind: prometheus, url: '{}', timeout: 1s, retries: 1{source} }}\n    targets:\n",
        dir.join("state").display(),
        server.url()
    );
    for id in targets {
        yaml.push_str(&format!(
            "      - {{ id: {id}, resources: {{ cpu: 8, memory_gib: 32 }} }}\n"
        ));
    }
    let config = dir.join("setpoint.yaml");
    std::fs::write(&config, yaml).unwrap();
    config
}

/// One cycle through the binary, its JSON report read back.
fn run_config(config: &Path) -> Run {
    let out = Command::new(setpoint_binary())
        .args(["-v", "--config"])
        .arg(config)
        .args([
            "run",
            "--once",
            "--output",
            "json",
            "--now",
            "2026-11-23T06:00:00Z",
        ])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let reports: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}); stderr:\n{stderr}"));
    Run {
        status: out.status.code(),
        stderr,
        report: reports[0].clone(),
    }
}

fn run(dir: &Path, server: &Server, targets: &[String], extra_source: &str) -> Run {
    run_config(&write_config(dir, server, targets, extra_source, ""))
}

#[test]
fn one_range_query_per_metric_whatever_the_fleet_size() {
    for size in [3, 300] {
        let dir = tempfile::tempdir().unwrap();
        let targets = ids(size);
        let server = serve(targets.clone(), BTreeMap::new());
        let run = run(dir.path(), &server, &targets, "");
        assert_eq!(run.status, Some(0), "{}", run.stderr);
        let requests = server.range_requests();
        // Four metrics, and the p99, busiest hour and time near saturation of each.
        assert_eq!(requests.len(), 16, "{size} targets: {requests:#?}");
        assert!(
            requests.iter().all(|q| q.contains(":300s]")),
            "{requests:#?}"
        );
        // Each metric's samples are counted once, with its own query, not again per peak.
        assert_eq!(
            requests
                .iter()
                .filter(|q| q.contains("count_over_time("))
                .count(),
            4
        );
        assert_eq!(
            requests
                .iter()
                .filter(|q| q.contains("quantile_over_time(0.99") || q.contains("[1h:300s])[1w:1h]"))
                .count(),
            8
        );
        assert_eq!(run.report["queries"], 16);
        assert!(
            run.stderr.contains("queries=16"),
            "the trace shows the count: {}",
            run.stderr
        );
        assert_eq!(run.report["rows"].as_array().unwrap().len(), size);
        // The baseline every failure below departs from: complete low data scales down.
        assert_eq!(run.row("db-001")["class"], "scale_down");
        assert_eq!(run.row("db-001")["verdict"], "review");
    }
}

/// One failure of the memory query (which the classifier needs) holds every target.
fn memory_fails(behaviour: Behaviour, cause: &str) {
    let dir = tempfile::tempdir().unwrap();
    let targets = ids(3);
    let server = serve(targets.clone(), BTreeMap::from([("memory", behaviour)]));
    let run = run(dir.path(), &server, &targets, "");
    assert_eq!(run.status, Some(4), "{}", run.stderr);
    let degraded = run.degraded();
    assert_eq!(degraded.len(), 1, "{degraded:?}");
    assert!(
        degraded[0].starts_with("memory: query failed"),
        "{degraded:?}"
    );
    assert!(degraded[0].contains(cause), "{cause:?} not in {degraded:?}");
    assert!(run.stderr.contains("degraded: memory"), "{}", run.stderr);
    for id in &targets {
        run.assert_holds_because(id, cause);
        assert_eq!(run.row(id)["class_reason"], "insufficient_data");
    }
    run.assert_nothing_shrinks();
}

#[test]
fn a_server_error_holds_the_fleet() {
    memory_fails(
        Behaviour::Reply(503, "upstream overloaded".into()),
        "HTTP 503",
    );
}

#[test]
fn a_client_error_names_the_server_message() {
    memory_fails(
        Behaviour::Reply(
            400,
            r#"{"status":"error","errorType":"bad_data","error":"1:15: parse error: unexpected"}"#
                .into(),
        ),
        "parse error: unexpected",
    );
}

#[test]
fn malformed_json_holds_the_fleet() {
    memory_fails(
        Behaviour::Reply(200, "{\"status\":\"success\",\"data\":[".into()),
        "malformed",
    );
}

#[test]
fn a_query_error_holds_the_fleet() {
    memory_fails(
        Behaviour::Reply(
            200,
            r#"{"status":"error","errorType":"execution","error":"query processing would load too many samples into memory"}"#
                .into(),
        ),
        "too many samples",
    );
}

#[test]
fn a_timeout_holds_the_fleet() {
    memory_fails(Behaviour::Silent, "no answer within 1s");
}

#[test]
fn a_trickling_answer_is_cut_at_the_timeout() {
    // A whole answer, a byte every 50 ms: minutes to arrive, cut after the 1 s timeout.
    let started = std::time::Instant::now();
    memory_fails(
        Behaviour::Trickle(Duration::from_millis(50)),
        "no answer within 1s",
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn an_answer_over_the_size_cap_is_refused_as_it_streams_in() {
    let dir = tempfile::tempdir().unwrap();
    let targets = ids(3);
    // 100 kB of an answer where 20 kB are allowed: refused, not read whole.
    let huge = format!(
        r#"{{"status":"success","data":{{"resultType":"matrix","result":[{}]}}}}"#,
        vec![r#"{"metric":{"instance":"x"},"values":[]}"#; 2500].join(",")
    );
    let server = serve(
        targets.clone(),
        BTreeMap::from([("memory", Behaviour::Reply(200, huge))]),
    );
    let run = run(dir.path(), &server, &targets, ", max_response_bytes: 20000");
    assert_eq!(run.status, Some(4), "{}", run.stderr);
    for id in &targets {
        run.assert_holds_because(id, "larger than 20000 bytes (max_response_bytes)");
    }
    run.assert_nothing_shrinks();
}

#[test]
fn a_hanging_source_costs_the_cycle_its_observe_deadline_not_more() {
    let dir = tempfile::tempdir().unwrap();
    let targets = ids(3);
    let silent = || Behaviour::Silent;
    let server = serve(
        targets.clone(),
        BTreeMap::from([
            ("cpu", silent()),
            ("memory", silent()),
            ("connections", silent()),
            ("iops", silent()),
        ]),
    );
    // A loop key; the source's own timeout (10 s, 3 attempts) is long enough that only the
    // deadline can cut the cycle short.
    let config = write_config(
        dir.path(),
        &server,
        &targets,
        ", timeout: 10s, retries: 2",
        "",
    );
    let yaml = std::fs::read_to_string(&config)
        .unwrap()
        .replace("  - name: w\n", "  - name: w\n    observe_deadline: 3s\n")
        .replace("timeout: 1s, retries: 1, ", "");
    std::fs::write(&config, yaml).unwrap();
    let started = std::time::Instant::now();
    let run = run_config(&config);
    // Without the deadline: 16 queries × 3 attempts × 10 s.
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(run.status, Some(4), "{}", run.stderr);
    let degraded = run.degraded().join("; ");
    assert!(
        degraded.contains("the cycle's observe deadline (3s) passed"),
        "{degraded}"
    );
    for row in run.report["rows"].as_array().unwrap() {
        assert_eq!(row["verdict"], "hold", "{row}");
    }
}

#[test]
fn configured_secrets_never_appear_in_any_output() {
    let dir = tempfile::tempdir().unwrap();
    let targets = ids(2);
    let server = serve(targets.clone(), BTreeMap::new());
    // Where the traces and the Slack message of a full run go, to read what was sent.
    let collector = HttpFake::start(|_| Response::raw(200, "application/x-protobuf", ""));
    let slack = setpoint_test_support::slack_webhook();
    let secrets = [
        "url-pw-4711",
        "mlflow-pw-4711",
        "mlflow-tok-4711",
        "otlp-tok-4711",
        "slack-hook-4711",
    ];
    let config = write_config(
        dir.path(),
        &server,
        &targets,
        "",
        "mlflow: { tracking_uri: 'http://127.0.0.1:9', username: ml, password: mlflow-pw-4711, token: mlflow-tok-4711 }\n\
         notify: { slack: { webhook_url: '{slack}/hooks/slack-hook-4711' } }\n"
            .replace("{slack}", slack.url())
            .as_str(),
    );
    let yaml = std::fs::read_to_string(&config)
        .unwrap()
        .replace("url: 'http://", "url: 'http://ops:url-pw-4711@");
    std::fs::write(&config, &yaml).unwrap();
    let with_otlp = dir.path().join("otlp.yaml");
    std::fs::write(
        &with_otlp,
        format!(
            "{yaml}telemetry: {{ otlp: {{ endpoint: '{}', headers: {{ authorization: 'Bearer otlp-tok-4711' }} }} }}\n",
            collector.url()
        ),
    )
    .unwrap();
    let setpoint = |config: &Path, args: &[&str]| {
        let out = Command::new(setpoint_binary())
            .args(["-v", "--config"])
            .arg(config)
            .args(args)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let mut outputs = vec![setpoint(&with_otlp, &["config", "check"])];
    assert_eq!(outputs[0].0, Some(0), "{}", outputs[0].1);
    assert!(outputs[0].1.contains("(redacted)"), "{}", outputs[0].1);
    let now = ["--now", "2026-11-23T06:00:00Z", "--no-notify"];
    for output in ["table", "json"] {
        let mut args = vec!["run", "--once", "--output", output];
        args.extend_from_slice(&now);
        outputs.push(setpoint(&config, &args));
    }
    outputs.push(setpoint(
        &config,
        &["explain", "db-001", "--output", "json"],
    ));
    outputs.push(setpoint(&config, &["explain", "db-001"]));
    // A full run that exports its traces and sends its report to Slack: what left the process
    // is an output too.
    let mut args = vec!["run", "--once"];
    args.extend_from_slice(&now[..2]);
    outputs.push(setpoint(&with_otlp, &args));
    let exported: Vec<String> = collector
        .requests()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert!(!exported.is_empty(), "no trace exported");
    assert!(
        exported
            .iter()
            .any(|e| e.contains("setpoint.cycle") || e.contains("cycle")),
        "{exported:?}"
    );
    let posted: Vec<String> = slack.requests().iter().map(|r| r.text()).collect();
    assert_eq!(posted.len(), 1, "the report was not sent to Slack");
    assert!(posted[0].contains("db-001"), "{}", posted[0]);
    for text in exported.iter().chain(&posted) {
        outputs.push((None, text.clone()));
    }
    // The URL was authenticated with: the server saw the credentials, nobody else did.
    assert!(
        outputs[1].1.contains("prometheus(http://127.0.0.1:"),
        "{}",
        outputs[1].1
    );
    for (status, text) in &outputs {
        for secret in secrets {
            assert!(
                !text.contains(secret),
                "{secret} printed ({status:?}):\n{text}"
            );
        }
    }

    // A password in the URL and `auth:` too: which one is meant is not guessed.
    let both = dir.path().join("both.yaml");
    std::fs::write(
        &both,
        yaml.replace(
            "retries: 1 }",
            "retries: 1, auth: { kind: bearer, token: t } }",
        ),
    )
    .unwrap();
    let (status, text) = setpoint(&both, &["config", "check"]);
    assert_eq!(status, Some(1), "{text}");
    assert!(
        text.contains("the url carries credentials and `auth:` is set too"),
        "{text}"
    );
    assert!(!text.contains("url-pw-4711"), "{text}");
}

#[test]
fn nan_and_infinite_values_are_missing_data() {
    let dir = tempfile::tempdir().unwrap();
    let targets = ids(3);
    let server = serve(
        targets.clone(),
        BTreeMap::from([(
            "memory",
            Behaviour::Answer {
                only: None,
                values: BTreeMap::from([
                    ("db-001".to_string(), "NaN".to_string()),
                    ("db-002".to_string(), "+Inf".to_string()),
                ]),
            },
        )]),
    );
    let run = run(dir.path(), &server, &targets, "");
    assert_eq!(run.status, Some(4), "{}", run.stderr);
    run.assert_holds_because("db-001", "memory: the source returned no series");
    run.assert_holds_because("db-002", "memory: the source returned no series");
    assert_eq!(
        run.row("db-003")["class"],
        "scale_down",
        "the rest carry on"
    );
    let degraded = run.degraded();
    assert_eq!(degraded.len(), 2, "{degraded:?}");
    assert!(degraded[0].starts_with("db-001: memory"), "{degraded:?}");
    run.assert_nothing_shrinks();

    // Raw samples (no summary in the TSDB): NaN samples count as missing, never as zero.
    let dir = tempfile::tempdir().unwrap();
    let run = self::run(dir.path(), &server, &targets, ", summarise_weekly: false");
    let row = run.row("db-001");
    assert_eq!(row["class_reason"], "insufficient_data", "{row}");
    assert_eq!(row["verdict"], "hold", "{row}");
    assert_eq!(run.row("db-003")["class"], "scale_down");
    run.assert_nothing_shrinks();
}

#[test]
fn impossible_values_are_rejected_and_never_evidence() {
    // -5 is -500 % utilisation; 1e308 is no share of anything. Either, taken as evidence, made
    // a confident scale-down or scale-up.
    let dir = tempfile::tempdir().unwrap();
    let targets = ids(3);
    let server = serve(
        targets.clone(),
        BTreeMap::from([(
            "cpu",
            Behaviour::Answer {
                only: None,
                values: BTreeMap::from([
                    ("db-001".to_string(), "-5".to_string()),
                    ("db-002".to_string(), "1e308".to_string()),
                ]),
            },
        )]),
    );
    for extra in ["", ", summarise_weekly: false"] {
        let dir = dir.path().join(format!("run{}", extra.len()));
        std::fs::create_dir_all(&dir).unwrap();
        let run = run(&dir, &server, &targets, extra);
        assert_eq!(run.status, Some(4), "{extra}: {}", run.stderr);
        run.assert_holds_because("db-001", "cpu: value -5 is outside its domain");
        run.assert_holds_because("db-002", "cpu: value 1e308 is outside its domain");
        for id in ["db-001", "db-002"] {
            let row = run.row(id);
            assert_eq!(row["class_reason"], "insufficient_data", "{extra}: {row}");
            assert_eq!(
                row["rejected_evidence"],
                serde_json::json!(["cpu"]),
                "{row}"
            );
        }
        assert_eq!(
            run.row("db-003")["class"],
            "scale_down",
            "the rest carry on"
        );
        assert!(
            run.degraded()
                .iter()
                .any(|d| d.starts_with("db-001: cpu: value -5 is outside")),
            "{:?}",
            run.degraded()
        );
        run.assert_nothing_shrinks();
    }
}

#[test]
fn a_target_missing_from_an_answer_holds_alone() {
    let dir = tempfile::tempdir().unwrap();
    let targets = ids(3);
    let server = serve(
        targets.clone(),
        BTreeMap::from([(
            "connections",
            Behaviour::Answer {
                only: Some(targets[..2].to_vec()),
                values: BTreeMap::new(),
            },
        )]),
    );
    let run = run(dir.path(), &server, &targets, "");
    assert_eq!(run.status, Some(4), "{}", run.stderr);
    run.assert_holds_because("db-003", "connections: the source returned no series");
    assert_eq!(
        run.degraded(),
        ["db-003: connections: the source returned no series for this target"]
    );
    for id in &targets[..2] {
        assert_eq!(run.row(id)["class"], "scale_down");
        assert_eq!(run.row(id)["verdict"], "review");
    }
    run.assert_nothing_shrinks();
}

#[test]
fn a_metric_the_classifier_does_not_need_still_blocks_a_scale_down() {
    // IOPS is not one of the classifier's required metrics: the class stays scale_down, and
    // the policy's missing-data rule holds it.
    let dir = tempfile::tempdir().unwrap();
    let targets = ids(2);
    let server = serve(
        targets.clone(),
        BTreeMap::from([("iops", Behaviour::Reply(500, "boom".into()))]),
    );
    let run = run(dir.path(), &server, &targets, "");
    assert_eq!(run.status, Some(4), "{}", run.stderr);
    for id in &targets {
        let row = run.row(id);
        assert_eq!(row["class"], "scale_down", "{row}");
        assert_eq!(row["verdict"], "hold", "{row}");
        assert_eq!(row["reason"]["code"], "missing_data", "{row}");
        assert!(
            row["observe_issues"]
                .to_string()
                .contains("iops: query failed")
        );
    }
}
