//! A `kind: fast` loop's tick on a fleet of services against a real Prometheus: the first
//! tick (which fits every series' model before deciding) and then K ticks 15 s apart in the
//! loop's time (which read the recent hour and decide, the models already fitted), each timed
//! on the wall clock. The ticks run back to back, not 15 s apart on the wall clock.
//! `scripts/bench-fast-loop.sh` generates the telemetry, backfills it into Prometheus and runs
//! this; the figures are in `docs/benchmarks.md`.
//!
//! ```text
//! fast_loop_prometheus --prometheus URL [--services N] [--ticks K] [--at RFC3339]
//!                      [--policy DIR] [--step-seconds S] [--days D]
//!                      [--max-points-per-series P] [--max-response-mib M]
//!                      [--refit-every DURATION]
//! fast_loop_prometheus --write-openmetrics FILE [--services N] [--days D] [--at RFC3339]
//!                      [--step-seconds S] [--seed SEED]
//! ```
//!
//! The second form writes the telemetry the first reads, as OpenMetrics text for
//! `promtool tsdb create-blocks-from openmetrics`: per service (`service="svc-0001"`…) a
//! request rate with daily and weekly seasons, noise and a size of its own
//! (`bench_request_rate`), the replicas an HPA-like controller at 70 % of 70 requests/s per
//! replica runs for it (`bench_replicas`), and a p99 latency that rises with the load per
//! replica (`bench_latency_p99_ms`), every `--step-seconds` over the `--days` up to and
//! including `--at`. The generator is this file's own (seeded splitmix64), not the embedded
//! simulated fleet of `setpoint-observe`.
//!
//! The loop reads those three gauges through `fast.metrics`; `error_percent` and
//! `cpu_percent` point at series nobody writes, so they are absent for every service (the
//! loop's "not observed" case), as they would be for a fleet without them. The loop's step is
//! `--step-seconds`, its history `--days`. `--max-points-per-series` and `--max-response-mib`
//! set the source's `max_points_per_series` and `max_response_bytes` (defaults 11,000 and
//! 64 MiB: at 1,000 services, 15 days at 5 minutes is ~140 MB per series name in one answer,
//! which the default refuses). `--refit-every` (default 1h) set to `1m` makes refits start in
//! the background during the ticks, to time ticks that share the machine and Prometheus with
//! one.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Datelike as _, TimeDelta, Timelike as _, Utc};
use setpoint_core::Verdict;
use setpoint_runtime::{Config, CycleReport, Runtime, Shutdown};

/// What one replica serves at full load, requests/s (the generator's latency rises towards
/// it). The generator's HPA runs replicas for `HPA_TARGET` of it, and the loop is told the
/// same capacity at the target load (`limits.default.capacity_per_replica`).
const CAPACITY_PER_REPLICA: f64 = 70.0;
/// The generator's HPA target utilisation.
const HPA_TARGET: f64 = 0.7;
/// Spacing of the ticks after the first.
const TICK_SECONDS: i64 = 15;

const USAGE: &str = "usage: fast_loop_prometheus --prometheus URL [--services N] [--ticks K] \
[--at RFC3339] [--policy DIR] [--step-seconds S] [--days D] [--max-points-per-series P] \
[--max-response-mib M] [--refit-every DURATION]\n       fast_loop_prometheus --write-openmetrics FILE [--services N] \
[--days D] [--at RFC3339] [--step-seconds S] [--seed SEED]";

/// The command line.
struct Args {
    prometheus: Option<String>,
    write_openmetrics: Option<PathBuf>,
    services: usize,
    ticks: usize,
    at: DateTime<Utc>,
    policy: PathBuf,
    days: u32,
    step_seconds: u32,
    seed: u64,
    max_points_per_series: Option<u64>,
    max_response_mib: Option<u64>,
    refit_every: String,
}

impl Args {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Self> {
        let mut out = Args {
            prometheus: None,
            write_openmetrics: None,
            services: 1000,
            ticks: 20,
            at: DateTime::parse_from_rfc3339("2026-11-24T09:00:00Z")?.with_timezone(&Utc),
            policy: PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../policies/fast/examples/predictive"),
            days: 15,
            step_seconds: 300,
            seed: 42,
            max_points_per_series: None,
            max_response_mib: None,
            refit_every: "1h".to_string(),
        };
        while let Some(flag) = args.next() {
            if flag == "--help" || flag == "-h" {
                println!("{USAGE}");
                std::process::exit(0);
            }
            let value = args
                .next()
                .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
            let bad = || format!("{flag} {value:?}");
            match flag.as_str() {
                "--prometheus" => out.prometheus = Some(value),
                "--write-openmetrics" => out.write_openmetrics = Some(PathBuf::from(value)),
                "--services" => out.services = value.parse().with_context(bad)?,
                "--ticks" => out.ticks = value.parse().with_context(bad)?,
                "--at" => {
                    out.at = DateTime::parse_from_rfc3339(&value)
                        .with_context(bad)?
                        .with_timezone(&Utc);
                }
                "--policy" => out.policy = PathBuf::from(value),
                "--days" => out.days = value.parse().with_context(bad)?,
                "--step-seconds" => out.step_seconds = value.parse().with_context(bad)?,
                "--seed" => out.seed = value.parse().with_context(bad)?,
                "--max-points-per-series" => {
                    out.max_points_per_series = Some(value.parse().with_context(bad)?);
                }
                "--max-response-mib" => {
                    out.max_response_mib = Some(value.parse().with_context(bad)?);
                }
                "--refit-every" => out.refit_every = value,
                _ => bail!("unknown argument {flag:?}\n{USAGE}"),
            }
        }
        if out.services == 0 {
            bail!("--services must be at least 1");
        }
        if !(1..=900).contains(&out.step_seconds) {
            bail!("--step-seconds must be between 1 and 900 (the loop's fast.step)");
        }
        if out.days < 2 {
            bail!("--days must be at least 2 (the loop's fast.history)");
        }
        Ok(out)
    }
}

fn main() -> Result<()> {
    let args = Args::parse(std::env::args().skip(1))?;
    if let Some(file) = &args.write_openmetrics {
        return write_openmetrics(&args, file);
    }
    let Some(url) = args.prometheus.clone() else {
        bail!("--prometheus URL or --write-openmetrics FILE is required\n{USAGE}");
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench(&args, &url))
}

// ---------------------------------------------------------------------------------------------
// The generator.

/// splitmix64: a tiny, seedable, well-mixed generator (Steele, Lea and Flood, 2014).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn uniform(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.unit()
    }

    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f64 {
        let u = 1.0 - self.unit(); // (0, 1]
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// One service's shape.
struct Profile {
    /// Mean weekday request rate, requests/s.
    base: f64,
    /// Relative amplitude of the daily cycle.
    daily_amplitude: f64,
    /// Hour of the day (UTC) of the daily peak.
    peak_hour: f64,
    /// Relative amplitude of the second daily harmonic (a lunch dip, an evening bump).
    harmonic: f64,
    /// Load on Saturdays and Sundays, relative to weekdays.
    weekend: f64,
    /// Growth per day, relative.
    growth: f64,
    /// Standard deviation of the multiplicative noise, and its autocorrelation per step.
    noise: f64,
    noise_memory: f64,
    /// p99 latency at an idle replica, milliseconds.
    latency_base: f64,
}

impl Profile {
    fn draw(rng: &mut SplitMix64) -> Self {
        Profile {
            // Log-uniform between 5 and 3,000 requests/s: a few large services, many small.
            base: (rng.uniform(5f64.ln(), 3000f64.ln())).exp(),
            daily_amplitude: rng.uniform(0.2, 0.6),
            peak_hour: rng.uniform(9.0, 21.0),
            harmonic: rng.uniform(0.0, 0.15),
            weekend: rng.uniform(0.5, 0.95),
            growth: rng.uniform(0.0, 0.005),
            noise: rng.uniform(0.02, 0.08),
            noise_memory: rng.uniform(0.3, 0.8),
            latency_base: rng.uniform(20.0, 150.0),
        }
    }

    /// The expected rate at `t`, `days` into the history.
    fn rate(&self, t: DateTime<Utc>, days: f64) -> f64 {
        let hour =
            f64::from(t.hour()) + f64::from(t.minute()) / 60.0 + f64::from(t.second()) / 3600.0;
        let phase = std::f64::consts::TAU * (hour - self.peak_hour) / 24.0;
        let daily = 1.0 + self.daily_amplitude * phase.cos() + self.harmonic * (2.0 * phase).cos();
        // Weekend weight 0..1, ramped over the 4 hours around each midnight that starts or
        // ends Saturday and Sunday.
        let day = f64::from(t.weekday().num_days_from_monday()) + hour / 24.0; // 0..7
        let ramp = |x: f64| (x / (4.0 / 24.0) + 0.5).clamp(0.0, 1.0);
        let weekend_weight = ramp(day - 5.0).min(ramp(7.0 - day));
        let weekly = 1.0 - (1.0 - self.weekend) * weekend_weight;
        self.base * daily.max(0.05) * weekly * (1.0 + self.growth * days)
    }
}

/// Every service's three series, at the generator's steps.
struct Telemetry {
    times: Vec<i64>,
    /// By service.
    series: Vec<ServiceSeries>,
}

/// One service's series, at the generator's steps.
struct ServiceSeries {
    request_rate: Vec<f64>,
    replicas: Vec<f64>,
    latency_p99_ms: Vec<f64>,
}

/// The metric families written, in the order of [`ServiceSeries::values`]: name and help.
const FAMILIES: [(&str, &str); 3] = [
    ("bench_request_rate", "Requests per second."),
    ("bench_replicas", "Ready replicas."),
    (
        "bench_latency_p99_ms",
        "99th percentile latency, milliseconds.",
    ),
];

impl ServiceSeries {
    /// The values of the `family`th of [`FAMILIES`].
    fn values(&self, family: usize) -> &[f64] {
        match family {
            0 => &self.request_rate,
            1 => &self.replicas,
            _ => &self.latency_p99_ms,
        }
    }
}

fn generate(args: &Args) -> Telemetry {
    let step = i64::from(args.step_seconds);
    let end = args.at.timestamp();
    let start = end - i64::from(args.days) * 86_400;
    let times: Vec<i64> = (start..=end).step_by(step as usize).collect();
    let lag = (600 / step).max(1) as usize; // the HPA sees the load of ~10 min ago
    let series = (0..args.services)
        .map(|i| {
            let mut rng = SplitMix64(args.seed ^ (i as u64).wrapping_mul(0xA24B_AED4_963E_E407));
            let profile = Profile::draw(&mut rng);
            let mut noise = 0.0;
            let mut rates = Vec::with_capacity(times.len());
            for &t in &times {
                let at = DateTime::from_timestamp(t, 0).unwrap_or_default();
                let days = (t - start) as f64 / 86_400.0;
                noise = profile.noise_memory * noise
                    + (1.0 - profile.noise_memory.powi(2)).sqrt() * profile.noise * rng.normal();
                rates.push((profile.rate(at, days) * (1.0 + noise)).max(0.0));
            }
            // An HPA: replicas for the load of `lag` steps ago at its target, changed only
            // past a 10 % tolerance, between 2 and 200.
            let mut replicas = Vec::with_capacity(times.len());
            let mut current = 0.0f64;
            for k in 0..times.len() {
                let seen = rates[k.saturating_sub(lag)];
                let want = (seen / (CAPACITY_PER_REPLICA * HPA_TARGET))
                    .ceil()
                    .clamp(2.0, 200.0);
                if current == 0.0 || (want - current).abs() > 0.1 * current {
                    current = want;
                }
                replicas.push(current);
            }
            // p99 latency: the idle latency, rising with the service's load (its shared
            // backends are busier) and steeply as the load per replica nears its capacity,
            // with log-normal noise.
            let latency = rates
                .iter()
                .zip(&replicas)
                .map(|(rate, replicas)| {
                    let utilisation = rate / (replicas * CAPACITY_PER_REPLICA);
                    let load = 1.0 + 0.3 * rate / profile.base;
                    let queueing = 1.0 + 0.6 * utilisation.powi(2) + 2.0 * utilisation.powi(8);
                    profile.latency_base * load * queueing * (0.05 * rng.normal()).exp()
                })
                .collect();
            ServiceSeries {
                request_rate: rates,
                replicas,
                latency_p99_ms: latency,
            }
        })
        .collect();
    Telemetry { times, series }
}

fn service_name(i: usize, services: usize) -> String {
    let width = services.to_string().len().max(4);
    format!("svc-{:0width$}", i + 1)
}

fn write_openmetrics(args: &Args, file: &Path) -> Result<()> {
    let started = Instant::now();
    let telemetry = generate(args);
    let out = std::fs::File::create(file).with_context(|| format!("{}", file.display()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, out);
    let mut samples = 0usize;
    for (family, (name, help)) in FAMILIES.iter().enumerate() {
        writeln!(out, "# HELP {name} {help}")?;
        writeln!(out, "# TYPE {name} gauge")?;
        for (i, series) in telemetry.series.iter().enumerate() {
            let service = service_name(i, args.services);
            for (t, v) in telemetry.times.iter().zip(series.values(family)) {
                writeln!(out, "{name}{{service=\"{service}\"}} {v} {t}")?;
                samples += 1;
            }
        }
    }
    writeln!(out, "# EOF")?;
    out.flush()?;
    eprintln!(
        "wrote {samples} samples ({} services × 3 series × {} steps of {} s, {} days up to {}) to {} in {:.1} s",
        args.services,
        telemetry.times.len(),
        args.step_seconds,
        args.days,
        args.at.to_rfc3339(),
        file.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The bench.

fn config_text(args: &Args, url: &str, state_dir: &Path) -> String {
    let mut source = format!("{{kind: prometheus, url: \"{url}\"");
    if let Some(points) = args.max_points_per_series {
        source.push_str(&format!(", max_points_per_series: {points}"));
    }
    if let Some(mib) = args.max_response_mib {
        source.push_str(&format!(", max_response_bytes: {}", mib << 20));
    }
    source.push('}');
    format!(
        r#"state_dir: "{state}"
loops:
  - name: bench
    kind: fast
    schedule: "*/15 * * * * *"
    source: {source}
    policies: "{policy}"
    mode: dry-run
    fast:
      horizon: 15m
      step: {step}s
      history: {days}d
      refit_every: {refit_every}
      metrics:
        request_rate: bench_request_rate
        latency_p99_ms: bench_latency_p99_ms
        replicas: bench_replicas
        error_percent: bench_error_percent_not_written
        cpu_percent: bench_cpu_percent_not_written
      limits:
        default: {{min_replicas: 2, max_replicas: 200, capacity_per_replica: {capacity:.1}}}
"#,
        state = state_dir.display(),
        policy = args.policy.display(),
        step = args.step_seconds,
        days = args.days,
        refit_every = args.refit_every,
        capacity = CAPACITY_PER_REPLICA * HPA_TARGET,
    )
}

/// What one tick decided.
struct Tick {
    seconds: f64,
    services: usize,
    /// Range queries issued: the recent window's, and the history's when a refit started.
    queries: usize,
    /// Services whose request rate had a forecast.
    forecast: usize,
    /// Services whose p99 latency had a forecast.
    latency_forecast: usize,
    verdicts: BTreeMap<String, usize>,
    degraded: Vec<String>,
    /// The first service without a request-rate forecast, and its problems.
    unforecast: Option<(String, Vec<String>)>,
}

fn summarise(report: &CycleReport, seconds: f64) -> Tick {
    let mut verdicts = BTreeMap::new();
    for row in &report.rows {
        let verdict = match row.verdict {
            Some(Verdict::Act) => "act",
            Some(Verdict::Review) => "review",
            Some(Verdict::Hold) => "hold",
            Some(Verdict::Block) => "block",
            None => "none",
        };
        *verdicts.entry(verdict.to_string()).or_insert(0) += 1;
    }
    let without = |r: &&setpoint_runtime::TargetRow| {
        r.observe_issues
            .iter()
            .any(|issue| issue.contains("/request_rate:"))
    };
    let forecast = report.rows.iter().filter(|r| !without(r)).count();
    let latency_forecast = report
        .rows
        .iter()
        .filter(|r| {
            !r.observe_issues
                .iter()
                .any(|issue| issue.contains("/latency_p99_ms:"))
        })
        .count();
    let unforecast = report
        .rows
        .iter()
        .find(without)
        .map(|r| (r.target.clone(), r.observe_issues.clone()));
    Tick {
        seconds,
        services: report.rows.len(),
        queries: report.queries,
        forecast,
        latency_forecast,
        verdicts,
        degraded: report.degraded.clone(),
        unforecast,
    }
}

/// `key:` of /proc/self/status, in MiB.
fn proc_status_mib(key: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn show_mib(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_string(), |v| format!("{v:.0} MiB"))
}

/// The nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn tick(runtime: &Runtime, now: DateTime<Utc>, shutdown: &Shutdown) -> Result<Tick> {
    let started = Instant::now();
    let reports = runtime
        .run_once(now, None, shutdown)
        .await
        .with_context(|| format!("tick at {now}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let report = reports.first().context("no report")?;
    Ok(summarise(report, seconds))
}

fn print_tick(label: &str, now: DateTime<Utc>, tick: &Tick) {
    let verdicts: Vec<String> = tick
        .verdicts
        .iter()
        .map(|(v, n)| format!("{v} {n}"))
        .collect();
    println!(
        "{label:>8} {} {:>8.3} s  queries {:>2}  services {:>5}  forecast: request rate {:>5}, latency {:>5}  {}",
        now.format("%H:%M:%S"),
        tick.seconds,
        tick.queries,
        tick.services,
        tick.forecast,
        tick.latency_forecast,
        verdicts.join(", ")
    );
    for line in tick.degraded.iter().take(5) {
        println!("         degraded: {line}");
    }
    if tick.degraded.len() > 5 {
        println!("         … {} more degraded", tick.degraded.len() - 5);
    }
    if let Some((service, issues)) = &tick.unforecast {
        println!("         e.g. {service}: {}", issues.join("; "));
    }
}

async fn bench(args: &Args, url: &str) -> Result<()> {
    let state = tempfile::tempdir()?;
    let text = config_text(args, url, state.path());
    let config = Config::parse(&text, "<bench>").with_context(|| text.clone())?;
    let started = Instant::now();
    let runtime = Runtime::new(config)?.with_clock(setpoint_core::fixed_clock(args.at));
    let setup = started.elapsed().as_secs_f64();
    let shutdown = Shutdown::new();
    println!(
        "fast loop against {url}: {} services, 3 series written (request rate, replicas, p99 latency) + 2 absent, step {} s, history {} d, tick at {}; runtime set up in {setup:.1} s",
        args.services,
        args.step_seconds,
        args.days,
        args.at.to_rfc3339()
    );

    let first = tick(&runtime, args.at, &shutdown).await?;
    print_tick("first", args.at, &first);
    let rss_after_fit = proc_status_mib("VmHWM:");
    if first.services == 0 {
        bail!("the first tick saw no service: is the data backfilled up to --at?");
    }

    let mut ticks = Vec::with_capacity(args.ticks);
    for i in 1..=args.ticks {
        let now = args.at + TimeDelta::seconds(TICK_SECONDS * i as i64);
        let t = tick(&runtime, now, &shutdown).await?;
        print_tick(&format!("tick {i}"), now, &t);
        ticks.push(t);
    }
    let mut seconds: Vec<f64> = ticks.iter().map(|t| t.seconds).collect();
    seconds.sort_by(f64::total_cmp);
    let services: Vec<usize> = ticks.iter().map(|t| t.services).collect();
    let p99 = percentile(&seconds, 99.0);
    println!();
    println!("services decided per tick: {services:?}");
    println!(
        "first tick incl. fit: {:.2} s (peak RSS after it {})",
        first.seconds,
        show_mib(rss_after_fit)
    );
    println!(
        "ticks after it ({}): p50 {:.3} s, p95 {:.3} s, p99 {:.3} s, max {:.3} s, mean {:.3} s",
        seconds.len(),
        percentile(&seconds, 50.0),
        percentile(&seconds, 95.0),
        p99,
        seconds.last().copied().unwrap_or(f64::NAN),
        seconds.iter().sum::<f64>() / seconds.len().max(1) as f64
    );
    println!(
        "peak RSS (VmHWM) {}, RSS now {}",
        show_mib(proc_status_mib("VmHWM:")),
        show_mib(proc_status_mib("VmRSS:"))
    );
    println!(
        "target p99 tick ≤ 5 s for {} services: {}",
        args.services,
        if p99 <= 5.0 { "met" } else { "NOT met" }
    );
    drop(runtime);
    Ok(())
}
