//! The review page under load: `setpoint serve` over a simulated fleet of about 100 targets,
//! after its first cycle, answering concurrent keep-alive clients on loopback — the index page
//! (every target's latest decision, the queue and the kill switches), one target's page, and
//! `/healthz` for the server's own floor.
//!
//! ```text
//! cargo build --release -p setpoint
//! cargo bench -p setpoint-tests --bench serve_load
//! ```
//!
//! Settings (environment):
//! - `SETPOINT` the setpoint binary (default target/release/setpoint)
//! - `SETPOINT_BENCH_TARGETS` fleet size (default 100)
//! - `SETPOINT_BENCH_CONCURRENCY` clients (default 16)
//! - `SETPOINT_BENCH_REQUESTS` requests per page (default 20000)

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use setpoint_test_support::load;

const VIEWER_TOKEN: &str = "bench-viewer-token-0123456789";

/// `setpoint serve`, killed by PID when dropped.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn setting(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Ok(value) => value.parse().with_context(|| format!("{name}={value:?}")),
        Err(_) => Ok(default),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let binary = std::env::var_os("SETPOINT").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/setpoint"),
        PathBuf::from,
    );
    if !binary.exists() {
        bail!(
            "{} not found: cargo build --release -p setpoint first",
            binary.display()
        );
    }
    let targets = setting("SETPOINT_BENCH_TARGETS", 100)?;
    let concurrency = setting("SETPOINT_BENCH_CONCURRENCY", 16)?;
    let requests = setting("SETPOINT_BENCH_REQUESTS", 20_000)?;

    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("tokens"),
        format!("viewer:viewer:{VIEWER_TOKEN}\n"),
    )?;
    let config = dir.path().join("setpoint.yaml");
    std::fs::write(
        &config,
        format!(
            "state_dir: state\n\
             loops:\n\
             \x20 - name: weekly-rightsizing\n\
             \x20   plugin: builtin:postgres\n\
             \x20   source: {{ kind: simulated, seed: 42, targets: {targets} }}\n\
             \x20   classifier: {{ kind: bootstrap }}\n\
             serve:\n\
             \x20 tokens_file: tokens\n"
        ),
    )?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let base = format!("http://127.0.0.1:{port}");
    let _serve = Serve(
        Command::new(&binary)
            .arg("--config")
            .arg(&config)
            .args(["serve", "--run-once-first", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?,
    );
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let cycled = match client.get(format!("{base}/metrics")).send().await {
            Ok(response) => response
                .text()
                .await
                .unwrap_or_default()
                .lines()
                .any(|l| l.starts_with("setpoint_cycles_total{") && !l.ends_with(" 0")),
            Err(_) => false,
        };
        if cycled {
            break;
        }
        if Instant::now() > deadline {
            bail!("setpoint serve did not complete its first cycle in 5 minutes");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let bearer = format!("Bearer {VIEWER_TOKEN}");
    let headers = [("authorization", bearer.as_str())];
    let index = load::run(&format!("{base}/"), &headers, concurrency, requests).await;
    let rows = index.sample.matches("<tr class=\"target\"").count();
    let first = index
        .sample
        .split("href=\"/targets/")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_string();
    println!("{rows} targets, {concurrency} clients, {requests} requests per page");
    println!("index page   {index}");
    let target = load::run(
        &format!("{base}/targets/{first}"),
        &headers,
        concurrency,
        requests,
    )
    .await;
    println!("target page  {target}");
    let health = load::run(&format!("{base}/healthz"), &[], concurrency, requests).await;
    println!("/healthz     {health}");
    for (name, report) in [("index", &index), ("target", &target), ("healthz", &health)] {
        if report.failed > 0 {
            bail!(
                "{name}: {} requests failed, first: {:?}",
                report.failed,
                report.first_failure
            );
        }
    }
    Ok(())
}
