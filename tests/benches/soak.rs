//! The soak: `setpoint run --once` in enforce mode, cycle after cycle, against a fake
//! Kubernetes API server and a fake Prometheus on 127.0.0.1, with faults from the reliability
//! matrix drawn at random each cycle (source down, 5xx, garbage, NaN, negative, hanging; API
//! server 5xx, 409, slow, a concurrent writer; SIGKILL mid-cycle; kill switches; a policy that
//! fails at run time; the clock jumping back). At the end it checks that the journal chain is
//! intact, that no action ran twice or was lost, and that memory and the store stay bounded.
//! What is checked and why: `tests/soak/mod.rs`; figures: docs/reliability.md, "Soak".
//!
//! ```text
//! scripts/soak.sh [CYCLES]
//! ```
//!
//! Settings (environment):
//! - `SETPOINT` the setpoint binary (default target/release/setpoint, else target/debug/setpoint)
//! - `SOAK_CYCLES` cycles (default 1000)
//! - `SOAK_SEED` the seed (default: a fresh one, printed first)
//! - `SOAK_CHECK_EVERY` full checks every this many cycles (default 50)
//! - `SOAK_VERBOSE=1` a line per cycle

#[path = "../soak/mod.rs"]
mod soak;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

fn setting(name: &str) -> Result<Option<u64>> {
    match std::env::var(name) {
        Ok(value) => Ok(Some(
            value.parse().with_context(|| format!("{name}={value:?}"))?,
        )),
        Err(_) => Ok(None),
    }
}

fn main() -> Result<()> {
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target");
    let binary = std::env::var_os("SETPOINT").map_or_else(
        || {
            let release = target.join("release/setpoint");
            if release.exists() {
                release
            } else {
                target.join("debug/setpoint")
            }
        },
        PathBuf::from,
    );
    if !binary.exists() {
        bail!(
            "{} not found: cargo build [--release] -p setpoint first",
            binary.display()
        );
    }
    let seed = setting("SOAK_SEED")?.unwrap_or_else(soak::fresh_seed);
    let options = soak::Options {
        binary,
        cycles: setting("SOAK_CYCLES")?.unwrap_or(1000) as usize,
        seed,
        check_every: setting("SOAK_CHECK_EVERY")?.unwrap_or(50) as usize,
        verbose: std::env::var_os("SOAK_VERBOSE").is_some_and(|v| v == "1"),
    };
    println!(
        "soak: {} cycles of {}, seed {seed} (SOAK_SEED={seed} replays the same faults)",
        options.cycles,
        options.binary.display()
    );
    let summary = soak::run(&options)?;
    println!("{summary}");
    summary.check(&soak::Bounds::default())?;
    println!("soak: every invariant held");
    Ok(())
}
