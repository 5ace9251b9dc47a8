//! The loopback stack of `examples/stack` for end-to-end tests: started by `stack.sh` on free
//! 127.0.0.1 ports, stopped by PID when the guard drops, pass or fail; and the processes a test
//! starts against it (setpoint in loop mode, pgbench), killed on drop as well.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use setpoint_runtime::Config;

use crate::setpoint_binary;

/// The simulated targets `stack.sh backfill` writes by default, which the example config
/// declares.
pub(crate) const BACKFILLED: [&str; 7] = [
    "pg-reporting-01",
    "pg-transactional-01",
    "pg-saturated-01",
    "pg-connections-01",
    "pg-gap-01",
    "pg-steady-01",
    "pg-spiky-01",
];

/// The stack's own PostgreSQL, as the example config names it.
pub(crate) const LIVE: &str = "pg-live";

/// One stack at a time: each runs PostgreSQL, three exporters and two TSDBs, and the tests
/// time loads and outages against it; two at once on a small machine would skew both.
static EXCLUSIVE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits for the other stack tests to finish (async tests).
pub(crate) async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    EXCLUSIVE.lock().await
}

/// Waits for the other stack tests to finish (blocking tests).
pub(crate) fn exclusive_blocking() -> tokio::sync::MutexGuard<'static, ()> {
    EXCLUSIVE.blocking_lock()
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/stack")
}

fn stack_script() -> PathBuf {
    examples_dir().join("stack.sh")
}

/// The example config as committed, before `stack.sh` points it at a stack.
pub(crate) fn example_config() -> PathBuf {
    examples_dir().join("setpoint.yaml")
}

/// A running stack; stops it when dropped.
pub(crate) struct Stack {
    pub(crate) dir: PathBuf,
    ports: BTreeMap<String, String>,
}

impl Stack {
    pub(crate) fn start(dir: &Path) -> Stack {
        let status = Command::new("bash")
            .arg(stack_script())
            .arg("start")
            .arg(dir)
            .status()
            .unwrap();
        // The guard exists before the assertion so that a half-started stack is stopped too.
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

    pub(crate) fn port(&self, name: &str) -> &str {
        &self.ports[name]
    }

    /// The config `stack.sh` wrote for one TSDB (`prometheus` or `victoria`).
    pub(crate) fn config_path(&self, tsdb: &str) -> PathBuf {
        self.dir.join(format!("setpoint-{tsdb}.yaml"))
    }

    /// Simulated history ending at `end` for the targets `stack.sh` backfills by default.
    pub(crate) fn backfill(&self, end: DateTime<Utc>) {
        let status = Command::new("bash")
            .arg(stack_script())
            .arg("backfill")
            .arg(&self.dir)
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

    /// Imports an OpenMetrics file into Prometheus (which restarts).
    pub(crate) fn import(&self, file: &Path) {
        let status = Command::new("bash")
            .arg(stack_script())
            .arg("import")
            .arg(&self.dir)
            .arg(file)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "import failed; logs in {}",
            self.dir.display()
        );
    }

    /// The PID the stack recorded for a service.
    pub(crate) fn pid(&self, name: &str) -> String {
        let pids = std::fs::read_to_string(self.dir.join("pids")).unwrap();
        pids.lines()
            .find_map(|l| l.strip_suffix(&format!(" {name}")))
            .unwrap_or_else(|| panic!("no {name} in the stack"))
            .to_string()
    }

    /// Stops one service (as an outage would), by the PID the stack recorded, and waits until
    /// it is gone.
    pub(crate) fn kill(&self, name: &str) {
        let pid = self.pid(name);
        let status = Command::new("kill").arg(&pid).status().unwrap();
        assert!(status.success());
        for _ in 0..100 {
            if !alive(&pid) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{name} did not stop");
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

/// Running and not a zombie (daemons reparented to PID 1 linger as zombies for a moment).
pub(crate) fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            // The state follows the parenthesised command name, which may contain spaces.
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state != "Z")
        })
        .unwrap_or(false)
}

/// Runs the setpoint binary to completion.
pub(crate) fn setpoint(args: &[&str]) -> Output {
    Command::new(setpoint_binary()).args(args).output().unwrap()
}

/// Runs the setpoint binary and parses its standard output as JSON; `expected` is the exit
/// status it must end with.
pub(crate) fn setpoint_json(args: &[&str], expected: i32) -> serde_json::Value {
    let out = setpoint(args);
    assert_eq!(
        out.status.code(),
        Some(expected),
        "setpoint {args:?}\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Writes `config` where the binary can read it. YAML is a superset of JSON, and the config
/// types serialise to what they parse from.
pub(crate) fn write_config(config: &Config, path: &Path) {
    std::fs::write(path, serde_json::to_string_pretty(config).unwrap()).unwrap();
}

/// A child process killed (and reaped) when dropped, so a failing test leaves nothing behind.
pub(crate) struct Guarded {
    pub(crate) child: Child,
}

impl Guarded {
    pub(crate) fn spawn(command: &mut Command) -> Guarded {
        Guarded {
            child: command.spawn().unwrap(),
        }
    }

    pub(crate) fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Sends `signal` (e.g. `TERM`) to the child.
    pub(crate) fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the child to exit, at most `timeout`.
    pub(crate) fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The lines a child writes to standard output, read on a thread so that the test can wait
/// for one with a timeout.
pub(crate) fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}
