//! Loading a policy bundle: Rego sources and data, checked to parse and compile.

use std::path::Path;

use regorus::Engine;
use serde_json::Value as Json;
use setpoint_core::control::RegoVersion;

use crate::{ENTRY_POINT, PolicyError, Result, json_type, regorus_error};

/// A parsed and checked policy bundle: its Rego sources and its data document.
///
/// Holding the sources (not a prepared engine) keeps the bundle cheap to clone and share; each
/// [`PolicyEngine`](crate::PolicyEngine) prepares its own engine from it.
///
/// A bundle is prepared for one entry point and one Rego version: the weekly loop's
/// [`ENTRY_POINT`] in Rego v1 unless built with [`PolicyBundle::load_with`] or
/// [`PolicyBundle::from_sources_with`] (the fast loop's guard and a team's control policy).
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyBundle {
    files: Vec<(String, String)>,
    data: Json,
    entry_point: String,
    rego_version: RegoVersion,
}

impl PolicyBundle {
    /// Loads every `*.rego` file directly in `dir` (test files included: they live in their own
    /// packages and are only evaluated by [`run_tests`](crate::run_tests)) and `dir/data.json`
    /// (optional; an empty object when absent).
    ///
    /// Fails if the directory is missing or holds no Rego, if `data.json` is not a JSON object,
    /// if a file does not parse (the message names `file:line:col`), or if the policies do not
    /// compile or define no [`ENTRY_POINT`].
    pub fn load(dir: &Path) -> Result<PolicyBundle> {
        Self::load_with(dir, ENTRY_POINT, RegoVersion::V1)
    }

    /// Loads a bundle as [`PolicyBundle::load`] does, prepared for `entry_point` (a rule path
    /// such as `data.setpoint.fast.guard.decision`) and parsed as `rego_version`.
    ///
    /// With [`RegoVersion::V1`], a file that only parses as Rego v0 is refused with
    /// [`PolicyError::NeedsRegoV0`], which says so.
    pub fn load_with(
        dir: &Path,
        entry_point: &str,
        rego_version: RegoVersion,
    ) -> Result<PolicyBundle> {
        let files = read_rego_dir(dir)?;
        let data_path = dir.join("data.json");
        let data = match std::fs::read_to_string(&data_path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| PolicyError::Json {
                path: data_path.clone(),
                message: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Json::Object(Default::default()),
            Err(source) => {
                return Err(PolicyError::Read {
                    path: data_path,
                    source,
                });
            }
        };
        Self::from_sources_with(files, data, entry_point, rego_version)
    }

    /// Builds a bundle from in-memory sources: `(name, text)` pairs, the name being what error
    /// messages show, and the data document.
    ///
    /// Checks the same things as [`PolicyBundle::load`].
    pub fn from_sources(files: Vec<(String, String)>, data: Json) -> Result<PolicyBundle> {
        Self::from_sources_with(files, data, ENTRY_POINT, RegoVersion::V1)
    }

    /// Builds a bundle from in-memory sources as [`PolicyBundle::from_sources`] does, prepared
    /// for `entry_point` and parsed as `rego_version`.
    pub fn from_sources_with(
        files: Vec<(String, String)>,
        data: Json,
        entry_point: &str,
        rego_version: RegoVersion,
    ) -> Result<PolicyBundle> {
        if !data.is_object() {
            return Err(PolicyError::Data {
                message: format!("must be a JSON object, got {}", json_type(&data)),
            });
        }
        let bundle = PolicyBundle {
            files,
            data,
            entry_point: entry_point.to_string(),
            rego_version,
        };
        // Parsing and preparing once here makes a broken bundle fail at load, before any cycle.
        bundle.engine(bundle.data.clone(), crate::DEFAULT_TIME_LIMIT)?;
        Ok(bundle)
    }

    /// A copy of this bundle with `data` deep-merged over its data document, checked as at load.
    pub fn with_data_overlay(&self, overlay: Json) -> Result<PolicyBundle> {
        let mut data = self.data.clone();
        merge_json(&mut data, overlay);
        Self::from_sources_with(
            self.files.clone(),
            data,
            &self.entry_point,
            self.rego_version,
        )
    }

    /// The rule this bundle is prepared for: [`ENTRY_POINT`] for a weekly bundle.
    pub fn entry_point(&self) -> &str {
        &self.entry_point
    }

    /// The Rego syntax the bundle is parsed as.
    pub fn rego_version(&self) -> RegoVersion {
        self.rego_version
    }

    /// Checks what loading leaves to evaluation: every call must name a function of the bundle
    /// or a builtin of this build. Fails with [`PolicyError::UndefinedFunction`], naming each
    /// offending call's `file:line:col` and function.
    ///
    /// Loading does not run it: a bundle with such a call still loads and runs, and a target
    /// whose evaluation reaches the call holds with `policy_error`, as for any evaluation
    /// error. `setpoint config check` and `setpoint policy test` run it, so the call is found
    /// before it is deployed rather than at the first input that reaches it.
    pub fn check(&self) -> Result<()> {
        let mut engine = Engine::new();
        add_sources(&mut engine, &self.files, self.rego_version)?;
        let calls = crate::check::undefined_calls(engine.get_modules());
        if calls.is_empty() {
            Ok(())
        } else {
            Err(PolicyError::UndefinedFunction { calls })
        }
    }

    /// The Rego sources, as `(name, text)` pairs in load order.
    pub fn files(&self) -> &[(String, String)] {
        &self.files
    }

    /// The data document (`data.json`), before any kill-switch overlay.
    pub fn data(&self) -> &Json {
        &self.data
    }

    /// A content hash of the bundle (`sha256:<hex>` over every source's name and text, the
    /// data document, and the entry point and Rego version when not the weekly defaults), so a trace or a journal entry says exactly which policies decided.
    pub fn hash(&self) -> String {
        use sha2::{Digest, Sha256};
        use std::fmt::Write;
        let mut hasher = Sha256::new();
        // Length-prefixed parts: moving text from one file to the next changes the hash.
        let mut part = |bytes: &[u8]| {
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        };
        for (name, text) in &self.files {
            part(name.as_bytes());
            part(text.as_bytes());
        }
        part(self.data.to_string().as_bytes());
        // Only a non-default entry point or version counts, so that a weekly bundle's hash is
        // what it was before bundles had either.
        if self.entry_point != ENTRY_POINT || self.rego_version != RegoVersion::V1 {
            part(self.entry_point.as_bytes());
            part(self.rego_version.as_str().as_bytes());
        }
        let mut out = String::from("sha256:");
        for byte in hasher.finalize() {
            let _ = write!(out, "{byte:02x}");
        }
        out
    }

    /// A prepared interpreter for these sources with `data` (the bundle's data, possibly
    /// overlaid) and an execution time limit.
    pub(crate) fn engine(&self, data: Json, time_limit: std::time::Duration) -> Result<Engine> {
        let mut engine = Engine::new();
        engine.set_execution_timer_config(crate::engine::timer(time_limit));
        add_sources(&mut engine, &self.files, self.rego_version)?;
        engine
            .add_data(regorus::Value::from(data))
            .map_err(|e| PolicyError::Data {
                message: e.to_string(),
            })?;
        // Preparing resolves rules, imports and variable safety, which the interpreter would
        // otherwise only report at the first evaluation; it also fails when the entry point is
        // missing.
        let entry_point = &self.entry_point;
        engine
            .compile_with_entrypoint(&regorus::Rc::from(entry_point.as_str()))
            .map_err(|e| {
                let message = regorus_error(&e, true);
                // Errors with no source location (a missing entry point is "not a valid rule
                // path") need the context that the location would have given.
                let message = if e.to_string().contains("--> ") {
                    message
                } else {
                    format!("cannot prepare {entry_point} (does the bundle define it?): {message}")
                };
                PolicyError::Compile { message }
            })?;
        Ok(engine)
    }
}

/// Every `*.rego` file directly in `dir` as `(path, text)`, sorted by path so that load order,
/// and therefore any error reported first, is reproducible.
pub(crate) fn read_rego_dir(dir: &Path) -> Result<Vec<(String, String)>> {
    let entries = std::fs::read_dir(dir).map_err(|source| PolicyError::Dir {
        dir: dir.to_path_buf(),
        source,
    })?;
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| PolicyError::Dir {
            dir: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        if path.extension().is_some_and(|ext| ext == "rego") && path.is_file() {
            paths.push(path);
        }
    }
    if paths.is_empty() {
        return Err(PolicyError::Empty {
            dir: dir.to_path_buf(),
        });
    }
    paths.sort();
    let mut files = Vec::with_capacity(paths.len());
    for path in paths {
        let text = std::fs::read_to_string(&path).map_err(|source| PolicyError::Read {
            path: path.clone(),
            source,
        })?;
        files.push((path.display().to_string(), text));
    }
    Ok(files)
}

/// Parses `files` into `engine` as `rego_version`.
///
/// A file that fails to parse as Rego v1 but parses as v0 is reported as
/// [`PolicyError::NeedsRegoV0`]: OPA's v0 syntax is common in existing policies, and regorus' own
/// message (`` `if` keyword is required before rule body ``) does not say what to change.
pub(crate) fn add_sources(
    engine: &mut Engine,
    files: &[(String, String)],
    rego_version: RegoVersion,
) -> Result<()> {
    engine.set_rego_v0(rego_version == RegoVersion::V0);
    for (name, text) in files {
        if let Err(e) = engine.add_policy(name.clone(), text.clone()) {
            let message = regorus_error(&e, true);
            if rego_version == RegoVersion::V1 && parses_as_v0(name, text) {
                return Err(PolicyError::NeedsRegoV0 {
                    file: name.clone(),
                    message,
                });
            }
            return Err(PolicyError::Syntax {
                file: name.clone(),
                message,
            });
        }
    }
    Ok(())
}

/// Whether `text` parses as Rego v0 on its own.
fn parses_as_v0(name: &str, text: &str) -> bool {
    let mut engine = Engine::new();
    engine.set_rego_v0(true);
    engine
        .add_policy(name.to_string(), text.to_string())
        .is_ok()
}

/// Deep-merges `overlay` into `base`: objects merge key by key, anything else replaces.
pub(crate) fn merge_json(base: &mut Json, overlay: Json) {
    match (base, overlay) {
        (Json::Object(base), Json::Object(overlay)) => {
            for (key, value) in overlay {
                match base.get_mut(&key) {
                    Some(slot) => merge_json(slot, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, overlay) => *base = overlay,
    }
}

/// The files of `policies/`, embedded so that the quickstart needs nothing on disk.
///
/// A unit test checks this list against the directory, so a new file cannot be forgotten.
const EMBEDDED: &[(&str, &str)] = &[
    (
        "policies/approval.rego",
        include_str!("../../../policies/approval.rego"),
    ),
    (
        "policies/approval_test.rego",
        include_str!("../../../policies/approval_test.rego"),
    ),
    (
        "policies/confidence.rego",
        include_str!("../../../policies/confidence.rego"),
    ),
    (
        "policies/confidence_test.rego",
        include_str!("../../../policies/confidence_test.rego"),
    ),
    (
        "policies/decision.rego",
        include_str!("../../../policies/decision.rego"),
    ),
    (
        "policies/decision_test.rego",
        include_str!("../../../policies/decision_test.rego"),
    ),
    (
        "policies/fixtures_test.rego",
        include_str!("../../../policies/fixtures_test.rego"),
    ),
    (
        "policies/guardrails.rego",
        include_str!("../../../policies/guardrails.rego"),
    ),
    (
        "policies/guardrails_test.rego",
        include_str!("../../../policies/guardrails_test.rego"),
    ),
    (
        "policies/hysteresis.rego",
        include_str!("../../../policies/hysteresis.rego"),
    ),
    (
        "policies/hysteresis_test.rego",
        include_str!("../../../policies/hysteresis_test.rego"),
    ),
    (
        "policies/kill_switch.rego",
        include_str!("../../../policies/kill_switch.rego"),
    ),
    (
        "policies/kill_switch_test.rego",
        include_str!("../../../policies/kill_switch_test.rego"),
    ),
    (
        "policies/missing_data.rego",
        include_str!("../../../policies/missing_data.rego"),
    ),
    (
        "policies/missing_data_test.rego",
        include_str!("../../../policies/missing_data_test.rego"),
    ),
];

const EMBEDDED_DATA: &str = include_str!("../../../policies/data.json");

/// The default policy bundle (`policies/` in the repository), embedded in the binary.
pub fn default_bundle() -> Result<PolicyBundle> {
    let files = EMBEDDED
        .iter()
        .map(|(name, text)| (name.to_string(), text.to_string()))
        .collect();
    let data = serde_json::from_str(EMBEDDED_DATA).map_err(|e| PolicyError::Json {
        path: "policies/data.json".into(),
        message: e.to_string(),
    })?;
    PolicyBundle::from_sources(files, data)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn embedded_files_match_the_policies_directory() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".rego"))
            .map(|n| format!("policies/{n}"))
            .collect();
        on_disk.sort();
        let embedded: Vec<String> = EMBEDDED.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(embedded, on_disk, "update EMBEDDED in bundle.rs");
    }

    #[test]
    fn the_hash_changes_with_any_source_or_the_data() {
        let bundle = default_bundle().unwrap();
        let hash = bundle.hash();
        assert!(
            hash.starts_with("sha256:") && hash.len() == 7 + 64,
            "{hash}"
        );
        assert_eq!(
            default_bundle().unwrap().hash(),
            hash,
            "stable across loads"
        );

        let mut data = bundle.data().clone();
        data["extra"] = serde_json::json!(1);
        let other = PolicyBundle {
            data,
            ..bundle.clone()
        };
        assert_ne!(other.hash(), hash);

        let mut files = bundle.files().to_vec();
        files[0].1.push_str("\n# comment\n");
        let other = PolicyBundle {
            files,
            ..bundle.clone()
        };
        assert_ne!(other.hash(), hash);
    }

    #[test]
    fn merge_is_deep() {
        let mut base = serde_json::json!({"a": {"b": 1, "c": 2}, "d": 3});
        merge_json(&mut base, serde_json::json!({"a": {"b": 10}, "e": 4}));
        assert_eq!(
            base,
            serde_json::json!({"a": {"b": 10, "c": 2}, "d": 3, "e": 4})
        );
    }
}
