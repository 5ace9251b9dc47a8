//! Observe: discover the loop's targets and read each metric of the plugin for the whole fleet,
//! one range query per metric (aggregated weekly in the TSDB where it can).

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use chrono::{DateTime, Duration, TimeZone, Utc};
use setpoint_core::{
    Aggregation, FloorSettings, MetricSeries, MetricSpec, ObserveIssue, PeakStat, SafetyFloor,
    Target, WeekPeak, Window,
};
use setpoint_observe::{RangeQuery, WeeklySummary, summarise_weekly};
use tracing::{Instrument, info_span};

use crate::LoopRuntime;

const WEEK_SECONDS: i64 = 7 * 24 * 3600;

/// The label that names a target in metric series.
const TARGET_LABEL: &str = "instance";

/// One target as observed: its series, and what was wrong with its data.
pub struct Observed {
    /// The target, its size resolved from the config or its discovery labels.
    pub target: Target,
    /// One series per metric that answered for it.
    pub series: Vec<MetricSeries>,
    /// One issue per metric it lacks, and per series the source had to drop.
    pub issues: Vec<ObserveIssue>,
    /// The safety floor of each dimension, from its weekly peaks and trend.
    pub floor: SafetyFloor,
    /// Each ratio metric's weeks (mean, peaks, time near saturation, coverage), oldest first,
    /// one per week of the window: what the floor and the classifier's peak features see.
    pub weeks: BTreeMap<String, Vec<WeekPeak>>,
}

/// The loop's fleet as observed in one cycle.
pub struct ObservedFleet {
    /// Every target, sorted by id.
    pub targets: Vec<Observed>,
    /// Range queries issued.
    pub queries: usize,
    /// What made the observation incomplete for the fleet (a failed discovery or query).
    pub degraded: Vec<Degradation>,
    /// Series whose target label names no target (neither discovered nor declared, nor an
    /// alias): label value → the metrics that answered for it. Listed, never silently dropped.
    pub unmatched: BTreeMap<String, Vec<String>>,
    /// Targets that no series of any answered metric named, sorted: declared or inventoried
    /// but not scraped, or scraped under names that are not their aliases. Each also holds
    /// with [`ObserveIssue::NoMatchingSeries`] on its row.
    pub without_series: Vec<String>,
}

/// Something that made a cycle's observation incomplete: the cycle completes, the affected
/// targets hold, and the report (exit status 4) says which.
#[derive(Debug, Clone, PartialEq)]
pub enum Degradation {
    /// The source could not list targets; the declared ones are still decided.
    Discovery {
        /// Why.
        error: String,
    },
    /// A metric's query failed: the metric is missing for every target.
    QueryFailed {
        /// The metric.
        metric: String,
        /// Why.
        error: String,
    },
    /// One target lacks a metric the others have, or had a series dropped.
    Target {
        /// The target.
        target: String,
        /// What it lacks.
        issue: ObserveIssue,
    },
    /// The journal's chain is broken: an enforce loop ran as dry-run.
    JournalChain {
        /// The first thing found wrong.
        broken: setpoint_state::ChainBreak,
    },
}

impl fmt::Display for Degradation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Degradation::Discovery { error } => write!(f, "discovery: {error}"),
            Degradation::JournalChain { broken } => write!(
                f,
                "journal chain broken ({broken}): enforce suspended, this cycle ran as dry-run; \
                 `setpoint journal verify` says more, `setpoint journal acknowledge` resumes"
            ),
            Degradation::QueryFailed { metric, error } => {
                write!(
                    f,
                    "{metric}: query failed, missing for every target: {error}"
                )
            }
            Degradation::Target { target, issue } => write!(f, "{target}: {issue}"),
        }
    }
}

/// The observation window for a cycle at `now`: whole steps, `weeks + 1` weeks long so the
/// oldest feature week is complete even when `now` falls mid-step.
pub fn window_for(now: DateTime<Utc>, weeks: u32, step_seconds: u64) -> Window {
    let step = step_seconds.max(1) as i64;
    let end_s = now.timestamp().div_euclid(step) * step;
    let end = Utc.timestamp_opt(end_s, 0).single().unwrap_or(now);
    let start = end - Duration::seconds(WEEK_SECONDS * (i64::from(weeks) + 1));
    Window {
        start,
        end,
        step_seconds: step as u64,
        weeks,
    }
}

/// Observes the loop's fleet over `window`: discovery, the declared targets, one range query
/// per metric of the plugin. A failed discovery or query degrades the observation; it never
/// fails the cycle (the affected targets hold on missing data).
pub async fn observe(
    lp: &LoopRuntime,
    window: &Window,
    deadline: Option<std::time::Duration>,
) -> ObservedFleet {
    let descriptor = lp.plugin.descriptor();
    let mut observation = Observation::default();
    let deadline = deadline.map(|total| Deadline {
        at: tokio::time::Instant::now() + total,
        total,
    });
    let discovered = match within(
        deadline,
        lp,
        "discovery",
        lp.source.discover(&descriptor.technology),
    )
    .instrument(info_span!("discover"))
    .await
    {
        Ok(targets) => targets,
        // A source that cannot list targets still leaves the declared ones to decide (they
        // will hold on missing data); the cycle completes and says what was degraded.
        Err(error) => {
            tracing::warn!(%error, "discovery failed; continuing with the declared targets");
            let error = error.to_string();
            observation.degraded.push(Degradation::Discovery { error });
            Vec::new()
        }
    };
    let (targets, names, label_problems) = resolve_targets(
        discovered,
        lp.config.declared_targets(),
        &descriptor.technology,
    );
    for (target, problem) in label_problems {
        tracing::warn!(target = %target, %problem, "unusable size labels");
        observation.problem(target, ObserveIssue::UnusableSize { problem });
    }
    let summarise = lp.source.summarises_weekly();
    let mut queries = 0;
    for metric in &descriptor.metrics {
        let capacities = metric
            .capacity
            .as_deref()
            .map(|attribute| capacities(&targets, attribute));
        // Only the queries some target needs: the raw one when a target has the capacity, the
        // fallback when one has not (or its raw series may be missing).
        let plans = match (&capacities, &metric.fallback_query) {
            (None, _) => vec![QueryPlan::Whole(metric.query.clone())],
            (Some(c), fallback) => {
                let mut plans = Vec::new();
                if !c.is_empty() || fallback.is_none() {
                    plans.push(QueryPlan::PerCapacity);
                }
                if let Some(fallback) = fallback {
                    plans.push(QueryPlan::Rest(fallback.clone()));
                }
                plans
            }
        };
        let no_capacities = HashMap::new();
        let capacities = capacities.as_ref().unwrap_or(&no_capacities);
        for plan in plans {
            let promql = match &plan {
                QueryPlan::Whole(q) | QueryPlan::Rest(q) => q.clone(),
                QueryPlan::PerCapacity => metric.query.clone(),
            };
            let answered: Vec<String> = observation
                .series
                .iter()
                .filter(|(_, s)| s.iter().any(|s| s.metric == metric.name))
                .map(|(id, _)| id.clone())
                .collect();
            let query = range_query(
                metric,
                &promql,
                &descriptor.technology,
                window,
                summarise.then_some(metric.aggregation),
                true,
            );
            let result = within(deadline, lp, &metric.name, lp.source.query_range(&query))
                .instrument(info_span!("observe", metric = %metric.name))
                .await;
            queries += 1;
            let result = plan.select(result, &names, capacities, &answered);
            let kept: Vec<String> = match &result {
                Ok(r) => r
                    .series
                    .iter()
                    .map(|(label, _)| names.get(label).cloned().unwrap_or(label.clone()))
                    .collect(),
                Err(_) => Vec::new(),
            };
            observation.answer(metric, result, &names);
            // The weekly peaks of every ratio metric (the safety floor's, the classifier's peak
            // features): the engine's own queries, whatever the plugin summarises. Raw
            // samples: the peaks are summarised here from the plugin's series. A metric whose
            // own query failed is missing already (and said once): it may not shrink.
            if !is_ratio(metric)
                || !summarise
                || observation.failed_metrics.contains_key(&metric.name)
            {
                continue;
            }
            for stat in PeakStat::ALL {
                // The share of time near saturation is a threshold on the ratio, which raw
                // values divided afterwards cannot give: one query per capacity, at the level
                // that is near saturation for it.
                let levels: Vec<Option<f64>> = match (&plan, stat) {
                    (QueryPlan::PerCapacity, PeakStat::NearSaturation) => {
                        let mut distinct: Vec<f64> = kept
                            .iter()
                            .filter_map(|id| capacities.get(id).copied())
                            .collect();
                        distinct.sort_by(f64::total_cmp);
                        distinct.dedup();
                        distinct.into_iter().map(Some).collect()
                    }
                    _ => vec![None],
                };
                for level in levels {
                    let aggregation = match level {
                        Some(capacity) => {
                            Aggregation::ShareAtLeast(setpoint_core::NEAR_SATURATION * capacity)
                        }
                        None => stat.aggregation(),
                    };
                    let query = range_query(
                        metric,
                        &promql,
                        &descriptor.technology,
                        window,
                        Some(aggregation),
                        // The plugin's own query counted the samples of this promql already.
                        false,
                    );
                    let result = within(deadline, lp, &metric.name, lp.source.query_range(&query))
                        .instrument(
                            info_span!("observe", metric = %metric.name, peak = ?aggregation),
                        )
                        .await;
                    queries += 1;
                    let result = match (level, result) {
                        // Already a share: keep the targets of this capacity, undivided.
                        (Some(capacity), Ok(mut r)) => {
                            r.series.retain(|(label, _)| {
                                let id = names.get(label).unwrap_or(label);
                                kept.contains(id) && capacities.get(id) == Some(&capacity)
                            });
                            r.problems.clear();
                            Ok(r)
                        }
                        (_, result) => {
                            plan.select(result, &names, capacities, &answered)
                                .map(|mut r| {
                                    r.problems.clear();
                                    r
                                })
                        }
                    };
                    observation.peak_answer(metric, stat, result, &names);
                }
            }
        }
    }
    tracing::info!(
        targets = targets.len(),
        queries,
        summarised_in_source = summarise,
        "observed"
    );
    tracing::Span::current().record("setpoint.targets", targets.len());
    let floor = FloorContext {
        settings: lp.config.floor.resolve(),
        window: *window,
        summarised: summarise,
    };
    observation.into_fleet(targets, &names, &descriptor.metrics, queries, &floor)
}

/// When the observe stage of a cycle must be done, and how long it was given.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: tokio::time::Instant,
    total: std::time::Duration,
}

/// `ask`, cut at the cycle's deadline when there is one: what is not answered by then is a
/// [`setpoint_observe::ObserveError::CycleDeadline`], as any failed query is.
async fn within<T>(
    deadline: Option<Deadline>,
    lp: &LoopRuntime,
    metric: &str,
    ask: impl std::future::Future<Output = Result<T, setpoint_observe::ObserveError>>,
) -> Result<T, setpoint_observe::ObserveError> {
    let Some(deadline) = deadline else {
        return ask.await;
    };
    tokio::time::timeout_at(deadline.at, ask)
        .await
        .unwrap_or_else(|_| {
            Err(setpoint_observe::ObserveError::CycleDeadline {
                source_name: lp.source.name().to_string(),
                metric: metric.to_string(),
                deadline: deadline.total,
            })
        })
}

/// What computing each target's floor needs besides its series.
struct FloorContext {
    settings: FloorSettings,
    window: Window,
    /// Whether the source summarised per week (else the plugin's series are raw samples).
    summarised: bool,
}

impl FloorContext {
    /// Samples a complete week has at the window's step.
    fn samples_per_week(&self) -> f64 {
        (WEEK_SECONDS as f64 / self.window.step_seconds.max(1) as f64).floor()
    }

    /// The first week, of any of the target's series, with less than the least coverage.
    fn thin_week(&self, series: &[MetricSeries]) -> Option<String> {
        let end_ms = self.window.end.timestamp_millis();
        let per_week = self.samples_per_week();
        let summary = WeeklySummary {
            aggregation: Aggregation::Mean,
            weeks: self.window.weeks,
            counted: true,
        };
        for s in series {
            let weekly;
            let counted = if self.summarised {
                s
            } else {
                weekly = summarise_weekly(s, end_ms, summary);
                &weekly
            };
            let counts = counted.sample_counts.as_deref().unwrap_or_default();
            for back in 0..self.window.weeks {
                let week_end = end_ms - i64::from(back) * setpoint_observe::WEEK_MS;
                let count = counted
                    .timestamps_ms
                    .iter()
                    .position(|&t| t == week_end)
                    .and_then(|k| counts.get(k).copied())
                    .unwrap_or(0);
                let coverage = f64::from(count) / per_week;
                if coverage < self.settings.min_coverage {
                    return Some(format!(
                        "{} week W-{} has {:.0} % of its samples (< {:.0} %): a gap hides what the target did, so nothing shrinks",
                        s.metric,
                        back + 1,
                        coverage * 100.0,
                        self.settings.min_coverage * 100.0
                    ));
                }
            }
        }
        None
    }

    /// The floor of `target` from its metrics' weeks.
    fn floor_of(
        &self,
        target: &Target,
        series: &[MetricSeries],
        weeks: &BTreeMap<String, Vec<WeekPeak>>,
    ) -> SafetyFloor {
        // An exporter gap in any metric hides what the target did meanwhile: a thin week of
        // any series is no evidence for shrinking anything.
        if let Some(reason) = self.thin_week(series) {
            return SafetyFloor::hold_all(self.settings, &target.resources, &reason);
        }
        SafetyFloor::compute(self.settings, &target.resources, |dimension| {
            weeks.get(dimension.metric()).cloned().unwrap_or_default()
        })
    }

    /// The weeks of one ratio metric of a target, oldest first, from its plugin series and the
    /// peak series the engine asked for; empty when the metric has no series at all.
    fn weeks_of(
        &self,
        spec: &MetricSpec,
        series: &[MetricSeries],
        peaks: &BTreeMap<(String, PeakStat), MetricSeries>,
    ) -> Vec<WeekPeak> {
        let weeks = self.window.weeks as usize;
        let end_ms = self.window.end.timestamp_millis();
        let per_week = self.samples_per_week();
        let Some(plugin_series) = series.iter().find(|s| s.metric == spec.name) else {
            return Vec::new();
        };
        // Weekly means (with sample counts) and peaks: asked of the TSDB when it summarises,
        // else computed here from the raw samples.
        let stat = |stat: PeakStat| -> Option<MetricSeries> {
            if self.summarised {
                peaks.get(&(spec.name.clone(), stat)).cloned()
            } else {
                Some(summarise_weekly(
                    plugin_series,
                    end_ms,
                    WeeklySummary {
                        aggregation: stat.aggregation(),
                        weeks: self.window.weeks,
                        counted: true,
                    },
                ))
            }
        };
        let mean = if self.summarised {
            (spec.aggregation == Aggregation::Mean).then(|| plugin_series.clone())
        } else {
            Some(summarise_weekly(
                plugin_series,
                end_ms,
                WeeklySummary {
                    aggregation: Aggregation::Mean,
                    weeks: self.window.weeks,
                    counted: true,
                },
            ))
        };
        let (p99, hourly, near) = (
            stat(PeakStat::P99),
            stat(PeakStat::MaxHourlyMean),
            stat(PeakStat::NearSaturation),
        );
        // The counts come with the plugin's series (summarised or not): the peak queries of a
        // summarising source do not count again.
        let counts_from = if self.summarised {
            Some(plugin_series)
        } else {
            mean.as_ref()
        };
        (0..weeks)
            .map(|i| {
                let week_end = end_ms - (weeks - 1 - i) as i64 * setpoint_observe::WEEK_MS;
                let at = |s: &Option<MetricSeries>| {
                    s.as_ref().and_then(|s| {
                        s.timestamps_ms
                            .iter()
                            .position(|&t| t == week_end)
                            .and_then(|k| s.values.get(k).copied())
                            .filter(|v| v.is_finite())
                    })
                };
                let count = counts_from
                    .and_then(|s| {
                        let k = s.timestamps_ms.iter().position(|&t| t == week_end)?;
                        s.sample_counts.as_ref()?.get(k).copied()
                    })
                    .unwrap_or(0);
                WeekPeak {
                    mean: at(&mean),
                    p99: at(&p99),
                    max_hourly: at(&hourly),
                    near_saturation: at(&near),
                    coverage: (f64::from(count) / per_week).min(1.0),
                }
            })
            .collect()
    }
}

/// The issue of a series with a finite value outside its metric's domain. Non-finite values
/// are missing samples, said elsewhere.
fn out_of_domain(spec: &MetricSpec, series: &MetricSeries) -> Option<ObserveIssue> {
    let domain = spec.domain();
    let value = series
        .values
        .iter()
        .copied()
        .find(|v| v.is_finite() && !domain.contains(*v))?;
    Some(ObserveIssue::OutOfDomain {
        metric: spec.name.clone(),
        value,
        domain,
    })
}

/// One query of a metric and which targets it answers.
enum QueryPlan {
    /// A metric without capacity: its query answers every target.
    Whole(String),
    /// A metric with a capacity: its query's raw values, divided by each target's capacity,
    /// for the targets that have one.
    PerCapacity,
    /// The fallback query, for the targets the others did not answer.
    Rest(String),
}

impl QueryPlan {
    /// Keeps (and scales) the part of `result` this plan answers: `answered` lists the targets
    /// an earlier plan of the metric answered already.
    fn select(
        &self,
        result: Result<setpoint_observe::QueryResult, setpoint_observe::ObserveError>,
        names: &HashMap<String, String>,
        capacities: &HashMap<String, f64>,
        answered: &[String],
    ) -> Result<setpoint_observe::QueryResult, setpoint_observe::ObserveError> {
        let mut result = result?;
        let id = |label: &String| names.get(label).cloned().unwrap_or(label.clone());
        match self {
            QueryPlan::Whole(_) => {}
            QueryPlan::PerCapacity => {
                result
                    .series
                    .retain(|(label, _)| capacities.contains_key(&id(label)));
                for (label, series) in &mut result.series {
                    if let Some(capacity) = capacities.get(&id(label)) {
                        for v in &mut series.values {
                            *v /= capacity;
                        }
                    }
                }
                result
                    .problems
                    .retain(|(label, _)| capacities.contains_key(&id(label)));
            }
            QueryPlan::Rest(_) => {
                result
                    .series
                    .retain(|(label, _)| !answered.contains(&id(label)));
                result
                    .problems
                    .retain(|(label, _)| !answered.contains(&id(label)));
            }
        }
        Ok(result)
    }
}

/// Each target's capacity from its `attribute` label: a positive number, else none (the
/// target is then answered by the metric's fallback query).
fn capacities(targets: &[Target], attribute: &str) -> HashMap<String, f64> {
    targets
        .iter()
        .filter_map(|t| {
            let value = t.labels.get(attribute)?.trim().parse::<f64>().ok()?;
            (value.is_finite() && value > 0.0).then(|| (t.id.clone(), value))
        })
        .collect()
}

/// Whether a metric is a utilisation ratio (0..=1 of the target's capacity): only those have
/// peaks against a size and a saturation level.
fn is_ratio(metric: &MetricSpec) -> bool {
    metric.unit == "ratio"
}

/// The fleet-wide range query `promql` of `metric` over `window`, summarised per week in the
/// source with `weekly` when it is given, with each week's sample count when `counted`.
fn range_query(
    metric: &MetricSpec,
    promql: &str,
    technology: &str,
    window: &Window,
    weekly: Option<Aggregation>,
    counted: bool,
) -> RangeQuery {
    RangeQuery {
        metric: metric.name.clone(),
        promql: promql.to_string(),
        technology: technology.to_string(),
        start: window.start,
        end: window.end,
        step_seconds: window.step_seconds,
        target_label: TARGET_LABEL.to_string(),
        weekly: weekly.map(|aggregation| WeeklySummary {
            aggregation,
            weeks: window.weeks,
            counted,
        }),
    }
}

/// Applies the configuration's targets to what discovery found: aliases fold the label values
/// that name one target into its id, declared resources and labels win, and declared targets
/// that discovery missed are added; a discovered target without declared resources takes them
/// from its `setpoint_cpu` / `setpoint_memory_gib` / `setpoint_param_*` labels. Returns the
/// targets, the label-value → id map, and the targets whose size labels are unusable.
pub(crate) fn resolve_targets<'a>(
    discovered: Vec<Target>,
    declared: impl IntoIterator<Item = &'a crate::config::StaticTarget> + Clone,
    technology: &str,
) -> (
    Vec<Target>,
    HashMap<String, String>,
    HashMap<String, String>,
) {
    let mut names: HashMap<String, String> = HashMap::new();
    for t in declared.clone() {
        names.insert(t.id.clone(), t.id.clone());
        for alias in &t.aliases {
            names.insert(alias.clone(), t.id.clone());
        }
    }
    let mut targets: BTreeMap<String, Target> = BTreeMap::new();
    let mut problems: HashMap<String, String> = HashMap::new();
    for mut target in discovered {
        let id = names.get(&target.id).cloned().unwrap_or(target.id.clone());
        target.id = id.clone();
        match resources_from_labels(&target.labels) {
            Ok(Some(resources)) => target.resources = resources,
            Ok(None) => {}
            Err(problem) => {
                problems.insert(id.clone(), problem);
            }
        }
        targets.entry(id).or_insert(target);
    }
    for t in declared {
        let target = targets.entry(t.id.clone()).or_insert_with(|| Target {
            id: t.id.clone(),
            technology: technology.to_string(),
            labels: BTreeMap::new(),
            resources: setpoint_core::Resources {
                cpu_millicores: 0,
                memory_bytes: 0,
                replicas: 1,
                parameters: BTreeMap::new(),
            },
        });
        if let Some(resources) = &t.resources {
            target.resources = resources.resolve();
            problems.remove(&t.id);
        }
        target.labels.extend(t.labels_with_iops());
    }
    (targets.into_values().collect(), names, problems)
}

/// Label on the discovery series giving a target's vCPUs (set by relabelling in the scrape
/// configuration), so a fleet can be sized without listing every target in setpoint's config.
pub const CPU_LABEL: &str = "setpoint_cpu";
/// Label giving a target's memory in GiB.
pub const MEMORY_LABEL: &str = "setpoint_memory_gib";
/// Prefix of labels giving a technology parameter, e.g. `setpoint_param_shared_buffers="8GB"`.
pub const PARAMETER_LABEL_PREFIX: &str = "setpoint_param_";

/// A target's current size from its discovery labels: `None` when it has neither size label, an
/// error naming the label when one is missing or not a positive number.
fn resources_from_labels(
    labels: &BTreeMap<String, String>,
) -> Result<Option<setpoint_core::Resources>, String> {
    let (cpu, memory) = (labels.get(CPU_LABEL), labels.get(MEMORY_LABEL));
    if cpu.is_none() && memory.is_none() {
        return Ok(None);
    }
    let number = |label: &str, value: Option<&String>| -> Result<f64, String> {
        let value = value.ok_or_else(|| {
            format!("label {label} is missing (both {CPU_LABEL} and {MEMORY_LABEL} are needed)")
        })?;
        value
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v > 0.0)
            .ok_or_else(|| format!("label {label}={value:?} is not a positive number"))
    };
    let resources = crate::config::ResourcesConfig {
        cpu: number(CPU_LABEL, cpu)?,
        memory_gib: number(MEMORY_LABEL, memory)?,
        parameters: labels
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(PARAMETER_LABEL_PREFIX)
                    .map(|name| (name.to_string(), v.clone()))
            })
            .collect(),
    };
    Ok(Some(resources.resolve()))
}

/// What the queries answered and what went wrong while observing, kept so every affected
/// target's record names the cause.
#[derive(Default)]
struct Observation {
    /// Target id → one series per metric.
    series: HashMap<String, Vec<MetricSeries>>,
    /// Metric → why its query failed (the metric is missing for every target).
    failed_metrics: BTreeMap<String, String>,
    /// Target → what the source had to drop for it.
    problems: HashMap<String, Vec<ObserveIssue>>,
    /// What made the observation incomplete for the fleet.
    degraded: Vec<Degradation>,
    /// Target id → the weekly peak series of its ratio metrics.
    peaks: HashMap<String, BTreeMap<(String, PeakStat), MetricSeries>>,
}

impl Observation {
    /// Takes in one of the floor's peak queries. A failed one leaves the dimension without a
    /// floor — it may not shrink — and degrades the cycle, as a failed metric does.
    fn peak_answer(
        &mut self,
        spec: &MetricSpec,
        stat: PeakStat,
        result: Result<setpoint_observe::QueryResult, setpoint_observe::ObserveError>,
        names: &HashMap<String, String>,
    ) {
        let metric = spec.name.as_str();
        match result {
            Ok(result) => {
                for (label, series) in result.series {
                    let target = names.get(&label).cloned().unwrap_or(label);
                    if let Some(issue) = out_of_domain(spec, &series) {
                        // Said once per metric, whichever of its queries saw it first.
                        let said = self.problems.get(&target).is_some_and(|issues| {
                            issues.iter().any(|i| {
                                matches!(i, ObserveIssue::OutOfDomain { .. })
                                    && i.metric() == Some(metric)
                            })
                        });
                        if !said {
                            tracing::warn!(target = %target, metric, ?stat, %issue, "impossible values; not evidence");
                            self.problem(target, issue);
                        }
                        continue;
                    }
                    self.peaks
                        .entry(target)
                        .or_default()
                        .entry((metric.to_string(), stat))
                        .or_insert(series);
                }
            }
            Err(error) => {
                tracing::warn!(metric, ?stat, %error, "peak query failed; the dimension may not shrink");
                self.degraded.push(Degradation::QueryFailed {
                    metric: format!(
                        "{metric} ({stat:?}, for the safety floor and the peak features)"
                    ),
                    error: error.to_string(),
                });
            }
        }
    }

    fn problem(&mut self, target: String, issue: ObserveIssue) {
        self.problems.entry(target).or_default().push(issue);
    }

    /// Takes in one metric's answer; `names` maps the label values naming a target to its id.
    /// A target's series with a value outside the metric's domain is dropped with the reason.
    fn answer(
        &mut self,
        spec: &MetricSpec,
        result: Result<setpoint_observe::QueryResult, setpoint_observe::ObserveError>,
        names: &HashMap<String, String>,
    ) {
        let metric = spec.name.as_str();
        let result = match result {
            Ok(result) => result,
            Err(error) => {
                tracing::warn!(metric, %error, "query failed; the metric is missing for every target");
                let (metric, error) = (metric.to_string(), error.to_string());
                self.failed_metrics.insert(metric.clone(), error.clone());
                self.degraded
                    .push(Degradation::QueryFailed { metric, error });
                return;
            }
        };
        for (label, problem) in result.problems {
            let target = names.get(&label).cloned().unwrap_or(label);
            tracing::warn!(target = %target, metric, %problem, "series dropped");
            let metric = metric.to_string();
            self.problem(target, ObserveIssue::SeriesDropped { metric, problem });
        }
        for (label, series) in result.series {
            let target = names.get(&label).cloned().unwrap_or(label);
            if let Some(issue) = out_of_domain(spec, &series) {
                tracing::warn!(target = %target, metric, %issue, "impossible values; not evidence");
                self.problem(target, issue);
                continue;
            }
            let slot = self.series.entry(target.clone()).or_default();
            if slot.iter().any(|s| s.metric == series.metric) {
                // Two label values of one target both answered: keep the first, say so,
                // never average two different things.
                tracing::warn!(target = %target, metric, "several series for one target; keeping the first");
                continue;
            }
            slot.push(series);
        }
    }

    /// Each target with its series and issues, sorted by id. Targets that lack a metric the
    /// others have (partial or dropped series) make the cycle degraded too, by name; a failed
    /// query is already reported once for the fleet.
    fn into_fleet(
        mut self,
        targets: Vec<Target>,
        names: &HashMap<String, String>,
        metrics: &[MetricSpec],
        queries: usize,
        floor: &FloorContext,
    ) -> ObservedFleet {
        // Target id → the label values that name it, for the rows of targets nothing named.
        let mut named_by: HashMap<&str, Vec<String>> = HashMap::new();
        for (label, id) in names {
            named_by.entry(id.as_str()).or_default().push(label.clone());
        }
        let mut without_series = Vec::new();
        let mut observed: Vec<Observed> = targets
            .into_iter()
            .map(|target| {
                let series = self.series.remove(&target.id).unwrap_or_default();
                let mut issues = self.issues_of(&target.id, metrics, &series);
                if issues
                    .iter()
                    .any(|i| matches!(i, ObserveIssue::NoSeries { .. }))
                    && issues.iter().all(|i| {
                        matches!(
                            i,
                            ObserveIssue::NoSeries { .. }
                                | ObserveIssue::QueryFailed { .. }
                                | ObserveIssue::UnusableSize { .. }
                        )
                    })
                    && series.is_empty()
                {
                    // Every metric that answered lacks it: one fact about the target, not one
                    // per metric.
                    issues.retain(|i| !matches!(i, ObserveIssue::NoSeries { .. }));
                    let mut labels = named_by.remove(target.id.as_str()).unwrap_or_default();
                    labels.sort_by_key(|l| (*l != target.id, l.clone()));
                    if labels.is_empty() {
                        labels.push(target.id.clone());
                    }
                    issues.insert(0, ObserveIssue::NoMatchingSeries { names: labels });
                    without_series.push(target.id.clone());
                }
                let peaks = self.peaks.remove(&target.id).unwrap_or_default();
                let weeks: BTreeMap<String, Vec<WeekPeak>> = metrics
                    .iter()
                    .filter(|m| is_ratio(m))
                    .map(|m| (m.name.clone(), floor.weeks_of(m, &series, &peaks)))
                    .collect();
                let floor = floor.floor_of(&target, &series, &weeks);
                Observed {
                    target,
                    series,
                    issues,
                    floor,
                    weeks,
                }
            })
            .collect();
        observed.sort_by(|a, b| a.target.id.cmp(&b.target.id));
        for o in &observed {
            for issue in &o.issues {
                // A failed query is reported once for the fleet, a target with no series in
                // `without_series`.
                if !matches!(
                    issue,
                    ObserveIssue::QueryFailed { .. } | ObserveIssue::NoMatchingSeries { .. }
                ) {
                    self.degraded.push(Degradation::Target {
                        target: o.target.id.clone(),
                        issue: issue.clone(),
                    });
                }
            }
        }
        // What is left answered for no target: an exporter whose label value no target or
        // alias names, or a target that discovery no longer lists.
        let unmatched: BTreeMap<String, Vec<String>> = self
            .series
            .into_iter()
            .map(|(label, series)| (label, series.into_iter().map(|s| s.metric).collect()))
            .collect();
        for (label, metrics) in &unmatched {
            tracing::warn!(label = %label, metrics = ?metrics, "series with no target; declare it or add an alias");
        }
        without_series.sort();
        for target in &without_series {
            tracing::warn!(target = %target, "target with no series; it holds on insufficient data until its id or an alias names a series");
        }
        ObservedFleet {
            targets: observed,
            queries,
            degraded: self.degraded,
            unmatched,
            without_series,
        }
    }

    /// One issue per metric this target lacks, with the reason, plus its dropped series.
    fn issues_of(
        &mut self,
        target: &str,
        metrics: &[MetricSpec],
        series: &[MetricSeries],
    ) -> Vec<ObserveIssue> {
        let problems = self.problems.remove(target).unwrap_or_default();
        let mut issues = Vec::new();
        for metric in metrics {
            if let Some(error) = self.failed_metrics.get(&metric.name) {
                issues.push(ObserveIssue::QueryFailed {
                    metric: metric.name.clone(),
                    error: error.clone(),
                });
            } else if !series.iter().any(|s| s.metric == metric.name)
                // A dropped series also shows as "no series"; keep only the more precise one.
                && !problems.iter().any(|p| p.metric() == Some(metric.name.as_str()))
            {
                issues.push(ObserveIssue::NoSeries {
                    metric: metric.name.clone(),
                });
            }
        }
        issues.extend(problems);
        issues
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ratio(name: &str) -> MetricSpec {
        MetricSpec {
            name: name.into(),
            query: String::new(),
            aggregation: Aggregation::Mean,
            unit: "ratio".into(),
            description: String::new(),
            capacity: None,
            fallback_query: None,
        }
    }

    #[test]
    fn impossible_values_are_an_issue_on_their_target_and_never_evidence() {
        let series = |values: Vec<f64>| MetricSeries {
            metric: "cpu".into(),
            timestamps_ms: (0..values.len() as i64).collect(),
            values,
            sample_counts: None,
        };
        let names = HashMap::new();
        let mut observation = Observation::default();
        let answer = setpoint_observe::QueryResult {
            series: vec![
                ("pg-negative".to_string(), series(vec![0.2, -5.0])),
                ("pg-huge".to_string(), series(vec![1e308])),
                // Rounding just under zero, a saturated share just over one, and a missing
                // sample are all fine.
                ("pg-ok".to_string(), series(vec![-0.004, 1.03, f64::NAN])),
            ],
            problems: Vec::new(),
        };
        observation.answer(&ratio("cpu"), Ok(answer), &names);
        assert_eq!(
            observation.series.keys().collect::<Vec<_>>(),
            ["pg-ok"],
            "only values the metric can take are evidence"
        );
        let issue = &observation.problems["pg-negative"][0];
        assert!(
            matches!(issue, ObserveIssue::OutOfDomain { value, .. } if *value == -5.0),
            "{issue:?}"
        );
        assert_eq!(
            issue.to_string(),
            "cpu: value -5 is outside its domain -0.01..=2: a broken exporter or query, not evidence"
        );
        assert!(matches!(
            observation.problems["pg-huge"][0],
            ObserveIssue::OutOfDomain { .. }
        ));
        // A peak query seeing the same values says nothing twice and keeps no peak.
        let answer = setpoint_observe::QueryResult {
            series: vec![("pg-negative".to_string(), series(vec![-5.0]))],
            problems: Vec::new(),
        };
        observation.peak_answer(&ratio("cpu"), PeakStat::P99, Ok(answer), &names);
        assert_eq!(observation.problems["pg-negative"].len(), 1);
        assert!(observation.peaks.is_empty());
        // A count is never negative, however large.
        let connections = MetricSpec {
            unit: "count".into(),
            ..ratio("cpu")
        };
        assert!(connections.domain().contains(1e12));
        assert!(!connections.domain().contains(-1.0));
        let iops = MetricSpec {
            capacity: Some("provisioned_iops".into()),
            ..ratio("iops")
        };
        assert!(
            iops.domain().contains(30.0),
            "a burst past the provisioned IOPS"
        );
    }

    #[test]
    fn series_that_name_no_target_are_listed_not_dropped() {
        let series = |metric: &str| MetricSeries {
            metric: metric.into(),
            ..MetricSeries::default()
        };
        let mut observation = Observation::default();
        let names = HashMap::from([("10.0.0.5:9187".to_string(), "pg-a".to_string())]);
        for metric in ["cpu", "memory"] {
            let answer = setpoint_observe::QueryResult {
                series: vec![
                    ("10.0.0.5:9187".to_string(), series(metric)),
                    ("10.0.0.9:9100".to_string(), series(metric)),
                ],
                problems: Vec::new(),
            };
            observation.answer(&ratio(metric), Ok(answer), &names);
        }
        let target = Target {
            id: "pg-a".into(),
            technology: "postgres".into(),
            labels: BTreeMap::new(),
            resources: setpoint_core::Resources {
                cpu_millicores: 8000,
                memory_bytes: 32 << 30,
                replicas: 1,
                parameters: BTreeMap::new(),
            },
        };
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 6, 0, 0).unwrap();
        let floor = FloorContext {
            settings: FloorSettings::default(),
            window: window_for(now, 4, 300),
            summarised: true,
        };
        let fleet = observation.into_fleet(vec![target], &names, &[], 2, &floor);
        assert_eq!(fleet.targets.len(), 1);
        assert_eq!(
            fleet.targets[0].series.len(),
            2,
            "the alias joined pg-a's series"
        );
        assert_eq!(
            fleet.unmatched,
            BTreeMap::from([(
                "10.0.0.9:9100".to_string(),
                vec!["cpu".to_string(), "memory".to_string()]
            )])
        );
    }

    #[test]
    fn a_target_no_answered_metric_names_is_listed_once() {
        let spec = ratio;
        let metrics = [spec("cpu"), spec("memory"), spec("connections")];
        let series = |metric: &str| MetricSeries {
            metric: metric.into(),
            ..MetricSeries::default()
        };
        let target = |id: &str| Target {
            id: id.into(),
            technology: "postgres".into(),
            labels: BTreeMap::new(),
            resources: setpoint_core::Resources {
                cpu_millicores: 1000,
                memory_bytes: 1 << 30,
                replicas: 1,
                parameters: BTreeMap::new(),
            },
        };
        let names = HashMap::from([
            ("pg-ghost".to_string(), "pg-ghost".to_string()),
            ("10.0.0.9:9187".to_string(), "pg-ghost".to_string()),
        ]);
        let mut observation = Observation::default();
        for metric in ["cpu", "memory"] {
            let answer = setpoint_observe::QueryResult {
                series: vec![("pg-a".to_string(), series(metric))],
                // A dropped series still named pg-dropped: it is not "without series".
                problems: vec![("pg-dropped".to_string(), "two series".to_string())],
            };
            observation.answer(&spec(metric), Ok(answer), &names);
        }
        let failed = setpoint_observe::ObserveError::Malformed {
            source_name: "tsdb".into(),
            metric: "connections".into(),
            message: "truncated".into(),
        };
        observation.answer(&spec("connections"), Err(failed), &names);
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 6, 0, 0).unwrap();
        let floor = FloorContext {
            settings: FloorSettings::default(),
            window: window_for(now, 4, 300),
            summarised: true,
        };
        let targets = vec![target("pg-a"), target("pg-dropped"), target("pg-ghost")];
        let fleet = observation.into_fleet(targets, &names, &metrics, 3, &floor);
        assert_eq!(fleet.without_series, ["pg-ghost"]);
        let ghost = &fleet.targets[2].issues;
        assert_eq!(
            ghost[0],
            ObserveIssue::NoMatchingSeries {
                names: vec!["pg-ghost".into(), "10.0.0.9:9187".into()]
            }
        );
        // The failed query is still said; the per-metric "no series" is not.
        assert!(matches!(ghost[1], ObserveIssue::QueryFailed { .. }));
        assert_eq!(ghost.len(), 2, "{ghost:?}");
        assert!(
            fleet
                .degraded
                .iter()
                .all(|d| !d.to_string().starts_with("pg-ghost")),
            "said once, in without_series"
        );
    }

    #[test]
    fn a_capacity_metric_divides_each_targets_raw_values_and_leaves_the_rest_to_its_fallback() {
        let target = |id: &str, iops: Option<&str>| Target {
            id: id.into(),
            technology: "postgres".into(),
            labels: iops
                .map(|v| BTreeMap::from([("provisioned_iops".to_string(), v.to_string())]))
                .unwrap_or_default(),
            resources: setpoint_core::Resources {
                cpu_millicores: 4000,
                memory_bytes: 16 << 30,
                replicas: 1,
                parameters: BTreeMap::new(),
            },
        };
        let targets = [
            target("pg-a", Some("3000")),
            target("pg-b", Some("not a number")),
            target("pg-c", None),
        ];
        let capacities = capacities(&targets, "provisioned_iops");
        assert_eq!(capacities, HashMap::from([("pg-a".to_string(), 3000.0)]));
        let series = |values: &[f64]| MetricSeries {
            metric: "iops".into(),
            timestamps_ms: (0..values.len() as i64).collect(),
            values: values.to_vec(),
            sample_counts: None,
        };
        let names = HashMap::from([("10.0.0.1:9100".to_string(), "pg-a".to_string())]);
        let raw = setpoint_observe::QueryResult {
            series: vec![
                ("10.0.0.1:9100".into(), series(&[1500.0, 2700.0])),
                ("pg-b".into(), series(&[900.0])),
            ],
            problems: Vec::new(),
        };
        // Operations per second over the provisioned IOPS, for the target that has them.
        let per_capacity = QueryPlan::PerCapacity
            .select(Ok(raw), &names, &capacities, &[])
            .unwrap();
        assert_eq!(per_capacity.series.len(), 1);
        assert_eq!(per_capacity.series[0].1.values, [0.5, 0.9]);
        // The fallback answers the others, never one already answered.
        let busy = setpoint_observe::QueryResult {
            series: vec![
                ("10.0.0.1:9100".into(), series(&[0.2])),
                ("pg-b".into(), series(&[0.3])),
                ("pg-c".into(), series(&[0.4])),
            ],
            problems: Vec::new(),
        };
        let rest = QueryPlan::Rest(String::new())
            .select(Ok(busy), &names, &capacities, &["pg-a".to_string()])
            .unwrap();
        let answered: Vec<&str> = rest.series.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(answered, ["pg-b", "pg-c"]);
    }

    #[test]
    fn declared_targets_fold_aliases_and_supply_resources() {
        use crate::config::{ResourcesConfig, StaticTarget};
        let discovered = vec![
            Target {
                id: "127.0.0.1:9187".into(),
                technology: "postgres".into(),
                labels: BTreeMap::new(),
                resources: setpoint_core::Resources {
                    cpu_millicores: 0,
                    memory_bytes: 0,
                    replicas: 1,
                    parameters: BTreeMap::new(),
                },
            },
            Target {
                id: "pg-found".into(),
                technology: "postgres".into(),
                labels: BTreeMap::new(),
                resources: setpoint_core::Resources {
                    cpu_millicores: 0,
                    memory_bytes: 0,
                    replicas: 1,
                    parameters: BTreeMap::new(),
                },
            },
        ];
        let declared = vec![
            StaticTarget {
                id: "pg-main".into(),
                aliases: vec!["127.0.0.1:9187".into(), "127.0.0.1:9100".into()],
                resources: Some(ResourcesConfig {
                    cpu: 8.0,
                    memory_gib: 32.0,
                    parameters: BTreeMap::new(),
                }),
                labels: BTreeMap::new(),
                provisioned_iops: None,
            },
            StaticTarget {
                id: "pg-declared-only".into(),
                aliases: vec![],
                resources: None,
                labels: BTreeMap::new(),
                provisioned_iops: Some(3000),
            },
        ];
        let (targets, names, problems) = resolve_targets(discovered, &declared, "postgres");
        assert!(problems.is_empty());
        let ids: Vec<&str> = targets.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, vec!["pg-declared-only", "pg-found", "pg-main"]);
        assert_eq!(targets[2].resources.cpu_millicores, 8000);
        assert_eq!(names["127.0.0.1:9100"], "pg-main");
        assert_eq!(targets[0].resources.cpu_millicores, 0);
        assert_eq!(
            targets[0].labels[crate::config::PROVISIONED_IOPS_LABEL],
            "3000",
            "provisioned_iops reaches plugins and policies as a label"
        );
    }

    #[test]
    fn sizes_come_from_discovery_labels_unless_declared() {
        let labelled = |id: &str, labels: &[(&str, &str)]| Target {
            id: id.into(),
            technology: "postgres".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            resources: setpoint_core::Resources {
                cpu_millicores: 0,
                memory_bytes: 0,
                replicas: 1,
                parameters: BTreeMap::new(),
            },
        };
        let discovered = vec![
            labelled(
                "pg-a",
                &[
                    ("setpoint_cpu", "4"),
                    ("setpoint_memory_gib", "16"),
                    ("setpoint_param_shared_buffers", "4GB"),
                ],
            ),
            labelled(
                "pg-b",
                &[("setpoint_cpu", "four"), ("setpoint_memory_gib", "16")],
            ),
            labelled("pg-c", &[("setpoint_cpu", "2")]),
            labelled("pg-d", &[("setpoint_cpu", "x")]),
        ];
        use crate::config::{ResourcesConfig, StaticTarget};
        let declared = vec![StaticTarget {
            id: "pg-d".into(),
            aliases: vec![],
            resources: Some(ResourcesConfig {
                cpu: 8.0,
                memory_gib: 32.0,
                parameters: BTreeMap::new(),
            }),
            labels: BTreeMap::new(),
            provisioned_iops: None,
        }];
        let (targets, _, problems) = resolve_targets(discovered, &declared, "postgres");
        assert_eq!(targets[0].resources.cpu_millicores, 4000);
        assert_eq!(targets[0].resources.memory_bytes, 16 << 30);
        assert_eq!(targets[0].resources.parameters["shared_buffers"], "4GB");
        assert_eq!(targets[1].resources.cpu_millicores, 0);
        assert!(
            problems["pg-b"].contains("setpoint_cpu=\"four\""),
            "{problems:?}"
        );
        assert!(
            problems["pg-c"].contains("setpoint_memory_gib is missing"),
            "{problems:?}"
        );
        assert_eq!(targets[3].resources.cpu_millicores, 8000, "declared wins");
        assert!(
            !problems.contains_key("pg-d"),
            "declared sizes make the labels moot"
        );
    }

    #[test]
    fn window_is_whole_steps_and_one_extra_week() {
        let now = DateTime::parse_from_rfc3339("2026-11-23T06:02:31Z")
            .unwrap()
            .with_timezone(&Utc);
        let window = window_for(now, 4, 300);
        assert_eq!(window.end.to_rfc3339(), "2026-11-23T06:00:00+00:00");
        assert_eq!((window.end - window.start).num_days(), 35);
    }
}

#[cfg(test)]
mod properties {
    //! Property test of the observe stage's safety contract: missing, partial, stale or
    //! impossible evidence never lets a target shrink. Whatever each metric's query answers, a
    //! dimension whose metric failed, is missing, or carried a value outside its domain may not
    //! shrink, and a gap in any metric's week lets nothing shrink.

    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::*;

    /// What one metric's answer for the target is like.
    #[derive(Debug, Clone)]
    enum Answer {
        /// Complete and plausible.
        Good,
        /// The query failed for the fleet.
        Failed,
        /// The target has no series.
        Missing,
        /// One sample is outside the metric's domain.
        Impossible(f64),
        /// A stretch of one week (its index back from the end) has no samples: the exporter
        /// was down, the data stale.
        Gap(u32),
    }

    fn answer() -> impl Strategy<Value = Answer> {
        prop_oneof![
            3 => Just(Answer::Good),
            1 => Just(Answer::Failed),
            1 => Just(Answer::Missing),
            1 => prop::sample::select(vec![-5.0, -0.02, 2.5, 1e308]).prop_map(Answer::Impossible),
            1 => (0u32..4).prop_map(Answer::Gap),
        ]
    }

    fn ratio(name: &str) -> MetricSpec {
        MetricSpec {
            name: name.into(),
            query: String::new(),
            aggregation: Aggregation::Mean,
            unit: "ratio".into(),
            description: String::new(),
            capacity: None,
            fallback_query: None,
        }
    }

    /// Hourly samples of a quiet target over the window (a shrink the floor would allow), with
    /// `answer`'s damage done.
    fn series(metric: &str, window: &Window, level: f64, answer: &Answer) -> MetricSeries {
        let step = window.step_seconds as i64 * 1000;
        let (start, end) = (
            window.start.timestamp_millis(),
            window.end.timestamp_millis(),
        );
        let mut timestamps_ms: Vec<i64> = (0..)
            .map(|k| start + k * step)
            .take_while(|t| *t < end)
            .collect();
        if let Answer::Gap(back) = answer {
            // A third of the week: below the least coverage a week needs.
            let week_end = end - i64::from(*back) * setpoint_observe::WEEK_MS;
            let from = week_end - setpoint_observe::WEEK_MS / 3;
            timestamps_ms.retain(|t| !(from..week_end).contains(t));
        }
        let mut values: Vec<f64> = timestamps_ms
            .iter()
            .enumerate()
            .map(|(i, _)| level + 0.05 * ((i % 24) as f64 / 24.0))
            .collect();
        if let Answer::Impossible(v) = answer {
            let i = values.len() / 2;
            values[i] = *v;
        }
        MetricSeries {
            metric: metric.into(),
            timestamps_ms,
            values,
            sample_counts: None,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn missing_stale_or_impossible_evidence_never_lets_a_target_shrink(
            answers in prop::collection::vec(answer(), 3),
            levels in prop::collection::vec(0.02..0.3f64, 3),
        ) {
            let now = Utc.with_ymd_and_hms(2026, 11, 23, 6, 0, 0).unwrap();
            let window = window_for(now, 4, 3600);
            let metrics = [ratio("cpu"), ratio("memory"), ratio("connections")];
            let target = Target {
                id: "pg-a".into(),
                technology: "postgres".into(),
                labels: BTreeMap::new(),
                resources: setpoint_core::Resources {
                    cpu_millicores: 16_000,
                    memory_bytes: 64 << 30,
                    replicas: 1,
                    parameters: BTreeMap::new(),
                },
            };
            let names = HashMap::from([("pg-a".to_string(), "pg-a".to_string())]);
            let mut observation = Observation::default();
            for ((spec, answer), level) in metrics.iter().zip(&answers).zip(&levels) {
                let result = match answer {
                    Answer::Failed => Err(setpoint_observe::ObserveError::Malformed {
                        source_name: "tsdb".into(),
                        metric: spec.name.clone(),
                        message: "truncated".into(),
                    }),
                    Answer::Missing => Ok(setpoint_observe::QueryResult {
                        series: Vec::new(),
                        problems: Vec::new(),
                    }),
                    _ => Ok(setpoint_observe::QueryResult {
                        series: vec![("pg-a".into(), series(&spec.name, &window, *level, answer))],
                        problems: Vec::new(),
                    }),
                };
                observation.answer(spec, result, &names);
            }
            let floor = FloorContext {
                settings: FloorSettings::default(),
                window,
                // Raw samples: the floor's weeks are summarised here, from the same series.
                summarised: false,
            };
            let fleet = observation.into_fleet(vec![target], &names, &metrics, 3, &floor);
            let observed = &fleet.targets[0];
            let floor = &observed.floor;
            let bad = |a: &Answer| !matches!(a, Answer::Good | Answer::Gap(_));
            for (dimension, answer) in [
                (setpoint_core::Dimension::Cpu, &answers[0]),
                (setpoint_core::Dimension::Memory, &answers[1]),
            ] {
                if bad(answer) {
                    prop_assert!(
                        !floor.bound(dimension).unwrap().may_shrink(),
                        "{dimension:?} may shrink after {answer:?}: {floor:?}"
                    );
                }
            }
            if answers.iter().any(|a| matches!(a, Answer::Gap(_))) {
                prop_assert!(!floor.allows_any_shrink(), "a gap, yet {floor:?}");
            }
            // What was wrong is said on the target's row.
            for (spec, answer) in metrics.iter().zip(&answers) {
                if bad(answer) {
                    prop_assert!(
                        observed.issues.iter().any(|i| {
                            i.metric() == Some(spec.name.as_str())
                                || matches!(i, ObserveIssue::NoMatchingSeries { .. })
                        }),
                        "{answer:?} of {} unsaid: {:?}", spec.name, observed.issues
                    );
                }
            }
            // And a quiet target with complete data may shrink: the property is not vacuous.
            if answers[..2].iter().all(|a| matches!(a, Answer::Good))
                && !answers.iter().any(|a| matches!(a, Answer::Gap(_)))
            {
                prop_assert!(floor.allows_any_shrink(), "{floor:?}");
            }
        }
    }
}
