//! Deterministic synthetic series with daily and weekly patterns, noise and level drift,
//! and injected anomalies: for tests, benchmarks and simulated fleets.

use chrono::{DateTime, Datelike, TimeDelta, Timelike, Utc};

use crate::series::Series;

/// The recipe of a synthetic series. All amplitudes are fractions of `base`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Synthetic {
    /// The mean level.
    pub base: f64,
    /// Amplitude of the daily pattern (a business-day hump with a night trough).
    pub daily: f64,
    /// Depth of the weekend dip at the daily peak.
    pub weekly: f64,
    /// Standard deviation of the independent noise of each sample.
    pub noise: f64,
    /// Standard deviation of the level's random walk over one hour.
    pub drift: f64,
    /// Seed of the noise and the drift: the same recipe gives the same series.
    pub seed: u64,
}

impl Default for Synthetic {
    fn default() -> Self {
        Self {
            base: 100.0,
            daily: 0.4,
            weekly: 0.25,
            noise: 0.03,
            drift: 0.01,
            seed: 1,
        }
    }
}

impl Synthetic {
    /// The noiseless seasonal offset at `t` (without level, drift or noise).
    pub fn seasonal(&self, t: DateTime<Utc>) -> f64 {
        let hour = f64::from(t.num_seconds_from_midnight()) / 3600.0;
        let phase = (hour - 14.0) / 24.0 * std::f64::consts::TAU;
        // A daily peak in the afternoon with a sharper morning ramp (second harmonic).
        let day = phase.cos() + 0.3 * (2.0 * phase).cos();
        // Weekends lose up to `weekly` of the base in the day and nothing at the night's
        // trough (the shape's minimum, about -0.717, falls near midnight), so the week has no
        // step at midnight, as real traffic has none.
        let weekday = t.weekday().num_days_from_monday();
        let weekend = if weekday >= 5 {
            -self.weekly * ((day + 0.717) / 2.017).max(0.0)
        } else {
            0.0
        };
        self.base * (self.daily * day + weekend)
    }

    /// `len` samples every `step` from `start`.
    pub fn generate(&self, start: DateTime<Utc>, step: TimeDelta, len: usize) -> Series {
        let mut rng = SplitMix64(self.seed);
        let hours_per_step = step.num_milliseconds() as f64 / 3_600_000.0;
        let drift_per_step = self.drift * self.base * hours_per_step.sqrt();
        let mut level = self.base;
        let mut values = Vec::with_capacity(len);
        let mut t = start;
        for _ in 0..len {
            level += drift_per_step * rng.normal();
            values.push(level + self.seasonal(t) + self.noise * self.base * rng.normal());
            t = crate::series::shift(t, step);
        }
        Series::new(start, step, values)
    }
}

/// An injected anomaly: `len` samples from `index` multiplied by `1 + change`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Injection {
    /// First sample changed.
    pub index: usize,
    /// Samples changed.
    pub len: usize,
    /// Relative change: 0.5 is a 50 % spike, -0.4 a 40 % dip.
    pub change: f64,
}

/// Applies `injections` to `series` and returns, per sample, whether it was changed (the
/// ground truth).
pub fn inject(series: &mut Series, injections: &[Injection]) -> Vec<bool> {
    let mut truth = vec![false; series.len()];
    for inj in injections {
        let end = (inj.index + inj.len).min(series.len());
        let start = inj.index.min(end);
        for (value, flag) in series.values[start..end]
            .iter_mut()
            .zip(&mut truth[start..end])
        {
            *value *= 1.0 + inj.change;
            *flag = true;
        }
    }
    truth
}

/// SplitMix64: a tiny, well-known generator, enough for reproducible noise without a
/// dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller; the second value is dropped for simplicity).
    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}
