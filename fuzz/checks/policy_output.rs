//! The Rego output decoder (`setpoint_decide::validate_output`) on any JSON value, for the
//! input of the policy test `cooldown-hold` (one `scale_down` proposal). Asserts that an
//! accepted decision has a reason, that `act` and `review` choose a proposal the target has,
//! that the decision is the output read back (nothing invented or dropped), and that a refusal
//! names the rule.
//!
//! The check itself: `fuzz/fuzz_targets/policy_output.rs` drives it under libFuzzer, and
//! `tests/it/fuzz_seeds.rs` replays every seed of `fuzz/corpus/policy_output` through it in the suite.

use std::sync::LazyLock;

use serde_json::Value as Json;
use setpoint_core::{Decision, PolicyInput, Verdict};
use setpoint_decide::{ENTRY_POINT, validate_output};

static INPUT: LazyLock<PolicyInput> = LazyLock::new(|| {
    serde_json::from_str(include_str!(
        "../../policies/tests/cooldown-hold/input.json"
    ))
    .unwrap_or_else(|e| panic!("the policy test input: {e}"))
});

/// Runs one input through the target's checks; panics when one does not hold.
pub fn check(data: &[u8]) {
    let Ok(output) = serde_json::from_slice::<Json>(data) else {
        return;
    };
    let input = &*INPUT;
    match validate_output(&output, input) {
        Ok(decision) => {
            assert!(output.is_object(), "a decision from {output}");
            assert!(!decision.reasons.is_empty(), "a decision without a reason");
            if matches!(decision.verdict, Verdict::Act | Verdict::Review) {
                let chosen = decision.chosen(&input.proposals);
                assert!(
                    chosen.is_some(),
                    "{} of a proposal the target lacks",
                    decision.verdict
                );
            }
            // The decision is the output, read back: serialising it and decoding that again
            // gives the same decision.
            let again: Decision = serde_json::to_value(&decision)
                .and_then(serde_json::from_value)
                .unwrap_or_else(|e| panic!("{decision:?} does not round-trip: {e}"));
            assert_eq!(again, decision);
        }
        Err(message) => {
            assert!(
                message.contains(ENTRY_POINT),
                "refusal without the rule: {message:?}"
            );
        }
    }
}
