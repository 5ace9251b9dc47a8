//! Propose: the plugin turns each feasible action kind into a concrete, typed plan for every
//! classified target of known size, in batch calls.

use setpoint_core::{Bounds, Classification, FeatureVector, Proposal};
use setpoint_plugin_host::{Plugin, ProposeInput};
use tracing::info_span;

use super::{Classified, Staged, TargetError, TargetRun};

/// A target with the plugin's proposals.
pub struct Proposed {
    /// The target's run; its entry holds the proposals.
    pub run: TargetRun,
    /// The features.
    pub features: FeatureVector,
    /// The classification.
    pub classification: Classification,
    /// Every proposal the plugin made, one per feasible action kind.
    pub proposals: Vec<Proposal>,
}

/// Asks `plugin` for the plans of every target whose size is known, within `bounds`; a
/// target whose size is unknown fails here, since no plan can be made from nothing. Each
/// asked target's `propose` span covers the stage's batch calls.
pub fn propose(
    plugin: &Plugin,
    bounds: &Bounds,
    classified: Vec<Staged<Classified>>,
) -> Vec<Staged<Proposed>> {
    let classified: Vec<Staged<Classified>> = classified
        .into_iter()
        .map(|staged| {
            let c = staged?;
            let size = &c.run.entry.target.resources;
            if size.cpu_millicores == 0 || size.memory_bytes == 0 {
                let target = c.run.entry.target.id.clone();
                return Err(c.run.fail(TargetError::UnknownSize { target }));
            }
            Ok(c)
        })
        .collect();
    let answers = {
        let inputs: Vec<ProposeInput<'_>> = classified
            .iter()
            .flatten()
            .map(|c| ProposeInput {
                target: &c.run.entry.target,
                classification: &c.classification,
                features: &c.features,
            })
            .collect();
        let _stage: Vec<tracing::Span> = classified
            .iter()
            .flatten()
            .map(|c| info_span!(parent: &c.run.span, "propose", setpoint.batch_targets = inputs.len()))
            .collect();
        plugin.propose_batch(&inputs, bounds)
    };
    let mut answers = answers.into_iter();
    classified
        .into_iter()
        .map(|staged| {
            let Classified {
                mut run,
                features,
                classification,
            } = staged?;
            match answers.next() {
                Some(Ok(proposals)) => {
                    run.entry.proposals = proposals.clone();
                    Ok(Proposed {
                        run,
                        features,
                        classification,
                        proposals,
                    })
                }
                Some(Err(error)) => Err(run.fail(TargetError::Propose(error))),
                None => {
                    let target = run.entry.target.id.clone();
                    Err(run.fail(TargetError::NoAnswer { target }))
                }
            }
        })
        .collect()
}
