//! Figures of the learning core on the PostgreSQL plugin's scenarios:
//!
//! - the quality report: 5-fold cross-validation on the default history (seed 1), a held-out
//!   history (seed 99) against the bootstrap rules, and the design's instances A and B;
//! - training time for 100,000 windows (10,000 targets × 10 windows), timed once;
//! - per-target classification latency (criterion): the model with its explanation, the
//!   probabilities alone, the surrogate's rule, and the bootstrap rules for comparison.
//!
//!     cargo bench -p setpoint-learn --bench learn
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Instant;

use criterion::Criterion;
use setpoint_classify::{BootstrapHeuristics, Classifier, Thresholds};
use setpoint_core::{Feature, FeatureVector, Resources, SimMetric, SimScenario};
use setpoint_learn::{DatasetConfig, HistoryConfig, TrainConfig, build, evaluate, simulate, train};
use setpoint_sdk::Adapter;

fn scenarios() -> Vec<SimScenario> {
    <setpoint_plugin_postgres::Postgres as Adapter>::describe()
        .scenarios
        .into_iter()
        .map(|s| SimScenario {
            name: s.name,
            description: s.description,
            id_prefix: s.id_prefix,
            count: s.count,
            sizes: s
                .sizes
                .into_iter()
                .map(|r| Resources {
                    cpu_millicores: r.cpu_millicores,
                    memory_bytes: r.memory_bytes,
                    replicas: r.replicas,
                    parameters: r.parameters.into_iter().collect(),
                })
                .collect(),
            metrics: s
                .metrics
                .into_iter()
                .map(|m| SimMetric {
                    metric: m.metric,
                    weeks: m.weeks,
                    daily_amplitude: m.daily_amplitude,
                    noise: m.noise,
                    lift: m.lift,
                    scale: m.scale,
                    min: m.min,
                    max: m.max,
                })
                .collect(),
            gap_hours: s.gap_hours,
        })
        .collect()
}

fn fingerprint(weeks: [[f64; 4]; 4]) -> FeatureVector {
    let mut features = Vec::new();
    for (metric, values) in ["cpu", "memory", "connections", "iops"].iter().zip(weeks) {
        for (i, v) in values.iter().enumerate() {
            features.push(Feature {
                name: format!("{metric}_w{}", 4 - i),
                value: Some(v / 100.0),
                coverage: 1.0,
            });
        }
    }
    FeatureVector { features }
}

/// A history as read from a source: `targets` PostgreSQL-like targets, `weeks` weeks of each
/// metric's weekly mean and peaks, on flat, growing, spiky and idle trajectories.
fn observed_history(targets: usize, weeks: usize) -> setpoint_learn::History {
    use rand::{Rng, SeedableRng};
    use setpoint_learn::history::{MetricInfo, Pattern, TargetHistory};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(12);
    let names = ["cpu", "memory", "connections", "iops"];
    let metrics = names
        .iter()
        .map(|m| MetricInfo::observed(m, true))
        .collect();
    let targets = (0..targets)
        .map(|i| {
            let (weekly, peaks): (Vec<Vec<f64>>, Vec<Vec<setpoint_core::WeekPeak>>) = names
                .iter()
                .map(|_| {
                    let level: f64 = rng.random_range(0.05..0.8);
                    let growth: f64 = if rng.random_bool(0.2) {
                        rng.random_range(0.02..0.1)
                    } else {
                        0.0
                    };
                    let spike: f64 = rng.random_range(1.1..1.9);
                    let means: Vec<f64> = (0..weeks)
                        .map(|w| {
                            (level * (1.0 + growth).powi(w as i32) + rng.random_range(-0.01..0.01))
                                .clamp(0.0, 1.0)
                        })
                        .collect();
                    let peaks = means
                        .iter()
                        .map(|&m| {
                            let peak = (m * spike).min(1.0);
                            setpoint_core::WeekPeak {
                                mean: Some(m),
                                p99: Some(peak * 0.97),
                                max_hourly: Some(peak),
                                near_saturation: Some(if peak >= 0.9 {
                                    (peak - 0.9) * 2.0
                                } else {
                                    0.0
                                }),
                                coverage: 1.0,
                            }
                        })
                        .collect();
                    (means, peaks)
                })
                .unzip();
            TargetHistory {
                id: format!("t-{i:04}"),
                scenario: "observed".into(),
                pattern: Pattern::Observed,
                weekly,
                peaks,
            }
        })
        .collect();
    setpoint_learn::History {
        metrics,
        weeks: weeks as u32,
        targets,
        events: Vec::new(),
    }
}

fn main() {
    let scenarios = scenarios();

    // Quality.
    let history = simulate(&scenarios, &HistoryConfig::default()).unwrap();
    let dataset = build(&history, &history.events, &DatasetConfig::default()).unwrap();
    let start = Instant::now();
    let model = train(&dataset, &TrainConfig::default(), &mut |_, _, _| {}).unwrap();
    println!(
        "quality: {} windows {:?}, trained with 5-fold CV in {:.2?}, model {}",
        dataset.rows.len(),
        dataset.class_counts(),
        start.elapsed(),
        model.short_version()
    );
    let cv = model.metrics().unwrap();
    println!(
        "  CV macro-F1 {:.3} (folds {:?}), accuracy {:.3}, recall down/remain/up {:.3?}; bootstrap macro-F1 {:.3}",
        cv.model.macro_f1,
        cv.fold_macro_f1
            .iter()
            .map(|f| (f * 1000.0).round() / 1000.0)
            .collect::<Vec<_>>(),
        cv.model.accuracy,
        cv.model.recall,
        cv.bootstrap.macro_f1
    );
    println!(
        "  CV confusion [label][predicted]: {:?}",
        cv.model.confusion
    );
    let top: Vec<String> = model
        .importance()
        .iter()
        .take(6)
        .map(|f| format!("{} {:.3}", f.feature, f.gain))
        .collect();
    println!("  importance: {}", top.join(", "));
    println!("  surrogate (fidelity {:.3}):", model.surrogate().fidelity);
    for rule in model.surrogate_rules() {
        println!("    {rule}");
    }
    let held = simulate(
        &scenarios,
        &HistoryConfig {
            seed: 99,
            ..HistoryConfig::default()
        },
    )
    .unwrap();
    let report = evaluate(&model, &held, &held.events, &DatasetConfig::default()).unwrap();
    println!("  held-out (seed 99, {} windows):", report.windows);
    for r in [&report.model, &report.surrogate, &report.bootstrap] {
        println!(
            "    {:<9} macro-F1 {:.3}, flagged {}/{} degradations {:.1} weeks ahead, reclaimed {}/{} oversized, {} scale-downs of which {} regretted",
            r.name,
            r.classes.macro_f1,
            r.flagged,
            r.degradations,
            r.mean_weeks_ahead,
            r.reclaimed,
            r.oversized,
            r.scale_downs,
            r.regretted
        );
    }
    let classifier = model.classifier();
    let instance_a = fingerprint([
        [11.0, 9.0, 13.0, 10.0],
        [58.0, 61.0, 55.0, 57.0],
        [22.0, 19.0, 24.0, 21.0],
        [31.0, 28.0, 33.0, 29.0],
    ]);
    let instance_b = fingerprint([
        [61.0, 66.0, 71.0, 74.0],
        [71.0, 74.0, 77.0, 81.0],
        [74.0, 79.0, 83.0, 89.0],
        [68.0, 71.0, 74.0, 78.0],
    ]);
    for (name, fv) in [("A", &instance_a), ("B", &instance_b)] {
        let c = classifier.classify(fv);
        println!(
            "  instance {name}: {} {:.3} — {}",
            c.class, c.confidence, c.explanation.rule
        );
    }

    // Training time for 100,000 windows.
    let big = simulate(
        &scenarios,
        &HistoryConfig {
            seed: 2,
            targets_per_scenario: 1000,
            fresh_targets: 3000,
            ..HistoryConfig::default()
        },
    )
    .unwrap();
    let start = Instant::now();
    let big_set = build(&big, &big.events, &DatasetConfig::default()).unwrap();
    let built = start.elapsed();
    let start = Instant::now();
    let big_model = train(
        &big_set,
        &TrainConfig {
            folds: 0,
            ..TrainConfig::default()
        },
        &mut |_, _, _| {},
    )
    .unwrap();
    println!(
        "training: {} windows built in {built:.2?}, trained (3 boosters × {} trees + surrogate, no CV) in {:.2?}; JSON {} KiB",
        big_set.rows.len(),
        TrainConfig::default().booster.iterations,
        start.elapsed(),
        big_model.to_json().len() / 1024
    );

    // Training from an observed history: 1,000 targets × 12 weeks of weekly means and peaks,
    // as `setpoint train --from-source` reads them (the TSDB's part is not in this figure).
    let observed = observed_history(1000, 12);
    let start = Instant::now();
    let events = setpoint_learn::observed::detect(&observed, &Default::default());
    let observed_set = build(&observed, &events, &DatasetConfig::default()).unwrap();
    let built = start.elapsed();
    let start = Instant::now();
    let observed_model = train(&observed_set, &TrainConfig::default(), &mut |_, _, _| {}).unwrap();
    println!(
        "training from a source's history: 1,000 targets × 12 weeks, {} degradations, {} windows {:?} ({} features) built in {built:.2?}; trained with 5-fold CV and calibration in {:.2?} (model {})",
        events.len(),
        observed_set.rows.len(),
        observed_set.class_counts(),
        observed_set.schema.len(),
        start.elapsed(),
        observed_model.short_version()
    );

    // Latency.
    let mut c = Criterion::default().configure_from_args();
    let rules = BootstrapHeuristics::new(Thresholds::default());
    let row = model.schema().row_from_features(&instance_b).unwrap();
    c.bench_function("classify/model+explanation", |b| {
        b.iter(|| classifier.classify(black_box(&instance_b)))
    });
    c.bench_function("classify/model-probabilities", |b| {
        b.iter(|| model.predict_proba(black_box(&row)).unwrap())
    });
    c.bench_function("classify/surrogate-rule", |b| {
        b.iter(|| model.surrogate().rule_for(black_box(&row)).map(|r| r.class))
    });
    c.bench_function("classify/bootstrap", |b| {
        b.iter(|| rules.classify(black_box(&instance_b)))
    });
    c.final_summary();
}
