//! A real etcd + Patroni + PostgreSQL on 127.0.0.1, started on free ports and stopped by PID
//! when the guard drops, pass or fail; for the Patroni actuator's tests and enforce mode's end
//! to end test.
//!
//! Needs the Debian packages `patroni`, `etcd-server` and `postgresql` (`scripts/setup.sh
//! --stack`). PostgreSQL refuses to run as root, so as root Patroni runs as `postgres`.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub(crate) const USER: &str = "setpoint";
pub(crate) const PASSWORD: &str = "patroni-test-password";

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The newest PostgreSQL's binaries.
pub(crate) fn pg_bin() -> PathBuf {
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
pub(crate) struct Stack {
    pub dir: tempfile::TempDir,
    etcd: Option<Child>,
    patroni: Option<Child>,
    pub rest: String,
    pub pg_port: u16,
}

impl Stack {
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("pgdata")
    }

    pub fn log(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    pub fn start() -> Stack {
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

    /// Starts the stack and waits (up to 90 s) until Patroni runs PostgreSQL as the leader;
    /// returns it with a client for its REST API.
    pub async fn start_ready() -> (Stack, reqwest::Client) {
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
        // Leading comes before the bootstrap has stored the dynamic configuration in etcd:
        // until it has, `GET /config` answers 502.
        wait_for(
            "Patroni's configuration",
            &stack,
            Duration::from_secs(60),
            async || {
                let url = format!("{}/config", stack.rest);
                match client.get(&url).send().await {
                    Ok(response) if response.status().is_success() => response
                        .json::<Value>()
                        .await
                        .is_ok_and(|config| config.is_object()),
                    _ => false,
                }
            },
        )
        .await;
        (stack, client)
    }

    pub fn sql(&self, query: &str) -> String {
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

pub(crate) async fn wait_for(
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

pub(crate) async fn get(client: &reqwest::Client, url: &str) -> Option<Value> {
    let response = client.get(url).send().await.ok()?;
    response.json().await.ok()
}
