//! What the `setpoint` binary serves and decides on behalf of people: the review workflow
//! (recording a decision, re-checking an approval on fresh data) and the trace of a decision.
//!
//! `setpoint review` and the web page approve the same way, so the workflow lives here once and
//! the binary only parses arguments and prints. Errors are typed ([`review::ReviewError`]) so
//! that callers choose what to do (an exit status, an HTTP status) by matching on them.

pub mod explain;
pub mod review;
mod signal;

pub use signal::spawn_signal_listener;

/// An error and its causes, each once: the engine's errors already quote their source in their
/// message, so a cause is added only when it says something new.
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
