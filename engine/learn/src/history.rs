//! Weekly outcome histories: what each simulated target did, week after week, and which
//! degradations followed.
//!
//! A history starts from a technology's simulator scenarios (the five weekly means W-5..W-1 of
//! each metric, varied per target by the scenario's `lift` and `scale` draws) and continues each
//! trajectory for the rest of the history with one of a few [`Pattern`]s: the trend goes on with
//! a perturbed slope, flattens, shifts to a new regime, or declines. Some targets follow a fresh
//! trajectory instead (idle, steady, spiky, saturating, compound climbs, connection pressure,
//! memory full), so the learner sees behaviours the scenarios only hint at.
//!
//! # The outcome model
//!
//! Only ratio metrics (scenario bounds `0..=1`) drive outcomes; each has a role by name:
//! `connections*` (a share of a hard connection limit), `memory*` / `mem*`, and everything else
//! is load (CPU, disk busy time, …). In week `w`, with every comparison made against the weekly
//! mean plus a fresh Gaussian draw of standard deviation [`OutcomeModel::jitter`] (so that the
//! boundary is soft, as in real systems):
//!
//! - `latency_spike` when any load dimension reaches [`OutcomeModel::load_at`], or when the
//!   **compound pressure** — the mean of all ratio dimensions — reaches
//!   [`OutcomeModel::compound_at`] (every dimension high together, none saturated alone);
//! - `connection_timeout` when a connection dimension reaches [`OutcomeModel::connections_at`];
//! - `oom_kill` when a memory dimension reaches [`OutcomeModel::memory_at`].
//!
//! Label noise then drops a share ([`HistoryConfig::label_noise`]) of the weeks with events and
//! adds a spurious event to a fifth of that share of the quiet weeks, because incident records are
//! never complete nor clean.
//!
//! Everything is drawn from one ChaCha stream seeded by [`HistoryConfig::seed`], in a fixed
//! order, so a seed names a history.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use setpoint_core::{SimMetric, SimScenario};

use crate::{Error, Result};

/// Kinds of degradation that make a window's outcome `scale_up`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Queries slowed down: CPU, I/O or everything together saturated.
    LatencySpike,
    /// Clients could not get a connection.
    ConnectionTimeout,
    /// The kernel or the orchestrator killed the process for memory.
    OomKill,
}

impl EventKind {
    /// The snake_case name used in incident files.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::LatencySpike => "latency_spike",
            EventKind::ConnectionTimeout => "connection_timeout",
            EventKind::OomKill => "oom_kill",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "latency_spike" => Some(EventKind::LatencySpike),
            "connection_timeout" => Some(EventKind::ConnectionTimeout),
            "oom_kill" => Some(EventKind::OomKill),
            _ => None,
        }
    }
}

/// One degradation of one target in one week of a history.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Event {
    /// Target id.
    pub target: String,
    /// Week index in the history (0 is the first week).
    pub week: u32,
    /// What happened.
    pub kind: EventKind,
}

/// How a target's trajectory goes on after its first five weeks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pattern {
    /// A scenario's trend goes on with a perturbed slope.
    Continue,
    /// A scenario's trend goes on, then flattens from a random week.
    Plateau,
    /// A scenario's trend goes on, then every dimension shifts up or down together (a new
    /// workload, a migration) and drifts on from there.
    RegimeChange,
    /// A scenario's levels decline.
    Decline,
    /// A fresh trajectory: almost nothing to do.
    Idle,
    /// A fresh trajectory: flat, mid-range.
    Steady,
    /// A fresh trajectory: mid-range with large week-to-week swings.
    Spiky,
    /// A fresh trajectory: one load dimension climbs towards saturation.
    Saturating,
    /// A fresh trajectory: every dimension climbs together from mid-range.
    CompoundClimb,
    /// A fresh trajectory: connections near the limit.
    ConnectionPressure,
    /// A fresh trajectory: memory near full.
    MemoryFull,
    /// Not simulated: read from a metric source.
    Observed,
}

const FRESH: [Pattern; 7] = [
    Pattern::Idle,
    Pattern::Steady,
    Pattern::Spiky,
    Pattern::Saturating,
    Pattern::CompoundClimb,
    Pattern::ConnectionPressure,
    Pattern::MemoryFull,
];

/// What a metric means to the outcome model (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A load ratio: CPU, disk busy time, …
    Load,
    /// Memory in use as a ratio.
    Memory,
    /// Connections as a share of the limit.
    Connections,
    /// Not a ratio: carried along as a feature, no part of the outcome model.
    Gauge,
}

/// One metric of a history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricInfo {
    /// Metric name, the stem of its features.
    pub name: String,
    /// Its role in the outcome model.
    pub role: Role,
    /// Lowest value.
    pub min: f64,
    /// Highest value.
    pub max: f64,
}

impl MetricInfo {
    fn from_sim(m: &SimMetric) -> Self {
        Self::named(&m.metric, m.min == 0.0 && m.max == 1.0, m.min, m.max)
    }

    /// A metric read from a source: its role by name when it is a ratio.
    pub fn observed(name: &str, ratio: bool) -> Self {
        Self::named(name, ratio, 0.0, if ratio { 1.0 } else { f64::MAX })
    }

    fn named(name: &str, ratio: bool, min: f64, max: f64) -> Self {
        let role = if !ratio {
            Role::Gauge
        } else if name.starts_with("connections") {
            Role::Connections
        } else if name.starts_with("mem") {
            Role::Memory
        } else {
            Role::Load
        };
        Self {
            name: name.to_string(),
            role,
            min,
            max,
        }
    }

    /// Whether the metric is a utilisation ratio.
    pub fn is_ratio(&self) -> bool {
        self.role != Role::Gauge
    }
}

/// One target's weekly history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetHistory {
    /// Target id, unique in the history.
    pub id: String,
    /// The scenario it started from (`fresh` for a fresh trajectory).
    pub scenario: String,
    /// How its trajectory went on.
    pub pattern: Pattern,
    /// Weekly means, `[metric][week]`, metrics in [`History::metrics`] order; NaN for a week
    /// without data (a history read from a source).
    pub weekly: Vec<Vec<f64>>,
    /// Weekly peaks, `[metric][week]` like `weekly`, for histories read from a source (the
    /// simulator's have none): an empty list for a metric without peaks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peaks: Vec<Vec<setpoint_core::WeekPeak>>,
}

/// A simulated fleet's weekly history and the degradations that followed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// The metrics, in the scenarios' order.
    pub metrics: Vec<MetricInfo>,
    /// Weeks per target.
    pub weeks: u32,
    /// The targets.
    pub targets: Vec<TargetHistory>,
    /// Ground-truth degradations, sorted by target, week and kind.
    pub events: Vec<Event>,
}

/// Thresholds of the outcome model (weekly means as ratios; see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutcomeModel {
    /// A load dimension at this weekly mean saturates at its daily peaks: latency spike.
    pub load_at: f64,
    /// Mean of all ratio dimensions at which everything queues together: latency spike.
    pub compound_at: f64,
    /// Connection share at which clients time out.
    pub connections_at: f64,
    /// Memory share at which processes get killed.
    pub memory_at: f64,
    /// Standard deviation of the draw added before each comparison.
    pub jitter: f64,
}

impl Default for OutcomeModel {
    fn default() -> Self {
        Self {
            load_at: 0.88,
            compound_at: 0.83,
            connections_at: 0.96,
            memory_at: 0.96,
            jitter: 0.015,
        }
    }
}

/// What to simulate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryConfig {
    /// Seed of the whole history.
    pub seed: u64,
    /// Weeks per target (at least 8: five scenario weeks and three more).
    pub weeks: u32,
    /// Targets started from each scenario (the first keeps the scenario's figures exactly).
    pub targets_per_scenario: u32,
    /// Targets on fresh trajectories.
    pub fresh_targets: u32,
    /// Share of event weeks dropped (and a fifth of it of quiet weeks given a spurious event).
    pub label_noise: f64,
    /// The outcome model.
    pub outcomes: OutcomeModel,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            weeks: 16,
            targets_per_scenario: 40,
            fresh_targets: 200,
            label_noise: 0.03,
            outcomes: OutcomeModel::default(),
        }
    }
}

/// Weeks of a scenario (W-5..W-1).
const SCENARIO_WEEKS: usize = 5;

/// Simulates a history from a technology's scenarios. All scenarios must describe the same
/// metrics in the same order (the plugin host checks that for loaded plugins).
pub fn simulate(scenarios: &[SimScenario], config: &HistoryConfig) -> Result<History> {
    let first = scenarios
        .first()
        .ok_or_else(|| Error::Config("no scenarios to simulate from".into()))?;
    if config.weeks < SCENARIO_WEEKS as u32 + 3 {
        return Err(Error::Config(format!(
            "weeks must be at least {}, got {}",
            SCENARIO_WEEKS + 3,
            config.weeks
        )));
    }
    if !(0.0..=0.5).contains(&config.label_noise) {
        return Err(Error::Config(format!(
            "label_noise must be within 0..=0.5, got {}",
            config.label_noise
        )));
    }
    let metrics: Vec<MetricInfo> = first.metrics.iter().map(MetricInfo::from_sim).collect();
    for sc in scenarios {
        let names: Vec<&str> = sc.metrics.iter().map(|m| m.metric.as_str()).collect();
        let expected: Vec<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
        if names != expected {
            return Err(Error::Config(format!(
                "scenario {:?} describes metrics {names:?}, expected {expected:?}",
                sc.name
            )));
        }
        if let Some(m) = sc.metrics.iter().find(|m| m.weeks.len() != SCENARIO_WEEKS) {
            return Err(Error::Config(format!(
                "scenario {:?}, metric {:?}: {} weekly levels, expected {SCENARIO_WEEKS}",
                sc.name,
                m.metric,
                m.weeks.len()
            )));
        }
    }

    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let weeks = config.weeks as usize;
    let mut targets = Vec::new();
    for sc in scenarios {
        for i in 0..config.targets_per_scenario {
            let start = scenario_start(sc, i == 0, &mut rng);
            let pattern = match rng.random_range(0..20) {
                0..=10 => Pattern::Continue,
                11..=13 => Pattern::Plateau,
                14..=16 => Pattern::RegimeChange,
                _ => Pattern::Decline,
            };
            let weekly = continue_trajectory(&metrics, &start, pattern, weeks, &mut rng);
            targets.push(TargetHistory {
                id: format!("{}-{:03}", sc.id_prefix, i + 1),
                scenario: sc.name.clone(),
                pattern,
                weekly,
                peaks: Vec::new(),
            });
        }
    }
    for i in 0..config.fresh_targets {
        let pattern = FRESH[rng.random_range(0..FRESH.len())];
        let weekly = fresh_trajectory(&metrics, scenarios, pattern, weeks, &mut rng);
        targets.push(TargetHistory {
            id: format!("fresh-{:04}", i + 1),
            scenario: "fresh".into(),
            pattern,
            weekly,
            peaks: Vec::new(),
        });
    }

    let mut events = Vec::new();
    for target in &targets {
        for week in 0..weeks {
            let mut found = outcomes(&metrics, target, week, &config.outcomes, &mut rng);
            let noise: f64 = rng.random();
            if !found.is_empty() && noise < config.label_noise {
                found.clear();
            } else if found.is_empty() && noise < config.label_noise / 5.0 {
                found.push(
                    [
                        EventKind::LatencySpike,
                        EventKind::ConnectionTimeout,
                        EventKind::OomKill,
                    ][rng.random_range(0..3)],
                );
            }
            events.extend(found.into_iter().map(|kind| Event {
                target: target.id.clone(),
                week: week as u32,
                kind,
            }));
        }
    }
    events.sort();
    Ok(History {
        metrics,
        weeks: config.weeks,
        targets,
        events,
    })
}

/// A standard normal draw (Box–Muller), so that no distribution crate is needed.
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn uniform(rng: &mut ChaCha8Rng, lo: f64, hi: f64) -> f64 {
    if hi > lo {
        lo + (hi - lo) * rng.random::<f64>()
    } else {
        lo
    }
}

/// The scenario's five weeks for one target: exact for the canonical target, varied by the
/// scenario's lift and scale draws for the others (the simulator's own rule).
fn scenario_start(sc: &SimScenario, canonical: bool, rng: &mut ChaCha8Rng) -> Vec<Vec<f64>> {
    sc.metrics
        .iter()
        .map(|m| {
            let lift = match (canonical, m.lift) {
                (false, Some((lo, hi))) => uniform(rng, lo, hi),
                _ => 0.0,
            };
            let scale = match (canonical, m.scale) {
                (false, Some((lo, hi))) => uniform(rng, lo, hi),
                _ => 1.0,
            };
            m.weeks
                .iter()
                .map(|w| ((w + lift) * scale).clamp(m.min, m.max))
                .collect()
        })
        .collect()
}

/// Least-squares slope of equally spaced values.
pub(crate) fn slope(values: &[f64]) -> f64 {
    let n = values.len() as f64;
    if values.len() < 2 {
        return 0.0;
    }
    let mx = (n - 1.0) / 2.0;
    let my = values.iter().sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for (i, y) in values.iter().enumerate() {
        let dx = i as f64 - mx;
        num += dx * (y - my);
        den += dx * dx;
    }
    num / den
}

/// Week-to-week noise of a weekly mean, relative to the metric's range.
const WEEKLY_NOISE: f64 = 0.012;

fn continue_trajectory(
    metrics: &[MetricInfo],
    start: &[Vec<f64>],
    pattern: Pattern,
    weeks: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<Vec<f64>> {
    let slope_factor = uniform(rng, 0.7, 1.3);
    let change_at = rng.random_range(SCENARIO_WEEKS..weeks - 1);
    // One shift for every dimension: a workload change moves them together.
    let shift = uniform(rng, 0.08, 0.25) * if rng.random_bool(0.5) { 1.0 } else { -1.0 };
    metrics
        .iter()
        .zip(start)
        .map(|(m, first)| {
            let range = m.max - m.min;
            let base = slope(first);
            let mut values = first.clone();
            let mut level = first.last().copied().unwrap_or(m.min);
            let drift = 0.004 * range * normal(rng);
            let mut step = match pattern {
                Pattern::Decline => -base.abs() - uniform(rng, 0.0, 0.012) * range,
                _ => base * slope_factor + drift,
            };
            for week in SCENARIO_WEEKS..weeks {
                if week == change_at {
                    match pattern {
                        Pattern::Plateau => step = 0.0,
                        Pattern::RegimeChange => {
                            level += shift * range;
                            step = 0.008 * range * normal(rng);
                        }
                        _ => {}
                    }
                }
                level = (level + step).clamp(m.min, m.max);
                values.push((level + WEEKLY_NOISE * range * normal(rng)).clamp(m.min, m.max));
            }
            values
        })
        .collect()
}

fn fresh_trajectory(
    metrics: &[MetricInfo],
    scenarios: &[SimScenario],
    pattern: Pattern,
    weeks: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<Vec<f64>> {
    let load_dims: Vec<usize> = metrics
        .iter()
        .enumerate()
        .filter(|(_, m)| m.role == Role::Load)
        .map(|(i, _)| i)
        .collect();
    let hot = if load_dims.is_empty() {
        None
    } else {
        Some(load_dims[rng.random_range(0..load_dims.len())])
    };
    let common_climb = uniform(rng, 0.02, 0.045);
    let scenario = &scenarios[rng.random_range(0..scenarios.len())];
    metrics
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let (level, step, noise) = if m.role == Role::Gauge {
                // Gauges have no generic meaning: keep a scenario's last level, steady.
                let last = scenario.metrics[i].weeks.last().copied().unwrap_or(m.min);
                (last * uniform(rng, 0.8, 1.2), 0.0, 0.03 * last.abs())
            } else {
                let n = 0.003 * normal(rng);
                match (pattern, m.role) {
                    (Pattern::Idle, Role::Memory) => (uniform(rng, 0.25, 0.6), n, WEEKLY_NOISE),
                    (Pattern::Idle, _) => (uniform(rng, 0.03, 0.28), n, WEEKLY_NOISE),
                    (Pattern::Steady, _) => (uniform(rng, 0.35, 0.72), n, WEEKLY_NOISE),
                    (Pattern::Spiky, _) => (uniform(rng, 0.3, 0.62), n, 0.06),
                    (Pattern::Saturating, _) if Some(i) == hot => (
                        uniform(rng, 0.6, 0.8),
                        uniform(rng, 0.02, 0.05),
                        WEEKLY_NOISE,
                    ),
                    (Pattern::Saturating, _) => (uniform(rng, 0.3, 0.6), n, WEEKLY_NOISE),
                    (Pattern::CompoundClimb, _) => (
                        uniform(rng, 0.45, 0.68),
                        common_climb * uniform(rng, 0.8, 1.2),
                        WEEKLY_NOISE,
                    ),
                    (Pattern::ConnectionPressure, Role::Connections) => {
                        (uniform(rng, 0.9, 0.995), n, 0.01)
                    }
                    (Pattern::MemoryFull, Role::Memory) => (uniform(rng, 0.93, 0.995), n, 0.01),
                    _ => (uniform(rng, 0.3, 0.65), n, WEEKLY_NOISE),
                }
            };
            let mut level = level;
            (0..weeks)
                .map(|_| {
                    level = (level + step).clamp(m.min, m.max);
                    (level + noise * normal(rng)).clamp(m.min, m.max)
                })
                .collect()
        })
        .collect()
}

/// The events of one target in one week (see the module docs).
fn outcomes(
    metrics: &[MetricInfo],
    target: &TargetHistory,
    week: usize,
    model: &OutcomeModel,
    rng: &mut ChaCha8Rng,
) -> Vec<EventKind> {
    let mut kinds = Vec::new();
    let mut compound = Vec::new();
    for (m, values) in metrics.iter().zip(&target.weekly) {
        let Some(&v) = values.get(week) else { continue };
        if !m.is_ratio() {
            continue;
        }
        compound.push(v);
        let seen = v + model.jitter * normal(rng);
        let (kind, at) = match m.role {
            Role::Load => (EventKind::LatencySpike, model.load_at),
            Role::Memory => (EventKind::OomKill, model.memory_at),
            Role::Connections => (EventKind::ConnectionTimeout, model.connections_at),
            Role::Gauge => continue,
        };
        if seen >= at && !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    if !compound.is_empty() {
        let mean = compound.iter().sum::<f64>() / compound.len() as f64;
        if mean + model.jitter * normal(rng) >= model.compound_at
            && !kinds.contains(&EventKind::LatencySpike)
        {
            kinds.push(EventKind::LatencySpike);
        }
    }
    kinds.sort();
    kinds
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::testkit::postgres_scenarios;

    fn small() -> HistoryConfig {
        HistoryConfig {
            seed: 7,
            weeks: 12,
            targets_per_scenario: 6,
            fresh_targets: 30,
            ..HistoryConfig::default()
        }
    }

    #[test]
    fn same_seed_same_history_other_seed_other_history() {
        let scenarios = postgres_scenarios();
        let a = simulate(&scenarios, &small()).unwrap();
        let b = simulate(&scenarios, &small()).unwrap();
        assert_eq!(a, b);
        let c = simulate(&scenarios, &HistoryConfig { seed: 8, ..small() }).unwrap();
        assert_ne!(a.targets, c.targets);
    }

    #[test]
    fn canonical_targets_start_with_the_scenario_weeks() {
        let scenarios = postgres_scenarios();
        let h = simulate(&scenarios, &small()).unwrap();
        let b = h
            .targets
            .iter()
            .find(|t| t.id == "pg-transactional-001")
            .unwrap();
        assert_eq!(h.metrics[0].name, "cpu");
        assert_eq!(&b.weekly[0][..5], &[0.57, 0.61, 0.66, 0.71, 0.74]);
        assert!(b.weekly.iter().all(|m| m.len() == 12));
        assert!(
            h.metrics.iter().all(|m| m.role != Role::Gauge),
            "{:?}",
            h.metrics
        );
        assert_eq!(h.metrics[2].role, Role::Connections);
        assert_eq!(h.metrics[1].role, Role::Memory);
    }

    #[test]
    fn events_follow_the_outcome_model() {
        let scenarios = postgres_scenarios();
        let h = simulate(
            &scenarios,
            &HistoryConfig {
                label_noise: 0.0,
                ..small()
            },
        )
        .unwrap();
        // Connection pressure at 95 %+ times out; idle reporting targets stay quiet.
        let pressured = h
            .events
            .iter()
            .filter(|e| {
                e.target.starts_with("pg-connections") && e.kind == EventKind::ConnectionTimeout
            })
            .count();
        assert!(pressured > 10, "{pressured}");
        let idle = h
            .events
            .iter()
            .filter(|e| e.target.starts_with("pg-reporting"))
            .count();
        assert_eq!(idle, 0);
        // Instance B's climb ends in a degradation within three weeks of W-1 (week 4).
        assert!(
            h.events
                .iter()
                .any(|e| e.target == "pg-transactional-001" && (5..=7).contains(&e.week)),
            "{:?}",
            h.events
                .iter()
                .filter(|e| e.target == "pg-transactional-001")
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn compound_pressure_alone_is_a_latency_spike() {
        let metrics: Vec<MetricInfo> = postgres_scenarios()[0]
            .metrics
            .iter()
            .map(MetricInfo::from_sim)
            .collect();
        let target = |v: f64| TargetHistory {
            id: "t".into(),
            scenario: "x".into(),
            pattern: Pattern::Steady,
            weekly: vec![vec![v]; 4],
            peaks: Vec::new(),
        };
        let model = OutcomeModel {
            jitter: 0.0,
            ..OutcomeModel::default()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        // 0.85 everywhere: below every single-dimension level, above the compound level.
        assert_eq!(
            outcomes(&metrics, &target(0.85), 0, &model, &mut rng),
            vec![EventKind::LatencySpike]
        );
        assert!(outcomes(&metrics, &target(0.8), 0, &model, &mut rng).is_empty());
    }

    #[test]
    fn bad_configs_are_refused() {
        let scenarios = postgres_scenarios();
        assert!(matches!(
            simulate(&[], &small()),
            Err(Error::Config(msg)) if msg.contains("no scenarios")
        ));
        assert!(
            simulate(
                &scenarios,
                &HistoryConfig {
                    weeks: 6,
                    ..small()
                }
            )
            .is_err()
        );
        let mut odd = scenarios.clone();
        odd[1].metrics.swap(0, 1);
        assert!(matches!(
            simulate(&odd, &small()),
            Err(Error::Config(msg)) if msg.contains("expected")
        ));
    }
}
