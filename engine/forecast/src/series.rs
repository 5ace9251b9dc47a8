//! Regular time series: the one shape every function of the crate reads.

use chrono::{DateTime, TimeDelta, Utc};

use crate::error::ForecastError;

/// A regular series: `values[i]` was sampled at `start + i * step`.
///
/// A non-finite value (`NaN`, `±inf`) means the sample is missing; see the crate docs for how
/// missing samples are handled.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Time of the first sample.
    pub start: DateTime<Utc>,
    /// Time between two samples; must be at least one millisecond.
    pub step: TimeDelta,
    /// The samples, oldest first; non-finite means missing.
    pub values: Vec<f64>,
}

/// Milliseconds since the Unix epoch: every computation on times is done in these.
pub(crate) fn epoch_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The instant `ms` milliseconds after the Unix epoch, saturating at chrono's range.
pub(crate) fn from_epoch_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(if ms < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

/// `t + d`, saturating at chrono's range instead of panicking.
pub(crate) fn shift(t: DateTime<Utc>, d: TimeDelta) -> DateTime<Utc> {
    t.checked_add_signed(d).unwrap_or(if d < TimeDelta::zero() {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

/// `n` steps of `step`, saturating instead of panicking.
pub(crate) fn steps(step: TimeDelta, n: usize) -> TimeDelta {
    i32::try_from(n)
        .ok()
        .and_then(|n| step.checked_mul(n))
        .unwrap_or(TimeDelta::MAX)
}

/// The length of `d` in milliseconds.
pub(crate) fn delta_ms(d: TimeDelta) -> i64 {
    d.num_milliseconds()
}

impl Series {
    /// A series of `values` sampled every `step` from `start`.
    pub fn new(start: DateTime<Utc>, step: TimeDelta, values: Vec<f64>) -> Self {
        Self {
            start,
            step,
            values,
        }
    }

    /// Regularises irregular points onto a grid of `step` aligned on the Unix epoch.
    ///
    /// A point at `t` lands in the sample whose interval `[s, s + step)` holds `t`; several
    /// points in one interval are averaged (non-finite points are ignored), and an interval
    /// without a finite point is missing. The points need not be sorted.
    ///
    /// # Errors
    /// [`ForecastError::InvalidStep`] if `step` is shorter than a millisecond,
    /// [`ForecastError::NoData`] if `points` is empty.
    pub fn from_points(
        points: &[(DateTime<Utc>, f64)],
        step: TimeDelta,
    ) -> Result<Self, ForecastError> {
        let step_ms = checked_step(step)?;
        let (Some(first), Some(last)) = (
            points.iter().map(|(t, _)| epoch_ms(*t)).min(),
            points.iter().map(|(t, _)| epoch_ms(*t)).max(),
        ) else {
            return Err(ForecastError::NoData);
        };
        let first_slot = first.div_euclid(step_ms);
        let slots = last.div_euclid(step_ms) - first_slot + 1;
        let len = usize::try_from(slots).map_err(|_| ForecastError::InvalidStep { step })?;
        let mut sums = vec![0.0; len];
        let mut counts = vec![0u32; len];
        for (t, v) in points {
            if !v.is_finite() {
                continue;
            }
            let slot = epoch_ms(*t).div_euclid(step_ms) - first_slot;
            if let Ok(i) = usize::try_from(slot) {
                sums[i] += v;
                counts[i] += 1;
            }
        }
        let values = sums
            .into_iter()
            .zip(counts)
            .map(|(s, c)| if c == 0 { f64::NAN } else { s / f64::from(c) })
            .collect();
        Ok(Self::new(from_epoch_ms(first_slot * step_ms), step, values))
    }

    /// Number of samples, missing ones included.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the series has no samples at all.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The first instant after the last sample (`start + len * step`): pass it as the origin
    /// to forecast from everything the series holds.
    pub fn end(&self) -> DateTime<Utc> {
        self.time_at(self.len())
    }

    /// Time of sample `i` (which may lie past the end).
    pub fn time_at(&self, i: usize) -> DateTime<Utc> {
        let i = i64::try_from(i).unwrap_or(i64::MAX);
        from_epoch_ms(epoch_ms(self.start).saturating_add(i.saturating_mul(delta_ms(self.step))))
    }

    /// Index of the sample whose interval `[time, time + step)` holds `t`, if within the series.
    pub fn index_of(&self, t: DateTime<Utc>) -> Option<usize> {
        let step = delta_ms(self.step);
        if step <= 0 {
            return None;
        }
        // i128: two instants of chrono's range can be further apart than i64 milliseconds.
        let offset = i128::from(epoch_ms(t)) - i128::from(epoch_ms(self.start));
        usize::try_from(offset.div_euclid(i128::from(step)))
            .ok()
            .filter(|&i| i < self.len())
    }

    /// The finite value of the sample whose interval holds `t`; `None` when it is outside the
    /// series or missing.
    pub fn value_at(&self, t: DateTime<Utc>) -> Option<f64> {
        self.index_of(t)
            .map(|i| self.values[i])
            .filter(|v| v.is_finite())
    }

    /// Number of samples stamped strictly before `t` (clamped to the series).
    pub(crate) fn count_before(&self, t: DateTime<Utc>) -> usize {
        let step = delta_ms(self.step);
        if step <= 0 {
            return 0;
        }
        let offset = i128::from(epoch_ms(t)) - i128::from(epoch_ms(self.start));
        if offset <= 0 {
            return 0;
        }
        // Samples at start + i*step < t  <=>  i < offset / step, i.e. i <= ceil(offset/step) - 1.
        let step = i128::from(step);
        let n = (offset + step - 1).div_euclid(step);
        usize::try_from(n).unwrap_or(usize::MAX).min(self.len())
    }

    /// Indices of the samples stamped in `[from, to)`.
    pub(crate) fn range(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> std::ops::Range<usize> {
        let lo = self.count_before(from);
        lo..self.count_before(to).max(lo)
    }

    /// The samples stamped in `[from, to)`, as a new series.
    pub fn slice(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Series {
        let range = self.range(from, to);
        Series::new(
            self.time_at(range.start),
            self.step,
            self.values[range].to_vec(),
        )
    }

    /// The samples stamped strictly before `origin`: what a forecast made at `origin` may see.
    pub fn slice_before(&self, origin: DateTime<Utc>) -> Series {
        self.slice(self.start, origin)
    }

    /// The last finite sample stamped strictly before `origin`, with its time.
    pub fn last_before(&self, origin: DateTime<Utc>) -> Option<(DateTime<Utc>, f64)> {
        let n = self.count_before(origin);
        self.values[..n]
            .iter()
            .rposition(|v| v.is_finite())
            .map(|i| (self.time_at(i), self.values[i]))
    }

    /// Number of finite samples.
    pub fn observed(&self) -> usize {
        self.values.iter().filter(|v| v.is_finite()).count()
    }
}

/// The step in milliseconds, if it is at least one.
pub(crate) fn checked_step(step: TimeDelta) -> Result<i64, ForecastError> {
    let ms = delta_ms(step);
    if ms >= 1 {
        Ok(ms)
    } else {
        Err(ForecastError::InvalidStep { step })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(s, 0).unwrap()
    }

    #[test]
    fn from_points_buckets_on_an_epoch_aligned_grid_and_averages() {
        let points = [
            (at(107), 1.0),
            (at(100), 3.0),
            (at(131), f64::NAN),
            (at(160), 5.0),
        ];
        let s = Series::from_points(&points, TimeDelta::seconds(15)).unwrap();
        assert_eq!(s.start, at(90));
        assert_eq!(s.len(), 5); // 90, 105, 120, 135, 150
        assert_eq!(s.values[0], 3.0);
        assert_eq!(s.values[1], 1.0);
        assert!(s.values[2].is_nan());
        assert_eq!(s.values[4], 5.0);
    }

    #[test]
    fn slice_before_excludes_the_origin() {
        let s = Series::new(at(0), TimeDelta::seconds(10), vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(s.slice_before(at(20)).values, vec![1.0, 2.0]);
        assert_eq!(s.slice_before(at(21)).values, vec![1.0, 2.0, 3.0]);
        assert_eq!(s.slice_before(at(-5)).values, Vec::<f64>::new());
        assert_eq!(s.slice(at(10), at(100)).values, vec![2.0, 3.0, 4.0]);
        assert_eq!(s.slice(at(10), at(100)).start, at(10));
        assert_eq!(s.end(), at(40));
        assert_eq!(s.last_before(at(40)), Some((at(30), 4.0)));
        assert_eq!(s.value_at(at(15)), Some(2.0));
        assert_eq!(s.value_at(at(40)), None);
    }
}
