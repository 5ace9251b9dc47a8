//! Decide: one Rego evaluation per target, on everything the stages before learned and the
//! target's history; a policy that fails holds the target (fail closed).

use std::collections::BTreeMap;

use setpoint_core::{
    Classification, Decision, FeatureVector, HistoryView, LoopInfo, PolicyFeature, PolicyInput,
    Proposal, Target, TargetHistory,
};
use setpoint_decide::PolicyEngine;
use tracing::info_span;

use super::{CycleContext, Prior, Proposed, TargetRun};

/// A target with the policy's decision.
pub struct Decided {
    /// The target's run; its entry holds the policy input, output and decision.
    pub run: TargetRun,
    /// The proposals the policy chose among.
    pub proposals: Vec<Proposal>,
    /// The decision.
    pub decision: Decision,
}

/// Evaluates the loop's policy for one target. The entry records the input, the raw output,
/// the decision, how long it took and, when the policy failed, why.
pub fn decide(
    context: &CycleContext<'_>,
    engine: &mut PolicyEngine,
    proposed: Proposed,
    prior: &Prior,
) -> Decided {
    let Proposed {
        mut run,
        features,
        classification,
        proposals,
    } = proposed;
    let mut input = policy_input(
        context,
        &run.entry.target,
        &features,
        &classification,
        &prior.history,
        proposals,
    );
    input.review = prior.review.clone();
    let entry = &mut run.entry;
    entry.policy_input = serde_json::to_value(&input).ok();
    let started = std::time::Instant::now();
    let evaluation = {
        let _span = info_span!(parent: &run.span, "decide").entered();
        engine.decide(&input)
    };
    entry.policy_seconds = Some(started.elapsed().as_secs_f64());
    if let Some(error) = &evaluation.error {
        let _entered = run.span.enter();
        tracing::warn!(%error, "policy failed; holding");
    }
    entry.policy_error = evaluation.error;
    entry.policy_output = evaluation.output;
    let decision = evaluation.decision;
    let span = &run.span;
    span.record("setpoint.verdict", decision.verdict.as_str());
    let codes: Vec<&str> = decision.reasons.iter().map(|r| r.code.as_str()).collect();
    span.record("setpoint.reason_codes", codes.join(","));
    if let Some(chosen) = decision.chosen(&input.proposals) {
        span.record("setpoint.proposal", chosen.summary.as_str());
    }
    entry.decision = Some(decision.clone());
    Decided {
        run,
        proposals: input.proposals,
        decision,
    }
}

/// The policy's input document for one target.
pub fn policy_input(
    context: &CycleContext<'_>,
    target: &Target,
    features: &FeatureVector,
    classification: &Classification,
    history: &TargetHistory,
    proposals: Vec<Proposal>,
) -> PolicyInput {
    let now = context.now;
    let features: BTreeMap<String, PolicyFeature> = features
        .features
        .iter()
        .map(|f| {
            (
                f.name.clone(),
                PolicyFeature {
                    value: f.value,
                    coverage: f.coverage,
                },
            )
        })
        .collect();
    let previous = history.classes.len().saturating_sub(1);
    let view = HistoryView {
        first_managed_at: history.first_managed_at,
        managed_days: (now - history.first_managed_at).num_days(),
        stable_cycles: history.stable_cycles,
        classes: history.classes[..previous].to_vec(),
        last_action: history.last_action.clone(),
        days_since_last_action: history
            .last_action
            .as_ref()
            .map(|a| (now - a.at).num_days()),
    };
    let lp = context.lp;
    PolicyInput {
        target: target.clone(),
        features,
        classification: classification.clone(),
        history: view,
        proposals,
        now,
        now_ns: now.timestamp_nanos_opt().unwrap_or(i64::MAX),
        mode: context.mode,
        loop_info: LoopInfo {
            name: lp.config.name.to_string(),
            plugin: context.plugin_label.clone(),
            cycle: context.cycle,
        },
        bounds: lp.bounds,
        review: None,
    }
}
