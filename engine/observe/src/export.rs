//! Writes the simulated fleet as the raw exporter metrics a real stack would hold, for
//! backfilling Prometheus (OpenMetrics, through `promtool tsdb create-blocks-from openmetrics`)
//! or VictoriaMetrics (`/api/v1/import/prometheus`).
//!
//! The series are the ones node_exporter and postgres_exporter emit, shaped so that the
//! PostgreSQL plugin's PromQL gives back the simulator's ratios: an idle-CPU counter that grows
//! by `(1 - cpu) × step` seconds per step, `MemAvailable = MemTotal × (1 - memory)`, active
//! connections = `connections × max_connections`, and a disk-busy counter growing by
//! `iops × step`. A backfilled target should therefore classify as it does on the simulator.

use std::io::{self, Write};

use chrono::{DateTime, Duration, Utc};
use setpoint_core::MetricSeries;

use crate::RangeQuery;
use crate::sim::SimulatedFleet;

/// The PostgreSQL plugin's metrics, which this export turns into exporter series.
const METRICS: [&str; 4] = ["cpu", "memory", "connections", "iops"];

/// The technology whose exporters the export imitates.
const TECHNOLOGY: &str = "postgres";

/// The file format to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// OpenMetrics text, timestamps in seconds, ending in `# EOF` (for `promtool`).
    OpenMetrics,
    /// Prometheus text lines with millisecond timestamps (for VictoriaMetrics' import API).
    VictoriaMetrics,
}

/// What to export.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportOptions {
    /// End of the exported range (exclusive).
    pub end: DateTime<Utc>,
    /// Weeks of history before `end`.
    pub weeks: u32,
    /// Sample spacing in seconds. At most half the plugin's 5-minute `rate()` window, so every
    /// window holds two samples.
    pub step_seconds: u64,
    /// Only these target ids (all when empty).
    pub targets: Vec<String>,
    /// The `job` label value.
    pub job: String,
}

/// How much was written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// Targets written.
    pub targets: usize,
    /// Series written.
    pub series: usize,
    /// Samples written.
    pub samples: usize,
}

/// One exported series: name, extra labels, and its samples.
struct Out {
    name: &'static str,
    labels: Vec<(&'static str, String)>,
    points: Vec<(i64, f64)>,
}

/// Writes the fleet's history in `format`. Unknown target ids are an error naming them.
pub fn export(
    fleet: &SimulatedFleet,
    options: &ExportOptions,
    format: ExportFormat,
    out: &mut impl Write,
) -> io::Result<ExportStats> {
    let targets: Vec<_> = fleet
        .targets()
        .iter()
        .filter(|t| options.targets.is_empty() || options.targets.contains(&t.id))
        .cloned()
        .collect();
    if let Some(missing) = options
        .targets
        .iter()
        .find(|id| !targets.iter().any(|t| &t.id == *id))
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("no simulated target {missing:?}"),
        ));
    }
    let start = options.end - Duration::weeks(i64::from(options.weeks));
    let mut by_metric: Vec<Vec<(String, MetricSeries)>> = Vec::new();
    for metric in METRICS {
        let query = RangeQuery {
            metric: metric.to_string(),
            promql: String::new(),
            technology: TECHNOLOGY.to_string(),
            start,
            end: options.end,
            step_seconds: options.step_seconds,
            target_label: "instance".to_string(),
            weekly: None,
        };
        let result = fleet
            .query(&query)
            .map_err(|e| io::Error::other(e.to_string()))?;
        by_metric.push(result.series);
    }
    let series_of = |metric: usize, id: &str| -> Option<&MetricSeries> {
        by_metric[metric]
            .iter()
            .find(|(t, _)| t == id)
            .map(|(_, s)| s)
    };
    let step = options.step_seconds as f64;
    let mut stats = ExportStats::default();
    let mut families: Vec<Out> = Vec::new();
    for target in &targets {
        stats.targets += 1;
        let max_connections: f64 = target
            .resources
            .parameters
            .get("max_connections")
            .and_then(|v| v.parse().ok())
            .unwrap_or(100.0);
        let memory_total = target.resources.memory_bytes as f64;
        let points = |metric: usize, f: &mut dyn FnMut(f64) -> f64| -> Vec<(i64, f64)> {
            series_of(metric, &target.id)
                .map(|s| {
                    s.timestamps_ms
                        .iter()
                        .zip(&s.values)
                        .map(|(t, v)| (*t, f(*v)))
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut idle = 0.0;
        let cpu = points(0, &mut |v| {
            idle += (1.0 - v) * step;
            idle
        });
        let mut busy = 0.0;
        let disk = points(3, &mut |v| {
            busy += v * step;
            busy
        });
        let common = |extra: Vec<(&'static str, String)>| {
            let mut labels = vec![
                ("instance", target.id.clone()),
                ("job", options.job.clone()),
            ];
            labels.extend(extra);
            labels
        };
        families.push(Out {
            name: "node_cpu_seconds_total",
            labels: common(vec![("cpu", "0".into()), ("mode", "idle".into())]),
            points: cpu,
        });
        families.push(Out {
            name: "node_memory_MemTotal_bytes",
            labels: common(vec![]),
            points: points(1, &mut |_| memory_total),
        });
        families.push(Out {
            name: "node_memory_MemAvailable_bytes",
            labels: common(vec![]),
            points: points(1, &mut |v| (memory_total * (1.0 - v)).round()),
        });
        families.push(Out {
            name: "pg_stat_activity_count",
            labels: common(vec![
                ("datname", "app".into()),
                ("server", target.id.clone()),
                ("state", "active".into()),
            ]),
            points: points(2, &mut |v| (v * max_connections).round()),
        });
        // What discovery looks for: the exporter saw the database up whenever it had samples.
        families.push(Out {
            name: "pg_up",
            labels: common(vec![("server", target.id.clone())]),
            points: points(2, &mut |_| 1.0),
        });
        families.push(Out {
            name: "pg_settings_max_connections",
            labels: common(vec![("server", target.id.clone())]),
            points: points(2, &mut |_| max_connections),
        });
        families.push(Out {
            name: "node_disk_io_time_seconds_total",
            labels: common(vec![("device", "vda".into())]),
            points: disk,
        });
    }
    // OpenMetrics wants each metric family's samples together.
    families.sort_by_key(|f| f.name);
    for family in &families {
        if family.points.is_empty() {
            continue;
        }
        stats.series += 1;
        let labels = family
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect::<Vec<_>>()
            .join(",");
        for (t, v) in &family.points {
            stats.samples += 1;
            match format {
                ExportFormat::OpenMetrics => writeln!(
                    out,
                    "{}{{{labels}}} {v} {}.{:03}",
                    family.name,
                    t.div_euclid(1000),
                    t.rem_euclid(1000)
                )?,
                ExportFormat::VictoriaMetrics => {
                    writeln!(out, "{}{{{labels}}} {v} {t}", family.name)?
                }
            }
        }
    }
    if format == ExportFormat::OpenMetrics {
        writeln!(out, "# EOF")?;
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn options(targets: &[&str]) -> ExportOptions {
        ExportOptions {
            end: DateTime::parse_from_rfc3339("2026-11-23T06:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            weeks: 5,
            step_seconds: 150,
            targets: targets.iter().map(|t| t.to_string()).collect(),
            job: "sim".into(),
        }
    }

    #[test]
    fn openmetrics_has_seconds_and_ends_with_eof() {
        let fleet = crate::sim::tests::fleet(42);
        let mut buf = Vec::new();
        let stats = export(
            &fleet,
            &options(&["pg-reporting-01"]),
            ExportFormat::OpenMetrics,
            &mut buf,
        )
        .unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert!(text.ends_with("# EOF\n"));
        assert_eq!(stats.targets, 1);
        assert_eq!(stats.series, 7);
        assert_eq!(stats.samples, 7 * 5 * 7 * 24 * 24);
        let first = text.lines().next().unwrap();
        let timestamp = first.rsplit(' ').next().unwrap();
        // Seconds, with milliseconds after the point: never milliseconds as an integer.
        assert!(timestamp.contains('.') && timestamp.len() < 16, "{first}");
    }

    #[test]
    fn counters_grow_by_the_idle_and_busy_share() {
        let fleet = crate::sim::tests::fleet(42);
        let mut buf = Vec::new();
        export(
            &fleet,
            &options(&["pg-saturated-01"]),
            ExportFormat::VictoriaMetrics,
            &mut buf,
        )
        .unwrap();
        let text = String::from_utf8(buf).unwrap();
        let idle: Vec<f64> = text
            .lines()
            .filter(|l| l.starts_with("node_cpu_seconds_total"))
            .map(|l| l.split(' ').nth(1).unwrap().parse().unwrap())
            .collect();
        assert!(
            idle.windows(2).all(|w| w[1] >= w[0]),
            "a counter never decreases"
        );
        // Over the last week, CPU ≈ 93 %: idle grows by ≈ 7 % of the elapsed time.
        let per_week = 7 * 24 * 24;
        let last = &idle[idle.len() - per_week - 1..];
        let share = (last[last.len() - 1] - last[0]) / (per_week as f64 * 150.0);
        assert!((share - 0.07).abs() < 0.005, "{share}");
    }

    #[test]
    fn unknown_targets_are_named() {
        let fleet = crate::sim::tests::fleet(42);
        let error = export(
            &fleet,
            &options(&["pg-nope"]),
            ExportFormat::OpenMetrics,
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(error.to_string().contains("pg-nope"));
    }
}
