//! Classify: the loop's classifier (its promoted model, or the bootstrap heuristics) gives
//! each target `scale_down`, `remain` or `scale_up`, with a confidence and an explanation.
//!
//! Whatever the classifier says, a target one of whose dimensions climbs every week and is
//! projected by the safety floor to reach saturation ([`setpoint_core::SATURATED`] of its size)
//! within the floor's horizon, or is there already, is `scale_up`
//! (`projected_saturation`): a classifier learns from the degradations its history holds, and
//! a workload climbing towards a size it never reached before has none to learn from. And a
//! `scale_down` the floor forbids on every dimension (a thin week, unknown peaks or size) is
//! `remain` (`floor_holds`), so that the class says what will happen, and why.

use setpoint_core::{Class, Classification, Evidence, FeatureVector, SafetyFloor};
use tracing::info_span;

use super::{Fingerprinted, TargetRun};
use crate::training::ActiveClassifier;

/// A target with its class.
pub struct Classified {
    /// The target's run; its entry holds the features and the classification.
    pub run: TargetRun,
    /// The features.
    pub features: FeatureVector,
    /// The classification.
    pub classification: Classification,
}

/// Classifies one target. When the bootstrap heuristics stand in for a missing model, the
/// explanation says so.
pub fn classify(classifier: &ActiveClassifier, fingerprinted: Fingerprinted) -> Classified {
    let Fingerprinted { mut run, features } = fingerprinted;
    let classification = {
        let _span = info_span!(parent: &run.span, "classify").entered();
        let mut classification = classifier.classifier.classify(&features);
        if let Some(note) = &classifier.fallback {
            let rule = &mut classification.explanation.rule;
            if !rule.is_empty() {
                rule.push_str("; ");
            }
            rule.push_str(note);
        }
        if let Some(floor) = &run.entry.floor {
            escalate_projected_saturation(&mut classification, floor);
            hold_what_the_floor_forbids(&mut classification, floor);
        }
        classification
    };
    let span = &run.span;
    span.record("setpoint.class", classification.class.as_str());
    span.record("setpoint.confidence", classification.confidence);
    span.record("setpoint.model", classification.model.as_str());
    span.record(
        "setpoint.model_version",
        classification.model_version.as_str(),
    );
    run.entry.classifier_fallback = classifier.fallback.clone();
    run.entry.classification = Some(classification.clone());
    Classified {
        run,
        features,
        classification,
    }
}

/// Makes `classification` `scale_up` when the floor projects a dimension to saturate within
/// its horizon, keeping what the classifier said in the explanation. The confidence is the
/// projection's, not a probability: 1.0 for a dimension at its size now, 0.8 at the horizon.
fn escalate_projected_saturation(classification: &mut Classification, floor: &SafetyFloor) {
    let Some((dimension, weeks)) = floor.projected_saturation() else {
        return;
    };
    if classification.class == Class::ScaleUp {
        return;
    }
    let horizon = floor.settings.horizon_weeks.max(f64::EPSILON);
    let said = format!(
        "{} said {} ({:.2}: {})",
        classification.model,
        classification.class,
        classification.confidence,
        classification.explanation.rule
    );
    classification.class = Class::ScaleUp;
    classification.confidence = (1.0 - 0.2 * (weeks / horizon)).clamp(0.8, 1.0);
    classification.explanation.code = "projected_saturation".to_string();
    classification.explanation.rule = format!(
        "{}'s peak is projected to reach {:.0} % of its size in {weeks:.1} weeks (within the floor's {horizon:.0}-week horizon): scale up ahead of it; {said}",
        dimension.metric(),
        setpoint_core::SATURATED * 100.0
    );
    classification.explanation.evidence.insert(
        0,
        Evidence {
            feature: format!("{}_weeks_to_saturation", dimension.metric()),
            value: Some(weeks),
            test: format!("<= {horizon:.0} weeks"),
            held: true,
        },
    );
}

/// Makes a `scale_down` that the floor forbids on every dimension `remain`, naming why.
fn hold_what_the_floor_forbids(classification: &mut Classification, floor: &SafetyFloor) {
    if classification.class != Class::ScaleDown || floor.allows_any_shrink() {
        return;
    }
    let why: Vec<String> = floor
        .dimensions
        .iter()
        .map(|d| d.describe(&floor.settings))
        .collect();
    classification.class = Class::Remain;
    classification.explanation.code = "floor_holds".to_string();
    classification.explanation.rule = format!(
        "would scale down ({}: {}), but the safety floor lets no dimension shrink ({})",
        classification.model,
        classification.explanation.rule,
        why.join("; ")
    );
}
