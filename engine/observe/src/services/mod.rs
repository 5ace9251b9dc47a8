//! The embedded simulated service fleet, and the reactive baseline a predictive loop is
//! judged against.
//!
//! [`crate::sim`] plays databases whose weekly figures nothing in the loop can change. Services
//! are different: the fast loop scales replicas, moves traffic between regions and throttles,
//! and each of those changes the latency and errors it observes next. So this fleet keeps
//! state and steps through time: [`ServiceSim::new`] builds a seeded fleet and its history
//! (open loop under the [`HpaBaseline`], as the fleet would have run before the loop existed),
//! then [`ServiceSim::step_to`] advances the present in fixed internal steps while actions
//! ([`ServiceSim::apply`]) feed back. [`run_closed_loop`] drives any [`Controller`] over the
//! same traffic and scores it, so the HPA-style baseline and a predictive loop can be compared
//! on equal terms.
//!
//! # Shape of the model
//!
//! * **Exogenous** ([`FleetModel`]): each service's offered request rate — daily and weekly
//!   seasonality, slow drift, multiplicative noise — plus the scheduled surges, the primary
//!   region's degradations and the injected anomalies, all listed with their times by
//!   [`FleetModel::events`]. It is a pure function of time, so a test (or a cheating oracle)
//!   can read demand at any instant, past or future.
//! * **State** ([`ServiceSim`]): per service and region the ready and desired replicas (with
//!   pod start delays), the traffic weights, the throttle, and an HPA `minReplicas` floor.
//!   Every change is journalled with its time, so any past instant is reproduced exactly
//!   from the demand and the state then in force — which is also how history is kept for
//!   1,000 services without storing every sample.
//! * **Physics**: instantaneous. A region serves `ready × saturation` requests/s at most,
//!   where one replica's saturation rate follows from its `capacity_rps` (the rate it serves
//!   at its target latency). With utilisation `ρ = served / (ready × saturation)`,
//!   p99 latency is `base_latency / (1 − ρ)` (the M/M/1 shape), capped at
//!   `latency_cap_ms`; beyond `ρ = 0.98` the excess fails and latency sits at the cap.
//!   Replicas are per region: each region is its own deployment with its own HPA, and a
//!   weight shift lands on the other region's capacity.
//!
//! # Services
//!
//! Drawn per service ([`ServiceSpec`]): a base rate of 10–1,000 req/s (log-uniform); a
//! daily swing whose weekday peak is 1.6–2.5× the base and its night about 0.6–0.8×, peaking
//! between 10:00 and 16:00 UTC; weekends at 45–80 % of weekdays with a flatter swing; drift
//! of −2 … +5 % a week; fast noise (σ 2–5 %, minute knots) and slow wander (σ 1–3 %, hour
//! knots). Each replica serves 20–80 req/s at its target latency (the SLO), with an idle
//! p99 of 20–60 ms; pods start in 60–90 s; the primary region takes 60–90 % of the traffic;
//! each region has at least 2 (primary) or 1 (secondary) replicas and at most enough for three
//! times a normal weekday peak.
//!
//! # Time
//!
//! History runs for `history` (14 days) before `start` at `history_step` (1 min) under the
//! baseline HPA — about 4 s for 1,000 services in a release build, journalling about 13
//! state changes per service and day. From `start` the internal step is 5 s; a controller
//! typically ticks every 15 s.
//!
//! # Metrics
//!
//! The names a loop configuration uses, each with the PromQL a real deployment would answer
//! it with (see [`MetricKey::promql`]). Region-level metrics append `_primary` or
//! `_secondary` to the name and add `region="…"` to every selector.
//!
//! | name | PromQL (service level) | unit | regions |
//! |---|---|---|---|
//! | `request_rate` | `sum by (service) (rate(http_requests_total[1m]))` | req/s offered; per region: routed there after throttling | yes |
//! | `served_rate` | `sum by (service) (rate(http_requests_total{code!~"5..\|429"}[1m]))` | req/s served | yes |
//! | `throttled_rate` | `sum by (service) (rate(http_requests_total{code="429"}[1m]))` | req/s rejected by the throttle | no |
//! | `latency_p99_ms` | `1000 * histogram_quantile(0.99, sum by (service, le) (rate(http_request_duration_seconds_bucket[1m])))` | ms | yes |
//! | `error_percent` | `100 * sum by (service) (rate(http_requests_total{code=~"5..\|429"}[1m])) / sum by (service) (rate(http_requests_total[1m]))` | % of offered: overload failures, throttling, background | yes |
//! | `cpu_percent` | `100 * sum by (service) (rate(container_cpu_usage_seconds_total{container="app"}[1m])) / sum by (service) (kube_pod_container_resource_limits{container="app",resource="cpu"})` | % of ready replicas' CPU (= 100 ρ) | yes |
//! | `replicas` | `sum by (service) (kube_deployment_status_replicas_available)` | ready replicas | yes |
//! | `replicas_desired` | `sum by (service) (kube_deployment_spec_replicas)` | replicas asked for, ready or starting | yes |
//! | `traffic_weight` | `sum by (service) (rate(http_requests_total{code!="429",region="…"}[1m])) / sum by (service) (rate(http_requests_total{code!="429"}[1m]))` | the region's share of admitted requests (0..1) | only |
//!
//! The service-level p99 is the worst p99 of the regions that carry at least 1 % of the
//! admitted traffic: an upper bound of the mixture's p99, so a breach is never hidden by a
//! quiet region.
//!
//! # Scheduled events (defaults, relative to [`ServiceFleetConfig::start`])
//!
//! * **Surge** ([`SurgePlan`]): services 1, 6, 11, … (index 0, 5, 10, …) ramp to 2–3× over
//!   10–20 min, hold 60 min and ramp back over 10 min, starting 10 h after `start` plus up
//!   to 60 min of stagger per service.
//! * **Degradation** ([`DegradationPlan`]): services with index 2, 9, 16, … lose 35–55 % of
//!   the primary region's per-replica capacity and see its base latency × 1.5–2.5 for 30–60
//!   min, starting 13 h after `start` plus up to 60 min of stagger.
//! * **Anomalies** ([`AnomalyPlan`]): a fifth of the services get one or two, in the day after
//!   `start`, away from their other events: spikes (× 1.6–2.5 for 1–5 min), dips
//!   (× 0.3–0.6 for 1–5 min) and level shifts (× 1.4–1.7 or × 0.55–0.7 for 1–3 h). Each
//!   changes the rate by at least 30 % for at least a minute (4 fast-loop ticks). Noise
//!   cannot: it is bounded by construction (±3.5 σ of each factor, so within −26 % … +30 %
//!   at the largest σ) and beyond ±15 % in under 0.2 % of samples, so the listed anomalies
//!   are the excursions of that size.
//!
//! # Determinism
//!
//! The same configuration and the same actions give the same numbers, bit for bit: service
//! parameters come from ChaCha8 streams seeded per service and purpose, noise from a
//! counter-based hash of (seed, service, time slot), and nothing reads a clock.

mod baseline;
mod demand;
mod model;
mod score;
mod source;

#[cfg(test)]
mod tests;

use chrono::{DateTime, TimeDelta, Utc};

pub use baseline::{HpaBaseline, HpaConfig};
pub use demand::{
    AnomalyKind, AnomalyPlan, DegradationPlan, Event, EventKind, FleetModel, ScheduleConfig,
    ServiceSpec, SurgePlan,
};
pub use model::{Action, FleetObservation, RegionObservation, ServiceObservation, ServiceSim};
pub use score::{
    ActionFailure, AppliedAction, Controller, Hold, RunReport, ServiceScore, run_closed_loop,
};
pub use source::{MetricKey, SERVICE_TECHNOLOGY, ServiceMetric, ServiceSource};

/// One of the two regions every service runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Region {
    /// Where most traffic goes by default, and where degradations happen.
    Primary,
    /// The other region: its own replicas and capacity, usually lightly loaded.
    Secondary,
}

impl Region {
    /// Both regions, primary first.
    pub const ALL: [Region; 2] = [Region::Primary, Region::Secondary];

    /// `primary` or `secondary`.
    pub fn name(self) -> &'static str {
        match self {
            Region::Primary => "primary",
            Region::Secondary => "secondary",
        }
    }
}

impl std::fmt::Display for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One value per region.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PerRegion<T> {
    /// The primary region's value.
    pub primary: T,
    /// The secondary region's value.
    pub secondary: T,
}

impl<T> PerRegion<T> {
    /// The value of one region.
    pub fn get(&self, region: Region) -> &T {
        match region {
            Region::Primary => &self.primary,
            Region::Secondary => &self.secondary,
        }
    }

    /// The value of one region, to change.
    pub fn get_mut(&mut self, region: Region) -> &mut T {
        match region {
            Region::Primary => &mut self.primary,
            Region::Secondary => &mut self.secondary,
        }
    }
}

impl<T> std::ops::Index<Region> for PerRegion<T> {
    type Output = T;
    fn index(&self, region: Region) -> &T {
        self.get(region)
    }
}

impl<T> std::ops::IndexMut<Region> for PerRegion<T> {
    fn index_mut(&mut self, region: Region) -> &mut T {
        self.get_mut(region)
    }
}

/// Traffic weights of the two regions. [`ServiceSim::set_weights`] accepts any non-negative
/// pair with a positive sum and keeps it normalised to a sum of 1.
pub type Weights = PerRegion<f64>;

/// A cap on the requests a service admits; the rest is rejected at the edge (HTTP 429), so it
/// counts as errors but never reaches, nor slows, the replicas.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Throttle {
    /// Admit at most this many requests/s, over both regions together.
    MaxRate(f64),
    /// Reject this fraction (0..=1) of the offered requests.
    Shed(f64),
}

impl Throttle {
    /// The admitted rate out of `offered` requests/s.
    pub fn admit(self, offered: f64) -> f64 {
        match self {
            Throttle::MaxRate(max) => offered.min(max.max(0.0)),
            Throttle::Shed(fraction) => offered * (1.0 - fraction.clamp(0.0, 1.0)),
        }
    }

    fn is_valid(self) -> bool {
        match self {
            Throttle::MaxRate(max) => max.is_finite() && max >= 0.0,
            Throttle::Shed(fraction) => (0.0..=1.0).contains(&fraction),
        }
    }
}

/// The Unix epoch, for times that cannot be represented.
fn to_time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Everything that shapes a simulated service fleet. Times are absolute: nothing here reads
/// a clock.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceFleetConfig {
    /// Seeds every random draw; the same seed gives the same fleet.
    pub seed: u64,
    /// Number of services, named `svc-0001`, `svc-0002`, …
    pub services: usize,
    /// Where history ends and the simulated present begins; events are scheduled from here.
    pub start: DateTime<Utc>,
    /// How much history precedes `start` (at least a day; two weeks by default, for a
    /// forecaster's weekly season).
    pub history: TimeDelta,
    /// The step of the history run (60 s by default): the baseline HPA syncs once per step.
    pub history_step: TimeDelta,
    /// The internal step after `start` (5 s by default): scores are integrated over it and
    /// starting pods become ready on its boundaries.
    pub step: TimeDelta,
    /// The latency objective scores count breaches of, in milliseconds of p99.
    pub slo_p99_ms: f64,
    /// The p99 of a saturated region (a client's timeout).
    pub latency_cap_ms: f64,
    /// Errors of a healthy service, in percent of what it serves.
    pub background_error_percent: f64,
    /// The HPA that runs the history (and the default baseline).
    pub hpa: HpaConfig,
    /// Surges, degradations and anomalies.
    pub schedule: ScheduleConfig,
}

impl ServiceFleetConfig {
    /// `services` services from `seed`, their present beginning at `start`, everything else
    /// at its default.
    pub fn new(seed: u64, services: usize, start: DateTime<Utc>) -> Self {
        Self {
            seed,
            services,
            start,
            history: TimeDelta::days(14),
            history_step: TimeDelta::seconds(60),
            step: TimeDelta::seconds(5),
            slo_p99_ms: 300.0,
            latency_cap_ms: 2000.0,
            background_error_percent: 0.1,
            hpa: HpaConfig::default(),
            schedule: ScheduleConfig::default(),
        }
    }

    /// Every problem of the configuration, each with its field.
    pub fn validate(&self) -> Result<(), ServiceSimError> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, field: &str, message: String| {
            if !ok {
                problems.push(format!("{field}: {message}"));
            }
        };
        check(
            (1..=100_000).contains(&self.services),
            "services",
            format!("{} is not within 1..=100000", self.services),
        );
        check(
            self.history >= TimeDelta::days(1) && self.history <= TimeDelta::days(366),
            "history",
            format!("{} is not within one day..=one year", self.history),
        );
        check(
            self.history_step >= TimeDelta::seconds(1) && self.history_step <= TimeDelta::hours(1),
            "history_step",
            format!("{} is not within 1 s..=1 h", self.history_step),
        );
        check(
            self.step >= TimeDelta::milliseconds(100) && self.step <= TimeDelta::seconds(60),
            "step",
            format!("{} is not within 100 ms..=60 s", self.step),
        );
        check(
            self.slo_p99_ms.is_finite() && self.slo_p99_ms > 0.0,
            "slo_p99_ms",
            format!("{} is not a positive number", self.slo_p99_ms),
        );
        check(
            self.latency_cap_ms.is_finite() && self.latency_cap_ms > self.slo_p99_ms,
            "latency_cap_ms",
            format!(
                "{} must be finite and above slo_p99_ms ({})",
                self.latency_cap_ms, self.slo_p99_ms
            ),
        );
        check(
            (0.0..100.0).contains(&self.background_error_percent),
            "background_error_percent",
            format!("{} is not within 0..100", self.background_error_percent),
        );
        for problem in self.hpa.problems() {
            problems.push(format!("hpa.{problem}"));
        }
        for problem in self.schedule.problems() {
            problems.push(format!("schedule.{problem}"));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ServiceSimError::InvalidConfig { problems })
        }
    }
}

/// Errors of the simulated service fleet.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ServiceSimError {
    /// The configuration has problems (each names its field).
    #[error("invalid service fleet configuration: {}", problems.join("; "))]
    InvalidConfig {
        /// `field: what is wrong`, one per problem.
        problems: Vec<String>,
    },
    /// No service has this index.
    #[error("no service with index {service} (the fleet has {count})")]
    UnknownService {
        /// The index asked for.
        service: usize,
        /// How many services there are.
        count: usize,
    },
    /// Simulated time only moves forward.
    #[error("the simulation is at {now}; it cannot step back to {requested}")]
    TimeWentBack {
        /// The simulated present.
        now: DateTime<Utc>,
        /// The time asked for.
        requested: DateTime<Utc>,
    },
    /// An observation after the simulated present was asked for.
    #[error("{requested} is after the simulated present ({now})")]
    Future {
        /// The simulated present.
        now: DateTime<Utc>,
        /// The time asked for.
        requested: DateTime<Utc>,
    },
    /// An observation before the simulated history was asked for.
    #[error("{requested} is before the simulated history, which begins at {begins}")]
    BeforeHistory {
        /// The first simulated instant.
        begins: DateTime<Utc>,
        /// The time asked for.
        requested: DateTime<Utc>,
    },
    /// Weights must be finite, non-negative and not both zero.
    #[error("service {service}: invalid traffic weights {primary} / {secondary}")]
    InvalidWeights {
        /// The service.
        service: usize,
        /// The primary weight given.
        primary: f64,
        /// The secondary weight given.
        secondary: f64,
    },
    /// A rate must be finite and non-negative, a fraction within 0..=1.
    #[error("service {service}: invalid throttle {throttle:?}")]
    InvalidThrottle {
        /// The service.
        service: usize,
        /// The throttle given.
        throttle: Throttle,
    },
}
