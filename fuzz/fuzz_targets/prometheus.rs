//! The Prometheus answer decoder (`PrometheusSource::decode_range_answer`) on any body, read
//! three ways: a 200 answer to a raw query, a 200 answer to a weekly summary, and a 503.
//! Asserts what the rest of the engine relies on: series are aligned and in time order, a
//! weekly summary has only finite points in the weeks asked for with a positive count each, a
//! target is never both kept and dropped, and every error names the source and the metric.
//!
//! The checks are in `fuzz/checks/prometheus.rs`, shared with the suite's seed replay.

#![no_main]

#[path = "../checks/prometheus.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
