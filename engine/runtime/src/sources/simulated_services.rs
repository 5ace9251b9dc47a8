//! The embedded simulated service fleet as a source kind, for fast loops.
//!
//! The fleet's present begins at the first query's end (the first tick's time), after two
//! weeks of simulated history; each later query steps it on to that query's end, the
//! reactive HPA-style baseline scaling it meanwhile — the loop reading it observes (in
//! dry-run, it does not act on the simulation; `setpoint sim fast-loop` runs the loop in
//! closed loop). Surges, degradations and injected anomalies follow the fleet's default
//! schedule, from its present.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use setpoint_observe::services::{HpaBaseline, ServiceFleetConfig, ServiceSim, run_closed_loop};
use setpoint_observe::{BoxFuture, MetricSource, ObserveError, QueryResult, RangeQuery};

use super::{SourceContext, SourceSpec};

/// `kind: simulated_services`: the embedded, deterministic simulated service fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatedServicesConfig {
    /// Seed of the simulation: the same seed gives the same services and traffic.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// How many services (`svc-0001`, …).
    #[serde(default = "default_services")]
    pub services: std::num::NonZeroUsize,
}

fn default_seed() -> u64 {
    42
}

fn default_services() -> std::num::NonZeroUsize {
    std::num::NonZeroUsize::new(20).unwrap_or(std::num::NonZeroUsize::MIN)
}

impl Default for SimulatedServicesConfig {
    fn default() -> Self {
        Self {
            seed: default_seed(),
            services: default_services(),
        }
    }
}

impl SourceSpec for SimulatedServicesConfig {
    const KIND: &'static str = "simulated_services";

    fn describe(&self) -> String {
        format!(
            "simulated_services(seed {}, {} services)",
            self.seed, self.services
        )
    }

    fn seed(&self) -> Option<u64> {
        Some(self.seed)
    }

    fn build(&self, _context: &SourceContext<'_>) -> Result<Arc<dyn MetricSource>, ObserveError> {
        Ok(Arc::new(SimulatedServices {
            name: self.describe(),
            config: self.clone(),
            world: Mutex::new(None),
        }))
    }
}

/// The simulation, created at the first query.
struct World {
    sim: ServiceSim,
    baseline: HpaBaseline,
}

/// The source: the simulation behind a lock, stepped on by queries.
struct SimulatedServices {
    name: String,
    config: SimulatedServicesConfig,
    world: Mutex<Option<World>>,
}

/// How often the baseline acts while the world steps between queries (the HPA's sync period).
const BASELINE_TICK: TimeDelta = TimeDelta::seconds(15);

impl SimulatedServices {
    fn failure(&self, query: &RangeQuery, cause: impl std::fmt::Display) -> ObserveError {
        ObserveError::InvalidQuery {
            source_name: self.name.clone(),
            metric: query.metric.clone(),
            message: cause.to_string(),
        }
    }

    fn answer(&self, query: &RangeQuery) -> Result<QueryResult, ObserveError> {
        let mut world = self
            .world
            .lock()
            .map_err(|_| self.failure(query, "the simulation was poisoned by a panic"))?;
        // The last instant the query may see: its end is exclusive.
        let until: DateTime<Utc> = query.end - TimeDelta::milliseconds(1);
        if world.is_none() {
            let start = until
                .duration_trunc(TimeDelta::minutes(1))
                .map_err(|e| self.failure(query, e))?;
            let config =
                ServiceFleetConfig::new(self.config.seed, self.config.services.get(), start);
            let sim = ServiceSim::new(config).map_err(|e| self.failure(query, e))?;
            let baseline = sim.baseline();
            *world = Some(World { sim, baseline });
        }
        let Some(world) = world.as_mut() else {
            return Err(self.failure(query, "the simulation did not start"));
        };
        if until > world.sim.now() {
            run_closed_loop(&mut world.sim, &mut world.baseline, until, BASELINE_TICK)
                .map_err(|e| self.failure(query, e))?;
        }
        world.sim.query(query)
    }
}

impl MetricSource for SimulatedServices {
    fn name(&self) -> &str {
        &self.name
    }

    fn discover<'a>(
        &'a self,
        _technology: &'a str,
    ) -> BoxFuture<'a, Result<Vec<setpoint_core::Target>, ObserveError>> {
        // Services are found by the series the loop's queries return.
        Box::pin(async { Ok(Vec::new()) })
    }

    fn query_range<'a>(
        &'a self,
        query: &'a RangeQuery,
    ) -> BoxFuture<'a, Result<QueryResult, ObserveError>> {
        Box::pin(async move { self.answer(query) })
    }
}
