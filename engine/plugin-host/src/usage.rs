//! What each call used of its budget, for callers that watch plugins (the `plugin validate`
//! command, metrics).

use std::sync::Arc;
use std::time::Duration;

use crate::{Call, Failure};

/// The resources one call used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallUsage {
    /// Plugin name (its source before `describe()` returned).
    pub plugin: String,
    /// Target id; empty for `describe()`.
    pub target: String,
    /// The call.
    pub call: Call,
    /// Fuel consumed, out of [`crate::Limits::fuel_per_call`].
    pub fuel: u64,
    /// Largest linear memory the instance had, in bytes.
    pub memory_bytes: usize,
    /// Wall-clock time of instantiation and call.
    pub elapsed: Duration,
    /// The trap or limit that ended the call, if one did. (A refusal by the plugin and the
    /// host's checks of the output come after the call and are not reported here.)
    pub trap: Option<Failure>,
}

/// Receives the usage of every call a host runs, from whichever thread ran it.
pub type Meter = Arc<dyn Fn(&CallUsage) + Send + Sync>;
