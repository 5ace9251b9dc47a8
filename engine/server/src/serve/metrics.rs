//! The engine's own metrics, in the Prometheus text format on `/metrics`.
//!
//! Cycle-derived metrics are updated from each [`CycleReport`] as the cycle ends; the review
//! queue and the reviewers' agreement with the models are read from the store when the
//! cycle ends and at each scrape (a scrape that finds the store busy serves the last values).
//!
//! A fast loop's forecast errors (`setpoint_forecast_mape`, `_mase`, `_interval_coverage`,
//! `_evaluated`) are per service and series, as its last tick left them: a figure the tick
//! does not have (no checked forecast, no seasonal-naive value yet) is not exported, rather
//! than kept at an old value (docs/fast-loop.md, "Forecast error metrics").

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use setpoint_act::ActOutcome;
use setpoint_core::{ReviewItem, ReviewStatus, StageName, Verdict};
use setpoint_runtime::CycleReport;

/// A loop.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoopLabels {
    loop_name: String,
}

/// Targets of a loop's last cycle by verdict and class.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    loop_name: String,
    verdict: String,
    class: String,
}

/// A plugin's failures, by the stage they happened in.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    loop_name: String,
    plugin: String,
    stage: String,
}

/// Actuator operations by actuator and result.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActuatorLabels {
    loop_name: String,
    actuator: String,
    result: String,
}

/// A metric of a loop.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MetricLabels {
    loop_name: String,
    metric: String,
}

/// A series of a service of a fast loop: the metric, with `_<region>` for a region's.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SeriesLabels {
    loop_name: String,
    service: String,
    series: String,
}

/// A model of a loop.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    loop_name: String,
    model_version: String,
}

type Histograms = Family<LoopLabels, Histogram, fn() -> Histogram>;
type Ratios<L> = Family<L, Gauge<f64, AtomicU64>>;

fn cycle_buckets() -> Histogram {
    // 10 ms to ~80 min: a small simulated fleet to a large fleet over a slow TSDB.
    Histogram::new(exponential_buckets(0.01, 2.0, 19))
}

fn policy_buckets() -> Histogram {
    // 50 µs to ~1.6 s; the policy's own time limit is far below the top.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// Every metric `setpoint serve` exposes.
pub struct EngineMetrics {
    registry: Registry,
    cycle_duration: Histograms,
    cycles: Family<LoopLabels, Counter>,
    targets: Family<TargetLabels, Gauge>,
    plugin_errors: Family<PluginLabels, Counter>,
    sandbox_traps: Family<PluginLabels, Counter>,
    policy_duration: Histograms,
    policy_errors: Family<LoopLabels, Counter>,
    evidence_rejected: Family<MetricLabels, Counter>,
    actuator_operations: Family<ActuatorLabels, Counter>,
    review_queue: Family<LoopLabels, Gauge>,
    agreement: Ratios<ModelLabels>,
    reviews_decided: Family<ModelLabels, Gauge>,
    forecast_mape: Ratios<SeriesLabels>,
    forecast_mase: Ratios<SeriesLabels>,
    forecast_coverage: Ratios<SeriesLabels>,
    forecast_evaluated: Family<SeriesLabels, Gauge>,
    /// The series each fast loop's last tick exported forecast errors of, so the next one
    /// can drop those it no longer has.
    last_forecast_series: Mutex<HashMap<String, Vec<SeriesLabels>>>,
    /// The target label sets each loop's last cycle set, so the next one can zero those it
    /// no longer has (a gauge that kept an old count would lie).
    last_targets: Mutex<HashMap<String, Vec<TargetLabels>>>,
}

impl EngineMetrics {
    /// Registers every metric, all at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("setpoint");
        let cycle_duration = Histograms::new_with_constructor(cycle_buckets as fn() -> Histogram);
        registry.register(
            "cycle_duration_seconds",
            "Wall-clock time of a loop's cycle",
            cycle_duration.clone(),
        );
        let cycles = Family::default();
        registry.register("cycles", "Cycles completed", cycles.clone());
        let targets = Family::default();
        registry.register(
            "targets",
            "Targets of the loop's last cycle by verdict and class (none: not reached)",
            targets.clone(),
        );
        let plugin_errors = Family::default();
        registry.register(
            "plugin_errors",
            "Targets whose plugin call failed, by plugin and stage",
            plugin_errors.clone(),
        );
        let sandbox_traps = Family::default();
        registry.register(
            "plugin_sandbox_traps",
            "Plugin calls the sandbox stopped (trap, panic, CPU, time, memory or stack limit)",
            sandbox_traps.clone(),
        );
        let policy_duration = Histograms::new_with_constructor(policy_buckets as fn() -> Histogram);
        registry.register(
            "policy_evaluation_seconds",
            "Time of one target's policy evaluation",
            policy_duration.clone(),
        );
        let policy_errors = Family::default();
        registry.register(
            "policy_errors",
            "Policy evaluations that failed (the target held with policy_error)",
            policy_errors.clone(),
        );
        let evidence_rejected = Family::default();
        registry.register(
            "evidence_rejected",
            "Targets whose values of a metric fell outside its domain (negative, far above 1 for \
             a ratio) and were not taken as evidence",
            evidence_rejected.clone(),
        );
        let actuator_operations = Family::default();
        registry.register(
            "actuator_operations",
            "Operations by actuator and result (dry-run loops: actuator dry-run, result would_execute)",
            actuator_operations.clone(),
        );
        let review_queue = Family::default();
        registry.register(
            "review_queue_depth",
            "Reviews waiting for a human decision",
            review_queue.clone(),
        );
        let agreement = Family::default();
        registry.register(
            "model_reviewer_agreement_ratio",
            "Share of a model's decided recommendations that reviewers approved",
            agreement.clone(),
        );
        let reviews_decided = Family::default();
        registry.register(
            "model_reviews_decided",
            "Reviews of a model's recommendations that a human approved or rejected",
            reviews_decided.clone(),
        );
        let forecast_mape = Family::default();
        registry.register(
            "forecast_mape",
            "A fast loop's forecasts at its horizon: mean absolute percentage error, as a \
             fraction, over the last one to two days",
            forecast_mape.clone(),
        );
        let forecast_mase = Family::default();
        registry.register(
            "forecast_mase",
            "A fast loop's forecasts at its horizon: mean absolute error over that of the \
             seasonal-naive forecast (the value a day before), over the last one to two days",
            forecast_mase.clone(),
        );
        let forecast_coverage = Family::default();
        registry.register(
            "forecast_interval_coverage",
            "A fast loop's forecasts at its horizon: share of actual values inside the \
             prediction interval, over the last one to two days",
            forecast_coverage.clone(),
        );
        let forecast_evaluated = Family::default();
        registry.register(
            "forecast_evaluated",
            "A fast loop's forecasts checked against what followed, over the last one to two days",
            forecast_evaluated.clone(),
        );
        Self {
            registry,
            cycle_duration,
            cycles,
            targets,
            plugin_errors,
            sandbox_traps,
            policy_duration,
            policy_errors,
            evidence_rejected,
            actuator_operations,
            review_queue,
            agreement,
            reviews_decided,
            forecast_mape,
            forecast_mase,
            forecast_coverage,
            forecast_evaluated,
            last_targets: Mutex::new(HashMap::new()),
            last_forecast_series: Mutex::new(HashMap::new()),
        }
    }

    /// Records what a cycle did.
    pub fn observe_cycle(&self, report: &CycleReport) {
        let loop_labels = LoopLabels {
            loop_name: report.loop_name.clone(),
        };
        self.cycle_duration
            .get_or_create(&loop_labels)
            .observe(report.duration_seconds);
        self.cycles.get_or_create(&loop_labels).inc();
        // A plugin's error series exist at zero from its first cycle: "no errors", not "no data".
        for stage in ["features", "propose"] {
            let labels = PluginLabels {
                loop_name: report.loop_name.clone(),
                plugin: report.plugin.clone(),
                stage: stage.to_string(),
            };
            let _ = self.plugin_errors.get_or_create(&labels);
            let _ = self.sandbox_traps.get_or_create(&labels);
        }
        let mut counts: BTreeMap<(String, String), i64> = BTreeMap::new();
        for row in &report.rows {
            let verdict = row.verdict.map_or("none".to_string(), |v| v.to_string());
            let class = row.class.map_or("none".to_string(), |c| c.to_string());
            *counts.entry((verdict, class)).or_default() += 1;
            if let Some(seconds) = row.policy_seconds {
                self.policy_duration
                    .get_or_create(&loop_labels)
                    .observe(seconds);
            }
            if row.policy_error {
                self.policy_errors.get_or_create(&loop_labels).inc();
            }
            for metric in &row.rejected_evidence {
                let labels = MetricLabels {
                    loop_name: report.loop_name.clone(),
                    metric: metric.clone(),
                };
                self.evidence_rejected.get_or_create(&labels).inc();
            }
            if let Some(stage @ (StageName::Features | StageName::Propose)) = row.error_stage {
                let labels = PluginLabels {
                    loop_name: report.loop_name.clone(),
                    plugin: report.plugin.clone(),
                    stage: serde_json::to_value(stage)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                };
                self.plugin_errors.get_or_create(&labels).inc();
                if row.sandbox_trap {
                    self.sandbox_traps.get_or_create(&labels).inc();
                }
            }
            self.observe_operations(&report.loop_name, row);
        }
        let mut last = self
            .last_targets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let previous = last.remove(&report.loop_name).unwrap_or_default();
        for labels in &previous {
            self.targets.get_or_create(labels).set(0);
        }
        let mut now_set = Vec::new();
        for ((verdict, class), count) in counts {
            let labels = TargetLabels {
                loop_name: report.loop_name.clone(),
                verdict,
                class,
            };
            self.targets.get_or_create(&labels).set(count);
            now_set.push(labels);
        }
        last.insert(report.loop_name.clone(), now_set);
        drop(last);
        self.observe_forecast_errors(report);
    }

    /// Sets a fast loop's forecast error gauges from its tick's rows, and drops the series of
    /// its last tick that this one has no figure for. A weekly loop has none to set or drop.
    fn observe_forecast_errors(&self, report: &CycleReport) {
        let mut last = self
            .last_forecast_series
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let previous = last.remove(&report.loop_name).unwrap_or_default();
        if previous.is_empty() && report.forecast_errors.is_empty() {
            return;
        }
        let ratios = [
            &self.forecast_mape,
            &self.forecast_mase,
            &self.forecast_coverage,
        ];
        let mut now_set = Vec::with_capacity(report.forecast_errors.len());
        for row in &report.forecast_errors {
            let labels = SeriesLabels {
                loop_name: report.loop_name.clone(),
                service: row.service.clone(),
                series: row.series(),
            };
            for (family, value) in ratios.iter().zip([row.mape, row.mase, row.coverage]) {
                match value.filter(|v| v.is_finite()) {
                    Some(v) => {
                        family.get_or_create(&labels).set(v);
                    }
                    None => {
                        family.remove(&labels);
                    }
                }
            }
            self.forecast_evaluated
                .get_or_create(&labels)
                .set(i64::try_from(row.count).unwrap_or(i64::MAX));
            now_set.push(labels);
        }
        let kept: std::collections::HashSet<&SeriesLabels> = now_set.iter().collect();
        for labels in previous.iter().filter(|l| !kept.contains(l)) {
            for family in ratios {
                family.remove(labels);
            }
            self.forecast_evaluated.remove(labels);
        }
        last.insert(report.loop_name.clone(), now_set);
    }

    fn observe_operations(&self, loop_name: &str, row: &setpoint_runtime::TargetRow) {
        let count = |actuator: &str, result: &str, n: usize| {
            self.actuator_operations
                .get_or_create(&ActuatorLabels {
                    loop_name: loop_name.to_string(),
                    actuator: actuator.to_string(),
                    result: result.to_string(),
                })
                .inc_by(n as u64);
        };
        match &row.outcome {
            Some(ActOutcome::Executed { results, .. }) => {
                for r in results {
                    let status = serde_json::to_value(&r.status)
                        .ok()
                        .and_then(|v| v["status"].as_str().map(str::to_string))
                        .unwrap_or_else(|| "unknown".to_string());
                    count(&r.actuator, &status, 1);
                }
            }
            Some(ActOutcome::WouldExecute { operations }) => {
                count("dry-run", "would_execute", operations.len());
            }
            _ => {}
        }
        // A plan that was started and did not finish (or an act stage that failed) is a
        // failed operation; which actuator failed is in the journal.
        let act_failed = row.error.is_some()
            && (row.error_stage == Some(StageName::Act)
                || (row.error_stage.is_none() && row.verdict == Some(Verdict::Act)));
        if act_failed {
            count("any", "failed", 1);
        }
    }

    /// Sets the review queue depth and the reviewers' agreement from the store's reviews.
    pub fn observe_reviews(&self, reviews: &[ReviewItem], now: chrono::DateTime<chrono::Utc>) {
        let mut depth: BTreeMap<String, i64> = BTreeMap::new();
        for r in reviews {
            let pending = r.status == ReviewStatus::Pending && r.expires_at >= now;
            *depth.entry(r.loop_name.clone()).or_default() += i64::from(pending);
        }
        for (loop_name, n) in depth {
            self.review_queue
                .get_or_create(&LoopLabels { loop_name })
                .set(n);
        }
        for ((loop_name, model_version), (agreed, decided)) in
            crate::review::agreement_by_model(reviews)
        {
            let labels = ModelLabels {
                loop_name,
                model_version,
            };
            self.reviews_decided
                .get_or_create(&labels)
                .set(decided as i64);
            if decided > 0 {
                self.agreement
                    .get_or_create(&labels)
                    .set(agreed as f64 / decided as f64);
            }
        }
    }

    /// Makes every loop's series exist at zero before its first cycle, so dashboards and
    /// alerts see the loop rather than no data.
    pub fn declare_loops<'a>(&self, loops: impl IntoIterator<Item = (&'a str, bool)>) {
        for (name, dry_run) in loops {
            if dry_run {
                let _ = self.actuator_operations.get_or_create(&ActuatorLabels {
                    loop_name: name.to_string(),
                    actuator: "dry-run".to_string(),
                    result: "would_execute".to_string(),
                });
            }
            let labels = LoopLabels {
                loop_name: name.to_string(),
            };
            let _ = self.cycles.get_or_create(&labels);
            let _ = self.policy_errors.get_or_create(&labels);
            let _ = self.review_queue.get_or_create(&labels);
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(%error, "cannot encode the metrics");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn rejected_evidence_is_counted_per_loop_and_metric() {
        let report: CycleReport = serde_json::from_value(serde_json::json!({
            "loop_name": "pg", "cycle": 1, "now": "2026-11-23T06:00:00Z", "mode": "dry-run",
            "source": "tsdb", "plugin": "postgres", "queries": 16, "degraded": [],
            "duration_seconds": 1.0, "interrupted": false,
            "rows": [
                {"target": "db-1", "technology": "postgres", "class": null, "confidence": null,
                 "class_reason": "insufficient_data", "stable_cycles": 0, "verdict": "hold",
                 "change": null, "reason": null, "outcome": null, "error": null,
                 "rejected_evidence": ["cpu", "memory"]},
                {"target": "db-2", "technology": "postgres", "class": null, "confidence": null,
                 "class_reason": "insufficient_data", "stable_cycles": 0, "verdict": "hold",
                 "change": null, "reason": null, "outcome": null, "error": null,
                 "rejected_evidence": ["cpu"]}
            ]
        }))
        .unwrap();
        let metrics = EngineMetrics::new();
        metrics.observe_cycle(&report);
        let text = metrics.encode();
        assert!(
            text.contains(r#"setpoint_evidence_rejected_total{loop_name="pg",metric="cpu"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"setpoint_evidence_rejected_total{loop_name="pg",metric="memory"} 1"#),
            "{text}"
        );
    }

    fn fast_report(forecast_errors: serde_json::Value) -> CycleReport {
        serde_json::from_value(serde_json::json!({
            "loop_name": "services", "cycle": 7, "now": "2026-11-24T09:00:00Z",
            "mode": "dry-run", "source": "prometheus", "plugin": "control policy",
            "queries": 8, "degraded": [], "duration_seconds": 0.5, "interrupted": false,
            "rows": [], "forecast_errors": forecast_errors
        }))
        .unwrap()
    }

    #[test]
    fn forecast_errors_are_exported_per_service_and_series() {
        let metrics = EngineMetrics::new();
        metrics.observe_cycle(&fast_report(serde_json::json!([
            {"service": "checkout", "metric": "request_rate", "horizon_seconds": 900,
             "count": 40, "mae": 3.0, "mape": 0.05, "mase": 0.5, "coverage": 0.75},
            {"service": "checkout", "metric": "latency_p99_ms", "region": "primary",
             "horizon_seconds": 900, "count": 3, "mae": 1.0, "mape": 0.25, "mase": null,
             "coverage": null}
        ])));
        let text = metrics.encode();
        for line in [
            r#"setpoint_forecast_mape{loop_name="services",service="checkout",series="request_rate"} 0.05"#,
            r#"setpoint_forecast_mase{loop_name="services",service="checkout",series="request_rate"} 0.5"#,
            r#"setpoint_forecast_interval_coverage{loop_name="services",service="checkout",series="request_rate"} 0.75"#,
            r#"setpoint_forecast_evaluated{loop_name="services",service="checkout",series="request_rate"} 40"#,
            r#"setpoint_forecast_mape{loop_name="services",service="checkout",series="latency_p99_ms_primary"} 0.25"#,
            r#"setpoint_forecast_evaluated{loop_name="services",service="checkout",series="latency_p99_ms_primary"} 3"#,
        ] {
            assert!(text.contains(line), "no {line} in\n{text}");
        }
        // Absent figures are not exported, not zero.
        for absent in [
            r#"setpoint_forecast_mase{loop_name="services",service="checkout",series="latency_p99_ms_primary"}"#,
            r#"setpoint_forecast_interval_coverage{loop_name="services",service="checkout",series="latency_p99_ms_primary"}"#,
        ] {
            assert!(!text.contains(absent), "{absent} in\n{text}");
        }

        // A series the next tick has no figures for is dropped; a weekly loop's cycle
        // touches none of it.
        metrics.observe_cycle(&fast_report(serde_json::json!([
            {"service": "checkout", "metric": "request_rate", "horizon_seconds": 900,
             "count": 41, "mae": 3.0, "mape": 0.04, "mase": null, "coverage": 0.8}
        ])));
        let mut weekly = fast_report(serde_json::json!([]));
        weekly.loop_name = "pg".to_string();
        metrics.observe_cycle(&weekly);
        let text = metrics.encode();
        assert!(
            text.contains(r#"setpoint_forecast_mape{loop_name="services",service="checkout",series="request_rate"} 0.04"#),
            "{text}"
        );
        assert!(
            !text.contains(r#"setpoint_forecast_mase{loop_name="services""#),
            "{text}"
        );
        assert!(!text.contains("latency_p99_ms_primary"), "{text}");
    }
}
