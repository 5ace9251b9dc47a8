//! The time-stepped fleet: replica, traffic and throttle state, the actions that change it,
//! and what it looks like at any simulated instant up to the present.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::baseline::HpaBaseline;
use super::demand::{Event, FleetModel, ServiceSpec};
use super::score::{Controller, ServiceScore};
use super::{PerRegion, Region, ServiceFleetConfig, ServiceSimError, Throttle, Weights, to_time};

/// Beyond this utilisation a region's queue no longer drains: the excess fails.
const RHO_MAX: f64 = 0.98;
/// A region counts towards the service's p99 when it carries at least this share.
const P99_SHARE: f64 = 0.01;

/// Something a controller does to one service. Replica counts are clamped to the service's
/// bounds; the rest is validated by [`ServiceSim::apply`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    /// Scale a region's deployment. Increases serve after the pod start delay; decreases
    /// take effect at once (starting pods are cancelled first).
    SetReplicas {
        /// The service's index.
        service: usize,
        /// The region's deployment.
        region: Region,
        /// The replicas wanted.
        replicas: u32,
    },
    /// Split traffic between the regions (normalised to a sum of 1).
    SetWeights {
        /// The service's index.
        service: usize,
        /// The new weights.
        weights: Weights,
    },
    /// Cap what the service admits, or lift the cap (`None`).
    SetThrottle {
        /// The service's index.
        service: usize,
        /// The cap.
        throttle: Option<Throttle>,
    },
    /// A floor under the region's HPA (its `minReplicas`), or none. Only an HPA reads it.
    SetHpaMinReplicas {
        /// The service's index.
        service: usize,
        /// The region's deployment.
        region: Region,
        /// The floor.
        min: Option<u32>,
    },
}

/// One region of one service at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RegionObservation {
    /// Requests/s routed here (after throttling).
    pub offered_rps: f64,
    /// Requests/s served.
    pub served_rps: f64,
    /// Requests/s failed for lack of capacity.
    pub failed_rps: f64,
    /// p99 latency, milliseconds.
    pub latency_p99_ms: f64,
    /// Failed (and background) requests, percent of `offered_rps`.
    pub error_percent: f64,
    /// Mean utilisation of the ready replicas, percent.
    pub cpu_percent: f64,
    /// Ready replicas.
    pub replicas: u32,
    /// Replicas asked for, ready or starting.
    pub replicas_desired: u32,
    /// The deployment's lower bound.
    pub min_replicas: u32,
    /// The deployment's upper bound.
    pub max_replicas: u32,
    /// The floor set under its HPA, if any.
    pub hpa_min_replicas: Option<u32>,
    /// Its traffic weight.
    pub weight: f64,
}

/// One service at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ServiceObservation {
    /// The service's index.
    pub service: usize,
    /// Requests/s offered, before throttling.
    pub offered_rps: f64,
    /// Requests/s served by both regions.
    pub served_rps: f64,
    /// Requests/s rejected by the throttle.
    pub throttled_rps: f64,
    /// Requests/s failed for lack of capacity.
    pub failed_rps: f64,
    /// p99 latency, milliseconds: the worst of the regions carrying at least 1 % of traffic.
    pub latency_p99_ms: f64,
    /// Throttled, failed and background errors, percent of `offered_rps`.
    pub error_percent: f64,
    /// Mean utilisation over all ready replicas, percent.
    pub cpu_percent: f64,
    /// Ready replicas, both regions.
    pub replicas: u32,
    /// Replicas asked for, both regions.
    pub replicas_desired: u32,
    /// The throttle in force.
    pub throttle: Option<Throttle>,
    /// Per region.
    pub regions: PerRegion<RegionObservation>,
}

/// The whole fleet at one instant.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FleetObservation {
    /// When.
    pub at: DateTime<Utc>,
    /// By service index.
    pub services: Vec<ServiceObservation>,
}

/// Replicas starting in one region: `count` of them serve from `ready_at_ms`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Starting {
    ready_at_ms: i64,
    count: u32,
}

#[derive(Debug, Clone, PartialEq, Default)]
struct RegionState {
    ready: u32,
    /// Oldest first.
    starting: Vec<Starting>,
    hpa_min: Option<u32>,
}

impl RegionState {
    fn desired(&self) -> u32 {
        self.ready + self.starting.iter().map(|s| s.count).sum::<u32>()
    }
}

/// Everything that shapes a service's observations, as in force from `t_ms` on. The journal
/// of these is the fleet's history: any past instant is recomputed from it and the demand.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Snapshot {
    t_ms: i64,
    ready: PerRegion<u32>,
    desired: PerRegion<u32>,
    hpa_min: PerRegion<Option<u32>>,
    weights: Weights,
    throttle: Option<Throttle>,
}

#[derive(Debug, Clone, PartialEq)]
struct ServiceState {
    regions: PerRegion<RegionState>,
    weights: Weights,
    throttle: Option<Throttle>,
}

impl ServiceState {
    fn snapshot(&self, t_ms: i64) -> Snapshot {
        Snapshot {
            t_ms,
            ready: PerRegion {
                primary: self.regions.primary.ready,
                secondary: self.regions.secondary.ready,
            },
            desired: PerRegion {
                primary: self.regions.primary.desired(),
                secondary: self.regions.secondary.desired(),
            },
            hpa_min: PerRegion {
                primary: self.regions.primary.hpa_min,
                secondary: self.regions.secondary.hpa_min,
            },
            weights: self.weights,
            throttle: self.throttle,
        }
    }
}

/// The simulated service fleet: seeded, time-stepped, deterministic.
///
/// History runs from `start − history` to `start` under an [`HpaBaseline`] at the history
/// step; from `start` on, [`step_to`](Self::step_to) advances in the internal step while
/// scores accumulate. Cloning a simulation forks it: two controllers can run from the same
/// state over the same traffic.
#[derive(Debug, Clone)]
pub struct ServiceSim {
    config: ServiceFleetConfig,
    name: String,
    model: Arc<FleetModel>,
    begin_ms: i64,
    start_ms: i64,
    now_ms: i64,
    states: Vec<ServiceState>,
    journals: Vec<Vec<Snapshot>>,
    /// Cumulative since `start`.
    scores: Vec<ServiceScore>,
    /// The HPA that ran the history, windows and all.
    hpa: HpaBaseline,
}

impl ServiceSim {
    /// A fleet and its history, ready at `config.start`.
    pub fn new(config: ServiceFleetConfig) -> Result<Self, ServiceSimError> {
        config.validate()?;
        let model = Arc::new(FleetModel::new(&config));
        let start_ms = config.start.timestamp_millis();
        let begin_ms = start_ms - config.history.num_milliseconds();
        let target = config.hpa.target_cpu_percent / 100.0;
        let states: Vec<ServiceState> = model
            .services()
            .iter()
            .map(|spec| {
                let demand = model.demand_ms(spec.index, begin_ms);
                let region = |r: Region| {
                    let need = demand * spec.initial_weights[r] / (spec.saturation_rps() * target);
                    RegionState {
                        ready: (need.ceil() as u32)
                            .clamp(spec.min_replicas[r], spec.max_replicas[r]),
                        starting: Vec::new(),
                        hpa_min: None,
                    }
                };
                ServiceState {
                    regions: PerRegion {
                        primary: region(Region::Primary),
                        secondary: region(Region::Secondary),
                    },
                    weights: spec.initial_weights,
                    throttle: None,
                }
            })
            .collect();
        let journals = states.iter().map(|s| vec![s.snapshot(begin_ms)]).collect();
        let hpa = HpaBaseline::new(config.hpa.clone());
        let mut sim = Self {
            name: format!("simulated-services(seed={})", config.seed),
            scores: vec![ServiceScore::default(); states.len()],
            config,
            model,
            begin_ms,
            start_ms,
            now_ms: begin_ms,
            states,
            journals,
            hpa,
        };
        sim.run_history();
        Ok(sim)
    }

    /// History, open loop under the baseline HPA: what the fleet did before any loop watched.
    fn run_history(&mut self) {
        let mut hpa = self.hpa.clone();
        let step = self.config.history_step.num_milliseconds();
        let mut observed = FleetObservation::default();
        let mut actions = Vec::new();
        while self.now_ms < self.start_ms {
            self.observe_now_into(&mut observed);
            hpa.tick(observed.at, &observed, &mut actions);
            for action in actions.drain(..) {
                // The HPA only names services it observed and clamps its own counts.
                let _ = self.apply(&action);
            }
            let next = (self.now_ms + step).min(self.start_ms);
            self.advance(next, false);
        }
        self.hpa = hpa;
    }

    /// The reactive baseline, continuing the HPA that ran the history (its stabilisation
    /// windows included), so that nothing jumps when it takes over at `start`.
    pub fn baseline(&self) -> HpaBaseline {
        self.hpa.clone()
    }

    /// Name for reports and errors, e.g. `simulated-services(seed=42)`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The configuration the fleet was built from.
    pub fn config(&self) -> &ServiceFleetConfig {
        &self.config
    }

    /// The services, demand and events (shared, so controllers in tests may hold it).
    pub fn model(&self) -> &Arc<FleetModel> {
        &self.model
    }

    /// The services, by index.
    pub fn services(&self) -> &[ServiceSpec] {
        self.model.services()
    }

    /// The index of a service by name.
    pub fn service_index(&self, name: &str) -> Option<usize> {
        // Names are zero-padded to one width, so their order is the index order.
        self.services()
            .binary_search_by(|s| s.name.as_str().cmp(name))
            .ok()
    }

    /// Every scheduled event and injected anomaly, by start time.
    pub fn events(&self) -> &[Event] {
        self.model.events()
    }

    /// The simulated present.
    pub fn now(&self) -> DateTime<Utc> {
        to_time(self.now_ms)
    }

    /// Where history ends and scoring begins.
    pub fn start(&self) -> DateTime<Utc> {
        to_time(self.start_ms)
    }

    /// The first simulated instant.
    pub fn history_begins(&self) -> DateTime<Utc> {
        to_time(self.begin_ms)
    }

    pub(super) fn now_ms(&self) -> i64 {
        self.now_ms
    }

    pub(super) fn begin_ms(&self) -> i64 {
        self.begin_ms
    }

    /// Per service, what has accumulated since `start`.
    pub fn scores(&self) -> &[ServiceScore] {
        &self.scores
    }

    /// Advances the present to `t` in internal steps (the last one shorter if `t` is not on
    /// a step boundary), accumulating scores; starting replicas become ready on the first
    /// step boundary at or after their start delay.
    pub fn step_to(&mut self, t: DateTime<Utc>) -> Result<(), ServiceSimError> {
        let target = t.timestamp_millis();
        if target < self.now_ms {
            return Err(ServiceSimError::TimeWentBack {
                now: self.now(),
                requested: t,
            });
        }
        let step = self.config.step.num_milliseconds();
        while self.now_ms < target {
            let next = (self.now_ms + step).min(target);
            self.advance(next, true);
        }
        Ok(())
    }

    /// One step `[now, next)` with the state in force at `now`.
    fn advance(&mut self, next: i64, score: bool) {
        if score {
            let minutes = (next - self.now_ms) as f64 / 60_000.0;
            for i in 0..self.states.len() {
                let seen = self.evaluate(i, &self.states[i].snapshot(self.now_ms));
                let breach = seen.latency_p99_ms > self.config.slo_p99_ms;
                let s = &mut self.scores[i];
                s.breach_minutes += if breach { minutes } else { 0.0 };
                s.replica_hours += f64::from(seen.replicas_desired) * minutes / 60.0;
                let seconds = minutes * 60.0;
                s.offered_requests += seen.offered_rps * seconds;
                s.served_requests += seen.served_rps * seconds;
                s.throttled_requests += seen.throttled_rps * seconds;
                s.failed_requests += seen.failed_rps * seconds;
            }
        }
        self.now_ms = next;
        for (state, journal) in self.states.iter_mut().zip(&mut self.journals) {
            let mut changed = false;
            for region in Region::ALL {
                let r = &mut state.regions[region];
                let due = r
                    .starting
                    .iter()
                    .take_while(|s| s.ready_at_ms <= next)
                    .count();
                if due > 0 {
                    r.ready += r.starting.drain(..due).map(|s| s.count).sum::<u32>();
                    changed = true;
                }
            }
            if changed {
                record(journal, state.snapshot(next));
            }
        }
    }

    fn spec(&self, service: usize) -> Result<&ServiceSpec, ServiceSimError> {
        self.services()
            .get(service)
            .ok_or(ServiceSimError::UnknownService {
                service,
                count: self.states.len(),
            })
    }

    /// Scales a region's deployment to `replicas`, clamped to its bounds; returns the count
    /// applied.
    pub fn set_replicas(
        &mut self,
        service: usize,
        region: Region,
        replicas: u32,
    ) -> Result<u32, ServiceSimError> {
        let spec = self.spec(service)?;
        let wanted = replicas.clamp(spec.min_replicas[region], spec.max_replicas[region]);
        let ready_at_ms = self.now_ms + spec.pod_start.num_milliseconds();
        let now_ms = self.now_ms;
        let state = &mut self.states[service];
        let r = &mut state.regions[region];
        let current = r.desired();
        if wanted > current {
            r.starting.push(Starting {
                ready_at_ms,
                count: wanted - current,
            });
        } else if wanted < current {
            // Cancel the newest starting replicas first, then stop ready ones.
            let mut excess = current - wanted;
            while excess > 0 {
                match r.starting.last_mut() {
                    Some(last) if last.count > excess => {
                        last.count -= excess;
                        excess = 0;
                    }
                    Some(last) => {
                        excess -= last.count;
                        r.starting.pop();
                    }
                    None => {
                        r.ready -= excess.min(r.ready);
                        excess = 0;
                    }
                }
            }
        } else {
            return Ok(wanted);
        }
        record(&mut self.journals[service], state.snapshot(now_ms));
        Ok(wanted)
    }

    /// Splits a service's traffic; returns the weights applied (normalised).
    pub fn set_weights(
        &mut self,
        service: usize,
        weights: Weights,
    ) -> Result<Weights, ServiceSimError> {
        self.spec(service)?;
        let sum = weights.primary + weights.secondary;
        let valid = [weights.primary, weights.secondary]
            .iter()
            .all(|w| w.is_finite() && *w >= 0.0)
            && sum > 0.0;
        if !valid {
            return Err(ServiceSimError::InvalidWeights {
                service,
                primary: weights.primary,
                secondary: weights.secondary,
            });
        }
        let weights = PerRegion {
            primary: weights.primary / sum,
            secondary: weights.secondary / sum,
        };
        let state = &mut self.states[service];
        if state.weights != weights {
            state.weights = weights;
            record(&mut self.journals[service], state.snapshot(self.now_ms));
        }
        Ok(weights)
    }

    /// Caps what a service admits, or lifts the cap.
    pub fn set_throttle(
        &mut self,
        service: usize,
        throttle: Option<Throttle>,
    ) -> Result<(), ServiceSimError> {
        self.spec(service)?;
        if let Some(t) = throttle
            && !t.is_valid()
        {
            return Err(ServiceSimError::InvalidThrottle {
                service,
                throttle: t,
            });
        }
        let state = &mut self.states[service];
        if state.throttle != throttle {
            state.throttle = throttle;
            record(&mut self.journals[service], state.snapshot(self.now_ms));
        }
        Ok(())
    }

    /// Sets or clears the floor under a region's HPA (clamped to the deployment's bounds).
    pub fn set_hpa_min_replicas(
        &mut self,
        service: usize,
        region: Region,
        min: Option<u32>,
    ) -> Result<(), ServiceSimError> {
        let spec = self.spec(service)?;
        let min = min.map(|m| m.clamp(spec.min_replicas[region], spec.max_replicas[region]));
        let state = &mut self.states[service];
        if state.regions[region].hpa_min != min {
            state.regions[region].hpa_min = min;
            record(&mut self.journals[service], state.snapshot(self.now_ms));
        }
        Ok(())
    }

    /// Carries out one action now.
    pub fn apply(&mut self, action: &Action) -> Result<(), ServiceSimError> {
        match *action {
            Action::SetReplicas {
                service,
                region,
                replicas,
            } => self.set_replicas(service, region, replicas).map(|_| ()),
            Action::SetWeights { service, weights } => {
                self.set_weights(service, weights).map(|_| ())
            }
            Action::SetThrottle { service, throttle } => self.set_throttle(service, throttle),
            Action::SetHpaMinReplicas {
                service,
                region,
                min,
            } => self.set_hpa_min_replicas(service, region, min),
        }
    }

    /// The fleet now.
    pub fn observe_now(&self) -> FleetObservation {
        let mut out = FleetObservation::default();
        self.observe_now_into(&mut out);
        out
    }

    /// The fleet now, into a buffer that is reused from tick to tick.
    pub fn observe_now_into(&self, out: &mut FleetObservation) {
        out.at = self.now();
        out.services.clear();
        out.services.extend(
            self.states
                .iter()
                .enumerate()
                .map(|(i, s)| self.evaluate(i, &s.snapshot(self.now_ms))),
        );
    }

    /// The fleet as it was at `t`, anywhere from the first simulated instant to the present.
    pub fn observe(&self, t: DateTime<Utc>) -> Result<FleetObservation, ServiceSimError> {
        let t_ms = self.check_past(t)?;
        Ok(FleetObservation {
            at: t,
            services: (0..self.states.len())
                .map(|i| self.evaluate(i, &self.snapshot_at(i, t_ms).with_time(t_ms)))
                .collect(),
        })
    }

    /// One service as it was at `t` (from the first simulated instant to the present).
    pub fn observe_service(
        &self,
        service: usize,
        t: DateTime<Utc>,
    ) -> Result<ServiceObservation, ServiceSimError> {
        self.spec(service)?;
        let t_ms = self.check_past(t)?;
        Ok(self.evaluate(service, &self.snapshot_at(service, t_ms).with_time(t_ms)))
    }

    fn check_past(&self, t: DateTime<Utc>) -> Result<i64, ServiceSimError> {
        let t_ms = t.timestamp_millis();
        if t_ms > self.now_ms {
            return Err(ServiceSimError::Future {
                now: self.now(),
                requested: t,
            });
        }
        if t_ms < self.begin_ms {
            return Err(ServiceSimError::BeforeHistory {
                begins: self.history_begins(),
                requested: t,
            });
        }
        Ok(t_ms)
    }

    /// The state in force at `t_ms` (within the simulated range).
    fn snapshot_at(&self, service: usize, t_ms: i64) -> Snapshot {
        let journal = &self.journals[service];
        let after = journal.partition_point(|s| s.t_ms <= t_ms);
        journal[after.saturating_sub(1)]
    }

    /// Visits one service's observations at `times` (ascending, within the simulated
    /// range), walking its journal once.
    pub(super) fn for_each_at(
        &self,
        service: usize,
        times: impl Iterator<Item = i64>,
        mut visit: impl FnMut(i64, &ServiceObservation),
    ) {
        let journal = &self.journals[service];
        let mut cursor = None;
        for t_ms in times {
            let cursor = cursor.get_or_insert_with(|| {
                journal
                    .partition_point(|s| s.t_ms <= t_ms)
                    .saturating_sub(1)
            });
            while *cursor + 1 < journal.len() && journal[*cursor + 1].t_ms <= t_ms {
                *cursor += 1;
            }
            let seen = self.evaluate(service, &journal[*cursor].with_time(t_ms));
            visit(t_ms, &seen);
        }
    }

    /// What a service looks like under `state` at `state.t_ms`: the one place demand, state
    /// and the queueing model meet.
    fn evaluate(&self, service: usize, state: &Snapshot) -> ServiceObservation {
        let spec = &self.services()[service];
        let t_ms = state.t_ms;
        let offered = self.model.demand_ms(service, t_ms);
        let admitted = state.throttle.map_or(offered, |t| t.admit(offered));
        let background = self.config.background_error_percent / 100.0;
        let cap = self.config.latency_cap_ms;
        let region = |r: Region| {
            let (capacity_factor, latency_factor) = self.model.degradation_ms(service, r, t_ms);
            let load = admitted * state.weights[r];
            let ready = state.ready[r];
            let base = spec.base_latency_ms * latency_factor;
            let capacity = f64::from(ready) * spec.saturation_rps() * capacity_factor;
            let (served, latency, rho) = if ready == 0 {
                (0.0, cap, 0.0)
            } else if load <= capacity * RHO_MAX {
                let rho = load / capacity;
                (load, (base / (1.0 - rho)).min(cap), rho)
            } else {
                (capacity * RHO_MAX, cap, RHO_MAX)
            };
            let failed = load - served;
            RegionObservation {
                offered_rps: load,
                served_rps: served,
                failed_rps: failed,
                latency_p99_ms: latency,
                error_percent: if load > 0.0 {
                    100.0 * (failed + background * served) / load
                } else {
                    0.0
                },
                cpu_percent: 100.0 * rho,
                replicas: ready,
                replicas_desired: state.desired[r],
                min_replicas: spec.min_replicas[r],
                max_replicas: spec.max_replicas[r],
                hpa_min_replicas: state.hpa_min[r],
                weight: state.weights[r],
            }
        };
        let regions = PerRegion {
            primary: region(Region::Primary),
            secondary: region(Region::Secondary),
        };
        let both = [&regions.primary, &regions.secondary];
        let served: f64 = both.iter().map(|r| r.served_rps).sum();
        let failed: f64 = both.iter().map(|r| r.failed_rps).sum();
        let throttled = offered - admitted;
        let replicas = regions.primary.replicas + regions.secondary.replicas;
        let busy: f64 = both
            .iter()
            .map(|r| r.cpu_percent * f64::from(r.replicas))
            .sum();
        let latency = both
            .iter()
            .filter(|r| admitted > 0.0 && r.offered_rps >= P99_SHARE * admitted)
            .map(|r| r.latency_p99_ms)
            .fold(f64::NAN, f64::max);
        ServiceObservation {
            service,
            offered_rps: offered,
            served_rps: served,
            throttled_rps: throttled,
            failed_rps: failed,
            // Nothing admitted: an idle service's latency.
            latency_p99_ms: if latency.is_nan() {
                spec.base_latency_ms
            } else {
                latency
            },
            error_percent: if offered > 0.0 {
                100.0 * (throttled + failed + background * served) / offered
            } else {
                0.0
            },
            cpu_percent: if replicas > 0 {
                busy / f64::from(replicas)
            } else {
                0.0
            },
            replicas,
            replicas_desired: regions.primary.replicas_desired + regions.secondary.replicas_desired,
            throttle: state.throttle,
            regions,
        }
    }
}

impl Snapshot {
    /// The same state, seen at another instant.
    fn with_time(mut self, t_ms: i64) -> Self {
        self.t_ms = t_ms;
        self
    }
}

/// Journals a change; several changes at one instant keep only the last.
fn record(journal: &mut Vec<Snapshot>, snapshot: Snapshot) {
    match journal.last_mut() {
        Some(last) if last.t_ms == snapshot.t_ms => *last = snapshot,
        _ => journal.push(snapshot),
    }
}

#[cfg(test)]
impl ServiceSim {
    /// Journal entries over the fleet, to keep an eye on memory.
    pub(super) fn journal_len(&self) -> usize {
        self.journals.iter().map(Vec::len).sum()
    }
}
