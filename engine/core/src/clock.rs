//! The one source of the current time.
//!
//! Every component that needs "now" is handed a [`Clock`] by whoever builds it (the binary, a
//! test), and never reads the system clock itself. A replayed cycle (`setpoint --now …`) then
//! sees the same instant everywhere — in the cycle, in the review queue's expiry, in the report
//! it sends — and no test depends on the day it runs.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};

/// Tells the current time.
pub trait Clock: fmt::Debug + Send + Sync {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;
    /// Whether this clock replays a fixed instant rather than following the wall clock; a
    /// scheduler cannot wait on such a clock.
    fn is_fixed(&self) -> bool {
        false
    }
}

/// A shared, injectable clock.
pub type SharedClock = Arc<dyn Clock>;

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock stopped at one instant: a replay, or a test.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub DateTime<Utc>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }

    fn is_fixed(&self) -> bool {
        true
    }
}

/// The wall clock, shared.
pub fn system_clock() -> SharedClock {
    Arc::new(SystemClock)
}

/// A clock stopped at `at`, shared.
pub fn fixed_clock(at: DateTime<Utc>) -> SharedClock {
    Arc::new(FixedClock(at))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_clock_never_moves() {
        let at = DateTime::parse_from_rfc3339("2026-11-23T06:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap();
        let clock = fixed_clock(at);
        assert_eq!(clock.now(), at);
        assert_eq!(clock.now(), at);
        assert!(clock.is_fixed());
        assert!(!system_clock().is_fixed());
    }
}
