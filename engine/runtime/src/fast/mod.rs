//! The predictive fast loop's tick: for every service, forecast its series at the loop's
//! horizon, score the present against the learned seasonality, build the policy input, and let
//! the team's policy and setpoint's guard decide.
//!
//! The stages, each a named unit with typed input and output:
//!
//! ```text
//! observe ─▶ forecast ─▶ detect ─▶ input ─▶ decide ─▶ act
//! (FastObservation) (SeasonalModel::predict) (::detect) (ControlInput) (ControlEngine) (caller)
//! ```
//!
//! [`FastLoop::tick`] runs forecast → decide on a [`FastObservation`] (what the observe stage
//! read: each series' recent samples and the settings the services are at) and returns a
//! [`TickReport`]; carrying out its `act` decisions is the caller's, which then tells the loop
//! with [`FastLoop::record_change`] so the next ticks see the cooldown. Models are fitted apart
//! from ticks ([`Forecasters::fit`], on a schedule, e.g. on a blocking thread) and swapped in
//! whole ([`FastLoop::install`]): a tick never waits for a fit.
//!
//! # Missing data
//!
//! A series without a model (too short or too gappy to fit, a fit that failed) or without
//! recent samples has no forecast: its fields are absent from the policy input (never zero),
//! the reason is in [`ServiceTick::forecast_problems`], and setpoint's guard holds any
//! scale-down that would need them. One series' failure touches no other.
//!
//! # Forecast errors
//!
//! The loop checks its own forecasts: per series, the first forecast of each fit bucket of
//! target times waits for its target, and the first tick whose observation holds the target's
//! sample records it, beside the seasonal-naive forecast of that instant (the sample one
//! season earlier), in the series' [`setpoint_forecast::ErrorTracker`]. Each
//! [`TickReport::forecast_errors`] carries the figures of the last one to two seasons; memory
//! is bounded per series (see docs/fast-loop.md, "Forecast error metrics").

mod act;
pub(crate) mod cycle;
mod errors;
pub mod simulated;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use setpoint_core::control::{
    Anomaly, ControlAction, ControlDecision, ControlInput, ControlLimits, ControlLoop, Cooldown,
    CurrentSettings, Flags, Interval, MetricIntervals, Metrics,
};
use setpoint_core::{KillSwitches, Mode};
use setpoint_decide::{ControlEngine, ControlPolicy, PolicyBundle, PolicyError};
use setpoint_forecast::{
    ErrorMetrics, ForecastError, ForecastSettings, SeasonalModel, Series, refit_all,
};

/// A metric the fast loop reads for every service (and, where it has regions, per region).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FastMetric {
    /// Requests per second.
    RequestRate,
    /// 99th percentile latency, milliseconds.
    LatencyP99Ms,
    /// Failed requests, percent.
    ErrorPercent,
    /// CPU use, percent.
    CpuPercent,
    /// Ready replicas: observed, never forecast (the loop changes it).
    Replicas,
}

impl FastMetric {
    /// Every metric, in the order of [`Metrics`]' fields.
    pub const ALL: [FastMetric; 5] = [
        FastMetric::RequestRate,
        FastMetric::LatencyP99Ms,
        FastMetric::ErrorPercent,
        FastMetric::CpuPercent,
        FastMetric::Replicas,
    ];

    /// Its name in the policy input and in configurations.
    pub fn name(self) -> &'static str {
        match self {
            FastMetric::RequestRate => "request_rate",
            FastMetric::LatencyP99Ms => "latency_p99_ms",
            FastMetric::ErrorPercent => "error_percent",
            FastMetric::CpuPercent => "cpu_percent",
            FastMetric::Replicas => "replicas",
        }
    }

    /// Whether the loop forecasts it: replicas are what the loop sets, not what it predicts.
    pub fn forecast(self) -> bool {
        !matches!(self, FastMetric::Replicas)
    }

    /// Whether it is scored for anomalies: load and latency, the two a seasonal model explains.
    pub fn scored(self) -> bool {
        matches!(self, FastMetric::RequestRate | FastMetric::LatencyP99Ms)
    }

    fn slot(self, metrics: &mut Metrics) -> &mut Option<f64> {
        match self {
            FastMetric::RequestRate => &mut metrics.request_rate,
            FastMetric::LatencyP99Ms => &mut metrics.latency_p99_ms,
            FastMetric::ErrorPercent => &mut metrics.error_percent,
            FastMetric::CpuPercent => &mut metrics.cpu_percent,
            FastMetric::Replicas => &mut metrics.replicas,
        }
    }

    /// Its value in `metrics`, if there is one.
    fn value(self, metrics: &Metrics) -> Option<f64> {
        match self {
            FastMetric::RequestRate => metrics.request_rate,
            FastMetric::LatencyP99Ms => metrics.latency_p99_ms,
            FastMetric::ErrorPercent => metrics.error_percent,
            FastMetric::CpuPercent => metrics.cpu_percent,
            FastMetric::Replicas => metrics.replicas,
        }
    }

    /// Its interval in `intervals`, if there is one.
    fn interval(self, intervals: &MetricIntervals) -> Option<Interval> {
        match self {
            FastMetric::RequestRate => intervals.request_rate,
            FastMetric::LatencyP99Ms => intervals.latency_p99_ms,
            FastMetric::ErrorPercent => intervals.error_percent,
            FastMetric::CpuPercent => intervals.cpu_percent,
            FastMetric::Replicas => intervals.replicas,
        }
    }

    fn interval_slot(self, intervals: &mut MetricIntervals) -> &mut Option<Interval> {
        match self {
            FastMetric::RequestRate => &mut intervals.request_rate,
            FastMetric::LatencyP99Ms => &mut intervals.latency_p99_ms,
            FastMetric::ErrorPercent => &mut intervals.error_percent,
            FastMetric::CpuPercent => &mut intervals.cpu_percent,
            FastMetric::Replicas => &mut intervals.replicas,
        }
    }
}

impl std::fmt::Display for FastMetric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One series of one service: a metric, for the whole service or one region.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    /// The service.
    pub service: String,
    /// The metric.
    pub metric: FastMetric,
    /// The region, for a per-region series.
    pub region: Option<String>,
}

impl SeriesKey {
    /// The service-level series of `metric`.
    pub fn service(service: impl Into<String>, metric: FastMetric) -> Self {
        Self {
            service: service.into(),
            metric,
            region: None,
        }
    }

    /// `region`'s series of `metric`.
    pub fn region(service: impl Into<String>, metric: FastMetric, region: &str) -> Self {
        Self {
            service: service.into(),
            metric,
            region: Some(region.to_string()),
        }
    }
}

impl std::fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.region {
            Some(region) => write!(f, "{}/{}[{region}]", self.service, self.metric),
            None => write!(f, "{}/{}", self.service, self.metric),
        }
    }
}

/// What the observe stage read for one tick.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FastObservation {
    /// The tick's time: samples at or after it are not used.
    pub at: DateTime<Utc>,
    /// Each series' recent samples (the loop's recent window), by key.
    pub series: BTreeMap<SeriesKey, Series>,
    /// What each service is set to (replicas, weights, throttle) as read back, by service.
    pub current: BTreeMap<String, CurrentSettings>,
}

impl FastObservation {
    /// The services observed: every service with a series or a current setting, in order.
    pub fn services(&self) -> Vec<String> {
        let mut out: Vec<String> = self.series.keys().map(|k| k.service.clone()).collect();
        out.extend(self.current.keys().cloned());
        out.sort();
        out.dedup();
        out
    }
}

/// The loop's settings that a tick needs.
#[derive(Debug, Clone, PartialEq)]
pub struct FastSettings {
    /// The loop's name (policies see it; its per-loop kill switch).
    pub loop_name: String,
    /// How far ahead the policy's forecast looks.
    pub horizon: TimeDelta,
    /// The forecaster's settings.
    pub forecast: ForecastSettings,
    /// The anomaly score from which a value is anomalous.
    pub anomaly_threshold: f64,
    /// How often models are refitted.
    pub refit_every: TimeDelta,
    /// `dry-run` or `enforce`, as the policy sees it.
    pub mode: Mode,
    /// Limits of a service not named in `limits`.
    pub default_limits: ControlLimits,
    /// Limits by service.
    pub limits: BTreeMap<String, ControlLimits>,
    /// Flags every service's policy input carries.
    pub flags: Flags,
}

impl FastSettings {
    /// The settings of a loop named `loop_name` with the defaults: a 15-minute horizon, the
    /// forecaster's defaults, the anomaly threshold of [`setpoint_forecast`], hourly refits,
    /// dry-run, 1 to 100 replicas.
    pub fn new(loop_name: impl Into<String>) -> Self {
        Self {
            loop_name: loop_name.into(),
            horizon: TimeDelta::minutes(15),
            forecast: ForecastSettings::default(),
            anomaly_threshold: setpoint_forecast::DEFAULT_ANOMALY_THRESHOLD,
            refit_every: TimeDelta::hours(1),
            mode: Mode::DryRun,
            default_limits: ControlLimits {
                min_replicas: 1,
                max_replicas: 100,
                capacity_per_replica: None,
                region: BTreeMap::new(),
            },
            limits: BTreeMap::new(),
            flags: Flags::default(),
        }
    }

    fn limits_of(&self, service: &str) -> &ControlLimits {
        self.limits.get(service).unwrap_or(&self.default_limits)
    }
}

/// The fitted models of a loop's series, and when they were fitted.
#[derive(Debug, Clone, Default)]
pub struct Forecasters {
    models: HashMap<SeriesKey, Result<Arc<SeasonalModel>, ForecastError>>,
    fitted_at: Option<DateTime<Utc>>,
}

impl Forecasters {
    /// Fits one model per series of `history` (the samples before `at`), on `threads` threads.
    /// A series that cannot be fitted keeps its error, which its forecasts then report.
    pub fn fit(
        history: &BTreeMap<SeriesKey, Series>,
        settings: &ForecastSettings,
        threads: usize,
        at: DateTime<Utc>,
    ) -> Self {
        let keys: Vec<&SeriesKey> = history.keys().filter(|k| k.metric.forecast()).collect();
        let series: Vec<&Series> = keys.iter().map(|k| &history[*k]).collect();
        let fitted = refit_all(&series, settings, threads);
        let models = keys
            .into_iter()
            .cloned()
            .zip(fitted.into_iter().map(|r| r.map(Arc::new)))
            .collect();
        Self {
            models,
            fitted_at: Some(at),
        }
    }

    /// When they were fitted (`None`: never).
    pub fn fitted_at(&self) -> Option<DateTime<Utc>> {
        self.fitted_at
    }

    /// The model of a series, or why there is none.
    pub fn model(&self, key: &SeriesKey) -> Result<&Arc<SeasonalModel>, ForecastProblem> {
        match self.models.get(key) {
            Some(Ok(model)) => Ok(model),
            Some(Err(e)) => Err(ForecastProblem::Fit(e.clone())),
            None => Err(ForecastProblem::NoModel),
        }
    }

    /// How many series have a model.
    pub fn fitted(&self) -> usize {
        self.models.values().filter(|m| m.is_ok()).count()
    }
}

/// Why a series has no forecast or anomaly score at a tick.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ForecastProblem {
    /// No model was fitted for it yet (not in the history of the last fit).
    #[error("no model yet: the series was not in the history of the last fit")]
    NoModel,
    /// Its fit failed.
    #[error("no model: {0}")]
    Fit(ForecastError),
    /// No recent samples were observed for it.
    #[error("no recent samples observed")]
    NotObserved,
    /// The model could not predict from the recent samples.
    #[error("{0}")]
    Predict(ForecastError),
}

/// One service's tick: the input its policy saw and the decision.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceTick {
    /// The policy input.
    pub input: ControlInput,
    /// The decision (team's policy, then setpoint's guard).
    pub decision: ControlDecision,
    /// Series without a forecast this tick, and why.
    pub forecast_problems: Vec<(SeriesKey, ForecastProblem)>,
    /// The anomaly scores of the scored series.
    pub anomalies: Vec<(SeriesKey, setpoint_forecast::Anomaly)>,
}

/// A tick's outcome for every service observed.
#[derive(Debug, Clone, PartialEq)]
pub struct TickReport {
    /// The tick's time.
    pub at: DateTime<Utc>,
    /// The tick's sequence number in the loop (from 1).
    pub tick: u64,
    /// When the models it used were fitted (`None`: none yet).
    pub models_fitted_at: Option<DateTime<Utc>>,
    /// By service, in order.
    pub services: Vec<ServiceTick>,
    /// The horizon its forecasts look ahead, which the forecast errors are measured at.
    pub horizon: TimeDelta,
    /// Each series' errors of the loop's forecasts over the last one to two seasons (see the
    /// module docs), by key; a series none of whose forecasts was checked yet is absent.
    pub forecast_errors: Vec<(SeriesKey, ErrorMetrics)>,
}

impl TickReport {
    /// [`TickReport::forecast_errors`] as the rows of a [`crate::CycleReport`].
    pub fn forecast_error_rows(&self) -> Vec<crate::ForecastErrorRow> {
        let horizon_seconds = u64::try_from(self.horizon.num_seconds()).unwrap_or(0);
        self.forecast_errors
            .iter()
            .map(|(key, m)| crate::ForecastErrorRow {
                service: key.service.clone(),
                metric: key.metric.name().to_string(),
                region: key.region.clone(),
                horizon_seconds,
                count: m.count,
                mae: m.mae,
                mape: m.mape,
                mase: m.mase,
                coverage: m.coverage,
            })
            .collect()
    }
}

/// Errors setting up a fast loop.
#[derive(Debug, thiserror::Error)]
pub enum FastError {
    /// The policy or the guard could not be prepared.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The forecaster's settings are not valid.
    #[error("forecast settings: {0}")]
    Settings(#[from] setpoint_forecast::SettingsError),
    /// The horizon is outside what the forecaster serves.
    #[error("horizon {horizon}: must be positive and at most the forecaster's max_horizon {max}")]
    Horizon {
        /// The horizon asked for.
        horizon: TimeDelta,
        /// The longest the forecaster serves.
        max: TimeDelta,
    },
}

/// The last change carried out on a service.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Change {
    at: DateTime<Utc>,
    kind: setpoint_core::control::ControlActionKind,
}

/// A fast loop between ticks: its policy engine, models and what it changed when.
#[derive(Debug)]
pub struct FastLoop {
    settings: FastSettings,
    engine: ControlEngine,
    forecasters: Forecasters,
    changes: BTreeMap<String, Change>,
    throttles: BTreeMap<String, setpoint_core::control::ThrottleLimit>,
    errors: errors::ForecastErrors,
    tick: u64,
}

impl FastLoop {
    /// A loop deciding with `policy`, guarded by `guard` (usually
    /// [`setpoint_decide::guard_bundle`]), under `kill_switches`.
    pub fn new(
        settings: FastSettings,
        policy: &ControlPolicy,
        guard: &PolicyBundle,
        kill_switches: &KillSwitches,
    ) -> Result<Self, FastError> {
        settings.forecast.validate()?;
        if settings.horizon <= TimeDelta::zero() || settings.horizon > settings.forecast.max_horizon
        {
            return Err(FastError::Horizon {
                horizon: settings.horizon,
                max: settings.forecast.max_horizon,
            });
        }
        Ok(Self {
            engine: ControlEngine::new(policy, guard, kill_switches)?,
            errors: errors::ForecastErrors::new(settings.horizon, &settings.forecast),
            settings,
            forecasters: Forecasters::default(),
            changes: BTreeMap::new(),
            throttles: BTreeMap::new(),
            tick: 0,
        })
    }

    /// The loop's settings.
    pub fn settings(&self) -> &FastSettings {
        &self.settings
    }

    /// Whether the models are due for a refit at `now` (never fitted, or fitted
    /// `refit_every` ago or more).
    pub fn refit_due(&self, now: DateTime<Utc>) -> bool {
        self.forecasters
            .fitted_at()
            .is_none_or(|at| now - at >= self.settings.refit_every)
    }

    /// Swaps in freshly fitted models.
    pub fn install(&mut self, forecasters: Forecasters) {
        self.forecasters = forecasters;
    }

    /// The models in use.
    pub fn forecasters(&self) -> &Forecasters {
        &self.forecasters
    }

    /// Records that `action` was carried out on `service` at `at`: the cooldown of the next
    /// ticks counts from it, and a throttle is remembered as the service's current one.
    pub fn record_change(&mut self, service: &str, action: &ControlAction, at: DateTime<Utc>) {
        match action {
            ControlAction::None => return,
            ControlAction::Throttle(limit) => {
                self.throttles.insert(service.to_string(), *limit);
            }
            _ => {}
        }
        self.changes.insert(
            service.to_string(),
            Change {
                at,
                kind: action.kind(),
            },
        );
    }

    /// Forecasts, scores and decides for every service of `observed`.
    pub fn tick(&mut self, observed: &FastObservation, kill_switches: &KillSwitches) -> TickReport {
        self.tick += 1;
        let mut services = Vec::new();
        for service in observed.services() {
            let (input, forecast_problems, anomalies) = self.input(&service, observed);
            let decision = self.engine.decide(&input, kill_switches);
            services.push(ServiceTick {
                input,
                decision,
                forecast_problems,
                anomalies,
            });
        }
        let inputs: Vec<&ControlInput> = services.iter().map(|s| &s.input).collect();
        self.errors.update(observed, &inputs);
        TickReport {
            at: observed.at,
            tick: self.tick,
            models_fitted_at: self.forecasters.fitted_at(),
            services,
            horizon: self.settings.horizon,
            forecast_errors: self.errors.snapshot(),
        }
    }

    /// The policy input of one service: the forecast and detect stages.
    #[allow(clippy::type_complexity)]
    fn input(
        &self,
        service: &str,
        observed: &FastObservation,
    ) -> (
        ControlInput,
        Vec<(SeriesKey, ForecastProblem)>,
        Vec<(SeriesKey, setpoint_forecast::Anomaly)>,
    ) {
        let at = observed.at;
        let horizon = self.settings.horizon;
        let mut now = Metrics::default();
        let mut forecast = Metrics::default();
        let mut intervals = MetricIntervals::default();
        let mut anomaly = BTreeMap::new();
        let mut problems = Vec::new();
        let mut scores = Vec::new();
        let keys = observed
            .series
            .range(SeriesKey::service(service, FastMetric::RequestRate)..)
            .take_while(|(k, _)| k.service == service);
        // Keys are ordered by metric, then region (None first).
        let mut expected_keys: Vec<SeriesKey> = Vec::new();
        for (key, recent) in keys {
            expected_keys.push(key.clone());
            let latest = recent.last_before(at);
            let (now_slot, forecast_slot, interval_slot) = match &key.region {
                None => (&mut now, &mut forecast, &mut intervals),
                Some(region) => {
                    let now_region = now.region.entry(region.clone()).or_default();
                    let forecast_region = forecast.region.entry(region.clone()).or_default();
                    let interval_region = intervals.region.entry(region.clone()).or_default();
                    (now_region, forecast_region, interval_region)
                }
            };
            if let Some((_, value)) = latest {
                *key.metric.slot(now_slot) = Some(value);
            }
            if !key.metric.forecast() {
                continue;
            }
            let model = match self.forecasters.model(key) {
                Ok(model) => model,
                Err(problem) => {
                    problems.push((key.clone(), problem));
                    continue;
                }
            };
            match model.predict(recent, at, horizon) {
                Ok(f) => {
                    *key.metric.slot(forecast_slot) = Some(f.point);
                    *key.metric.interval_slot(interval_slot) = Some(Interval {
                        lower: f.lower,
                        upper: f.upper,
                    });
                }
                Err(e) => problems.push((key.clone(), ForecastProblem::Predict(e))),
            }
            if key.metric.scored()
                && key.region.is_none()
                && let Some((t, value)) = latest
                && let Ok(a) = model.detect(recent, t, value, self.settings.anomaly_threshold)
            {
                anomaly.insert(
                    key.metric.name().to_string(),
                    Anomaly {
                        score: a.score,
                        anomalous: a.anomalous,
                        expected: Some(Interval {
                            lower: a.lower,
                            upper: a.upper,
                        }),
                    },
                );
                scores.push((key.clone(), a));
            }
        }
        for metric in FastMetric::ALL.into_iter().filter(|m| m.forecast()) {
            let key = SeriesKey::service(service, metric);
            if !expected_keys.contains(&key) {
                problems.push((key, ForecastProblem::NotObserved));
            }
        }
        let limits = self.settings.limits_of(service).clone();
        // Replicas needed at the horizon, when a replica's capacity is known: the policy's
        // most direct figure, with the request rate's interval carried over.
        if let Some(capacity) = limits.capacity_per_replica.filter(|c| *c > 0.0) {
            forecast.replicas = forecast.request_rate.map(|r| r / capacity);
            intervals.replicas = intervals.request_rate.map(|i| Interval {
                lower: i.lower / capacity,
                upper: i.upper / capacity,
            });
        }
        let mut current = observed.current.get(service).cloned().unwrap_or_default();
        if current.throttle.is_none() {
            current.throttle = self.throttles.get(service).copied();
        }
        let cooldown = self
            .changes
            .get(service)
            .map(|c| Cooldown::since(c.at, c.kind, at))
            .unwrap_or_default();
        let input = ControlInput {
            service: service.to_string(),
            loop_info: ControlLoop {
                name: self.settings.loop_name.clone(),
                tick: self.tick,
            },
            at,
            at_ns: at.timestamp_nanos_opt().unwrap_or(i64::MAX),
            now,
            forecast,
            forecast_interval: intervals,
            anomaly,
            current,
            limits,
            cooldown,
            flags: self.settings.flags.clone(),
            horizon_seconds: u64::try_from(horizon.num_seconds()).unwrap_or(0),
            mode: self.settings.mode,
        };
        (input, problems, scores)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::path::PathBuf;

    use chrono::TimeZone;
    use setpoint_core::control::{ActionMapping, RegoVersion};
    use setpoint_forecast::synthetic::Synthetic;

    use super::*;

    const STEP: TimeDelta = TimeDelta::minutes(5);

    fn key() -> SeriesKey {
        SeriesKey::service("checkout", FastMetric::RequestRate)
    }

    /// A loop with the example predictive policy, its request rate model fitted on the 14
    /// days of `series` before `at`.
    fn fitted_loop(series: &Series, at: DateTime<Utc>) -> FastLoop {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../policies/fast/examples/predictive");
        let policy = ControlPolicy::load(
            &[dir],
            serde_json::json!({}),
            RegoVersion::V1,
            "data.control.decision",
            ActionMapping::default(),
        )
        .unwrap();
        let guard = setpoint_decide::guard_bundle().unwrap();
        let settings = FastSettings::new("fast");
        let history = BTreeMap::from([(key(), series.slice(at - TimeDelta::days(14), at))]);
        let mut fast = FastLoop::new(settings, &policy, &guard, &KillSwitches::default()).unwrap();
        fast.install(Forecasters::fit(&history, &fast.settings().forecast, 1, at));
        assert_eq!(fast.forecasters().fitted(), 1);
        fast
    }

    /// What the loop observes at `at`: the recent window of `series`, if it still arrives.
    fn observe(series: Option<&Series>, at: DateTime<Utc>) -> FastObservation {
        FastObservation {
            at,
            series: series
                .map(|s| BTreeMap::from([(key(), s.slice(at - TimeDelta::hours(1), at))]))
                .unwrap_or_default(),
            current: BTreeMap::new(),
        }
    }

    /// A clean weekday series (1 % noise) from Monday 2026-11-02, and the end of its 14 days
    /// of history (a Monday too).
    fn clean_series(days: i64) -> (Series, DateTime<Utc>) {
        let start = Utc.with_ymd_and_hms(2026, 11, 2, 0, 0, 0).unwrap();
        let recipe = Synthetic {
            noise: 0.01,
            drift: 0.005,
            ..Synthetic::default()
        };
        let len = usize::try_from(days * 24 * 12).unwrap();
        (
            recipe.generate(start, STEP, len),
            start + TimeDelta::days(14),
        )
    }

    #[test]
    fn forecast_errors_appear_as_targets_arrive_and_beat_seasonal_naive() {
        let (series, fitted_at) = clean_series(16);
        let mut fast = fitted_loop(&series, fitted_at);
        let (max_pending, _) = fast.errors.bounds();
        let mut at = fitted_at;
        let mut last = None;
        while at <= fitted_at + TimeDelta::hours(30) {
            let report = fast.tick(&observe(Some(&series), at), &KillSwitches::default());
            // The first target is 15 min after the first tick; the tick after it checks it.
            if at <= fitted_at + TimeDelta::minutes(15) {
                assert!(report.forecast_errors.is_empty(), "at {at}: {report:?}");
            }
            if at == fitted_at + TimeDelta::minutes(20) {
                assert_eq!(report.forecast_errors.len(), 1);
                assert_eq!(report.forecast_errors[0].1.count, 1);
            }
            let (tracked, pending) = fast.errors.held();
            assert!(tracked <= 1 && pending <= max_pending, "at {at}");
            last = Some(report);
            at += STEP;
        }
        let report = last.unwrap();
        assert_eq!(report.horizon, TimeDelta::minutes(15));
        let [(seen, m)] = report.forecast_errors.as_slice() else {
            panic!("one series: {:?}", report.forecast_errors);
        };
        assert_eq!(*seen, key());
        // One forecast per 15 min over 30 h, less the one still in flight.
        assert_eq!(m.count, 30 * 4 - 1);
        eprintln!("30 h of 15-min forecasts of a clean series: {m:?}");
        let (mape, mase) = (m.mape.unwrap(), m.mase.unwrap());
        assert!(mape < 0.03, "{m:?}");
        assert!(mase.is_finite() && mase < 1.0, "{m:?}");
        assert!(m.coverage.is_some_and(|c| c > 0.5), "{m:?}");

        let rows = report.forecast_error_rows();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].series(), rows[0].horizon_seconds, rows[0].count),
            ("request_rate".to_string(), 900, m.count)
        );
    }

    #[test]
    fn a_series_that_stops_arriving_is_forgotten() {
        let (series, fitted_at) = clean_series(15);
        let mut fast = fitted_loop(&series, fitted_at);
        let stops = fitted_at + TimeDelta::hours(2);
        let mut at = fitted_at;
        while at < stops {
            fast.tick(&observe(Some(&series), at), &KillSwitches::default());
            at += STEP;
        }
        // One forecast waits (its target at 2:00; the ticks after it fell in its bucket).
        assert_eq!(fast.errors.held(), (1, 1));
        // Its waiting forecast expires, its figures stay for a day or two, then it is dropped.
        let quiet = |fast: &mut FastLoop, after: TimeDelta| {
            let report = fast.tick(&observe(None, stops + after), &KillSwitches::default());
            (fast.errors.held(), report.forecast_errors)
        };
        let (held, rows) = quiet(&mut fast, TimeDelta::hours(1));
        assert_eq!(held, (1, 0));
        // Targets from 0:15 to 1:45.
        assert_eq!(rows[0].1.count, 7);
        let (held, rows) = quiet(&mut fast, TimeDelta::hours(25));
        assert_eq!((held, rows[0].1.count), ((1, 0), 7));
        let (held, rows) = quiet(&mut fast, TimeDelta::hours(49));
        assert_eq!(held, (0, 0));
        assert!(rows.is_empty());
    }
}
