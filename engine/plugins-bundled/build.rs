//! Builds the bundled plugins from source into WASM components.

use std::path::PathBuf;

/// (package, directory relative to the workspace root, name under `builtin:`)
const PLUGINS: &[(&str, &str, &str)] = &[
    ("setpoint-plugin-postgres", "plugins/postgres", "postgres"),
    ("setpoint-plugin-redis", "plugins/redis", "redis"),
    ("setpoint-plugin-kafka", "plugins/kafka", "kafka"),
    (
        "setpoint-plugin-elasticsearch",
        "plugins/elasticsearch",
        "elasticsearch",
    ),
];

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest.join("../..");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    for (package, dir, name) in PLUGINS {
        match setpoint_plugin_build::build_component(package, &root.join(dir), &root, &out) {
            Ok(path) => println!(
                "cargo:rustc-env=SETPOINT_PLUGIN_{}={}",
                name.to_uppercase(),
                path.display()
            ),
            Err(error) => {
                // A build script's panic is how cargo shows a failed build step.
                panic!("{error}");
            }
        }
    }
}
