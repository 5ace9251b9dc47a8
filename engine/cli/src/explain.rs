//! `setpoint explain`: the full trace of a target's last decision (rendered by
//! `setpoint_server::explain`, which the review page shares).

use std::path::Path;

use anyhow::{Result, bail};
use setpoint_state::Store;

/// Prints the last journal entry of `target` from the store in `dir`.
pub fn explain(dir: &Path, target: &str, json: bool) -> Result<()> {
    if !dir.join(setpoint_state::DB_FILE).exists() {
        bail!(
            "no state in {}: run `setpoint run --once` first (or pass --state-dir)",
            dir.display()
        );
    }
    // A running `setpoint run` holds the store during a cycle; wait for it rather than fail.
    // A snapshot: a running cycle is not waited for.
    let store = Store::open_for_reading(dir)?;
    let Some(entry) = store.last_entry(target)? else {
        let known = store.targets()?;
        let hint = close_matches(target, &known);
        bail!(
            "no decision recorded for target {target:?}{}",
            if hint.is_empty() {
                String::new()
            } else {
                format!("; did you mean: {}", hint.join(", "))
            }
        );
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&entry)?);
    } else {
        print!("{}", setpoint_server::explain::render(&entry));
    }
    Ok(())
}

fn close_matches(target: &str, known: &[String]) -> Vec<String> {
    let stem: String = target.chars().take(4).collect();
    known
        .iter()
        .filter(|k| k.contains(target) || target.contains(k.as_str()) || k.starts_with(&stem))
        .take(5)
        .cloned()
        .collect()
}
