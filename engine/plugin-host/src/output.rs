//! Bounds on what a plugin may hand back.
//!
//! A plugin's memory limit does not bound what the host allocates for its results: the
//! canonical ABI lifts every string and list into host memory, and a hostile plugin can point a
//! hundred thousand strings at the same mebibyte of its memory. Two bounds apply:
//!
//! - **bytes per call**: wasmtime's "hostcall fuel", which caps the bytes the host copies out of
//!   the guest while lifting one call's results (and each log line). wasmtime's default is
//!   128 MiB; the host sets it per store, and exhausting it fails the call before the host has
//!   allocated more than that. The host counts its own representation (a `feature` record is 48
//!   bytes, whatever its name).
//! - **shape**: after lifting, list lengths and string lengths are checked against limits far
//!   above what any plugin needs and far below what would hurt a report, a journal or a policy
//!   input — before the contract checks, so an oversized output is named as such.

use crate::bindings::setpoint::plugin::types as wit;

/// Bounds on a plugin's outputs. The defaults are far above what the bundled plugins need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputLimits {
    /// Bytes the host copies out of the plugin in one call: the results, or any one log line.
    pub bytes_per_call: usize,
    /// Entries in any list: features, metrics, proposals, operations, parameters.
    pub max_items: usize,
    /// Bytes of a name, version, unit, parameter value or summary.
    pub max_line_bytes: usize,
    /// Bytes of a description, PromQL query, rationale, restart reason or error message.
    pub max_text_bytes: usize,
}

impl Default for OutputLimits {
    fn default() -> Self {
        Self {
            bytes_per_call: 1024 * 1024,
            max_items: 1024,
            max_line_bytes: 1024,
            max_text_bytes: 16 * 1024,
        }
    }
}

/// Describes a bound that was exceeded: `"the summary of proposal 0 is 65536 bytes; at most
/// 1024"`.
pub(crate) type TooLarge = String;

impl OutputLimits {
    fn items(&self, what: &str, n: usize) -> Result<(), TooLarge> {
        if n > self.max_items {
            return Err(format!("{n} {what}; at most {}", self.max_items));
        }
        Ok(())
    }

    fn line(&self, what: impl FnOnce() -> String, text: &str) -> Result<(), TooLarge> {
        if text.len() > self.max_line_bytes {
            return Err(format!(
                "{} is {} bytes; at most {}",
                what(),
                text.len(),
                self.max_line_bytes
            ));
        }
        Ok(())
    }

    fn text(&self, what: impl FnOnce() -> String, text: &str) -> Result<(), TooLarge> {
        if text.len() > self.max_text_bytes {
            return Err(format!(
                "{} is {} bytes; at most {}",
                what(),
                text.len(),
                self.max_text_bytes
            ));
        }
        Ok(())
    }

    /// Checks a descriptor's sizes.
    pub(crate) fn descriptor(&self, d: &wit::Descriptor) -> Result<(), TooLarge> {
        self.line(|| "the name".into(), &d.name)?;
        self.line(|| "the version".into(), &d.version)?;
        self.line(|| "the technology".into(), &d.technology)?;
        self.items("metrics", d.metrics.len())?;
        self.items("features declared", d.features.len())?;
        self.items("actions", d.actions.len())?;
        for (i, m) in d.metrics.iter().enumerate() {
            self.line(|| format!("the name of metric {i}"), &m.name)?;
            self.line(|| format!("the unit of metric {:?}", m.name), &m.unit)?;
            self.text(|| format!("the query of metric {:?}", m.name), &m.query)?;
            self.text(
                || format!("the description of metric {:?}", m.name),
                &m.description,
            )?;
        }
        for (i, f) in d.features.iter().enumerate() {
            self.line(|| format!("the name of feature {i}"), &f.name)?;
            self.text(
                || format!("the description of feature {:?}", f.name),
                &f.description,
            )?;
        }
        Ok(())
    }

    /// Checks the sizes of `features()`'s result.
    pub(crate) fn features(&self, features: &wit::FeatureVector) -> Result<(), TooLarge> {
        self.items("feature values returned", features.values.len())?;
        self.items("feature coverages returned", features.coverage.len())
    }

    /// Checks the sizes of `propose()`'s result.
    pub(crate) fn proposals(&self, proposals: &[wit::Proposal]) -> Result<(), TooLarge> {
        self.items("proposals", proposals.len())?;
        for (i, p) in proposals.iter().enumerate() {
            self.line(|| format!("the summary of proposal {i}"), &p.summary)?;
            self.text(|| format!("the rationale of proposal {i}"), &p.rationale)?;
            self.items(&format!("operations in proposal {i}"), p.operations.len())?;
            for op in &p.operations {
                self.operation(i, op)?;
            }
        }
        Ok(())
    }

    fn operation(&self, i: usize, op: &wit::Operation) -> Result<(), TooLarge> {
        match op {
            wit::Operation::SetParameter(p) => {
                self.line(|| format!("a parameter name in proposal {i}"), &p.name)?;
                self.line(
                    || format!("the value of parameter {:?} in proposal {i}", p.name),
                    &p.value,
                )
            }
            wit::Operation::Restart(r) => {
                self.text(|| format!("a restart reason in proposal {i}"), &r.reason)
            }
            // Operations that carry no text are bounded by their type. (A new variant with
            // strings is still bounded in bytes by `bytes_per_call`.)
            #[allow(unreachable_patterns)]
            _ => Ok(()),
        }
    }

    /// Checks the size of a plugin's own error.
    pub(crate) fn rejection(&self, e: &wit::PluginError) -> Result<(), TooLarge> {
        self.line(|| "the error code".into(), &e.code)?;
        self.text(|| "the error message".into(), &e.message)
    }
}
