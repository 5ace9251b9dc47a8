//! How a loop acts: its actuators and how enforce mode retries and resumes.

use super::*;

/// One actuator of a loop (registered in `setpoint_act`, beside each actuator).
pub use setpoint_act::ActuatorConfig;

/// How a loop in `enforce` mode executes its plans.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActConfig {
    /// Retries of an actuator call that failed on the way (transport error, server error);
    /// a refused, conflicting or unverified change is reported at once instead. The count is
    /// per intent: its actuators, and a run resumed after a crash, share it.
    #[serde(default = "default_act_retries")]
    pub retries: u32,
    /// The first wait before a retry; it doubles on each retry up to `max_backoff`. Each wait
    /// is drawn at random from the upper half of that value, so that retries do not arrive in
    /// step.
    #[serde(default = "default_act_backoff")]
    pub backoff: HumanDuration,
    /// The longest wait between retries.
    #[serde(default = "default_act_max_backoff")]
    pub max_backoff: HumanDuration,
    /// After a crash, an intent left pending is finished at start-up if it is at most this
    /// old; an older one is only verified (the world has moved on: the next cycle decides
    /// again) and marked done if reading back shows it happened, else cancelled.
    #[serde(default = "default_resume_within")]
    pub resume_within: HumanDuration,
}

fn default_act_retries() -> u32 {
    3
}
fn default_act_backoff() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}
fn default_act_max_backoff() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}
fn default_resume_within() -> HumanDuration {
    HumanDuration(Duration::from_secs(3600))
}

impl Default for ActConfig {
    fn default() -> Self {
        Self {
            retries: default_act_retries(),
            backoff: default_act_backoff(),
            max_backoff: default_act_max_backoff(),
            resume_within: default_resume_within(),
        }
    }
}
