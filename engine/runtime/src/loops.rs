//! The kinds of loop a configuration can name, registered in one list.
//!
//! A loop kind is one module composing the stages of [`crate::stages`] into a cycle (as
//! [`crate::cycle`] does for the weekly right-sizing loop), and one line in the
//! [`loop_kinds!`] list below: that makes it a `kind:` of a loop in the configuration and
//! routes the loop's cycles — scheduled, `run --once`, and one-target re-checks — to it.

use std::path::Path;

use chrono::{DateTime, Utc};
use setpoint_core::SharedClock;

use crate::{CycleReport, LoopRuntime, Result, Shutdown};

/// Registers the loop kinds: each `Variant => module::run` line adds the `kind:` named by the
/// variant in snake_case, whose cycles `module::run` carries out. The first is the default.
macro_rules! loop_kinds {
    ($default:ident => $default_run:path $(, $($(#[$doc:meta])* $variant:ident => $run:path),+)? $(,)?) => {
        /// What kind of loop a loop is: which composition of the stages runs its cycles.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum LoopKind {
            /// The weekly right-sizing loop: observe four weeks, fingerprint, classify,
            /// propose, decide, act, record.
            #[default]
            $default,
            $($($(#[$doc])* $variant,)+)?
        }

        /// Runs one cycle of `lp` at `now`, as its kind composes the stages (of one target
        /// only, when `only_target` names it).
        pub(crate) async fn run_cycle(
            lp: &LoopRuntime,
            state_dir: &Path,
            clock: &SharedClock,
            now: DateTime<Utc>,
            only_target: Option<&str>,
            shutdown: &Shutdown,
        ) -> Result<CycleReport> {
            match lp.config.kind {
                LoopKind::$default => {
                    $default_run(lp, state_dir, clock, now, only_target, shutdown).await
                }
                $($(LoopKind::$variant => $run(lp, state_dir, clock, now, only_target, shutdown).await,)+)?
            }
        }
    };
}

loop_kinds! {
    Weekly => crate::cycle::run,
    /// The predictive fast loop: every few seconds, observe each service's recent window,
    /// forecast, detect anomalies, and decide replicas, traffic weights or throttling with
    /// the loop's control policy under setpoint's guard.
    Fast => crate::fast::cycle::run,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_is_weekly_unless_it_says_otherwise_and_unknown_kinds_are_refused() {
        assert_eq!(LoopKind::default(), LoopKind::Weekly);
        assert_eq!(
            serde_yaml::from_str::<LoopKind>("weekly").ok(),
            Some(LoopKind::Weekly)
        );
        let error = serde_yaml::from_str::<LoopKind>("hourly")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            error.contains("hourly") && error.contains("weekly"),
            "{error}"
        );
    }
}
