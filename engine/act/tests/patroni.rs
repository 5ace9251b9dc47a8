//! The Patroni actuator against a real etcd + Patroni + PostgreSQL on 127.0.0.1, started by the
//! test on free ports and stopped by PID when the guard drops, pass or fail.
//!
//! Needs the Debian packages `patroni`, `etcd-server` and `postgresql` (`scripts/setup.sh
//! --stack`). PostgreSQL refuses to run as root, so as root Patroni runs as `postgres`.
//!
//! Checks: a live parameter (`work_mem`) set through `PATCH /config` is what `SHOW work_mem`
//! returns in PostgreSQL; running the intent again reports it already applied; a
//! restart-requiring one (`shared_buffers`) ends as a restart scheduled in the maintenance
//! window, which `GET /patroni` reports with `pending_restart`; a dry run changes nothing;
//! basic auth is used (and its absence is refused by Patroni with a clear error).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;
use setpoint_act::patroni::{MaintenanceWindow, Patroni, PatroniConfig};
use setpoint_act::{ActError, Actuator, Execution, OpStatus, OperationResult};
use setpoint_core::{
    ActionKind, Decision, Operation, Proposal, Reason, Resources, Risk, Target, Verdict,
};

const USER: &str = "setpoint";
const PASSWORD: &str = "patroni-test-password";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The newest PostgreSQL's binaries.
fn pg_bin() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| {
                    let v = e.file_name().to_str()?.parse().ok()?;
                    Some((v, e.path().join("bin")))
                })
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .expect("PostgreSQL is not installed: run scripts/setup.sh --stack")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Running and not a zombie (daemons reparented to PID 1 linger as zombies for a moment).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state != "Z")
        })
        .unwrap_or(false)
}

fn signal(signal: &str, target: &str) {
    let _ = Command::new("kill")
        .args([signal, "--", target])
        .stderr(Stdio::null())
        .status();
}

/// Waits for a child to exit; `false` on timeout.
fn wait_exit(child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// etcd + Patroni (+ its PostgreSQL); stopped by PID on drop.
struct Stack {
    dir: tempfile::TempDir,
    etcd: Option<Child>,
    patroni: Option<Child>,
    rest: String,
    pg_port: u16,
}

impl Stack {
    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("pgdata")
    }

    fn log(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn start() -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let (etcd_port, peer_port, rest_port, pg_port) =
            (free_port(), free_port(), free_port(), free_port());
        let mut stack = Stack {
            etcd: None,
            patroni: None,
            rest: format!("http://127.0.0.1:{rest_port}"),
            pg_port,
            dir,
        };
        let root = stack.dir.path().to_path_buf();
        let log = |name: &str| std::fs::File::create(root.join(name)).unwrap();

        let etcd = Command::new("etcd")
            .args(["--name", "setpoint-test", "--data-dir"])
            .arg(root.join("etcd"))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"))
            .arg(format!(
                "--advertise-client-urls=http://127.0.0.1:{etcd_port}"
            ))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"
            ))
            .arg(format!(
                "--initial-cluster=setpoint-test=http://127.0.0.1:{peer_port}"
            ))
            .arg("--initial-cluster-state=new")
            .stdout(log("etcd.log"))
            .stderr(log("etcd.log"))
            .process_group(0)
            .spawn()
            .expect("etcd is not installed: run scripts/setup.sh --stack");
        stack.etcd = Some(etcd);

        std::fs::write(root.join("password"), format!("{PASSWORD}\n")).unwrap();
        let yaml = format!(
            r#"scope: setpoint-test
name: pg0
restapi:
  listen: 127.0.0.1:{rest_port}
  connect_address: 127.0.0.1:{rest_port}
  authentication: {{username: {USER}, password: {PASSWORD}}}
etcd3:
  hosts: 127.0.0.1:{etcd_port}
bootstrap:
  dcs:
    ttl: 30
    loop_wait: 10
    postgresql:
      parameters: {{work_mem: 4MB, shared_buffers: 128MB}}
postgresql:
  listen: 127.0.0.1:{pg_port}
  connect_address: 127.0.0.1:{pg_port}
  data_dir: {data}
  bin_dir: {bin}
  pgpass: {root}/pgpass
  authentication:
    superuser: {{username: postgres, password: postgres}}
    replication: {{username: replicator, password: replicator}}
  parameters:
    unix_socket_directories: {root}
"#,
            data = stack.data_dir().display(),
            bin = pg_bin().display(),
            root = root.display(),
        );
        std::fs::write(root.join("patroni.yml"), yaml).unwrap();
        let mut patroni = if is_root() {
            // PostgreSQL refuses root; the files must belong to postgres.
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&root)
                .status()
                .unwrap();
            assert!(status.success(), "chown to postgres failed");
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "patroni",
            ]);
            c
        } else {
            Command::new("patroni")
        };
        let child = patroni
            .arg(root.join("patroni.yml"))
            .env("HOME", &root)
            .current_dir(&root)
            .stdout(log("patroni.log"))
            .stderr(log("patroni.log"))
            .process_group(0)
            .spawn()
            .expect("patroni is not installed: run scripts/setup.sh --stack");
        stack.patroni = Some(child);
        stack
    }

    fn sql(&self, query: &str) -> String {
        let out = Command::new(pg_bin().join("psql"))
            .arg("-h")
            .arg(self.dir.path())
            .args([
                "-p",
                &self.pg_port.to_string(),
                "-U",
                "postgres",
                "-Atc",
                query,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // Patroni stops its PostgreSQL on SIGTERM (≈ 2 s); the postmaster is not its child, so
        // if Patroni has to be killed the postmaster is stopped through its own PID file.
        if let Some(mut patroni) = self.patroni.take() {
            signal("-TERM", &patroni.id().to_string());
            if !wait_exit(&mut patroni, Duration::from_secs(20)) {
                signal("-KILL", &format!("-{}", patroni.id()));
                let _ = patroni.wait();
            }
        }
        let pid_file = self.data_dir().join("postmaster.pid");
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.lines().next()?.trim().parse::<u32>().ok())
            && alive(pid)
        {
            signal("-INT", &pid.to_string());
            let deadline = Instant::now() + Duration::from_secs(10);
            while alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            if alive(pid) {
                signal("-KILL", &pid.to_string());
            }
        }
        if let Some(mut etcd) = self.etcd.take() {
            signal("-TERM", &format!("-{}", etcd.id()));
            if !wait_exit(&mut etcd, Duration::from_secs(10)) {
                signal("-KILL", &format!("-{}", etcd.id()));
                let _ = etcd.wait();
            }
        }
    }
}

async fn wait_for(
    what: &str,
    stack: &Stack,
    timeout: Duration,
    mut ready: impl AsyncFnMut() -> bool,
) {
    let deadline = Instant::now() + timeout;
    while !ready().await {
        assert!(
            Instant::now() < deadline,
            "{what} not ready after {timeout:?}\n--- patroni.log\n{}\n--- etcd.log\n{}",
            stack.log("patroni.log"),
            stack.log("etcd.log")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn get(client: &reqwest::Client, url: &str) -> Option<Value> {
    let response = client.get(url).send().await.ok()?;
    response.json().await.ok()
}

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
    let stack = Stack::start();
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    wait_for("Patroni", &stack, Duration::from_secs(90), async || {
        get(&client, &format!("{}/patroni", stack.rest))
            .await
            .is_some_and(|s| {
                s["state"] == "running"
                    && matches!(s["role"].as_str(), Some("master" | "primary" | "leader"))
            })
    })
    .await;
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
