//! Classify: the loop's classifier (its promoted model, or the bootstrap heuristics) gives
//! each target `scale_down`, `remain` or `scale_up`, with a confidence and an explanation.

use setpoint_core::{Classification, FeatureVector};
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
