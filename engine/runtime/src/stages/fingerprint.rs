//! Fingerprint: the plugin turns each target's series into its named feature vector, for the
//! whole fleet in batch calls (crossing the sandbox once per batch, not per target); the engine
//! appends each ratio metric's peak features (`<metric>_p99`, …, see
//! [`setpoint_learn::peaks`]) from the weeks it observed, so that a model can see what weekly
//! means hide.

use setpoint_core::FeatureVector;
use setpoint_plugin_host::{FeaturesInput, Plugin};
use tracing::info_span;

use super::{CycleContext, Observed, Staged, TargetError, TargetRun};

/// A target with its features.
pub struct Fingerprinted {
    /// The target's run; its entry holds the features.
    pub run: TargetRun,
    /// The features.
    pub features: FeatureVector,
}

/// Starts each observed target's run and asks `plugin` for the fleet's features. Each
/// target's `features` span covers the stage's batch calls.
pub fn fingerprint(
    context: &CycleContext<'_>,
    plugin: &Plugin,
    observed: Vec<Observed>,
) -> Vec<Staged<Fingerprinted>> {
    let mut peak_features = Vec::with_capacity(observed.len());
    let (runs, series): (Vec<TargetRun>, Vec<_>) = observed
        .into_iter()
        .map(|o| {
            peak_features.push(setpoint_learn::peaks::features(
                &o.weeks,
                setpoint_learn::dataset::WINDOW_WEEKS as usize,
            ));
            (
                TargetRun::begin(context, o.target, o.issues, o.floor),
                o.series,
            )
        })
        .unzip();
    let features = {
        let inputs: Vec<FeaturesInput<'_>> = runs
            .iter()
            .zip(&series)
            .map(|(run, series)| FeaturesInput {
                target: &run.entry.target,
                series,
            })
            .collect();
        let _stage: Vec<tracing::Span> = runs
            .iter()
            .map(|run| info_span!(parent: &run.span, "features", setpoint.batch_targets = inputs.len()))
            .collect();
        plugin.features_batch(&context.window, &inputs)
    };
    // The host answers every target it was given, in order (a failed batch is re-run one
    // target per call); a missing answer is still that target's failure, never a panic.
    let mut features = features.into_iter();
    runs.into_iter()
        .zip(peak_features)
        .map(|(mut run, peaks)| match features.next() {
            Some(Ok(mut features)) => {
                features.features.extend(peaks);
                run.entry.features = features.clone();
                Ok(Fingerprinted { run, features })
            }
            Some(Err(error)) => Err(run.fail(TargetError::Features(error))),
            None => {
                let target = run.entry.target.id.clone();
                Err(run.fail(TargetError::NoAnswer { target }))
            }
        })
        .collect()
}
