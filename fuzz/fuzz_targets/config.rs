//! `Config::parse` on any text: it returns a configuration without problems, or a typed error
//! that names the file and says where (position and/or key path) and what is wrong. It never
//! panics and never reads a file.
//!
//! The checks are in `fuzz/checks/config.rs`, shared with the suite's seed replay.

#![no_main]

#[path = "../checks/config.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
