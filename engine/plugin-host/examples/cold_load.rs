//! Measures a cold load of the bundled PostgreSQL plugin — compile, link, `describe()` — with
//! and without the compiled-plugin cache.
//!
//! `cargo run --release -p setpoint-plugin-host --example cold_load [ROUNDS]`

use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, Instant};

use setpoint_plugin_host::{CompileCache, Limits, PluginHost};

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() -> Result<(), Box<dyn Error>> {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(20)
        .max(1);
    let wasm = setpoint_plugins_bundled::postgres();
    let dir = tempfile::tempdir()?;

    // Each round uses a new host, as a new process would: nothing is shared but the directory.
    let time = |cache: Option<Arc<CompileCache>>| -> Result<Duration, Box<dyn Error>> {
        let mut host = PluginHost::new(Limits::default())?;
        if let Some(cache) = cache {
            host = host.with_cache(cache);
        }
        let started = Instant::now();
        host.load("builtin:postgres", wasm)?;
        Ok(started.elapsed())
    };

    let mut without = Vec::new();
    let mut first = Vec::new();
    let mut warm = Vec::new();
    for round in 0..rounds {
        without.push(time(None)?);
        // A directory of its own: a miss, a compile and a write.
        let cold_dir = dir.path().join(format!("cold-{round}"));
        first.push(time(Some(Arc::new(CompileCache::new(cold_dir.clone()))))?);
        // The same directory again: a hit.
        warm.push(time(Some(Arc::new(CompileCache::new(cold_dir))))?);
    }
    println!(
        "postgres plugin, {} bytes, {rounds} rounds (median):",
        wasm.len()
    );
    println!("  no cache                      {:?}", median(without));
    println!("  cache miss (compile + store)  {:?}", median(first));
    println!("  cache hit (verify + load)     {:?}", median(warm));
    Ok(())
}
