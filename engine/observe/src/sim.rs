//! The embedded simulated fleet: deterministic PostgreSQL instances in named scenarios.
//!
//! Each scenario fixes, per metric, the mean of each of the five weeks before `now` (W-5..W-1),
//! a daily swing and some noise. A week of 5-minute samples holds whole days, so the swing
//! averages out and a weekly mean lands on the scenario's figure (noise moves it by well under
//! half a point). The same seed and the same query give the same samples, bit for bit.

use chrono::{DateTime, TimeZone, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use setpoint_core::resources::GIB;
use setpoint_core::{MetricSeries, Resources, Target};

use crate::{BoxFuture, MetricSource, ObserveError, QueryResult, RangeQuery};

const WEEK: i64 = 7 * 24 * 3600;
const DAY: i64 = 24 * 3600;

/// The metrics the simulator serves, in the PostgreSQL plugin's names. All are ratios 0..=1.
pub const METRICS: [&str; 4] = ["cpu", "memory", "connections", "iops"];

/// The technology of every simulated target.
pub const TECHNOLOGY: &str = "postgres";

/// The named behaviours of the simulated fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Instance A of the design: a reporting database idling at a fraction of its size.
    Reporting,
    /// Instance B: a transactional database whose every dimension climbs, no threshold crossed.
    Transactional,
    /// Flat, mid-range utilisation.
    SteadyMid,
    /// Mid-range on average with large daily swings that peak near saturation.
    SpikyButSafe,
    /// CPU above 85 % for weeks.
    Saturated,
    /// Active connections at 95 % or more of `max_connections`.
    ConnectionPressure,
    /// An exporter outage: no samples for most of W-2 and all of W-1.
    TelemetryGap,
}

impl Scenario {
    /// Every scenario.
    pub const ALL: [Scenario; 7] = [
        Scenario::Reporting,
        Scenario::Transactional,
        Scenario::SteadyMid,
        Scenario::SpikyButSafe,
        Scenario::Saturated,
        Scenario::ConnectionPressure,
        Scenario::TelemetryGap,
    ];

    /// The scenario's name, as in the `scenario` label.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Reporting => "reporting",
            Scenario::Transactional => "transactional",
            Scenario::SteadyMid => "steady-mid",
            Scenario::SpikyButSafe => "spiky-but-safe",
            Scenario::Saturated => "saturated",
            Scenario::ConnectionPressure => "connection-pressure",
            Scenario::TelemetryGap => "telemetry-gap",
        }
    }

    /// What the scenario stands for, for reports and the quickstart's help.
    pub fn description(self) -> &'static str {
        match self {
            Scenario::Reporting => {
                "instance A of the design: a reporting database idling at a fraction of its size"
            }
            Scenario::Transactional => {
                "instance B of the design: every dimension climbs, no single threshold crossed"
            }
            Scenario::SteadyMid => "flat, mid-range utilisation: nothing to do",
            Scenario::SpikyButSafe => {
                "mid-range on average, daily peaks near saturation: not idle, not saturated"
            }
            Scenario::Saturated => "CPU above 85 % every week",
            Scenario::ConnectionPressure => "active connections at 95 % or more of max_connections",
            Scenario::TelemetryGap => "exporter outage: no samples for most of W-2 and all of W-1",
        }
    }

    /// The prefix of its target ids (`pg-reporting` gives `pg-reporting-01`, …); the `-01`
    /// target is the scenario's canonical instance.
    pub fn id_prefix(self) -> &'static str {
        match self {
            Scenario::Reporting => "pg-reporting",
            Scenario::Transactional => "pg-transactional",
            Scenario::SteadyMid => "pg-steady",
            Scenario::SpikyButSafe => "pg-spiky",
            Scenario::Saturated => "pg-saturated",
            Scenario::ConnectionPressure => "pg-connections",
            Scenario::TelemetryGap => "pg-gap",
        }
    }

    /// How many targets of this scenario the quickstart fleet has.
    pub fn quickstart_count(self) -> usize {
        match self {
            Scenario::Reporting => 10,
            Scenario::Transactional => 8,
            Scenario::SteadyMid => 14,
            Scenario::SpikyButSafe => 8,
            Scenario::Saturated => 5,
            Scenario::ConnectionPressure => 5,
            Scenario::TelemetryGap => 4,
        }
    }
}

/// How one metric of one target behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
struct MetricProfile {
    /// Weekly means, W-5..W-1.
    weeks: [f64; 5],
    /// Amplitude of the daily sine.
    daily: f64,
    /// Standard deviation of the noise.
    noise: f64,
}

impl MetricProfile {
    fn new(weeks: [f64; 5], daily: f64, noise: f64) -> Self {
        Self {
            weeks,
            daily,
            noise,
        }
    }

    fn flat(level: f64, daily: f64, noise: f64) -> Self {
        Self::new([level; 5], daily, noise)
    }

    fn scaled(self, factor: f64) -> Self {
        Self {
            weeks: self.weeks.map(|w| w * factor),
            ..self
        }
    }
}

/// One simulated target.
#[derive(Debug, Clone)]
struct SimTarget {
    target: Target,
    /// Profiles in [`METRICS`] order.
    profiles: [MetricProfile; 4],
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

fn pct(weeks: [f64; 5]) -> [f64; 5] {
    weeks.map(|w| w / 100.0)
}

/// PostgreSQL's size syntax for whole GB or MB.
fn pg_size(bytes: u64) -> String {
    if bytes.is_multiple_of(GIB) {
        format!("{}GB", bytes / GIB)
    } else {
        format!("{}MB", bytes / (1024 * 1024))
    }
}

fn resources(vcpu: u64, memory_gib: u64, max_connections: u32) -> Resources {
    let memory = memory_gib * GIB;
    let mut parameters = std::collections::BTreeMap::new();
    parameters.insert("shared_buffers".to_string(), pg_size(memory / 4));
    parameters.insert("effective_cache_size".to_string(), pg_size(memory / 4 * 3));
    parameters.insert("max_connections".to_string(), max_connections.to_string());
    Resources {
        cpu_millicores: vcpu * 1000,
        memory_bytes: memory,
        parameters,
    }
}

impl SimulatedFleet {
    /// The quickstart fleet: 54 PostgreSQL targets across every scenario. The first target of
    /// each scenario (`…-01`) is its canonical instance, with the design's exact figures.
    pub fn quickstart(seed: u64) -> Self {
        let mut sims = Vec::new();
        for scenario in Scenario::ALL {
            for index in 0..scenario.quickstart_count() {
                sims.push(Self::make(seed, scenario, index));
            }
        }
        let targets = sims.iter().map(|t| t.target.clone()).collect();
        Self {
            name: format!("simulated(seed={seed})"),
            seed,
            sims,
            targets,
        }
    }

    /// Every scenario the simulator knows, in fleet order.
    pub fn scenarios() -> &'static [Scenario] {
        &Scenario::ALL
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

    fn make(seed: u64, scenario: Scenario, index: usize) -> SimTarget {
        let id = format!("{}-{:02}", scenario.id_prefix(), index + 1);
        // Variants are drawn from their own stream so that adding a target to one scenario
        // does not change the others.
        let mut rng = ChaCha8Rng::seed_from_u64(stream_seed(seed, &id, "variant"));
        let canonical = index == 0;
        let mut jitter = |lo: f64, hi: f64| {
            if canonical {
                1.0
            } else {
                rng.random_range(lo..hi)
            }
        };
        let sizes = [(8, 32), (16, 64), (4, 16), (32, 128), (2, 8)];
        let (vcpu, memory) = sizes[index % sizes.len()];
        let max_connections = match vcpu {
            0..=4 => 100,
            5..=16 => 200,
            _ => 400,
        };
        let (size, profiles, gap) = match scenario {
            Scenario::Reporting => (
                (vcpu, memory),
                [
                    MetricProfile::new(pct([12.0, 11.0, 9.0, 13.0, 10.0]), 0.04, 0.01)
                        .scaled(jitter(0.7, 2.5)),
                    MetricProfile::new(pct([57.0, 58.0, 61.0, 55.0, 57.0]), 0.02, 0.01)
                        .scaled(jitter(0.75, 1.05)),
                    MetricProfile::new(pct([20.0, 22.0, 19.0, 24.0, 21.0]), 0.05, 0.01)
                        .scaled(jitter(0.5, 1.5)),
                    MetricProfile::new(pct([30.0, 31.0, 28.0, 33.0, 29.0]), 0.06, 0.015)
                        .scaled(jitter(0.5, 1.5)),
                ],
                0,
            ),
            Scenario::Transactional => (
                if canonical { (16, 64) } else { (vcpu, memory) },
                [
                    MetricProfile::new(pct([57.0, 61.0, 66.0, 71.0, 74.0]), 0.06, 0.015)
                        .scaled(jitter(0.85, 1.05)),
                    MetricProfile::new(pct([68.0, 71.0, 74.0, 77.0, 81.0]), 0.03, 0.01)
                        .scaled(jitter(0.85, 1.05)),
                    MetricProfile::new(pct([70.0, 74.0, 79.0, 83.0, 89.0]), 0.03, 0.01)
                        .scaled(jitter(0.85, 1.05)),
                    MetricProfile::new(pct([65.0, 68.0, 71.0, 74.0, 78.0]), 0.06, 0.015)
                        .scaled(jitter(0.85, 1.05)),
                ],
                0,
            ),
            Scenario::SteadyMid => (
                (vcpu, memory),
                [
                    MetricProfile::flat(0.50, 0.08, 0.02).scaled(jitter(0.9, 1.2)),
                    MetricProfile::flat(0.60, 0.03, 0.01).scaled(jitter(0.9, 1.15)),
                    MetricProfile::flat(0.40, 0.08, 0.02).scaled(jitter(0.75, 1.25)),
                    MetricProfile::flat(0.40, 0.08, 0.02).scaled(jitter(0.75, 1.25)),
                ],
                0,
            ),
            Scenario::SpikyButSafe => (
                (vcpu, memory),
                [
                    // The daily swing peaks above the 85 % scale-up line while the weekly mean stays
                    // mid-range: weekly means alone must not read this as saturation.
                    MetricProfile::flat(0.50, 0.36, 0.04).scaled(jitter(0.9, 1.1)),
                    MetricProfile::flat(0.58, 0.05, 0.01).scaled(jitter(0.95, 1.05)),
                    MetricProfile::flat(0.40, 0.25, 0.03).scaled(jitter(0.9, 1.1)),
                    MetricProfile::flat(0.45, 0.30, 0.04).scaled(jitter(0.9, 1.1)),
                ],
                0,
            ),
            Scenario::Saturated => {
                let lift = if canonical { 0.0 } else { jitter(0.0, 0.02) };
                let mut cpu = MetricProfile::new(pct([87.0, 88.0, 90.0, 91.0, 93.0]), 0.02, 0.005);
                cpu.weeks = cpu.weeks.map(|w| w + lift);
                (
                    (vcpu, memory),
                    [
                        cpu,
                        MetricProfile::flat(0.80, 0.02, 0.01),
                        MetricProfile::flat(0.60, 0.05, 0.01).scaled(jitter(0.8, 1.2)),
                        MetricProfile::flat(0.70, 0.05, 0.01).scaled(jitter(0.8, 1.1)),
                    ],
                    0,
                )
            }
            Scenario::ConnectionPressure => {
                let lift = if canonical { 0.0 } else { jitter(0.0, 0.01) };
                let mut connections =
                    MetricProfile::new(pct([95.0, 95.5, 96.0, 97.0, 97.5]), 0.004, 0.003);
                connections.weeks = connections.weeks.map(|w| w + lift);
                (
                    (vcpu, memory),
                    [
                        MetricProfile::flat(0.55, 0.08, 0.02).scaled(jitter(0.9, 1.1)),
                        MetricProfile::flat(0.70, 0.03, 0.01).scaled(jitter(0.95, 1.05)),
                        connections,
                        MetricProfile::flat(0.50, 0.08, 0.02).scaled(jitter(0.9, 1.1)),
                    ],
                    0,
                )
            }
            Scenario::TelemetryGap => {
                // Past 10.5 days, at least half of W-2 is gone along with all of W-1.
                let gap_days = if canonical { 11.0 } else { jitter(10.6, 13.5) };
                (
                    (vcpu, memory),
                    [
                        // Idle enough to be shrunk — had the data been there.
                        MetricProfile::flat(0.15, 0.04, 0.01),
                        MetricProfile::flat(0.50, 0.02, 0.01),
                        MetricProfile::flat(0.20, 0.05, 0.01),
                        MetricProfile::flat(0.25, 0.05, 0.01),
                    ],
                    (gap_days * DAY as f64) as i64,
                )
            }
        };
        let phase = (stream_seed(seed, &id, "phase") % DAY as u64) as i64;
        let mut labels = std::collections::BTreeMap::new();
        labels.insert("instance".to_string(), id.clone());
        labels.insert("scenario".to_string(), scenario.name().to_string());
        SimTarget {
            target: Target {
                id,
                technology: TECHNOLOGY.to_string(),
                labels,
                resources: resources(size.0, size.1, max_connections),
            },
            profiles,
            gap_seconds: gap,
            phase,
        }
    }

    fn error_name(&self) -> String {
        self.name.clone()
    }

    /// The samples of one metric of one target over a query's range.
    fn series(&self, target: &SimTarget, metric_index: usize, query: &RangeQuery) -> MetricSeries {
        let profile = target.profiles[metric_index];
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
            &format!("{}:{first}:{step}", METRICS[metric_index]),
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
                let value = (level + profile.daily * angle.sin() + n).clamp(0.0, 1.0);
                timestamps_ms.push(t * 1000);
                values.push(value);
            }
            t += step;
        }
        MetricSeries {
            metric: METRICS[metric_index].to_string(),
            timestamps_ms,
            values,
        }
    }

    fn answer(&self, query: &RangeQuery) -> Result<QueryResult, ObserveError> {
        let Some(metric_index) = METRICS.iter().position(|m| *m == query.metric) else {
            return Err(ObserveError::UnknownMetric {
                source_name: self.error_name(),
                metric: query.metric.clone(),
                promql: query.promql.clone(),
                known: METRICS.join(", "),
            });
        };
        if query.technology != TECHNOLOGY {
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
        let series = self
            .sims
            .iter()
            .map(|t| (t.target.id.clone(), self.series(t, metric_index, query)))
            .filter(|(_, s)| !s.values.is_empty())
            .collect();
        Ok(QueryResult { series })
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
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn query(metric: &str, end: i64) -> RangeQuery {
        RangeQuery {
            metric: metric.to_string(),
            promql: "irrelevant for the simulator".to_string(),
            technology: TECHNOLOGY.to_string(),
            start: at(end - 5 * WEEK),
            end: at(end),
            step_seconds: 300,
            target_label: "instance".to_string(),
        }
    }

    fn answer(fleet: &SimulatedFleet, q: &RangeQuery) -> QueryResult {
        fleet.answer(q).unwrap()
    }

    /// Weekly means W-4..W-1 (in percent) and sample counts, the way a plugin computes them.
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
                    v.iter().sum::<f64>() / v.len() as f64 * 100.0
                };
                (mean, v.len())
            })
            .collect()
    }

    const END: i64 = 1_795_413_600; // 2026-11-23T06:00:00Z

    fn series_of<'a>(result: &'a QueryResult, id: &str) -> &'a MetricSeries {
        &result.series.iter().find(|(t, _)| t == id).unwrap().1
    }

    #[test]
    fn quickstart_has_every_scenario_and_at_least_fifty_targets() {
        let fleet = SimulatedFleet::quickstart(42);
        let targets = fleet.targets();
        assert_eq!(targets.len(), 54);
        for scenario in Scenario::ALL {
            let canonical = format!("{}-01", scenario.id_prefix());
            assert_eq!(fleet.scenario_of(&canonical), Some(scenario.name()));
        }
        let reporting = targets.iter().find(|t| t.id == "pg-reporting-01").unwrap();
        assert_eq!(reporting.resources.cpu_millicores, 8000);
        assert_eq!(reporting.resources.memory_bytes, 32 * GIB);
        assert_eq!(reporting.resources.parameters["shared_buffers"], "8GB");
    }

    #[test]
    fn same_seed_same_samples_other_seed_other_samples() {
        let a = answer(&SimulatedFleet::quickstart(42), &query("cpu", END));
        let b = answer(&SimulatedFleet::quickstart(42), &query("cpu", END));
        let c = answer(&SimulatedFleet::quickstart(7), &query("cpu", END));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    /// The canonical (`-01`) weekly means W-4..W-1, in percent, per scenario and metric.
    const CANONICAL: [(&str, &str, [f64; 4]); 20] = [
        ("pg-reporting-01", "cpu", [11.0, 9.0, 13.0, 10.0]),
        ("pg-reporting-01", "memory", [58.0, 61.0, 55.0, 57.0]),
        ("pg-reporting-01", "connections", [22.0, 19.0, 24.0, 21.0]),
        ("pg-reporting-01", "iops", [31.0, 28.0, 33.0, 29.0]),
        ("pg-transactional-01", "cpu", [61.0, 66.0, 71.0, 74.0]),
        ("pg-transactional-01", "memory", [71.0, 74.0, 77.0, 81.0]),
        (
            "pg-transactional-01",
            "connections",
            [74.0, 79.0, 83.0, 89.0],
        ),
        ("pg-transactional-01", "iops", [68.0, 71.0, 74.0, 78.0]),
        ("pg-steady-01", "cpu", [50.0; 4]),
        ("pg-steady-01", "memory", [60.0; 4]),
        ("pg-steady-01", "connections", [40.0; 4]),
        ("pg-spiky-01", "cpu", [50.0; 4]),
        ("pg-spiky-01", "memory", [58.0; 4]),
        ("pg-spiky-01", "connections", [40.0; 4]),
        ("pg-saturated-01", "cpu", [88.0, 90.0, 91.0, 93.0]),
        ("pg-saturated-01", "memory", [80.0; 4]),
        ("pg-connections-01", "cpu", [55.0; 4]),
        ("pg-connections-01", "connections", [95.5, 96.0, 97.0, 97.5]),
        ("pg-gap-01", "cpu", [15.0, 15.0, 15.0, f64::NAN]),
        ("pg-gap-01", "memory", [50.0, 50.0, 50.0, f64::NAN]),
    ];

    fn assert_canonical_means(fleet: &SimulatedFleet, end: i64) {
        // One fleet-wide query per metric, as the engine does.
        let results: Vec<QueryResult> = METRICS
            .iter()
            .map(|m| answer(fleet, &query(m, end)))
            .collect();
        for (id, metric, expected) in CANONICAL {
            let Some(index) = METRICS.iter().position(|m| *m == metric) else {
                panic!("{metric} is not served");
            };
            let result = &results[index];
            let weeks = weekly(series_of(result, id), end);
            for ((mean, count), want) in weeks.iter().zip(expected) {
                if want.is_nan() {
                    assert_eq!(*count, 0, "{id} {metric} at {end}");
                    continue;
                }
                assert!(*count > 0, "{id} {metric} at {end}");
                assert!(
                    (mean - want).abs() <= 0.3,
                    "{id} {metric} at {end}: {mean} vs {want}"
                );
            }
        }
    }

    #[test]
    fn canonical_instances_have_the_design_figures() {
        assert_canonical_means(&SimulatedFleet::quickstart(42), END);
        let reporting = answer(&SimulatedFleet::quickstart(42), &query("cpu", END));
        for (_, count) in weekly(series_of(&reporting, "pg-reporting-01"), END) {
            assert_eq!(count, 2016, "a full week of 5-minute samples");
        }
    }

    #[test]
    fn weekly_means_do_not_depend_on_now_or_seed() {
        // Not aligned to the day, the hour or the step: whole weeks still hold whole days.
        for (seed, end) in [
            (42, END + 3 * 3600 + 17 * 60 + 11),
            (7, END - 3 * DAY),
            (1, END + 11 * WEEK),
        ] {
            assert_canonical_means(&SimulatedFleet::quickstart(seed), end);
        }
    }

    #[test]
    fn samples_are_aligned_to_the_step_and_within_the_range() {
        let fleet = SimulatedFleet::quickstart(42);
        let mut q = query("memory", END + 123);
        q.step_seconds = 600;
        let result = answer(&fleet, &q);
        assert_eq!(result.series.len(), fleet.targets().len());
        for (id, series) in &result.series {
            assert_eq!(series.metric, "memory");
            assert_eq!(series.timestamps_ms.len(), series.values.len());
            assert!(series.timestamps_ms.windows(2).all(|w| w[0] < w[1]), "{id}");
            for (t, v) in series.timestamps_ms.iter().zip(&series.values) {
                assert_eq!(t % 600_000, 0, "{id}");
                assert!(*t >= q.start.timestamp_millis() && *t < q.end.timestamp_millis());
                assert!((0.0..=1.0).contains(v), "{id}: {v}");
            }
        }
    }

    #[test]
    fn discovery_lists_the_fleet_with_its_labels() {
        let fleet = SimulatedFleet::quickstart(42);
        let found = fleet.sims.len();
        assert_eq!(found, 54);
        assert_eq!(SimulatedFleet::scenarios().len(), 7);
        let total: usize = SimulatedFleet::scenarios()
            .iter()
            .map(|s| s.quickstart_count())
            .sum();
        assert_eq!(total, fleet.targets().len());
        for target in fleet.targets() {
            assert_eq!(target.technology, "postgres");
            assert_eq!(target.labels["instance"], target.id);
            let memory = target.resources.memory_bytes;
            assert_eq!(
                target.resources.parameters["shared_buffers"],
                format!("{}GB", memory / 4 / GIB),
                "{}",
                target.id
            );
            assert!(
                target.resources.parameters["max_connections"]
                    .parse::<u32>()
                    .is_ok()
            );
        }
        let transactional = &fleet.targets()[10];
        assert_eq!(transactional.id, "pg-transactional-01");
        assert_eq!(transactional.resources.cpu_millicores, 16_000);
        assert_eq!(transactional.resources.memory_bytes, 64 * GIB);
    }

    #[test]
    fn variants_stay_in_their_scenario() {
        let fleet = SimulatedFleet::quickstart(42);
        let cpu = answer(&fleet, &query("cpu", END));
        let memory = answer(&fleet, &query("memory", END));
        let connections = answer(&fleet, &query("connections", END));
        for target in fleet.targets() {
            let c: Vec<f64> = weekly(series_of(&cpu, &target.id), END)
                .iter()
                .map(|w| w.0)
                .collect();
            let m: Vec<f64> = weekly(series_of(&memory, &target.id), END)
                .iter()
                .map(|w| w.0)
                .collect();
            let n: Vec<f64> = weekly(series_of(&connections, &target.id), END)
                .iter()
                .map(|w| w.0)
                .collect();
            match fleet.scenario_of(&target.id).unwrap() {
                "reporting" => assert!(
                    c.iter().all(|v| *v < 39.0) && m.iter().all(|v| *v < 64.5),
                    "{}: {c:?} {m:?}",
                    target.id
                ),
                "transactional" => assert!(
                    c.iter().all(|v| *v < 84.0) && n.iter().all(|v| *v < 94.5),
                    "{}: {c:?} {n:?}",
                    target.id
                ),
                "saturated" => assert!(c.iter().all(|v| *v > 86.0), "{}: {c:?}", target.id),
                "connection-pressure" => {
                    assert!(n.iter().all(|v| *v >= 95.2), "{}: {n:?}", target.id)
                }
                "spiky-but-safe" | "steady-mid" => assert!(
                    c.iter().all(|v| *v > 41.0 && *v < 84.0) && n.iter().all(|v| *v < 94.0),
                    "{}: {c:?} {n:?}",
                    target.id
                ),
                _ => {}
            }
        }
    }

    #[test]
    fn spiky_targets_really_spike() {
        let fleet = SimulatedFleet::quickstart(42);
        let cpu = answer(&fleet, &query("cpu", END));
        let peak = series_of(&cpu, "pg-spiky-01")
            .values
            .iter()
            .copied()
            .fold(0.0, f64::max);
        assert!(peak > 0.85, "{peak}");
    }

    #[test]
    fn the_gap_target_lacks_the_last_weeks() {
        let fleet = SimulatedFleet::quickstart(42);
        let cpu = answer(&fleet, &query("cpu", END));
        let weeks = weekly(series_of(&cpu, "pg-gap-01"), END);
        assert_eq!(weeks[3].1, 0, "W-1 must be empty");
        assert!(weeks[2].1 < 2016 / 2, "W-2 mostly empty: {}", weeks[2].1);
        assert_eq!(weeks[0].1, 2016);
        for target in fleet
            .targets()
            .iter()
            .filter(|t| t.id.starts_with("pg-gap-"))
        {
            let weeks = weekly(series_of(&cpu, &target.id), END);
            assert_eq!(weeks[3].1, 0, "{}: W-1 must be empty", target.id);
            assert!(weeks[2].1 <= 2016 / 2, "{}: {}", target.id, weeks[2].1);
            assert_eq!(weeks[1].1, 2016, "{}", target.id);
        }
    }

    #[test]
    fn unknown_metric_and_technology_are_named() {
        let fleet = SimulatedFleet::quickstart(42);
        let error = fleet
            .answer(&query("wal_bytes", END))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("wal_bytes") && error.contains("simulated(seed=42)"),
            "{error}"
        );
        let mut q = query("cpu", END);
        q.technology = "redis".into();
        let error = fleet.answer(&q).unwrap_err().to_string();
        assert!(error.contains("redis"), "{error}");
    }
}
