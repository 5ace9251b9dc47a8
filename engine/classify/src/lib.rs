//! The classify stage: `scale_down | remain | scale_up` with a confidence and an explanation.
//!
//! Phase 1 is [`BootstrapHeuristics`], the rules of the design, used until enough labelled
//! outcomes exist to train a model. Every classifier says which rule or model decided and which
//! feature values pushed it there, because operators act on a recommendation only when they can
//! see why it was made.

use serde::{Deserialize, Serialize};
use setpoint_core::{Class, Classification, Evidence, Explanation, FeatureVector};

/// Anything that classifies a target from its feature vector.
pub trait Classifier: Send + Sync {
    /// Name recorded with every classification.
    fn name(&self) -> &str;
    /// Version of the rules or the trained model.
    fn version(&self) -> &str;
    /// Classifies one target. Never fails: missing data yields `remain` with `insufficient_data`.
    fn classify(&self, features: &FeatureVector) -> Classification;
}

/// Thresholds of the bootstrap heuristics, as utilisation ratios (0..=1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// Scale down only when CPU is below this in every week.
    pub scale_down_cpu_below: f64,
    /// …and memory is below this in every week.
    pub scale_down_memory_below: f64,
    /// Scale up when CPU is above this in every week.
    pub scale_up_cpu_above: f64,
    /// Scale up when active connections reach this share of the maximum in any week.
    pub scale_up_connections_at_least: f64,
    /// Scale up when memory is at or above this share in every week: a cache full to its
    /// `maxmemory`, a heap at its limit.
    pub scale_up_memory_at_least: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            scale_down_cpu_below: 0.40,
            scale_down_memory_below: 0.65,
            scale_up_cpu_above: 0.85,
            scale_up_connections_at_least: 0.95,
            scale_up_memory_at_least: 0.95,
        }
    }
}

impl Thresholds {
    /// Checks that every threshold is a ratio and that the scale-down and scale-up bands do not
    /// overlap; returns every problem found.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        for (name, value) in [
            ("scale_down_cpu_below", self.scale_down_cpu_below),
            ("scale_down_memory_below", self.scale_down_memory_below),
            ("scale_up_cpu_above", self.scale_up_cpu_above),
            (
                "scale_up_connections_at_least",
                self.scale_up_connections_at_least,
            ),
            ("scale_up_memory_at_least", self.scale_up_memory_at_least),
        ] {
            if !(0.0..=1.0).contains(&value) {
                problems.push(format!(
                    "{name} must be a ratio between 0 and 1, got {value}"
                ));
            }
        }
        if self.scale_down_cpu_below >= self.scale_up_cpu_above {
            problems.push(format!(
                "scale_down_cpu_below ({}) must be below scale_up_cpu_above ({})",
                self.scale_down_cpu_below, self.scale_up_cpu_above
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// The bootstrap heuristics of the design, evaluated in this order:
///
/// 1. any CPU, memory or connection week missing → `remain` (`insufficient_data`);
///    connections count only for technologies whose plugin declares them (`connections_w*` in
///    the vector): a Kafka or Elasticsearch cluster has no connection limit to saturate;
/// 2. CPU above the scale-up threshold in all weeks (`cpu_saturated`), memory at or above its
///    threshold in all weeks (`memory_pressure`: a full cache, a heap at its limit), or
///    connections at or above their threshold in any week (`connection_pressure`) → `scale_up`;
/// 3. CPU and memory below their scale-down thresholds in all weeks → `scale_down`
///    (`low_utilisation`);
/// 4. otherwise `remain` (`no_threshold_crossed`): the conservative default.
///
/// Scale-up is checked before scale-down so that a starved target is never shrunk.
#[derive(Debug, Clone)]
pub struct BootstrapHeuristics {
    thresholds: Thresholds,
    weeks: u32,
}

/// Confidence given to `remain` when no rule fired: moderate, since "no evidence to act" is
/// itself weak evidence.
const REMAIN_CONFIDENCE: f64 = 0.6;

impl BootstrapHeuristics {
    /// Number of weekly features per metric the rules look at (W-4..W-1).
    pub const WEEKS: u32 = 4;

    /// Heuristics with the given thresholds over four weeks.
    pub fn new(thresholds: Thresholds) -> Self {
        Self {
            thresholds,
            weeks: Self::WEEKS,
        }
    }

    /// The thresholds in force.
    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }

    fn names(&self, metric: &str) -> Vec<String> {
        (1..=self.weeks)
            .rev()
            .map(|week| format!("{metric}_w{week}"))
            .collect()
    }

    fn classification(
        &self,
        class: Class,
        confidence: f64,
        code: &str,
        rule: String,
        evidence: Vec<Evidence>,
    ) -> Classification {
        Classification {
            class,
            confidence: confidence.clamp(0.0, 1.0),
            model: self.name().to_string(),
            model_version: self.version().to_string(),
            explanation: Explanation {
                code: code.to_string(),
                rule,
                evidence,
            },
        }
    }
}

/// One metric's weekly values, oldest week first.
struct Weeks {
    names: Vec<String>,
    values: Vec<f64>,
}

impl Weeks {
    fn max(&self) -> f64 {
        self.values.iter().copied().fold(f64::MIN, f64::max)
    }

    fn evidence(&self, test: &str, held: impl Fn(f64) -> bool) -> Vec<Evidence> {
        self.names
            .iter()
            .zip(&self.values)
            .map(|(name, &value)| Evidence {
                feature: name.clone(),
                value: Some(value),
                test: test.to_string(),
                held: held(value),
            })
            .collect()
    }
}

fn pct(value: f64) -> String {
    format!("{:.0} %", value * 100.0)
}

/// Mean of per-week margins, each normalised by the threshold's room, in 0..=1.
fn mean_margin(values: &[f64], margin: impl Fn(f64) -> f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values
        .iter()
        .map(|&v| margin(v).clamp(0.0, 1.0))
        .sum::<f64>()
        / values.len() as f64
}

impl Classifier for BootstrapHeuristics {
    fn name(&self) -> &str {
        "bootstrap-heuristics"
    }

    fn version(&self) -> &str {
        "1"
    }

    fn classify(&self, features: &FeatureVector) -> Classification {
        let t = &self.thresholds;
        let mut missing = Vec::new();
        let mut weeks = |metric: &str| -> Option<Weeks> {
            let names = self.names(metric);
            let mut values = Vec::with_capacity(names.len());
            for name in &names {
                match features.value(name) {
                    Some(v) if v.is_finite() => values.push(v),
                    _ => missing.push(Evidence::missing(name, features)),
                }
            }
            (values.len() == names.len()).then_some(Weeks { names, values })
        };
        // A plugin declares every feature of its schema, missing ones with no value; so a
        // family absent by name is not part of the technology. An empty vector is no data.
        let connection_names = self.names("connections");
        let declares_connections = features.features.is_empty()
            || features
                .features
                .iter()
                .any(|f| connection_names.contains(&f.name));
        let cpu = weeks("cpu");
        let memory = weeks("memory");
        let connections = if declares_connections {
            weeks("connections").map(Some)
        } else {
            Some(None)
        };
        let (Some(cpu), Some(memory), Some(connections)) = (cpu, memory, connections) else {
            let families = if declares_connections { 3 } else { 2 };
            let wanted = families * self.weeks as usize;
            let present = wanted.saturating_sub(missing.len());
            let coverage = present as f64 / wanted as f64;
            let rule = format!(
                "insufficient data: {} of {wanted} weekly {} features missing ({}); never scale on missing data",
                missing.len(),
                if declares_connections {
                    "CPU/memory/connection"
                } else {
                    "CPU/memory"
                },
                missing
                    .iter()
                    .map(|e| e.feature.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            // The less data there is, the surer we are that nothing should change.
            let confidence = REMAIN_CONFIDENCE + (1.0 - REMAIN_CONFIDENCE) * (1.0 - coverage);
            return self.classification(
                Class::Remain,
                confidence,
                "insufficient_data",
                rule,
                missing,
            );
        };

        // 2. Scale up.
        let cpu_hot = cpu.values.iter().all(|&v| v > t.scale_up_cpu_above);
        if cpu_hot {
            let room = (1.0 - t.scale_up_cpu_above).max(f64::EPSILON);
            let margin = mean_margin(&cpu.values, |v| (v - t.scale_up_cpu_above) / room);
            return self.classification(
                Class::ScaleUp,
                0.7 + 0.3 * margin,
                "cpu_saturated",
                format!(
                    "CPU above {} in all {} weeks (lowest {})",
                    pct(t.scale_up_cpu_above),
                    self.weeks,
                    pct(cpu.values.iter().copied().fold(f64::MAX, f64::min))
                ),
                cpu.evidence(&format!("> {:.2}", t.scale_up_cpu_above), |v| {
                    v > t.scale_up_cpu_above
                }),
            );
        }
        let memory_full = memory
            .values
            .iter()
            .all(|&v| v >= t.scale_up_memory_at_least);
        if memory_full {
            let room = (1.0 - t.scale_up_memory_at_least).max(f64::EPSILON);
            let margin = mean_margin(&memory.values, |v| {
                0.5 + 0.5 * (v - t.scale_up_memory_at_least) / room
            });
            return self.classification(
                Class::ScaleUp,
                0.7 + 0.3 * margin,
                "memory_pressure",
                format!(
                    "memory at or above {} in all {} weeks (lowest {})",
                    pct(t.scale_up_memory_at_least),
                    self.weeks,
                    pct(memory.values.iter().copied().fold(f64::MAX, f64::min))
                ),
                memory.evidence(&format!(">= {:.2}", t.scale_up_memory_at_least), |v| {
                    v >= t.scale_up_memory_at_least
                }),
            );
        }
        let pressured: Vec<f64> = connections
            .iter()
            .flat_map(|c| c.values.iter().copied())
            .filter(|&v| v >= t.scale_up_connections_at_least)
            .collect();
        if let Some(connections) = connections.as_ref().filter(|_| !pressured.is_empty()) {
            let room = (1.0 - t.scale_up_connections_at_least).max(f64::EPSILON);
            let margin = mean_margin(&pressured, |v| {
                // At the threshold already means pressure; more weeks and more headroom used
                // both raise confidence.
                0.5 + 0.5 * (v - t.scale_up_connections_at_least) / room
            });
            let share = pressured.len() as f64 / self.weeks as f64;
            return self.classification(
                Class::ScaleUp,
                0.7 + 0.3 * (0.5 * margin + 0.5 * share),
                "connection_pressure",
                format!(
                    "active connections at or above {} of max_connections in {} of {} weeks (peak {})",
                    pct(t.scale_up_connections_at_least),
                    pressured.len(),
                    self.weeks,
                    pct(connections.max())
                ),
                connections.evidence(&format!(">= {:.2}", t.scale_up_connections_at_least), |v| {
                    v >= t.scale_up_connections_at_least
                }),
            );
        }

        // 3. Scale down.
        let cpu_low = cpu.values.iter().all(|&v| v < t.scale_down_cpu_below);
        let memory_low = memory.values.iter().all(|&v| v < t.scale_down_memory_below);
        if cpu_low && memory_low {
            let cpu_margin = mean_margin(&cpu.values, |v| {
                (t.scale_down_cpu_below - v) / t.scale_down_cpu_below.max(f64::EPSILON)
            });
            let memory_margin = mean_margin(&memory.values, |v| {
                (t.scale_down_memory_below - v) / t.scale_down_memory_below.max(f64::EPSILON)
            });
            let mut evidence = cpu.evidence(&format!("< {:.2}", t.scale_down_cpu_below), |v| {
                v < t.scale_down_cpu_below
            });
            evidence.extend(
                memory.evidence(&format!("< {:.2}", t.scale_down_memory_below), |v| {
                    v < t.scale_down_memory_below
                }),
            );
            return self.classification(
                Class::ScaleDown,
                0.7 + 0.3 * (cpu_margin + memory_margin) / 2.0,
                "low_utilisation",
                format!(
                    "CPU below {} (max {}) and memory below {} (max {}) in all {} weeks",
                    pct(t.scale_down_cpu_below),
                    pct(cpu.max()),
                    pct(t.scale_down_memory_below),
                    pct(memory.max()),
                    self.weeks
                ),
                evidence,
            );
        }

        // 4. Remain.
        let hot_weeks = cpu
            .values
            .iter()
            .filter(|&&v| v > t.scale_up_cpu_above)
            .count();
        let why_not_down = if !cpu_low {
            format!(
                "CPU max {} ≥ {}",
                pct(cpu.max()),
                pct(t.scale_down_cpu_below)
            )
        } else {
            format!(
                "memory max {} ≥ {}",
                pct(memory.max()),
                pct(t.scale_down_memory_below)
            )
        };
        let connections_clause = match &connections {
            Some(c) => format!(
                ", connections peak {} < {}",
                pct(c.max()),
                pct(t.scale_up_connections_at_least)
            ),
            None => String::new(),
        };
        let rule = format!(
            "no bootstrap threshold crossed: CPU above {} in {hot_weeks} of {} weeks (max {}){connections_clause}, too busy to scale down ({why_not_down})",
            pct(t.scale_up_cpu_above),
            self.weeks,
            pct(cpu.max()),
        );
        let mut evidence = cpu.evidence(&format!("<= {:.2}", t.scale_up_cpu_above), |v| {
            v <= t.scale_up_cpu_above
        });
        if let Some(connections) = &connections {
            evidence.extend(
                connections.evidence(&format!("< {:.2}", t.scale_up_connections_at_least), |v| {
                    v < t.scale_up_connections_at_least
                }),
            );
        }
        evidence.extend(
            memory.evidence(&format!("< {:.2}", t.scale_down_memory_below), |v| {
                v < t.scale_down_memory_below
            }),
        );
        self.classification(
            Class::Remain,
            REMAIN_CONFIDENCE,
            "no_threshold_crossed",
            rule,
            evidence,
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use setpoint_core::Feature;

    /// Weekly values in percent, W-4..W-1; `None` is a missing week.
    struct Case {
        name: &'static str,
        cpu: [Option<f64>; 4],
        memory: [Option<f64>; 4],
        connections: [Option<f64>; 4],
        thresholds: Thresholds,
        class: Class,
        code: &'static str,
    }

    fn s(values: [f64; 4]) -> [Option<f64>; 4] {
        values.map(Some)
    }

    fn features(case: &Case) -> FeatureVector {
        let mut out = Vec::new();
        for (metric, values) in [
            ("cpu", case.cpu),
            ("memory", case.memory),
            ("connections", case.connections),
            ("iops", s([30.0; 4])),
        ] {
            for (i, value) in values.iter().enumerate() {
                out.push(Feature {
                    name: format!("{metric}_w{}", 4 - i),
                    value: value.map(|v| v / 100.0),
                    coverage: if value.is_some() { 1.0 } else { 0.1 },
                });
            }
        }
        FeatureVector { features: out }
    }

    fn cases() -> Vec<Case> {
        let d = Thresholds::default;
        vec![
            Case {
                name: "instance A, the reporting DB",
                cpu: s([11.0, 9.0, 13.0, 10.0]),
                memory: s([58.0, 61.0, 55.0, 57.0]),
                connections: s([22.0, 19.0, 24.0, 21.0]),
                thresholds: d(),
                class: Class::ScaleDown,
                code: "low_utilisation",
            },
            Case {
                name: "instance B, the transactional DB: climbing but no threshold crossed",
                cpu: s([61.0, 66.0, 71.0, 74.0]),
                memory: s([71.0, 74.0, 77.0, 81.0]),
                connections: s([74.0, 79.0, 83.0, 89.0]),
                thresholds: d(),
                class: Class::Remain,
                code: "no_threshold_crossed",
            },
            Case {
                name: "saturated for weeks",
                cpu: s([88.0, 90.0, 91.0, 93.0]),
                memory: s([80.0; 4]),
                connections: s([60.0; 4]),
                thresholds: d(),
                class: Class::ScaleUp,
                code: "cpu_saturated",
            },
            Case {
                name: "hot in only three weeks",
                cpu: s([80.0, 90.0, 91.0, 93.0]),
                memory: s([80.0; 4]),
                connections: s([60.0; 4]),
                thresholds: d(),
                class: Class::Remain,
                code: "no_threshold_crossed",
            },
            Case {
                name: "CPU exactly at the scale-up threshold is not above it",
                cpu: s([85.0, 90.0, 91.0, 93.0]),
                memory: s([80.0; 4]),
                connections: s([60.0; 4]),
                thresholds: d(),
                class: Class::Remain,
                code: "no_threshold_crossed",
            },
            Case {
                name: "connections at 95 % in one week",
                cpu: s([50.0; 4]),
                memory: s([60.0; 4]),
                connections: s([80.0, 85.0, 90.0, 95.0]),
                thresholds: d(),
                class: Class::ScaleUp,
                code: "connection_pressure",
            },
            Case {
                name: "connections just under 95 %",
                cpu: s([50.0; 4]),
                memory: s([60.0; 4]),
                connections: s([94.9; 4]),
                thresholds: d(),
                class: Class::Remain,
                code: "no_threshold_crossed",
            },
            Case {
                name: "connection pressure wins over low CPU",
                cpu: s([10.0; 4]),
                memory: s([30.0; 4]),
                connections: s([97.0; 4]),
                thresholds: d(),
                class: Class::ScaleUp,
                code: "connection_pressure",
            },
            Case {
                name: "CPU exactly at the scale-down threshold is not below it",
                cpu: s([40.0, 10.0, 10.0, 10.0]),
                memory: s([50.0; 4]),
                connections: s([20.0; 4]),
                thresholds: d(),
                class: Class::Remain,
                code: "no_threshold_crossed",
            },
            Case {
                name: "memory exactly at the scale-down threshold is not below it",
                cpu: s([10.0; 4]),
                memory: s([50.0, 50.0, 65.0, 50.0]),
                connections: s([20.0; 4]),
                thresholds: d(),
                class: Class::Remain,
                code: "no_threshold_crossed",
            },
            Case {
                name: "a missing week means remain, never scale down",
                cpu: [Some(10.0), Some(10.0), None, Some(10.0)],
                memory: s([50.0; 4]),
                connections: s([20.0; 4]),
                thresholds: d(),
                class: Class::Remain,
                code: "insufficient_data",
            },
            Case {
                name: "missing memory with low CPU never scales down",
                cpu: s([5.0; 4]),
                memory: [None; 4],
                connections: s([20.0; 4]),
                thresholds: d(),
                class: Class::Remain,
                code: "insufficient_data",
            },
            Case {
                name: "missing connections with saturated CPU still waits for data",
                cpu: s([95.0; 4]),
                memory: s([80.0; 4]),
                connections: [None, None, Some(50.0), Some(50.0)],
                thresholds: d(),
                class: Class::Remain,
                code: "insufficient_data",
            },
            Case {
                name: "custom thresholds: stricter scale-down",
                cpu: s([11.0, 9.0, 13.0, 10.0]),
                memory: s([58.0, 61.0, 55.0, 57.0]),
                connections: s([22.0; 4]),
                thresholds: Thresholds {
                    scale_down_memory_below: 0.50,
                    ..d()
                },
                class: Class::Remain,
                code: "no_threshold_crossed",
            },
            Case {
                name: "custom thresholds: lower scale-up CPU",
                cpu: s([61.0, 66.0, 71.0, 74.0]),
                memory: s([71.0; 4]),
                connections: s([74.0; 4]),
                thresholds: Thresholds {
                    scale_up_cpu_above: 0.60,
                    ..d()
                },
                class: Class::ScaleUp,
                code: "cpu_saturated",
            },
            Case {
                name: "a cache full to its maxmemory every week",
                cpu: s([35.0, 33.0, 36.0, 34.0]),
                memory: s([99.0, 98.5, 99.2, 99.0]),
                connections: s([30.0, 28.0, 31.0, 30.0]),
                thresholds: d(),
                class: Class::ScaleUp,
                code: "memory_pressure",
            },
            Case {
                name: "memory full in three weeks of four is not pressure",
                cpu: s([35.0, 33.0, 36.0, 34.0]),
                memory: s([99.0, 80.0, 99.2, 99.0]),
                connections: s([30.0, 28.0, 31.0, 30.0]),
                thresholds: d(),
                class: Class::Remain,
                code: "no_threshold_crossed",
            },
        ]
    }

    #[test]
    fn table() {
        for case in cases() {
            let classifier = BootstrapHeuristics::new(case.thresholds.clone());
            let c = classifier.classify(&features(&case));
            assert_eq!(c.class, case.class, "{}: {c:#?}", case.name);
            assert_eq!(c.explanation.code, case.code, "{}: {c:#?}", case.name);
            assert!((0.0..=1.0).contains(&c.confidence), "{}", case.name);
            assert!(!c.explanation.evidence.is_empty(), "{}", case.name);
            assert_eq!(c.model, "bootstrap-heuristics");
        }
    }

    #[test]
    fn instance_a_is_confidently_scale_down() {
        let case = &cases()[0];
        let c = BootstrapHeuristics::new(Thresholds::default()).classify(&features(case));
        assert!(
            c.confidence > 0.75 && c.confidence < 0.95,
            "{}",
            c.confidence
        );
        assert!(c.explanation.evidence.iter().all(|e| e.held));
    }

    #[test]
    fn instance_b_names_no_crossed_threshold() {
        let case = &cases()[1];
        let c = BootstrapHeuristics::new(Thresholds::default()).classify(&features(case));
        assert!(
            c.explanation
                .rule
                .starts_with("no bootstrap threshold crossed")
        );
        assert!(
            c.explanation.rule.contains("in 0 of 4 weeks"),
            "{}",
            c.explanation.rule
        );
        assert!(
            c.explanation.rule.contains("peak 89 %"),
            "{}",
            c.explanation.rule
        );
    }

    #[test]
    fn insufficient_data_lists_what_is_missing() {
        let case = &cases()[10];
        let c = BootstrapHeuristics::new(Thresholds::default()).classify(&features(case));
        assert_eq!(c.explanation.evidence.len(), 1);
        assert_eq!(c.explanation.evidence[0].feature, "cpu_w2");
        assert!(c.explanation.rule.contains("cpu_w2"));
    }

    #[test]
    fn insufficient_data_confidence_follows_coverage() {
        let classifier = BootstrapHeuristics::new(Thresholds::default());
        let one_missing = classifier.classify(&features(&cases()[10]));
        let all_memory_missing = classifier.classify(&features(&cases()[11]));
        // Remain is the safe answer either way; the less data, the less there is to argue with it.
        assert!(one_missing.confidence >= 0.6 && one_missing.confidence <= 1.0);
        assert!(all_memory_missing.confidence > one_missing.confidence);
        assert!(all_memory_missing.confidence <= 1.0);
        assert_eq!(all_memory_missing.explanation.evidence.len(), 4);
        assert!(
            all_memory_missing
                .explanation
                .evidence
                .iter()
                .all(|e| !e.held && e.value.is_none())
        );
        let nothing = classifier.classify(&FeatureVector::default());
        assert_eq!(nothing.class, Class::Remain);
        assert_eq!(nothing.explanation.code, "insufficient_data");
        assert_eq!(nothing.explanation.evidence.len(), 12);
    }

    /// Kafka and Elasticsearch declare no connection limit: CPU and memory decide alone, and
    /// a missing CPU or memory week still means remain.
    #[test]
    fn technologies_without_connections_classify_on_cpu_and_memory() {
        let vector = |cpu: [Option<f64>; 4], memory: [f64; 4]| {
            let mut out = Vec::new();
            for (metric, values) in [("cpu", cpu), ("memory", memory.map(Some))] {
                for (i, value) in values.iter().enumerate() {
                    out.push(Feature {
                        name: format!("{metric}_w{}", 4 - i),
                        value: *value,
                        coverage: if value.is_some() { 1.0 } else { 0.0 },
                    });
                }
            }
            out.push(Feature {
                name: "lag_w1".into(),
                value: Some(1e6),
                coverage: 1.0,
            });
            FeatureVector { features: out }
        };
        let classifier = BootstrapHeuristics::new(Thresholds::default());
        let idle = classifier.classify(&vector(s([0.1; 4]), [0.4; 4]));
        assert_eq!(idle.class, Class::ScaleDown);
        let hot = classifier.classify(&vector(s([0.9; 4]), [0.7; 4]));
        assert_eq!(hot.class, Class::ScaleUp);
        let mid = classifier.classify(&vector(s([0.5; 4]), [0.7; 4]));
        assert_eq!(mid.class, Class::Remain);
        assert!(
            !mid.explanation.rule.contains("connections"),
            "{}",
            mid.explanation.rule
        );
        let gap = classifier.classify(&vector([Some(0.1), None, Some(0.1), Some(0.1)], [0.4; 4]));
        assert_eq!(gap.class, Class::Remain);
        assert_eq!(gap.explanation.code, "insufficient_data");
        assert!(
            gap.explanation.rule.contains("1 of 8"),
            "{}",
            gap.explanation.rule
        );
    }

    #[test]
    fn thresholds_are_validated_and_parsed_strictly() {
        assert!(Thresholds::default().validate().is_ok());
        let bad = Thresholds {
            scale_down_cpu_below: 0.9,
            scale_up_connections_at_least: 1.5,
            ..Thresholds::default()
        };
        let problems = bad.validate().unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        let parsed: Result<Thresholds, _> = serde_json::from_str(r#"{"scale_up_cpu": 0.9}"#);
        assert!(parsed.is_err());
        let parsed: Thresholds = serde_json::from_str(r#"{"scale_up_cpu_above": 0.9}"#).unwrap();
        assert_eq!(parsed.scale_up_cpu_above, 0.9);
        assert_eq!(parsed.scale_down_cpu_below, 0.40);
    }
}
