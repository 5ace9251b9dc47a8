//! Propose: the plugin turns each feasible action kind into a concrete, typed plan for every
//! classified target of known size, in batch calls; then every scale-down is held to the
//! target's safety floor.

use setpoint_core::{ActionKind, Bounds, Classification, FeatureVector, Proposal, SafetyFloor};
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
                    let proposals = match run.entry.floor.as_ref() {
                        Some(floor) => {
                            let target = &run.entry.target;
                            let _span = info_span!(parent: &run.span, "floor").entered();
                            hold_to_floor(
                                plugin,
                                bounds,
                                floor,
                                target,
                                &classification,
                                &features,
                                proposals,
                            )
                        }
                        None => proposals,
                    };
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

/// Holds every scale-down in `proposals` to the target's safety floor. A plan that leaves a
/// dimension below it is asked for again within the loop's bounds raised to the floor, so the
/// plugin picks the smallest size that fits (an intermediate size, or one dimension only) with
/// the parameters that follow it; when nothing fits, or the plugin's answer still does not, the
/// scale-down is dropped. Scale-ups pass untouched. Any failure here drops the scale-down:
/// the floor fails closed.
fn hold_to_floor(
    plugin: &Plugin,
    bounds: &Bounds,
    floor: &SafetyFloor,
    target: &setpoint_core::Target,
    classification: &Classification,
    features: &FeatureVector,
    proposals: Vec<Proposal>,
) -> Vec<Proposal> {
    let fits =
        |p: &Proposal| p.action != ActionKind::ScaleDown || floor.violations(&p.after).is_empty();
    if proposals.iter().all(fits) {
        return proposals;
    }
    let violated = |p: &Proposal| {
        floor
            .violations(&p.after)
            .iter()
            .map(|(d, minimum)| {
                format!(
                    "{} {} < {}",
                    d.metric(),
                    d.show(d.size_of(&p.after)),
                    d.show(*minimum)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let retry = if floor.allows_any_shrink() {
        plugin
            .propose(target, classification, features, &floor.scale_down_bounds(bounds))
            .map_err(|error| tracing::warn!(%error, "re-proposing within the safety floor failed; no scale-down"))
            .ok()
            .and_then(|again| again.into_iter().find(|p| p.action == ActionKind::ScaleDown))
            .filter(|p| fits(p))
    } else {
        None
    };
    let mut out = Vec::with_capacity(proposals.len());
    for proposal in proposals {
        if fits(&proposal) {
            out.push(proposal);
            continue;
        }
        let dropped = violated(&proposal);
        match &retry {
            Some(resized) => {
                let mut resized = resized.clone();
                resized.rationale = format!(
                    "{}; resized to the safety floor: the plain step left {dropped}",
                    resized.rationale
                );
                tracing::info!(target = %target.id, %dropped, summary = %resized.summary, "scale-down resized to the safety floor");
                out.push(resized);
            }
            None => {
                tracing::info!(target = %target.id, %dropped, "scale-down dropped: no size above the safety floor is smaller");
            }
        }
    }
    out
}
