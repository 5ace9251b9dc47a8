//! What the controllers cannot change: each service's parameters, its offered request rate
//! over time, and the scheduled events and anomalies.

use chrono::{DateTime, TimeDelta, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{PerRegion, Region, ServiceFleetConfig, Weights, to_time};

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
const WEEK_MS: i64 = 7 * DAY_MS;
/// 1970-01-05T00:00:00Z, a Monday: weeks are counted from it.
const MONDAY_MS: i64 = 4 * DAY_MS;
/// No anomaly comes closer than this to another event of its service, so that each stands
/// alone in the data.
const GUARD_MS: i64 = 30 * MINUTE_MS;

/// The fixed parameters of one service.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSpec {
    /// Its index in the fleet.
    pub index: usize,
    /// `svc-0001`, …
    pub name: String,
    /// Offered requests/s at the middle of the daily swing on a weekday at `start`, before
    /// noise and events.
    pub base_rps: f64,
    /// Half the daily swing, in log space: the weekday peak is `base × e^a`, the night about
    /// `base × e^(−0.53 a)`.
    pub daily_amplitude: f64,
    /// UTC hour of the weekday peak.
    pub peak_hour: f64,
    /// Weekend level relative to weekdays (the weekend swing is also 40 % flatter).
    pub weekend_factor: f64,
    /// Relative growth per week (negative: shrinking), continuous.
    pub drift_per_week: f64,
    /// Standard deviation of the fast multiplicative noise (minute knots).
    pub noise: f64,
    /// Standard deviation of the slow multiplicative wander (hour knots).
    pub wander: f64,
    /// Requests/s one ready replica serves at its target latency.
    pub capacity_rps: f64,
    /// p99 of an idle replica, in milliseconds.
    pub base_latency_ms: f64,
    /// The p99 reached when a replica serves `capacity_rps`.
    pub target_latency_ms: f64,
    /// How long a new replica takes to serve.
    pub pod_start: TimeDelta,
    /// Fewest replicas per region.
    pub min_replicas: PerRegion<u32>,
    /// Most replicas per region.
    pub max_replicas: PerRegion<u32>,
    /// Traffic weights at the start of history.
    pub initial_weights: Weights,
}

impl ServiceSpec {
    /// Requests/s one healthy replica serves at 100 % utilisation: `capacity_rps` is reached
    /// where `base / (1 − ρ)` meets the target latency.
    pub fn saturation_rps(&self) -> f64 {
        self.capacity_rps / (1.0 - self.base_latency_ms / self.target_latency_ms)
    }
}

/// What kind of injected anomaly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnomalyKind {
    /// A short burst above the level.
    Spike,
    /// A short drop below the level.
    Dip,
    /// The level moves up or down for an hour or more, then returns.
    LevelShift,
}

/// What happens in an [`Event`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EventKind {
    /// Demand ramps up to `peak` × its usual level, holds, and ramps back.
    Surge {
        /// The factor at the top.
        peak: f64,
        /// From the start to the top.
        ramp_up: TimeDelta,
        /// At the top.
        hold: TimeDelta,
        /// From the top back to normal (ends at the event's end).
        ramp_down: TimeDelta,
    },
    /// A region's replicas slow down: less capacity each, higher base latency.
    Degradation {
        /// The region hit.
        region: Region,
        /// Per-replica capacity is multiplied by this.
        capacity_factor: f64,
        /// Base latency is multiplied by this.
        latency_factor: f64,
    },
    /// An injected anomaly: demand × `factor` over the whole event, with ground truth for
    /// detection.
    Anomaly {
        /// Spike, dip or level shift.
        kind: AnomalyKind,
        /// The multiplier of the rate.
        factor: f64,
    },
}

/// A scheduled event of one service, over `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event {
    /// The service's index.
    pub service: usize,
    /// What happens.
    pub kind: EventKind,
    /// When it begins.
    pub start: DateTime<Utc>,
    /// When it is over.
    pub end: DateTime<Utc>,
}

impl Event {
    /// Whether this is an injected anomaly (detection ground truth).
    pub fn is_anomaly(&self) -> bool {
        matches!(self.kind, EventKind::Anomaly { .. })
    }

    fn start_ms(&self) -> i64 {
        self.start.timestamp_millis()
    }

    fn end_ms(&self) -> i64 {
        self.end.timestamp_millis()
    }
}

/// Which services surge, when and how much.
#[derive(Debug, Clone, PartialEq)]
pub struct SurgePlan {
    /// The first service index that surges.
    pub first: usize,
    /// Then every `every`-th (must be at least 1).
    pub every: usize,
    /// From `start` to the first surge.
    pub after: TimeDelta,
    /// Each service starts up to this much later (drawn).
    pub stagger: TimeDelta,
    /// Ramp-up duration, drawn between the two.
    pub ramp_up: (TimeDelta, TimeDelta),
    /// Time at the top.
    pub hold: TimeDelta,
    /// Ramp-down duration.
    pub ramp_down: TimeDelta,
    /// Factor at the top, drawn between the two.
    pub peak: (f64, f64),
}

impl Default for SurgePlan {
    fn default() -> Self {
        Self {
            first: 0,
            every: 5,
            after: TimeDelta::hours(10),
            stagger: TimeDelta::minutes(60),
            ramp_up: (TimeDelta::minutes(10), TimeDelta::minutes(20)),
            hold: TimeDelta::minutes(60),
            ramp_down: TimeDelta::minutes(10),
            peak: (2.0, 3.0),
        }
    }
}

/// Which services' primary region degrades, when and how badly.
#[derive(Debug, Clone, PartialEq)]
pub struct DegradationPlan {
    /// The first service index hit.
    pub first: usize,
    /// Then every `every`-th (must be at least 1).
    pub every: usize,
    /// From `start` to the first degradation.
    pub after: TimeDelta,
    /// Each service starts up to this much later (drawn).
    pub stagger: TimeDelta,
    /// Duration, drawn between the two.
    pub duration: (TimeDelta, TimeDelta),
    /// Per-replica capacity multiplier, drawn between the two.
    pub capacity_factor: (f64, f64),
    /// Base latency multiplier, drawn between the two.
    pub latency_factor: (f64, f64),
}

impl Default for DegradationPlan {
    fn default() -> Self {
        Self {
            first: 2,
            every: 7,
            after: TimeDelta::hours(13),
            stagger: TimeDelta::minutes(60),
            duration: (TimeDelta::minutes(30), TimeDelta::minutes(60)),
            capacity_factor: (0.45, 0.65),
            latency_factor: (1.5, 2.5),
        }
    }
}

/// How many anomalies to inject, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalyPlan {
    /// Share of services that get anomalies (0..=1).
    pub share: f64,
    /// Anomalies per such service, drawn between the two (inclusive).
    pub per_service: (u32, u32),
    /// Earliest start, relative to `start` (negative: in history).
    pub from: TimeDelta,
    /// Latest end, relative to `start`.
    pub to: TimeDelta,
}

impl Default for AnomalyPlan {
    fn default() -> Self {
        Self {
            share: 0.2,
            per_service: (1, 2),
            from: TimeDelta::zero(),
            to: TimeDelta::days(1),
        }
    }
}

/// The events of a fleet; `None` turns a kind off.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleConfig {
    /// Traffic surges.
    pub surge: Option<SurgePlan>,
    /// Primary-region degradations.
    pub degradation: Option<DegradationPlan>,
    /// Injected anomalies.
    pub anomalies: Option<AnomalyPlan>,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            surge: Some(SurgePlan::default()),
            degradation: Some(DegradationPlan::default()),
            anomalies: Some(AnomalyPlan::default()),
        }
    }
}

impl ScheduleConfig {
    /// No events at all: seasonality, drift and noise only.
    pub fn none() -> Self {
        Self {
            surge: None,
            degradation: None,
            anomalies: None,
        }
    }

    pub(super) fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let ordered = |(lo, hi): (TimeDelta, TimeDelta)| lo > TimeDelta::zero() && lo <= hi;
        let factors = |(lo, hi): (f64, f64), min: f64, max: f64| min <= lo && lo <= hi && hi <= max;
        if let Some(s) = &self.surge {
            if s.every == 0 {
                problems.push("surge.every: must be at least 1".to_string());
            }
            if !ordered(s.ramp_up) || s.hold < TimeDelta::zero() || s.ramp_down <= TimeDelta::zero()
            {
                problems.push("surge: ramps must be positive and ordered, hold >= 0".to_string());
            }
            if !factors(s.peak, 1.0, 100.0) || s.stagger < TimeDelta::zero() {
                problems
                    .push("surge.peak: must be ordered within 1..=100, stagger >= 0".to_string());
            }
        }
        if let Some(d) = &self.degradation {
            if d.every == 0 {
                problems.push("degradation.every: must be at least 1".to_string());
            }
            if !ordered(d.duration) || d.stagger < TimeDelta::zero() {
                problems.push(
                    "degradation.duration: must be positive and ordered, stagger >= 0".to_string(),
                );
            }
            if !factors(d.capacity_factor, 0.01, 1.0) || !factors(d.latency_factor, 1.0, 100.0) {
                problems.push(
                    "degradation: capacity_factor within 0.01..=1, latency_factor within 1..=100, ordered"
                        .to_string(),
                );
            }
        }
        if let Some(a) = &self.anomalies {
            if !(0.0..=1.0).contains(&a.share) || a.per_service.0 > a.per_service.1 {
                problems.push("anomalies: share within 0..=1, per_service ordered".to_string());
            }
            if a.to - a.from < TimeDelta::hours(4) {
                problems
                    .push("anomalies.to: must be at least 4 h after anomalies.from".to_string());
            }
        }
        problems
    }
}

/// Per-service event windows, kept apart from the public list for the hot path.
#[derive(Debug, Clone, Default, PartialEq)]
struct ServiceEvents {
    /// `(start, top, top end, end, peak)`, milliseconds.
    surge: Option<(i64, i64, i64, i64, f64)>,
    /// `(start, end, capacity factor, latency factor)` of the primary region.
    degradation: Option<(i64, i64, f64, f64)>,
    /// `(start, end, factor)`.
    anomalies: Vec<(i64, i64, f64)>,
}

/// The exogenous part of the fleet: services, demand and events, as pure functions of time.
///
/// It answers for any instant, future included: that is ground truth for tests and for
/// scoring detection, and cheating for a controller — a loop under evaluation observes the
/// fleet only through [`ServiceSim`](super::ServiceSim)'s observations and its metric source.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetModel {
    seed: u64,
    start_ms: i64,
    services: Vec<ServiceSpec>,
    /// Hash keys of each service's noise.
    noise_keys: Vec<u64>,
    /// `ln(base_rps)`, precomputed.
    log_base: Vec<f64>,
    windows: Vec<ServiceEvents>,
    events: Vec<Event>,
}

impl FleetModel {
    /// The services and events of a configuration (assumed valid).
    pub fn new(config: &ServiceFleetConfig) -> Self {
        let width = config.services.to_string().len().max(4);
        let start_ms = config.start.timestamp_millis();
        let mut services = Vec::with_capacity(config.services);
        let mut windows = Vec::with_capacity(config.services);
        let mut events = Vec::new();
        for index in 0..config.services {
            let name = format!("svc-{:0width$}", index + 1);
            let spec = draw_spec(config, index, name);
            let (window, mut own) = draw_events(config, &spec, start_ms);
            services.push(spec);
            windows.push(window);
            events.append(&mut own);
        }
        events.sort_by(|a, b| {
            (a.start, a.service)
                .cmp(&(b.start, b.service))
                .then(a.end.cmp(&b.end))
        });
        Self {
            seed: config.seed,
            start_ms,
            noise_keys: services
                .iter()
                .map(|s| stream_seed(config.seed, &s.name, "noise"))
                .collect(),
            log_base: services.iter().map(|s| s.base_rps.ln()).collect(),
            services,
            windows,
            events,
        }
    }

    /// The seed the model was drawn from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The services, by index.
    pub fn services(&self) -> &[ServiceSpec] {
        &self.services
    }

    /// Every scheduled event and injected anomaly, by start time.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The injected anomalies only: ground truth for anomaly detection.
    pub fn anomalies(&self) -> impl Iterator<Item = &Event> {
        self.events.iter().filter(|e| e.is_anomaly())
    }

    /// Offered requests/s of a service at `t`, everything included; 0 for an unknown service.
    pub fn demand(&self, service: usize, t: DateTime<Utc>) -> f64 {
        self.demand_ms(service, t.timestamp_millis())
    }

    /// Offered requests/s without the injected anomalies (but with noise and surges): the
    /// level an anomaly is measured against.
    pub fn demand_without_anomalies(&self, service: usize, t: DateTime<Utc>) -> f64 {
        let t_ms = t.timestamp_millis();
        self.demand_ms(service, t_ms) / self.anomaly_factor(service, t_ms)
    }

    /// Per-replica capacity multiplier of a region at `t` (1 when healthy).
    pub fn capacity_factor(&self, service: usize, region: Region, t: DateTime<Utc>) -> f64 {
        self.degradation_ms(service, region, t.timestamp_millis()).0
    }

    /// Base latency multiplier of a region at `t` (1 when healthy).
    pub fn latency_factor(&self, service: usize, region: Region, t: DateTime<Utc>) -> f64 {
        self.degradation_ms(service, region, t.timestamp_millis()).1
    }

    pub(super) fn demand_ms(&self, service: usize, t_ms: i64) -> f64 {
        let (Some(spec), Some(&key), Some(&log_base)) = (
            self.services.get(service),
            self.noise_keys.get(service),
            self.log_base.get(service),
        ) else {
            return 0.0;
        };
        let weekend = weekendness(t_ms);
        let day = t_ms.rem_euclid(DAY_MS) as f64 / DAY_MS as f64;
        let theta = std::f64::consts::TAU * (day - spec.peak_hour / 24.0);
        // A working-day peak: the second harmonic narrows the top and widens the night.
        let shape = 0.75 * theta.cos() + 0.25 * (2.0 * theta).cos();
        let log_rate = log_base
            + spec.drift_per_week * (t_ms - self.start_ms) as f64 / WEEK_MS as f64
            + weekend * spec.weekend_factor.ln()
            + spec.daily_amplitude * (1.0 - 0.4 * weekend) * shape;
        let noise = (1.0 + spec.noise * smooth_noise(key, 1, t_ms, MINUTE_MS))
            * (1.0 + spec.wander * smooth_noise(key, 2, t_ms, HOUR_MS));
        log_rate.exp()
            * noise
            * self.surge_factor(service, t_ms)
            * self.anomaly_factor(service, t_ms)
    }

    fn surge_factor(&self, service: usize, t_ms: i64) -> f64 {
        let Some(Some((start, top, top_end, end, peak))) =
            self.windows.get(service).map(|w| w.surge)
        else {
            return 1.0;
        };
        let envelope = if t_ms < start || t_ms >= end {
            0.0
        } else if t_ms < top {
            (t_ms - start) as f64 / (top - start) as f64
        } else if t_ms < top_end {
            1.0
        } else {
            1.0 - (t_ms - top_end) as f64 / (end - top_end) as f64
        };
        1.0 + (peak - 1.0) * envelope
    }

    fn anomaly_factor(&self, service: usize, t_ms: i64) -> f64 {
        self.windows
            .get(service)
            .and_then(|w| {
                w.anomalies
                    .iter()
                    .find(|(start, end, _)| (*start..*end).contains(&t_ms))
            })
            .map_or(1.0, |(_, _, factor)| *factor)
    }

    /// `(capacity factor, latency factor)` of a region at `t_ms`.
    pub(super) fn degradation_ms(&self, service: usize, region: Region, t_ms: i64) -> (f64, f64) {
        match self.windows.get(service).and_then(|w| w.degradation) {
            Some((start, end, capacity, latency))
                if region == Region::Primary && (start..end).contains(&t_ms) =>
            {
                (capacity, latency)
            }
            _ => (1.0, 1.0),
        }
    }
}

/// How much of the weekend is in force at `t_ms`, 0 (weekday) to 1, changing smoothly over
/// the two hours around Saturday's and Monday's midnights (UTC).
fn weekendness(t_ms: i64) -> f64 {
    let x = (t_ms - MONDAY_MS).rem_euclid(WEEK_MS);
    let saturday = 5 * DAY_MS;
    let ramp = |from: i64| smoothstep((x - from) as f64 / (2 * HOUR_MS) as f64);
    if x < HOUR_MS {
        1.0 - ramp(-HOUR_MS)
    } else if x < saturday - HOUR_MS {
        0.0
    } else if x < saturday + HOUR_MS {
        ramp(saturday - HOUR_MS)
    } else if x < WEEK_MS - HOUR_MS {
        1.0
    } else {
        1.0 - ramp(WEEK_MS - HOUR_MS)
    }
}

fn smoothstep(x: f64) -> f64 {
    let x = x.clamp(0.0, 1.0);
    x * x * (3.0 - 2.0 * x)
}

/// SplitMix64's finaliser: a well-mixed 64-bit hash of a counter.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A standard-normal-like draw for one knot: the sum of four 16-bit uniforms (Irwin–Hall),
/// rescaled to unit variance. Bounded at ±2√3, so noise alone never looks like an anomaly.
fn knot(key: u64, stream: u64, slot: i64) -> f64 {
    let h = mix(key ^ mix(stream.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ slot as u64));
    let sum: f64 = (0..4)
        .map(|i| ((h >> (16 * i)) & 0xffff) as f64 / 65_535.0)
        .sum();
    (sum - 2.0) * 3f64.sqrt()
}

/// Noise interpolated linearly between knots `period_ms` apart: random access in time, so
/// any instant can be recomputed without replaying the ones before it.
fn smooth_noise(key: u64, stream: u64, t_ms: i64, period_ms: i64) -> f64 {
    let slot = t_ms.div_euclid(period_ms);
    let frac = t_ms.rem_euclid(period_ms) as f64 / period_ms as f64;
    let a = knot(key, stream, slot);
    let b = knot(key, stream, slot + 1);
    a + (b - a) * frac
}

/// Seeds an independent random stream. FNV-1a rather than std's hasher, whose output may
/// change between Rust releases: a fleet must stay the same for a given seed.
fn stream_seed(seed: u64, service: &str, stream: &str) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in seed
        .to_le_bytes()
        .iter()
        .chain(service.as_bytes())
        .chain([0u8].iter())
        .chain(stream.as_bytes())
    {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(PRIME);
    }
    hash
}

fn rng(config: &ServiceFleetConfig, service: &str, stream: &str) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(stream_seed(config.seed, service, stream))
}

fn between(rng: &mut ChaCha8Rng, (lo, hi): (f64, f64)) -> f64 {
    if lo < hi {
        rng.random_range(lo..hi)
    } else {
        lo
    }
}

fn between_ms(rng: &mut ChaCha8Rng, (lo, hi): (TimeDelta, TimeDelta)) -> i64 {
    let (lo, hi) = (lo.num_milliseconds(), hi.num_milliseconds());
    if lo < hi {
        rng.random_range(lo..=hi)
    } else {
        lo
    }
}

fn draw_spec(config: &ServiceFleetConfig, index: usize, name: String) -> ServiceSpec {
    let mut rng = rng(config, &name, "spec");
    let base_rps = between(&mut rng, (10f64.ln(), 1000f64.ln())).exp();
    let daily_amplitude = between(&mut rng, (0.5, 0.9));
    let peak_hour = between(&mut rng, (10.0, 16.0));
    let weekend_factor = between(&mut rng, (0.45, 0.8));
    let drift_per_week = between(&mut rng, (-0.02, 0.05));
    let noise = between(&mut rng, (0.02, 0.05));
    let wander = between(&mut rng, (0.01, 0.03));
    let capacity_rps = between(&mut rng, (20.0, 80.0));
    let base_latency_ms = between(&mut rng, (20.0, 60.0));
    let pod_start = TimeDelta::seconds(rng.random_range(60..=90));
    let primary = between(&mut rng, (0.6, 0.9));
    let target_latency_ms = config.slo_p99_ms.max(base_latency_ms * 2.0);
    let saturation = capacity_rps / (1.0 - base_latency_ms / target_latency_ms);
    // Either region can take three times a normal weekday peak at the HPA's target
    // utilisation: surges and failovers are absorbable, so what matters is when a
    // controller acts, not whether it may.
    let peak = base_rps * daily_amplitude.exp() * 1.25;
    let most = (3.0 * peak / (saturation * 0.7)).ceil() as u32 + 2;
    ServiceSpec {
        index,
        name,
        base_rps,
        daily_amplitude,
        peak_hour,
        weekend_factor,
        drift_per_week,
        noise,
        wander,
        capacity_rps,
        base_latency_ms,
        target_latency_ms,
        pod_start,
        min_replicas: PerRegion {
            primary: 2,
            secondary: 1,
        },
        max_replicas: PerRegion {
            primary: most.max(6),
            secondary: most.max(4),
        },
        initial_weights: PerRegion {
            primary,
            secondary: 1.0 - primary,
        },
    }
}

/// The events of one service: its windows for the hot path and the public list.
fn draw_events(
    config: &ServiceFleetConfig,
    spec: &ServiceSpec,
    start_ms: i64,
) -> (ServiceEvents, Vec<Event>) {
    let mut windows = ServiceEvents::default();
    let mut events = Vec::new();
    let index = spec.index;
    let chosen = |first: usize, every: usize| {
        every > 0 && index >= first && (index - first).is_multiple_of(every)
    };
    if let Some(plan) = &config.schedule.surge
        && chosen(plan.first, plan.every)
    {
        let mut rng = rng(config, &spec.name, "surge");
        let start = start_ms
            + plan.after.num_milliseconds()
            + between_ms(&mut rng, (TimeDelta::zero(), plan.stagger));
        let ramp_up = between_ms(&mut rng, plan.ramp_up);
        let peak = between(&mut rng, plan.peak);
        let top = start + ramp_up;
        let top_end = top + plan.hold.num_milliseconds();
        let end = top_end + plan.ramp_down.num_milliseconds();
        windows.surge = Some((start, top, top_end, end, peak));
        events.push(Event {
            service: index,
            kind: EventKind::Surge {
                peak,
                ramp_up: TimeDelta::milliseconds(ramp_up),
                hold: plan.hold,
                ramp_down: plan.ramp_down,
            },
            start: to_time(start),
            end: to_time(end),
        });
    }
    if let Some(plan) = &config.schedule.degradation
        && chosen(plan.first, plan.every)
    {
        let mut rng = rng(config, &spec.name, "degradation");
        let start = start_ms
            + plan.after.num_milliseconds()
            + between_ms(&mut rng, (TimeDelta::zero(), plan.stagger));
        let end = start + between_ms(&mut rng, plan.duration);
        let capacity_factor = between(&mut rng, plan.capacity_factor);
        let latency_factor = between(&mut rng, plan.latency_factor);
        windows.degradation = Some((start, end, capacity_factor, latency_factor));
        events.push(Event {
            service: index,
            kind: EventKind::Degradation {
                region: Region::Primary,
                capacity_factor,
                latency_factor,
            },
            start: to_time(start),
            end: to_time(end),
        });
    }
    if let Some(plan) = &config.schedule.anomalies {
        let mut rng = rng(config, &spec.name, "anomalies");
        // Always draw, so that the share does not shift which services' streams are used.
        let pick = rng.random_range(0.0..1.0);
        let count =
            rng.random_range(plan.per_service.0..=plan.per_service.1.max(plan.per_service.0));
        if pick < plan.share {
            let from = start_ms + plan.from.num_milliseconds();
            let to = start_ms + plan.to.num_milliseconds();
            for _ in 0..count {
                if let Some(event) = place_anomaly(&mut rng, index, from, to, &events) {
                    windows.anomalies.push((
                        event.start_ms(),
                        event.end_ms(),
                        anomaly_factor(&event),
                    ));
                    events.push(event);
                }
            }
        }
    }
    (windows, events)
}

fn anomaly_factor(event: &Event) -> f64 {
    match event.kind {
        EventKind::Anomaly { factor, .. } => factor,
        _ => 1.0,
    }
}

/// One anomaly at a random time in `[from, to)`, clear of the service's other events; `None`
/// when twenty tries found no room.
fn place_anomaly(
    rng: &mut ChaCha8Rng,
    service: usize,
    from: i64,
    to: i64,
    taken: &[Event],
) -> Option<Event> {
    let (kind, factor, duration) = match rng.random_range(0..3) {
        0 => (
            AnomalyKind::Spike,
            between(rng, (1.6, 2.5)),
            between_ms(rng, (TimeDelta::minutes(1), TimeDelta::minutes(5))),
        ),
        1 => (
            AnomalyKind::Dip,
            between(rng, (0.3, 0.6)),
            between_ms(rng, (TimeDelta::minutes(1), TimeDelta::minutes(5))),
        ),
        _ => {
            let up = rng.random_bool(0.5);
            let factor = if up {
                between(rng, (1.4, 1.7))
            } else {
                between(rng, (0.55, 0.7))
            };
            (
                AnomalyKind::LevelShift,
                factor,
                between_ms(rng, (TimeDelta::hours(1), TimeDelta::hours(3))),
            )
        }
    };
    // Whole seconds, so that ticks and samples see clean edges.
    let duration = duration / 1000 * 1000;
    for _ in 0..20 {
        if to - duration <= from {
            return None;
        }
        let start = rng.random_range(from..to - duration) / 1000 * 1000;
        let end = start + duration;
        let clear = taken.iter().all(|e| {
            e.service != service || end + GUARD_MS <= e.start_ms() || start >= e.end_ms() + GUARD_MS
        });
        if clear {
            return Some(Event {
                service,
                kind: EventKind::Anomaly { kind, factor },
                start: to_time(start),
                end: to_time(end),
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weekendness_is_continuous_and_covers_the_weekend() {
        let monday = MONDAY_MS + 100 * WEEK_MS;
        assert_eq!(weekendness(monday + 2 * DAY_MS), 0.0);
        assert_eq!(weekendness(monday + 6 * DAY_MS), 1.0);
        for boundary in [monday, monday + 5 * DAY_MS] {
            let before = weekendness(boundary - 1);
            let after = weekendness(boundary);
            assert!((before - after).abs() < 1e-3, "{before} {after}");
        }
        let mut last = weekendness(monday);
        for m in 0..(7 * 24 * 60) {
            let w = weekendness(monday + m * MINUTE_MS);
            assert!((w - last).abs() < 0.02, "{m}: {last} -> {w}");
            last = w;
        }
    }

    #[test]
    fn noise_is_bounded_centred_and_repeatable() {
        let mut sum = 0.0;
        let mut sum_sq = 0.0;
        let n = 20_000;
        for slot in 0..n {
            let z = knot(7, 1, slot);
            assert!(z.abs() <= 2.0 * 3f64.sqrt() + 1e-12);
            assert_eq!(z.to_bits(), knot(7, 1, slot).to_bits());
            sum += z;
            sum_sq += z * z;
        }
        let mean = sum / n as f64;
        let var = sum_sq / n as f64 - mean * mean;
        assert!(mean.abs() < 0.03, "{mean}");
        assert!((var - 1.0).abs() < 0.05, "{var}");
    }
}
