//! Closed-loop runs and their scores: any controller over the same traffic, judged the same
//! way.

use chrono::{DateTime, TimeDelta, Utc};

use super::model::{Action, FleetObservation, ServiceSim};
use super::{ServiceSimError, to_time};

/// What a run cost and how it served, for one service or a whole fleet.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ServiceScore {
    /// Minutes with p99 above the fleet's SLO (summed over services for a fleet).
    pub breach_minutes: f64,
    /// Replicas asked for (ready or starting) × hours.
    pub replica_hours: f64,
    /// Requests offered.
    pub offered_requests: f64,
    /// Requests served.
    pub served_requests: f64,
    /// Requests rejected by a throttle.
    pub throttled_requests: f64,
    /// Requests that failed for lack of capacity.
    pub failed_requests: f64,
}

impl std::ops::Sub for ServiceScore {
    type Output = ServiceScore;

    /// What accrued between two cumulative scores (`later − earlier`).
    fn sub(self, earlier: Self) -> Self {
        Self {
            breach_minutes: self.breach_minutes - earlier.breach_minutes,
            replica_hours: self.replica_hours - earlier.replica_hours,
            offered_requests: self.offered_requests - earlier.offered_requests,
            served_requests: self.served_requests - earlier.served_requests,
            throttled_requests: self.throttled_requests - earlier.throttled_requests,
            failed_requests: self.failed_requests - earlier.failed_requests,
        }
    }
}

impl std::ops::AddAssign for ServiceScore {
    fn add_assign(&mut self, other: Self) {
        self.breach_minutes += other.breach_minutes;
        self.replica_hours += other.replica_hours;
        self.offered_requests += other.offered_requests;
        self.served_requests += other.served_requests;
        self.throttled_requests += other.throttled_requests;
        self.failed_requests += other.failed_requests;
    }
}

/// Anything that steers the fleet: the baseline HPA, a predictive loop, a test's oracle.
pub trait Controller {
    /// Name for reports.
    fn name(&self) -> &str;

    /// Called every tick with the fleet as observed at `now`; pushes what to do now.
    fn tick(&mut self, now: DateTime<Utc>, observed: &FleetObservation, actions: &mut Vec<Action>);
}

/// A controller that never acts: replicas stay where history left them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Hold;

impl Controller for Hold {
    fn name(&self) -> &str {
        "hold"
    }

    fn tick(&mut self, _: DateTime<Utc>, _: &FleetObservation, _: &mut Vec<Action>) {}
}

/// An action carried out in a run, and when: to tell whether a controller acted ahead of
/// an event or after it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AppliedAction {
    /// When it was applied.
    pub at: DateTime<Utc>,
    /// What was done.
    pub action: Action,
}

/// An action the simulation refused (the run goes on).
#[derive(Debug, Clone, PartialEq)]
pub struct ActionFailure {
    /// When it was tried.
    pub at: DateTime<Utc>,
    /// What was tried.
    pub action: Action,
    /// Why it was refused.
    pub error: ServiceSimError,
}

/// The outcome of [`run_closed_loop`].
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    /// The controller's name.
    pub controller: String,
    /// Start of the scored interval.
    pub from: DateTime<Utc>,
    /// End of the scored interval.
    pub to: DateTime<Utc>,
    /// Per service, by index.
    pub services: Vec<ServiceScore>,
    /// Over the fleet.
    pub total: ServiceScore,
    /// Actions carried out, in order.
    pub actions: Vec<AppliedAction>,
    /// Actions refused.
    pub actions_refused: u64,
    /// The first refusals (at most 100), to say why.
    pub refusals: Vec<ActionFailure>,
}

impl std::fmt::Display for RunReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = &self.total;
        write!(
            f,
            "{}: {} → {}, {} services: {:.1} breach-minutes, {:.1} replica-hours, \
             {:.0} throttled and {:.0} failed of {:.0} requests, {} actions ({} refused)",
            self.controller,
            self.from,
            self.to,
            self.services.len(),
            t.breach_minutes,
            t.replica_hours,
            t.throttled_requests,
            t.failed_requests,
            t.offered_requests,
            self.actions.len(),
            self.actions_refused,
        )
    }
}

/// Runs `controller` on `sim` from its present to `until`, one tick every `tick`: observe,
/// let the controller act, apply its actions, step. Refused actions are counted, not fatal.
/// The report scores only this interval, so runs from clones of one simulation compare
/// controllers on identical traffic.
pub fn run_closed_loop(
    sim: &mut ServiceSim,
    controller: &mut dyn Controller,
    until: DateTime<Utc>,
    tick: TimeDelta,
) -> Result<RunReport, ServiceSimError> {
    let from = sim.now();
    if until < from {
        return Err(ServiceSimError::TimeWentBack {
            now: from,
            requested: until,
        });
    }
    if tick <= TimeDelta::zero() {
        return Err(ServiceSimError::InvalidConfig {
            problems: vec![format!("tick: {tick} is not positive")],
        });
    }
    let before = sim.scores().to_vec();
    let mut observed = FleetObservation::default();
    let mut actions = Vec::new();
    let mut applied = Vec::new();
    let mut refused = 0;
    let mut refusals = Vec::new();
    let (until_ms, tick_ms) = (until.timestamp_millis(), tick.num_milliseconds());
    while sim.now_ms() < until_ms {
        sim.observe_now_into(&mut observed);
        actions.clear();
        controller.tick(observed.at, &observed, &mut actions);
        for action in &actions {
            match sim.apply(action) {
                Ok(()) => applied.push(AppliedAction {
                    at: observed.at,
                    action: *action,
                }),
                Err(error) => {
                    refused += 1;
                    if refusals.len() < 100 {
                        refusals.push(ActionFailure {
                            at: observed.at,
                            action: *action,
                            error,
                        });
                    }
                }
            }
        }
        sim.step_to(to_time((sim.now_ms() + tick_ms).min(until_ms)))?;
    }
    let services: Vec<ServiceScore> = sim
        .scores()
        .iter()
        .zip(&before)
        .map(|(&after, &before)| after - before)
        .collect();
    let mut total = ServiceScore::default();
    for &s in &services {
        total += s;
    }
    Ok(RunReport {
        controller: controller.name().to_string(),
        from,
        to: sim.now(),
        services,
        total,
        actions: applied,
        actions_refused: refused,
        refusals,
    })
}
