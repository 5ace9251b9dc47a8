//! The checks on a plugin's `features()` and `propose()` answers (`setpoint_plugin_host::
//! fuzzing`: output bounds, then the contract) on answers written as JSON — a number may be
//! the string "NaN", "inf" or "-inf", which JSON cannot carry. Asserts that a feature vector
//! is accepted exactly when it fits the schema, the bounds and the ranges, and that every
//! accepted proposal is declared, unique, sized within bounds, in its direction, derived from
//! its operations and passes `Proposal::check`.
//!
//! The checks are in `fuzz/checks/plugin_output.rs`, shared with the suite's seed replay.

#![no_main]

#[path = "../checks/plugin_output.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
