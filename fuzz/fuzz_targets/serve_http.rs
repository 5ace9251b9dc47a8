//! `setpoint serve`'s HTTP application — the router with its middleware (origin checks, body
//! limits), sign-in, sessions, CSRF values and the form handlers — driven one request at a
//! time over a temporary state directory, without a socket. The directory lives as long as the
//! process, under `$TMPDIR` (scripts/fuzz.sh points it into fuzz/target and cleans it).
//!
//! An input is a request written as text: `METHOD /path`, header lines, an empty line, the
//! body. `{approver}` and `{viewer}` stand for the tokens of an approver and a viewer,
//! `{session}` and `{csrf}` for a fresh approver session and its CSRF value, so the fuzzer
//! reaches what lies behind authentication. Asserts that no request gets a 500 and that the
//! kill switches change only for an approver: with the approver's token, or with the approver's
//! session, its CSRF value and setpoint's own origin.
//!
//! The checks are in `fuzz/checks/serve_http.rs`, shared with the suite's seed replay.

#![no_main]

#[path = "../checks/serve_http.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
