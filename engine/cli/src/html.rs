//! The weekly report as one self-contained HTML document (inline CSS and SVG, no scripts, no
//! external resources), usable as a file and as an email body; and the four-week chart of a
//! target's fingerprint that the report and the review page share.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use setpoint_act::ActOutcome;
use setpoint_core::{FeatureVector, ReviewItem};
use setpoint_runtime::{CycleReport, TargetRow};

/// Colours of the series, in metric order (distinguishable for the common colour blindnesses).
const COLOURS: [&str; 6] = [
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9",
];

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A metric's weekly values, oldest week first (`None` where data was missing).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The metric, e.g. `cpu`.
    pub metric: String,
    /// W-N … W-1.
    pub weeks: Vec<Option<f64>>,
}

/// Groups `<metric>_w<N>` features into series, in the plugin's metric order, oldest week
/// first. Features without a week suffix are not weekly and are left out.
pub fn weekly_series(features: &FeatureVector) -> Vec<Series> {
    let mut order: Vec<String> = Vec::new();
    let mut by_metric: BTreeMap<String, BTreeMap<u32, Option<f64>>> = BTreeMap::new();
    for f in &features.features {
        let Some((metric, week)) = f.name.rsplit_once("_w") else {
            continue;
        };
        let Ok(week) = week.parse::<u32>() else {
            continue;
        };
        if !order.iter().any(|m| m == metric) {
            order.push(metric.to_string());
        }
        by_metric
            .entry(metric.to_string())
            .or_default()
            .insert(week, f.value);
    }
    order
        .into_iter()
        .map(|metric| {
            let weeks = by_metric
                .remove(&metric)
                .unwrap_or_default()
                .into_iter()
                .rev()
                .map(|(_, v)| v)
                .collect();
            Series { metric, weeks }
        })
        .collect()
}

/// A line chart of a target's weekly utilisation per metric (0–100 %), with the bootstrap
/// thresholds the classifier's first phase uses as dashed guides (40 % and 85 %). Missing
/// weeks are gaps, never zeros. `width` × `height` pixels.
pub fn chart_svg(features: &FeatureVector, width: u32, height: u32, legend: bool) -> String {
    let series = weekly_series(features);
    let weeks = series.iter().map(|s| s.weeks.len()).max().unwrap_or(0);
    let (w, h) = (f64::from(width), f64::from(height));
    let (left, right, top) = (28.0, 6.0, 6.0);
    let bottom = if legend { 30.0 } else { 16.0 };
    let plot_w = (w - left - right).max(1.0);
    let plot_h = (h - top - bottom).max(1.0);
    // Values are fractions (0..1) in the bundled plugins; anything above 1.5 is read as percent.
    let scale = if series
        .iter()
        .flat_map(|s| s.weeks.iter().flatten())
        .any(|v| *v > 1.5)
    {
        1.0
    } else {
        100.0
    };
    let x = |i: usize| {
        if weeks <= 1 {
            left + plot_w / 2.0
        } else {
            left + plot_w * i as f64 / (weeks - 1) as f64
        }
    };
    let y = |percent: f64| top + plot_h * (1.0 - percent.clamp(0.0, 100.0) / 100.0);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="weekly utilisation">"#
    );
    let _ = write!(
        svg,
        r##"<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fafafa" stroke="#ddd"/>"##
    );
    for (percent, label) in [(40.0, "40"), (85.0, "85")] {
        let yy = y(percent);
        let _ = write!(
            svg,
            r##"<line x1="{left}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#999" stroke-dasharray="3 3"/><text x="{}" y="{:.1}" font-size="9" text-anchor="end" fill="#666">{label}%</text>"##,
            left + plot_w,
            left - 3.0,
            yy + 3.0
        );
    }
    for i in 0..weeks {
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" font-size="9" text-anchor="middle" fill="#666">W-{}</text>"##,
            x(i),
            top + plot_h + 11.0,
            weeks - i
        );
    }
    for (k, s) in series.iter().enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        // One polyline per run of present weeks: a gap shows missing data.
        let mut run: Vec<String> = Vec::new();
        let flush = |run: &mut Vec<String>, svg: &mut String| {
            if run.len() > 1 {
                let _ = write!(
                    svg,
                    r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
                    run.join(" ")
                );
            }
            run.clear();
        };
        for (i, value) in s.weeks.iter().enumerate() {
            match value {
                Some(v) => {
                    let (px, py) = (x(i), y(v * scale));
                    run.push(format!("{px:.1},{py:.1}"));
                    let _ = write!(
                        svg,
                        r#"<circle cx="{px:.1}" cy="{py:.1}" r="2.5" fill="{colour}"><title>{} W-{}: {:.0}%</title></circle>"#,
                        escape(&s.metric),
                        weeks - i,
                        v * scale
                    );
                }
                None => flush(&mut run, &mut svg),
            }
        }
        flush(&mut run, &mut svg);
        if legend {
            let lx = left + k as f64 * (plot_w / series.len().max(1) as f64);
            let _ = write!(
                svg,
                r##"<rect x="{lx:.1}" y="{:.1}" width="8" height="8" fill="{colour}"/><text x="{:.1}" y="{:.1}" font-size="10" fill="#333">{}</text>"##,
                h - 10.0,
                lx + 11.0,
                h - 2.5,
                escape(&s.metric)
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// The report's style sheet, shared with the review page.
pub const STYLE: &str = "body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5em;color:#222}\
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}\
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #e3e3e3;padding:4px 8px;text-align:left;vertical-align:middle;font-size:13px}\
th{background:#f3f3f3}.muted{color:#777}.verdict-act{color:#0a7d32;font-weight:600}.verdict-review{color:#a15c00;font-weight:600}\
.verdict-block{color:#b00020;font-weight:600}.verdict-hold{color:#555}.error{color:#b00020}\
.summary span{display:inline-block;margin-right:1.2em}";

fn verdict_cell(row: &TargetRow) -> String {
    match row.verdict {
        Some(v) => format!(r#"<span class="verdict-{v}">{v}</span>"#),
        None => r#"<span class="error">failed</span>"#.to_string(),
    }
}

/// The weekly report as an HTML document: per loop, a summary and one row per target with its
/// four-week chart; then what awaits review. `features` gives each target's latest features
/// (from the journal); a target without them gets no chart.
pub fn report(
    reports: &[CycleReport],
    features: &BTreeMap<String, FeatureVector>,
    pending: &[ReviewItem],
) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>setpoint weekly report</title><style>{STYLE}</style></head><body><h1>setpoint weekly report</h1>"
    );
    for r in reports {
        let mut classes: BTreeMap<String, usize> = BTreeMap::new();
        let mut verdicts: BTreeMap<String, usize> = BTreeMap::new();
        for row in &r.rows {
            *classes
                .entry(row.class.map(|c| c.to_string()).unwrap_or("failed".into()))
                .or_default() += 1;
            *verdicts
                .entry(
                    row.verdict
                        .map(|v| v.to_string())
                        .unwrap_or("failed".into()),
                )
                .or_default() += 1;
        }
        let join = |m: &BTreeMap<String, usize>| {
            m.iter()
                .map(|(k, v)| format!("{} {v}", escape(k)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = write!(
            out,
            "<h2>loop {} · cycle {} · {} · {}</h2><p class=\"summary\"><span>{} targets</span><span>source {}</span><span>plugin {}</span><span>classes: {}</span><span>verdicts: {}</span></p>",
            escape(&r.loop_name),
            r.cycle,
            r.now.format("%Y-%m-%d %H:%M UTC"),
            r.mode.as_str(),
            r.rows.len(),
            escape(&r.source),
            escape(&r.plugin),
            join(&classes),
            join(&verdicts)
        );
        out.push_str("<table><thead><tr><th>target</th><th>tech</th><th>class</th><th>conf</th><th>verdict</th><th>proposed change</th><th>top reason</th><th>four weeks</th></tr></thead><tbody>");
        for row in &r.rows {
            let reason = match (&row.error, &row.reason) {
                (Some(error), _) => format!(r#"<span class="error">{}</span>"#, escape(error)),
                (None, Some(reason)) => format!(
                    "<code>{}</code> {}",
                    escape(&reason.code),
                    escape(&reason.message)
                ),
                (None, None) => "—".into(),
            };
            let executed = if matches!(row.outcome, Some(ActOutcome::Executed { .. })) {
                " <span class=\"verdict-act\">(executed)</span>"
            } else {
                ""
            };
            let chart = features
                .get(&row.target)
                .map(|f| chart_svg(f, 180, 64, false))
                .unwrap_or_default();
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}{executed}</td><td>{}</td><td>{reason}</td><td>{chart}</td></tr>",
                escape(&row.target),
                escape(&row.technology),
                row.class.map(|c| c.to_string()).unwrap_or("—".into()),
                row.confidence
                    .map(|c| format!("{c:.2}"))
                    .unwrap_or("—".into()),
                verdict_cell(row),
                escape(row.change.as_deref().unwrap_or("—")),
            );
        }
        out.push_str("</tbody></table>");
        if let Some(first) = r.rows.iter().find_map(|row| features.get(&row.target)) {
            // One legend for all the small charts.
            let legend: Vec<String> = weekly_series(first)
                .iter()
                .enumerate()
                .map(|(k, s)| {
                    format!(
                        r#"<span style="color:{}">■</span> {}"#,
                        COLOURS[k % COLOURS.len()],
                        escape(&s.metric)
                    )
                })
                .collect();
            let _ = write!(
                out,
                "<p class=\"muted\">charts: weekly utilisation W-4 … W-1, dashed at 40 % and 85 %: {}</p>",
                legend.join(" &nbsp; ")
            );
        }
    }
    if pending.is_empty() {
        out.push_str("<h2>nothing awaits review</h2>");
    } else {
        let _ = write!(
            out,
            "<h2>awaiting review ({})</h2><table><thead><tr><th>#</th><th>target</th><th>action</th><th>plan</th><th>expires</th></tr></thead><tbody>",
            pending.len()
        );
        for item in pending {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                item.id,
                escape(&item.target),
                item.action,
                escape(&item.proposal.summary),
                item.expires_at.format("%Y-%m-%d %H:%M UTC")
            );
        }
        out.push_str("</tbody></table><p class=\"muted\">decide: <code>setpoint review show &lt;id&gt;</code>, then approve or reject</p>");
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use setpoint_core::Feature;

    use super::*;

    fn features(values: &[(&str, Option<f64>)]) -> FeatureVector {
        FeatureVector {
            features: values
                .iter()
                .map(|(name, value)| Feature {
                    name: name.to_string(),
                    value: *value,
                    coverage: if value.is_some() { 1.0 } else { 0.0 },
                })
                .collect(),
        }
    }

    #[test]
    fn weeks_are_grouped_per_metric_oldest_first() {
        let f = features(&[
            ("cpu_w4", Some(0.11)),
            ("cpu_w3", Some(0.09)),
            ("cpu_w2", None),
            ("cpu_w1", Some(0.10)),
            ("memory_w4", Some(0.58)),
            ("memory_w1", Some(0.57)),
            ("lag_slope", Some(1.0)),
        ]);
        let series = weekly_series(&f);
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].metric, "cpu");
        assert_eq!(
            series[0].weeks,
            vec![Some(0.11), Some(0.09), None, Some(0.10)]
        );
        assert_eq!(series[1].weeks, vec![Some(0.58), Some(0.57)]);
    }

    #[test]
    fn a_missing_week_is_a_gap_not_a_zero() {
        let f = features(&[
            ("cpu_w4", Some(0.5)),
            ("cpu_w3", Some(0.5)),
            ("cpu_w2", None),
            ("cpu_w1", Some(0.5)),
        ]);
        let svg = chart_svg(&f, 180, 64, true);
        // Two points before the gap make a line; the lone point after it does not.
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(svg.contains("cpu W-1: 50%"), "{svg}");
        assert!(!svg.contains("NaN"));
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<b a=\"1\">&'"),
            "&lt;b a=&quot;1&quot;&gt;&amp;&#39;"
        );
    }
}
