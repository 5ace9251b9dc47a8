//! The engine's own metrics, in the Prometheus text format on `/metrics`.
//!
//! Cycle-derived metrics are updated from each [`CycleReport`] as the cycle ends; the review
//! queue and the reviewers' agreement with the models are read from the store when the
//! cycle ends and at each scrape (a scrape that finds the store busy serves the last values).

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

/// A model of a loop.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    loop_name: String,
    model_version: String,
}

type Histograms = Family<LoopLabels, Histogram, fn() -> Histogram>;

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
    agreement: Family<ModelLabels, Gauge<f64, AtomicU64>>,
    reviews_decided: Family<ModelLabels, Gauge>,
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
            last_targets: Mutex::new(HashMap::new()),
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
}
