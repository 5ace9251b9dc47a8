//! The safety floor: the smallest size each dimension of a target may be left with, from what it
//! has been seen to need — independent of the classifier and of the plugin.
//!
//! A model can be wrong, and a plugin's plan is only as careful as its author. The floor is the
//! engine's own bound: for CPU and memory it takes the highest of each week's 99th percentile and
//! busiest 1-hour mean over the whole window, projects it forward by the window's trend (linear
//! slope and compound weekly growth, whichever is higher), and adds the headroom. A scale-down
//! may not go below it; a dimension whose data is missing, or has a week of low coverage, may not
//! shrink at all.

use serde::{Deserialize, Serialize};

use crate::{Bounds, Resources};

/// How the floor is computed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FloorSettings {
    /// Fraction added on top of the projected peak (0.15: the peak may use 87 % of the new size).
    pub headroom: f64,
    /// Weeks ahead the peak is projected by its trend: until the next chance to scale back up.
    pub horizon_weeks: f64,
    /// Least share of a week's samples present for the week to count as evidence for a shrink.
    pub min_coverage: f64,
}

impl Default for FloorSettings {
    fn default() -> Self {
        Self {
            headroom: 0.15,
            horizon_weeks: 4.0,
            min_coverage: 0.8,
        }
    }
}

/// A resource dimension the floor bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    /// CPU, from the plugin's `cpu` metric (a share of the target's CPU).
    Cpu,
    /// Memory, from the plugin's `memory` metric (a share of the target's memory).
    Memory,
}

impl Dimension {
    /// Every dimension, in report order.
    pub const ALL: [Dimension; 2] = [Dimension::Cpu, Dimension::Memory];

    /// The plugin metric that measures it, as a share (0..=1) of the target's current size.
    pub fn metric(self) -> &'static str {
        match self {
            Dimension::Cpu => "cpu",
            Dimension::Memory => "memory",
        }
    }

    /// The dimension's current size in its unit (millicores, bytes).
    pub fn size_of(self, resources: &Resources) -> u64 {
        match self {
            Dimension::Cpu => resources.cpu_millicores,
            Dimension::Memory => resources.memory_bytes,
        }
    }

    /// The unit a floor of `needed` is rounded up to: an eighth of the power of two below it,
    /// at least a quarter vCPU or 256 MiB — sizes people recognise (24 GiB, not 22.75).
    fn granule(self, needed: f64) -> u64 {
        let (unit, least) = match self {
            Dimension::Cpu => (1000.0, 250),
            Dimension::Memory => (crate::resources::GIB as f64, 256 * crate::resources::MIB),
        };
        let units = needed / unit;
        if units.is_nan() || units < 1.0 {
            return least;
        }
        let power = 2f64.powi(units.log2().floor() as i32);
        ((power / 8.0 * unit) as u64).max(least)
    }

    /// `value` in this dimension's operator units.
    pub fn show(self, value: u64) -> String {
        match self {
            Dimension::Cpu => crate::format_cpu(value),
            Dimension::Memory => crate::format_bytes(value),
        }
    }
}

/// The share of its size at which a dimension is saturated: a busiest hour at 95 % leaves no
/// room for a burst (memory pressure, connections refused, queueing). The floor projects peaks
/// to it, and the history's degradation rules use it for memory and connections.
pub const SATURATED: f64 = 0.95;

/// The level from which a ratio counts as near saturation: the time a week spends at or above
/// it is one of the classifier's features and the history's degradation signal.
pub const NEAR_SATURATION: f64 = 0.9;

/// A statistic of a metric's week beyond the plugin's own aggregate, asked of the source by the
/// engine (for the safety floor and the classifier's peak features).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeakStat {
    /// Each week's 99th percentile.
    P99,
    /// Each week's busiest 1-hour mean.
    MaxHourlyMean,
    /// The share of each week at or above [`NEAR_SATURATION`].
    NearSaturation,
}

impl PeakStat {
    /// Every statistic, in query order.
    pub const ALL: [PeakStat; 3] = [
        PeakStat::P99,
        PeakStat::MaxHourlyMean,
        PeakStat::NearSaturation,
    ];

    /// How the source summarises the week for it.
    pub fn aggregation(self) -> crate::Aggregation {
        match self {
            PeakStat::P99 => crate::Aggregation::P99,
            PeakStat::MaxHourlyMean => crate::Aggregation::MaxHourlyMean,
            PeakStat::NearSaturation => crate::Aggregation::ShareAtLeast(NEAR_SATURATION),
        }
    }
}

/// One week of a metric, as observed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WeekPeak {
    /// The week's mean share of the current size.
    pub mean: Option<f64>,
    /// Its 99th percentile.
    pub p99: Option<f64>,
    /// Its busiest 1-hour mean.
    pub max_hourly: Option<f64>,
    /// The share of its samples at or above [`NEAR_SATURATION`].
    #[serde(default)]
    pub near_saturation: Option<f64>,
    /// Share of the week's samples present.
    pub coverage: f64,
}

impl WeekPeak {
    /// The week's peak: the higher of the 99th percentile and the busiest hour.
    pub fn peak(&self) -> Option<f64> {
        match (self.p99, self.max_hourly) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

/// What bounds one dimension, or why it may not shrink at all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum DimensionFloor {
    /// Its data supports a floor.
    Known {
        /// The highest weekly peak of the window, as a share of the current size.
        peak: f64,
        /// The weekly peaks' linear trend, in share per week.
        slope_per_week: f64,
        /// The weekly means' compound growth per week (0.05: 5 % a week).
        growth_per_week: f64,
        /// The peak projected `horizon_weeks` ahead by the higher of the two trends.
        projected: f64,
        /// Weeks until the peak reaches [`SATURATED`] of the current size, when it is rising
        /// (0 when it is there already).
        weeks_to_saturation: Option<f64>,
        /// Whether every week's mean rose above the one before: a sustained climb, not a
        /// noisy week.
        #[serde(default)]
        rising: bool,
        /// The smallest size the dimension may be left with (millicores, bytes), rounded up.
        required: u64,
    },
    /// Its data is missing or thin: it keeps its current size.
    Unknown {
        /// Why.
        reason: String,
    },
}

/// The floor of one dimension of one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DimensionBound {
    /// The dimension.
    pub dimension: Dimension,
    /// The current size (millicores, bytes).
    pub current: u64,
    /// What bounds it.
    pub floor: DimensionFloor,
}

impl DimensionBound {
    /// The smallest size this dimension may be left with: the current size when unknown.
    pub fn minimum(&self) -> u64 {
        match &self.floor {
            DimensionFloor::Known { required, .. } => (*required).min(self.current),
            DimensionFloor::Unknown { .. } => self.current,
        }
    }

    /// Whether the dimension may shrink at all.
    pub fn may_shrink(&self) -> bool {
        self.minimum() < self.current
    }

    /// One line for people: `cpu ≥ 2.5 vCPU (peak 27 %, +1.2 %/week → 31 % in 4 weeks, +15 %)`.
    pub fn describe(&self, settings: &FloorSettings) -> String {
        let d = self.dimension;
        match &self.floor {
            DimensionFloor::Known {
                peak,
                slope_per_week,
                growth_per_week,
                projected,
                weeks_to_saturation,
                rising,
                required,
            } => {
                let mut text = format!(
                    "{} ≥ {} (peak {:.0} % of {}, trend {:+.1} pt/week, growth {:+.1} %/week → {:.0} % in {} weeks, +{:.0} % headroom",
                    d.metric(),
                    d.show(*required),
                    peak * 100.0,
                    d.show(self.current),
                    slope_per_week * 100.0,
                    growth_per_week * 100.0,
                    projected * 100.0,
                    settings.horizon_weeks,
                    settings.headroom * 100.0
                );
                if let Some(weeks) = weeks_to_saturation {
                    text.push_str(&format!(
                        "; {:.0} % in {weeks:.1} weeks{}",
                        SATURATED * 100.0,
                        if *rising { ", rising every week" } else { "" }
                    ));
                }
                text.push(')');
                if *required >= self.current {
                    text.push_str(": may not shrink");
                }
                text
            }
            DimensionFloor::Unknown { reason } => {
                format!("{} may not shrink: {reason}", d.metric())
            }
        }
    }
}

/// The safety floor of one target in one cycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SafetyFloor {
    /// How it was computed.
    pub settings: FloorSettings,
    /// One bound per dimension, in [`Dimension::ALL`] order.
    pub dimensions: Vec<DimensionBound>,
}

impl SafetyFloor {
    /// The floor of a target of size `current` from each dimension's weeks (oldest first).
    pub fn compute(
        settings: FloorSettings,
        current: &Resources,
        weeks: impl Fn(Dimension) -> Vec<WeekPeak>,
    ) -> Self {
        let dimensions = Dimension::ALL
            .iter()
            .map(|&dimension| {
                let current = dimension.size_of(current);
                DimensionBound {
                    dimension,
                    current,
                    floor: dimension_floor(&settings, dimension, current, &weeks(dimension)),
                }
            })
            .collect();
        Self {
            settings,
            dimensions,
        }
    }

    /// A floor that keeps every dimension at its current size, for `reason` (thin data on a
    /// metric that is not itself a dimension still hides what the target did).
    pub fn hold_all(settings: FloorSettings, current: &Resources, reason: &str) -> Self {
        let dimensions = Dimension::ALL
            .iter()
            .map(|&dimension| DimensionBound {
                dimension,
                current: dimension.size_of(current),
                floor: DimensionFloor::Unknown {
                    reason: reason.to_string(),
                },
            })
            .collect();
        Self {
            settings,
            dimensions,
        }
    }

    /// The bound of `dimension`.
    pub fn bound(&self, dimension: Dimension) -> Option<&DimensionBound> {
        self.dimensions.iter().find(|d| d.dimension == dimension)
    }

    /// The loop's `bounds` raised to this floor for a scale-down: a plan made within them never
    /// leaves a dimension below what it has been seen to need. Never above the current size, so
    /// that a dimension that may not shrink simply stays.
    pub fn scale_down_bounds(&self, bounds: &Bounds) -> Bounds {
        let mut raised = *bounds;
        for d in &self.dimensions {
            let minimum = d.minimum();
            match d.dimension {
                Dimension::Cpu => {
                    raised.min_cpu_millicores = raised.min_cpu_millicores.max(minimum)
                }
                Dimension::Memory => raised.min_memory_bytes = raised.min_memory_bytes.max(minimum),
            }
        }
        raised
    }

    /// The dimensions a proposed size leaves below the floor, each with its floor; with a
    /// dimension saturating within the horizon, every dimension it shrinks.
    pub fn violations(&self, after: &Resources) -> Vec<(Dimension, u64)> {
        let saturating = self.saturating().is_some();
        self.dimensions
            .iter()
            .filter(|d| {
                let size = d.dimension.size_of(after);
                size < d.current && (saturating || size < d.minimum())
            })
            .map(|d| {
                let floor = if saturating { d.current } else { d.minimum() };
                (d.dimension, floor)
            })
            .collect()
    }

    /// Whether any dimension may shrink: none may when one of them is projected to saturate
    /// within the horizon, since a target about to need more of one resource is no target for
    /// a disruptive change that takes away another.
    pub fn allows_any_shrink(&self) -> bool {
        self.saturating().is_none() && self.dimensions.iter().any(DimensionBound::may_shrink)
    }

    /// The first dimension at or projected to reach [`SATURATED`] within the horizon, with
    /// the weeks until it does.
    pub fn saturating(&self) -> Option<(Dimension, f64)> {
        self.saturating_where(|_| true)
    }

    /// The first dimension climbing week after week and projected to reach [`SATURATED`]
    /// within the horizon (or there already), with the weeks until it does: the problem ahead
    /// that a scale-up should meet. A dimension near saturation without a sustained climb (a
    /// spiky one) is the classifier's to judge.
    pub fn projected_saturation(&self) -> Option<(Dimension, f64)> {
        self.saturating_where(|d| matches!(d.floor, DimensionFloor::Known { rising: true, .. }))
    }

    fn saturating_where(
        &self,
        which: impl Fn(&DimensionBound) -> bool,
    ) -> Option<(Dimension, f64)> {
        self.dimensions
            .iter()
            .filter(|d| which(d))
            .find_map(|d| match &d.floor {
                DimensionFloor::Known {
                    weeks_to_saturation: Some(weeks),
                    ..
                } if *weeks <= self.settings.horizon_weeks => Some((d.dimension, *weeks)),
                _ => None,
            })
    }
}

fn dimension_floor(
    settings: &FloorSettings,
    dimension: Dimension,
    current: u64,
    weeks: &[WeekPeak],
) -> DimensionFloor {
    let unknown = |reason: String| DimensionFloor::Unknown { reason };
    if current == 0 {
        return unknown("the current size is unknown".to_string());
    }
    if weeks.is_empty() {
        return unknown(format!("no {} series", dimension.metric()));
    }
    if let Some((i, week)) = weeks
        .iter()
        .enumerate()
        .find(|(_, w)| w.coverage.is_nan() || w.coverage < settings.min_coverage)
    {
        return unknown(format!(
            "week W-{} has {:.0} % of its samples (< {:.0} %): thin data is no evidence for a shrink",
            weeks.len() - i,
            week.coverage.max(0.0) * 100.0,
            settings.min_coverage * 100.0
        ));
    }
    // Each statistic on its own: the higher of the two peaks would hide an impossible one
    // (f64::max skips a NaN and outbids a negative value), and a broken series is no evidence
    // whatever its other statistics say.
    let impossible = weeks.iter().any(|w| {
        let peak_ok = |v: f64| v.is_finite() && v >= 0.0;
        !w.p99.is_none_or(peak_ok)
            || !w.max_hourly.is_none_or(peak_ok)
            || !w.mean.is_none_or(f64::is_finite)
    });
    if impossible {
        return unknown(
            "a week has an impossible value (non-finite, or a negative peak)".to_string(),
        );
    }
    let peaks: Vec<f64> = weeks.iter().filter_map(WeekPeak::peak).collect();
    if peaks.len() != weeks.len() || peaks.iter().any(|p| !p.is_finite() || *p < 0.0) {
        return unknown("a week has no usable peak (p99 or busiest hour)".to_string());
    }
    let peak = peaks.iter().copied().fold(0.0, f64::max);
    let slope_per_week = slope(&peaks);
    let means: Vec<f64> = weeks.iter().filter_map(|w| w.mean).collect();
    let growth_per_week = compound_growth(&means);
    let rising = means.len() == weeks.len()
        && means.len() >= 3
        && means.windows(2).all(|pair| pair[1] > pair[0]);
    let ahead = settings.horizon_weeks.max(0.0);
    let linear = peak + slope_per_week.max(0.0) * ahead;
    let compound = peak * (1.0 + growth_per_week.max(0.0)).powf(ahead);
    let projected = linear.max(compound);
    // Beyond a year a trend says nothing worth printing.
    let weeks_to_saturation =
        weeks_to(SATURATED, peak, slope_per_week, growth_per_week).filter(|w| *w <= 52.0);
    let needed = projected * (1.0 + settings.headroom.max(0.0)) * current as f64;
    let granule = dimension.granule(needed);
    let required = if needed.is_finite() && needed < u64::MAX as f64 / 2.0 {
        ((needed / granule as f64).ceil() as u64).max(1) * granule
    } else {
        u64::MAX
    };
    DimensionFloor::Known {
        peak,
        slope_per_week,
        growth_per_week,
        projected,
        weeks_to_saturation,
        rising,
        required,
    }
}

/// Least-squares slope of `values` against their index (per week).
fn slope(values: &[f64]) -> f64 {
    let n = values.len();
    if n < 2 {
        return 0.0;
    }
    let mean_x = (n - 1) as f64 / 2.0;
    let mean_y = values.iter().sum::<f64>() / n as f64;
    let (mut num, mut den) = (0.0, 0.0);
    for (i, y) in values.iter().enumerate() {
        let dx = i as f64 - mean_x;
        num += dx * (y - mean_y);
        den += dx * dx;
    }
    if den == 0.0 { 0.0 } else { num / den }
}

/// Compound weekly growth from the first to the last week (0 when either is not positive).
fn compound_growth(values: &[f64]) -> f64 {
    match (values.first(), values.last()) {
        (Some(&first), Some(&last)) if values.len() >= 2 && first > 0.0 && last > 0.0 => {
            (last / first).powf(1.0 / (values.len() - 1) as f64) - 1.0
        }
        _ => 0.0,
    }
}

/// Weeks until `peak` reaches `level` by the faster of the two trends; `None` when neither rises.
fn weeks_to(level: f64, peak: f64, slope: f64, growth: f64) -> Option<f64> {
    if peak >= level {
        return Some(0.0);
    }
    let linear = (slope > 0.0).then(|| (level - peak) / slope);
    let compound = (growth > 0.0 && peak > 0.0).then(|| (level / peak).ln() / (1.0 + growth).ln());
    match (linear, compound) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::GIB;

    fn size(cpu: u64, memory_gib: u64) -> Resources {
        Resources {
            cpu_millicores: cpu,
            memory_bytes: memory_gib * GIB,
            replicas: 1,
            parameters: Default::default(),
        }
    }

    fn week(mean: f64, peak: f64) -> WeekPeak {
        WeekPeak {
            near_saturation: None,
            mean: Some(mean),
            p99: Some(peak),
            max_hourly: Some(peak * 0.98),
            coverage: 1.0,
        }
    }

    fn floor_of(cpu: Vec<WeekPeak>, memory: Vec<WeekPeak>) -> SafetyFloor {
        SafetyFloor::compute(FloorSettings::default(), &size(8000, 32), |d| match d {
            Dimension::Cpu => cpu.clone(),
            Dimension::Memory => memory.clone(),
        })
    }

    #[test]
    fn an_idle_target_may_halve() {
        let floor = floor_of(vec![week(0.15, 0.25); 4], vec![week(0.30, 0.35); 4]);
        let bounds = floor.scale_down_bounds(&Bounds::default());
        // 25 % of 8 vCPU × 1.15 = 2.3 → 2.5 vCPU; 35 % of 32 GiB × 1.15 = 12.9 → 13 GiB.
        assert_eq!(bounds.min_cpu_millicores, 2500);
        assert_eq!(bounds.min_memory_bytes, 13 * GIB);
        assert!(floor.violations(&size(4000, 16)).is_empty());
    }

    #[test]
    fn spiky_peaks_bound_the_size_not_the_means() {
        // Mean 40 %, but a daily hour at 90 %: halving would saturate.
        let floor = floor_of(vec![week(0.40, 0.90); 4], vec![week(0.30, 0.35); 4]);
        let cpu = floor.bound(Dimension::Cpu).map(DimensionBound::minimum);
        assert_eq!(cpu, Some(8000), "{floor:?}");
        assert_eq!(floor.violations(&size(4000, 16)), [(Dimension::Cpu, 8000)]);
    }

    #[test]
    fn memory_creep_is_projected_forward() {
        // 60 → 75 % over four weeks: +5 pt a week reaches 95 % in four more (compound
        // growth, +8 %/week on the means, sooner).
        let creep = vec![
            week(0.58, 0.60),
            week(0.63, 0.65),
            week(0.68, 0.70),
            week(0.73, 0.75),
        ];
        let floor = floor_of(vec![week(0.15, 0.2); 4], creep);
        let Some(DimensionBound {
            floor:
                DimensionFloor::Known {
                    projected,
                    weeks_to_saturation,
                    ..
                },
            ..
        }) = floor.bound(Dimension::Memory)
        else {
            panic!("{floor:?}")
        };
        // Linear: 75 % + 5 pt × 4 = 95 %; compound (+8 %/week on the means) goes further.
        assert!(*projected >= 0.95, "{projected}");
        assert!(
            weeks_to_saturation.is_some_and(|w| w < 5.1),
            "{weeks_to_saturation:?}"
        );
        assert!(
            !floor
                .bound(Dimension::Memory)
                .is_some_and(DimensionBound::may_shrink)
        );
        assert!(
            floor
                .bound(Dimension::Cpu)
                .is_some_and(DimensionBound::may_shrink)
        );
        // Memory saturates within the horizon: CPU, idle as it is, does not shrink either.
        assert_eq!(floor.saturating().map(|(d, _)| d), Some(Dimension::Memory));
        assert_eq!(
            floor.projected_saturation().map(|(d, _)| d),
            Some(Dimension::Memory)
        );
        assert!(!floor.allows_any_shrink());
        assert_eq!(floor.violations(&size(4000, 32)), [(Dimension::Cpu, 8000)]);
    }

    #[test]
    fn a_gap_or_a_missing_series_forbids_shrinking_that_dimension() {
        let mut gapped = vec![week(0.1, 0.15); 4];
        gapped[3].coverage = 0.6;
        let floor = floor_of(gapped, Vec::new());
        assert!(!floor.allows_any_shrink(), "{floor:?}");
        let bounds = floor.scale_down_bounds(&Bounds::default());
        assert_eq!(bounds.min_cpu_millicores, 8000);
        assert_eq!(bounds.min_memory_bytes, 32 * GIB);
        let text = floor.dimensions[0].describe(&floor.settings);
        assert!(text.contains("W-1 has 60 %"), "{text}");
    }

    #[test]
    fn impossible_values_are_no_evidence() {
        let floor = floor_of(vec![week(f64::NAN, f64::NAN); 4], vec![week(-5.0, -5.0); 4]);
        assert!(!floor.allows_any_shrink(), "{floor:?}");
    }
}
