//! The embedded simulated fleet as a source kind.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use setpoint_observe::{MetricSource, ObserveError, SimulatedFleet};

use super::{SourceContext, SourceSpec};

/// `kind: simulated`: the embedded, deterministic simulated fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatedConfig {
    /// Seed of the simulation: the same seed gives the same fleet and samples.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// About this many targets, the scenarios' proportions scaled up or down (at least one per
    /// scenario), for load tests and demos of a large fleet. Default: each scenario's own count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<std::num::NonZeroUsize>,
}

fn default_seed() -> u64 {
    42
}

impl Default for SimulatedConfig {
    fn default() -> Self {
        Self {
            seed: default_seed(),
            targets: None,
        }
    }
}

impl SourceSpec for SimulatedConfig {
    const KIND: &'static str = "simulated";

    fn describe(&self) -> String {
        match self.targets {
            Some(targets) => format!("simulated(seed {}, {targets} targets)", self.seed),
            None => format!("simulated(seed {})", self.seed),
        }
    }

    fn seed(&self) -> Option<u64> {
        Some(self.seed)
    }

    /// The simulator plays the scenarios the loop's own plugin ships; a plugin that ships
    /// none, for a technology setpoint bundles, gets the bundled plugin's.
    fn build(&self, context: &SourceContext<'_>) -> Result<Arc<dyn MetricSource>, ObserveError> {
        let descriptor = context.descriptor;
        let fleet = if let Some(targets) = self.targets
            && !descriptor.scenarios.is_empty()
        {
            SimulatedFleet::sized(self.seed, descriptor, targets.get())
        } else if descriptor.scenarios.is_empty() {
            crate::bundled_fleet_for(self.seed, &descriptor.technology)
                .unwrap_or_else(|| SimulatedFleet::new(self.seed, descriptor))
        } else {
            SimulatedFleet::new(self.seed, descriptor)
        };
        Ok(Arc::new(fleet))
    }
}
