//! Every seed of every fuzz target (`fuzz/corpus/<target>`) through the target's own checks
//! (`fuzz/checks/<target>.rs`, the code `scripts/fuzz.sh` runs under libFuzzer): the suite's
//! fuzzing smoke. It needs no instrumented build; fuzzing proper, which grows new inputs from
//! these seeds, runs on demand (`scripts/fuzz.sh [SECONDS] [TARGET…]`, docs/reliability.md).

#![allow(dead_code)]

use std::path::Path;

#[path = "../../fuzz/checks/config.rs"]
mod config;
#[path = "../../fuzz/checks/plugin_output.rs"]
mod plugin_output;
#[path = "../../fuzz/checks/policy_output.rs"]
mod policy_output;
#[path = "../../fuzz/checks/prometheus.rs"]
mod prometheus;
#[path = "../../fuzz/checks/serve_http.rs"]
mod serve_http;

/// Replays `fuzz/corpus/<target>` through `check`, naming the seed that fails.
fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut seeds: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "{}: no seeds", dir.display());
    for seed in seeds {
        let data = std::fs::read(&seed).unwrap();
        if let Err(panic) = std::panic::catch_unwind(|| check(&data)) {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(ToString::to_string))
                .unwrap_or_default();
            panic!("fuzz target {target}: seed {} fails: {why}", seed.display());
        }
    }
}

#[test]
fn config_seeds_pass_the_config_target() {
    replay("config", config::check);
}

#[test]
fn plugin_output_seeds_pass_the_plugin_output_target() {
    replay("plugin_output", plugin_output::check);
}

#[test]
fn policy_output_seeds_pass_the_policy_output_target() {
    replay("policy_output", policy_output::check);
}

#[test]
fn prometheus_seeds_pass_the_prometheus_target() {
    replay("prometheus", prometheus::check);
}

#[test]
fn serve_http_seeds_pass_the_serve_http_target() {
    replay("serve_http", serve_http::check);
}
