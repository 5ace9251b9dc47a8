//! Builds setpoint plugins from source into WASM components, for build scripts.
//!
//! A plugin crate is compiled for `wasm32-unknown-unknown` by a nested `cargo build` (with its
//! own target directory, so it never waits on the outer build's lock) and the core module is
//! turned into a component with `wit-component`. Built that way a plugin imports nothing but
//! the host's log: no WASI, so no files, network, environment or clock — the strictest sandbox.
//! Plugins are never checked in as binaries; this is how the build makes them.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The target plugins are compiled for.
pub const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// The cargo profile plugins are built with (defined in the workspace `Cargo.toml`).
pub const PROFILE: &str = "plugin";

/// Errors building a plugin.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The wasm target is not installed.
    #[error("the {WASM_TARGET} target is not installed; run: rustup target add {WASM_TARGET}")]
    MissingTarget,
    /// cargo could not be run.
    #[error("cannot run cargo to build plugin {package}: {source}")]
    Spawn {
        /// The plugin package.
        package: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// cargo failed.
    #[error("building plugin {package} for {WASM_TARGET} failed:\n{stderr}")]
    Cargo {
        /// The plugin package.
        package: String,
        /// cargo's error output.
        stderr: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The module could not be turned into a component.
    #[error("componentizing plugin {package}: {message}")]
    Componentize {
        /// The plugin package.
        package: String,
        /// What failed.
        message: String,
    },
}

/// Environment variables that a build script inherits from the outer cargo and that would
/// change or break the nested build (clippy's wrapper, the host's flags, the jobserver).
const LEAKING_ENV: &[&str] = &[
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTC_WRAPPER",
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_MAKEFLAGS",
    "MAKEFLAGS",
    "MFLAGS",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_PROFILE_RELEASE_DEBUG",
    "DEBUG",
    "OPT_LEVEL",
    "PROFILE",
    "TARGET",
    "HOST",
    "RUSTC_LINKER",
];

/// Builds workspace package `package` (e.g. `setpoint-plugin-postgres`) as a component and
/// writes it to `out_dir/<name>.wasm`, returning that path.
///
/// `workspace_root` is the directory of the workspace `Cargo.toml`. Prints the
/// `cargo:rerun-if-changed` lines for the plugin's sources and the SDK, so a build script that
/// calls this reruns exactly when a plugin could have changed.
pub fn build_component(
    package: &str,
    package_dir: &Path,
    workspace_root: &Path,
    out_dir: &Path,
) -> Result<PathBuf, BuildError> {
    for dir in [
        package_dir.join("src"),
        package_dir.join("Cargo.toml"),
        workspace_root.join("sdk/src"),
        workspace_root.join("sdk/wit"),
        workspace_root.join("sdk/Cargo.toml"),
        // The plugin profile and the locked dependency versions.
        workspace_root.join("Cargo.toml"),
        workspace_root.join("Cargo.lock"),
    ] {
        println!("cargo:rerun-if-changed={}", dir.display());
    }
    let target_dir = std::env::var_os("SETPOINT_PLUGIN_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root.join("target").join("plugins"));
    println!("cargo:rerun-if-env-changed=SETPOINT_PLUGIN_TARGET_DIR");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace_root)
        .args(["build", "--quiet", "--package", package])
        .args(["--target", WASM_TARGET, "--profile", PROFILE])
        .arg("--target-dir")
        .arg(&target_dir);
    for var in LEAKING_ENV {
        command.env_remove(var);
    }
    let output = command.output().map_err(|source| BuildError::Spawn {
        package: package.to_string(),
        source,
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        if stderr.contains("target may not be installed")
            || stderr.contains("can't find crate for `core`")
            || stderr.contains("can't find crate for `std`")
        {
            return Err(BuildError::MissingTarget);
        }
        return Err(BuildError::Cargo {
            package: package.to_string(),
            stderr,
        });
    }
    let file = package.replace('-', "_");
    let module_path = target_dir
        .join(WASM_TARGET)
        .join(PROFILE)
        .join(format!("{file}.wasm"));
    let module = std::fs::read(&module_path).map_err(|source| BuildError::Io {
        path: module_path.clone(),
        source,
    })?;
    let component = componentize(package, &module)?;
    let out = out_dir.join(format!("{file}.wasm"));
    std::fs::write(&out, component).map_err(|source| BuildError::Io {
        path: out.clone(),
        source,
    })?;
    Ok(out)
}

/// Builds a plugin crate that lives outside setpoint's workspace — a third party's, written
/// against the SDK alone — as a component at `out`: `cargo build --release` for
/// [`WASM_TARGET`] in the crate's own directory, then componentized. Returns the crate's
/// package name.
pub fn build_external(crate_dir: &Path, out: &Path) -> Result<String, BuildError> {
    let manifest = crate_dir.join("Cargo.toml");
    let label = crate_dir.display().to_string();
    if !manifest.is_file() {
        return Err(BuildError::Io {
            path: manifest,
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no Cargo.toml here"),
        });
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(crate_dir)
        .args([
            "build",
            "--release",
            "--message-format=json-render-diagnostics",
        ])
        .args(["--target", WASM_TARGET]);
    for var in LEAKING_ENV {
        command.env_remove(var);
    }
    let output = command.output().map_err(|source| BuildError::Spawn {
        package: label.clone(),
        source,
    })?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        if stderr.contains("target may not be installed")
            || stderr.contains("can't find crate for `core`")
            || stderr.contains("can't find crate for `std`")
        {
            return Err(BuildError::MissingTarget);
        }
        return Err(BuildError::Cargo {
            package: label,
            stderr,
        });
    }
    // cargo names every artifact it produced; the plugin is the cdylib's .wasm.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let artifact = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter(|m| {
            m["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "cdylib"))
        })
        .find_map(|m| {
            let name = m["target"]["name"].as_str()?.to_string();
            let wasm = m["filenames"]
                .as_array()?
                .iter()
                .filter_map(|f| f.as_str())
                .find(|f| f.ends_with(".wasm"))?
                .to_string();
            Some((name, PathBuf::from(wasm)))
        });
    let Some((package, module_path)) = artifact else {
        return Err(BuildError::Componentize {
            package: label,
            message: "cargo built no cdylib .wasm; the plugin crate needs `[lib] crate-type = [\"cdylib\"]`".to_string(),
        });
    };
    let module = std::fs::read(&module_path).map_err(|source| BuildError::Io {
        path: module_path.clone(),
        source,
    })?;
    let component = componentize(&package, &module)?;
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| BuildError::Io {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    // Written beside and renamed, so a loader never sees half a component.
    let partial = out.with_extension("wasm.partial");
    std::fs::write(&partial, component).map_err(|source| BuildError::Io {
        path: partial.clone(),
        source,
    })?;
    std::fs::rename(&partial, out).map_err(|source| BuildError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    Ok(package)
}

/// Turns a core module built with the SDK (which embeds the component type) into a component.
pub fn componentize(package: &str, module: &[u8]) -> Result<Vec<u8>, BuildError> {
    fn fail<E: std::fmt::Display>(package: &str) -> impl Fn(E) -> BuildError + '_ {
        move |e| BuildError::Componentize {
            package: package.to_string(),
            message: format!("{e:#}"),
        }
    }
    wit_component::ComponentEncoder::default()
        .module(module)
        .map_err(fail(package))?
        .validate(true)
        .encode()
        .map_err(fail(package))
}
