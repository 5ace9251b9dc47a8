//! The weekly report as one self-contained HTML document (inline CSS and SVG, no scripts, no
//! external resources), usable as a file and as an email body; and the four-week chart of a
//! target's fingerprint that the report and the review page share.
//!
//! The markup lives in askama templates under `templates/`, checked when this crate compiles and
//! escaped by the template engine; this module computes what they show (the chart's geometry,
//! the per-loop summaries).

use std::collections::BTreeMap;

use askama::Template;
use setpoint_act::ActOutcome;
use setpoint_core::{FeatureVector, ReviewItem, Verdict};
use setpoint_runtime::CycleReport;

/// Colours of the series, in metric order (distinguishable for the common colour blindnesses).
const COLOURS: [&str; 6] = [
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9",
];

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

/// A dashed guide line across the chart at a threshold.
struct Guide {
    y: f64,
    label: &'static str,
}

/// A week's label under the plot.
struct WeekLabel {
    x: f64,
    week: usize,
}

/// A measured week of one series.
struct Point {
    x: f64,
    y: f64,
    week: usize,
    percent: f64,
}

/// What a series draws, in drawing order.
enum Mark {
    /// A line through a run of present weeks, as SVG `points`.
    Line(String),
    /// One measured week.
    Point(Point),
}

/// One metric's marks and, with a legend, where its legend entry goes.
struct ChartSeries {
    metric: String,
    colour: &'static str,
    marks: Vec<Mark>,
    legend_x: Option<f64>,
}

/// A line chart of a target's weekly utilisation per metric (0–100 %), with the bootstrap
/// thresholds the classifier's first phase uses as dashed guides (40 % and 85 %). Missing
/// weeks are gaps, never zeros. Rendered as an inline SVG element.
#[derive(Template)]
#[template(path = "chart.svg")]
pub struct Chart {
    width: u32,
    height: u32,
    left: f64,
    top: f64,
    plot_w: f64,
    plot_h: f64,
    right: f64,
    guide_label_x: f64,
    week_label_y: f64,
    legend_y: f64,
    legend_text_y: f64,
    guides: Vec<Guide>,
    week_labels: Vec<WeekLabel>,
    series: Vec<ChartSeries>,
}

impl Chart {
    /// The chart of `features`, `width` × `height` pixels, with a legend under the plot or not.
    pub fn new(features: &FeatureVector, width: u32, height: u32, legend: bool) -> Self {
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
        let count = series.len();
        let series = series
            .into_iter()
            .enumerate()
            .map(|(k, s)| {
                // One line per run of present weeks: a gap shows missing data.
                let mut marks = Vec::new();
                let mut run: Vec<String> = Vec::new();
                let flush = |run: &mut Vec<String>, marks: &mut Vec<Mark>| {
                    if run.len() > 1 {
                        marks.push(Mark::Line(run.join(" ")));
                    }
                    run.clear();
                };
                for (i, value) in s.weeks.iter().enumerate() {
                    match value {
                        Some(v) => {
                            let (px, py) = (x(i), y(v * scale));
                            run.push(format!("{px:.1},{py:.1}"));
                            marks.push(Mark::Point(Point {
                                x: px,
                                y: py,
                                week: weeks - i,
                                percent: v * scale,
                            }));
                        }
                        None => flush(&mut run, &mut marks),
                    }
                }
                flush(&mut run, &mut marks);
                ChartSeries {
                    metric: s.metric,
                    colour: COLOURS[k % COLOURS.len()],
                    marks,
                    legend_x: legend.then(|| left + k as f64 * (plot_w / count.max(1) as f64)),
                }
            })
            .collect();
        Self {
            width,
            height,
            left,
            top,
            plot_w,
            plot_h,
            right: left + plot_w,
            guide_label_x: left - 3.0,
            week_label_y: top + plot_h + 11.0,
            legend_y: h - 10.0,
            legend_text_y: h - 2.5,
            guides: vec![
                Guide {
                    y: y(40.0),
                    label: "40",
                },
                Guide {
                    y: y(85.0),
                    label: "85",
                },
            ],
            week_labels: (0..weeks)
                .map(|i| WeekLabel {
                    x: x(i),
                    week: weeks - i,
                })
                .collect(),
            series,
        }
    }
}

/// A row's top reason, as the report and the review page show it.
pub(crate) enum Reason {
    /// The target's cycle failed with this message.
    Error(String),
    /// The policy's first reason: its code and message.
    Code(String, String),
    /// Nothing to say.
    None,
}

/// One target's row in the report.
struct ReportRow {
    target: String,
    technology: String,
    class: String,
    confidence: String,
    verdict: Option<Verdict>,
    executed: bool,
    change: String,
    reason: Reason,
    chart: Option<Chart>,
}

/// One loop's section of the report.
struct ReportLoop {
    name: String,
    cycle: u64,
    at: String,
    mode: &'static str,
    source: String,
    plugin: String,
    classes: BTreeMap<String, usize>,
    verdicts: BTreeMap<String, usize>,
    rows: Vec<ReportRow>,
    /// Each metric's colour, for the one legend of all the small charts.
    legend: Vec<(&'static str, String)>,
}

#[derive(Template)]
#[template(path = "report.html")]
struct Report<'a> {
    loops: Vec<ReportLoop>,
    pending: &'a [ReviewItem],
}

/// The weekly report as an HTML document: per loop, a summary and one row per target with its
/// four-week chart; then what awaits review. `features` gives each target's latest features
/// (from the journal); a target without them gets no chart.
pub fn report(
    reports: &[CycleReport],
    features: &BTreeMap<String, FeatureVector>,
    pending: &[ReviewItem],
) -> askama::Result<String> {
    let loops = reports
        .iter()
        .map(|r| {
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
            let rows = r
                .rows
                .iter()
                .map(|row| ReportRow {
                    target: row.target.clone(),
                    technology: row.technology.clone(),
                    class: row.class.map(|c| c.to_string()).unwrap_or("—".into()),
                    confidence: row
                        .confidence
                        .map(|c| format!("{c:.2}"))
                        .unwrap_or("—".into()),
                    verdict: row.verdict,
                    executed: matches!(row.outcome, Some(ActOutcome::Executed { .. })),
                    change: row.change.clone().unwrap_or("—".into()),
                    reason: match (&row.error, &row.reason) {
                        (Some(error), _) => Reason::Error(error.clone()),
                        (None, Some(reason)) => {
                            Reason::Code(reason.code.clone(), reason.message.clone())
                        }
                        (None, None) => Reason::None,
                    },
                    chart: features
                        .get(&row.target)
                        .map(|f| Chart::new(f, 180, 64, false)),
                })
                .collect();
            let legend = r
                .rows
                .iter()
                .find_map(|row| features.get(&row.target))
                .map(|first| {
                    weekly_series(first)
                        .into_iter()
                        .enumerate()
                        .map(|(k, s)| (COLOURS[k % COLOURS.len()], s.metric))
                        .collect()
                })
                .unwrap_or_default();
            ReportLoop {
                name: r.loop_name.clone(),
                cycle: r.cycle,
                at: r.now.format("%Y-%m-%d %H:%M UTC").to_string(),
                mode: r.mode.as_str(),
                source: r.source.clone(),
                plugin: r.plugin.clone(),
                classes,
                verdicts,
                rows,
                legend,
            }
        })
        .collect();
    let mut out = Report { loops, pending }.render()?;
    out.push('\n');
    Ok(out)
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
        let svg = Chart::new(&f, 180, 64, true).render().unwrap();
        // Two points before the gap make a line; the lone point after it does not.
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(svg.contains("cpu W-1: 50%"), "{svg}");
        assert!(!svg.contains("NaN"));
    }

    #[test]
    fn a_metric_name_is_escaped_in_the_chart() {
        let f = features(&[("<b>&_w2", Some(0.5)), ("<b>&_w1", Some(0.5))]);
        let svg = Chart::new(&f, 180, 64, true).render().unwrap();
        assert!(svg.contains("&#60;b&#62;&#38; W-1: 50%"), "{svg}");
        assert!(!svg.contains("<b>"), "{svg}");
    }
}
