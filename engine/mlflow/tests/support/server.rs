//! A real MLflow tracking server for tests, installed from PyPI by `scripts/mlflow-venv.sh`
//! and run on 127.0.0.1: this crate's end-to-end test and `setpoint train`'s share it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The tracking server, stopped with its whole process group when dropped.
pub struct Server {
    child: Child,
    log: PathBuf,
    /// The tracking URI, `http://127.0.0.1:<port>`.
    pub uri: String,
}

impl Server {
    /// Starts a server with its store and artifacts under `dir`.
    pub fn start(mlflow: &Path, dir: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = dir.join("server.log");
        let out = File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = Command::new(mlflow)
            .arg("server")
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--workers", "1"])
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
            .arg("--artifacts-destination")
            .arg(dir.join("artifacts"))
            // MLflow 3 reports usage to its makers unless told not to; this test talks to
            // 127.0.0.1 only.
            .env("MLFLOW_DISABLE_TELEMETRY", "true")
            .env("DO_NOT_TRACK", "true")
            .env_remove("MLFLOW_TRACKING_URI")
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // The server forks uvicorn and a job runner: a group lets one signal reach them all.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", mlflow.display()));
        Self {
            child,
            log,
            uri: format!("http://127.0.0.1:{port}"),
        }
    }

    /// The last lines of the server's log, for failure messages.
    pub fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(40);
        format!(
            "--- last lines of {} ---\n{}",
            self.log.display(),
            lines[start..].join("\n")
        )
    }

    /// Waits until `/health` answers, failing with the server's log tail.
    pub async fn wait_ready(&mut self) {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("mlflow server exited with {status}\n{}", self.tail());
            }
            let health = http.get(format!("{}/health", self.uri)).send().await;
            if health.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            if started.elapsed() > READY_TIMEOUT {
                panic!(
                    "mlflow server not ready after {READY_TIMEOUT:?}\n{}",
                    self.tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    fn signal_group(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.signal_group("-TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                // The leader is gone; make sure its workers are too.
                self.signal_group("-KILL");
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.signal_group("-KILL");
        let _ = self.child.wait();
    }
}

/// The venv's `mlflow`, made by the same script CI runs.
/// The venv's `mlflow` executable, made (or reused) by the script CI runs; `root` is the
/// repository's root.
pub fn mlflow_executable(root: &Path) -> PathBuf {
    let root = root.to_path_buf();
    let started = Instant::now();
    let output = Command::new("bash")
        .arg(root.join("scripts/mlflow-venv.sh"))
        .current_dir(&root)
        .stderr(Stdio::inherit())
        .output()
        .expect("cannot run scripts/mlflow-venv.sh");
    assert!(
        output.status.success(),
        "scripts/mlflow-venv.sh failed ({}); see its output above",
        output.status
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let path = stdout.lines().last().unwrap_or_default().trim().to_string();
    eprintln!("mlflow venv ready in {:?}: {path}", started.elapsed());
    root.join(path)
}
