//! Property tests of the safety floor: whatever a target was seen doing and whatever a plan
//! proposes, the floor never lets a dimension end below what the target has been seen to need,
//! and missing, thin or impossible evidence never lets it shrink at all.
//!
//! "Observed need" is computed here from the weeks themselves, not from the floor's own
//! figures: the highest weekly peak (99th percentile or busiest hour) times the current size,
//! plus the headroom. The floor may ask for more (a rising trend), never less.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use setpoint_core::{
    ActionKind, Bounds, Dimension, FloorSettings, Operation, Proposal, Resources, Risk,
    SafetyFloor, WeekPeak,
};

const GIB: u64 = 1024 * 1024 * 1024;

/// Enough cases to cover the corners (each case is microseconds) while staying well under a
/// second in a debug build.
fn config() -> ProptestConfig {
    ProptestConfig::with_cases(512)
}

/// A share of the current size, mostly plausible, sometimes past saturation.
fn share() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => 0.0..1.0f64,
        1 => 1.0..3.0f64,
        1 => Just(0.0),
    ]
}

/// A value a broken exporter or query can produce.
fn impossible() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        -1e6..-1e-9f64,
    ]
}

/// Any statistic: present and plausible, missing, or impossible.
fn statistic() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![
        6 => share().prop_map(Some),
        1 => Just(None),
        1 => impossible().prop_map(Some),
    ]
}

/// A week's share of samples present: mostly complete, sometimes thin or nonsense.
fn coverage() -> impl Strategy<Value = f64> {
    prop_oneof![
        6 => 0.8..=1.0f64,
        2 => 0.0..0.8f64,
        1 => Just(f64::NAN),
        1 => -1.0..0.0f64,
    ]
}

/// Any week, good or bad.
fn any_week() -> impl Strategy<Value = WeekPeak> {
    (
        statistic(),
        statistic(),
        statistic(),
        statistic(),
        coverage(),
    )
        .prop_map(
            |(mean, p99, max_hourly, near_saturation, coverage)| WeekPeak {
                mean,
                p99,
                max_hourly,
                near_saturation,
                coverage,
            },
        )
}

/// A complete, plausible week.
fn clean_week() -> impl Strategy<Value = WeekPeak> {
    (
        share(),
        share(),
        share(),
        proptest::option::of(0.0..=1.0f64),
        0.8..=1.0f64,
    )
        .prop_map(|(mean, p99, max_hourly, near, coverage)| WeekPeak {
            mean: Some(mean),
            p99: Some(p99),
            max_hourly: Some(max_hourly),
            near_saturation: near,
            coverage,
        })
}

/// Weeks of one dimension: mostly well-formed windows, sometimes anything at all.
fn weeks() -> impl Strategy<Value = Vec<WeekPeak>> {
    prop_oneof![
        3 => proptest::collection::vec(clean_week(), 1..=6),
        2 => proptest::collection::vec(any_week(), 0..=6),
    ]
}

/// The settings a loop may configure (the default among them).
fn settings() -> impl Strategy<Value = FloorSettings> {
    prop_oneof![
        1 => Just(FloorSettings::default()),
        3 => (0.0..0.6f64, 0.0..12.0f64, 0.5..=1.0f64).prop_map(
            |(headroom, horizon_weeks, min_coverage)| FloorSettings {
                headroom,
                horizon_weeks,
                min_coverage,
            }
        ),
    ]
}

/// A current size; zero when the size is unknown.
fn resources() -> impl Strategy<Value = Resources> {
    (
        prop_oneof![9 => 250u64..=256_000, 1 => Just(0u64)],
        prop_oneof![9 => (GIB / 4)..=(2048 * GIB), 1 => Just(0u64)],
        1u32..=5,
    )
        .prop_map(|(cpu, memory, replicas)| Resources {
            cpu_millicores: cpu,
            memory_bytes: memory,
            replicas,
            parameters: Default::default(),
        })
}

/// A size a plan could propose for a target of size `current`: mostly smaller, by any share.
fn proposed(current: &Resources) -> impl Strategy<Value = Resources> + use<> {
    let current = current.clone();
    (0.0..1.3f64, 0.0..1.3f64).prop_map(move |(cpu, memory)| Resources {
        cpu_millicores: (current.cpu_millicores as f64 * cpu) as u64,
        memory_bytes: (current.memory_bytes as f64 * memory) as u64,
        ..current.clone()
    })
}

/// A target's floor inputs and a size proposed for it.
fn case() -> impl Strategy<
    Value = (
        FloorSettings,
        Resources,
        Vec<WeekPeak>,
        Vec<WeekPeak>,
        Resources,
    ),
> {
    (settings(), resources(), weeks(), weeks()).prop_flat_map(|(s, current, cpu, memory)| {
        let after = proposed(&current);
        (Just(s), Just(current), Just(cpu), Just(memory), after)
    })
}

fn floor_of(
    settings: FloorSettings,
    current: &Resources,
    cpu: &[WeekPeak],
    memory: &[WeekPeak],
) -> SafetyFloor {
    SafetyFloor::compute(settings, current, |d| match d {
        Dimension::Cpu => cpu.to_vec(),
        Dimension::Memory => memory.to_vec(),
    })
}

/// Whether `weeks` are evidence a dimension may shrink on: present, covered, every statistic
/// possible, every week with a peak.
fn usable(settings: &FloorSettings, weeks: &[WeekPeak]) -> bool {
    let possible = |v: Option<f64>| v.is_none_or(|v| v.is_finite() && v >= 0.0);
    !weeks.is_empty()
        && weeks.iter().all(|w| {
            w.coverage >= settings.min_coverage
                && possible(w.p99)
                && possible(w.max_hourly)
                && w.mean.is_none_or(f64::is_finite)
                && (w.p99.is_some() || w.max_hourly.is_some())
        })
}

/// The observed need of a dimension of size `current`: its highest weekly peak, as a size,
/// plus the headroom.
fn observed_need(settings: &FloorSettings, current: u64, weeks: &[WeekPeak]) -> f64 {
    let peak = weeks
        .iter()
        .flat_map(|w| [w.p99, w.max_hourly])
        .flatten()
        .fold(0.0, f64::max);
    peak * current as f64 * (1.0 + settings.headroom.max(0.0))
}

proptest! {
    #![proptest_config(config())]

    /// A size the floor accepts (no violation) leaves every dimension it shrinks at or above
    /// the highest peak seen, plus headroom, and only shrinks dimensions whose evidence is
    /// usable.
    #[test]
    fn no_size_the_floor_accepts_is_below_observed_need(
        (settings, current, cpu, memory, after) in case()
    ) {
        let floor = floor_of(settings, &current, &cpu, &memory);
        if !floor.violations(&after).is_empty() {
            // Refused: the plan stage drops or resizes it.
            return Ok(());
        }
        for (dimension, weeks) in [(Dimension::Cpu, &cpu), (Dimension::Memory, &memory)] {
            let (now, then) = (dimension.size_of(&current), dimension.size_of(&after));
            if then >= now {
                continue;
            }
            prop_assert!(
                usable(&settings, weeks),
                "{dimension:?} shrinks from {now} to {then} on unusable weeks {weeks:?}"
            );
            let need = observed_need(&settings, now, weeks);
            prop_assert!(
                then as f64 >= need * (1.0 - 1e-9),
                "{dimension:?} shrinks from {now} to {then}, below the observed need {need}"
            );
            prop_assert!(floor.saturating().is_none(), "a shrink while saturating: {floor:?}");
        }
    }

    /// The bounds a plugin is asked to plan a scale-down within never reach below the observed
    /// need of a dimension that may shrink, nor below the current size of one that may not;
    /// and a plan within them is accepted, so the re-proposal can succeed.
    #[test]
    fn bounds_raised_to_the_floor_hold_observed_need(
        (settings, current, cpu, memory, after) in case()
    ) {
        let floor = floor_of(settings, &current, &cpu, &memory);
        let bounds = floor.scale_down_bounds(&Bounds::default());
        for (dimension, weeks) in [(Dimension::Cpu, &cpu), (Dimension::Memory, &memory)] {
            let now = dimension.size_of(&current);
            let least = match dimension {
                Dimension::Cpu => bounds.min_cpu_millicores,
                Dimension::Memory => bounds.min_memory_bytes,
            };
            if usable(&settings, weeks) {
                let need = observed_need(&settings, now, weeks).min(now as f64);
                prop_assert!(least as f64 >= need * (1.0 - 1e-9), "{dimension:?}: {least} < {need}");
            } else {
                prop_assert!(least >= now, "{dimension:?}: {least} < {now} on unusable weeks");
            }
        }
        let within = |size: u64, least: u64, now: u64| size >= least.min(now) && size <= now;
        if floor.allows_any_shrink()
            && within(after.cpu_millicores, bounds.min_cpu_millicores, current.cpu_millicores)
            && within(after.memory_bytes, bounds.min_memory_bytes, current.memory_bytes)
        {
            prop_assert_eq!(floor.violations(&after), Vec::new());
        }
    }

    /// One missing, thin or impossible week, no series at all, or an unknown size: the
    /// dimension may not shrink, any smaller size of it is a violation, and the bounds keep
    /// it whole.
    #[test]
    fn missing_thin_or_impossible_evidence_never_lets_a_dimension_shrink(
        settings in settings(),
        current in resources(),
        clean in proptest::collection::vec(clean_week(), 1..=6),
        spoil in (any::<prop::sample::Index>(), 0usize..9, impossible(), 0.0..1.0f64),
        other in weeks(),
        empty in any::<bool>(),
        after in (0.0..1.0f64, 0.0..1.0f64),
    ) {
        let mut bad = clean;
        let (at, how, value, fraction) = spoil;
        if empty {
            bad.clear();
        } else {
            let i = at.index(bad.len());
            let week = &mut bad[i];
            match how {
                0 => week.coverage = settings.min_coverage * fraction,
                1 => week.coverage = f64::NAN,
                2 => (week.p99, week.max_hourly) = (None, None),
                3 => week.p99 = Some(value),
                4 => week.max_hourly = Some(value),
                5 => (week.p99, week.max_hourly) = (Some(value), Some(value)),
                6 => week.mean = Some(if value.is_finite() { f64::NAN } else { value }),
                7 => (week.p99, week.max_hourly) = (Some(value), None),
                _ => (week.p99, week.max_hourly) = (None, Some(value)),
            }
        }
        for dimension in Dimension::ALL {
            let (cpu, memory) = match dimension {
                Dimension::Cpu => (&bad, &other),
                Dimension::Memory => (&other, &bad),
            };
            let floor = floor_of(settings, &current, cpu, memory);
            let bound = floor.bound(dimension).unwrap();
            let now = dimension.size_of(&current);
            prop_assert!(!bound.may_shrink(), "{bound:?}");
            prop_assert_eq!(bound.minimum(), now);
            let raised = floor.scale_down_bounds(&Bounds::default());
            let least = match dimension {
                Dimension::Cpu => raised.min_cpu_millicores,
                Dimension::Memory => raised.min_memory_bytes,
            };
            prop_assert!(least >= now);
            let mut smaller = current.clone();
            match dimension {
                Dimension::Cpu => smaller.cpu_millicores = (now as f64 * after.0) as u64,
                Dimension::Memory => smaller.memory_bytes = (now as f64 * after.1) as u64,
            }
            if dimension.size_of(&smaller) < now {
                prop_assert!(
                    floor.violations(&smaller).iter().any(|(d, _)| *d == dimension),
                    "{dimension:?} shrinks on {bad:?}"
                );
            }
        }
        // An unknown size is no evidence either, whatever the weeks say.
        let unknown = Resources { cpu_millicores: 0, memory_bytes: 0, ..current };
        prop_assert!(!floor_of(settings, &unknown, &other, &other).allows_any_shrink());
    }

    /// A floor held whole (a thin week of a metric that is not itself a dimension) refuses
    /// every smaller size.
    #[test]
    fn a_floor_held_whole_refuses_every_shrink(
        current in resources(),
        after_of in (0.0..1.3f64, 0.0..1.3f64),
    ) {
        let floor = SafetyFloor::hold_all(FloorSettings::default(), &current, "thin week");
        prop_assert!(!floor.allows_any_shrink());
        let after = Resources {
            cpu_millicores: (current.cpu_millicores as f64 * after_of.0) as u64,
            memory_bytes: (current.memory_bytes as f64 * after_of.1) as u64,
            ..current.clone()
        };
        let shrinks = after.cpu_millicores < current.cpu_millicores
            || after.memory_bytes < current.memory_bytes;
        prop_assert_eq!(floor.violations(&after).is_empty(), !shrinks);
    }

    /// Scale-ups pass the floor untouched (the plan stage does not hold them): that is safe
    /// because a scale-up the plugin contract accepts never takes anything away.
    #[test]
    fn a_scale_up_the_contract_accepts_never_goes_below_the_floor(
        settings in settings(),
        current in resources(),
        cpu in weeks(),
        memory in weeks(),
        factors in (0.9..2.0f64, 0.9..2.0f64, 0u32..=2),
    ) {
        let after = Resources {
            cpu_millicores: (current.cpu_millicores as f64 * factors.0) as u64,
            memory_bytes: (current.memory_bytes as f64 * factors.1) as u64,
            replicas: current.replicas + factors.2,
            ..current.clone()
        };
        let bounds = Bounds {
            min_cpu_millicores: 1,
            max_cpu_millicores: u64::MAX,
            min_memory_bytes: 1,
            max_memory_bytes: u64::MAX,
        };
        let proposal = Proposal {
            action: ActionKind::ScaleUp,
            summary: String::new(),
            before: current.clone(),
            after: after.clone(),
            operations: vec![Operation::Resize {
                cpu_millicores: after.cpu_millicores,
                memory_bytes: after.memory_bytes,
            }],
            risk: Risk::Low,
            rationale: String::new(),
        };
        prop_assume!(proposal.check(&current, &bounds).is_ok());
        let floor = floor_of(settings, &current, &cpu, &memory);
        prop_assert_eq!(floor.violations(&proposal.after), Vec::new());
    }
}
