//! The Rego output decoder (`setpoint_decide::validate_output`) on any JSON value, for the
//! input of the policy test `cooldown-hold` (one `scale_down` proposal). Asserts that an
//! accepted decision has a reason, that `act` and `review` choose a proposal the target has,
//! that the decision is the output read back (nothing invented or dropped), and that a refusal
//! names the rule.
//!
//! The checks are in `fuzz/checks/policy_output.rs`, shared with the suite's seed replay.

#![no_main]

#[path = "../checks/policy_output.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
