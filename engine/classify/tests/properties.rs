//! Property tests of the bootstrap heuristics' safety contract: missing data never shrinks.
//! Whatever the features say otherwise, and whatever valid thresholds are configured, a
//! fingerprint with a CPU, memory or (where the technology has them) connection week missing or
//! not a number is `remain` with `insufficient_data`, never `scale_down`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use setpoint_classify::{BootstrapHeuristics, Classifier, Thresholds};
use setpoint_core::{Class, Feature, FeatureVector};

/// A weekly value the plugin may report: mostly a utilisation (idle ones included, which
/// would argue for a scale-down), sometimes nothing, sometimes not a number.
fn value() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![
        6 => (0.0..1.2f64).prop_map(Some),
        1 => Just(None),
        1 => prop::sample::select(vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY]).prop_map(Some),
    ]
}

/// A value that is missing for the heuristics.
fn missing() -> impl Strategy<Value = Option<f64>> {
    prop::sample::select(vec![
        None,
        Some(f64::NAN),
        Some(f64::INFINITY),
        Some(f64::NEG_INFINITY),
    ])
}

/// Valid thresholds: the default, or any ratios whose scale-down band is below the scale-up one.
fn thresholds() -> impl Strategy<Value = Thresholds> {
    prop_oneof![
        Just(Thresholds::default()),
        (
            0.0..=1.0f64,
            0.0..=1.0f64,
            0.0..=1.0f64,
            0.0..=1.0f64,
            0.0..=1.0f64
        )
            .prop_map(
                |(down_cpu, up_cpu, down_memory, connections, memory)| Thresholds {
                    scale_down_cpu_below: down_cpu.min(up_cpu) * 0.99,
                    scale_up_cpu_above: down_cpu.max(up_cpu),
                    scale_down_memory_below: down_memory,
                    scale_up_connections_at_least: connections,
                    scale_up_memory_at_least: memory,
                }
            )
            .prop_filter("valid thresholds", |t| t.validate().is_ok()),
    ]
}

/// A fingerprint in which at least one required week (CPU, memory, or connections when the
/// technology declares them) has no usable value; the rest anything, IOPS included.
fn fingerprint_with_a_gap() -> impl Strategy<Value = FeatureVector> {
    let families = ["cpu", "memory", "connections", "iops"];
    (
        any::<bool>(),
        prop::collection::vec(value(), 16),
        prop::collection::vec(0.0..=1.0f64, 16),
        0usize..3,
        0usize..4,
        missing(),
    )
        .prop_map(
            move |(connections, mut values, coverage, family, week, gap)| {
                // Without connections (Kafka, Elasticsearch) only CPU and memory are required.
                let family = if connections { family } else { family % 2 };
                values[family * 4 + week] = gap;
                let features = families
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| connections || **f != "connections")
                    .flat_map(|(i, f)| (1..=4).map(move |w| (i, f, w)))
                    .map(|(i, f, w)| {
                        let k = i * 4 + (4 - w);
                        Feature {
                            name: format!("{f}_w{w}"),
                            value: values[k],
                            coverage: coverage[k],
                        }
                    })
                    .collect();
                FeatureVector { features }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// A required week missing or not a number: `remain` for insufficient data, never a
    /// scale-down (nor any change).
    #[test]
    fn missing_or_impossible_features_never_classify_scale_down(
        thresholds in thresholds(),
        features in fingerprint_with_a_gap(),
    ) {
        let c = BootstrapHeuristics::new(thresholds).classify(&features);
        prop_assert_eq!(c.class, Class::Remain, "{:?}", c.explanation);
        prop_assert_eq!(c.explanation.code.as_str(), "insufficient_data");
        prop_assert!((0.0..=1.0).contains(&c.confidence));
    }

    /// No data at all, or only features the heuristics do not know: never a scale-down.
    #[test]
    fn an_empty_or_unknown_fingerprint_never_classifies_scale_down(
        names in prop::collection::vec("[a-z]{1,8}_w[0-9]", 0..6),
        values in prop::collection::vec(value(), 6),
    ) {
        let features = names
            .into_iter()
            .zip(values)
            .filter(|(n, _)| !["cpu", "memory", "connections"].iter().any(|f| n.starts_with(f)))
            .map(|(name, value)| Feature { name, value, coverage: 1.0 })
            .collect();
        let c = BootstrapHeuristics::new(Thresholds::default())
            .classify(&FeatureVector { features });
        prop_assert_eq!(c.class, Class::Remain);
    }
}
