//! A loop's training history read from its metric source (Prometheus, VictoriaMetrics, or the
//! embedded fleet): at least [`MIN_SOURCE_WEEKS`] weeks of every metric of the plugin, each
//! week's mean and peaks summarised in the source (one range query per metric and statistic
//! for the whole fleet), labelled from what the history itself shows (degradations detected
//! in its peaks), from an incident file, and from firing alerts.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::Serialize;
use setpoint_core::{Aggregation, MetricSeries};
use setpoint_learn::history::{MetricInfo, Pattern, TargetHistory};
use setpoint_learn::observed::DegradationRules;
use setpoint_learn::{Event, EventKind, History};
use setpoint_observe::{RangeQuery, WEEK_MS, WeeklySummary, summarise_weekly};

use super::learn_error;
use crate::stages::observe::{self, Degradation};
use crate::{LoopRuntime, Result};

/// Least weeks of history a model is trained on: a four-week window, its outcome horizon and
/// enough windows after them to learn from.
pub const MIN_SOURCE_WEEKS: u32 = 12;

/// Weeks of history read by default.
pub const DEFAULT_SOURCE_WEEKS: u32 = 13;

/// How to read a loop's training history from its source.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceHistoryOptions {
    /// Whole weeks to read, ending at `end` (at least [`MIN_SOURCE_WEEKS`]).
    pub weeks: u32,
    /// End of the history (exclusive), usually the clock's now.
    pub end: DateTime<Utc>,
    /// What counts as a degradation in the history's peaks.
    pub rules: DegradationRules,
    /// Incidents (CSV or JSON lines: target, week or RFC 3339 time, kind); weeks count from
    /// the history's first week.
    pub incidents: Option<PathBuf>,
    /// Label matchers selecting the firing alerts that count as degradations, e.g.
    /// `severity="critical"` (read from `ALERTS{alertstate="firing", …}`).
    pub alerts: Option<String>,
    /// The kind of degradation a firing alert stands for.
    pub alert_kind: EventKind,
}

/// Degradation labels by where they came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LabelSources {
    /// Target-weeks detected in the history's own peaks.
    pub detected: usize,
    /// Target-weeks from the incident file.
    pub incidents: usize,
    /// Target-weeks with a selected alert firing.
    pub alerts: usize,
}

/// A training history read from a loop's source.
pub struct SourceHistory {
    /// The weekly history (means and peaks of every target that had data).
    pub history: History,
    /// Every degradation, from all label sources, deduplicated.
    pub events: Vec<Event>,
    /// Start of week 0.
    pub start: DateTime<Utc>,
    /// End of the last week.
    pub end: DateTime<Utc>,
    /// Where the degradations came from.
    pub label_sources: LabelSources,
    /// Targets with no series at all (not in the history).
    pub targets_without_data: Vec<String>,
    /// Series that named no target: label value → metrics.
    pub unmatched_series: BTreeMap<String, Vec<String>>,
    /// What made the read incomplete (a failed query, a target lacking a metric).
    pub degraded: Vec<String>,
    /// Incidents or alerts that named no target of the history.
    pub unmatched_events: usize,
    /// Range queries issued.
    pub queries: usize,
}

/// Reads `options.weeks` weeks of the loop's metrics from its source and labels them.
pub async fn read_history(
    lp: &LoopRuntime,
    options: &SourceHistoryOptions,
) -> Result<SourceHistory> {
    let loop_name = lp.config.name.0.clone();
    if options.weeks < MIN_SOURCE_WEEKS {
        return Err(learn_error(
            &loop_name,
            format!(
                "{} weeks of history is too little to learn from (at least {MIN_SOURCE_WEEKS}: a 4-week window, its outcome horizon and the windows after)",
                options.weeks
            ),
        ));
    }
    let step = lp.config.window.step.0.as_secs();
    let window = observe::window_for(options.end, options.weeks, step);
    // An operator's training run reads as long as the history takes: no cycle deadline.
    let fleet = observe::observe(lp, &window, None).await;
    // A history with a metric missing for the whole fleet would teach the model a world
    // without it: refused, not learned from.
    let failed: Vec<String> = fleet
        .degraded
        .iter()
        .filter(|d| matches!(d, Degradation::QueryFailed { .. }))
        .map(Degradation::to_string)
        .collect();
    if !failed.is_empty() {
        return Err(learn_error(
            &loop_name,
            format!(
                "the history is incomplete, nothing was learned from it: {}",
                failed.join("; ")
            ),
        ));
    }
    let descriptor = lp.plugin.descriptor();
    let metrics: Vec<MetricInfo> = descriptor
        .metrics
        .iter()
        .map(|m| MetricInfo::observed(&m.name, m.unit == "ratio"))
        .collect();
    let weeks = options.weeks as usize;
    let end_ms = window.end.timestamp_millis();
    let start = window.end - chrono::Duration::weeks(i64::from(options.weeks));
    let summarised = lp.source.summarises_weekly();
    let mut targets = Vec::new();
    let mut targets_without_data = Vec::new();
    for o in &fleet.targets {
        if o.series.is_empty() {
            targets_without_data.push(o.target.id.clone());
            continue;
        }
        let mut weekly = Vec::with_capacity(metrics.len());
        let mut peaks = Vec::with_capacity(metrics.len());
        for spec in &descriptor.metrics {
            let target_weeks = o.weeks.get(&spec.name);
            let means: Vec<f64> = match target_weeks.filter(|ws| !ws.is_empty()) {
                Some(ws) if spec.aggregation == Aggregation::Mean || !summarised => {
                    ws.iter().map(|w| w.mean.unwrap_or(f64::NAN)).collect()
                }
                _ => weekly_values(
                    o.series.iter().find(|s| s.metric == spec.name),
                    end_ms,
                    weeks,
                    summarised,
                ),
            };
            weekly.push(means);
            peaks.push(target_weeks.cloned().unwrap_or_default());
        }
        targets.push(TargetHistory {
            id: o.target.id.clone(),
            scenario: "observed".to_string(),
            pattern: Pattern::Observed,
            weekly,
            peaks,
        });
    }
    if targets.is_empty() {
        return Err(learn_error(
            &loop_name,
            format!(
                "no target had any series in the {} weeks before {} ({} targets declared or discovered)",
                options.weeks,
                window.end.to_rfc3339(),
                fleet.targets.len()
            ),
        ));
    }
    let mut history = History {
        metrics,
        weeks: options.weeks,
        targets,
        events: Vec::new(),
    };
    let mut label_sources = LabelSources::default();
    let detected = setpoint_learn::observed::detect(&history, &options.rules);
    label_sources.detected = detected.len();
    let mut events = detected;
    let ids: std::collections::BTreeSet<String> =
        history.targets.iter().map(|t| t.id.clone()).collect();
    let mut unmatched_events = 0;
    if let Some(path) = &options.incidents {
        let incidents = setpoint_learn::load_incidents(path, Some(start))
            .map_err(|e| learn_error(&loop_name, e))?;
        for e in incidents {
            if !ids.contains(&e.target) {
                unmatched_events += 1;
            } else if e.week < options.weeks {
                label_sources.incidents += 1;
                events.push(e);
            }
        }
    }
    let mut queries = fleet.queries;
    if let Some(matchers) = &options.alerts {
        let alert_events = alerts(lp, &window, matchers, options.alert_kind, &ids).await?;
        queries += 1;
        unmatched_events += alert_events.1;
        label_sources.alerts = alert_events.0.len();
        events.extend(alert_events.0);
    }
    events.sort();
    events.dedup();
    history.events = events.clone();
    Ok(SourceHistory {
        history,
        events,
        start,
        end: window.end,
        label_sources,
        targets_without_data,
        unmatched_series: fleet.unmatched,
        degraded: fleet.degraded.iter().map(Degradation::to_string).collect(),
        unmatched_events,
        queries,
    })
}

/// The weeks of one plugin series (weekly points when the source summarised, raw samples
/// otherwise), oldest first, NaN for a week without data.
fn weekly_values(
    series: Option<&MetricSeries>,
    end_ms: i64,
    weeks: usize,
    summarised: bool,
) -> Vec<f64> {
    let Some(series) = series else {
        return vec![f64::NAN; weeks];
    };
    let summary;
    let weekly = if summarised {
        series
    } else {
        summary = summarise_weekly(
            series,
            end_ms,
            WeeklySummary {
                aggregation: Aggregation::Mean,
                weeks: u32::try_from(weeks).unwrap_or(u32::MAX),
                counted: true,
            },
        );
        &summary
    };
    (0..weeks)
        .map(|i| {
            let week_end = end_ms - (weeks - 1 - i) as i64 * WEEK_MS;
            weekly
                .timestamps_ms
                .iter()
                .position(|&t| t == week_end)
                .and_then(|k| weekly.values.get(k).copied())
                .filter(|v| v.is_finite())
                .unwrap_or(f64::NAN)
        })
        .collect()
}

/// The weeks in which an alert selected by `matchers` fired for a target of the history, as
/// events of `kind`; and how many alerting label values named no target.
async fn alerts(
    lp: &LoopRuntime,
    window: &setpoint_core::Window,
    matchers: &str,
    kind: EventKind,
    ids: &std::collections::BTreeSet<String>,
) -> Result<(Vec<Event>, usize)> {
    let loop_name = &lp.config.name.0;
    let matchers = matchers
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}');
    let selector = if matchers.is_empty() {
        r#"ALERTS{alertstate="firing"}"#.to_string()
    } else {
        format!(r#"ALERTS{{alertstate="firing",{matchers}}}"#)
    };
    let summarised = lp.source.summarises_weekly();
    let query = RangeQuery {
        metric: "ALERTS".to_string(),
        promql: format!("max by (instance) ({selector})"),
        technology: lp.plugin.descriptor().technology.clone(),
        start: window.start,
        end: window.end,
        step_seconds: window.step_seconds,
        target_label: "instance".to_string(),
        weekly: summarised.then_some(WeeklySummary {
            aggregation: Aggregation::Max,
            weeks: window.weeks,
            counted: true,
        }),
    };
    let answer = lp
        .source
        .query_range(&query)
        .await
        .map_err(|e| learn_error(loop_name, format!("alerts ({selector}): {e}")))?;
    let (_, names, _) = observe::resolve_targets(
        Vec::new(),
        &lp.config.targets,
        &lp.plugin.descriptor().technology,
    );
    let weeks = window.weeks as usize;
    let end_ms = window.end.timestamp_millis();
    let (mut events, mut unmatched) = (Vec::new(), 0);
    for (label, series) in answer.series {
        let target = names.get(&label).cloned().unwrap_or(label);
        if !ids.contains(&target) {
            unmatched += 1;
            continue;
        }
        let firing = if summarised {
            series
        } else {
            summarise_weekly(
                &series,
                end_ms,
                WeeklySummary {
                    aggregation: Aggregation::Max,
                    weeks: window.weeks,
                    counted: true,
                },
            )
        };
        for (t, v) in firing.timestamps_ms.iter().zip(&firing.values) {
            let back = (end_ms - t) / WEEK_MS;
            if *v >= 1.0 && (0..weeks as i64).contains(&back) {
                events.push(Event {
                    target: target.clone(),
                    week: u32::try_from(weeks as i64 - 1 - back).unwrap_or(0),
                    kind,
                });
            }
        }
    }
    Ok((events, unmatched))
}
