//! The full trace of a target's last decision as text: `setpoint explain` prints it and the
//! review page shows it under each target, so both read the same account.

use std::fmt::Write;

use setpoint_core::{JournalEntry, format_bytes, format_cpu};

/// Renders a journal entry as a readable trace.
pub fn render(entry: &JournalEntry) -> String {
    let mut out = String::new();
    let t = &entry.target;
    let _ = writeln!(out, "target {} ({})", t.id, t.technology);
    let _ = writeln!(
        out,
        "  loop {} · cycle {} · {} · plugin {}",
        entry.loop_name,
        entry.cycle,
        entry.at.to_rfc3339(),
        entry.plugin
    );
    let mut size = format!(
        "  current size: {} / {}",
        format_cpu(t.resources.cpu_millicores),
        format_bytes(t.resources.memory_bytes)
    );
    for (k, v) in &t.resources.parameters {
        let _ = write!(size, ", {k}={v}");
    }
    let _ = writeln!(out, "{size}");
    if !t.labels.is_empty() {
        let labels: Vec<String> = t.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(out, "  labels: {}", labels.join(", "));
    }

    if !entry.observe_issues.is_empty() {
        let _ = writeln!(out, "\nobservation problems");
        for issue in &entry.observe_issues {
            let _ = writeln!(out, "  - {issue}");
        }
    }

    let _ = writeln!(out, "\nfeatures (value · coverage)");
    if entry.features.features.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for f in &entry.features.features {
        // Shares print as percentages; the projection's horizon is in weeks.
        let value = f
            .value
            .map(|v| {
                if f.name.ends_with("_weeks_to_saturation") {
                    format!("{v:>5.1} wk")
                } else {
                    format!("{:>6.1} %", v * 100.0)
                }
            })
            .unwrap_or_else(|| "missing".to_string());
        let _ = writeln!(
            out,
            "  {:<28} {:>9} · {:>3.0} %",
            f.name,
            value,
            f.coverage * 100.0
        );
    }

    let _ = writeln!(out, "\nclassification");
    if let Some(fallback) = &entry.classifier_fallback {
        let _ = writeln!(out, "  {fallback}");
    }
    match &entry.classification {
        Some(c) => {
            let _ = writeln!(
                out,
                "  {} (confidence {:.2}) by {} v{}",
                c.class, c.confidence, c.model, c.model_version
            );
            let _ = writeln!(
                out,
                "  reason: {} — {}",
                c.explanation.code, c.explanation.rule
            );
            for e in &c.explanation.evidence {
                let value = e
                    .value
                    .map(|v| format!("{:.3}", v))
                    .unwrap_or_else(|| "missing".into());
                let _ = writeln!(
                    out,
                    "    {} {} = {} {} → {}",
                    if e.held { "✓" } else { "✗" },
                    e.feature,
                    value,
                    e.test,
                    if e.held { "holds" } else { "does not hold" }
                );
            }
            let _ = writeln!(
                out,
                "  class stable for {} consecutive cycle(s)",
                entry.stable_cycles
            );
        }
        None => {
            let _ = writeln!(out, "  not reached");
        }
    }

    if let Some(floor) = &entry.floor {
        let _ = writeln!(out, "\nsafety floor (what a scale-down may not go below)");
        for bound in &floor.dimensions {
            let _ = writeln!(out, "  {}", bound.describe(&floor.settings));
        }
        if let Some((dimension, weeks)) = floor.saturating() {
            let _ = writeln!(
                out,
                "  {} is saturated or projected to reach {:.0} % of its size in {weeks:.1} weeks: nothing shrinks",
                dimension.metric(),
                setpoint_core::SATURATED * 100.0
            );
        }
        let classed_down = entry
            .classification
            .as_ref()
            .is_some_and(|c| c.class == setpoint_core::Class::ScaleDown);
        let has_down = entry
            .proposals
            .iter()
            .any(|p| p.action == setpoint_core::ActionKind::ScaleDown);
        if classed_down && !has_down && entry.error.is_none() {
            let _ = writeln!(
                out,
                "  no scale-down proposed: no size below the current one stays above the floor"
            );
        }
    }

    let _ = writeln!(out, "\nproposals ({})", entry.proposals.len());
    for p in &entry.proposals {
        let _ = writeln!(out, "  {} · risk {:?}: {}", p.action, p.risk, p.summary);
        if !p.rationale.is_empty() {
            let _ = writeln!(out, "    why: {}", p.rationale);
        }
        for (i, op) in p.operations.iter().enumerate() {
            let _ = writeln!(out, "    {}. {}", i + 1, op);
        }
    }

    let _ = writeln!(out, "\npolicy decision");
    match &entry.decision {
        Some(d) => {
            let _ = writeln!(
                out,
                "  verdict {}{}",
                d.verdict,
                d.proposal
                    .map(|p| format!(" · proposal {p}"))
                    .unwrap_or_default()
            );
            for r in &d.reasons {
                let _ = writeln!(out, "  - {}: {}", r.code, r.message);
            }
        }
        None => {
            let _ = writeln!(out, "  not reached");
        }
    }

    let _ = writeln!(out, "\naction");
    if entry.plan.is_empty() {
        let _ = writeln!(out, "  nothing to run");
    } else {
        let heading = match &entry.intent {
            Some(intent) => format!(
                "intent {} · {}{} · {} attempt(s){}:",
                &intent.key[..intent.key.len().min(12)],
                intent.status,
                if intent.reconciled {
                    " (finished at start-up after a crash)"
                } else {
                    ""
                },
                intent.attempts,
                intent
                    .review
                    .map(|id| format!(" · carries out approved review {id}"))
                    .unwrap_or_default()
            ),
            None if entry.executed => "executed:".to_string(),
            None => "not executed (dry-run or awaiting approval); the plan:".to_string(),
        };
        let _ = writeln!(out, "  {heading}");
        let results = entry.intent.as_ref().map(|i| i.results.as_slice());
        for (i, op) in entry.plan.iter().enumerate() {
            match results.and_then(|r| r.get(i)) {
                Some(r) => {
                    let status = serde_json::to_value(&r.status)
                        .ok()
                        .and_then(|v| v["status"].as_str().map(str::to_string))
                        .unwrap_or_default();
                    let _ = writeln!(
                        out,
                        "    {}. {} → {status} by {} at {}{}",
                        i + 1,
                        op,
                        r.actuator,
                        r.object,
                        if r.detail.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", r.detail)
                        }
                    );
                }
                None => {
                    let _ = writeln!(out, "    {}. {}", i + 1, op);
                }
            }
        }
        if let Some(error) = entry.intent.as_ref().and_then(|i| i.error.as_ref()) {
            let _ = writeln!(out, "  not carried out: {error}");
        }
    }
    if let Some(chosen) = entry
        .chosen_proposal()
        .filter(|_| t.technology == "postgres")
    {
        render_postgres(&mut out, chosen, &t.id);
    }
    if let Some(error) = &entry.error {
        let _ = writeln!(out, "\nerror at stage {:?}: {}", error.stage, error.message);
    }
    let _ = writeln!(
        out,
        "\nfull policy input and output: setpoint explain {} --output json",
        t.id
    );
    out
}

/// The chosen PostgreSQL plan as each actuator would send it.
fn render_postgres(out: &mut String, chosen: &setpoint_core::Proposal, target: &str) {
    use setpoint_act::render;
    let json = |v: &serde_json::Value| serde_json::to_string(v).unwrap_or_default();
    let _ = writeln!(
        out,
        "\nthe {} plan as the actuators would send it",
        chosen.action
    );
    let _ = writeln!(
        out,
        "  CloudNativePG Cluster {target} (merge patch): {}",
        json(&render::cnpg_cluster_patch(chosen))
    );
    let patroni = render::patroni_plan(chosen, "<next maintenance window>");
    if let Some(patch) = &patroni.config_patch {
        let _ = writeln!(out, "  Patroni PATCH /config: {}", json(patch));
    }
    if let Some(restart) = &patroni.restart {
        let _ = writeln!(
            out,
            "  Patroni POST /restart (each member): {}",
            json(restart)
        );
    }
    if let Some(vpa) = render::vpa_object(chosen, target, "postgres") {
        let _ = writeln!(out, "  VerticalPodAutoscaler: {}", json(&vpa));
    }
}
