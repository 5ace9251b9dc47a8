//! The notify tests, one binary: real SMTP and HTTP conversations with small servers that the
//! tests start on 127.0.0.1 and that stop when each test ends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

/// Parsing and checking the `notify:` section.
mod config;
/// Email through a local SMTP sink.
mod email;
/// The webhook through a local HTTP receiver, and both channels together.
mod slack;
