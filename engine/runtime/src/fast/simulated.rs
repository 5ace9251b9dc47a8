//! The fast loop driving the embedded simulated service fleet in simulated time: the same
//! forecast, detect and decide stages as against a real source, its `act` decisions applied
//! to the simulation, which feeds them back into load and latency. The quickstart's fast loop
//! and the closed-loop evaluation against the reactive baseline
//! ([`setpoint_observe::services::HpaBaseline`]) run it through
//! [`setpoint_observe::services::run_closed_loop`].
//!
//! Observation: every tick reads the fleet as it is at that instant; the last
//! [`ForecastSettings::recent_window`](setpoint_forecast::ForecastSettings) of ticks is the
//! recent window, and the first tick of every minute is appended to the fit history (which
//! starts with the fleet's simulated past at one sample a minute, the resolution of its
//! noise), so the models are refitted — inline, at the tick they fall due, since simulated
//! time does not pass during a fit — on what the loop itself saw.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, TimeDelta, Utc};
use setpoint_core::KillSwitches;
use setpoint_core::Verdict;
use setpoint_core::control::{
    ControlAction, ControlLimits, CurrentSettings, ReplicaBounds, ReplicaTarget, ThrottleLimit,
};
use setpoint_decide::{ControlPolicy, PolicyBundle};
use setpoint_forecast::Series;
use setpoint_observe::services::{
    Action, Controller, Event, EventKind, FleetObservation, PerRegion, Region, RegionObservation,
    ServiceObservation, ServiceSim, Throttle, Weights,
};

use super::{
    FastError, FastLoop, FastMetric, FastObservation, FastSettings, Forecasters, SeriesKey,
};

/// Regions of a simulated service, by the names policies see.
const REGIONS: [(Region, &str); 2] = [
    (Region::Primary, "primary"),
    (Region::Secondary, "secondary"),
];

/// The spacing of the fit history: the simulation's noise changes from minute to minute, so a
/// sample a minute sees all of it, as the ticks in between do.
const HISTORY_STEP: TimeDelta = TimeDelta::minutes(1);

/// A service-level or regional value of one observation.
fn value(seen: &ServiceObservation, metric: FastMetric, region: Option<Region>) -> f64 {
    match region {
        None => match metric {
            FastMetric::RequestRate => seen.offered_rps,
            FastMetric::LatencyP99Ms => seen.latency_p99_ms,
            FastMetric::ErrorPercent => seen.error_percent,
            FastMetric::CpuPercent => seen.cpu_percent,
            FastMetric::Replicas => f64::from(seen.replicas),
        },
        Some(region) => {
            let r = &seen.regions[region];
            match metric {
                FastMetric::RequestRate => r.offered_rps,
                FastMetric::LatencyP99Ms => r.latency_p99_ms,
                FastMetric::ErrorPercent => r.error_percent,
                FastMetric::CpuPercent => r.cpu_percent,
                FastMetric::Replicas => f64::from(r.replicas),
            }
        }
    }
}

/// The replicas a region may run: its lower and upper bound (an upper bound below the lower
/// one is the lower one).
fn bounds(region: &RegionObservation) -> (u32, u32) {
    (
        region.min_replicas,
        region.max_replicas.max(region.min_replicas),
    )
}

/// The series the loop reads of every service: each metric for the service, and load,
/// latency, utilisation and ready replicas per region (a region serves its share on its own
/// replicas, so a policy plans each one).
fn series_of(service: &str) -> Vec<(SeriesKey, Option<Region>)> {
    let mut out: Vec<(SeriesKey, Option<Region>)> = FastMetric::ALL
        .into_iter()
        .map(|m| (SeriesKey::service(service, m), None))
        .collect();
    for (region, name) in REGIONS {
        for metric in [
            FastMetric::RequestRate,
            FastMetric::LatencyP99Ms,
            FastMetric::CpuPercent,
            FastMetric::Replicas,
        ] {
            out.push((SeriesKey::region(service, metric, name), Some(region)));
        }
    }
    out
}

/// One series as the loop has seen it.
#[derive(Debug, Clone)]
struct Track {
    region: Option<Region>,
    /// `(time, value)` of the ticks within the recent window, oldest first.
    recent: VecDeque<(DateTime<Utc>, f64)>,
    /// One sample a minute: the simulated past, then what the ticks saw.
    history: Series,
}

/// One `act` decision carried out on the simulation, with what the loop saw when it decided.
#[derive(Debug, Clone, PartialEq)]
pub struct AppliedControl {
    /// When.
    pub at: DateTime<Utc>,
    /// The service.
    pub service: String,
    /// The action, as the guard let it through.
    pub action: ControlAction,
    /// Replicas the service was set to before.
    pub replicas_before: Option<u32>,
    /// The request rate observed.
    pub request_rate: Option<f64>,
    /// The upper bound of the request rate's forecast at the horizon.
    pub forecast_upper: Option<f64>,
    /// The horizon, in seconds.
    pub horizon_seconds: u64,
    /// What the replicas it had could serve at their per-replica capacity, in requests/s.
    pub capacity: Option<f64>,
    /// The primary region's p99 latency observed, in milliseconds.
    pub primary_latency_ms: Option<f64>,
}

impl std::fmt::Display for AppliedControl {
    /// One line: what was done and what the loop saw, e.g. "forecast p90 1,840 req/s in 15 min
    /// > capacity 1,500 req/s → replicas 4 → 6".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let minutes = self.horizon_seconds / 60;
        match &self.action {
            ControlAction::Replicas(target) => {
                let after = match target {
                    ReplicaTarget::Absolute(n) => n.to_string(),
                    ReplicaTarget::Factor(x) => format!("×{x}"),
                };
                let before = self
                    .replicas_before
                    .map_or_else(|| "?".to_string(), |n| n.to_string());
                let rate = self.forecast_upper.or(self.request_rate);
                let capacity = self
                    .capacity
                    .map_or_else(|| "?".to_string(), |c| format!("{c:.0}"));
                match (self.forecast_upper, rate) {
                    (Some(upper), _) => write!(
                        f,
                        "forecast upper {upper:.0} req/s in {minutes} min vs capacity {capacity} req/s → replicas {before} → {after}"
                    ),
                    (None, Some(now)) => write!(
                        f,
                        "no forecast; {now:.0} req/s now vs capacity {capacity} req/s → replicas {before} → {after}"
                    ),
                    (None, None) => write!(f, "replicas {before} → {after}"),
                }
            }
            ControlAction::TrafficShift { weights } => {
                let latency = self
                    .primary_latency_ms
                    .map_or_else(|| "?".to_string(), |l| format!("{l:.0}"));
                let split: Vec<String> =
                    weights.iter().map(|(k, v)| format!("{k} {v} %")).collect();
                write!(f, "primary p99 {latency} ms → traffic {}", split.join(", "))
            }
            ControlAction::Throttle(ThrottleLimit::Rate(rate)) => {
                write!(f, "throttle to {rate:.0} req/s")
            }
            ControlAction::Throttle(ThrottleLimit::Fraction(x)) => {
                write!(f, "throttle to {:.0} % of the traffic", x * 100.0)
            }
            ControlAction::None => f.write_str("nothing"),
        }
    }
}

/// How the loop met one scheduled event of the simulation (a surge, a degradation).
#[derive(Debug, Clone, PartialEq)]
pub struct EventResponse {
    /// The event.
    pub event: Event,
    /// The loop's first action on the event's service that answers it — more replicas for a
    /// surge, a traffic shift (or more replicas) for a degradation — from `lookahead` before
    /// the event until its end.
    pub first: Option<AppliedControl>,
}

impl EventResponse {
    /// How long before the event started the loop acted (negative: after it started).
    pub fn lead(&self) -> Option<TimeDelta> {
        self.first.as_ref().map(|a| self.event.start - a.at)
    }
}

/// The loop's response to every surge and degradation of `events` in its run.
pub fn responses(
    events: &[Event],
    log: &SimulatedRunLog,
    names: &[String],
    lookahead: TimeDelta,
) -> Vec<EventResponse> {
    events
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                EventKind::Surge { .. } | EventKind::Degradation { .. }
            )
        })
        .filter(|e| e.start >= log.from && e.start < log.to)
        .map(|event| {
            let name = names.get(event.service).cloned().unwrap_or_default();
            let answers = |a: &&AppliedControl| {
                a.service == name
                    && a.at >= event.start - lookahead
                    && a.at < event.end
                    && match &a.action {
                        ControlAction::Replicas(ReplicaTarget::Absolute(n)) => {
                            a.replicas_before.is_some_and(|b| *n > b)
                        }
                        ControlAction::Replicas(ReplicaTarget::Factor(x)) => *x > 1.0,
                        ControlAction::TrafficShift { .. } => {
                            matches!(event.kind, EventKind::Degradation { .. })
                        }
                        _ => false,
                    }
            };
            EventResponse {
                event: *event,
                first: log.applied.iter().find(answers).cloned(),
            }
        })
        .collect()
}

/// How the loop's anomaly flags compare with what the simulation did, event by event.
///
/// Flags of one service's scored series (of one metric, or of all) less than the episode gap
/// apart make one episode. An episode is explained when it overlaps any event of its service
/// (an injected anomaly, a surge or a degradation: each is a departure from the learned
/// seasonality), widened by the slack either way; precision is the share of episodes
/// explained. An injected anomaly is detected when a flag of its service falls within it (or
/// the slack after it); recall is the share of injected anomalies detected.
///
/// [`detection`] scores the request rate: the simulation injects its anomalies into demand,
/// and demand is the one series whose ground truth the events hold in full — the loop's
/// actions never move it. A service's latency also moves with the replicas and weights the
/// loop itself sets (a scale-down that doubles p99 is a departure from the learned latency
/// that no event explains), so its flags, scored with [`detection_of`], judge the loop's
/// control as much as the detector.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DetectionScore {
    /// The metric whose flags were scored (`None`: every scored series).
    pub metric: Option<FastMetric>,
    /// Episodes of flags.
    pub episodes: usize,
    /// Episodes that overlap an event of their service.
    pub explained: usize,
    /// Anomalies injected in the run's interval.
    pub injected: usize,
    /// Injected anomalies flagged.
    pub detected: usize,
}

impl DetectionScore {
    /// Explained episodes over episodes (1 when nothing was flagged).
    pub fn precision(&self) -> f64 {
        if self.episodes == 0 {
            1.0
        } else {
            self.explained as f64 / self.episodes as f64
        }
    }

    /// Detected anomalies over injected ones (1 when none was injected).
    pub fn recall(&self) -> f64 {
        if self.injected == 0 {
            1.0
        } else {
            self.detected as f64 / self.injected as f64
        }
    }
}

impl std::fmt::Display for DetectionScore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let on = self.metric.map_or("every scored series", FastMetric::name);
        write!(
            f,
            "anomaly detection on {on}: precision {:.2} ({} of {} flag episodes during an event), recall {:.2} ({} of {} injected anomalies flagged)",
            self.precision(),
            self.explained,
            self.episodes,
            self.recall(),
            self.detected,
            self.injected
        )
    }
}

/// Scores the anomalies `log` flagged on request rates against the `events` of the
/// simulation (see [`DetectionScore`]).
pub fn detection(
    events: &[Event],
    log: &SimulatedRunLog,
    names: &[String],
    gap: TimeDelta,
    slack: TimeDelta,
) -> DetectionScore {
    detection_of(
        Some(FastMetric::RequestRate),
        events,
        log,
        names,
        gap,
        slack,
    )
}

/// Scores the anomalies `log` flagged on `metric` (`None`: on every scored series) against
/// the `events` of the simulation (see [`DetectionScore`]).
pub fn detection_of(
    metric: Option<FastMetric>,
    events: &[Event],
    log: &SimulatedRunLog,
    names: &[String],
    gap: TimeDelta,
    slack: TimeDelta,
) -> DetectionScore {
    let index: BTreeMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let mut flags: BTreeMap<usize, Vec<DateTime<Utc>>> = BTreeMap::new();
    for (at, key) in &log.anomalies {
        if metric.is_some_and(|m| m != key.metric) {
            continue;
        }
        if let Some(&i) = index.get(key.service.as_str()) {
            flags.entry(i).or_default().push(*at);
        }
    }
    let mut score = DetectionScore {
        metric,
        ..DetectionScore::default()
    };
    let during = |service: usize, from: DateTime<Utc>, to: DateTime<Utc>| {
        events
            .iter()
            .any(|e| e.service == service && from <= e.end + slack && to >= e.start - slack)
    };
    for (&service, times) in &mut flags {
        times.sort();
        let mut episode: Option<(DateTime<Utc>, DateTime<Utc>)> = None;
        for &t in times.iter() {
            episode = match episode {
                Some((first, last)) if t - last <= gap => Some((first, t)),
                Some((first, last)) => {
                    score.episodes += 1;
                    score.explained += usize::from(during(service, first, last));
                    Some((t, t))
                }
                None => Some((t, t)),
            };
        }
        if let Some((first, last)) = episode {
            score.episodes += 1;
            score.explained += usize::from(during(service, first, last));
        }
    }
    for event in events
        .iter()
        .filter(|e| e.is_anomaly() && e.start >= log.from && e.start < log.to)
    {
        score.injected += 1;
        let flagged = flags.get(&event.service).is_some_and(|times| {
            times
                .iter()
                .any(|t| *t >= event.start && *t <= event.end + slack)
        });
        score.detected += usize::from(flagged);
    }
    score
}

/// What one run did, for the quickstart's summary and the evaluation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimulatedRunLog {
    /// The first tick's time.
    pub from: DateTime<Utc>,
    /// The last tick's time.
    pub to: DateTime<Utc>,
    /// Every `act` decision applied, in order.
    pub applied: Vec<AppliedControl>,
    /// Decisions by verdict.
    pub verdicts: BTreeMap<String, u64>,
    /// Ticks run.
    pub ticks: u64,
    /// Refits run.
    pub refits: u64,
    /// Anomalies flagged: when, the series.
    pub anomalies: Vec<(DateTime<Utc>, SeriesKey)>,
}

/// The fast loop as a [`Controller`] of the simulated service fleet.
#[derive(Debug)]
pub struct SimulatedFastLoop {
    inner: FastLoop,
    kill_switches: KillSwitches,
    names: Vec<String>,
    tracks: BTreeMap<SeriesKey, Track>,
    log: SimulatedRunLog,
    threads: usize,
}

impl SimulatedFastLoop {
    /// A loop over `sim`'s services deciding with `policy` under `guard`: its settings' limits
    /// are each service's total replica bounds and its capacity per replica — the rate one
    /// replica serves at the utilisation the fleet's HPAs target, the operating point the
    /// reactive baseline holds, so the two are compared at the same target load — and its
    /// history the fleet's simulated past before `sim.now()`, fitted now.
    pub fn new(
        sim: &ServiceSim,
        mut settings: FastSettings,
        policy: &ControlPolicy,
        guard: &PolicyBundle,
    ) -> Result<Self, FastError> {
        let names: Vec<String> = sim.services().iter().map(|s| s.name.clone()).collect();
        let target_load = sim.config().hpa.target_cpu_percent / 100.0;
        for spec in sim.services() {
            settings.limits.insert(
                spec.name.clone(),
                ControlLimits {
                    min_replicas: spec.min_replicas.primary + spec.min_replicas.secondary,
                    max_replicas: spec.max_replicas.primary + spec.max_replicas.secondary,
                    capacity_per_replica: Some(spec.saturation_rps() * target_load),
                    region: REGIONS
                        .iter()
                        .map(|&(region, name)| {
                            (
                                name.to_string(),
                                ReplicaBounds {
                                    min_replicas: spec.min_replicas[region],
                                    max_replicas: spec.max_replicas[region],
                                },
                            )
                        })
                        .collect(),
                },
            );
        }
        let now = sim.now();
        let from = (now - settings.forecast.max_history).max(sim.history_begins());
        let steps =
            usize::try_from((now - from).num_seconds() / HISTORY_STEP.num_seconds()).unwrap_or(0);
        let start = now - HISTORY_STEP * i32::try_from(steps).unwrap_or(0);
        let mut tracks: BTreeMap<SeriesKey, Track> = BTreeMap::new();
        for name in &names {
            for (key, region) in series_of(name) {
                tracks.insert(
                    key,
                    Track {
                        region,
                        recent: VecDeque::new(),
                        history: Series::new(start, HISTORY_STEP, Vec::with_capacity(steps)),
                    },
                );
            }
        }
        for i in 0..steps {
            let t = start + HISTORY_STEP * i32::try_from(i).unwrap_or(0);
            let seen = sim.observe(t).ok();
            for (key, track) in &mut tracks {
                let v = seen
                    .as_ref()
                    .and_then(|s| {
                        sim.service_index(&key.service)
                            .and_then(|i| s.services.get(i))
                    })
                    .map_or(f64::NAN, |s| value(s, key.metric, track.region));
                track.history.values.push(v);
            }
        }
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut inner = FastLoop::new(settings, policy, guard, &KillSwitches::default())?;
        inner.install(Self::fit(&tracks, inner.settings(), threads, now));
        Ok(Self {
            inner,
            kill_switches: KillSwitches::default(),
            names,
            tracks,
            log: SimulatedRunLog {
                refits: 1,
                ..SimulatedRunLog::default()
            },
            threads,
        })
    }

    fn fit(
        tracks: &BTreeMap<SeriesKey, Track>,
        settings: &FastSettings,
        threads: usize,
        now: DateTime<Utc>,
    ) -> Forecasters {
        let history: BTreeMap<SeriesKey, Series> = tracks
            .iter()
            .map(|(k, t)| (k.clone(), t.history.clone()))
            .collect();
        Forecasters::fit(&history, &settings.forecast, threads, now)
    }

    /// The kill switches the next ticks decide under.
    pub fn set_kill_switches(&mut self, kill_switches: KillSwitches) {
        self.kill_switches = kill_switches;
    }

    /// What the run did so far.
    pub fn log(&self) -> &SimulatedRunLog {
        &self.log
    }

    /// The services' names, by index in the simulation.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The loop.
    pub fn fast_loop(&self) -> &FastLoop {
        &self.inner
    }

    /// Takes in one observation: recent windows and fit-step buckets.
    fn observe(&mut self, now: DateTime<Utc>, observed: &FleetObservation) -> FastObservation {
        let settings = self.inner.settings();
        let window = settings.forecast.recent_window;
        let tick_step = self.tick_step(now);
        let mut out = FastObservation {
            at: now + TimeDelta::milliseconds(1),
            ..FastObservation::default()
        };
        for (key, track) in &mut self.tracks {
            let Some(index) = self.names.iter().position(|n| *n == key.service) else {
                continue;
            };
            let Some(seen) = observed.services.get(index) else {
                continue;
            };
            let v = value(seen, key.metric, track.region);
            track.recent.push_back((now, v));
            while track
                .recent
                .front()
                .is_some_and(|(t, _)| now - *t >= window)
            {
                track.recent.pop_front();
            }
            // The first tick of each minute is that minute's sample; a minute without a
            // tick stays missing.
            while track.history.end() <= now {
                let slot = track.history.end();
                let value = if now - slot < HISTORY_STEP {
                    v
                } else {
                    f64::NAN
                };
                track.history.values.push(value);
            }
            let points: Vec<(DateTime<Utc>, f64)> = track.recent.iter().copied().collect();
            if let Ok(series) = Series::from_points(&points, tick_step) {
                out.series.insert(key.clone(), series);
            }
        }
        for (index, name) in self.names.iter().enumerate() {
            let Some(seen) = observed.services.get(index) else {
                continue;
            };
            let mut weights: BTreeMap<String, u32> = BTreeMap::new();
            let primary = (seen.regions.primary.weight * 100.0)
                .round()
                .clamp(0.0, 100.0) as u32;
            weights.insert("primary".into(), primary);
            weights.insert("secondary".into(), 100 - primary);
            out.current.insert(
                name.clone(),
                CurrentSettings {
                    replicas: Some(seen.replicas_desired),
                    weights,
                    throttle: seen.throttle.map(|t| match t {
                        Throttle::MaxRate(rate) => ThrottleLimit::Rate(rate),
                        Throttle::Shed(shed) => ThrottleLimit::Fraction(1.0 - shed),
                    }),
                },
            );
        }
        out
    }

    /// The spacing of ticks, from the last two seen (15 s until there are two).
    fn tick_step(&self, now: DateTime<Utc>) -> TimeDelta {
        self.tracks
            .values()
            .next()
            .and_then(|t| t.recent.back().map(|(last, _)| now - *last))
            .filter(|d| *d > TimeDelta::zero())
            .unwrap_or(TimeDelta::seconds(15))
    }

    /// A service's `total` replicas split between its regions by the work each will carry —
    /// the primary's traffic share `w`, and the other's, each times the CPU a request costs
    /// there now — so that no region is busier per replica than it must be: each region
    /// starts at its lower bound and every further replica goes where the work per replica is
    /// highest (the largest-quotient rule), within each region's upper bound. A degraded
    /// region spends more on each request, and gets the replicas for it, as its own HPA would
    /// give it. Rounding each share on its own would leave the busier region a replica short
    /// at small counts, and there a replica is a large part of its capacity.
    fn split(index: usize, total: u32, w: f64, seen: &ServiceObservation, out: &mut Vec<Action>) {
        let w = w.clamp(0.0, 1.0);
        let cost = |r: Region| {
            let region = &seen.regions[r];
            (region.served_rps > 0.0 && region.replicas > 0)
                .then(|| region.cpu_percent * f64::from(region.replicas) / region.served_rps)
                .filter(|c| c.is_finite() && *c > 0.0)
        };
        // A region without traffic now costs what the other does (nothing says otherwise).
        let (cost_primary, cost_secondary) = match (cost(Region::Primary), cost(Region::Secondary))
        {
            (Some(p), Some(s)) => (p, s),
            (Some(c), None) | (None, Some(c)) => (c, c),
            (None, None) => (1.0, 1.0),
        };
        let share = PerRegion {
            primary: w * cost_primary,
            secondary: (1.0 - w) * cost_secondary,
        };
        let bound = |r: Region| bounds(&seen.regions[r]);
        let mut replicas = PerRegion {
            primary: bound(Region::Primary).0,
            secondary: bound(Region::Secondary).0,
        };
        let mut left = total.saturating_sub(replicas.primary + replicas.secondary);
        while left > 0 {
            let busiest = Region::ALL
                .into_iter()
                .filter(|&r| replicas[r] < bound(r).1)
                .max_by(|&a, &b| {
                    let per = |r: Region| match replicas[r] {
                        0 if share[r] > 0.0 => f64::INFINITY,
                        0 => 0.0,
                        n => share[r] / f64::from(n),
                    };
                    per(a).total_cmp(&per(b))
                });
            let Some(region) = busiest else { break };
            replicas[region] += 1;
            left -= 1;
        }
        for region in Region::ALL {
            out.push(Action::SetReplicas {
                service: index,
                region,
                replicas: replicas[region],
            });
        }
    }

    /// The simulation's actions carrying out `action` on service `index`.
    fn actions(
        index: usize,
        action: &ControlAction,
        seen: &ServiceObservation,
        out: &mut Vec<Action>,
    ) {
        match action {
            ControlAction::None => {}
            ControlAction::Replicas(target) => {
                let total = match target {
                    ReplicaTarget::Absolute(n) => *n,
                    ReplicaTarget::Factor(f) => {
                        (f64::from(seen.replicas_desired) * f).ceil().max(0.0) as u32
                    }
                };
                Self::split(index, total, seen.regions.primary.weight, seen, out);
            }
            ControlAction::TrafficShift { weights } => {
                let get = |name: &str| f64::from(weights.get(name).copied().unwrap_or(0));
                let (primary, secondary) = (get("primary"), get("secondary"));
                out.push(Action::SetWeights {
                    service: index,
                    weights: Weights { primary, secondary },
                });
                // The replicas follow the traffic: a region that gains traffic grows with its
                // share (the replicas it runs, times the new share over the old), within its
                // bounds; the one that loses traffic keeps its replicas until the next replica
                // decision — removed at once, they would leave it short while the other's new
                // ones start.
                if primary + secondary > 0.0 {
                    let share = PerRegion {
                        primary: primary / (primary + secondary),
                        secondary: secondary / (primary + secondary),
                    };
                    for region in Region::ALL {
                        let now = &seen.regions[region];
                        // A region without traffic yet gets its share of the service's replicas.
                        let grown = if share[region] <= now.weight {
                            now.replicas_desired
                        } else if now.weight > 0.0 {
                            (f64::from(now.replicas_desired) * share[region] / now.weight).ceil()
                                as u32
                        } else {
                            (f64::from(seen.replicas_desired) * share[region]).ceil() as u32
                        };
                        out.push(Action::SetReplicas {
                            service: index,
                            region,
                            replicas: {
                                let (min, max) = bounds(now);
                                grown.clamp(min, max)
                            },
                        });
                    }
                }
            }
            ControlAction::Throttle(limit) => out.push(Action::SetThrottle {
                service: index,
                throttle: Some(match limit {
                    ThrottleLimit::Rate(rate) => Throttle::MaxRate(*rate),
                    ThrottleLimit::Fraction(f) => Throttle::Shed((1.0 - f).clamp(0.0, 1.0)),
                }),
            }),
        }
    }
}

impl Controller for SimulatedFastLoop {
    fn name(&self) -> &str {
        "setpoint fast loop"
    }

    fn tick(&mut self, now: DateTime<Utc>, observed: &FleetObservation, actions: &mut Vec<Action>) {
        if self.log.ticks == 0 {
            self.log.from = now;
        }
        self.log.to = now;
        let observation = self.observe(now, observed);
        if self.inner.refit_due(now) {
            let fitted = Self::fit(&self.tracks, self.inner.settings(), self.threads, now);
            self.inner.install(fitted);
            self.log.refits += 1;
        }
        let report = self.inner.tick(&observation, &self.kill_switches);
        self.log.ticks += 1;
        for service in &report.services {
            let decision = &service.decision;
            *self
                .log
                .verdicts
                .entry(decision.verdict.as_str().to_string())
                .or_default() += 1;
            for (key, anomaly) in &service.anomalies {
                if anomaly.anomalous {
                    self.log.anomalies.push((now, key.clone()));
                }
            }
            if decision.verdict != Verdict::Act || decision.action == ControlAction::None {
                continue;
            }
            let Some(index) = self.names.iter().position(|n| *n == decision.service) else {
                continue;
            };
            let Some(seen) = observed.services.get(index) else {
                continue;
            };
            Self::actions(index, &decision.action, seen, actions);
            self.inner
                .record_change(&decision.service, &decision.action, now);
            let input = &service.input;
            self.log.applied.push(AppliedControl {
                at: now,
                service: decision.service.clone(),
                action: decision.action.clone(),
                replicas_before: input.current.replicas,
                request_rate: input.now.request_rate,
                forecast_upper: input.forecast_interval.request_rate.map(|i| i.upper),
                horizon_seconds: input.horizon_seconds,
                capacity: input
                    .limits
                    .capacity_per_replica
                    .zip(input.current.replicas)
                    .map(|(c, r)| c * f64::from(r)),
                primary_latency_ms: input
                    .now
                    .region
                    .get("primary")
                    .and_then(|m| m.latency_p99_ms),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use chrono::TimeZone;
    use setpoint_observe::services::AnomalyKind;

    use super::*;

    #[test]
    fn flags_are_grouped_into_episodes_and_scored_against_the_events() {
        let t0 = Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap();
        let at = |m: i64| t0 + TimeDelta::minutes(m);
        let names = vec!["a".to_string(), "b".to_string()];
        let events = [
            Event {
                service: 0,
                kind: EventKind::Anomaly {
                    kind: AnomalyKind::Spike,
                    factor: 2.0,
                },
                start: at(10),
                end: at(13),
            },
            Event {
                service: 1,
                kind: EventKind::Anomaly {
                    kind: AnomalyKind::Dip,
                    factor: 0.5,
                },
                start: at(30),
                end: at(32),
            },
        ];
        let flag =
            |m: i64, service: &str| (at(m), SeriesKey::service(service, FastMetric::RequestRate));
        let latency =
            |m: i64, service: &str| (at(m), SeriesKey::service(service, FastMetric::LatencyP99Ms));
        let log = SimulatedRunLog {
            from: t0,
            to: at(60),
            // One episode during a's spike (three flags a minute apart), one on its own
            // later; nothing for b's request rate, but its latency flagged (after the loop
            // scaled it, say), which only the score of every series counts.
            anomalies: vec![
                flag(11, "a"),
                flag(12, "a"),
                flag(13, "a"),
                flag(45, "a"),
                latency(50, "b"),
            ],
            ..SimulatedRunLog::default()
        };
        let score = detection(
            &events,
            &log,
            &names,
            TimeDelta::minutes(5),
            TimeDelta::minutes(5),
        );
        assert_eq!(
            score,
            DetectionScore {
                metric: Some(FastMetric::RequestRate),
                episodes: 2,
                explained: 1,
                injected: 2,
                detected: 1
            }
        );
        assert_eq!((score.precision(), score.recall()), (0.5, 0.5));
        let all = detection_of(
            None,
            &events,
            &log,
            &names,
            TimeDelta::minutes(5),
            TimeDelta::minutes(5),
        );
        assert_eq!((all.episodes, all.explained, all.detected), (3, 1, 1));
    }

    /// Region figures for the split: `rps` served on `replicas` at `cpu` percent, within 1..=10.
    fn region(rps: f64, replicas: u32, cpu: f64) -> RegionObservation {
        RegionObservation {
            offered_rps: rps,
            served_rps: rps,
            cpu_percent: cpu,
            replicas,
            min_replicas: 1,
            max_replicas: 10,
            ..RegionObservation::default()
        }
    }

    /// The replicas each `SetReplicas` of `out` sets, in order.
    fn replicas_set(out: &[Action]) -> Vec<(Region, u32)> {
        out.iter()
            .filter_map(|a| match a {
                Action::SetReplicas {
                    region, replicas, ..
                } => Some((*region, *replicas)),
                _ => None,
            })
            .collect()
    }

    fn split_of(total: u32, w: f64, seen: &ServiceObservation) -> (u32, u32) {
        let mut out = Vec::new();
        SimulatedFastLoop::split(0, total, w, seen, &mut out);
        let set = replicas_set(&out);
        let of = |region: Region| set.iter().find(|(r, _)| *r == region).unwrap().1;
        (of(Region::Primary), of(Region::Secondary))
    }

    #[test]
    fn replicas_are_split_by_the_work_each_region_carries() {
        // The same cost per request in both regions: replicas follow the traffic.
        let even = ServiceObservation {
            regions: PerRegion {
                primary: region(100.0, 2, 50.0),
                secondary: region(100.0, 2, 50.0),
            },
            ..ServiceObservation::default()
        };
        assert_eq!(split_of(8, 0.5, &even), (4, 4));
        assert_eq!(split_of(8, 0.75, &even), (6, 2));
        // A degraded primary spends three times the CPU on a request: a quarter of the
        // traffic there is as much work as the rest elsewhere.
        let degraded = ServiceObservation {
            regions: PerRegion {
                primary: region(100.0, 2, 75.0),
                secondary: region(100.0, 2, 25.0),
            },
            ..ServiceObservation::default()
        };
        assert_eq!(split_of(8, 0.25, &degraded), (4, 4));
        // Each region keeps its bounds whatever the work.
        assert_eq!(split_of(20, 0.25, &degraded), (10, 10));
        assert_eq!(split_of(1, 0.0, &degraded), (1, 1));
        // Without traffic anywhere the traffic shares alone decide.
        let idle = ServiceObservation {
            regions: PerRegion {
                primary: region(0.0, 2, 0.0),
                secondary: region(0.0, 2, 0.0),
            },
            ..ServiceObservation::default()
        };
        assert_eq!(split_of(8, 0.75, &idle), (6, 2));
    }

    #[test]
    fn a_traffic_shift_grows_the_region_that_gains_and_keeps_the_other() {
        let mut seen = ServiceObservation {
            replicas_desired: 8,
            regions: PerRegion {
                primary: region(160.0, 6, 50.0),
                secondary: region(40.0, 2, 50.0),
            },
            ..ServiceObservation::default()
        };
        seen.regions.primary.replicas_desired = 6;
        seen.regions.primary.weight = 0.8;
        seen.regions.secondary.replicas_desired = 2;
        seen.regions.secondary.weight = 0.2;
        let shift = |primary: u32, secondary: u32| {
            let mut out = Vec::new();
            let weights = BTreeMap::from([
                ("primary".to_string(), primary),
                ("secondary".to_string(), secondary),
            ]);
            SimulatedFastLoop::actions(
                0,
                &ControlAction::TrafficShift { weights },
                &seen,
                &mut out,
            );
            out
        };
        // 20 % → 60 % triples the secondary; the primary keeps its 6 until a replica decision.
        let out = shift(40, 60);
        assert!(matches!(out[0], Action::SetWeights { .. }), "{out:?}");
        assert_eq!(
            replicas_set(&out),
            [(Region::Primary, 6), (Region::Secondary, 6)]
        );
        // Within the region's bounds.
        assert_eq!(
            replicas_set(&shift(10, 90)),
            [(Region::Primary, 6), (Region::Secondary, 9)]
        );
        assert_eq!(
            replicas_set(&shift(0, 100)),
            [(Region::Primary, 6), (Region::Secondary, 10)]
        );
    }
}
