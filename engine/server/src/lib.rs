//! What `setpoint` serves and decides on behalf of people: the review workflow (recording a
//! decision, re-checking an approval on fresh data), the HTTP server of `setpoint serve` (the
//! review page, its JSON API, `/metrics`), the HTML report and the trace of a decision.
//!
//! `setpoint review` and the web page approve the same way, and the page and the report draw
//! the same chart, so these live here once and the binary only parses arguments and prints.
//! axum, askama and prometheus-client are kept to this crate. Errors are typed
//! ([`review::ReviewError`], [`serve::ServeError`]) so that callers choose what to do (an exit
//! status, an HTTP status) by matching on them.

pub mod explain;
pub mod html;
pub mod review;
pub mod serve;
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
