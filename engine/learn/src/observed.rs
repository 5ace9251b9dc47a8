//! Degradations detected in a history read from a metric source.
//!
//! A real fleet's history carries no ground truth, but it shows when a target was in trouble:
//! a load dimension (CPU, disk) spending a share of its week at or above
//! [`NEAR_SATURATION`](setpoint_core::NEAR_SATURATION), memory whose busiest hour nears the
//! limit, connections near `max_connections`. Each such week is a degradation of the
//! [`EventKind`] the outcome labels use, alongside incidents imported from files and alerts.

use serde::{Deserialize, Serialize};

use crate::history::{Event, EventKind, History, Role};

/// What counts as a degradation in a week of a history read from a source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DegradationRules {
    /// A load metric spending at least this share of a week at or above the near-saturation
    /// level queues: a latency spike. 0.10 is 2.4 hours a day: a daily peak hour near the top
    /// is what capacity is for; a tenth of the week there is sustained saturation.
    pub load_share: f64,
    /// Memory whose busiest hour reaches this share: memory pressure (the OOM killer's
    /// territory).
    pub memory_peak: f64,
    /// Connections whose busiest hour or 99th percentile reaches this share of the limit:
    /// clients time out.
    pub connections_peak: f64,
}

impl Default for DegradationRules {
    fn default() -> Self {
        Self {
            load_share: 0.10,
            memory_peak: setpoint_core::SATURATED,
            connections_peak: setpoint_core::SATURATED,
        }
    }
}

/// Every degradation the rules see in `history`'s peaks, sorted by target, week and kind.
pub fn detect(history: &History, rules: &DegradationRules) -> Vec<Event> {
    let mut events = Vec::new();
    for target in &history.targets {
        for (k, metric) in history.metrics.iter().enumerate() {
            let Some(weeks) = target.peaks.get(k) else {
                continue;
            };
            for (week, w) in weeks.iter().enumerate() {
                let kind = match metric.role {
                    Role::Load => w
                        .near_saturation
                        .is_some_and(|s| s >= rules.load_share)
                        .then_some(EventKind::LatencySpike),
                    Role::Memory => w
                        .max_hourly
                        .is_some_and(|v| v >= rules.memory_peak)
                        .then_some(EventKind::OomKill),
                    Role::Connections => w
                        .peak()
                        .is_some_and(|v| v >= rules.connections_peak)
                        .then_some(EventKind::ConnectionTimeout),
                    Role::Gauge => None,
                };
                if let Some(kind) = kind {
                    events.push(Event {
                        target: target.id.clone(),
                        week: u32::try_from(week).unwrap_or(u32::MAX),
                        kind,
                    });
                }
            }
        }
    }
    events.sort();
    events.dedup();
    events
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use setpoint_core::WeekPeak;

    use super::*;
    use crate::history::{MetricInfo, Pattern, TargetHistory};

    fn week(mean: f64, peak: f64, near: f64) -> WeekPeak {
        WeekPeak {
            mean: Some(mean),
            p99: Some(peak),
            max_hourly: Some(peak),
            near_saturation: Some(near),
            coverage: 1.0,
        }
    }

    #[test]
    fn saturated_weeks_become_events_of_their_kind() {
        let metrics = ["cpu", "memory", "connections"]
            .iter()
            .map(|m| MetricInfo::observed(m, true))
            .collect();
        let target = TargetHistory {
            id: "pg-1".into(),
            scenario: "observed".into(),
            pattern: Pattern::Observed,
            weekly: vec![vec![0.5; 3]; 3],
            peaks: vec![
                // CPU: week 1 spends 10 % of its time at ≥ 90 %.
                vec![
                    week(0.5, 0.8, 0.0),
                    week(0.7, 0.97, 0.10),
                    week(0.5, 0.8, 0.01),
                ],
                // Memory: week 2's busiest hour at 96 %.
                vec![
                    week(0.6, 0.7, 0.0),
                    week(0.6, 0.7, 0.0),
                    week(0.9, 0.96, 0.5),
                ],
                // Connections: never near the limit.
                vec![week(0.3, 0.5, 0.0); 3],
            ],
        };
        let history = History {
            metrics,
            weeks: 3,
            targets: vec![target],
            events: Vec::new(),
        };
        let events = detect(&history, &DegradationRules::default());
        let got: Vec<(u32, EventKind)> = events.iter().map(|e| (e.week, e.kind)).collect();
        assert_eq!(got, [(1, EventKind::LatencySpike), (2, EventKind::OomKill)]);
    }
}
