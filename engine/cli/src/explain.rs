//! `setpoint explain`: the full trace of a target's last decision (rendered by
//! `setpoint_server::explain`, which the review page shares).

use std::path::Path;

use std::fmt::Write as _;

use anyhow::{Result, bail};
use chrono::{DateTime, Utc};
use setpoint_core::control::ControlRecord;
use setpoint_state::Store;

/// Prints the last journal entry of `target` from the store in `dir`, or, for a fast loop's
/// service, its decision journalled at or before `at` (the latest without it).
pub fn explain(dir: &Path, target: &str, at: Option<DateTime<Utc>>, json: bool) -> Result<()> {
    if !dir.join(setpoint_state::DB_FILE).exists() {
        bail!(
            "no state in {}: run `setpoint run --once` first (or pass --state-dir)",
            dir.display()
        );
    }
    // A running `setpoint run` holds the store during a cycle; wait for it rather than fail.
    // A snapshot: a running cycle is not waited for.
    let store = Store::open_for_reading(dir)?;
    let weekly = match at {
        Some(_) => None,
        None => store.last_entry(target)?,
    };
    if weekly.is_none()
        && let Some(record) = store.control_at(target, at)?
    {
        if json {
            println!("{}", serde_json::to_string_pretty(&record)?);
        } else {
            print!("{}", render_control(&record));
        }
        return Ok(());
    }
    let Some(entry) = weekly else {
        if let Some(at) = at {
            bail!("no fast-loop decision recorded for {target:?} at or before {at}");
        }
        let mut known = store.targets()?;
        for loop_name in store.control_loops()? {
            known.extend(store.control_services(&loop_name)?);
        }
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

/// A fast loop's decision for one service at one tick: what it saw and forecast, what the
/// policy proposed, what the guard made of it, and why.
fn render_control(record: &ControlRecord) -> String {
    let mut out = String::new();
    let input = &record.input;
    let decision = &record.decision;
    let _ = writeln!(
        out,
        "{} · loop {} · tick {} · {} · {}",
        input.service,
        record.loop_name,
        record.tick,
        input.at.format("%Y-%m-%d %H:%M:%S UTC"),
        input.mode.as_str()
    );
    let _ = writeln!(
        out,
        "decision: {} {} — {}",
        decision.verdict.as_str(),
        decision.action,
        record.outcome
    );
    if let Some(proposed) = &decision.proposed {
        let _ = writeln!(
            out,
            "policy proposed: {proposed} ({})",
            decision.entry_point
        );
    }
    for reason in &decision.reasons {
        let _ = writeln!(out, "  {}: {}", reason.code, reason.message);
    }
    let number = |v: Option<f64>| v.map_or_else(|| "—".to_string(), |v| format!("{v:.1}"));
    let minutes = input.horizon_seconds / 60;
    let _ = writeln!(
        out,
        "observed now and forecast in {minutes} min (p10..p90):"
    );
    let rows = [
        (
            "request_rate",
            input.now.request_rate,
            input.forecast.request_rate,
            input.forecast_interval.request_rate,
        ),
        (
            "latency_p99_ms",
            input.now.latency_p99_ms,
            input.forecast.latency_p99_ms,
            input.forecast_interval.latency_p99_ms,
        ),
        (
            "error_percent",
            input.now.error_percent,
            input.forecast.error_percent,
            input.forecast_interval.error_percent,
        ),
        (
            "cpu_percent",
            input.now.cpu_percent,
            input.forecast.cpu_percent,
            input.forecast_interval.cpu_percent,
        ),
        (
            "replicas",
            input.now.replicas,
            input.forecast.replicas,
            input.forecast_interval.replicas,
        ),
    ];
    for (name, now, forecast, interval) in rows {
        let interval = interval.map_or_else(String::new, |i| {
            format!(" ({:.1}..{:.1})", i.lower, i.upper)
        });
        let _ = writeln!(
            out,
            "  {name:<15} {:>10}  → {:>10}{interval}",
            number(now),
            number(forecast)
        );
    }
    for (metric, anomaly) in &input.anomaly {
        let _ = writeln!(
            out,
            "anomaly {metric}: score {:.1}{}",
            anomaly.score,
            if anomaly.anomalous {
                " — anomalous"
            } else {
                ""
            }
        );
    }
    for problem in &record.forecast_problems {
        let _ = writeln!(out, "no forecast: {problem}");
    }
    let current = &input.current;
    let _ = writeln!(
        out,
        "current: replicas {}{}; limits {}..{} replicas{}",
        current
            .replicas
            .map_or_else(|| "unknown".to_string(), |r| r.to_string()),
        if current.weights.is_empty() {
            String::new()
        } else {
            format!(
                ", weights {}",
                current
                    .weights
                    .iter()
                    .map(|(r, w)| format!("{r} {w}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        },
        input.limits.min_replicas,
        input.limits.max_replicas,
        input
            .limits
            .capacity_per_replica
            .map_or_else(String::new, |c| format!(", {c:.1} req/s per replica"))
    );
    let _ = writeln!(out, "policy {}", decision.policy_hash);
    out
}
