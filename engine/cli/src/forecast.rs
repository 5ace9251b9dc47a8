//! `setpoint forecast`: the predictive fast loop's forecasts, made checkable.
//!
//! A backtest replays the forecaster over past origins of any series of a loop's metric
//! source, beside what followed and the two baselines every forecast is judged against
//! (persistence and seasonal naive); `--at` makes the forecasts from one instant and says
//! whether and when they reach a capacity threshold. Both go through the loop's own code: the
//! series comes from the loop's source in one range query, and
//! [`setpoint_forecast::backtest`] fits on the samples before each origin only and predicts as
//! a tick does. So a user can see how far to trust the loop before it acts on a forecast.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, SecondsFormat, TimeDelta, Timelike, Utc};
use clap::{Args, ValueEnum};
use comfy_table::{Cell, CellAlignment, Table, presets::UTF8_BORDERS_ONLY};
use serde::Serialize;
use setpoint_core::{MetricSpec, SharedClock};
use setpoint_forecast::{
    Backtest, BacktestPlan, BacktestRow, ForecastError, ForecastSettings, HorizonSummary, Series,
    backtest,
};
use setpoint_observe::RangeQuery;
use setpoint_runtime::{Config, LoopRuntime, Runtime};

/// The label that names a target in the loops' series (the observe stage's).
const TARGET_LABEL: &str = "instance";

const AFTER_HELP: &str = "\
Examples (the quickstart's simulated fleet, no configuration needed):
  setpoint forecast pg-spiky-01/cpu --from now-2d --to now
  setpoint forecast cpu --from now-1d --to now --horizon 15m,30m,60m -o json
  setpoint forecast pg-spiky-01/cpu --at now --threshold 0.8
Against Prometheus or VictoriaMetrics (a loop whose source is one):
  setpoint forecast 'sum by (instance) (rate(http_requests_total[5m]))' --loop api \\
    --from now-3d --to now --step 1m
A local file:
  setpoint forecast --file requests.csv --from now-3d --to now

SERIES is TARGET/METRIC (one of the loop plugin's metrics for one target, as the loop reads
it) or else a PromQL expression, sent as-is in one range query from --from minus the
forecaster's history (28 days) to --to plus the longest horizon; every series it returns is
forecast separately, named by its --by label (series without that label are skipped: aggregate
by it, e.g. `sum by (instance) (...)`). On the simulated source, a plugin metric's name (`cpu`)
answers for the whole fleet.

Origins are aligned on the --step grid; a forecast from an origin sees only the samples stamped
before it, refitted every --refit-every as the loop refits. A forecast's error is measured
against the sample at origin + horizon. The summary compares the model, persistence (the last
value) and seasonal naive (the same time a day before) on the same forecasts: a ratio below 1
means the model's mean absolute error is the smaller.

-o json prints one document:
  kind (backtest | capacity), source, loop, query, by, step_seconds, level, horizons_seconds;
  backtest: from, to, every_seconds, refit_every_seconds,
    series[]: name, error, rows[], summary[]
      rows[]: origin, horizon, horizon_seconds, at, forecast, lower, upper, actual,
              persistence, seasonal_naive, abs_error, abs_error_persistence,
              abs_error_seasonal_naive, reason
      summary[]: horizon, horizon_seconds, count, mae, mae_persistence, mae_seasonal_naive,
                 ratio_persistence, ratio_seasonal_naive, mape, mase, coverage
    overall[]: horizon, horizon_seconds, series, median_ratio_persistence,
               median_ratio_seasonal_naive, beat_persistence, beat_seasonal_naive
  capacity: at, threshold,
    series[]: name, error, last_at, last_value,
      forecasts[]: horizon, horizon_seconds, at, forecast, lower, upper, reason
      crossing: already_above, forecast_crosses_at, forecast_crosses_in_seconds,
                upper_crosses_at, upper_crosses_in_seconds, max_upper, within_seconds
  Times are RFC 3339 (UTC); a value that is not known is null. -o csv prints the rows only,
  one line each under a header line (the same fields).

Exit status: 0 every series was forecast; 1 an error (unknown loop, the source failed, a bad
file line, --from not before --to, a horizon past the forecaster's maximum), or a series with
no forecast at all (the rows say why: too short or too gappy to fit, no recent data);
2 bad usage.";

/// Arguments of `setpoint forecast`.
#[derive(Debug, Args)]
#[command(after_long_help = AFTER_HELP)]
pub struct ForecastArgs {
    /// The series: TARGET/METRIC (the loop plugin's metric for one target, e.g.
    /// `pg-reporting-01/cpu`), or a PromQL expression sent as-is to the loop's metric source,
    /// every series it returns forecast separately (e.g. `sum by (instance) (rate(x[5m]))`).
    #[arg(
        value_name = "SERIES",
        required_unless_present = "file",
        conflicts_with = "file"
    )]
    series: Option<String>,
    /// Read one series from a CSV file instead of the source: `timestamp,value` lines, the
    /// timestamp RFC 3339 or Unix seconds, an optional header line, an empty or NaN value a
    /// missing sample. E.g. `--file requests.csv`.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["loop_name", "by"])]
    file: Option<PathBuf>,
    /// First origin of the backtest: RFC 3339, `now`, or relative to now (the global --now,
    /// else the clock), e.g. `now-2d` or `2026-11-20T00:00:00Z`.
    #[arg(
        long,
        value_name = "TIME",
        value_parser = parse_time,
        required_unless_present = "at",
        conflicts_with = "at"
    )]
    from: Option<TimeArg>,
    /// Origins are before this time (same forms as --from), e.g. `now` or `now-1h`.
    #[arg(
        long,
        value_name = "TIME",
        value_parser = parse_time,
        required_unless_present = "at",
        conflicts_with = "at"
    )]
    to: Option<TimeArg>,
    /// Time between two origins of the backtest, e.g. `--every 15m`.
    #[arg(long, value_name = "DURATION", value_parser = parse_span, default_value = "30m")]
    every: TimeDelta,
    /// Horizons forecast from each origin, comma-separated, at most the forecaster's maximum
    /// (60m), e.g. `--horizon 5m,15m,60m`.
    #[arg(
        long = "horizon",
        value_name = "DURATIONS",
        value_parser = parse_span,
        value_delimiter = ',',
        default_value = "15m,60m"
    )]
    horizons: Vec<TimeDelta>,
    /// Sample spacing of the series, whole seconds (default: the loop's window step, 5m in
    /// the quickstart; with --file, the file's median spacing), e.g. `--step 1m`. A forecast
    /// needs a sample at most max(5m, step) before its origin.
    #[arg(long, value_name = "DURATION", value_parser = parse_span)]
    step: Option<TimeDelta>,
    /// How often the backtest refits the model on the history before the origin (the fast
    /// loop refits hourly), e.g. `--refit-every 6h` for a faster, less faithful run.
    #[arg(long, value_name = "DURATION", value_parser = parse_span, default_value = "1h")]
    refit_every: TimeDelta,
    /// Coverage the prediction intervals are calibrated for, in (0, 1), e.g. `--level 0.9`.
    #[arg(long, value_name = "LEVEL", value_parser = parse_level, default_value = "0.8")]
    level: f64,
    /// Capacity forecast instead of a backtest: forecast from this time (same forms as
    /// --from, e.g. `--at now`) and say whether and when the forecast and its upper bound
    /// reach --threshold within the longest horizon.
    #[arg(long, value_name = "TIME", value_parser = parse_time, requires = "threshold")]
    at: Option<TimeArg>,
    /// The capacity level --at checks the forecasts against, in the series' unit, e.g.
    /// `--threshold 1500` (requests per second) or `--threshold 0.8` (a ratio).
    #[arg(
        long,
        value_name = "VALUE",
        requires = "at",
        allow_negative_numbers = true
    )]
    threshold: Option<f64>,
    /// The loop whose metric source and plugin are used (default: the configuration's first
    /// loop; the quickstart's is `weekly-rightsizing`), e.g. `--loop api`.
    #[arg(long = "loop", value_name = "NAME")]
    loop_name: Option<String>,
    /// The label whose value names each series of a PromQL answer (default: the loop's
    /// target label, `instance`), e.g. `--by service`.
    #[arg(long, value_name = "LABEL")]
    by: Option<String>,
    /// Output format: table (for a terminal), json (one document) or csv (rows only).
    #[arg(long, short, value_enum, default_value_t)]
    output: Format,
}

/// How the result is printed.
#[derive(Debug, Clone, Copy, Default, ValueEnum)]
enum Format {
    /// Tables for a terminal.
    #[default]
    Table,
    /// One JSON document (fields in --help).
    Json,
    /// The rows only, with a header line.
    Csv,
}

/// A time on the command line: an instant, or an offset from the command's `now`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum TimeArg {
    At(DateTime<Utc>),
    Now(TimeDelta),
}

impl TimeArg {
    fn resolve(self, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
        match self {
            TimeArg::At(t) => Ok(t),
            TimeArg::Now(offset) => now
                .checked_add_signed(offset)
                .with_context(|| format!("now{offset:+} is out of range")),
        }
    }
}

fn parse_time(text: &str) -> Result<TimeArg, String> {
    let text = text.trim();
    if let Some(rest) = text.strip_prefix("now") {
        let rest = rest.trim();
        if rest.is_empty() {
            return Ok(TimeArg::Now(TimeDelta::zero()));
        }
        let (sign, span) = if let Some(span) = rest.strip_prefix('-') {
            (-1, span)
        } else if let Some(span) = rest.strip_prefix('+') {
            (1, span)
        } else {
            return Err(format!(
                "{text:?}: expected now, now-DURATION or now+DURATION (e.g. now-2d)"
            ));
        };
        return parse_span(span).map(|d| TimeArg::Now(if sign < 0 { -d } else { d }));
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| TimeArg::At(t.with_timezone(&Utc)))
        .map_err(|_| format!("{text:?}: expected RFC 3339 (2026-11-20T00:00:00Z), now or now-2d"))
}

/// A positive duration such as `30m`, `1h30m` or `2d`.
fn parse_span(text: &str) -> Result<TimeDelta, String> {
    let std = humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?}: expected a duration such as 30s, 15m, 1h or 2d: {e}"))?;
    let span = TimeDelta::from_std(std).map_err(|_| format!("{text:?}: too long"))?;
    if span.num_milliseconds() < 1 {
        return Err(format!("{text:?}: must be positive"));
    }
    Ok(span)
}

fn parse_level(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(level) if level > 0.0 && level < 1.0 => Ok(level),
        _ => Err(format!(
            "{text:?}: expected a number between 0 and 1, e.g. 0.8"
        )),
    }
}

/// What is forecast: a backtest over origins, or forecasts from one instant.
#[derive(Debug, Clone, Copy)]
enum Task {
    Backtest {
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
    Capacity {
        at: DateTime<Utc>,
        threshold: f64,
    },
}

/// The series to forecast and where they came from.
struct Input {
    source: String,
    loop_name: Option<String>,
    query: Option<String>,
    by: Option<String>,
    /// SERIES as given, when it is not the query itself (TARGET/METRIC).
    named: Option<String>,
    step: TimeDelta,
    series: Vec<(String, Series)>,
    /// Series the source returned but had to drop, with why.
    dropped: Vec<(String, String)>,
}

/// Runs `setpoint forecast`; `config` loads the configuration (not read for `--file`).
pub fn run(
    args: &ForecastArgs,
    config: impl FnOnce() -> Result<Config>,
    clock: &SharedClock,
) -> Result<ExitCode> {
    let now = clock.now();
    let mut settings = ForecastSettings {
        interval_level: args.level,
        ..ForecastSettings::default()
    };
    let mut horizons = args.horizons.clone();
    horizons.sort();
    horizons.dedup();
    let Some(&longest) = horizons.last() else {
        bail!("--horizon: give at least one horizon, e.g. --horizon 15m,60m");
    };
    if longest > settings.max_horizon {
        bail!(
            "--horizon {}: longer than the forecaster's maximum of {} (its intervals are calibrated up to it)",
            span(longest),
            span(settings.max_horizon)
        );
    }
    let task = match (args.at, args.threshold, args.from, args.to) {
        (Some(at), Some(threshold), _, _) => Task::Capacity {
            at: at.resolve(now)?,
            threshold,
        },
        (None, _, Some(from), Some(to)) => {
            let (from, to) = (from.resolve(now)?, to.resolve(now)?);
            if from >= to {
                bail!(
                    "--from {} is not before --to {}: no origin to backtest",
                    from.to_rfc3339_opts(SecondsFormat::Secs, true),
                    to.to_rfc3339_opts(SecondsFormat::Secs, true)
                );
            }
            Task::Backtest { from, to }
        }
        _ => bail!("give --from and --to for a backtest, or --at and --threshold"),
    };
    if args.threshold.is_some_and(|t| !t.is_finite()) {
        bail!("--threshold must be a finite number");
    }
    let input = match &args.file {
        Some(path) => read_file(path, args.step)?,
        None => read_source(args, config()?, |step| {
            query_range(task, &settings, longest, step)
        })?,
    };
    // A sample is never fresher than one step: the loop's 5-minute staleness rule would
    // refuse every forecast of a series sampled more sparsely.
    settings.max_staleness = settings.max_staleness.max(input.step);
    match task {
        Task::Backtest { from, to } => {
            let from = align_up(from, input.step);
            if from >= to {
                bail!(
                    "--from..--to holds no origin on the {} grid of the series",
                    span(input.step)
                );
            }
            let plan = BacktestPlan {
                from,
                to,
                every: args.every,
                horizons: horizons.clone(),
                refit_every: args.refit_every,
            };
            let results = run_backtests(&input.series, &plan, &settings)?;
            let report = BacktestReport::new(&input, &plan, args.level, results);
            match args.output {
                Format::Table => emit(report.table().as_bytes())?,
                Format::Json => {
                    emit(format!("{}\n", serde_json::to_string_pretty(&report)?).as_bytes())?
                }
                Format::Csv => emit(&report.csv()?)?,
            }
            Ok(report.exit_code())
        }
        Task::Capacity { at, threshold } => {
            // Every step up to the longest horizon, so a crossing is dated to the step.
            let mut grid = horizons.clone();
            let mut h = input.step;
            while h <= longest {
                grid.push(h);
                h += input.step;
            }
            grid.sort();
            grid.dedup();
            let plan = BacktestPlan {
                from: at,
                to: shift(at, TimeDelta::milliseconds(1)),
                every: input.step,
                horizons: grid,
                refit_every: input.step,
            };
            let results = run_backtests(&input.series, &plan, &settings)?;
            let report = CapacityReport::new(&input, at, threshold, &horizons, args.level, results);
            match args.output {
                Format::Table => emit(report.table().as_bytes())?,
                Format::Json => {
                    emit(format!("{}\n", serde_json::to_string_pretty(&report)?).as_bytes())?
                }
                Format::Csv => emit(&report.csv()?)?,
            }
            Ok(report.exit_code())
        }
    }
}

/// The range the source is asked for: the forecaster's whole history before the first
/// origin, to what followed the last one's longest horizon, on the grid of `step`.
fn query_range(
    task: Task,
    settings: &ForecastSettings,
    longest: TimeDelta,
    step: TimeDelta,
) -> (DateTime<Utc>, DateTime<Utc>) {
    let (first, end) = match task {
        // The end is exclusive on some sources: one more step keeps the last sample needed.
        Task::Backtest { from, to } => (from, shift(align_up(shift(to, longest), step), step)),
        Task::Capacity { at, .. } => (at, align_up(at, step)),
    };
    (align_down(shift(first, -settings.max_history), step), end)
}

/// `t + d`, saturating at the ends of time rather than overflowing.
fn shift(t: DateTime<Utc>, d: TimeDelta) -> DateTime<Utc> {
    t.checked_add_signed(d).unwrap_or(if d < TimeDelta::zero() {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

/// `t` rounded up onto the grid of `step` since the epoch.
fn align_up(t: DateTime<Utc>, step: TimeDelta) -> DateTime<Utc> {
    let step_ms = step.num_milliseconds().max(1);
    let ms = t.timestamp_millis();
    let aligned = ms.div_euclid(step_ms) * step_ms;
    let aligned = if aligned < ms {
        aligned + step_ms
    } else {
        aligned
    };
    DateTime::from_timestamp_millis(aligned).unwrap_or(t)
}

/// `t` rounded down onto the grid of `step` since the epoch.
fn align_down(t: DateTime<Utc>, step: TimeDelta) -> DateTime<Utc> {
    let step_ms = step.num_milliseconds().max(1);
    let ms = t.timestamp_millis();
    DateTime::from_timestamp_millis(ms.div_euclid(step_ms) * step_ms).unwrap_or(t)
}

/// What SERIES names.
enum SeriesSpec<'a> {
    /// A plugin metric for one target.
    Target {
        target: String,
        metric: &'a MetricSpec,
    },
    /// A PromQL expression, with the metric name the source is told (a plugin metric's when
    /// the expression is its query or its name, so a simulated source answers it).
    Promql { expr: String, metric: String },
}

fn parse_series<'a>(text: &str, metrics: &'a [MetricSpec]) -> SeriesSpec<'a> {
    let text = text.trim();
    if let Some((target, metric)) = text.rsplit_once('/') {
        let plain = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.:@".contains(c))
        };
        if plain(target)
            && let Some(metric) = metrics.iter().find(|m| m.name == metric.trim())
        {
            return SeriesSpec::Target {
                target: target.to_string(),
                metric,
            };
        }
    }
    let metric = metrics
        .iter()
        .find(|m| m.query.trim() == text || m.name == text)
        .map_or_else(|| text.to_string(), |m| m.name.clone());
    SeriesSpec::Promql {
        expr: text.to_string(),
        metric,
    }
}

/// Reads the series from the loop's metric source, in one range query.
fn read_source(
    args: &ForecastArgs,
    mut config: Config,
    range: impl FnOnce(TimeDelta) -> (DateTime<Utc>, DateTime<Utc>),
) -> Result<Input> {
    let Some(text) = args.series.as_deref() else {
        bail!("give SERIES (TARGET/METRIC or PromQL), or --file");
    };
    let known: Vec<String> = config.loops.iter().map(|l| l.name.0.clone()).collect();
    let name = match &args.loop_name {
        Some(name) => name.clone(),
        None => known
            .first()
            .cloned()
            .context("the configuration has no loop: name one with --loop")?,
    };
    if !known.contains(&name) {
        bail!("no loop named {name:?}; loops: {}", known.join(", "));
    }
    // Only this loop's plugin is loaded: the others' are not needed.
    config.loops.retain(|l| l.name.as_str() == name);
    let loop_step = config
        .loops
        .first()
        .and_then(|l| TimeDelta::from_std(l.window.step.0).ok());
    let step = match args.step.or(loop_step) {
        Some(step) if step.num_milliseconds() % 1000 == 0 && step.num_seconds() >= 1 => step,
        Some(step) => bail!("--step {}: a metric source takes whole seconds", span(step)),
        None => bail!("loop {name}: no window step; give --step"),
    };
    let runtime = Runtime::new(config)?;
    let Some(lp) = runtime.loops().first() else {
        bail!("no loop named {name:?}");
    };
    let by = args.by.clone().unwrap_or_else(|| TARGET_LABEL.to_string());
    let spec = parse_series(text, &lp.descriptor().metrics);
    let (start, end) = range(step);
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (query, result, divisor, wanted) = tokio.block_on(async {
        let (promql, metric, divisor, wanted) = match &spec {
            SeriesSpec::Target { target, metric } => {
                let (promql, divisor) = metric_query(lp, metric, target).await;
                let wanted = names_of(lp, target);
                (promql, metric.name.clone(), divisor, Some(wanted))
            }
            SeriesSpec::Promql { expr, metric } => (expr.clone(), metric.clone(), None, None),
        };
        let query = RangeQuery {
            metric,
            promql,
            technology: lp.descriptor().technology.clone(),
            start,
            end,
            step_seconds: u64::try_from(step.num_seconds()).unwrap_or(1),
            target_label: by.clone(),
            weekly: None,
        };
        let result = lp.source().query_range(&query).await;
        (query, result, divisor, wanted)
    });
    let source = lp.source().name().to_string();
    let result = result.map_err(|error| {
        let hint = match &spec {
            SeriesSpec::Promql { expr, .. } if expr.contains('/') => format!(
                " (TARGET/METRIC takes one of loop {name}'s plugin metrics: {})",
                metric_names(lp)
            ),
            _ => String::new(),
        };
        anyhow::anyhow!("{error}{hint}")
    })?;
    let mut series = Vec::new();
    let mut dropped = Vec::new();
    let mut seen = Vec::new();
    for (label, raw) in result.series {
        seen.push(label.clone());
        if wanted.as_ref().is_some_and(|w| !w.contains(&label)) {
            continue;
        }
        let mut points: Vec<(DateTime<Utc>, f64)> = raw
            .timestamps_ms
            .iter()
            .zip(&raw.values)
            .filter_map(|(&ms, &v)| DateTime::from_timestamp_millis(ms).map(|t| (t, v)))
            .collect();
        if let Some(divisor) = divisor {
            for (_, v) in &mut points {
                *v /= divisor;
            }
        }
        let name = match &spec {
            // One series per target: the first of its names that answered.
            SeriesSpec::Target { .. } if !series.is_empty() => continue,
            SeriesSpec::Target { target, .. } => target.clone(),
            SeriesSpec::Promql { .. } => label,
        };
        match Series::from_points(&points, step) {
            Ok(s) => series.push((name, padded(s, end))),
            Err(error) => dropped.push((name, error.to_string())),
        }
    }
    for (label, problem) in result.problems {
        if wanted.as_ref().is_none_or(|w| w.contains(&label)) {
            dropped.push((label, problem));
        }
    }
    if series.is_empty() && dropped.is_empty() {
        match &spec {
            SeriesSpec::Target { target, metric } => {
                seen.sort();
                let sample: Vec<&str> = seen.iter().take(8).map(String::as_str).collect();
                bail!(
                    "{source}: no {} series for target {target:?} from {} to {}{}",
                    metric.name,
                    start.to_rfc3339_opts(SecondsFormat::Secs, true),
                    end.to_rfc3339_opts(SecondsFormat::Secs, true),
                    if sample.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "; it has series for: {}{}",
                            sample.join(", "),
                            if seen.len() > sample.len() {
                                ", …"
                            } else {
                                ""
                            }
                        )
                    }
                )
            }
            SeriesSpec::Promql { expr, .. } => bail!(
                "{source}: no series with a {by:?} label for {expr:?} from {} to {} (aggregate by it, e.g. sum by ({by}) (…), or name another label with --by)",
                start.to_rfc3339_opts(SecondsFormat::Secs, true),
                end.to_rfc3339_opts(SecondsFormat::Secs, true)
            ),
        }
    }
    series.sort_by(|a, b| a.0.cmp(&b.0));
    dropped.sort();
    Ok(Input {
        source,
        loop_name: Some(name),
        named: (query.promql != text).then(|| text.to_string()),
        query: Some(query.promql),
        by: Some(by),
        step,
        series,
        dropped,
    })
}

fn metric_names(lp: &LoopRuntime) -> String {
    lp.descriptor()
        .metrics
        .iter()
        .map(|m| m.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The label values that name `target` in series: its id and its declared aliases.
fn names_of(lp: &LoopRuntime, target: &str) -> Vec<String> {
    let mut names = vec![target.to_string()];
    if let Some(declared) = lp.config().declared_targets().find(|t| t.id == target) {
        names.extend(declared.aliases.iter().cloned());
    }
    names
}

/// The query a loop reads `metric` of `target` with, and the capacity its raw values are
/// divided by (as the observe stage does for a metric measured against a capacity).
async fn metric_query(
    lp: &LoopRuntime,
    metric: &MetricSpec,
    target: &str,
) -> (String, Option<f64>) {
    let Some(attribute) = &metric.capacity else {
        return (metric.query.clone(), None);
    };
    let declared = lp
        .config()
        .declared_targets()
        .find(|t| t.id == target)
        .and_then(|t| t.labels_with_iops().get(attribute).cloned());
    let label = match declared {
        Some(value) => Some(value),
        None => lp
            .source()
            .discover(&lp.descriptor().technology)
            .await
            .ok()
            .and_then(|targets| targets.into_iter().find(|t| t.id == target))
            .and_then(|t| t.labels.get(attribute).cloned()),
    };
    let capacity = label
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|c| c.is_finite() && *c > 0.0);
    match (capacity, &metric.fallback_query) {
        (Some(c), _) => (metric.query.clone(), Some(c)),
        (None, Some(fallback)) => (fallback.clone(), None),
        (None, None) => (metric.query.clone(), None),
    }
}

/// Reads one series from a CSV file of `timestamp,value` records.
fn read_file(path: &Path, step: Option<TimeDelta>) -> Result<Input> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(std::io::BufReader::new(file));
    let mut points = Vec::new();
    let mut first = true;
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            anyhow::anyhow!("{}:{line}: {e}", path.display())
        })?;
        let line = record.position().map_or(0, |p| p.line());
        if record.iter().all(str::is_empty) {
            continue;
        }
        let header = std::mem::take(&mut first);
        if record.len() != 2 {
            bail!(
                "{}:{line}: expected 2 fields (timestamp,value), found {}",
                path.display(),
                record.len()
            );
        }
        let (t, v) = (&record[0], &record[1]);
        let time = parse_timestamp(t);
        let value = parse_value(v);
        match (time, value) {
            (Some(time), Some(value)) => points.push((time, value)),
            // A first line of names is a header.
            (None, None) if header => {}
            (None, _) => bail!(
                "{}:{line}: timestamp {t:?} is neither RFC 3339 nor Unix seconds",
                path.display()
            ),
            (_, None) => bail!("{}:{line}: value {v:?} is not a number", path.display()),
        }
    }
    if points.len() < 2 {
        bail!(
            "{}: {} sample(s); a series needs at least two",
            path.display(),
            points.len()
        );
    }
    let step = match step {
        Some(step) => step,
        None => median_spacing(&points).with_context(|| {
            format!(
                "{}: every sample has the same timestamp; give --step",
                path.display()
            )
        })?,
    };
    let series = Series::from_points(&points, step)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let name = path.file_stem().map_or_else(
        || path.display().to_string(),
        |s| s.to_string_lossy().to_string(),
    );
    Ok(Input {
        source: format!("file {}", path.display()),
        loop_name: None,
        query: None,
        by: None,
        named: None,
        step,
        series: vec![(name, series)],
        dropped: Vec::new(),
    })
}

fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    let seconds = text.parse::<f64>().ok().filter(|s| s.is_finite())?;
    let ms = (seconds * 1000.0).round();
    if ms.abs() > 8.0e15 {
        return None;
    }
    DateTime::from_timestamp_millis(ms as i64)
}

/// A sample value; empty and NaN are a missing sample (NaN).
fn parse_value(text: &str) -> Option<f64> {
    if text.is_empty() || text.eq_ignore_ascii_case("nan") {
        return Some(f64::NAN);
    }
    text.parse::<f64>().ok()
}

/// The median spacing of the points' distinct timestamps.
fn median_spacing(points: &[(DateTime<Utc>, f64)]) -> Option<TimeDelta> {
    let mut times: Vec<i64> = points.iter().map(|(t, _)| t.timestamp_millis()).collect();
    times.sort_unstable();
    times.dedup();
    let mut gaps: Vec<i64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    if gaps.is_empty() {
        return None;
    }
    gaps.sort_unstable();
    Some(TimeDelta::milliseconds(gaps[gaps.len() / 2]))
}

/// `series` extended with missing samples up to `end`: the source was asked up to there, so
/// a sample it did not return is missing (a fit then sees an outage at the end as a gap,
/// as the loop does), not outside the series.
fn padded(mut series: Series, end: DateTime<Utc>) -> Series {
    let step = series.step.num_milliseconds().max(1);
    let missing = (end.timestamp_millis() - series.end().timestamp_millis()).div_euclid(step);
    if let Ok(missing) = usize::try_from(missing) {
        series.values.extend(std::iter::repeat_n(f64::NAN, missing));
    }
    series
}

/// Runs the backtest of every series, on every core (each series is independent).
fn run_backtests(
    series: &[(String, Series)],
    plan: &BacktestPlan,
    settings: &ForecastSettings,
) -> Result<Vec<Result<Backtest, ForecastError>>> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, series.len().max(1));
    let mut results: Vec<Option<Result<Backtest, ForecastError>>> = vec![None; series.len()];
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|worker| {
                scope.spawn(move || {
                    series
                        .iter()
                        .enumerate()
                        .skip(worker)
                        .step_by(workers)
                        .map(|(i, (_, s))| (i, backtest(s, plan, settings)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for handle in handles {
            let done = handle
                .join()
                .map_err(|_| anyhow::anyhow!("a backtest worker failed (a bug)"))?;
            for (i, result) in done {
                results[i] = Some(result);
            }
        }
        Ok::<_, anyhow::Error>(())
    })?;
    results
        .into_iter()
        .map(|r| r.context("a series was not backtested (a bug)"))
        .collect()
}

// ---- the backtest report ----

/// One forecast beside what followed, as printed.
#[derive(Debug, Serialize)]
struct RowOut {
    #[serde(skip)]
    series: String,
    origin: DateTime<Utc>,
    horizon: String,
    horizon_seconds: i64,
    at: DateTime<Utc>,
    forecast: Option<f64>,
    lower: Option<f64>,
    upper: Option<f64>,
    actual: Option<f64>,
    persistence: Option<f64>,
    seasonal_naive: Option<f64>,
    abs_error: Option<f64>,
    abs_error_persistence: Option<f64>,
    abs_error_seasonal_naive: Option<f64>,
    reason: Option<String>,
}

impl RowOut {
    fn new(series: &str, row: &BacktestRow) -> Self {
        let error = |f: Option<f64>| match (f, row.actual) {
            (Some(f), Some(a)) => Some((a - f).abs()),
            _ => None,
        };
        let point = row.forecast.map(|f| f.point);
        Self {
            series: series.to_string(),
            origin: row.origin,
            horizon: span(row.horizon),
            horizon_seconds: row.horizon.num_seconds(),
            at: shift(row.origin, row.horizon),
            forecast: point,
            lower: row.forecast.map(|f| f.lower),
            upper: row.forecast.map(|f| f.upper),
            actual: row.actual,
            persistence: row.persistence,
            seasonal_naive: row.seasonal_naive,
            abs_error: error(point),
            abs_error_persistence: error(row.persistence),
            abs_error_seasonal_naive: error(row.seasonal_naive),
            reason: row.reason.as_ref().map(reason_text),
        }
    }

    fn outside(&self) -> bool {
        match (self.actual, self.lower, self.upper) {
            (Some(a), Some(l), Some(u)) => a < l || a > u,
            _ => false,
        }
    }
}

/// The errors at one horizon of one series.
#[derive(Debug, Serialize)]
struct SummaryOut {
    horizon: String,
    horizon_seconds: i64,
    count: u64,
    mae: Option<f64>,
    mae_persistence: Option<f64>,
    mae_seasonal_naive: Option<f64>,
    ratio_persistence: Option<f64>,
    ratio_seasonal_naive: Option<f64>,
    mape: Option<f64>,
    mase: Option<f64>,
    coverage: Option<f64>,
}

impl From<&HorizonSummary> for SummaryOut {
    fn from(s: &HorizonSummary) -> Self {
        Self {
            horizon: span(s.horizon),
            horizon_seconds: s.horizon.num_seconds(),
            count: s.count,
            mae: s.mae,
            mae_persistence: s.mae_persistence,
            mae_seasonal_naive: s.mae_seasonal_naive,
            ratio_persistence: s.ratio_persistence,
            ratio_seasonal_naive: s.ratio_seasonal_naive,
            mape: s.mape,
            mase: s.mase,
            coverage: s.coverage,
        }
    }
}

/// One series' backtest.
#[derive(Debug, Serialize)]
struct SeriesOut {
    name: String,
    /// Why the series has no forecast at all, if it has none.
    error: Option<String>,
    rows: Vec<RowOut>,
    summary: Vec<SummaryOut>,
}

/// One horizon over every series compared.
#[derive(Debug, Serialize)]
struct OverallOut {
    horizon: String,
    horizon_seconds: i64,
    /// Series with a ratio at this horizon.
    series: usize,
    median_ratio_persistence: Option<f64>,
    median_ratio_seasonal_naive: Option<f64>,
    /// Series whose model beat persistence (ratio below 1).
    beat_persistence: usize,
    /// Series whose model beat seasonal naive.
    beat_seasonal_naive: usize,
}

#[derive(Debug, Serialize)]
struct BacktestReport {
    kind: &'static str,
    source: String,
    #[serde(rename = "loop")]
    loop_name: Option<String>,
    query: Option<String>,
    by: Option<String>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    every_seconds: i64,
    step_seconds: i64,
    refit_every_seconds: i64,
    horizons_seconds: Vec<i64>,
    level: f64,
    series: Vec<SeriesOut>,
    overall: Vec<OverallOut>,
    #[serde(skip)]
    named: Option<String>,
    #[serde(skip)]
    horizons: Vec<TimeDelta>,
    #[serde(skip)]
    every: TimeDelta,
    #[serde(skip)]
    step: TimeDelta,
    #[serde(skip)]
    refit_every: TimeDelta,
}

/// Why a series that has no forecast has none: the reason its rows give most often.
fn no_forecast_reason<'a>(reasons: impl Iterator<Item = Option<&'a ForecastError>>) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for reason in reasons.flatten() {
        let text = reason_text(reason);
        match counts.iter_mut().find(|(t, _)| *t == text) {
            Some((_, n)) => *n += 1,
            None => counts.push((text, 1)),
        }
    }
    counts
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map_or_else(|| "no forecast".to_string(), |(t, _)| t)
}

impl BacktestReport {
    fn new(
        input: &Input,
        plan: &BacktestPlan,
        level: f64,
        results: Vec<Result<Backtest, ForecastError>>,
    ) -> Self {
        let mut series: Vec<SeriesOut> = input
            .series
            .iter()
            .zip(results)
            .map(|((name, _), result)| match result {
                Ok(b) => {
                    let error = b
                        .rows
                        .iter()
                        .all(|r| r.forecast.is_none())
                        .then(|| no_forecast_reason(b.rows.iter().map(|r| r.reason.as_ref())));
                    SeriesOut {
                        name: name.clone(),
                        error,
                        rows: b.rows.iter().map(|r| RowOut::new(name, r)).collect(),
                        summary: b.summary.iter().map(SummaryOut::from).collect(),
                    }
                }
                Err(e) => SeriesOut {
                    name: name.clone(),
                    error: Some(reason_text(&e)),
                    rows: Vec::new(),
                    summary: Vec::new(),
                },
            })
            .collect();
        series.extend(input.dropped.iter().map(|(name, why)| SeriesOut {
            name: name.clone(),
            error: Some(format!("dropped by the source: {why}")),
            rows: Vec::new(),
            summary: Vec::new(),
        }));
        let overall = plan
            .horizons
            .iter()
            .map(|&h| {
                let at = |pick: fn(&SummaryOut) -> Option<f64>| -> Vec<f64> {
                    series
                        .iter()
                        .flat_map(|s| &s.summary)
                        .filter(|s| s.horizon_seconds == h.num_seconds())
                        .filter_map(pick)
                        .collect()
                };
                let p = at(|s| s.ratio_persistence);
                let n = at(|s| s.ratio_seasonal_naive);
                OverallOut {
                    horizon: span(h),
                    horizon_seconds: h.num_seconds(),
                    series: p.len().max(n.len()),
                    beat_persistence: p.iter().filter(|r| **r < 1.0).count(),
                    beat_seasonal_naive: n.iter().filter(|r| **r < 1.0).count(),
                    median_ratio_persistence: median(p),
                    median_ratio_seasonal_naive: median(n),
                }
            })
            .collect();
        Self {
            kind: "backtest",
            source: input.source.clone(),
            loop_name: input.loop_name.clone(),
            query: input.query.clone(),
            by: input.by.clone(),
            from: plan.from,
            to: plan.to,
            every_seconds: plan.every.num_seconds(),
            step_seconds: input.step.num_seconds(),
            refit_every_seconds: plan.refit_every.num_seconds(),
            horizons_seconds: plan.horizons.iter().map(|h| h.num_seconds()).collect(),
            level,
            series,
            overall,
            named: input.named.clone(),
            horizons: plan.horizons.clone(),
            every: plan.every,
            step: input.step,
            refit_every: plan.refit_every,
        }
    }

    fn exit_code(&self) -> ExitCode {
        let failed: Vec<&SeriesOut> = self.series.iter().filter(|s| s.error.is_some()).collect();
        for s in &failed {
            eprintln!(
                "no forecast for {}: {}",
                s.name,
                s.error.as_deref().unwrap_or_default()
            );
        }
        if failed.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }

    fn table(&self) -> String {
        let mut out = String::new();
        out.push_str(&header_line(
            "backtest",
            &self.source,
            self.loop_name.as_deref(),
            self.named.as_deref(),
            self.query.as_deref(),
            self.by.as_deref(),
        ));
        out.push_str(&format!(
            "origins {} → {} UTC every {} · horizons {} · step {} · refit every {} · {:.0} % intervals\n",
            time(self.from),
            time(self.to),
            span(self.every),
            self.horizons.iter().map(|h| span(*h)).collect::<Vec<_>>().join(", "),
            span(self.step),
            span(self.refit_every),
            self.level * 100.0
        ));
        // One table per series: the name once, and a width that fits a terminal.
        for s in &self.series {
            if let Some(error) = &s.error {
                out.push_str(&format!("{}: no forecast: {error}\n", s.name));
                continue;
            }
            let mut rows = Table::new();
            rows.load_preset(UTF8_BORDERS_ONLY).set_header(vec![
                "ORIGIN", "H", "FORECAST", "INTERVAL", "ACTUAL", "PERSIST.", "S.NAIVE", "|ERR|",
                "|ERR| P.", "|ERR| SN", "NOTE",
            ]);
            for r in &s.rows {
                let note = match &r.reason {
                    Some(reason) => shorten(reason),
                    None if r.actual.is_none() => "not observed".to_string(),
                    None if r.outside() => "outside".to_string(),
                    None => String::new(),
                };
                rows.add_row(vec![
                    Cell::new(r.origin.format("%m-%d %H:%M")),
                    Cell::new(&r.horizon),
                    Cell::new(short(r.forecast)),
                    Cell::new(interval(r.lower, r.upper)),
                    Cell::new(short(r.actual)),
                    Cell::new(short(r.persistence)),
                    Cell::new(short(r.seasonal_naive)),
                    Cell::new(short(r.abs_error)),
                    Cell::new(short(r.abs_error_persistence)),
                    Cell::new(short(r.abs_error_seasonal_naive)),
                    Cell::new(note),
                ]);
            }
            right_align(&mut rows, 2..10);
            out.push_str(&format!(
                "{} · {} forecasts\n{rows}\n",
                s.name,
                s.rows.len()
            ));
        }
        if self.series.iter().any(|s| s.error.is_none()) {
            out.push_str(
            "|ERR|: the model's absolute error; P.: persistence's (the last value); SN: seasonal naive's (a day before); outside: the actual value fell outside the interval\n",
        );
        }
        let mut summary = Table::new();
        summary.load_preset(UTF8_BORDERS_ONLY).set_header(vec![
            "SERIES",
            "H",
            "N",
            "MAE",
            "MAE PERS.",
            "MAE S.NAIVE",
            "×PERS.",
            "×S.NAIVE",
            "MAPE",
            "MASE",
            "COVERAGE",
        ]);
        for s in self.series.iter().filter(|s| s.error.is_none()) {
            for h in &s.summary {
                summary.add_row(vec![
                    Cell::new(&s.name),
                    Cell::new(&h.horizon),
                    Cell::new(h.count),
                    Cell::new(short(h.mae)),
                    Cell::new(short(h.mae_persistence)),
                    Cell::new(short(h.mae_seasonal_naive)),
                    Cell::new(ratio(h.ratio_persistence)),
                    Cell::new(ratio(h.ratio_seasonal_naive)),
                    Cell::new(h.mape.map_or_else(dash, |m| format!("{:.1} %", m * 100.0))),
                    Cell::new(ratio(h.mase)),
                    Cell::new(
                        h.coverage
                            .map_or_else(dash, |c| format!("{c:.2} of {:.2}", self.level)),
                    ),
                ]);
            }
        }
        right_align(&mut summary, 2..11);
        if summary.row_count() > 0 {
            out.push_str("summary (model, persistence and seasonal naive on the same forecasts; × below 1: the model is better):\n");
            out.push_str(&format!("{summary}\n"));
        }
        if self.series.len() > 1 {
            for o in &self.overall {
                out.push_str(&format!(
                    "{} ahead, {} series: median ×persistence {} (model better on {}), median ×seasonal naive {} (better on {})\n",
                    o.horizon,
                    o.series,
                    ratio(o.median_ratio_persistence),
                    o.beat_persistence,
                    ratio(o.median_ratio_seasonal_naive),
                    o.beat_seasonal_naive
                ));
            }
        }
        out
    }

    fn csv(&self) -> Result<Vec<u8>> {
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer.write_record(ROW_FIELDS)?;
        for s in &self.series {
            for r in &s.rows {
                writer.write_record([
                    r.series.clone(),
                    r.origin.to_rfc3339_opts(SecondsFormat::Secs, true),
                    r.horizon.clone(),
                    r.horizon_seconds.to_string(),
                    r.at.to_rfc3339_opts(SecondsFormat::Secs, true),
                    field(r.forecast),
                    field(r.lower),
                    field(r.upper),
                    field(r.actual),
                    field(r.persistence),
                    field(r.seasonal_naive),
                    field(r.abs_error),
                    field(r.abs_error_persistence),
                    field(r.abs_error_seasonal_naive),
                    r.reason.clone().unwrap_or_default(),
                ])?;
            }
        }
        writer.into_inner().context("cannot write the CSV rows")
    }
}

const ROW_FIELDS: [&str; 15] = [
    "series",
    "origin",
    "horizon",
    "horizon_seconds",
    "at",
    "forecast",
    "lower",
    "upper",
    "actual",
    "persistence",
    "seasonal_naive",
    "abs_error",
    "abs_error_persistence",
    "abs_error_seasonal_naive",
    "reason",
];

// ---- the capacity report ----

/// One forecast from the report's instant.
#[derive(Debug, Serialize)]
struct CapacityForecast {
    horizon: String,
    horizon_seconds: i64,
    at: DateTime<Utc>,
    forecast: Option<f64>,
    lower: Option<f64>,
    upper: Option<f64>,
    reason: Option<String>,
}

/// Whether and when the forecasts reach the threshold within the longest horizon.
#[derive(Debug, Serialize)]
struct Crossing {
    /// The last observed value is at or above the threshold already.
    already_above: bool,
    forecast_crosses_at: Option<DateTime<Utc>>,
    forecast_crosses_in_seconds: Option<i64>,
    upper_crosses_at: Option<DateTime<Utc>>,
    upper_crosses_in_seconds: Option<i64>,
    /// The highest upper bound within the horizons.
    max_upper: Option<f64>,
    within_seconds: i64,
}

#[derive(Debug, Serialize)]
struct CapacitySeries {
    name: String,
    error: Option<String>,
    last_at: Option<DateTime<Utc>>,
    last_value: Option<f64>,
    forecasts: Vec<CapacityForecast>,
    crossing: Option<Crossing>,
}

#[derive(Debug, Serialize)]
struct CapacityReport {
    kind: &'static str,
    source: String,
    #[serde(rename = "loop")]
    loop_name: Option<String>,
    query: Option<String>,
    by: Option<String>,
    at: DateTime<Utc>,
    threshold: f64,
    step_seconds: i64,
    horizons_seconds: Vec<i64>,
    level: f64,
    series: Vec<CapacitySeries>,
    #[serde(skip)]
    named: Option<String>,
    #[serde(skip)]
    horizons: Vec<TimeDelta>,
    #[serde(skip)]
    step: TimeDelta,
}

impl CapacityReport {
    fn new(
        input: &Input,
        at: DateTime<Utc>,
        threshold: f64,
        horizons: &[TimeDelta],
        level: f64,
        results: Vec<Result<Backtest, ForecastError>>,
    ) -> Self {
        let longest = horizons.last().copied().unwrap_or_default();
        let mut series: Vec<CapacitySeries> = input
            .series
            .iter()
            .zip(results)
            .map(|((name, s), result)| {
                let last = s.last_before(at);
                let rows = match result {
                    Ok(b) => b.rows,
                    Err(e) => {
                        return CapacitySeries {
                            name: name.clone(),
                            error: Some(reason_text(&e)),
                            last_at: last.map(|(t, _)| t),
                            last_value: last.map(|(_, v)| v),
                            forecasts: Vec::new(),
                            crossing: None,
                        };
                    }
                };
                let error = rows
                    .iter()
                    .all(|r| r.forecast.is_none())
                    .then(|| no_forecast_reason(rows.iter().map(|r| r.reason.as_ref())));
                let forecasts = rows
                    .iter()
                    .filter(|r| horizons.contains(&r.horizon))
                    .map(|r| CapacityForecast {
                        horizon: span(r.horizon),
                        horizon_seconds: r.horizon.num_seconds(),
                        at: shift(r.origin, r.horizon),
                        forecast: r.forecast.map(|f| f.point),
                        lower: r.forecast.map(|f| f.lower),
                        upper: r.forecast.map(|f| f.upper),
                        reason: r.reason.as_ref().map(reason_text),
                    })
                    .collect();
                let crossing = error.is_none().then(|| {
                    let first = |pick: fn(&setpoint_forecast::Forecast) -> f64| {
                        rows.iter()
                            .filter_map(|r| r.forecast.map(|f| (r.horizon, pick(&f))))
                            .find(|(_, v)| *v >= threshold)
                            .map(|(h, _)| h)
                    };
                    let point = first(|f| f.point);
                    let upper = first(|f| f.upper);
                    Crossing {
                        already_above: last.is_some_and(|(_, v)| v >= threshold),
                        forecast_crosses_at: point.map(|h| shift(at, h)),
                        forecast_crosses_in_seconds: point.map(|h| h.num_seconds()),
                        upper_crosses_at: upper.map(|h| shift(at, h)),
                        upper_crosses_in_seconds: upper.map(|h| h.num_seconds()),
                        max_upper: rows
                            .iter()
                            .filter_map(|r| r.forecast.map(|f| f.upper))
                            .max_by(f64::total_cmp),
                        within_seconds: longest.num_seconds(),
                    }
                });
                CapacitySeries {
                    name: name.clone(),
                    error,
                    last_at: last.map(|(t, _)| t),
                    last_value: last.map(|(_, v)| v),
                    forecasts,
                    crossing,
                }
            })
            .collect();
        series.extend(input.dropped.iter().map(|(name, why)| CapacitySeries {
            name: name.clone(),
            error: Some(format!("dropped by the source: {why}")),
            last_at: None,
            last_value: None,
            forecasts: Vec::new(),
            crossing: None,
        }));
        Self {
            kind: "capacity",
            source: input.source.clone(),
            loop_name: input.loop_name.clone(),
            query: input.query.clone(),
            by: input.by.clone(),
            at,
            threshold,
            step_seconds: input.step.num_seconds(),
            horizons_seconds: horizons.iter().map(|h| h.num_seconds()).collect(),
            level,
            series,
            named: input.named.clone(),
            horizons: horizons.to_vec(),
            step: input.step,
        }
    }

    fn exit_code(&self) -> ExitCode {
        let failed: Vec<&CapacitySeries> =
            self.series.iter().filter(|s| s.error.is_some()).collect();
        for s in &failed {
            eprintln!(
                "no forecast for {}: {}",
                s.name,
                s.error.as_deref().unwrap_or_default()
            );
        }
        if failed.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }

    fn crossing_text(&self, s: &CapacitySeries) -> String {
        let threshold = plain(self.threshold);
        if let Some(error) = &s.error {
            return format!("no forecast: {error}");
        }
        let Some(c) = &s.crossing else {
            return dash();
        };
        if c.already_above {
            return format!(
                "already at or above {threshold}: last value {}",
                num(s.last_value)
            );
        }
        let within = span(TimeDelta::seconds(c.within_seconds));
        match (c.upper_crosses_in_seconds, c.forecast_crosses_in_seconds) {
            (Some(u), Some(p)) if u == p => {
                format!(
                    "forecast and upper bound cross {threshold} in {}",
                    minutes(p)
                )
            }
            (Some(u), Some(p)) => format!(
                "upper bound crosses {threshold} in {}, forecast in {}",
                minutes(u),
                minutes(p)
            ),
            (Some(u), None) => format!(
                "upper bound crosses {threshold} in {}; forecast stays below within {within}",
                minutes(u)
            ),
            (None, Some(p)) => format!("forecast crosses {threshold} in {}", minutes(p)),
            (None, None) => format!(
                "stays below {threshold} within {within} (highest upper bound {})",
                short(c.max_upper)
            ),
        }
    }

    fn table(&self) -> String {
        let mut out = String::new();
        out.push_str(&header_line(
            "capacity",
            &self.source,
            self.loop_name.as_deref(),
            self.named.as_deref(),
            self.query.as_deref(),
            self.by.as_deref(),
        ));
        out.push_str(&format!(
            "forecasts from {} UTC · threshold {} · step {} · {:.0} % intervals\n",
            time(self.at),
            plain(self.threshold),
            span(self.step),
            self.level * 100.0
        ));
        let mut table = Table::new();
        let mut header = vec!["SERIES".to_string(), "LAST".to_string()];
        header.extend(self.horizons.iter().map(|h| format!("+{}", span(*h))));
        header.push(format!("THRESHOLD {}", plain(self.threshold)));
        table.load_preset(UTF8_BORDERS_ONLY).set_header(header);
        for s in &self.series {
            let mut cells = vec![
                Cell::new(&s.name),
                Cell::new(match (s.last_value, s.last_at) {
                    (Some(v), Some(t)) if t.date_naive() == self.at.date_naive() => {
                        format!("{} at {}", short(Some(v)), t.format("%H:%M"))
                    }
                    (Some(v), Some(t)) => format!("{} at {}", short(Some(v)), time(t)),
                    _ => dash(),
                }),
            ];
            for h in &self.horizons {
                let text = s
                    .forecasts
                    .iter()
                    .find(|f| f.horizon_seconds == h.num_seconds())
                    .map_or_else(dash, |f| match f.forecast {
                        Some(point) => {
                            format!("{} {}", short(Some(point)), interval(f.lower, f.upper))
                        }
                        None => dash(),
                    });
                cells.push(Cell::new(text));
            }
            cells.push(Cell::new(self.crossing_text(s)));
            table.add_row(cells);
        }
        out.push_str(&format!("{table}\n"));
        out.push_str("each forecast: point [interval]; a crossing is the first step at which the value reaches the threshold\n");
        out
    }

    fn csv(&self) -> Result<Vec<u8>> {
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer.write_record([
            "series",
            "horizon",
            "horizon_seconds",
            "at",
            "forecast",
            "lower",
            "upper",
            "reason",
        ])?;
        for s in &self.series {
            for f in &s.forecasts {
                writer.write_record([
                    s.name.clone(),
                    f.horizon.clone(),
                    f.horizon_seconds.to_string(),
                    f.at.to_rfc3339_opts(SecondsFormat::Secs, true),
                    field(f.forecast),
                    field(f.lower),
                    field(f.upper),
                    f.reason.clone().unwrap_or_default(),
                ])?;
            }
        }
        writer.into_inner().context("cannot write the CSV rows")
    }
}

// ---- formatting ----

/// Writes the output; a reader that stops early (`| head`) is not an error.
fn emit(bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        result => result.context("cannot write to standard output"),
    }
}

/// A threshold as given (`0.8`, `1,500`), with thousands separators.
fn plain(value: f64) -> String {
    let text = value.to_string();
    let (sign, digits) = text
        .strip_prefix('-')
        .map_or(("", text.as_str()), |d| ("-", d));
    let (whole, fraction) = digits
        .split_once('.')
        .map_or((digits, None), |(w, f)| (w, Some(f)));
    let grouped = group(whole);
    match fraction {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

/// Digits with a comma between thousands.
fn group(whole: &str) -> String {
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    grouped
}

/// Why there is no forecast, with durations as people write them (the error's own text
/// prints them in ISO 8601).
fn reason_text(error: &ForecastError) -> String {
    match error {
        ForecastError::TooShort { have, need } => format!(
            "history too short to fit: {} observed, {} needed",
            span(*have),
            span(*need)
        ),
        ForecastError::TooGappy {
            missing_fraction,
            max_missing,
            longest_gap,
            max_gap,
        } => format!(
            "history too gappy to fit: {:.1} % missing (at most {:.1} %), longest gap {} (at most {})",
            missing_fraction * 100.0,
            max_missing * 100.0,
            span(*longest_gap),
            span(*max_gap)
        ),
        ForecastError::NoRecentData {
            last_seen,
            max_staleness,
            ..
        } => match last_seen {
            Some(t) => format!(
                "no recent data: the last sample ({}) is more than {} old",
                time(*t),
                span(*max_staleness)
            ),
            None => "no recent data: no sample shortly before the origin".to_string(),
        },
        other => other.to_string(),
    }
}

fn header_line(
    kind: &str,
    source: &str,
    loop_name: Option<&str>,
    named: Option<&str>,
    query: Option<&str>,
    by: Option<&str>,
) -> String {
    let mut line = format!("setpoint forecast · {kind} · source {source}");
    if let Some(name) = loop_name {
        line.push_str(&format!(" · loop {name}"));
    }
    if let Some(named) = named {
        line.push_str(&format!(" · series {named}"));
    }
    if let Some(query) = query {
        line.push_str(&format!(" · query {query}"));
    }
    if let Some(by) = by {
        line.push_str(&format!(" by {by}"));
    }
    line.push('\n');
    line
}

fn right_align(table: &mut Table, columns: std::ops::Range<usize>) {
    for i in columns {
        if let Some(column) = table.column_mut(i) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
}

fn dash() -> String {
    "—".to_string()
}

/// A value with four significant digits and thousands separators (`1,500`, `0.1234`).
fn num(value: Option<f64>) -> String {
    digits(value, 4)
}

/// A value with three significant digits, for the narrow columns of a table.
fn short(value: Option<f64>) -> String {
    digits(value, 3)
}

fn digits(value: Option<f64>, significant: i32) -> String {
    let Some(v) = value.filter(|v| v.is_finite()) else {
        return dash();
    };
    let magnitude = if v == 0.0 {
        0
    } else {
        v.abs().log10().floor() as i32
    };
    let decimals = (significant - 1 - magnitude).clamp(0, 6) as usize;
    let text = format!("{v:.decimals$}");
    let (sign, digits) = text
        .strip_prefix('-')
        .map_or(("", text.as_str()), |d| ("-", d));
    let (whole, fraction) = digits
        .split_once('.')
        .map_or((digits, None), |(w, f)| (w, Some(f)));
    let grouped = group(whole);
    match fraction {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

/// Longest reason shown in a table cell; -o json has the whole of it.
const NOTE_WIDTH: usize = 60;

fn shorten(text: &str) -> String {
    if text.chars().count() <= NOTE_WIDTH {
        text.to_string()
    } else {
        let cut: String = text.chars().take(NOTE_WIDTH - 1).collect();
        format!("{}…", cut.trim_end())
    }
}

fn ratio(value: Option<f64>) -> String {
    value
        .filter(|v| v.is_finite())
        .map_or_else(dash, |v| format!("{v:.2}"))
}

fn interval(lower: Option<f64>, upper: Option<f64>) -> String {
    match (lower, upper) {
        (Some(l), Some(u)) => format!("[{}, {}]", short(Some(l)), short(Some(u))),
        _ => dash(),
    }
}

/// A CSV field: the number in full precision, empty when unknown.
fn field(value: Option<f64>) -> String {
    value
        .filter(|v| v.is_finite())
        .map(|v| v.to_string())
        .unwrap_or_default()
}

fn time(t: DateTime<Utc>) -> String {
    if t.second() == 0 && t.nanosecond() == 0 {
        t.format("%Y-%m-%d %H:%M").to_string()
    } else {
        t.format("%Y-%m-%d %H:%M:%S").to_string()
    }
}

/// A duration as `15m`, `1h`, `1h30m`, `2d`.
fn span(d: TimeDelta) -> String {
    let mut ms = d.num_milliseconds();
    if ms == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    if ms < 0 {
        out.push('-');
        ms = -ms;
    }
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

/// Seconds from now as `35 min` or `1 h 5 min`.
fn minutes(seconds: i64) -> String {
    let minutes = (seconds + 59) / 60;
    if minutes < 120 {
        format!("{minutes} min")
    } else {
        format!("{} h {} min", minutes / 60, minutes % 60)
    }
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_absolute_and_relative_to_now() {
        assert_eq!(parse_time("now"), Ok(TimeArg::Now(TimeDelta::zero())));
        assert_eq!(parse_time("now-2d"), Ok(TimeArg::Now(-TimeDelta::days(2))));
        assert_eq!(
            parse_time("now+1h30m"),
            Ok(TimeArg::Now(TimeDelta::minutes(90)))
        );
        assert!(matches!(
            parse_time("2026-11-20T00:00:00Z"),
            Ok(TimeArg::At(_))
        ));
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("now*2").is_err());
        assert!(parse_span("0s").is_err());
        assert_eq!(parse_span("15m"), Ok(TimeDelta::minutes(15)));
    }

    #[test]
    fn numbers_durations_and_grids_print_for_people() {
        assert_eq!(num(Some(1500.0)), "1,500");
        assert_eq!(num(Some(-1_234_567.4)), "-1,234,567");
        assert_eq!(num(Some(0.12345)), "0.1235");
        assert_eq!(num(Some(12.345)), "12.35");
        assert_eq!(num(None), "—");
        assert_eq!(span(TimeDelta::minutes(60)), "1h");
        assert_eq!(span(TimeDelta::minutes(90)), "1h30m");
        assert_eq!(minutes(35 * 60), "35 min");
        let t = DateTime::from_timestamp(1_000_000_100, 0).unwrap_or_default();
        let step = TimeDelta::minutes(5);
        assert_eq!(align_up(t, step).timestamp() % 300, 0);
        assert!(align_up(t, step) >= t && align_down(t, step) <= t);
    }

    #[test]
    fn a_target_slash_metric_names_a_plugin_metric_else_it_is_promql() {
        let metric = |name: &str| MetricSpec {
            name: name.to_string(),
            query: format!("{name}_query"),
            aggregation: setpoint_core::Aggregation::Mean,
            unit: "ratio".to_string(),
            description: String::new(),
            capacity: None,
            fallback_query: None,
        };
        let metrics = [metric("cpu"), metric("memory")];
        assert!(matches!(
            parse_series("pg-01/cpu", &metrics),
            SeriesSpec::Target { ref target, metric } if target == "pg-01" && metric.name == "cpu"
        ));
        assert!(matches!(
            parse_series("a / b", &metrics),
            SeriesSpec::Promql { ref metric, .. } if metric == "a / b"
        ));
        assert!(matches!(
            parse_series("memory_query", &metrics),
            SeriesSpec::Promql { ref metric, .. } if metric == "memory"
        ));
    }
}
