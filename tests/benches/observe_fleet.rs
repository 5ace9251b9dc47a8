//! One observe stage over a large backfilled fleet, on Prometheus and on VictoriaMetrics.
//!
//! Starts the loopback stack of `examples/stack` (Debian packages: `bash
//! examples/stack/stack.sh install`), backfills a simulated PostgreSQL fleet into both TSDBs,
//! then times what a cycle's observe stage does against each: discovery plus one range query per
//! metric of the bundled PostgreSQL plugin for the whole fleet, summarised per week in the TSDB
//! (the default), and once with raw samples for comparison. Peak memory is the live heap of this
//! process during the stage and its peak resident set (reset before each stage).
//!
//! ```text
//! cargo build --release -p setpoint
//! cargo bench -p setpoint-tests --bench observe_fleet
//! ```
//!
//! Settings (environment):
//! - `SETPOINT_BENCH_TARGETS` fleet size (default 1000)
//! - `SETPOINT_BENCH_RUNS` timed weekly stages per backend (default 5)
//! - `SETPOINT_BENCH_RAW_RUNS` timed raw-sample stages per backend (default 1; 0 skips)
//! - `SETPOINT_BENCH_BACKENDS` which to measure (default `prometheus,victoria-metrics`)
//! - `SETPOINT_BENCH_DIR` where the stack lives (default: a temporary directory, removed)
//! - `SETPOINT_BENCH_KEEP=1` leave the backfilled stack running in `SETPOINT_BENCH_DIR`; the next
//!   run with the same directory and fleet size measures it again without backfilling (stop it
//!   with `examples/stack/stack.sh stop DIR`)
//! - `SETPOINT` the setpoint binary used to export the history (default target/release/setpoint)

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use chrono::{DateTime, TimeZone, Utc};
use peak_alloc::PeakAlloc;
use setpoint_core::MetricSpec;
use setpoint_observe::{
    MetricSource, PrometheusConfig, PrometheusSource, RangeQuery, WeeklySummary,
};

#[global_allocator]
static HEAP: PeakAlloc = PeakAlloc;

const WEEK_SECONDS: i64 = 7 * 24 * 3600;
/// The runtime's defaults: a 4-week fingerprint, one more week read, 5-minute step.
const WEEKS: u32 = 4;
const STEP_SECONDS: u64 = 300;

fn env_number(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .with_context(|| format!("{name}={text:?} is not a number")),
        Err(_) => Ok(default),
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The stack of `examples/stack`, stopped by PID when dropped (pass or fail) unless kept.
struct Stack {
    dir: PathBuf,
    keep: bool,
}

impl Stack {
    fn script(&self, args: &[&str], env: &[(&str, String)]) -> Result<()> {
        let status = Command::new("bash")
            .arg(root().join("examples/stack/stack.sh"))
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .status()
            .context("cannot run stack.sh")?;
        ensure!(
            status.success(),
            "stack.sh {args:?} failed; logs in {}/logs",
            self.dir.display()
        );
        Ok(())
    }

    fn port(&self, name: &str) -> Result<String> {
        let env = std::fs::read_to_string(self.dir.join("ports.env"))?;
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .map(str::to_string)
            .with_context(|| format!("no {name} in ports.env"))
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if !self.keep {
            let _ = self.script(&["stop", &self.dir.display().to_string()], &[]);
        }
    }
}

/// The history end of a kept stack in `dir` backfilled with `fleet` targets whose processes
/// are all still running.
fn kept_backfill(dir: &Path, fleet: usize) -> Option<DateTime<Utc>> {
    let marker = std::fs::read_to_string(dir.join(BACKFILL_MARKER)).ok()?;
    let (size, end) = marker.trim().split_once(' ')?;
    if size.parse::<usize>().ok()? != fleet {
        return None;
    }
    let pids = std::fs::read_to_string(dir.join("pids")).ok()?;
    let running = pids.lines().filter(|l| !l.trim().is_empty()).all(|line| {
        line.split_whitespace()
            .next()
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
    });
    (running && !pids.trim().is_empty())
        .then(|| DateTime::parse_from_rfc3339(end).ok())
        .flatten()
        .map(|end| end.with_timezone(&Utc))
}

/// Written beside a backfilled stack: `<fleet size> <history end>`.
const BACKFILL_MARKER: &str = "bench-backfilled";

/// Peak resident set of this process since the last reset, in bytes.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Resets the peak resident set to the current one (Linux `clear_refs` value 5).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn mib(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

/// What one observe stage did.
struct Stage {
    elapsed: Duration,
    /// Each metric's range query, in the plugin's order.
    per_metric: Vec<(String, Duration)>,
    targets: usize,
    complete_targets: usize,
    requests: usize,
    peak_heap: f64,
    peak_rss: Option<u64>,
}

async fn observe_once(
    config: &PrometheusConfig,
    metrics: &[MetricSpec],
    end: DateTime<Utc>,
    weekly: bool,
) -> Result<Stage> {
    let mut config = config.clone();
    config.summarise_weekly = weekly;
    HEAP.reset_peak_usage();
    let heap_before = HEAP.current_usage() as f64;
    reset_peak_rss();
    let started = Instant::now();
    let source = PrometheusSource::new(config)?;
    let targets = source.discover("postgres").await?;
    let mut answered: std::collections::HashMap<String, usize> = Default::default();
    let mut per_metric = Vec::with_capacity(metrics.len());
    for metric in metrics {
        let query_started = Instant::now();
        let query = RangeQuery {
            metric: metric.name.clone(),
            promql: metric.query.clone(),
            technology: "postgres".to_string(),
            start: end - chrono::Duration::seconds(WEEK_SECONDS * (i64::from(WEEKS) + 1)),
            end,
            step_seconds: STEP_SECONDS,
            target_label: "instance".to_string(),
            weekly: (weekly && source.summarises_weekly()).then_some(WeeklySummary {
                aggregation: metric.aggregation,
                weeks: WEEKS,
                counted: true,
            }),
        };
        let result = source.query_range(&query).await?;
        per_metric.push((metric.name.clone(), query_started.elapsed()));
        ensure!(
            result.problems.is_empty(),
            "{}: {:?}",
            metric.name,
            result.problems
        );
        for (target, series) in result.series {
            if !series.values.is_empty() {
                *answered.entry(target).or_default() += 1;
            }
        }
    }
    let elapsed = started.elapsed();
    let complete_targets = answered.values().filter(|n| **n == metrics.len()).count();
    Ok(Stage {
        elapsed,
        per_metric,
        targets: targets.len(),
        complete_targets,
        requests: source.requests(),
        peak_heap: HEAP.peak_usage() as f64 - heap_before,
        peak_rss: peak_rss(),
    })
}

fn report(backend: &str, mode: &str, stages: &[Stage]) {
    if stages.is_empty() {
        return;
    }
    let mut times: Vec<f64> = stages.iter().map(|s| s.elapsed.as_secs_f64()).collect();
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let heap = stages.iter().map(|s| s.peak_heap).fold(0.0, f64::max);
    let rss = stages.iter().filter_map(|s| s.peak_rss).max().unwrap_or(0);
    let last = &stages[stages.len() - 1];
    println!(
        "{backend:<16} {mode:<7} runs {:>2}  median {:>8.3} s  min {:>8.3} s  max {:>8.3} s  \
         requests {:>3}  targets {:>5} ({} with every metric)  peak heap {:>8.1} MiB  peak RSS {:>8.1} MiB",
        stages.len(),
        median,
        times[0],
        times[times.len() - 1],
        last.requests,
        last.targets,
        last.complete_targets,
        mib(heap),
        mib(rss as f64),
    );
}

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; a filter argument selects nothing here.
    let fleet = env_number("SETPOINT_BENCH_TARGETS", 1000)?;
    let runs = env_number("SETPOINT_BENCH_RUNS", 5)?;
    let raw_runs = env_number("SETPOINT_BENCH_RAW_RUNS", 1)?;
    let setpoint = std::env::var_os("SETPOINT")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/release/setpoint"));
    ensure!(
        setpoint.exists(),
        "{} is missing: cargo build --release -p setpoint (or set SETPOINT)",
        setpoint.display()
    );

    let temp;
    let dir = match std::env::var_os("SETPOINT_BENCH_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };
    std::fs::create_dir_all(&dir)?;
    let dir = dir.canonicalize()?;

    // The plugin's own queries, exactly as a cycle sends them.
    let host = setpoint_plugin_host::PluginHost::new(setpoint_plugin_host::Limits::default())?;
    let bytes = setpoint_plugins_bundled::postgres();
    let metrics = host
        .load("builtin:postgres", bytes)?
        .descriptor()
        .metrics
        .clone();
    drop(host);

    let keep = std::env::var("SETPOINT_BENCH_KEEP").is_ok_and(|v| v == "1");
    ensure!(
        !keep || std::env::var_os("SETPOINT_BENCH_DIR").is_some(),
        "SETPOINT_BENCH_KEEP=1 needs SETPOINT_BENCH_DIR"
    );
    let dir_arg = dir.display().to_string();
    let (stack, end) = match kept_backfill(&dir, fleet) {
        Some(end) => {
            println!("reusing the stack in {dir_arg}: {fleet} targets, history ending {end}");
            (Stack { dir, keep }, end)
        }
        None => {
            let now = Utc::now().timestamp();
            let end = Utc
                .timestamp_opt(now - now.rem_euclid(3600), 0)
                .single()
                .context("the clock is out of range")?;
            let stack = Stack { dir, keep };
            // Prometheus' 2-minute default is shorter than a weekly summary of a thousand
            // targets takes it on a small machine.
            stack.script(
                &["start", &dir_arg],
                &[("PROM_QUERY_TIMEOUT", "30m".to_string())],
            )?;
            let started = Instant::now();
            stack.script(
                &["backfill", &dir_arg],
                &[
                    ("SETPOINT", setpoint.display().to_string()),
                    ("BACKFILL_END", end.to_rfc3339()),
                    ("FLEET_SIZE", fleet.to_string()),
                    ("BLOCK_DURATION", "1458h".to_string()),
                ],
            )?;
            std::fs::write(
                stack.dir.join(BACKFILL_MARKER),
                format!("{fleet} {}\n", end.to_rfc3339()),
            )?;
            println!(
                "backfilled {fleet} targets × 7 exporter series × 5 weeks at 150 s into both TSDBs in {:.0} s",
                started.elapsed().as_secs_f64()
            );
            (stack, end)
        }
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let backends = std::env::var("SETPOINT_BENCH_BACKENDS")
        .unwrap_or_else(|_| "prometheus,victoria-metrics".to_string());
    for (backend, port, max_points) in [
        ("prometheus", "PROM_PORT", 11_000),
        ("victoria-metrics", "VM_PORT", 30_000),
    ] {
        if !backends.split(',').any(|b| b.trim() == backend) {
            continue;
        }
        let mut config = PrometheusConfig::new(format!("http://127.0.0.1:{}", stack.port(port)?));
        config.max_points_per_series = max_points;
        // Discovery asks for the targets alive at the server's clock; a backfilled fleet's
        // series end with its history, so ask for those seen since then.
        let age = (Utc::now() - end).num_seconds().max(0) + 3600;
        config.discovery_metric = Some(format!("last_over_time(pg_up[{age}s])"));
        config.timeout = Duration::from_secs(1800);
        config.retries = 0;
        for (mode, weekly, count) in [("weekly", true, runs), ("raw", false, raw_runs)] {
            if count == 0 {
                continue;
            }
            // One untimed stage first: the TSDB's caches and this process's allocations warm.
            let warm = runtime.block_on(observe_once(&config, &metrics, end, weekly))?;
            // The gap scenario's targets miss whole weeks, never a whole metric: all of the
            // backfilled fleet must come back.
            if warm.complete_targets < fleet * 9 / 10 {
                bail!(
                    "{backend} {mode}: only {} of {fleet} targets have every metric",
                    warm.complete_targets
                );
            }
            let queries: Vec<String> = warm
                .per_metric
                .iter()
                .map(|(name, took)| format!("{name} {:.1} s", took.as_secs_f64()))
                .collect();
            eprintln!(
                "{backend} {mode}: warm-up stage {:.1} s ({})",
                warm.elapsed.as_secs_f64(),
                queries.join(", ")
            );
            let mut stages = Vec::with_capacity(count);
            for run in 1..=count {
                let stage = runtime.block_on(observe_once(&config, &metrics, end, weekly))?;
                eprintln!(
                    "{backend} {mode}: run {run}/{count} {:.1} s",
                    stage.elapsed.as_secs_f64()
                );
                stages.push(stage);
            }
            report(backend, mode, &stages);
        }
    }
    Ok(())
}
