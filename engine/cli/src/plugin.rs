//! `setpoint plugin inspect` and `setpoint plugin validate`.
//!
//! `inspect` loads a plugin in the sandbox and prints what it declares. `validate` runs it on
//! synthetic inputs — raw samples and weekly summaries of every metric it declares, no samples
//! at all, several classes and bounds — and checks what no single call can show: that both
//! input shapes give the same features, that proposals for every class keep the contract
//! (bounds, direction, current size; the host also refuses each bad plan as it comes), that
//! repeated calls give identical outputs, and how much of each limit the calls used. Each check is printed as pass or FAIL with its reason.

use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use serde::Serialize;
use setpoint_core::{
    Aggregation, Bounds, Class, Classification, Explanation, FeatureVector, MetricSeries,
    PluginDescriptor, Resources, Target, Window,
};
use setpoint_plugin_host::{
    CallUsage, Failure, FeaturesInput, Limits, Plugin, PluginError, PluginHost, ProposeInput,
};

use crate::Output;

#[derive(Debug, Subcommand)]
pub(crate) enum PluginCommand {
    /// Print what a plugin declares: name, version, technology, ABI, metrics, features, actions.
    Inspect(InspectArgs),
    /// Check a plugin against the contract on synthetic inputs; exit status 1 on any failure.
    ///
    /// Checks: it loads under the sandbox limits; raw samples and weekly summaries each give
    /// features matching the declared schema, and the same ones; no samples give no values;
    /// proposals stay within the bounds given, with positive sizes; repeated calls give
    /// identical outputs; every call stays within the fuel, memory and time limits.
    Validate(ValidateArgs),
    /// Build a plugin crate written against the SDK (outside setpoint's workspace) into a
    /// component: `cargo build --release --target wasm32-unknown-unknown`, then componentize.
    ///
    /// Drop the result in the plugins directory (`plugins.d` beside the config) and the
    /// quickstart runs it over the simulator, playing the scenarios it ships.
    Build(BuildArgs),
}

#[derive(Debug, Args)]
pub(crate) struct BuildArgs {
    /// The plugin crate's directory (with its Cargo.toml).
    dir: std::path::PathBuf,
    /// Where to write the component.
    #[arg(long, short, default_value = "plugins.d/plugin.wasm")]
    out: std::path::PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// The plugin: a `.wasm` component, or `builtin:<name>`.
    plugin: String,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t)]
    output: Output,
}

#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    /// The plugin: a `.wasm` component, or `builtin:<name>`.
    plugin: String,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t)]
    output: Output,
}

pub(crate) fn run(command: &PluginCommand) -> Result<ExitCode> {
    match command {
        PluginCommand::Inspect(args) => inspect(args),
        PluginCommand::Validate(args) => validate(args),
        PluginCommand::Build(args) => build(args),
    }
}

fn build(args: &BuildArgs) -> Result<ExitCode> {
    let package = setpoint_plugin_build::build_external(&args.dir, &args.out)
        .with_context(|| format!("building the plugin in {}", args.dir.display()))?;
    // Load it once, so a plugin that the engine would refuse is refused here.
    let bytes =
        std::fs::read(&args.out).with_context(|| format!("reading {}", args.out.display()))?;
    let host = PluginHost::new(Limits::default())?;
    let plugin = host.load(&args.out.display().to_string(), &bytes)?;
    let d = plugin.descriptor();
    eprintln!(
        "built {package} into {}: plugin {} {} for {}, ABI {}, {} metric(s), {} scenario(s)",
        args.out.display(),
        d.name,
        d.version,
        d.technology,
        d.abi_version,
        d.metrics.len(),
        d.scenarios.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// The plugin's bytes, from a file or the bundled set.
fn read(plugin: &str) -> Result<Vec<u8>> {
    if let Some(name) = plugin.strip_prefix("builtin:") {
        let all = setpoint_plugins_bundled::all();
        return all
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, bytes)| bytes.to_vec())
            .with_context(|| {
                let known: Vec<&str> = all.iter().map(|(n, _)| *n).collect();
                format!(
                    "no builtin plugin named {name:?}; builtin plugins: {}",
                    known.join(", ")
                )
            });
    }
    std::fs::read(Path::new(plugin)).with_context(|| format!("cannot read plugin {plugin}"))
}

#[derive(Serialize)]
struct Inspection<'a> {
    source: &'a str,
    /// The component's digest, to pin a loop to it.
    sha256: String,
    /// The contract version, checked equal to the host's at load.
    abi_version: String,
    #[serde(flatten)]
    descriptor: &'a PluginDescriptor,
}

fn inspect(args: &InspectArgs) -> Result<ExitCode> {
    let bytes = read(&args.plugin)?;
    let host = PluginHost::new(Limits::default())?;
    let plugin = host.load(&args.plugin, &bytes)?;
    let d = plugin.descriptor();
    match args.output {
        Output::Json => {
            let inspection = Inspection {
                source: &args.plugin,
                sha256: setpoint_plugin_host::digest(&bytes),
                abi_version: setpoint_plugin_host::ABI_VERSION.to_string(),
                descriptor: d,
            };
            println!("{}", serde_json::to_string_pretty(&inspection)?);
        }
        Output::Table => {
            print!("{}", render(&args.plugin, d));
            let sha256 = setpoint_plugin_host::digest(&bytes);
            if args.plugin.starts_with("builtin:") {
                println!("\nsha256      {sha256}");
            } else {
                println!(
                    "\nsha256      {sha256}\n  pin it in a loop: plugin: {{ path: {}, sha256: {sha256} }}",
                    args.plugin
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn aggregation(a: Aggregation) -> &'static str {
    match a {
        Aggregation::Mean => "mean",
        Aggregation::Max => "max",
        Aggregation::P95 => "p95",
        Aggregation::P99 => "p99",
        Aggregation::MaxHourlyMean => "max 1h mean",
        Aggregation::ShareAtLeast(_) => "share at or above a level",
    }
}

fn render(source: &str, d: &PluginDescriptor) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "plugin      {}", d.name);
    let _ = writeln!(out, "version     {}", d.version);
    let _ = writeln!(out, "technology  {}", d.technology);
    let _ = writeln!(out, "abi         {}", setpoint_plugin_host::ABI_VERSION);
    let _ = writeln!(out, "source      {source}");
    let actions: Vec<&str> = d.actions.iter().map(|a| a.as_str()).collect();
    let _ = writeln!(out, "actions     {}", actions.join(", "));
    let _ = writeln!(out, "\nmetrics ({}):", d.metrics.len());
    for m in &d.metrics {
        let _ = writeln!(
            out,
            "  {}  [{}, {}]  {}\n    {}",
            m.name,
            aggregation(m.aggregation),
            m.unit,
            m.description,
            m.query
        );
        if let Some(capacity) = &m.capacity {
            let _ = writeln!(
                out,
                "    divided by each target's {capacity}; targets without it: {}",
                m.fallback_query.as_deref().unwrap_or("none (missing)")
            );
        }
    }
    let _ = writeln!(out, "\nfeatures ({}):", d.features.len());
    let width = d.features.iter().map(|f| f.name.len()).max().unwrap_or(0);
    for f in &d.features {
        let _ = writeln!(out, "  {:width$}  {}", f.name, f.description);
    }
    out
}

/// One contract check's result.
#[derive(Debug, Serialize)]
struct Check {
    name: &'static str,
    passed: bool,
    reason: String,
}

impl Check {
    fn new(name: &'static str, result: Result<String, String>) -> Self {
        match result {
            Ok(reason) => Self {
                name,
                passed: true,
                reason,
            },
            Err(reason) => Self {
                name,
                passed: false,
                reason,
            },
        }
    }
}

#[derive(Serialize)]
struct Validation<'a> {
    source: &'a str,
    plugin: Option<String>,
    passed: bool,
    checks: Vec<Check>,
}

fn validate(args: &ValidateArgs) -> Result<ExitCode> {
    let bytes = read(&args.plugin)?;
    let usage: Arc<Mutex<Vec<CallUsage>>> = Arc::default();
    let meter = {
        let usage = usage.clone();
        Arc::new(move |call: &CallUsage| {
            if let Ok(mut usage) = usage.lock() {
                usage.push(call.clone());
            }
        })
    };
    let limits = Limits::default();
    let host = PluginHost::new(limits)?.with_meter(meter);
    let mut checks = Vec::new();
    let loaded = host.load(&args.plugin, &bytes);
    checks.push(Check::new(
        "loads under the sandbox limits",
        match &loaded {
            Ok(p) => {
                let d = p.descriptor();
                Ok(format!(
                    "{} {} for {}: {} metrics, {} features, {} actions",
                    d.name,
                    d.version,
                    d.technology,
                    d.metrics.len(),
                    d.features.len(),
                    d.actions.len()
                ))
            }
            Err(error) => Err(error.to_string()),
        },
    ));
    let name = loaded.as_ref().ok().map(|p| p.name().to_string());
    if let Ok(plugin) = &loaded {
        let validator = Validator::new(plugin);
        checks.extend(validator.run());
        checks.push(limits_check(
            limits,
            &usage.lock().map(|u| u.clone()).unwrap_or_default(),
        ));
        // A metered host calls one target at a time (its figures are per target); the engine
        // sends batches, so they are checked on a host of their own — once the single calls
        // pass, since a batch of a plugin that traps or spins only repeats what they showed.
        if checks.iter().all(|c| c.passed) {
            let batching = PluginHost::new(limits)?
                .load(&args.plugin, &bytes)
                .map_err(|e| e.to_string())
                .and_then(|plugin| validator.batched(&plugin));
            checks.push(Check::new(
                "a batch answers each target as a call of its own",
                batching,
            ));
        }
    }

    let passed = checks.iter().all(|c| c.passed);
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&Validation {
                source: &args.plugin,
                plugin: name,
                passed,
                checks,
            })?
        ),
        Output::Table => {
            match &name {
                Some(name) => println!("plugin {name} ({})", args.plugin),
                None => println!("plugin {} (did not load)", args.plugin),
            }
            for c in &checks {
                let mark = if c.passed { "pass" } else { "FAIL" };
                println!("  {mark}  {}: {}", c.name, c.reason);
            }
            let failed = checks.iter().filter(|c| !c.passed).count();
            println!("{} passed, {failed} failed", checks.len() - failed);
        }
    }
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The synthetic inputs and the checks over them.
struct Validator<'a> {
    plugin: &'a Plugin,
    target: Target,
    window: Window,
}

const WEEK: chrono::Duration = chrono::Duration::weeks(1);

/// Absolute difference allowed between a feature from raw samples and the same from weekly
/// summaries (the two are the same computation; this absorbs rounding).
const AGREEMENT: f64 = 1e-6;

impl<'a> Validator<'a> {
    fn new(plugin: &'a Plugin) -> Self {
        let end = DateTime::parse_from_rfc3339("2026-11-23T06:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        let weeks = 4;
        Self {
            plugin,
            target: Target {
                id: "synthetic-1".to_string(),
                technology: plugin.descriptor().technology.clone(),
                labels: [("instance".to_string(), "synthetic-1".to_string())].into(),
                resources: Resources {
                    cpu_millicores: 8_000,
                    memory_bytes: 32 << 30,
                    replicas: 1,
                    parameters: [
                        ("shared_buffers", "8GB"),
                        ("effective_cache_size", "24GB"),
                        ("max_connections", "200"),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                },
            },
            window: Window {
                start: end - WEEK * (weeks as i32 + 1),
                end,
                step_seconds: 300,
                weeks,
            },
        }
    }

    fn run(&self) -> Vec<Check> {
        let raw_series = self.raw_series();
        let weekly_series = self.weekly_series(&raw_series);
        let raw = self.features(&raw_series);
        let weekly = self.features(&weekly_series);
        let empty = self.features(&[]);
        let mut checks = vec![
            Check::new("features from raw samples", self.complete(&raw)),
            Check::new("features from weekly summaries", self.complete(&weekly)),
            Check::new(
                "raw samples and weekly summaries agree",
                agree(&raw, &weekly),
            ),
            Check::new("features from no samples", no_values(&empty)),
        ];
        let features = raw.as_ref().ok().cloned().unwrap_or_default();
        checks.push(Check::new(
            "proposals within bounds",
            self.proposals(&features),
        ));
        checks.push(Check::new(
            "deterministic",
            self.deterministic(&raw_series, &weekly_series, &features),
        ));
        checks
    }

    fn features(&self, series: &[MetricSeries]) -> Result<FeatureVector, PluginError> {
        self.plugin.features(&self.target, &self.window, series)
    }

    /// Every declared metric at every step of the window: a daily wave, distinct per metric,
    /// within 0..1 so it suits ratios.
    fn raw_series(&self) -> Vec<MetricSeries> {
        let step = self.window.step_seconds as i64 * 1000;
        let start = self.window.start.timestamp_millis();
        let end = self.window.end.timestamp_millis();
        let timestamps: Vec<i64> = (0..)
            .map(|i| start + i * step)
            .take_while(|t| *t < end)
            .collect();
        self.plugin
            .descriptor()
            .metrics
            .iter()
            .enumerate()
            .map(|(m, spec)| MetricSeries {
                metric: spec.name.clone(),
                values: timestamps
                    .iter()
                    .map(|t| {
                        let day = (*t as f64) / 86_400_000.0 * std::f64::consts::TAU;
                        let week = (*t - start) as f64 / WEEK.num_milliseconds() as f64;
                        0.2 + 0.05 * m as f64 + 0.1 * (day.sin() + 1.0) + 0.02 * week
                    })
                    .collect(),
                timestamps_ms: timestamps.clone(),
                sample_counts: None,
            })
            .collect()
    }

    /// The same samples summarised per week as a TSDB would: one point per week with the
    /// metric's aggregation, stamped with the week's exclusive end, and its sample count.
    fn weekly_series(&self, raw: &[MetricSeries]) -> Vec<MetricSeries> {
        let end = self.window.end.timestamp_millis();
        let specs = &self.plugin.descriptor().metrics;
        raw.iter()
            .zip(specs)
            .map(|(series, spec)| {
                setpoint_observe::summarise_weekly(
                    series,
                    end,
                    setpoint_observe::WeeklySummary {
                        aggregation: spec.aggregation,
                        weeks: self.window.weeks,
                        counted: true,
                    },
                )
            })
            .collect()
    }

    /// The host checked names, order, count, coverage and finiteness; complete data should also
    /// give some values.
    fn complete(&self, features: &Result<FeatureVector, PluginError>) -> Result<String, String> {
        let features = features.as_ref().map_err(ToString::to_string)?;
        let with_values = features
            .features
            .iter()
            .filter(|f| f.value.is_some())
            .count();
        if with_values == 0 {
            return Err(format!(
                "{} features in schema order, but none has a value from complete data for every declared metric",
                features.features.len()
            ));
        }
        Ok(format!(
            "{} features in schema order, {with_values} with values",
            features.features.len()
        ))
    }

    /// Proposals for every class under several bounds: sizes positive and within the bounds.
    fn proposals(&self, features: &FeatureVector) -> Result<String, String> {
        let current = &self.target.resources;
        let bounds_sets = [
            ("the default bounds", Bounds::default()),
            (
                "bounds around the current size",
                Bounds {
                    min_cpu_millicores: current.cpu_millicores * 3 / 4,
                    max_cpu_millicores: current.cpu_millicores * 3 / 2,
                    min_memory_bytes: current.memory_bytes * 3 / 4,
                    max_memory_bytes: current.memory_bytes * 3 / 2,
                },
            ),
            (
                "bounds equal to the current size",
                Bounds {
                    min_cpu_millicores: current.cpu_millicores,
                    max_cpu_millicores: current.cpu_millicores,
                    min_memory_bytes: current.memory_bytes,
                    max_memory_bytes: current.memory_bytes,
                },
            ),
        ];
        let mut count = 0;
        for class in [Class::ScaleDown, Class::Remain, Class::ScaleUp] {
            for (label, bounds) in &bounds_sets {
                let proposals = self
                    .plugin
                    .propose(&self.target, &classification(class), features, bounds)
                    .map_err(|e| format!("class {class:?}, {label}: {e}"))?;
                for p in &proposals {
                    p.check(current, bounds)
                        .map_err(|e| format!("class {class:?}, {label}: {}: {e}", p.action))?;
                }
                count += proposals.len();
            }
        }
        Ok(format!(
            "{count} proposals for 3 classes × {} sets of bounds, all within them",
            bounds_sets.len()
        ))
    }

    /// Three targets in one batch (raw samples, weekly summaries, no samples; then one
    /// proposal request per class) get what each gets alone: a plugin whose answer for a target
    /// depends on the others in its batch would decide differently depending on fleet size.
    fn batched(&self, batching: &Plugin) -> Result<String, String> {
        let raw = self.raw_series();
        let weekly = self.weekly_series(&raw);
        let targets: Vec<Target> = (1..=3)
            .map(|i| Target {
                id: format!("synthetic-{i}"),
                ..self.target.clone()
            })
            .collect();
        let series: [&[MetricSeries]; 3] = [&raw, &weekly, &[]];
        let inputs: Vec<FeaturesInput<'_>> = targets
            .iter()
            .zip(series)
            .map(|(target, series)| FeaturesInput { target, series })
            .collect();
        let batch = batching.features_batch(&self.window, &inputs);
        let mut features = Vec::new();
        for (input, answer) in inputs.iter().zip(&batch) {
            let alone = batching.features(input.target, &self.window, input.series);
            if format!("{answer:?}") != format!("{alone:?}") {
                return Err(format!(
                    "features() for {} differs in a batch from alone",
                    input.target.id
                ));
            }
            features.push(answer.as_ref().ok().cloned().unwrap_or_default());
        }
        let classes: Vec<Classification> = [Class::ScaleDown, Class::Remain, Class::ScaleUp]
            .into_iter()
            .map(classification)
            .collect();
        let inputs: Vec<ProposeInput<'_>> = targets
            .iter()
            .zip(&classes)
            .zip(&features)
            .map(|((target, classification), features)| ProposeInput {
                target,
                classification,
                features,
            })
            .collect();
        let batch = batching.propose_batch(&inputs, &Bounds::default());
        for (input, answer) in inputs.iter().zip(&batch) {
            let alone = batching.propose(
                input.target,
                input.classification,
                input.features,
                &Bounds::default(),
            );
            if format!("{answer:?}") != format!("{alone:?}") {
                return Err(format!(
                    "propose() for {} differs in a batch from alone",
                    input.target.id
                ));
            }
        }
        Ok("features() and propose() of 3 targets in one batch match 3 single calls".to_string())
    }

    fn deterministic(
        &self,
        raw: &[MetricSeries],
        weekly: &[MetricSeries],
        features: &FeatureVector,
    ) -> Result<String, String> {
        const REPEATS: usize = 3;
        for (label, series) in [("raw samples", raw), ("weekly summaries", weekly)] {
            let first = self.features(series).map_err(|e| e.to_string())?;
            for _ in 1..REPEATS {
                let again = self.features(series).map_err(|e| e.to_string())?;
                if again != first {
                    return Err(format!(
                        "features() from {label} changed between identical calls"
                    ));
                }
            }
        }
        let propose = || {
            self.plugin
                .propose(
                    &self.target,
                    &classification(Class::ScaleDown),
                    features,
                    &Bounds::default(),
                )
                .map_err(|e| e.to_string())
        };
        let first = propose()?;
        for _ in 1..REPEATS {
            if propose()? != first {
                return Err("propose() changed between identical calls".to_string());
            }
        }
        Ok(format!(
            "features() from both shapes and propose() identical over {REPEATS} calls each"
        ))
    }
}

fn classification(class: Class) -> Classification {
    Classification {
        class,
        confidence: 0.9,
        model: "validate".into(),
        model_version: "0".into(),
        explanation: Explanation {
            code: "synthetic".into(),
            rule: "synthetic".into(),
            evidence: vec![],
        },
    }
}

fn agree(
    raw: &Result<FeatureVector, PluginError>,
    weekly: &Result<FeatureVector, PluginError>,
) -> Result<String, String> {
    let (Ok(raw), Ok(weekly)) = (raw, weekly) else {
        return Err("needs both of the checks above to pass".to_string());
    };
    for (r, w) in raw.features.iter().zip(&weekly.features) {
        let same = match (r.value, w.value) {
            (Some(a), Some(b)) => (a - b).abs() <= AGREEMENT * a.abs().max(1.0),
            (None, None) => true,
            _ => false,
        };
        if !same {
            return Err(format!(
                "feature {:?} is {:?} from raw samples but {:?} from the same samples summarised per week",
                r.name, r.value, w.value
            ));
        }
    }
    Ok(format!(
        "{} features equal within {AGREEMENT:e}",
        raw.features.len()
    ))
}

fn no_values(features: &Result<FeatureVector, PluginError>) -> Result<String, String> {
    match features {
        Ok(features) => match features.features.iter().find(|f| f.value.is_some()) {
            Some(f) => Err(format!(
                "feature {:?} has value {:?} without any sample; missing data must be none",
                f.name, f.value
            )),
            None => Ok(format!(
                "{} features, every value none",
                features.features.len()
            )),
        },
        // Refusing to compute from nothing is allowed; trapping is not.
        Err(error) => match error.failure() {
            Some(Failure::Rejected { code, .. }) => Ok(format!("refused with code {code}")),
            _ => Err(error.to_string()),
        },
    }
}

/// Every call's usage against the limits; fails when any call hit one.
fn limits_check(limits: Limits, usage: &[CallUsage]) -> Check {
    let fuel = usage.iter().map(|u| u.fuel).max().unwrap_or(0);
    let memory = usage.iter().map(|u| u.memory_bytes).max().unwrap_or(0);
    let time = usage.iter().map(|u| u.elapsed).max().unwrap_or_default();
    let over = usage.iter().find_map(|u| match &u.trap {
        Some(
            failure @ (Failure::OutOfFuel { .. }
            | Failure::MemoryLimit { .. }
            | Failure::Timeout { .. }),
        ) => Some((u, failure)),
        _ => None,
    });
    let percent = |used: f64, limit: f64| 100.0 * used / limit;
    let fuel_text = if fuel < 1_000_000 {
        format!("{fuel} fuel")
    } else {
        format!("{:.1} M fuel", fuel as f64 / 1e6)
    };
    let summary = format!(
        "{} calls; at most {fuel_text} ({:.2} % of {} M), {:.1} MiB of memory ({:.0} % of {} MiB), {} ({:.1} % of {:?})",
        usage.len(),
        percent(fuel as f64, limits.fuel_per_call as f64),
        limits.fuel_per_call / 1_000_000,
        memory as f64 / (1 << 20) as f64,
        percent(memory as f64, limits.memory_bytes as f64),
        limits.memory_bytes >> 20,
        format_duration(time),
        percent(time.as_secs_f64(), limits.wall_clock.as_secs_f64()),
        limits.wall_clock,
    );
    Check::new(
        "within the sandbox limits",
        match over {
            Some((u, failure)) => Err(format!(
                "{} for target {:?} {failure}; {summary}",
                u.call, u.target
            )),
            None => Ok(summary),
        },
    )
}

fn format_duration(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{} µs", d.as_micros())
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1000.0)
    }
}
