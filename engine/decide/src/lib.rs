//! The decide stage: one Rego evaluation per target, in-process, failing closed.
//!
//! A policy bundle is a directory of Rego v1 files plus a `data.json` (the default one is
//! `policies/` at the root of the repository, embedded in this crate by [`default_bundle`]).
//! Its entry point, [`ENTRY_POINT`], receives the [`PolicyInput`](setpoint_core::PolicyInput)
//! serialised with serde_json as `input`, and its value is deserialised into a
//! [`Decision`](setpoint_core::Decision). `policies/README.md` is the contract for policy
//! authors.
//!
//! The shape follows measurements of regorus 0.14 made for this project:
//!
//! - **The interpreter, not the RVM.** The RVM turns an error inside a rule into an undefined
//!   rule, which can make a guardrail silently not apply (fail open). The interpreter reports it.
//! - **One prepared engine, reused.** [`PolicyEngine`] parses and prepares once and then only
//!   swaps the input, which is about three times cheaper per decision than a fresh engine. After
//!   an evaluation error it starts the next decision from a pristine clone, so an error affects
//!   only the input that caused it.
//! - **Bounded.** Every evaluation runs under an execution time limit
//!   ([`DEFAULT_TIME_LIMIT`]); a policy that runs away is an error for that target, not a hung loop.
//! - **Fail closed.** [`PolicyEngine::decide`] never errors and never panics: anything but a
//!   well-formed decision becomes [`Decision::policy_error`](setpoint_core::Decision::policy_error).
//!
//! The fast loop's decide stage ([`ControlPolicy`], [`ControlEngine`]) is built the same way
//! from the same pieces: a team's own policy (Rego v0 or v1, its entry point and output shape
//! named by the loop) proposes a typed action, and setpoint's guard (`policies/fast/`, embedded
//! by [`guard_bundle`]) clamps, holds or blocks it. `docs/fast-loop-policy.md` is its contract.

mod bundle;
mod check;
mod control;
mod engine;
mod eval;
mod mapping;
mod testing;

use std::path::PathBuf;
use std::time::Duration;

pub use bundle::{PolicyBundle, default_bundle};
pub use check::UndefinedCall;
pub use control::{
    ControlEngine, ControlPolicy, GUARD_ENTRY_POINT, guard_bundle, load_guard_bundle,
};
#[doc(hidden)]
pub use engine::validate_output;
pub use engine::{PolicyEngine, PolicyEvaluation};
pub use eval::EvalError;
pub use mapping::{MappingError, map_output};
pub use testing::{TestCase, TestKind, TestReport, run_tests};

/// The rule every bundle must define: the decision for one target.
pub const ENTRY_POINT: &str = "data.setpoint.decision";

/// The time one evaluation may take before it is abandoned as a policy error.
///
/// The default policy takes well under a millisecond; this leaves room for larger policies on a
/// loaded machine while keeping a runaway policy from stalling a cycle. Limits are cooperative
/// (one builtin call is one step), so a single expensive builtin can overshoot it.
pub const DEFAULT_TIME_LIMIT: Duration = Duration::from_millis(250);

/// Errors raised while loading a bundle or running its tests.
///
/// Evaluation errors during [`PolicyEngine::decide`] are not errors: they become a `hold` with
/// reason `policy_error`.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The bundle directory does not exist or cannot be listed.
    #[error("policy bundle {}: {source}", dir.display())]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },
    /// The bundle directory holds no `.rego` file.
    #[error("policy bundle {}: no .rego files", dir.display())]
    Empty {
        /// The directory.
        dir: PathBuf,
    },
    /// A file of the bundle (or of a golden case) could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file (data, golden input or expectation) is not valid.
    #[error("{}: {message}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column.
        message: String,
    },
    /// The bundle's data does not have the expected shape (it must be an object, and
    /// `setpoint` and `setpoint.kill_switches`, when present, objects too).
    #[error("policy data: {message}")]
    Data {
        /// What is wrong.
        message: String,
    },
    /// A file does not parse as Rego v1 but does as v0: the loop must say `rego_version: v0`.
    #[error(
        "{message}\n{file} is written in Rego v0 syntax (rules without `if`): set `rego_version: v0` on the loop to load it"
    )]
    NeedsRegoV0 {
        /// The file that failed.
        file: String,
        /// regorus' v1 parse error, starting with `file:line:col`.
        message: String,
    },
    /// A control policy was given no file.
    #[error("no policy files given")]
    NoFiles,
    /// A control policy's action mapping is not valid.
    #[error("action mapping: {}", problems.join("; "))]
    Mapping {
        /// Every problem found.
        problems: Vec<String>,
    },
    /// A Rego file does not parse; the message starts with `file:line:col`.
    #[error("{message}")]
    Syntax {
        /// The file that failed.
        file: String,
        /// regorus' message, which names file:line:col and shows the offending line.
        message: String,
    },
    /// The policies parse but cannot be prepared for evaluation: unsafe variables, bad imports,
    /// or no [`ENTRY_POINT`] rule. (Calls to unknown functions are not found by preparing: see
    /// [`PolicyError::UndefinedFunction`].)
    #[error("{message}")]
    Compile {
        /// regorus' message.
        message: String,
    },
    /// Calls to functions that neither the bundle nor regorus defines, found by
    /// [`PolicyBundle::check`] (and so by [`run_tests`]); the interpreter would only find each
    /// when an evaluation reaches it.
    #[error("{}", calls.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    UndefinedFunction {
        /// Every such call, in file and line order.
        calls: Vec<UndefinedCall>,
    },
}

/// Result type of this crate.
pub type Result<T, E = PolicyError> = std::result::Result<T, E>;

/// Turns a regorus error into `file:line:col: message`, followed by the source excerpt
/// regorus shows when `excerpt` is set.
///
/// regorus renders errors as `--> file:line:col`, an excerpt, then `error: message`; putting the
/// location first makes them read like compiler errors, and the one-line form fits a report.
pub(crate) fn regorus_error(error: &dyn std::fmt::Display, excerpt: bool) -> String {
    let raw = error.to_string();
    let location = raw
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("--> "));
    let message = raw.lines().find_map(|l| l.strip_prefix("error: "));
    match (location, message) {
        (Some(location), Some(message)) => {
            let mut out = format!("{location}: {message}");
            if excerpt {
                for line in raw
                    .lines()
                    .skip_while(|l| !l.trim_start().starts_with("--> "))
                    .skip(1)
                    .take_while(|l| !l.starts_with("error: "))
                {
                    out.push('\n');
                    out.push_str(line);
                }
            }
            out
        }
        _ => raw.trim().to_string(),
    }
}

/// The JSON type name of a value, for messages.
fn json_type(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    /// The runtime moves engines to blocking threads and shares bundles between loops.
    #[test]
    fn engines_and_bundles_cross_threads() {
        fn send<T: Send>() {}
        fn send_sync<T: Send + Sync>() {}
        send::<crate::PolicyEngine>();
        send_sync::<crate::PolicyBundle>();
        send_sync::<crate::PolicyError>();
        send::<crate::ControlEngine>();
        send_sync::<crate::ControlPolicy>();
    }
}
