//! The `setpoint` binary as a user runs it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn setpoint(state: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_setpoint"))
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("SETPOINT_CONFIG")
        .env_remove("SETPOINT_NOW")
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const NOW: &str = "2026-11-23T06:00:00Z";

#[test]
fn help_explains_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = setpoint(dir.path(), &["--help"]);
    assert!(out.status.success());
    let text = stdout(&out);
    for command in [
        "run",
        "explain",
        "kill-switch",
        "policy",
        "config",
        "Exit status",
    ] {
        assert!(text.contains(command), "--help lacks {command}:\n{text}");
    }
}

#[test]
fn quickstart_report_then_explain_then_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = setpoint(dir.path(), &["run", "--once", "--now", NOW]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("pg-reporting-01"), "{text}");
    assert!(
        text.contains("8 vCPU / 32 GiB → 4 vCPU / 24 GiB, shared_buffers 8GB → 6GB"),
        "{text}"
    );
    assert!(text.contains("awaiting approval"), "{text}");
    assert!(text.contains("dry-run: nothing was executed"), "{text}");

    let out = setpoint(dir.path(), &["explain", "pg-reporting-01"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let trace = stdout(&out);
    for needle in [
        "features",
        "cpu_w1",
        "gradient-boosting",
        "surrogate rule: if ",
        "class stable for 1 consecutive cycle(s)",
        "proposals",
        "scale_down",
        "verdict review",
        "approval_required",
        "safety floor (what a scale-down may not go below)",
        "memory ≥ 24 GiB (peak",
        "resized to the safety floor: the plain step left memory 16 GiB < 24 GiB",
    ] {
        assert!(trace.contains(needle), "explain lacks {needle}:\n{trace}");
    }

    // A second run advances history.
    let out = setpoint(
        dir.path(),
        &[
            "run",
            "--once",
            "--now",
            "2026-11-30T06:00:00Z",
            "--output",
            "json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reports[0]["cycle"], 2);
    assert!(reports[0]["rows"].as_array().unwrap().len() >= 50);
    let out = setpoint(dir.path(), &["explain", "pg-reporting-01"]);
    assert!(
        stdout(&out).contains("class stable for 2 consecutive cycle(s)"),
        "{}",
        stdout(&out)
    );

    let out = setpoint(dir.path(), &["explain", "pg-nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no decision recorded for target \"pg-nope\""));
}

/// One clock for every command: a replayed cycle's reviews wait relative to the replayed time,
/// and `--now` (or `SETPOINT_NOW`) tells every command which time it is — whatever the day the
/// test runs.
#[test]
fn every_command_reads_the_time_from_one_clock() {
    let dir = tempfile::tempdir().unwrap();
    let out = setpoint(
        dir.path(),
        &[
            "run",
            "--once",
            "--loop",
            "weekly-rightsizing",
            "--now",
            NOW,
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let waiting = |now: &str| -> usize {
        let out = setpoint(
            dir.path(),
            &["review", "list", "--output", "json", "--now", now],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let items: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        items.as_array().unwrap().len()
    };
    // An hour later the cycle's reviews wait; eight days later they have expired.
    assert!(waiting("2026-11-23T07:00:00Z") > 0);
    assert_eq!(waiting("2026-12-01T06:00:00Z"), 0);
    // The same through the environment.
    let out = Command::new(env!("CARGO_BIN_EXE_setpoint"))
        .arg("--state-dir")
        .arg(dir.path())
        .args(["review", "list", "--output", "json"])
        .env("SETPOINT_NOW", "2026-11-23T07:00:00Z")
        .env_remove("SETPOINT_CONFIG")
        .output()
        .unwrap();
    let items: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(!items.as_array().unwrap().is_empty());
    // A kill switch is dated by the same clock.
    let on = setpoint(
        dir.path(),
        &["kill-switch", "on", "--by", "carol", "--now", NOW],
    );
    assert!(
        stdout(&on).contains("by carol at 2026-11-23 06:00 UTC"),
        "{}",
        stdout(&on)
    );
    // Schedules follow the wall clock: a fixed time is refused there.
    for args in [&["run", "--now", NOW][..], &["serve", "--now", NOW]] {
        let out = setpoint(dir.path(), args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains("--now"), "{}", stderr(&out));
    }
}

#[test]
fn kill_switch_from_the_cli_blocks_and_releases() {
    let dir = tempfile::tempdir().unwrap();
    let on = setpoint(dir.path(), &["kill-switch", "on"]);
    assert!(on.status.success(), "{}", stderr(&on));
    assert!(stdout(&on).contains("global"));
    let out = setpoint(
        dir.path(),
        &["run", "--once", "--now", NOW, "--output", "json"],
    );
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for row in reports[0]["rows"].as_array().unwrap() {
        assert_eq!(row["verdict"], "block", "{row}");
        assert_eq!(row["reason"]["code"], "kill_switch", "{row}");
    }
    let off = setpoint(dir.path(), &["kill-switch", "off"]);
    assert!(stdout(&off).contains("none on"));
    let out = setpoint(
        dir.path(),
        &[
            "run",
            "--once",
            "--now",
            "2026-11-30T06:00:00Z",
            "--output",
            "json",
        ],
    );
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = reports[0]["rows"].as_array().unwrap();
    assert!(rows.iter().any(|r| r["verdict"] == "review"));
    assert!(!rows.iter().any(|r| r["verdict"] == "block"));
}

#[test]
fn a_bad_config_is_refused_with_its_path_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("setpoint.yaml");
    std::fs::write(&config, "loops:\n  - name: weekly\n    mdoe: enforce\n").unwrap();
    let out = setpoint(
        dir.path(),
        &["--config", config.to_str().unwrap(), "run", "--once"],
    );
    assert_eq!(out.status.code(), Some(1));
    let error = stderr(&out);
    assert!(error.contains("setpoint.yaml:3:"), "{error}");
    assert!(error.contains("unknown field `mdoe`"), "{error}");
}

#[test]
fn sigterm_stops_a_scheduled_run_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("setpoint.yaml");
    // Two loops firing every second, so the run has done work before it is stopped and both
    // loops compete for the state store.
    std::fs::write(
        &config,
        "loops:\n  - name: fast\n    schedule: '* * * * * *'\n  - name: also-fast\n    schedule: '* * * * * *'\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_setpoint"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--config")
        .arg(&config)
        .args(["run", "--output", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read the reports as they come, and stop the run once both loops have finished a cycle.
    let stdout_pipe = child.stdout.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout_pipe).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    let seen = |lines: &Vec<String>, name: &str| {
        lines
            .iter()
            .any(|l| l.contains(&format!("\"loop_name\":\"{name}\"")))
    };
    while !(seen(&lines, "fast") && seen(&lines, "also-fast")) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no cycle of each loop within 180 s: {lines:?}"
        );
        if let Ok(line) = receiver.recv_timeout(left) {
            lines.push(line);
        }
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("setpoint did not stop within 30 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = child.wait_with_output().unwrap();
    reader.join().unwrap();
    lines.extend(receiver.try_iter());
    assert!(exit.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("SIGTERM received"));
    let cycles: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!cycles.is_empty(), "no cycle ran before SIGTERM");
    let store = setpoint_state::Store::open(&dir.path().join("state")).unwrap();
    let fast = store.cycles("fast").unwrap();
    let also_fast = store.cycles("also-fast").unwrap();
    assert!(
        !fast.is_empty() && !also_fast.is_empty(),
        "{fast:?} {also_fast:?}"
    );
    assert_eq!(fast.len() + also_fast.len(), cycles.len());
    for cycle in fast.iter().chain(&also_fast) {
        assert_ne!(
            cycle.status,
            setpoint_state::CycleStatus::Running,
            "{cycle:?}"
        );
    }
    // No cycle failed on a busy store.
    assert!(
        !stderr(&output).contains("cycle failed"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn an_unreachable_tsdb_completes_degraded_with_exit_status_4() {
    let dir = tempfile::tempdir().unwrap();
    // A port with nothing listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("setpoint.yaml");
    std::fs::write(
        &config,
        format!(
            "loops:\n  - name: w\n    source: {{ kind: prometheus, url: 'http://127.0.0.1:{port}', retries: 0 }}\n    targets:\n      - id: pg-a\n        resources: {{ cpu: 8, memory_gib: 32 }}\n"
        ),
    )
    .unwrap();
    let out = setpoint(
        dir.path(),
        &[
            "--config",
            config.to_str().unwrap(),
            "run",
            "--once",
            "--output",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("degraded: discovery:"),
        "{}",
        stderr(&out)
    );
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = &reports[0]["rows"][0];
    assert_eq!(row["target"], "pg-a");
    assert_eq!(row["class_reason"], "insufficient_data");
    assert_eq!(row["verdict"], "hold");
}

#[test]
fn a_kill_switch_cannot_vanish_or_miss_its_scope_silently() {
    let dir = tempfile::tempdir().unwrap();
    let ok = |out: &Output| assert!(out.status.success(), "{}", stderr(out));
    ok(&setpoint(dir.path(), &["run", "--once", "--now", NOW]));
    // A typo protects nothing: refused, and nothing is switched.
    for scope in [
        &["--loop", "weekly-rigthsizing"][..],
        &["--target", "pg-reprting-01"],
    ] {
        let args: Vec<&str> = ["kill-switch", "on"].iter().chain(scope).copied().collect();
        let out = setpoint(dir.path(), &args);
        assert_eq!(out.status.code(), Some(1), "{scope:?}");
        assert!(
            stderr(&out).contains("nothing was switched"),
            "{}",
            stderr(&out)
        );
    }
    assert!(stdout(&setpoint(dir.path(), &["kill-switch", "status"])).contains("none on"));
    // Known scopes (a discovered target is known from the journal), or --force.
    ok(&setpoint(
        dir.path(),
        &["kill-switch", "on", "--target", "pg-reporting-01"],
    ));
    ok(&setpoint(
        dir.path(),
        &["kill-switch", "on", "--loop", "weekly-rightsizing"],
    ));
    ok(&setpoint(
        dir.path(),
        &["kill-switch", "on", "--loop", "next-loop", "--force"],
    ));

    // Deleted, or replaced by anything setpoint did not write: every reader stops.
    let file = dir.path().join("kill-switches.json");
    let written = std::fs::read(&file).unwrap();
    for junk in [None, Some("[]"), Some("{}"), Some(r#"{"hello":1}"#)] {
        match junk {
            None => std::fs::remove_file(&file).unwrap(),
            Some(text) => std::fs::write(&file, text).unwrap(),
        }
        for args in [
            &["run", "--once", "--now", "2026-11-30T06:00:00Z"][..],
            &["kill-switch", "status"],
            &["kill-switch", "on", "--target", "pg-reporting-01"],
        ] {
            let out = setpoint(dir.path(), args);
            assert_eq!(
                out.status.code(),
                Some(1),
                "{junk:?} {args:?}: {}",
                stdout(&out)
            );
            assert!(stderr(&out).contains("kill switches:"), "{}", stderr(&out));
        }
    }
    std::fs::write(&file, &written).unwrap();
    let status = stdout(&setpoint(dir.path(), &["kill-switch", "status"]));
    assert!(status.contains("target pg-reporting-01"), "{status}");
    // The explicit way back: `off` writes the file anew, all off.
    std::fs::remove_file(&file).unwrap();
    ok(&setpoint(dir.path(), &["kill-switch", "off"]));
    assert!(stdout(&setpoint(dir.path(), &["kill-switch", "status"])).contains("none on"));
}

#[test]
fn a_damaged_store_is_refused_and_restored_explicitly() {
    let dir = tempfile::tempdir().unwrap();
    let ok = |out: &Output| {
        assert!(out.status.success(), "{}", stderr(out));
        stdout(out)
    };
    ok(&setpoint(dir.path(), &["run", "--once", "--now", NOW]));
    let check = ok(&setpoint(dir.path(), &["state", "check"]));
    assert!(check.contains("state ok"), "{check}");
    let backup = dir.path().join("b1");
    let backed = ok(&setpoint(
        dir.path(),
        &["state", "backup", "--to", backup.to_str().unwrap()],
    ));
    assert!(backed.contains("journal records"), "{backed}");
    let reviews = |dir: &Path| {
        let out = setpoint(dir, &["review", "list", "--output", "json", "--now", NOW]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .unwrap()
            .as_array()
            .map(Vec::len)
            .unwrap_or(0)
    };
    let queued = reviews(dir.path());
    assert!(queued > 0);

    // Emptied: every command refuses it, exit 1, and leaves it as it is.
    let db = dir.path().join("setpoint.redb");
    std::fs::write(&db, b"").unwrap();
    for args in [
        &["run", "--once", "--now", "2026-11-30T06:00:00Z"][..],
        &["state", "check"],
        &["explain", "pg-reporting-01"],
    ] {
        let out = setpoint(dir.path(), args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&out).contains("is damaged"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    assert_eq!(std::fs::metadata(&db).unwrap().len(), 0);

    let restored = ok(&setpoint(
        dir.path(),
        &["state", "restore", backup.to_str().unwrap(), "--now", NOW],
    ));
    assert!(restored.contains("replaced-20261123T060000Z"), "{restored}");
    assert_eq!(
        reviews(dir.path()),
        queued,
        "the review queue is back whole"
    );
    ok(&setpoint(dir.path(), &["state", "check"]));
}

#[test]
fn readers_do_not_wait_for_a_process_that_holds_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let out = setpoint(dir.path(), &["run", "--once", "--now", NOW]);
    assert!(out.status.success(), "{}", stderr(&out));
    // This process writes the store, as a running cycle does.
    let writer = setpoint_state::Store::open(dir.path()).unwrap();
    let started = Instant::now();
    let list = setpoint(
        dir.path(),
        &["review", "list", "--output", "json", "--now", NOW],
    );
    assert!(list.status.success(), "{}", stderr(&list));
    let items: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert!(!items.as_array().unwrap().is_empty());
    let explain = setpoint(dir.path(), &["explain", "pg-reporting-01"]);
    assert!(explain.status.success(), "{}", stderr(&explain));
    // The store-wait is 30 s: the readers read a snapshot instead.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the readers waited: {:?}",
        started.elapsed()
    );
    drop(writer);
}
