//! `Config::parse` on any text: it returns a configuration without problems, or a typed error
//! that names the file and says where (position and/or key path) and what is wrong. It never
//! panics and never reads a file.
//!
//! The check itself: `fuzz/fuzz_targets/config.rs` drives it under libFuzzer, and
//! `tests/it/fuzz_seeds.rs` replays every seed of `fuzz/corpus/config` through it in the suite.

use setpoint_runtime::{Config, ConfigError};

const FILE: &str = "fuzz.yaml";

/// Runs one input through the target's checks; panics when one does not hold.
pub fn check(data: &[u8]) {
    // The config is read with `read_to_string`: text that is not UTF-8 never reaches the parser.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text, FILE) {
        Ok(config) => {
            let problems = config.problems();
            assert!(problems.is_empty(), "accepted with problems: {problems:?}");
            assert!(!config.loops.is_empty(), "accepted without loops");
        }
        Err(error) => {
            let shown = error.to_string();
            assert!(shown.starts_with(FILE), "error without the file: {shown:?}");
            match &error {
                ConfigError::Invalid {
                    file,
                    location,
                    path,
                    message,
                } => {
                    assert_eq!(file, FILE);
                    assert!(!message.trim().is_empty(), "no message: {shown:?}");
                    if !location.is_empty() {
                        let numbers: Vec<&str> = location.split(':').skip(1).collect();
                        assert!(
                            location.starts_with(':')
                                && numbers.len() == 2
                                && numbers
                                    .iter()
                                    .all(|n| n.parse::<usize>().is_ok_and(|n| n >= 1)),
                            "location is not :line:column: {location:?}"
                        );
                    }
                    if !path.is_empty() {
                        assert!(
                            path.ends_with(": ") && path.len() > 2,
                            "path is not `key: `: {path:?}"
                        );
                    }
                }
                ConfigError::Inconsistent { file, problems } => {
                    assert_eq!(file, FILE);
                    assert!(!problems.is_empty(), "inconsistent without a problem");
                    for problem in problems {
                        // Every problem starts with the path of what it is about.
                        let (path, what) = problem
                            .split_once(": ")
                            .unwrap_or_else(|| panic!("problem without a path: {problem:?}"));
                        assert!(
                            !path.trim().is_empty() && !what.trim().is_empty(),
                            "problem without a path or a message: {problem:?}"
                        );
                    }
                }
                ConfigError::Read { .. } | ConfigError::Inventory { .. } => {
                    panic!("parse read a file: {shown}")
                }
            }
        }
    }
}
