//! The embedded simulated fleet: deterministic targets playing the scenarios plugins ship.
//!
//! A plugin's descriptor lists simulator scenarios: per metric, the mean of each of the five
//! weeks before `now` (W-5..W-1), a daily swing and some noise, plus how the scenario's targets
//! vary. A week of 5-minute samples holds whole days, so the swing averages out and a weekly
//! mean lands on the scenario's figure. The same seed and the same query give the same samples,
//! bit for bit; the first target of each scenario (`…-01`) keeps its exact figures.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use setpoint_core::{MetricSeries, PluginDescriptor, SimScenario, Target};

use crate::{BoxFuture, MetricSource, ObserveError, QueryResult, RangeQuery};

const WEEK: i64 = 7 * 24 * 3600;
const DAY: i64 = 24 * 3600;
const HOUR: f64 = 3600.0;

/// How one metric of one target behaves, after the scenario's variation was applied.
#[derive(Debug, Clone, PartialEq)]
struct MetricProfile {
    metric: String,
    /// Weekly means, W-5..W-1.
    weeks: [f64; 5],
    /// Amplitude of the daily sine.
    daily: f64,
    /// Standard deviation of the noise.
    noise: f64,
    min: f64,
    max: f64,
}

/// One simulated target.
#[derive(Debug, Clone)]
struct SimTarget {
    target: Target,
    /// One profile per metric of its technology.
    profiles: Vec<MetricProfile>,
    /// Seconds before the query's end during which no samples exist.
    gap_seconds: i64,
    /// Phase of the daily swing, in seconds, so targets do not peak in lockstep.
    phase: i64,
}

/// The embedded simulated fleet (a [`MetricSource`]).
#[derive(Debug, Clone)]
pub struct SimulatedFleet {
    name: String,
    seed: u64,
    sims: Vec<SimTarget>,
    /// The same targets as `sims`, in the same order, kept apart so they can be lent as a slice.
    targets: Vec<Target>,
}

impl SimulatedFleet {
    /// The fleet of a plugin's scenarios, each with its declared number of targets.
    pub fn new(seed: u64, descriptor: &PluginDescriptor) -> Self {
        Self::with_counts(seed, &descriptor.technology, &descriptor.scenarios, |s| {
            s.count as usize
        })
    }

    /// The fleets of several plugins together (one technology each), as one source.
    pub fn combined<'a>(
        seed: u64,
        descriptors: impl IntoIterator<Item = &'a PluginDescriptor>,
    ) -> Self {
        let mut fleet = Self::empty(seed);
        for d in descriptors {
            let more = Self::new(seed, d);
            fleet.sims.extend(more.sims);
            fleet.targets.extend(more.targets);
        }
        fleet
    }

    /// A fleet of about `size` targets, the scenarios' quickstart proportions scaled up or down
    /// (at least one target per scenario), for benchmarks and load tests.
    pub fn sized(seed: u64, descriptor: &PluginDescriptor, size: usize) -> Self {
        let total: usize = descriptor.scenarios.iter().map(|s| s.count as usize).sum();
        Self::with_counts(seed, &descriptor.technology, &descriptor.scenarios, |s| {
            ((s.count as usize * size) as f64 / total.max(1) as f64)
                .round()
                .max(1.0) as usize
        })
    }

    fn empty(seed: u64) -> Self {
        Self {
            name: format!("simulated(seed={seed})"),
            seed,
            sims: Vec::new(),
            targets: Vec::new(),
        }
    }

    fn with_counts(
        seed: u64,
        technology: &str,
        scenarios: &[SimScenario],
        count: impl Fn(&SimScenario) -> usize,
    ) -> Self {
        let mut fleet = Self::empty(seed);
        for scenario in scenarios {
            let n = count(scenario);
            for index in 0..n {
                fleet
                    .sims
                    .push(Self::make(seed, technology, scenario, index, n));
            }
        }
        fleet.targets = fleet.sims.iter().map(|t| t.target.clone()).collect();
        fleet
    }

    /// The simulated targets, in fleet order (scenario by scenario, `-01` first).
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// The scenario a target belongs to (its `scenario` label).
    pub fn scenario_of(&self, target: &str) -> Option<&str> {
        self.targets
            .iter()
            .find(|t| t.id == target)
            .and_then(|t| t.labels.get("scenario"))
            .map(String::as_str)
    }

    /// Answers a range query synchronously: what [`MetricSource::query_range`] resolves to,
    /// for callers (tests, tools) that have no async runtime at hand.
    pub fn query(&self, query: &RangeQuery) -> Result<QueryResult, ObserveError> {
        self.answer(query)
    }

    fn make(
        seed: u64,
        technology: &str,
        scenario: &SimScenario,
        index: usize,
        count: usize,
    ) -> SimTarget {
        // Two digits for quickstart-sized scenarios, more when a fleet is scaled up.
        let width = count.to_string().len().max(2);
        let id = format!("{}-{:0width$}", scenario.id_prefix, index + 1);
        // Variants are drawn from their own stream so that adding a target to one scenario
        // does not change the others.
        let mut rng = ChaCha8Rng::seed_from_u64(stream_seed(seed, &id, "variant"));
        let canonical = index == 0;
        let mut draw = |range: Option<(f64, f64)>, neutral: f64| match range {
            Some((lo, hi)) if !canonical && lo < hi => rng.random_range(lo..hi),
            Some((lo, _)) if !canonical => lo,
            _ => neutral,
        };
        let profiles = scenario
            .metrics
            .iter()
            .map(|m| {
                let lift = draw(m.lift, 0.0);
                let scale = draw(m.scale, 1.0);
                let mut weeks = [0.0; 5];
                for (w, level) in weeks.iter_mut().zip(&m.weeks) {
                    *w = (level + lift) * scale;
                }
                MetricProfile {
                    metric: m.metric.clone(),
                    weeks,
                    daily: m.daily_amplitude,
                    noise: m.noise,
                    min: m.min,
                    max: m.max,
                }
            })
            .collect();
        let gap_hours = match scenario.gap_hours {
            Some((lo, _)) if canonical => lo,
            Some(range) => draw(Some(range), 0.0),
            None => 0.0,
        };
        let resources = scenario
            .sizes
            .get(index % scenario.sizes.len().max(1))
            .cloned()
            .unwrap_or(setpoint_core::Resources {
                cpu_millicores: 0,
                memory_bytes: 0,
                replicas: 1,
                parameters: BTreeMap::new(),
            });
        let phase = (stream_seed(seed, &id, "phase") % DAY as u64) as i64;
        let mut labels = BTreeMap::new();
        labels.insert("instance".to_string(), id.clone());
        labels.insert("scenario".to_string(), scenario.name.clone());
        SimTarget {
            target: Target {
                id,
                technology: technology.to_string(),
                labels,
                resources,
            },
            profiles,
            gap_seconds: (gap_hours * HOUR) as i64,
            phase,
        }
    }

    fn error_name(&self) -> String {
        self.name.clone()
    }

    /// The samples of one metric of one target over a query's range.
    fn series(
        &self,
        target: &SimTarget,
        profile: &MetricProfile,
        query: &RangeQuery,
    ) -> MetricSeries {
        let step = query.step_seconds as i64;
        let end = query.end.timestamp();
        let first = query.start.timestamp().div_euclid(step) * step;
        let first = if first < query.start.timestamp() {
            first + step
        } else {
            first
        };
        let mut rng = ChaCha8Rng::seed_from_u64(stream_seed(
            self.seed,
            &target.target.id,
            &format!("{}:{first}:{step}", profile.metric),
        ));
        let noise = Normal::new(0.0, profile.noise.max(0.0)).ok();
        let capacity = ((end - first) / step).max(0) as usize + 1;
        let mut timestamps_ms = Vec::with_capacity(capacity);
        let mut values = Vec::with_capacity(capacity);
        let mut t = first;
        while t < end {
            // Draw for every slot, gap or not, so the noise of a sample never depends on
            // whether earlier samples existed.
            let n = noise.map(|d| d.sample(&mut rng)).unwrap_or(0.0);
            let age = end - t;
            if age > target.gap_seconds {
                let weeks_back = ((age + WEEK - 1) / WEEK).clamp(1, 5);
                let level = profile.weeks[(5 - weeks_back) as usize];
                let angle =
                    2.0 * std::f64::consts::PI * ((t + target.phase).rem_euclid(DAY)) as f64
                        / DAY as f64;
                let value =
                    (level + profile.daily * angle.sin() + n).clamp(profile.min, profile.max);
                timestamps_ms.push(t * 1000);
                values.push(value);
            }
            t += step;
        }
        MetricSeries {
            metric: profile.metric.clone(),
            timestamps_ms,
            values,
            sample_counts: None,
        }
    }

    fn answer(&self, query: &RangeQuery) -> Result<QueryResult, ObserveError> {
        let of_technology: Vec<&SimTarget> = self
            .sims
            .iter()
            .filter(|t| t.target.technology == query.technology)
            .collect();
        if of_technology.is_empty() {
            return Err(ObserveError::UnsupportedTechnology {
                source_name: self.error_name(),
                technology: query.technology.clone(),
                metric: query.metric.clone(),
            });
        }
        if query.step_seconds == 0 || query.end <= query.start {
            return Err(ObserveError::InvalidQuery {
                source_name: self.error_name(),
                metric: query.metric.clone(),
                message: format!(
                    "range {}..{} with step {}s",
                    query.start, query.end, query.step_seconds
                ),
            });
        }
        let end_ms = query.end.timestamp_millis();
        let mut series = Vec::with_capacity(of_technology.len());
        for t in of_technology {
            let Some(profile) = t.profiles.iter().find(|p| p.metric == query.metric) else {
                return Err(ObserveError::UnknownMetric {
                    source_name: self.error_name(),
                    metric: query.metric.clone(),
                    promql: query.promql.clone(),
                    known: t
                        .profiles
                        .iter()
                        .map(|p| p.metric.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            };
            let raw = self.series(t, profile, query);
            let out = match query.weekly {
                // Summarised here the way a TSDB would, so the quickstart takes the same
                // path through the plugin as a real source.
                Some(summary) => crate::summarise_weekly(&raw, end_ms, summary),
                None => raw,
            };
            if !out.values.is_empty() {
                series.push((t.target.id.clone(), out));
            }
        }
        Ok(QueryResult {
            series,
            ..QueryResult::default()
        })
    }
}

/// Seeds an independent random stream. FNV-1a rather than std's hasher, whose output may change
/// between Rust releases: the fleet must stay the same for a given seed, forever.
fn stream_seed(seed: u64, target: &str, stream: &str) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in seed
        .to_le_bytes()
        .iter()
        .chain(target.as_bytes())
        .chain([0u8].iter())
        .chain(stream.as_bytes())
    {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(PRIME);
    }
    hash
}

impl MetricSource for SimulatedFleet {
    fn name(&self) -> &str {
        &self.name
    }

    fn discover<'a>(
        &'a self,
        technology: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Target>, ObserveError>> {
        Box::pin(async move {
            Ok(self
                .targets
                .iter()
                .filter(|t| t.technology == technology)
                .cloned()
                .collect())
        })
    }

    fn summarises_weekly(&self) -> bool {
        true
    }

    fn query_range<'a>(
        &'a self,
        query: &'a RangeQuery,
    ) -> BoxFuture<'a, Result<QueryResult, ObserveError>> {
        Box::pin(async move { self.answer(query) })
    }
}

/// A Unix timestamp (seconds) as a UTC time; out-of-range values give the epoch.
pub fn at(timestamp: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(timestamp, 0).single().unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use setpoint_core::{Aggregation, MetricSpec, Resources, SimMetric};

    pub(crate) const END: i64 = 1_795_413_600; // 2026-11-23T06:00:00Z
    const GIB: u64 = 1 << 30;

    fn metric(name: &str, weeks: [f64; 5], daily: f64, noise: f64) -> SimMetric {
        SimMetric {
            metric: name.into(),
            weeks: weeks.to_vec(),
            daily_amplitude: daily,
            noise,
            lift: None,
            scale: None,
            min: 0.0,
            max: 1.0,
        }
    }

    /// A two-scenario fleet shaped like the PostgreSQL plugin's (the real scenarios live in the
    /// plugin and are tested through it): an idle one that varies and a gap one.
    pub(crate) fn descriptor() -> PluginDescriptor {
        let size = Resources {
            cpu_millicores: 8000,
            memory_bytes: 32 * GIB,
            replicas: 1,
            parameters: BTreeMap::from([("shared_buffers".to_string(), "8GB".to_string())]),
        };
        let names = ["cpu", "memory", "connections", "iops"];
        PluginDescriptor {
            name: "test".into(),
            version: "0".into(),
            technology: "postgres".into(),
            metrics: names
                .iter()
                .map(|n| MetricSpec {
                    name: n.to_string(),
                    query: format!("{n}_query"),
                    aggregation: Aggregation::Mean,
                    unit: "ratio".into(),
                    description: String::new(),
                    capacity: None,
                    fallback_query: None,
                })
                .collect(),
            features: Vec::new(),
            actions: Vec::new(),
            abi_version: "0.5.0".into(),
            scenarios: vec![
                SimScenario {
                    name: "reporting".into(),
                    description: String::new(),
                    id_prefix: "pg-reporting".into(),
                    count: 3,
                    sizes: vec![size.clone()],
                    metrics: vec![
                        SimMetric {
                            scale: Some((0.7, 2.5)),
                            ..metric("cpu", [0.12, 0.11, 0.09, 0.13, 0.10], 0.04, 0.01)
                        },
                        metric("memory", [0.57, 0.58, 0.61, 0.55, 0.57], 0.02, 0.01),
                        metric("connections", [0.2; 5], 0.05, 0.01),
                        metric("iops", [0.3; 5], 0.06, 0.015),
                    ],
                    gap_hours: None,
                },
                SimScenario {
                    name: "saturated".into(),
                    description: String::new(),
                    id_prefix: "pg-saturated".into(),
                    count: 1,
                    sizes: vec![size.clone()],
                    metrics: vec![
                        metric("cpu", [0.87, 0.88, 0.90, 0.91, 0.93], 0.02, 0.005),
                        metric("memory", [0.8; 5], 0.02, 0.01),
                        metric("connections", [0.6; 5], 0.05, 0.01),
                        metric("iops", [0.7; 5], 0.05, 0.01),
                    ],
                    gap_hours: None,
                },
                SimScenario {
                    name: "telemetry-gap".into(),
                    description: String::new(),
                    id_prefix: "pg-gap".into(),
                    count: 2,
                    sizes: vec![size],
                    metrics: vec![
                        metric("cpu", [0.15; 5], 0.04, 0.01),
                        metric("memory", [0.5; 5], 0.02, 0.01),
                        metric("connections", [0.2; 5], 0.05, 0.01),
                        metric("iops", [0.25; 5], 0.05, 0.01),
                    ],
                    gap_hours: Some((264.0, 324.0)),
                },
            ],
        }
    }

    pub(crate) fn fleet(seed: u64) -> SimulatedFleet {
        SimulatedFleet::new(seed, &descriptor())
    }

    fn query(metric: &str, end: i64) -> RangeQuery {
        RangeQuery {
            metric: metric.to_string(),
            promql: "irrelevant for the simulator".to_string(),
            technology: "postgres".to_string(),
            start: at(end - 5 * WEEK),
            end: at(end),
            step_seconds: 300,
            target_label: "instance".to_string(),
            weekly: None,
        }
    }

    fn series_of<'a>(result: &'a QueryResult, id: &str) -> &'a MetricSeries {
        &result.series.iter().find(|(t, _)| t == id).unwrap().1
    }

    /// Weekly means W-4..W-1 and sample counts.
    fn weekly(series: &MetricSeries, end: i64) -> Vec<(f64, usize)> {
        (1..=4)
            .rev()
            .map(|k| {
                let lo = (end - k * WEEK) * 1000;
                let hi = (end - (k - 1) * WEEK) * 1000;
                let v: Vec<f64> = series
                    .timestamps_ms
                    .iter()
                    .zip(&series.values)
                    .filter(|(t, _)| **t >= lo && **t < hi)
                    .map(|(_, v)| *v)
                    .collect();
                let mean = if v.is_empty() {
                    f64::NAN
                } else {
                    v.iter().sum::<f64>() / v.len() as f64
                };
                (mean, v.len())
            })
            .collect()
    }

    #[test]
    fn targets_follow_the_scenarios() {
        let fleet = fleet(42);
        let ids: Vec<&str> = fleet.targets().iter().map(|t| t.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "pg-reporting-01",
                "pg-reporting-02",
                "pg-reporting-03",
                "pg-saturated-01",
                "pg-gap-01",
                "pg-gap-02"
            ]
        );
        assert_eq!(fleet.scenario_of("pg-gap-02"), Some("telemetry-gap"));
        assert_eq!(fleet.targets()[0].labels["instance"], "pg-reporting-01");
        assert_eq!(
            fleet.targets()[0].resources.parameters["shared_buffers"],
            "8GB"
        );
        let sized = SimulatedFleet::sized(42, &descriptor(), 1000);
        assert!(
            (990..=1010).contains(&sized.targets().len()),
            "{}",
            sized.targets().len()
        );
        assert_eq!(sized.targets()[0].id, "pg-reporting-001");
    }

    #[test]
    fn same_seed_same_samples_other_seed_other_samples() {
        let a = fleet(42).query(&query("cpu", END)).unwrap();
        let b = fleet(42).query(&query("cpu", END)).unwrap();
        let c = fleet(7).query(&query("cpu", END)).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn canonical_weekly_means_are_the_declared_ones_whatever_now() {
        for (seed, end) in [
            (42, END),
            (7, END + 3 * 3600 + 17 * 60 + 11),
            (1, END + 11 * WEEK),
        ] {
            let cpu = fleet(seed).query(&query("cpu", end)).unwrap();
            let weeks = weekly(series_of(&cpu, "pg-reporting-01"), end);
            for ((mean, count), want) in weeks.iter().zip([0.11, 0.09, 0.13, 0.10]) {
                assert_eq!(*count, 2016);
                assert!((mean - want).abs() < 0.003, "{mean} vs {want} at {end}");
            }
        }
    }

    #[test]
    fn variants_vary_within_their_ranges() {
        let cpu = fleet(42).query(&query("cpu", END)).unwrap();
        let first = weekly(series_of(&cpu, "pg-reporting-02"), END);
        let second = weekly(series_of(&cpu, "pg-reporting-03"), END);
        assert_ne!(first[0].0, second[0].0);
        for (mean, _) in first.iter().chain(&second) {
            assert!(
                *mean > 0.09 * 0.7 - 0.01 && *mean < 0.13 * 2.5 + 0.01,
                "{mean}"
            );
        }
    }

    #[test]
    fn samples_are_aligned_clamped_and_within_the_range() {
        let fleet = fleet(42);
        let mut q = query("memory", END + 123);
        q.step_seconds = 600;
        let result = fleet.query(&q).unwrap();
        assert_eq!(result.series.len(), fleet.targets().len());
        for (id, series) in &result.series {
            assert!(series.timestamps_ms.windows(2).all(|w| w[0] < w[1]), "{id}");
            for (t, v) in series.timestamps_ms.iter().zip(&series.values) {
                assert_eq!(t % 600_000, 0, "{id}");
                assert!(*t >= q.start.timestamp_millis() && *t < q.end.timestamp_millis());
                assert!((0.0..=1.0).contains(v), "{id}: {v}");
            }
        }
    }

    #[test]
    fn gaps_remove_the_last_weeks() {
        let cpu = fleet(42).query(&query("cpu", END)).unwrap();
        for id in ["pg-gap-01", "pg-gap-02"] {
            let weeks = weekly(series_of(&cpu, id), END);
            assert_eq!(weeks[3].1, 0, "{id}: W-1 must be empty");
            assert!(weeks[2].1 <= 2016 / 2, "{id}: {}", weeks[2].1);
            assert_eq!(weeks[1].1, 2016, "{id}");
        }
    }

    #[test]
    fn weekly_summaries_agree_with_the_raw_samples() {
        let fleet = fleet(42);
        let raw = fleet.query(&query("cpu", END)).unwrap();
        let mut q = query("cpu", END);
        q.weekly = Some(crate::WeeklySummary {
            aggregation: Aggregation::Mean,
            weeks: 4,
            counted: true,
        });
        let summarised = fleet.query(&q).unwrap();
        let s = series_of(&summarised, "pg-reporting-01");
        let w = weekly(series_of(&raw, "pg-reporting-01"), END);
        assert_eq!(
            s.sample_counts.as_deref(),
            Some(&[2016, 2016, 2016, 2016][..])
        );
        for (point, (mean, _)) in s.values.iter().zip(&w) {
            assert!((point - mean).abs() < 1e-12);
        }
    }

    #[test]
    fn unknown_metric_and_technology_are_named() {
        let fleet = fleet(42);
        let error = fleet
            .query(&query("wal_bytes", END))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("wal_bytes") && error.contains("simulated(seed=42)"),
            "{error}"
        );
        let mut q = query("cpu", END);
        q.technology = "redis".into();
        let error = fleet.query(&q).unwrap_err().to_string();
        assert!(error.contains("redis"), "{error}");
    }
}
