//! The weekly report: one row per target.

use std::collections::BTreeMap;
use std::fmt::Write;

use comfy_table::{Cell, Table, presets::UTF8_BORDERS_ONLY};
use setpoint_act::ActOutcome;
use setpoint_core::control::ControlOutcome;
use setpoint_runtime::{CycleReport, TargetRow};

/// Renders a cycle's report as text.
pub fn render(report: &CycleReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "setpoint report · loop {} · cycle {} · {} · {}",
        report.loop_name,
        report.cycle,
        report.now.format("%Y-%m-%d %H:%M UTC"),
        report.mode.as_str()
    );
    let _ = writeln!(
        out,
        "source {} · plugin {} · {} targets · {} range queries",
        report.source,
        report.plugin,
        report.rows.len(),
        report.queries
    );
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY).set_header(vec![
        "TARGET",
        "TECH",
        "CLASS",
        "CONF",
        "VERDICT",
        "PROPOSED CHANGE",
        "TOP REASON",
    ]);
    for row in &report.rows {
        table.add_row(cells(row));
    }
    let _ = writeln!(out, "{table}");

    let mut classes: BTreeMap<&str, usize> = BTreeMap::new();
    let mut verdicts: BTreeMap<&str, usize> = BTreeMap::new();
    for row in &report.rows {
        // A fast loop's rows have no class to count.
        if row.control.is_none() {
            *classes
                .entry(row.class.map(|c| c.as_str()).unwrap_or("failed"))
                .or_default() += 1;
        }
        *verdicts
            .entry(row.verdict.map(|v| v.as_str()).unwrap_or("failed"))
            .or_default() += 1;
    }
    let join = |m: &BTreeMap<&str, usize>| {
        m.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !classes.is_empty() {
        let _ = writeln!(out, "classes: {}", join(&classes));
    }
    let _ = writeln!(out, "verdicts: {}", join(&verdicts));
    let awaiting = report
        .rows
        .iter()
        .filter(|r| matches!(r.outcome, Some(ActOutcome::AwaitingApproval { .. })))
        .count();
    if awaiting > 0 {
        let _ = writeln!(
            out,
            "{awaiting} proposal(s) awaiting approval (verdict review)"
        );
    }
    let would = report
        .rows
        .iter()
        .filter(|r| {
            matches!(r.outcome, Some(ActOutcome::WouldExecute { .. }))
                || matches!(&r.control, Some(ControlOutcome::DryRun { writes }) if !writes.is_empty())
        })
        .count();
    if report.mode == setpoint_core::Mode::DryRun {
        let _ = writeln!(
            out,
            "dry-run: nothing was executed{}",
            if would > 0 {
                format!("; {would} plan(s) would have run")
            } else {
                String::new()
            }
        );
    }
    let control: Vec<&ControlOutcome> = report
        .rows
        .iter()
        .filter_map(|r| r.control.as_ref())
        .collect();
    if report.mode == setpoint_core::Mode::Enforce && !control.is_empty() {
        let count = |f: fn(&ControlOutcome) -> bool| control.iter().filter(|o| f(o)).count();
        let counts = [
            (
                "applied and verified",
                count(|o| matches!(o, ControlOutcome::Applied { .. })),
            ),
            (
                "already in place",
                count(|o| matches!(o, ControlOutcome::AlreadyInPlace { .. })),
            ),
            (
                "failed",
                count(|o| matches!(o, ControlOutcome::Failed { .. })),
            ),
            (
                "stopped by a kill switch",
                count(|o| matches!(o, ControlOutcome::Stopped { .. })),
            ),
            (
                "not carried out (no actuator)",
                count(|o| matches!(o, ControlOutcome::NoActuator)),
            ),
        ];
        let said: Vec<String> = counts
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(what, n)| format!("{n} {what}"))
            .collect();
        let _ = writeln!(
            out,
            "enforce: {}",
            if said.is_empty() {
                "no action to carry out".to_string()
            } else {
                said.join(", ")
            }
        );
    } else if report.mode == setpoint_core::Mode::Enforce {
        let executed = report
            .rows
            .iter()
            .filter(|r| matches!(r.outcome, Some(ActOutcome::Executed { .. })))
            .count();
        let _ = writeln!(
            out,
            "enforce: {executed} plan(s) executed and verified{}",
            if would > 0 {
                format!("; {would} recorded only (no actuator)")
            } else {
                String::new()
            }
        );
    }
    for degraded in &report.degraded {
        let _ = writeln!(out, "degraded: {degraded}");
    }
    if !report.unmatched_series.is_empty() {
        let _ = writeln!(
            out,
            "series with no target (declare it, or add the value to a target's aliases; docs/targets.md): {}",
            report.unmatched_series.join("; ")
        );
    }
    if !report.targets_without_series.is_empty() {
        let _ = writeln!(
            out,
            "targets with no series (each holds on insufficient data; check that it is scraped, or alias its exporters' label values; docs/targets.md): {}",
            report.targets_without_series.join(", ")
        );
    }
    let failed: Vec<&TargetRow> = report.rows.iter().filter(|r| r.error.is_some()).collect();
    if !failed.is_empty() {
        let _ = writeln!(out, "{} target(s) failed:", failed.len());
        for row in failed {
            let _ = writeln!(
                out,
                "  {}: {}",
                row.target,
                row.error.as_deref().unwrap_or_default()
            );
        }
    }
    if report.interrupted {
        let _ = writeln!(
            out,
            "interrupted: the cycle stopped before every target was processed"
        );
    }
    let _ = writeln!(out, "explain a decision: setpoint explain <target>");
    out
}

/// Classification codes that mean the data was incomplete: the row says which data.
const MISSING_DATA_CODES: [&str; 2] = ["insufficient_data", "missing_dimension"];

fn cells(row: &TargetRow) -> Vec<Cell> {
    let dash = || "—".to_string();
    let mut class = match (&row.class, &row.class_reason) {
        (Some(class), Some(code)) if MISSING_DATA_CODES.contains(&code.as_str()) => {
            format!("{class} ({code})")
        }
        (Some(class), _) => class.to_string(),
        // A fast loop's services are decided without a class.
        (None, _) if row.error.is_none() && row.verdict.is_some() => dash(),
        (None, _) => "failed".to_string(),
    };
    if row.classifier_fallback.is_some() {
        class.push_str(" (fallback: bootstrap)");
    }
    let missing_data = row
        .class_reason
        .as_deref()
        .is_some_and(|code| MISSING_DATA_CODES.contains(&code));
    let reason = match (&row.error, &row.reason) {
        (Some(error), _) => shorten(&format!("error: {error}")),
        // Say why the data is missing rather than only that it is.
        (None, _) if missing_data && !row.observe_issues.is_empty() => {
            shorten(&format!("missing data: {}", row.observe_issues.join("; ")))
        }
        (None, Some(reason)) => shorten(&format!("{}: {}", reason.code, reason.message)),
        (None, None) => dash(),
    };
    vec![
        Cell::new(&row.target),
        Cell::new(&row.technology),
        Cell::new(class),
        Cell::new(
            row.confidence
                .map(|c| format!("{c:.2}"))
                .unwrap_or_else(dash),
        ),
        Cell::new(row.verdict.map(|v| v.to_string()).unwrap_or_else(dash)),
        Cell::new(row.change.clone().unwrap_or_else(dash)),
        Cell::new(reason),
    ]
}

/// Longest reason shown in a table cell; `setpoint explain` shows the whole of it.
const REASON_WIDTH: usize = 72;

fn shorten(text: &str) -> String {
    if text.chars().count() <= REASON_WIDTH {
        text.to_string()
    } else {
        let cut: String = text.chars().take(REASON_WIDTH - 1).collect();
        format!("{}…", cut.trim_end())
    }
}
