//! The loop's forecast errors: each series' forecasts at the loop's horizon, checked against
//! what followed as their target times arrive (docs/fast-loop.md, "Forecast error metrics").
//!
//! Time is cut into *buckets*: the forecaster's fit step (15 min by default), or a whole
//! multiple of it when a season would hold more than [`MAX_BUCKETS`] of them. Per series the
//! loop keeps, and never more:
//!
//! - the first forecast of each bucket of target times, until its target has passed and a tick
//!   has observed the sample holding it, or `max_staleness` after its target if none does: at
//!   most `(horizon + max_staleness) / bucket + 2` (3 at the defaults, 6 at a 1 h horizon);
//! - the actual value of each bucket's checked target over the last season (the first of the
//!   forecaster's seasons, 1 day by default): one [`Seen`] per bucket (96 at the defaults),
//!   which is where the seasonal-naive forecast of a target comes from;
//! - two [`ErrorTracker`]s: the current window and the previous one.
//!
//! About 1.2 KB a series at the defaults, with its key (a fifth of what its model's seasonal
//! profiles take): 6 MB for 1,000 services × 5 series. A series that stops arriving stops
//! growing: its waiting forecasts expire, and two seasons after it was last observed (its
//! windows both empty by then) its state is dropped.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, TimeDelta, Utc};
use setpoint_core::control::ControlInput;
use setpoint_forecast::{ErrorMetrics, ErrorTracker, Forecast, ForecastSettings, Series};

use super::{FastObservation, SeriesKey};

/// Buckets in one season at most: a forecast checked every 15 minutes of a daily season, and
/// the season's actual values in under a kilobyte per series.
const MAX_BUCKETS: i64 = 96;

/// The bucket grid, the window and the other figures the checks need, fixed by the settings.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Grid {
    horizon: TimeDelta,
    level: f64,
    bucket_ms: i64,
    season_ms: i64,
    /// Buckets in a season: the length of each series' ring of actual values.
    buckets: i64,
    staleness_ms: i64,
    max_pending: usize,
}

impl Grid {
    fn new(horizon: TimeDelta, settings: &ForecastSettings) -> Self {
        let fit_ms = settings.fit_step.num_milliseconds().max(1);
        // Validated settings have a first season that is a whole number (at least two) of
        // fit steps; the fallbacks only keep arithmetic sound on settings that are not.
        let season_ms = settings
            .seasons
            .first()
            .map_or(TimeDelta::days(1), |s| *s)
            .num_milliseconds()
            .max(fit_ms);
        let fit_steps = (season_ms / fit_ms).max(1);
        // The most buckets, up to MAX_BUCKETS, that divide the season into whole fit steps, so
        // that a target's bucket one season earlier is a bucket of the grid too.
        let buckets = (1..=fit_steps.min(MAX_BUCKETS))
            .rev()
            .find(|b| fit_steps % b == 0)
            .unwrap_or(1);
        let bucket_ms = season_ms / buckets;
        let staleness_ms = settings.max_staleness.num_milliseconds().max(0);
        let span = horizon.num_milliseconds().max(0) + staleness_ms;
        Self {
            horizon,
            level: settings.interval_level,
            bucket_ms,
            season_ms,
            buckets,
            staleness_ms,
            max_pending: usize::try_from(span / bucket_ms + 2).unwrap_or(usize::MAX),
        }
    }

    fn bucket_of(&self, t_ms: i64) -> i64 {
        t_ms.div_euclid(self.bucket_ms)
    }
}

/// A forecast waiting for its target time.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Pending {
    target_ms: i64,
    point: f64,
    lower: f64,
    upper: f64,
}

/// An actual value checked against a forecast: kept a season, for the seasonal-naive
/// forecast of the target one season later.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Seen {
    /// The target's time within its bucket, so that only a target in the same sample one
    /// season later takes it as its seasonal-naive value.
    offset_ms: u32,
    /// `NaN`: nothing seen in that bucket.
    value: f32,
}

const UNSEEN: Seen = Seen {
    offset_ms: 0,
    value: f32::NAN,
};

/// The actual values of the last season's buckets, indexed by bucket number modulo the
/// season's buckets.
#[derive(Debug, Clone, Default, PartialEq)]
struct Ring {
    /// The newest bucket written; the ring holds buckets `(newest - len, newest]`.
    newest: i64,
    /// Empty until the first value, then one per bucket of a season.
    values: Vec<Seen>,
}

impl Ring {
    fn index(&self, bucket: i64) -> usize {
        // `values` is never longer than MAX_BUCKETS, so the index fits.
        bucket.rem_euclid(self.values.len() as i64) as usize
    }

    fn get(&self, bucket: i64) -> Option<Seen> {
        let len = self.values.len() as i64;
        if len == 0 || bucket > self.newest || bucket <= self.newest - len {
            return None;
        }
        Some(self.values[self.index(bucket)]).filter(|s| s.value.is_finite())
    }

    fn put(&mut self, bucket: i64, seen: Seen, len: i64) {
        if self.values.is_empty() {
            self.values = vec![UNSEEN; usize::try_from(len.max(1)).unwrap_or(1)];
            self.newest = bucket;
        }
        let len = self.values.len() as i64;
        if bucket > self.newest {
            // Buckets skipped since the newest hold last season's values: forget them.
            let skipped = (bucket - self.newest - 1).min(len);
            for k in 1..=skipped {
                let i = self.index(self.newest + k);
                self.values[i] = UNSEEN;
            }
            self.newest = bucket;
        } else if bucket <= self.newest - len {
            return;
        }
        let i = self.index(bucket);
        self.values[i] = seen;
    }
}

/// One series' forecasts awaiting their targets, last season's actual values and its errors.
#[derive(Debug, Clone, PartialEq)]
struct SeriesErrors {
    pending: VecDeque<Pending>,
    /// The bucket of the newest forecast kept: one per bucket.
    last_bucket: Option<i64>,
    ring: Ring,
    /// The window (seasons since the epoch) `current` covers.
    window: i64,
    current: ErrorTracker,
    previous: ErrorTracker,
    last_observed_ms: i64,
}

impl SeriesErrors {
    fn new(window: i64, at_ms: i64) -> Self {
        Self {
            pending: VecDeque::new(),
            last_bucket: None,
            ring: Ring::default(),
            window,
            current: ErrorTracker::new(),
            previous: ErrorTracker::new(),
            last_observed_ms: at_ms,
        }
    }

    fn rotate(&mut self, window: i64) {
        if window <= self.window {
            return;
        }
        let ended = std::mem::take(&mut self.current);
        self.previous = if window == self.window + 1 {
            ended
        } else {
            ErrorTracker::new()
        };
        self.window = window;
    }

    /// Checks the forecasts whose target is before `at_ms` and whose sample `recent` holds.
    fn settle(&mut self, recent: &Series, at_ms: i64, grid: &Grid) {
        let Self {
            pending,
            ring,
            current,
            ..
        } = self;
        pending.retain(|p| {
            if p.target_ms >= at_ms {
                return true;
            }
            let Some(actual) = DateTime::from_timestamp_millis(p.target_ms)
                .and_then(|target| recent.value_at(target))
            else {
                // Not (yet) in the observation: a later tick may have it, until it expires.
                return true;
            };
            let naive = seasonal_naive(ring, p.target_ms, recent, grid);
            current.record(&forecast(p, grid), actual, naive);
            let bucket = grid.bucket_of(p.target_ms);
            if let Ok(offset_ms) = u32::try_from(p.target_ms - bucket * grid.bucket_ms) {
                let seen = Seen {
                    offset_ms,
                    value: actual as f32,
                };
                ring.put(bucket, seen, grid.buckets);
            }
            false
        });
    }

    fn push(&mut self, forecast: Pending, grid: &Grid) {
        let bucket = grid.bucket_of(forecast.target_ms);
        if self.last_bucket.is_some_and(|b| bucket <= b) {
            return;
        }
        self.last_bucket = Some(bucket);
        // Expiry keeps the queue under the bound; this only guards against ticks whose
        // times jump about.
        while self.pending.len() >= grid.max_pending {
            self.pending.pop_front();
        }
        if self.pending.capacity() == 0 {
            self.pending.reserve_exact(grid.max_pending);
        }
        self.pending.push_back(forecast);
    }

    fn metrics(&self) -> Option<ErrorMetrics> {
        let mut both = self.previous.clone();
        both.merge(&self.current);
        (both.count() > 0).then(|| both.metrics())
    }
}

/// The forecast a pending entry stands for, as [`ErrorTracker::record`] takes it.
fn forecast(p: &Pending, grid: &Grid) -> Forecast {
    let at = DateTime::from_timestamp_millis(p.target_ms).unwrap_or(DateTime::<Utc>::MIN_UTC);
    Forecast {
        origin: at.checked_sub_signed(grid.horizon).unwrap_or(at),
        at,
        point: p.point,
        lower: p.lower,
        upper: p.upper,
        level: grid.level,
    }
}

/// The seasonal-naive forecast of the target at `target_ms`: the value of the sample holding
/// the instant one season earlier, as the loop saw it then. Known only when the loop checked
/// a forecast whose target fell in that same sample (with regular ticks, the same tick of
/// the day before).
fn seasonal_naive(ring: &Ring, target_ms: i64, recent: &Series, grid: &Grid) -> Option<f64> {
    let bucket = grid.bucket_of(target_ms);
    let source = bucket - grid.buckets;
    let seen = ring.get(source)?;
    let seen_ms = source * grid.bucket_ms + i64::from(seen.offset_ms);
    let step = recent.step.num_milliseconds();
    if step < 1 {
        return None;
    }
    let phase = recent.start.timestamp_millis().rem_euclid(step);
    let sample = |t: i64| (t - phase).div_euclid(step);
    (sample(seen_ms) == sample(target_ms - grid.season_ms)).then_some(f64::from(seen.value))
}

/// The point forecast and interval of `key` that `input` carries, if the tick forecast it.
fn forecast_in(input: &ControlInput, key: &SeriesKey) -> Option<(f64, f64, f64)> {
    let (metrics, intervals) = match &key.region {
        None => (&input.forecast, &input.forecast_interval),
        Some(region) => (
            input.forecast.region.get(region)?,
            input.forecast_interval.region.get(region)?,
        ),
    };
    let point = key.metric.value(metrics)?;
    let interval = key.metric.interval(intervals)?;
    Some((point, interval.lower, interval.upper))
}

/// Every series' forecast errors, updated at each tick.
///
/// They do not reset when the models are refitted: they measure the loop's forecasts, whatever
/// model made them. Errors are tallied in windows of one season aligned on the epoch (UTC days
/// at the defaults); the figures are the current window and the previous one together, so
/// they cover the last one to two seasons.
#[derive(Debug, Clone)]
pub(crate) struct ForecastErrors {
    grid: Grid,
    series: BTreeMap<SeriesKey, SeriesErrors>,
}

impl ForecastErrors {
    /// No errors yet, for forecasts at `horizon` by a forecaster with `settings`.
    pub(crate) fn new(horizon: TimeDelta, settings: &ForecastSettings) -> Self {
        Self {
            grid: Grid::new(horizon, settings),
            series: BTreeMap::new(),
        }
    }

    /// Takes in a tick: checks the waiting forecasts whose target the observation holds, keeps
    /// the tick's forecasts (the first of each bucket of target times), and drops what expired.
    /// `inputs` are the tick's policy inputs, sorted by service: the forecasts checked are the
    /// ones the policies saw.
    pub(crate) fn update(&mut self, observed: &FastObservation, inputs: &[&ControlInput]) {
        let grid = self.grid;
        let at_ms = observed.at.timestamp_millis();
        let window = at_ms.div_euclid(grid.season_ms);
        let target_ms = at_ms.saturating_add(grid.horizon.num_milliseconds());
        for (key, recent) in &observed.series {
            if !key.metric.forecast() {
                continue;
            }
            let made = inputs
                .binary_search_by(|input| input.service.as_str().cmp(&key.service))
                .ok()
                .and_then(|i| forecast_in(inputs[i], key));
            let state = match (self.series.get_mut(key), made) {
                (Some(state), _) => state,
                // A series is tracked from its first forecast.
                (None, Some(_)) => self
                    .series
                    .entry(key.clone())
                    .or_insert_with(|| SeriesErrors::new(window, at_ms)),
                (None, None) => continue,
            };
            state.last_observed_ms = at_ms;
            state.rotate(window);
            state.settle(recent, at_ms, &grid);
            if let Some((point, lower, upper)) = made {
                let pending = Pending {
                    target_ms,
                    point,
                    lower,
                    upper,
                };
                state.push(pending, &grid);
            }
        }
        let expired_before = at_ms - grid.staleness_ms;
        let forgotten_before = at_ms - 2 * grid.season_ms;
        self.series.retain(|_, state| {
            state.rotate(window);
            state.pending.retain(|p| p.target_ms >= expired_before);
            state.last_observed_ms >= forgotten_before
        });
    }

    /// Each series' errors over the last one to two windows, by key; series without a checked
    /// forecast in them are left out.
    pub(crate) fn snapshot(&self) -> Vec<(SeriesKey, ErrorMetrics)> {
        self.series
            .iter()
            .filter_map(|(key, state)| state.metrics().map(|m| (key.clone(), m)))
            .collect()
    }

    /// Series tracked, and forecasts waiting for their targets across them.
    #[cfg(test)]
    pub(crate) fn held(&self) -> (usize, usize) {
        let pending = self.series.values().map(|s| s.pending.len()).sum();
        (self.series.len(), pending)
    }

    /// The longest queue of waiting forecasts a series may have, and the buckets of a season.
    #[cfg(test)]
    pub(crate) fn bounds(&self) -> (usize, i64) {
        (self.grid.max_pending, self.grid.buckets)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use chrono::TimeZone;

    use super::*;
    use crate::fast::FastMetric;

    fn grid() -> Grid {
        Grid::new(TimeDelta::minutes(15), &ForecastSettings::default())
    }

    #[test]
    fn the_grid_keeps_a_few_forecasts_and_a_day_of_buckets() {
        let g = grid();
        assert_eq!(g.bucket_ms, 15 * 60_000);
        assert_eq!(g.buckets, 96);
        assert_eq!(g.max_pending, 3);
        // A fit step of 1 min would put 1,440 buckets in a day: coarsened to 96 of 15 min.
        let fine = ForecastSettings {
            fit_step: TimeDelta::minutes(1),
            ..ForecastSettings::default()
        };
        let g = Grid::new(TimeDelta::hours(1), &fine);
        assert_eq!((g.buckets, g.bucket_ms), (96, 15 * 60_000));
        assert_eq!(g.max_pending, 6);
    }

    #[test]
    fn a_series_holds_little_more_than_a_kilobyte() {
        let g = grid();
        let mut state = SeriesErrors::new(0, 0);
        for i in 0..(2 * g.buckets) {
            let target_ms = i * g.bucket_ms;
            state.push(
                Pending {
                    target_ms,
                    point: 1.0,
                    lower: 0.0,
                    upper: 2.0,
                },
                &g,
            );
            let seen = Seen {
                offset_ms: 0,
                value: 1.0,
            };
            state.ring.put(i, seen, g.buckets);
        }
        let held = std::mem::size_of::<(SeriesKey, SeriesErrors)>()
            + state.pending.capacity() * std::mem::size_of::<Pending>()
            + state.ring.values.capacity() * std::mem::size_of::<Seen>();
        eprintln!("a series holds {held} bytes and its key's text");
        assert!(state.pending.len() <= g.max_pending);
        assert_eq!(state.ring.values.len(), 96);
        assert!(held <= 1200, "{held}");
    }

    #[test]
    fn the_ring_forgets_buckets_older_than_a_season() {
        let mut ring = Ring::default();
        let seen = |v: f32| Seen {
            offset_ms: 0,
            value: v,
        };
        ring.put(10, seen(1.0), 4);
        ring.put(11, seen(2.0), 4);
        assert_eq!(ring.get(10).map(|s| s.value), Some(1.0));
        // Bucket 14 overwrites 10's slot; 12 and 13 were skipped and read as unseen.
        ring.put(14, seen(5.0), 4);
        assert_eq!(ring.get(10), None);
        assert_eq!(ring.get(11).map(|s| s.value), Some(2.0));
        assert_eq!(ring.get(12), None);
        // A jump of more than a season forgets everything.
        ring.put(30, seen(6.0), 4);
        assert_eq!(ring.get(11), None);
        assert_eq!(ring.get(30).map(|s| s.value), Some(6.0));
        assert_eq!(ring.values.len(), 4);
    }

    /// A tick at `at` of one series whose samples are `value(t)` every minute of the hour
    /// before, with the forecast `point ± 1` carried in the service's input.
    fn tick(
        errors: &mut ForecastErrors,
        at: DateTime<Utc>,
        value: impl Fn(DateTime<Utc>) -> f64,
        point: f64,
    ) {
        let key = SeriesKey::service("svc", FastMetric::RequestRate);
        let start = at - TimeDelta::hours(1);
        let values = (0..60)
            .map(|i| value(start + TimeDelta::minutes(i)))
            .collect();
        let observed = FastObservation {
            at,
            series: BTreeMap::from([(key, Series::new(start, TimeDelta::minutes(1), values))]),
            current: BTreeMap::new(),
        };
        let input: ControlInput = serde_json::from_value(serde_json::json!({
            "service": "svc", "loop": {"name": "fast", "tick": 1},
            "at": at, "at_ns": 0, "now": {}, "forecast": {"request_rate": point},
            "forecast_interval": {"request_rate": {"lower": point - 1.0, "upper": point + 1.0}},
            "anomaly": {}, "current": {}, "limits": {"min_replicas": 1, "max_replicas": 2},
            "cooldown": {}, "flags": {}, "horizon_seconds": 900, "mode": "dry-run"
        }))
        .unwrap();
        errors.update(&observed, &[&input]);
    }

    #[test]
    fn mase_compares_with_the_value_one_day_before() {
        let mut errors = ForecastErrors::new(TimeDelta::minutes(15), &ForecastSettings::default());
        let t0 = Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap();
        // Day one reads 100, day two 110; every forecast says 104.
        let value = |t: DateTime<Utc>| {
            if t < t0 + TimeDelta::days(1) {
                100.0
            } else {
                110.0
            }
        };
        for minute in 0..(2 * 24 * 60) {
            tick(&mut errors, t0 + TimeDelta::minutes(minute), value, 104.0);
        }
        let rows = errors.snapshot();
        assert_eq!(rows.len(), 1);
        let m = rows[0].1;
        // Targets from 00:15 of day one to 23:45 of day two, one per 15 minutes.
        assert_eq!(m.count, 96 + 95);
        // Only day two's targets have a naive value (day one's 100): errors 6 against 10.
        assert!((m.mase.unwrap() - 0.6).abs() < 1e-9, "{m:?}");
        let mape = (95.0 * 4.0 / 100.0 + 96.0 * 6.0 / 110.0) / 191.0;
        assert!((m.mape.unwrap() - mape).abs() < 1e-9, "{m:?}");
        assert_eq!(m.coverage, Some(0.0));
    }
}
